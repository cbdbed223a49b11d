//! The server mode's figures: three real geodird processes on loopback, driven through the
//! Directory service (`server::client::Connection`), each figure beside a baseline
//! measured in this run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::directory::ObjectType;
use engine::request::{Envelope, Request};
use serde_json::Value;
use server::client::Connection;

use super::{cluster, percentile, raw_db, report, synced, user, Figure};

pub(super) struct Servers {
    children: Vec<(String, Child)>,
    pub(super) grpc: Vec<(String, String)>,
    /// Each server's HTTP address (the Graph API).
    pub(super) http: Vec<(String, String)>,
    root: PathBuf,
    /// Extra geodird arguments (`--control-plane ...`).
    args: Vec<String>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub(super) fn geodird() -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("geodird")
}

impl Servers {
    fn start(root: &Path) -> Servers {
        Servers::start_with(root, &[])
    }

    pub(super) fn start_with(root: &Path, args: &[&str]) -> Servers {
        let mut s = Servers {
            children: Vec::new(),
            grpc: Vec::new(),
            http: Vec::new(),
            root: root.to_path_buf(),
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        for dc in ["westus", "eastus", "westeurope"] {
            s.start_one(dc);
        }
        s
    }

    pub(super) fn start_one(&mut self, dc: &str) {
        use std::io::BufRead as _;
        // Kept after the run (the cluster folder is not): GEODIR_LOG=debug says why a figure failed.
        let log = std::fs::File::create(
            std::env::temp_dir().join(format!("geodir-bench-geodird-{dc}.log")),
        )
        .unwrap();
        let mut child = Command::new(geodird())
            .arg("--cluster")
            .arg(&self.root)
            .args([
                "--datacenter",
                dc,
                "--listen",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
            ])
            .args(&self.args)
            .env(
                "GEODIR_LOG",
                std::env::var("GEODIR_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (build it: cargo build --release --bin geodird)",
                    geodird().display()
                )
            });
        let mut line = String::new();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        std::thread::spawn(move || {
            let mut sink = String::new();
            while out.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        let grpc = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("grpc="))
            .unwrap_or_else(|| panic!("geodird {dc} did not start: {line}"))
            .to_string();
        let http = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http="))
            .unwrap_or_default()
            .to_string();
        self.grpc.retain(|(d, _)| d != dc);
        self.grpc.push((dc.to_string(), grpc));
        self.http.retain(|(d, _)| d != dc);
        self.http.push((dc.to_string(), http));
        self.children.push((dc.to_string(), child));
    }

    pub(super) fn kill(&mut self, dc: &str) {
        for (d, c) in &mut self.children {
            if d == dc {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        self.children.retain(|(d, _)| d != dc);
    }

    /// Partition 0's replica on the server of `dc`, as the primary's server reaches it.
    fn log(&self, rt: &tokio::runtime::Runtime, dc: &str) -> server::remote::RemoteLog {
        let addr = self.grpc_of(dc);
        server::remote::RemoteLog::new(rt.handle().clone(), addr, dc, 0, Duration::from_secs(5))
            .unwrap()
    }

    /// The gRPC address of `dc`'s server.
    pub(super) fn grpc_of(&self, dc: &str) -> &str {
        &self.grpc.iter().find(|(d, _)| d == dc).unwrap().1
    }

    /// The HTTP address (the Graph API) of `dc`'s server.
    pub(super) fn http_of(&self, dc: &str) -> &str {
        &self.http.iter().find(|(d, _)| d == dc).unwrap().1
    }

    pub(super) fn connect(&self, rt: &tokio::runtime::Runtime, dc: &str) -> Connection {
        let addr = self.grpc_of(dc);
        Connection::new(rt.handle().clone(), addr, Duration::from_secs(5), None).unwrap()
    }
}

pub(super) fn create(i: usize) -> Request {
    Request::CreateObject {
        tenant: "contoso".into(),
        object_type: ObjectType::User,
        fields: user(i),
    }
}

pub(super) fn envelope() -> Envelope {
    Envelope {
        actor: "bench".into(),
        correlation_id: "bench".into(),
        datacenter: None,
        token: None,
    }
}

/// Every server-mode figure on one cluster of three servers.
pub(super) fn server_figures(dir: &Path, n: usize, backlog: usize) -> Vec<Value> {
    let (c, _) = cluster(&dir.join("s"));
    let root = c.root().to_path_buf();
    drop(c);
    let mut servers = Servers::start(&root);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let primary = servers.connect(&rt, "westus");
    let env = envelope();
    let mut out = Vec::new();

    // Write latency through the servers, against one raw synced put.
    let mut ours = timed(n, |i| {
        primary
            .execute(&env, &create(i), false, &mut |_| {})
            .unwrap();
    });
    let mut raw = timed_puts(&raw_db(&dir.join("raw-s")), n);
    out.push(report(&Figure {
        name: "server write latency p50 (loopback)",
        unit: "ms",
        value: percentile(&mut ours, 0.5),
        baseline_name: "one raw synced put p50",
        baseline: percentile(&mut raw, 0.5),
        goal: "<= 3x",
    }));

    // The floor under every figure above: a trivial RPC of the same server (Position: a
    // replica's last entry), from a thread as the write's client and the primary's shipping
    // call it. A geo-durable write is two such round trips, one after the other (client to
    // primary, primary to sync standby), and a synced put.
    let eastus = servers.log(&rt, "eastus");
    let mut trips = timed(n, |_| {
        use engine::replica_log::ReplicaLog as _;
        eastus.last().unwrap();
    });
    out.push(report(&Figure {
        name: "server trivial RPC round trip p50 (loopback)",
        unit: "ms",
        value: percentile(&mut trips, 0.5),
        baseline_name: "one raw synced put p50",
        baseline: percentile(&mut raw, 0.5),
        goal: "report: a write's floor is 2 of these + 1 put",
    }));

    // The other floor: the primary's and the sync standby's synced writes run at the same
    // time, but here the three datacenters share one disk. A raw synced put while another
    // RocksDB of the same disk takes synced puts too (two threads, each putting in a loop).
    let (a, b) = (raw_db(&dir.join("raw-a")), raw_db(&dir.join("raw-b")));
    let mut both = std::thread::scope(|s| {
        let other = s.spawn(|| timed_puts(&a, n));
        let mut mine = timed_puts(&b, n);
        mine.extend(other.join().unwrap());
        mine
    });
    out.push(report(&Figure {
        name: "raw synced put p50, beside another on the same disk",
        unit: "ms",
        value: percentile(&mut both, 0.5),
        baseline_name: "one raw synced put p50",
        baseline: percentile(&mut raw, 0.5),
        goal: "report: the primary's and the standby's fsyncs",
    }));

    // Writes/s with 64 concurrent clients, against 64 threads of raw synced puts.
    let clients = 64;
    let per = (n / 4).max(10);
    let next = AtomicUsize::new(1_000_000);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..clients {
            let c = primary.clone();
            let env = env.clone();
            let next = &next;
            s.spawn(move || {
                for _ in 0..per {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    c.execute(&env, &create(i), false, &mut |_| {}).unwrap();
                }
            });
        }
    });
    let ours = (clients * per) as f64 / t.elapsed().as_secs_f64();
    let db = Arc::new(raw_db(&dir.join("raw-s64")));
    let t = Instant::now();
    std::thread::scope(|s| {
        for k in 0..clients {
            let db = db.clone();
            s.spawn(move || {
                for i in 0..per {
                    let v = serde_json::to_vec(&user(i)).unwrap();
                    db.put_opt(format!("k{k:03}{i:08}"), v, &synced()).unwrap();
                }
            });
        }
    });
    let raw = (clients * per) as f64 / t.elapsed().as_secs_f64();
    out.push(report(&Figure {
        name: "server writes/s, 64 clients",
        unit: "writes/s",
        value: ours,
        baseline_name: "64 threads of raw synced puts",
        baseline: raw,
        goal: ">= 0.5x",
    }));
    // The same 64 clients as tasks of one async runtime on one connection: the clients
    // share the machine's cores with the three servers, and 64 threads each woken for its
    // reply cost about as much CPU as the primary's server does.
    let ours = async_writes(&rt, &servers, clients, per);
    out.push(report(&Figure {
        name: "server writes/s, 64 async clients",
        unit: "writes/s",
        value: ours,
        baseline_name: "64 threads of raw synced puts",
        baseline: raw,
        goal: ">= 0.5x",
    }));

    // Replication lag of the asynchronous secondary (westeurope) while writing at full
    // speed: per sampled write, the time from its acknowledgement until westeurope holds it.
    let lags = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let far = servers.log(&rt, "westeurope");
    std::thread::scope(|s| {
        for _ in 0..4 {
            let c = primary.clone();
            let env = env.clone();
            let (next, stop) = (&next, &stop);
            s.spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    c.execute(&env, &create(i), false, &mut |_| {}).unwrap();
                }
            });
        }
        for i in 0..(n / 2).max(20) {
            let (r, _) = primary
                .execute(&env, &create(2_000_000 + i), false, &mut |_| {})
                .unwrap();
            let lsn = r.token.map(|t| t.lsn).unwrap_or(0);
            let acked = Instant::now();
            use engine::replica_log::ReplicaLog as _;
            while far.last().map(|p| p.lsn).unwrap_or(0) < lsn {
                std::hint::spin_loop();
            }
            lags.lock()
                .unwrap()
                .push(acked.elapsed().as_secs_f64() * 1e3);
        }
        stop.store(true, Ordering::SeqCst);
    });
    let mut lags = lags.into_inner().unwrap();
    let p50 = percentile(&mut lags, 0.5);
    out.push(report(&Figure {
        name: "replication lag p99, async secondary",
        unit: "ms",
        value: percentile(&mut lags, 0.99),
        baseline_name: "the same lag, p50",
        baseline: p50,
        goal: "p99 <= 50 ms",
    }));

    // Point reads/s through one server with 16 clients, against the embedded point read.
    let reader = servers.connect(&rt, "eastus");
    let reads = n * 20;
    let t = Instant::now();
    std::thread::scope(|s| {
        for k in 0..16 {
            let c = reader.clone();
            let env = env.clone();
            s.spawn(move || {
                for i in 0..reads / 16 {
                    let upn = format!("bench.user.{}@contoso.com", (i * 16 + k) % n);
                    c.execute(
                        &env,
                        &Request::GetObject {
                            tenant: "contoso".into(),
                            object_type: ObjectType::User,
                            id: upn,
                        },
                        false,
                        &mut |_| {},
                    )
                    .unwrap();
                }
            });
        }
    });
    let ours = reads as f64 / t.elapsed().as_secs_f64();
    // The embedded point read of the same replica: its server stopped, opened in-process.
    servers.kill("eastus");
    let embedded = {
        use engine::client::Directory as _;
        let c = engine::cluster::Cluster::open(
            &root,
            engine::cluster::ClusterOptions {
                region: Some("eastus".into()),
                ..Default::default()
            },
        )
        .unwrap();
        let mut d = engine::client::Embedded::new(c);
        let t = Instant::now();
        for i in 0..reads / 4 {
            let upn = format!("bench.user.{}@contoso.com", i % n);
            d.execute(
                &env,
                Request::GetObject {
                    tenant: "contoso".into(),
                    object_type: ObjectType::User,
                    id: upn,
                },
            )
            .unwrap();
        }
        (reads / 4) as f64 / t.elapsed().as_secs_f64()
    };
    servers.start_one("eastus");
    out.push(report(&Figure {
        name: "server point reads/s, 16 clients",
        unit: "reads/s",
        value: ours,
        baseline_name: "embedded point reads/s, 1 thread",
        baseline: embedded,
        goal: "report",
    }));

    // Catch-up of a secondary `backlog` entries behind, from its server's restart until
    // it holds the last entry.
    servers.kill("westeurope");
    let bulk = servers.connect(&rt, "westus");
    std::thread::scope(|s| {
        for k in 0..8 {
            let c = bulk.clone();
            let env = env.clone();
            s.spawn(move || {
                for i in 0..backlog / 8 {
                    c.execute(
                        &env,
                        &create(3_000_000 + k * backlog + i),
                        false,
                        &mut |_| {},
                    )
                    .unwrap();
                }
            });
        }
    });
    let (r, _) = bulk
        .execute(&env, &create(9_000_000), false, &mut |_| {})
        .unwrap();
    let target = r.token.map(|t| t.lsn).unwrap_or(0);
    let t = Instant::now();
    servers.start_one("westeurope");
    let far = servers.log(&rt, "westeurope");
    let started = t.elapsed().as_secs_f64();
    use engine::replica_log::ReplicaLog as _;
    while far.last().map(|p| p.lsn).unwrap_or(0) < target {
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = t.elapsed().as_secs_f64();
    out.push(report(&Figure {
        name: "catch-up of a restarted secondary",
        unit: "s",
        value: took,
        baseline_name: "of which the server's start",
        baseline: started,
        goal: "<= 2 s for 100,000 entries",
    }));
    out
}

