//! geodird: one geodir server per datacenter (docs/server.md).

use clap::Parser;
use server::config;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GEODIR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let a = config::Args::parse();
    let settings = match config::load(&a) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("geodird: invalid configuration: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if a.check_config {
        return match config::check(&settings) {
            Ok(()) => {
                println!("{settings}");
                eprintln!("geodird: configuration ok");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("geodird: invalid configuration: {e}");
                std::process::ExitCode::from(2)
            }
        };
    }
    // The clock, fixed by DIRCTL_NOW as dirctl's is (tests of the 30-day recycle bin).
    let clock = match std::env::var("DIRCTL_NOW") {
        Ok(t) => match engine::clock::Clock::fixed(&t) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("geodird: DIRCTL_NOW: {e}");
                return std::process::ExitCode::from(2);
            }
        },
        Err(_) => engine::clock::Clock::system(),
    };
    let gateway = settings.gateway.then(|| server::gateway::Options {
        cluster: settings.cluster.clone(),
        control_plane: settings.control_plane.clone(),
        near: settings.datacenter.clone(),
        http: settings.http,
        tls: settings.tls.clone(),
        data: settings
            .data
            .clone()
            .unwrap_or_else(|| settings.cluster.clone()),
        timeout: settings.rpc_timeout,
        lock_timeout: settings.lock_timeout,
        probe_interval: settings.probe_interval,
        max_body_bytes: settings.graph.max_body_bytes,
    });
    let options = server::serve::Options {
        cluster: settings.cluster,
        control_plane: settings.control_plane,
        data: settings.data,
        datacenter: settings.datacenter,
        listen: settings.listen,
        http: settings.http,
        rpc_timeout: settings.rpc_timeout,
        lock_timeout: settings.lock_timeout,
        lease_ttl: settings.lease_ttl,
        retain_log_entries: settings.retain_log_entries,
        graph: settings.graph,
        tls: settings.tls,
        clock,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("geodird: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let ran = match gateway {
        Some(g) => runtime.block_on(server::gateway::run(g)),
        None => runtime.block_on(server::serve::run(options)),
    };
    match ran {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("geodird: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
