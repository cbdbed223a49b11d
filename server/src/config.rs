//! geodird's configuration (docs/server.md, "Configuration"): a TOML file, with flags and
//! environment variables over its fields. `resolve` decides, purely; `check` also asks the
//! control plane whether it knows the datacenter.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

/// One geodir server: owns a datacenter's replicas and serves them over gRPC, with
/// /metrics and /healthz over HTTP. Stops cleanly on SIGTERM.
///
/// Every setting comes from a flag, else its environment variable, else the --config file,
/// else its default.
#[derive(Parser, Debug, Default)]
#[command(name = "geodird", version)]
pub struct Args {
    /// A TOML file with any of the settings below (field names as the flags, with `_`:
    /// `datacenter`, `listen`, `rpc_timeout_ms`, ...).
    #[arg(long, env = "GEODIR_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Check the configuration (file, flags and environment) and the datacenter's place in
    /// the control plane, print it and exit: 0 when valid, 2 naming the bad field.
    #[arg(long)]
    pub check_config: bool,
    /// The cluster root (its control plane, cluster.json; with --control-plane, only the
    /// folder of the replicas when --data is not given).
    #[arg(long, env = "DIRCTL_CLUSTER", value_name = "DIR")]
    pub cluster: Option<PathBuf>,
    /// The control plane in etcd (`etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`) instead of
    /// the cluster root's cluster.json.
    #[arg(long, env = "DIRCTL_CONTROL_PLANE", value_name = "etcd://HOST:PORT")]
    pub control_plane: Option<String>,
    /// Run as the gateway instead of a datacenter's server: serve the Graph API on --http
    /// by sending each request to the nearest healthy datacenter's server (nearest to
    /// --datacenter, which the gateway stands beside; docs/graph.md, "The gateway").
    #[arg(long, env = "GEODIR_GATEWAY")]
    pub gateway: bool,
    /// The gateway's probe round: how often it asks each server's /healthz and reads the
    /// control plane again [default: 500].
    #[arg(long, env = "GEODIR_PROBE_INTERVAL_MS", value_name = "MS")]
    pub probe_interval_ms: Option<u64>,
    /// The datacenter whose replicas this server owns (the gateway: the one it stands beside).
    #[arg(long, env = "GEODIR_DATACENTER", value_name = "NAME")]
    pub datacenter: Option<String>,
    /// The gRPC address to listen on (port 0: a free port, printed at start) [default:
    /// 127.0.0.1:7401].
    #[arg(long, env = "GEODIR_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// The HTTP address for /metrics and /healthz (port 0: a free port) [default:
    /// 127.0.0.1:0].
    #[arg(long, env = "GEODIR_HTTP", value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// The folder holding the datacenter's replicas (dc-NAME/pN); the cluster root if not given.
    #[arg(long, env = "GEODIR_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// How long a call to another server may take before it counts as failed [default: 2000].
    #[arg(long, env = "GEODIR_RPC_TIMEOUT_MS", value_name = "MS")]
    pub rpc_timeout_ms: Option<u64>,
    /// How long to wait for a replica another process holds, at start [default: 10000].
    #[arg(long, env = "GEODIR_LOCK_TIMEOUT_MS", value_name = "MS")]
    pub lock_timeout_ms: Option<u64>,
    /// With --control-plane: this server's lease TTL in etcd. A primary whose server cannot
    /// renew it stops acknowledging writes before it expires; once expired, the sync
    /// standby's server promotes its replica [default: 2].
    #[arg(long, env = "GEODIR_LEASE_TTL_SECS", value_name = "SECONDS")]
    pub lease_ttl_secs: Option<u64>,
    /// Log retention: entries every replica holds are pruned, keeping this many [default:
    /// 100000].
    #[arg(long, env = "GEODIR_RETAIN_LOG_ENTRIES", value_name = "N")]
    pub retain_log_entries: Option<u64>,
    /// The Graph API's largest request body, in bytes [default: 1048576].
    #[arg(long, env = "GEODIR_GRAPH_MAX_BODY_BYTES", value_name = "BYTES")]
    pub graph_max_body_bytes: Option<usize>,
    /// The Graph API's requests per second per token, on average; 0 for no limit [default: 1000].
    #[arg(long, env = "GEODIR_GRAPH_RATE_PER_TOKEN", value_name = "N")]
    pub graph_rate_per_token: Option<u32>,
    /// The requests a token may make at once above its rate [default: 2000].
    #[arg(long, env = "GEODIR_GRAPH_BURST_PER_TOKEN", value_name = "N")]
    pub graph_burst_per_token: Option<u32>,
    /// Serve the HTTP address over TLS with this certificate chain (PEM); with --tls-key.
    #[arg(long, env = "GEODIR_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "GEODIR_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Serve the HTTP address over TLS with a self-signed certificate for localhost and
    /// 127.0.0.1, made at the first start and kept in DATA/tls-DATACENTER/cert.pem (for
    /// local use: clients must be told to trust that file).
    #[arg(long, env = "GEODIR_TLS_SELF_SIGNED")]
    pub tls_self_signed: bool,
}