/// Writes/s of `clients` concurrent tasks, `per` writes each, through the generated client
/// of the primary's server (westus) on one connection.
fn async_writes(
    rt: &tokio::runtime::Runtime,
    servers: &Servers,
    clients: usize,
    per: usize,
) -> f64 {
    let addr = servers.grpc_of("westus").to_string();
    rt.block_on(async move {
        let channel = tonic::transport::Endpoint::from_shared(addr)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let env = serde_json::to_vec(&envelope()).unwrap();
        let t = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|k| {
                let mut c = server::pb::directory_client::DirectoryClient::new(channel.clone());
                let env = env.clone();
                tokio::spawn(async move {
                    for i in 0..per {
                        let request = serde_json::to_vec(&create(5_000_000 + k * per + i)).unwrap();
                        let req = server::pb::ExecuteRequest {
                            envelope: env.clone(),
                            request,
                            forwarded: false,
                        };
                        let mut events = c.execute(req).await.unwrap().into_inner();
                        let mut replied = false;
                        while let Some(e) = events.message().await.unwrap() {
                            replied |=
                                matches!(e.event, Some(server::pb::execute_event::Event::Reply(_)));
                        }
                        assert!(replied, "write {k}/{i} ended without a reply");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        (clients * per) as f64 / t.elapsed().as_secs_f64()
    })
}

/// `f(0..n)`, one after the other: each call's time in ms.
fn timed(n: usize, mut f: impl FnMut(usize)) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let t = Instant::now();
            f(i);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

/// `n` raw synced puts of the bench's users, one after the other: each one's time in ms.
fn timed_puts(db: &rocksdb::DB, n: usize) -> Vec<f64> {
    let values: Vec<Vec<u8>> = (0..n)
        .map(|i| serde_json::to_vec(&user(i)).unwrap())
        .collect();
    timed(n, |i| {
        db.put_opt(format!("k{i:08}"), &values[i], &synced())
            .unwrap()
    })
}
