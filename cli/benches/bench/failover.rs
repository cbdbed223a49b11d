//! Failover figures: planned and emergency write-unavailability windows.

use std::path::Path;
use std::time::{Duration, Instant};

use engine::cluster::{Cluster, ClusterOptions};
use engine::directory::{self, ObjectType, Txn};
use serde_json::Value;

use super::{cluster, percentile, report, user, Figure};

/// Planned failovers while a writer runs: the write-unavailability window each reports
/// (fence to switch), and the longest gap between the writer's acknowledgements.
pub(super) fn planned_failover_window(dir: &Path, failovers: usize) -> Vec<Value> {
    let (mut c, tid) = cluster(&dir.join("f"));
    let root = dir.join("f").join("cluster");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The failovers start once the writer is writing: each one then falls between acks.
    let (writing, first_ack) = std::sync::mpsc::channel();
    let writer = {
        let (stop, root, tid) = (stop.clone(), root.clone(), tid.clone());
        std::thread::spawn(move || {
            let mut w = Cluster::open(&root, ClusterOptions::default()).unwrap();
            let mut acks = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let o = user(1_000_000 + i);
                i += 1;
                w.write(0, None, |r| {
                    let mut x = Txn::new(r);
                    directory::create(&mut x, &tid, ObjectType::User, o, "2026-11-29T00:00:00Z")?;
                    Ok((x.into_ops(), ()))
                })
                .unwrap();
                acks.push(Instant::now());
                if acks.len() == 1 {
                    writing.send(()).unwrap();
                }
                // Let go of the replicas between writes, as a dirctl process does at exit.
                w.release_all();
            }
            acks
        })
    };
    let dcs = ["eastus", "westeurope", "westus"];
    let mut windows = Vec::new();
    let mut spans = Vec::new();
    first_ack.recv().unwrap();
    for k in 0..failovers {
        let t0 = Instant::now();
        let r = c.failover_planned(0, dcs[k % 3]).unwrap();
        spans.push((t0, Instant::now()));
        windows.push(r.write_unavailable_ms);
        // Pacing, not a condition: let the writer get writes in between failovers.
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let acks = writer.join().unwrap();
    let gaps: Vec<f64> = acks
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64() * 1e3)
        .collect();
    // The writer's longest wait around each failover, and its ordinary gap between writes.
    let mut around: Vec<f64> = spans
        .iter()
        .filter_map(|(a, b)| {
            acks.windows(2)
                .filter(|w| w[1] >= *a && w[0] <= *b)
                .map(|w| (w[1] - w[0]).as_secs_f64() * 1e3)
                .reduce(f64::max)
        })
        .collect();
    let mut normal = gaps.clone();
    let median_gap = percentile(&mut normal, 0.5);
    let (wm, wmax) = (
        percentile(&mut windows.clone(), 0.5),
        percentile(&mut windows, 1.0),
    );
    // A failover with no ack gap around it would be measured as no wait at all.
    assert_eq!(
        around.len(),
        spans.len(),
        "the writer acknowledged no write around some failover"
    );
    let (am, amax) = (
        percentile(&mut around.clone(), 0.5),
        percentile(&mut around, 1.0),
    );
    vec![
        report(&Figure {
            name: "planned failover write-unavailable median",
            unit: "ms",
            value: wm,
            baseline_name: "writer's median gap between acks",
            baseline: median_gap,
            goal: "value <= 100 ms (Entra: 1-2 min)",
        }),
        report(&Figure {
            name: "planned failover write-unavailable max",
            unit: "ms",
            value: wmax,
            baseline_name: "writer's median gap between acks",
            baseline: median_gap,
            goal: "value <= 100 ms",
        }),
        report(&Figure {
            name: "planned failover: writer's ack gap median",
            unit: "ms",
            value: am,
            baseline_name: "writer's median gap between acks",
            baseline: median_gap,
            goal: "value <= 100 ms",
        }),
        report(&Figure {
            name: "planned failover: writer's ack gap max",
            unit: "ms",
            value: amax,
            baseline_name: "writer's median gap between acks",
            baseline: median_gap,
            goal: "value <= 100 ms",
        }),
    ]
}

/// Emergency failovers: from the command (primary's datacenter gone) to the first acknowledged write.
pub(super) fn emergency_failover_window(dir: &Path, rounds: usize) -> Vec<Value> {
    let (mut c, tid) = cluster(&dir.join("e"));
    let root = dir.join("e").join("cluster");
    let write = |c: &mut Cluster, i: usize| {
        let o = user(2_000_000 + i);
        c.write(0, None, |r| {
            let mut x = Txn::new(r);
            directory::create(&mut x, &tid, ObjectType::User, o, "2026-11-29T00:00:00Z")?;
            Ok((x.into_ops(), ()))
        })
        .map(|_| ())
    };
    let mut took = Vec::new();
    let mut normal = Vec::new();
    for k in 0..rounds {
        for j in 0..5 {
            let t = Instant::now();
            write(&mut c, k * 100 + j).unwrap();
            normal.push(t.elapsed().as_secs_f64() * 1e3);
        }
        c.release_all();
        let primary = c.topology().partition(0).unwrap().primary.clone();
        let (home, away) = (
            root.join(format!("dc-{primary}")),
            root.join(format!("away-{primary}")),
        );
        std::fs::rename(&home, &away).unwrap();
        let t = Instant::now();
        c.failover_emergency(0, false).unwrap();
        write(&mut c, k * 100 + 50).unwrap();
        took.push(t.elapsed().as_secs_f64() * 1e3);
        c.release_all();
        std::fs::rename(&away, &home).unwrap();
        c.sync(0, &mut |_| {}).unwrap();
    }
    let (m, mx) = (
        percentile(&mut took.clone(), 0.5),
        percentile(&mut took, 1.0),
    );
    let base = percentile(&mut normal, 0.5);
    vec![
        report(&Figure {
            name: "emergency failover to first ack median",
            unit: "ms",
            value: m,
            baseline_name: "replicated write median",
            baseline: base,
            goal: "value <= 1000 ms (Entra: 1-2 min)",
        }),
        report(&Figure {
            name: "emergency failover to first ack max",
            unit: "ms",
            value: mx,
            baseline_name: "replicated write median",
            baseline: base,
            goal: "value <= 1000 ms",
        }),
    ]
}