/// The config file's fields: the flags' names with `_`. An unknown field is an error.
#[derive(Deserialize, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub cluster: Option<PathBuf>,
    pub control_plane: Option<String>,
    pub datacenter: Option<String>,
    pub listen: Option<String>,
    pub http: Option<String>,
    pub data: Option<PathBuf>,
    pub rpc_timeout_ms: Option<u64>,
    pub lock_timeout_ms: Option<u64>,
    pub lease_ttl_secs: Option<u64>,
    pub retain_log_entries: Option<u64>,
    pub graph_max_body_bytes: Option<usize>,
    pub graph_rate_per_token: Option<u32>,
    pub graph_burst_per_token: Option<u32>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_self_signed: Option<bool>,
    pub gateway: Option<bool>,
    pub probe_interval_ms: Option<u64>,
}

/// Everything a server runs with, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub cluster: PathBuf,
    /// etcd, or None: the cluster root's file.
    pub control_plane: Option<String>,
    pub datacenter: String,
    pub listen: SocketAddr,
    pub http: SocketAddr,
    pub data: Option<PathBuf>,
    pub rpc_timeout: Duration,
    pub lock_timeout: Duration,
    pub lease_ttl: Duration,
    pub retain_log_entries: u64,
    pub graph: crate::graph::Limits,
    /// TLS on the HTTP address.
    pub tls: crate::tls::Tls,
    /// Run as the gateway (`crate::gateway`).
    pub gateway: bool,
    pub probe_interval: Duration,
}

/// A bad setting: which field, and why.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

fn invalid(field: &str, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

/// Parses a config file's text; `path` names it in the error.
pub fn parse(path: &Path, text: &str) -> Result<File, Invalid> {
    toml::from_str(text).map_err(|e| {
        let field = e
            .message()
            .strip_prefix("unknown field `")
            .and_then(|m| m.split('`').next())
            .map(str::to_string)
            .unwrap_or_else(|| path.display().to_string());
        Invalid {
            field,
            message: format!("{}: {e}", path.display()),
        }
    })
}

/// Reads and parses the config file `path`.
pub fn read(path: &Path) -> Result<File, Invalid> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid("config", format!("cannot read {}: {e}", path.display())))?;
    parse(path, &text)
}

