//! geodird: one geodir server per datacenter (docs/server.md).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// One geodir server: owns a datacenter's replicas and serves them over gRPC, with
/// /metrics and /healthz over HTTP. Stops cleanly on SIGTERM.
#[derive(Parser, Debug)]
#[command(name = "geodird", version)]
struct Args {
    /// The cluster root (its control plane, cluster.json).
    #[arg(long, env = "DIRCTL_CLUSTER", value_name = "DIR")]
    cluster: PathBuf,
    /// The datacenter whose replicas this server owns.
    #[arg(long, value_name = "NAME")]
    datacenter: String,
    /// The gRPC address to listen on (port 0: a free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:7401", value_name = "ADDR")]
    listen: SocketAddr,
    /// The HTTP address for /metrics and /healthz (port 0: a free port).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    http: SocketAddr,
    /// The folder holding the datacenter's replicas (dc-NAME/pN); the cluster root if not given.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// How long a call to another server may take before it counts as failed.
    #[arg(long, default_value_t = 2_000, value_name = "MS")]
    rpc_timeout_ms: u64,
    /// How long to wait for a replica another process holds, at start.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    lock_timeout_ms: u64,
    /// Log retention: entries every replica holds are pruned, keeping this many.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    retain_log_entries: u64,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GEODIR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let a = Args::parse();
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
    let options = server::serve::Options {
        cluster: a.cluster,
        data: a.data,
        datacenter: a.datacenter,
        listen: a.listen,
        http: a.http,
        rpc_timeout: Duration::from_millis(a.rpc_timeout_ms),
        lock_timeout: Duration::from_millis(a.lock_timeout_ms),
        retain_log_entries: a.retain_log_entries,
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
    match runtime.block_on(server::serve::run(options)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("geodird: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
