//! The server mode under test: one real `geodird` process per datacenter of a cluster, on
//! free loopback ports, killed with SIGKILL when the test ends (or when it says so).
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Cluster, Run};

/// The geodird beside the dirctl under test (the same build of the workspace).
pub fn geodird() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_dirctl")).with_file_name("geodird");
    assert!(
        p.exists(),
        "{} is missing: build the workspace (scripts/test builds every binary)",
        p.display()
    );
    p
}

pub struct Server {
    pub child: Child,
    /// gRPC, as DIRCTL_ENDPOINTS takes it.
    pub grpc: String,
    /// /metrics and /healthz.
    pub http: String,
    /// The certificate of its HTTP address, behind TLS.
    pub cert: Option<PathBuf>,
    pub log: PathBuf,
}

/// One server per datacenter of the cluster at `root`.
pub struct Servers {
    pub root: PathBuf,
    pub servers: BTreeMap<String, Server>,
    /// Every server's last gRPC address, a killed one's too: clients keep a dead address
    /// in their list, as an operator's would.
    pub known: BTreeMap<String, String>,
    /// Extra geodird arguments (`--rpc-timeout-ms`...).
    pub args: Vec<String>,
    /// Where a datacenter's server runs, if not on loopback: the address it listens on and
    /// the command it runs under (`ip netns exec NS`).
    pub hosts: BTreeMap<String, (String, Vec<String>)>,
    /// Extra environment for the next server started (`GEODIR_FAILPOINT`).
    pub env: Vec<(String, String)>,
}

impl Servers {
    /// Starts a server for each of `dcs` over the cluster at `root`.
    pub fn start(root: &Path, dcs: &[&str], args: &[&str]) -> Servers {
        let mut s = Servers {
            root: root.to_path_buf(),
            servers: BTreeMap::new(),
            known: BTreeMap::new(),
            args: args.iter().map(|a| a.to_string()).collect(),
            hosts: BTreeMap::new(),
            env: Vec::new(),
        };
        for dc in dcs {
            s.start_one(dc);
        }
        s
    }

    /// `start`, each datacenter's server at the address `hosts` gives (and under its command).
    pub fn start_on(
        root: &Path,
        hosts: BTreeMap<String, (String, Vec<String>)>,
        args: &[&str],
    ) -> Servers {
        let mut s = Servers {
            root: root.to_path_buf(),
            servers: BTreeMap::new(),
            known: BTreeMap::new(),
            args: args.iter().map(|a| a.to_string()).collect(),
            hosts,
            env: Vec::new(),
        };
        let dcs: Vec<String> = s.hosts.keys().cloned().collect();
        for dc in dcs {
            s.start_one(&dc);
        }
        s
    }