/// Flags and environment (`args`) over the file's fields, over the defaults.
pub fn resolve(args: &Args, file: &File) -> Result<Settings, Invalid> {
    let addr = |field: &str, flag: Option<SocketAddr>, text: &Option<String>, default: &str| match (
        flag, text,
    ) {
        (Some(a), _) => Ok(a),
        (None, Some(t)) => t
            .parse()
            .map_err(|e| invalid(field, format!("`{t}` is not an address (HOST:PORT): {e}"))),
        (None, None) => default
            .parse()
            .map_err(|e| invalid(field, format!("default `{default}`: {e}"))),
    };
    let control_plane = args
        .control_plane
        .clone()
        .or_else(|| file.control_plane.clone());
    if let Some(cp) = &control_plane {
        crate::etcd::EtcdAddress::parse(cp).map_err(|e| invalid("control_plane", e.to_string()))?;
    }
    let data = args.data.clone().or_else(|| file.data.clone());
    // With etcd the cluster root only holds replicas: `data` names it as well.
    let cluster = args
        .cluster
        .clone()
        .or_else(|| file.cluster.clone())
        .or_else(|| control_plane.as_ref().and(data.clone()))
        .ok_or_else(|| {
            invalid(
                "cluster",
                "not set (--cluster, DIRCTL_CLUSTER or `cluster` in the config file; with control_plane, `data` is enough)",
            )
        })?;
    let datacenter = args
        .datacenter
        .clone()
        .or_else(|| file.datacenter.clone())
        .ok_or_else(|| {
            invalid(
                "datacenter",
                "not set (--datacenter, GEODIR_DATACENTER or `datacenter` in the config file)",
            )
        })?;
    if datacenter.trim().is_empty() {
        return Err(invalid("datacenter", "is empty"));
    }
    let rpc_timeout_ms = args.rpc_timeout_ms.or(file.rpc_timeout_ms).unwrap_or(2_000);
    if rpc_timeout_ms == 0 {
        return Err(invalid("rpc_timeout_ms", "must be above 0"));
    }
    let lease_ttl_secs = args.lease_ttl_secs.or(file.lease_ttl_secs).unwrap_or(2);
    if !(1..=60).contains(&lease_ttl_secs) {
        return Err(invalid("lease_ttl_secs", "must be 1 to 60"));
    }
    let defaults = crate::graph::Limits::default();
    let graph = crate::graph::Limits {
        max_body_bytes: args
            .graph_max_body_bytes
            .or(file.graph_max_body_bytes)
            .unwrap_or(defaults.max_body_bytes),
        rate_per_token: args
            .graph_rate_per_token
            .or(file.graph_rate_per_token)
            .unwrap_or(defaults.rate_per_token),
        burst_per_token: args
            .graph_burst_per_token
            .or(file.graph_burst_per_token)
            .unwrap_or(defaults.burst_per_token),
    };
    if !(1024..=64 * 1024 * 1024).contains(&graph.max_body_bytes) {
        return Err(invalid("graph_max_body_bytes", "must be 1024 to 67108864"));
    }
    let tls = match (
        args.tls_cert.clone().or_else(|| file.tls_cert.clone()),
        args.tls_key.clone().or_else(|| file.tls_key.clone()),
        args.tls_self_signed || file.tls_self_signed == Some(true),
    ) {
        (None, None, false) => crate::tls::Tls::Off,
        (None, None, true) => crate::tls::Tls::SelfSigned,
        (Some(cert), Some(key), false) => crate::tls::Tls::Files { cert, key },
        (Some(_), None, false) => return Err(invalid("tls_key", "tls_cert needs tls_key")),
        (None, Some(_), false) => return Err(invalid("tls_cert", "tls_key needs tls_cert")),
        (_, _, true) => {
            return Err(invalid(
                "tls_self_signed",
                "give either tls_self_signed or tls_cert and tls_key, not both",
            ))
        }
    };
    let probe_interval_ms = args
        .probe_interval_ms
        .or(file.probe_interval_ms)
        .unwrap_or(500);
    if !(50..=60_000).contains(&probe_interval_ms) {
        return Err(invalid("probe_interval_ms", "must be 50 to 60000"));
    }
    Ok(Settings {
        cluster,
        control_plane,
        datacenter,
        listen: addr("listen", args.listen, &file.listen, "127.0.0.1:7401")?,
        http: addr("http", args.http, &file.http, "127.0.0.1:0")?,
        data,
        rpc_timeout: Duration::from_millis(rpc_timeout_ms),
        lease_ttl: Duration::from_secs(lease_ttl_secs),
        lock_timeout: Duration::from_millis(
            args.lock_timeout_ms
                .or(file.lock_timeout_ms)
                .unwrap_or(10_000),
        ),
        retain_log_entries: args
            .retain_log_entries
            .or(file.retain_log_entries)
            .unwrap_or(100_000),
        graph,
        tls,
        gateway: args.gateway || file.gateway == Some(true),
        probe_interval: Duration::from_millis(probe_interval_ms),
    })
}

