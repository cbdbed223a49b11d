//! geodir's benchmarks. Each figure is printed beside a baseline measured in the same run
//! on the same data (raw RocksDB with the same sync settings), and the run ends with a JSON
//! summary. Run with `scripts/bench`. `GEODIR_BENCH_BACKUP_MB` sets the backup figure's data
//! size (default 1024 MB; 102 with `GEODIR_BENCH_QUICK`), `GEODIR_BENCH_IMPORT_N` the bulk
//! import's object count (default 100,000; 10,000 with `GEODIR_BENCH_QUICK`),
//! `GEODIR_BENCH_SCRUB_MB` the scrubbed replica's size (default 512 MB; 51 quick).
#![allow(clippy::unwrap_used)]

use std::path::Path;

use engine::cluster::{Cluster, ClusterOptions};
use engine::topology::{parse_datacenter, TenantPlacement};
use serde_json::{json, Map, Value};

mod backups;
mod etcd;
mod failover;
mod graph;
mod reads;
mod scrub;
mod server;
mod writes;

use backups::backup_throughput;
use failover::{emergency_failover_window, planned_failover_window};
use reads::{access_checks, catch_up, cli_get_wall, point_reads};
use scrub::scrub_throughput;
use server::server_figures;
use writes::{bulk_import, write_latency};

const DCS: [&str; 3] = [
    "westus@37.4,-122.1",
    "eastus@37.4,-79.4",
    "westeurope@52.4,4.9",
];

fn user(i: usize) -> Map<String, Value> {
    json!({"userPrincipalName": format!("bench.user.{i}@contoso.com"), "displayName": format!("Bench User {i}"),
           "mail": format!("bench.user.{i}@contoso.com"), "department": "Engineering", "jobTitle": "Engineer"})
    .as_object()
    .cloned()
    .unwrap()
}

fn cluster(dir: &Path) -> (Cluster, String) {
    let root = dir.join("cluster");
    Cluster::init(
        &root,
        DCS.iter().map(|s| parse_datacenter(s).unwrap()).collect(),
        1,
    )
    .unwrap();
    let mut c = Cluster::open(&root, ClusterOptions::default()).unwrap();
    let tid = uuid::Uuid::new_v4().to_string();
    c.update_topology(|t| {
        t.tenants.insert(
            "contoso".into(),
            TenantPlacement {
                id: tid.clone(),
                partition: 0,
            },
        );
        Ok(())
    })
    .unwrap();
    (c, tid)
}

fn raw_db(dir: &Path) -> rocksdb::DB {
    let mut o = rocksdb::Options::default();
    o.create_if_missing(true);
    rocksdb::DB::open(&o, dir).unwrap()
}

fn synced() -> rocksdb::WriteOptions {
    let mut w = rocksdb::WriteOptions::default();
    w.set_sync(true);
    w
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

struct Figure {
    name: &'static str,
    unit: &'static str,
    value: f64,
    baseline_name: &'static str,
    baseline: f64,
    /// value / baseline for throughputs, baseline-relative cost for latencies (value / baseline).
    goal: &'static str,
}

fn report(f: &Figure) -> Value {
    let ratio = f.value / f.baseline;
    println!(
        "{:<44} {:>12.3} {:<9} baseline {:<34} {:>12.3}  ratio {:.2}  (goal {})",
        f.name, f.value, f.unit, f.baseline_name, f.baseline, ratio, f.goal
    );
    json!({"figure": f.name, "unit": f.unit, "value": f.value, "baseline": f.baseline_name, "baseline_value": f.baseline, "ratio": ratio, "goal": f.goal})
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let quick = std::env::var("GEODIR_BENCH_QUICK").is_ok();
    let scale = if quick { 10 } else { 1 };
    println!("geodir benchmarks (each beside a baseline measured in this run)");
    let mut all = Vec::new();
    // GEODIR_BENCH_ONLY=a,b runs only the figures whose function names are listed.
    let only = std::env::var("GEODIR_BENCH_ONLY").ok();
    let run = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|x| x == name))
    };
    if run("write_latency") {
        all.extend(write_latency(dir.path(), 300 / scale));
    }
    if run("bulk_import") {
        let n = std::env::var("GEODIR_BENCH_IMPORT_N")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000 / scale);
        all.extend(bulk_import(dir.path(), n, 1000));
    }
    if run("point_reads") {
        all.extend(point_reads(dir.path(), 10_000 / scale, 200_000 / scale));
    }
    if run("catch_up") {
        all.extend(catch_up(dir.path(), 10_000 / scale));
    }
    if run("cli_get_wall") {
        all.extend(cli_get_wall(dir.path()));
    }
    if run("planned_failover_window") {
        all.extend(planned_failover_window(dir.path(), 20));
    }
    if run("emergency_failover_window") {
        all.extend(emergency_failover_window(dir.path(), 5));
    }
    if run("access_checks") {
        all.extend(access_checks(dir.path(), 100_000 / scale));
    }
    // GEODIR_BENCH_BACKUP_MB: how much directory data the backup figure uses (default 1 GiB).
    let backup_mb = std::env::var("GEODIR_BENCH_BACKUP_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024 / scale as u64);
    if run("backup_throughput") {
        all.extend(backup_throughput(dir.path(), backup_mb));
    }
    // GEODIR_BENCH_SCRUB_MB: the scrubbed replica's size (default 512 MB).
    let scrub_mb = std::env::var("GEODIR_BENCH_SCRUB_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512 / scale as u64);
    if run("scrub_throughput") {
        all.extend(scrub_throughput(dir.path(), scrub_mb));
    }
    // GEODIR_BENCH_CATCH_UP_N: the restarted secondary's backlog (default 100,000 entries).
    let backlog = std::env::var("GEODIR_BENCH_CATCH_UP_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000 / scale);
    if run("server") {
        all.extend(server_figures(dir.path(), 300 / scale, backlog));
    }
    // GEODIR_BENCH_GRAPH_SECS: how long each wrk run of the Graph figures lasts (default 10 s).
    let graph_secs = std::env::var("GEODIR_BENCH_GRAPH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 3 } else { 10 });
    if run("graph") {
        all.extend(graph::graph_figures(dir.path(), graph_secs));
    }
    if run("etcd") {
        all.extend(etcd::etcd_figures(dir.path()));
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({"benchmarks": all})).unwrap()
    );
}