    /// Starts (or restarts) the server of `dc`, on new free ports, and waits until it serves.
    pub fn start_one(&mut self, dc: &str) {
        let log = self.root.join(format!("geodird-{dc}.log"));
        let (ip, prefix) = self
            .hosts
            .get(dc)
            .cloned()
            .unwrap_or_else(|| ("127.0.0.1".into(), Vec::new()));
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(geodird());
                c
            }
            None => Command::new(geodird()),
        };
        let (listen, http) = (format!("{ip}:0"), format!("{ip}:0"));
        cmd.args(["--cluster"])
            .arg(&self.root)
            .args(["--datacenter", dc, "--listen", &listen, "--http", &http])
            .args(&self.args)
            .env("GEODIR_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            );
        let shown = format!("{cmd:?}");
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{shown}: {e}"));
        // The server prints one line once it serves: "geodird DC grpc=URL http=URL".
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        let mut reader = BufReader::new(stdout);
        let n = reader.read_line(&mut line).unwrap();
        if n == 0 || !line.contains("grpc=") {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{shown} did not start; its log ({}):\n{}",
                log.display(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .unwrap()
                .to_string()
        };
        let server = Server {
            grpc: field("grpc="),
            http: field("http="),
            cert: line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("cert="))
                .map(PathBuf::from),
            child,
            log,
        };
        self.known.insert(dc.to_string(), server.grpc.clone());
        self.servers.insert(dc.to_string(), server);
    }

    /// DIRCTL_ENDPOINTS: every server's address, a dead one's too (dirctl finds the
    /// nearest healthy one).
    pub fn endpoints(&self) -> String {
        self.known.values().cloned().collect::<Vec<_>>().join(",")
    }

    /// SIGKILL: the server of `dc` dies at once, mid-request if it is in one.
    pub fn kill(&mut self, dc: &str) {
        if let Some(mut s) = self.servers.remove(dc) {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
    }

    /// SIGTERM, and waits (deadline 30 s) until the server of `dc` has stopped; its exit status.
    pub fn stop(&mut self, dc: &str) -> std::process::ExitStatus {
        let mut s = self.servers.remove(dc).unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &s.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = s.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "geodird {dc} did not stop within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's log so far (for failure messages).
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (dc, s) in &self.servers {
            out.push_str(&format!(
                "--- geodird {dc} ({}):\n{}\n",
                s.log.display(),
                std::fs::read_to_string(&s.log).unwrap_or_default()
            ));
        }
        out
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for s in self.servers.values_mut() {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
    }
}

/// A gateway (`geodird --gateway`) over the cluster at `root`, beside datacenter `near`:
/// killed with SIGKILL when dropped.
pub struct Gateway {
    pub child: Child,
    /// Its HTTP address.
    pub http: String,
    pub log: PathBuf,
}

impl Gateway {
    pub fn start(root: &Path, near: &str, args: &[&str]) -> Gateway {
        let log = root.join("gateway.log");
        let mut cmd = Command::new(geodird());
        cmd.arg("--gateway")
            .arg("--cluster")
            .arg(root)
            .args(["--datacenter", near, "--http", "127.0.0.1:0"])
            .args(args)
            .env("GEODIR_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        let shown = format!("{cmd:?}");
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{shown}: {e}"));
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let Some(http) = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http="))
            .map(str::to_string)
        else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{shown} did not start ({line:?}); its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        Gateway { child, http, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `cond`, up to `deadline`; panics with `what` and the last value seen.
pub fn wait_for<T: std::fmt::Debug>(
    what: &str,
    deadline: Duration,
    mut probe: impl FnMut() -> (bool, T),
) -> T {
    let until = Instant::now() + deadline;
    loop {
        let (ok, seen) = probe();
        if ok {
            return seen;
        }
        assert!(
            Instant::now() < until,
            "{what}: not within {deadline:?}; last seen: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a writer saw: acknowledged UPNs, refused ones (exit 5, "nothing applied"), and
/// those whose outcome is unknown (exit 1).
#[derive(Default, Debug)]
pub struct Seen {
    pub acked: Vec<String>,
    pub refused: Vec<(String, String)>,
    pub unknown: Vec<String>,
    pub other: Vec<String>,
}

/// Writes users `{prefix}{i}@contoso.com` one dirctl process at a time until `stop` (at
/// most `max`), sorting each by its exit code.
pub fn writer(c: &Cluster, prefix: &str, max: usize, stop: &AtomicBool, seen: &Mutex<Seen>) {
    for i in 0..max {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let upn = format!("{prefix}{i}@contoso.com");
        let r: Run = c.run(&super::create_user_args(&upn));
        let mut s = seen.lock().unwrap();
        match r.code {
            0 => s.acked.push(upn),
            5 => s.refused.push((upn, r.stderr.clone())),
            1 => s.unknown.push(upn),
            _ => s.other.push(r.describe()),
        }
    }
}

pub fn acked(seen: &Mutex<Seen>) -> usize {
    seen.lock().unwrap().acked.len()
}

/// Reads `upn` near `region` (no session: whatever that datacenter's server holds).
pub fn visible(c: &Cluster, upn: &str, region: &str) -> bool {
    let r = c.user_get_run(upn, &["--region", region, "--output", "json"]);
    match r.code {
        0 => true,
        3 => false,
        _ => panic!("{}", r.describe()),
    }
}