/// The settings from `args` and the config file it names.
pub fn load(args: &Args) -> Result<Settings, Invalid> {
    let file = match &args.config {
        Some(path) => read(path)?,
        None => File::default(),
    };
    resolve(args, &file)
}

/// What `--check-config` checks beyond `load`: the cluster root holds a control plane
/// that has this datacenter, and the data folder (when given) exists.
pub fn check(s: &Settings) -> Result<(), Invalid> {
    let field = match s.control_plane {
        Some(_) => "control_plane",
        None => "cluster",
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| invalid(field, e.to_string()))?;
    let t = crate::etcd::open(
        s.control_plane.as_deref(),
        &s.cluster,
        s.lock_timeout,
        runtime.handle(),
    )
    .and_then(|cp| cp.load())
    .map_err(|e| invalid(field, e.to_string()))?;
    t.datacenter(&s.datacenter)
        .map_err(|e| invalid("datacenter", e.to_string()))?;
    if let Some(d) = &s.data {
        if !d.is_dir() {
            return Err(invalid("data", format!("{} is not a folder", d.display())));
        }
    }
    if let crate::tls::Tls::Files { cert, key } = &s.tls {
        let read = |p: &Path, field: &str| {
            std::fs::read(p).map_err(|e| invalid(field, format!("{}: {e}", p.display())))
        };
        crate::tls::server_config(&read(cert, "tls_cert")?, &read(key, "tls_key")?).map_err(
            |e| {
                let m = e.to_string();
                let field = if m.starts_with("tls_key") {
                    "tls_key"
                } else {
                    "tls_cert"
                };
                invalid(field, m)
            },
        )?;
    }
    Ok(())
}

