//! The figures of automatic failover with the control plane in etcd: a real etcd
//! (Debian's etcd-server) on free loopback ports, three geodird processes with the default
//! lease TTL, a steady writer, SIGKILL.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use engine::cluster::{Cluster, ClusterOptions};
use engine::directory::ObjectType;
use engine::request::Request;
use engine::topology::{parse_datacenter, TenantPlacement};
use serde_json::Value;

use super::server::{create, envelope, Servers};
use super::{percentile, report, Figure, DCS};

#[path = "../../../server/tests/support/etcd.rs"]
mod etcd_process;

/// The default lease TTL (geodird's `--lease-ttl-secs`).
const TTL: Duration = Duration::from_secs(2);

/// One write the writer sent: when it started and ended, and whether it was acknowledged.
struct Sent {
    upn: String,
    started: Instant,
    ended: Instant,
    ok: bool,
}

pub(super) fn etcd_figures(dir: &Path) -> Vec<Value> {
    let etcd = etcd_process::Etcd::start();
    let address = etcd.address("/bench");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let root = dir.join("etcd-cluster");
    {
        let cp = server::etcd::EtcdControlPlane::connect(
            server::etcd::EtcdAddress::parse(&address).unwrap(),
            rt.handle().clone(),
            Duration::from_secs(2),
        )
        .unwrap();
        let dcs = DCS.iter().map(|s| parse_datacenter(s).unwrap()).collect();
        Cluster::init_with(&root, &cp, dcs, 1).unwrap();
        let mut c = Cluster::open_with(&root, Box::new(cp), ClusterOptions::default()).unwrap();
        c.update_topology(|t| {
            t.tenants.insert(
                "contoso".into(),
                TenantPlacement {
                    id: uuid::Uuid::new_v4().to_string(),
                    partition: 0,
                },
            );
            Ok(())
        })
        .unwrap();
    }
    let mut servers = Servers::start_with(&root, &["--control-plane", &address]);
    let env = envelope();
    let mut out = Vec::new();

    // A steady writer through eastus's server (the sync standby: it forwards to westus,
    // the primary, until it is the primary itself).
    let writer = servers.connect(&rt, "eastus");
    let sent: Mutex<Vec<Sent>> = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let next = AtomicUsize::new(0);
    let write_until_stopped = || {
        while !stop.load(Ordering::SeqCst) {
            let i = next.fetch_add(1, Ordering::SeqCst);
            let started = Instant::now();
            let ok = writer.execute(&env, &create(i), false, &mut |_| {}).is_ok();
            sent.lock().unwrap().push(Sent {
                upn: format!("bench.user.{i}@contoso.com"),
                started,
                ended: Instant::now(),
                ok,
            });
        }
    };
    let acked = |sent: &Mutex<Vec<Sent>>| sent.lock().unwrap().iter().filter(|s| s.ok).count();
    let wait = |what: &str, mut cond: Box<dyn FnMut() -> bool + '_>| {
        let until = Instant::now() + Duration::from_secs(60);
        while !cond() {
            assert!(Instant::now() < until, "{what}: not within 60 s");
            std::thread::sleep(Duration::from_millis(5));
        }
    };

    // kill -9 of the primary's server: until the first write sent after it is acknowledged.
    let mut killed = Instant::now();
    std::thread::scope(|s| {
        s.spawn(write_until_stopped);
        wait("100 writes acknowledged", Box::new(|| acked(&sent) >= 100));
        servers.kill("westus");
        killed = Instant::now();
        wait(
            "a write sent after the kill acknowledged",
            Box::new(|| {
                sent.lock()
                    .unwrap()
                    .iter()
                    .any(|w| w.ok && w.started > killed)
            }),
        );
        stop.store(true, Ordering::SeqCst);
    });
    let back = sent
        .lock()
        .unwrap()
        .iter()
        .filter(|w| w.ok && w.started > killed)
        .map(|w| w.ended)
        .min()
        .unwrap();
    out.push(report(&Figure {
        name: "kill -9 of the primary's server to a write",
        unit: "s",
        value: (back - killed).as_secs_f64(),
        baseline_name: "the lease TTL",
        baseline: TTL.as_secs_f64(),
        goal: "<= 3 s (Patroni ~13 s, Entra 1-2 min)",
    }));

    // Every acknowledged write, read at the new primary.
    let acked_upns: Vec<String> = sent
        .lock()
        .unwrap()
        .iter()
        .filter(|w| w.ok)
        .map(|w| w.upn.clone())
        .collect();
    let lost = acked_upns
        .iter()
        .filter(|upn| {
            let get = Request::GetObject {
                tenant: "contoso".into(),
                object_type: ObjectType::User,
                id: upn.to_string(),
            };
            writer.execute(&env, &get, false, &mut |_| {}).is_err()
        })
        .count();
    out.push(report(&Figure {
        name: "acknowledged writes lost in that failover",
        unit: "writes",
        value: lost as f64,
        baseline_name: "writes acknowledged",
        baseline: acked_upns.len() as f64,
        goal: "0",
    }));

    // A planned failover under the writer (eastus, now the primary, to westeurope): the
    // longest time without an acknowledgement, against the writer's usual gap.
    sent.lock().unwrap().clear();
    stop.store(false, Ordering::SeqCst);
    let primary = servers.connect(&rt, "eastus");
    let mut window = (Instant::now(), Instant::now());
    std::thread::scope(|s| {
        s.spawn(write_until_stopped);
        wait("200 writes acknowledged", Box::new(|| acked(&sent) >= 200));
        let started = Instant::now();
        primary
            .failover(0, "westeurope", false, false, None)
            .unwrap();
        window = (started, Instant::now());
        let after = acked(&sent);
        wait(
            "writes acknowledged after the planned failover",
            Box::new(|| acked(&sent) >= after + 50),
        );
        stop.store(true, Ordering::SeqCst);
    });
    let ends: Vec<Instant> = sent
        .lock()
        .unwrap()
        .iter()
        .filter(|w| w.ok)
        .map(|w| w.ended)
        .collect();
    let gaps: Vec<(Instant, f64)> = ends
        .windows(2)
        .map(|w| (w[1], (w[1] - w[0]).as_secs_f64() * 1e3))
        .collect();
    let unavailable = gaps
        .iter()
        .filter(|(end, _)| *end >= window.0)
        .map(|(_, g)| *g)
        .fold(0.0, f64::max);
    let mut usual: Vec<f64> = gaps
        .iter()
        .filter(|(end, _)| *end < window.0)
        .map(|(_, g)| *g)
        .collect();
    out.push(report(&Figure {
        name: "planned failover write unavailability (etcd)",
        unit: "ms",
        value: unavailable,
        baseline_name: "gap between acknowledgements p50",
        baseline: percentile(&mut usual, 0.5),
        goal: "<= 100 ms",
    }));

    // A server killed: until `dirctl health` exits non-zero, against one healthy run.
    // westus's server first comes back (its replica rejoins as a secondary).
    servers.start_one("westus");
    let backups = dir.join("etcd-backups");
    let endpoints: Vec<String> = servers.grpc.iter().map(|(_, g)| g.clone()).collect();
    let dirctl = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dirctl"))
            .args(args)
            .env("DIRCTL_ENDPOINTS", endpoints.join(","))
            .env_remove("DIRCTL_CLUSTER")
            .output()
            .unwrap()
    };
    let made = dirctl(&["backup", "create", "--dest", &backups.display().to_string()]);
    assert!(made.status.success(), "backup create: {made:?}");
    let health = || dirctl(&["health", "--dest", &backups.display().to_string()]);
    let t = Instant::now();
    let healthy = health();
    let one_run = t.elapsed();
    assert!(
        healthy.status.success(),
        "health before the kill: {healthy:?}"
    );
    servers.kill("eastus");
    let killed = Instant::now();
    let until = killed + Duration::from_secs(60);
    while health().status.success() {
        assert!(Instant::now() < until, "health stayed zero for 60 s");
    }
    out.push(report(&Figure {
        name: "server killed to `dirctl health` non-zero",
        unit: "s",
        value: killed.elapsed().as_secs_f64(),
        baseline_name: "one healthy `dirctl health` run",
        baseline: one_run.as_secs_f64(),
        goal: "<= 10 s (Entra: under 5 min)",
    }));
    drop(servers);
    drop(etcd);
    out
}
