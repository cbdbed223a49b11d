//! A real etcd (Debian's etcd-server) for a test: started on free loopback ports with a
//! temporary data folder, killed with SIGKILL when dropped. Shared by the server's and
//! dirctl's tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Etcd {
    pub name: String,
    /// The address clients use (loopback unless `start_on` named another of this host's).
    pub host: String,
    pub client_port: u16,
    pub peer_port: u16,
    /// `name=http://127.0.0.1:PEER,...`: every member of its cluster.
    initial_cluster: String,
    data: PathBuf,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Etcd {
    /// One member.
    pub fn start() -> Etcd {
        Etcd::cluster(1).pop().unwrap()
    }

    /// One member that clients also reach at `ip`, an address of this host (a test's
    /// network namespace reaches it through its link).
    pub fn start_on(ip: &str) -> Etcd {
        let mut m = Etcd::cluster(1).pop().unwrap();
        m.kill();
        m.host = ip.to_string();
        m.spawn();
        m.wait_healthy();
        m
    }

    /// `n` members of one etcd cluster, each started and healthy.
    pub fn cluster(n: usize) -> Vec<Etcd> {
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members: Vec<Etcd> = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                let dir = tempfile::tempdir().unwrap();
                Etcd {
                    name: format!("m{i}"),
                    host: "127.0.0.1".into(),
                    client_port: *client,
                    peer_port: *peer,
                    initial_cluster: initial_cluster.clone(),
                    data: dir.path().join("data"),
                    child: None,
                    _dir: Some(dir),
                }
            })
            .collect();
        for m in &mut members {
            m.spawn();
        }
        for m in &members {
            m.wait_healthy();
        }
        members
    }

    fn spawn(&mut self) {
        let advertised = format!("http://{}:{}", self.host, self.client_port);
        let client = match self.host.as_str() {
            "127.0.0.1" => advertised.clone(),
            _ => format!("http://127.0.0.1:{},{advertised}", self.client_port),
        };
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::File::create(self.data.with_extension("log")).unwrap();
        let child = Command::new("etcd")
            .args(["--name", &self.name, "--data-dir"])
            .arg(&self.data)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &advertised,
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
                "--initial-cluster",
                &self.initial_cluster,
                "--initial-cluster-state",
                "new",
                "--heartbeat-interval",
                "50",
                "--election-timeout",
                "500",
                "--logger",
                "zap",
                "--log-level",
                "warn",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("etcd did not start ({e}): install it with scripts/setup"));
        self.child = Some(child);
    }

    /// Waits (bounded) until the member answers /health with true.
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.healthy() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd {} on port {} not healthy within 30 s; its log:\n{}",
                self.name,
                self.client_port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the member answers /health with true now.
    pub fn healthy(&self) -> bool {
        let Ok(mut s) = TcpStream::connect_timeout(
            &([127, 0, 0, 1], self.client_port).into(),
            Duration::from_millis(200),
        ) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let req = format!(
            "GET /health HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\r\n",
            self.client_port
        );
        let mut reply = String::new();
        s.write_all(req.as_bytes()).is_ok()
            && s.read_to_string(&mut reply).is_ok()
            && reply.contains("\"health\":\"true\"")
    }

    /// Whether this member is its cluster's raft leader now (etcd's maintenance status,
    /// over its HTTP gateway).
    pub fn is_leader(&self) -> bool {
        let Ok(mut s) = TcpStream::connect_timeout(
            &([127, 0, 0, 1], self.client_port).into(),
            Duration::from_millis(500),
        ) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let req = format!(
            "POST /v3/maintenance/status HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}",
            self.client_port
        );
        let mut reply = String::new();
        if s.write_all(req.as_bytes()).is_err() || s.read_to_string(&mut reply).is_err() {
            return false;
        }
        let field = |name: &str| {
            reply
                .split(&format!("\"{name}\":\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .map(str::to_string)
        };
        field("member_id").is_some() && field("member_id") == field("leader")
    }

    /// `etcd://HOST:PORT/PREFIX` for this member alone.
    pub fn address(&self, prefix: &str) -> String {
        format!("etcd://{}:{}{prefix}", self.host, self.client_port)
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same ports and data (after `kill`).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.with_extension("log")).unwrap_or_default()
    }

    pub fn data(&self) -> &Path {
        &self.data
    }
}

/// `etcd://` naming every member of `members`.
pub fn address_of(members: &[Etcd], prefix: &str) -> String {
    let hosts: Vec<String> = members
        .iter()
        .map(|m| format!("127.0.0.1:{}", m.client_port))
        .collect();
    format!("etcd://{}{prefix}", hosts.join(","))
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Each (partition, term) with its one primary, over `history` (every topology etcd held);
/// panics naming a term that had two.
pub fn one_primary_per_term(
    history: &[engine::topology::Topology],
) -> std::collections::BTreeMap<(u32, u64), String> {
    let mut primaries = std::collections::BTreeMap::new();
    for t in history {
        for p in &t.partitions {
            let before = primaries.insert((p.id, p.term), p.primary.clone());
            assert!(
                before.is_none() || before.as_ref() == Some(&p.primary),
                "partition {} term {} had two primaries in etcd's history: {before:?} and {}",
                p.id,
                p.term,
                p.primary
            );
        }
    }
    primaries
}