impl std::fmt::Display for Settings {
    /// The settings as a config file would give them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "cluster = {:?}", self.cluster.display().to_string())?;
        if let Some(cp) = &self.control_plane {
            writeln!(f, "control_plane = {cp:?}")?;
        }
        writeln!(f, "datacenter = {:?}", self.datacenter)?;
        writeln!(f, "listen = \"{}\"", self.listen)?;
        writeln!(f, "http = \"{}\"", self.http)?;
        if let Some(d) = &self.data {
            writeln!(f, "data = {:?}", d.display().to_string())?;
        }
        writeln!(f, "rpc_timeout_ms = {}", self.rpc_timeout.as_millis())?;
        writeln!(f, "lock_timeout_ms = {}", self.lock_timeout.as_millis())?;
        writeln!(f, "lease_ttl_secs = {}", self.lease_ttl.as_secs())?;
        writeln!(f, "retain_log_entries = {}", self.retain_log_entries)?;
        writeln!(f, "graph_max_body_bytes = {}", self.graph.max_body_bytes)?;
        writeln!(f, "graph_rate_per_token = {}", self.graph.rate_per_token)?;
        writeln!(f, "graph_burst_per_token = {}", self.graph.burst_per_token)?;
        if self.gateway {
            writeln!(f, "gateway = true")?;
        }
        writeln!(f, "probe_interval_ms = {}", self.probe_interval.as_millis())?;
        match &self.tls {
            crate::tls::Tls::Off => Ok(()),
            crate::tls::Tls::SelfSigned => write!(f, "tls_self_signed = true"),
            crate::tls::Tls::Files { cert, key } => write!(
                f,
                "tls_cert = {:?}\ntls_key = {:?}",
                cert.display().to_string(),
                key.display().to_string()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> File {
        parse(Path::new("t.toml"), text).expect("parses")
    }

    #[test]
    fn flags_override_the_file_and_the_file_overrides_the_defaults() {
        let f = file("cluster = \"/c\"\ndatacenter = \"westus\"\nlisten = \"127.0.0.1:9000\"\nrpc_timeout_ms = 500\n");
        let s = resolve(&Args::default(), &f).expect("valid");
        assert_eq!(s.listen, "127.0.0.1:9000".parse().expect("addr"));
        assert_eq!(s.rpc_timeout, Duration::from_millis(500));
        assert_eq!(s.lock_timeout, Duration::from_millis(10_000));
        assert_eq!(s.http, "127.0.0.1:0".parse().expect("addr"));
        let args = Args {
            datacenter: Some("eastus".into()),
            listen: Some("127.0.0.1:9100".parse().expect("addr")),
            ..Args::default()
        };
        let s = resolve(&args, &f).expect("valid");
        assert_eq!(
            (s.datacenter.as_str(), s.listen.port(), s.cluster.as_path()),
            ("eastus", 9100, Path::new("/c"))
        );
    }

    #[test]
    fn a_bad_field_is_named() {
        let e = parse(Path::new("t.toml"), "datacentre = \"westus\"\n").expect_err("unknown");
        assert_eq!(e.field, "datacentre", "{e}");
        let e = parse(Path::new("t.toml"), "rpc_timeout_ms = \"soon\"\n").expect_err("type");
        assert!(e.message.contains("rpc_timeout_ms"), "{e}");
        let e = parse(Path::new("t.toml"), "listen = \n").expect_err("syntax");
        assert!(e.message.contains("t.toml"), "{e}");
        let f = file("cluster = \"/c\"\ndatacenter = \"westus\"\nhttp = \"localhost\"\n");
        let e = resolve(&Args::default(), &f).expect_err("address");
        assert_eq!(e.field, "http", "{e}");
        let e = resolve(&Args::default(), &file("cluster = \"/c\"\n")).expect_err("missing");
        assert_eq!(e.field, "datacenter", "{e}");
        let e = resolve(&Args::default(), &file("datacenter = \"westus\"\n")).expect_err("missing");
        assert_eq!(e.field, "cluster", "{e}");
        let f = file("cluster = \"/c\"\ndatacenter = \"westus\"\nrpc_timeout_ms = 0\n");
        let e = resolve(&Args::default(), &f).expect_err("zero");
        assert_eq!(e.field, "rpc_timeout_ms", "{e}");
        let f = file("cluster = \"/c\"\ndatacenter = \"westus\"\ntls_cert = \"/c.pem\"\n");
        let e = resolve(&Args::default(), &f).expect_err("cert alone");
        assert_eq!(e.field, "tls_key", "{e}");
        let f = file("cluster = \"/c\"\ndatacenter = \"westus\"\ntls_key = \"/k.pem\"\ntls_cert = \"/c.pem\"\ntls_self_signed = true\n");
        let e = resolve(&Args::default(), &f).expect_err("both");
        assert_eq!(e.field, "tls_self_signed", "{e}");
    }

    #[test]
    fn settings_print_as_a_config_file_that_reads_back_the_same() {
        for extra in [
            "",
            "tls_self_signed = true\n",
            "tls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n",
        ] {
            let f = file(&format!("cluster = \"/c d\"\ndatacenter = \"westus\"\ndata = \"/data\"\nretain_log_entries = 7\n{extra}"));
            let s = resolve(&Args::default(), &f).expect("valid");
            let again = resolve(&Args::default(), &file(&s.to_string())).expect("valid");
            assert_eq!(s, again);
        }
    }
}
