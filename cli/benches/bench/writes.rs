//! Write figures: replicated write latency and bulk import, each beside raw RocksDB.

use std::path::Path;
use std::time::{Duration, Instant};

use engine::directory::{self, ObjectType, Txn};
use serde_json::{json, Value};

use super::{cluster, percentile, raw_db, report, synced, user, Figure};

pub(super) fn write_latency(dir: &Path, n: usize) -> Vec<Value> {
    let (mut c, tid) = cluster(&dir.join("w"));
    let now = "2026-11-29T00:00:00Z";
    let mut ours = Vec::with_capacity(n);
    for i in 0..n {
        let o = user(i);
        let t = Instant::now();
        c.write(0, None, |r| {
            let mut x = Txn::new(r);
            directory::create(&mut x, &tid, ObjectType::User, o, now)?;
            Ok((x.into_ops(), ()))
        })
        .unwrap();
        ours.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let db = raw_db(&dir.join("raw-w"));
    let mut raw = Vec::with_capacity(n);
    for i in 0..n {
        let v = serde_json::to_vec(&user(i)).unwrap();
        let t = Instant::now();
        db.put_opt(format!("k{i:08}"), v, &synced()).unwrap();
        raw.push(t.elapsed().as_secs_f64() * 1e3);
    }
    // The floor of any geo-durable write here: two raw synced puts in parallel (two
    // databases, the second on a long-lived thread), as the primary and the standby do.
    let db2 = std::sync::Arc::new(raw_db(&dir.join("raw-w2")));
    let (jobs, rx) = std::sync::mpsc::channel::<(usize, std::sync::mpsc::Sender<()>)>();
    let other = db2.clone();
    let helper = std::thread::spawn(move || {
        for (i, done) in rx {
            let v = serde_json::to_vec(&user(i)).unwrap();
            other.put_opt(format!("k{i:08}"), v, &synced()).unwrap();
            done.send(()).unwrap();
        }
    });
    let mut pair = Vec::with_capacity(n);
    for i in 0..n {
        let v = serde_json::to_vec(&user(i)).unwrap();
        let t = Instant::now();
        let (tx, done) = std::sync::mpsc::channel();
        jobs.send((i, tx)).unwrap();
        db.put_opt(format!("p{i:08}"), v, &synced()).unwrap();
        done.recv().unwrap();
        pair.push(t.elapsed().as_secs_f64() * 1e3);
    }
    drop(jobs);
    helper.join().unwrap();
    let (m, r) = (
        percentile(&mut ours.clone(), 0.5),
        percentile(&mut raw.clone(), 0.5),
    );
    let floor = percentile(&mut pair, 0.5);
    println!(
        "  (floor: two raw synced puts in parallel, median {floor:.3} ms = {:.2}x one put; ours is {:.3} ms above it)",
        floor / r,
        m - floor
    );
    let (m99, r99) = (percentile(&mut ours, 0.99), percentile(&mut raw, 0.99));
    vec![
        report(&Figure {
            name: "replicated write latency median",
            unit: "ms",
            value: m,
            baseline_name: "raw RocksDB synced put median",
            baseline: r,
            goal: "ratio <= 2",
        }),
        json!({"figure": "write latency floor: two raw synced puts in parallel, median", "unit": "ms", "value": floor,
               "baseline": "raw RocksDB synced put median", "baseline_value": r, "ratio": floor / r, "goal": "informational: the floor of the <= 2x goal"}),
        report(&Figure {
            name: "replicated write latency p99",
            unit: "ms",
            value: m99,
            baseline_name: "raw RocksDB synced put p99",
            baseline: r99,
            goal: "ratio <= 2",
        }),
    ]
}

pub(super) fn bulk_import(dir: &Path, n: usize, batch: usize) -> Vec<Value> {
    let (mut c, tid) = cluster(&dir.join("i"));
    let now = "2026-11-29T00:00:00Z";
    let objs: Vec<_> = (0..n).map(user).collect();
    // Our side takes each object by value, as `dirctl import` does with the lines it parses.
    let batches: Vec<Vec<_>> = objs.chunks(batch).map(<[_]>::to_vec).collect();
    let t = Instant::now();
    let mut building = Duration::ZERO;
    c.write_pipelined(
        0,
        None,
        batches,
        |r, chunk| {
            let b = Instant::now();
            let mut x = Txn::new(r);
            for o in chunk {
                directory::create(&mut x, &tid, ObjectType::User, o, now)?;
            }
            let ops = x.into_ops();
            building += b.elapsed();
            Ok((ops, ()))
        },
        |(), _| {},
    )
    .unwrap();
    let ours = n as f64 / t.elapsed().as_secs_f64();
    eprintln!(
        "import: {:.3} s in all, {:.3} s building batches",
        t.elapsed().as_secs_f64(),
        building.as_secs_f64()
    );
    let db = raw_db(&dir.join("raw-i"));
    let t = Instant::now();
    for (b, chunk) in objs.chunks(batch).enumerate() {
        let mut wb = rocksdb::WriteBatch::default();
        for (i, o) in chunk.iter().enumerate() {
            wb.put(
                format!("k{:08}", b * batch + i),
                serde_json::to_vec(o).unwrap(),
            );
        }
        db.write_opt(wb, &synced()).unwrap();
    }
    let raw = n as f64 / t.elapsed().as_secs_f64();
    // The floor of this design here: what two replicas must write, in raw RocksDB, with none
    // of our code. Per batch one synced WriteBatch holding the log entry (every object and
    // its key), each object under a time-ordered key and a UPN index key (in key order), to
    // two databases in parallel (the second on a long-lived thread).
    let (db1, db2) = (
        raw_db(&dir.join("floor-1")),
        std::sync::Arc::new(raw_db(&dir.join("floor-2"))),
    );
    let (jobs, rx) = std::sync::mpsc::channel::<(Vec<u8>, std::sync::mpsc::Sender<()>)>();
    let other = db2.clone();
    let helper = std::thread::spawn(move || {
        for (data, done) in rx {
            other
                .write_opt(rocksdb::WriteBatch::from_data(&data), &synced())
                .unwrap();
            done.send(()).unwrap();
        }
    });
    let t = Instant::now();
    for (b, chunk) in objs.chunks(batch).enumerate() {
        let mut log = Vec::new();
        let mut kv = Vec::with_capacity(2 * chunk.len());
        for o in chunk {
            let v = serde_json::to_vec(o).unwrap();
            let id = uuid::Uuid::now_v7();
            let mut k = vec![1u8; 17];
            k.extend_from_slice(id.as_bytes());
            log.extend_from_slice(&k);
            log.extend_from_slice(&v);
            let mut u = vec![2u8; 17];
            u.extend_from_slice(o["userPrincipalName"].as_str().unwrap().as_bytes());
            kv.push((u, id.as_bytes().to_vec()));
            kv.push((k, v));
        }
        kv.sort();
        let mut wb = rocksdb::WriteBatch::default();
        wb.put(format!("log{b:08}"), &log);
        for (k, v) in kv {
            wb.put(k, v);
        }
        let (tx, done) = std::sync::mpsc::channel();
        jobs.send((wb.data().to_vec(), tx)).unwrap();
        db1.write_opt(wb, &synced()).unwrap();
        done.recv().unwrap();
    }
    let floor = n as f64 / t.elapsed().as_secs_f64();
    drop(jobs);
    helper.join().unwrap();
    println!(
        "  (floor of this design: the same writes in raw RocksDB to two databases in parallel, {floor:.0} objects/s = {:.2}x the baseline; ours is {:.2}x the floor)",
        floor / raw,
        ours / floor
    );
    vec![
        report(&Figure {
            name: "bulk import",
            unit: "objects/s",
            value: ours,
            baseline_name: "raw RocksDB WriteBatch, 1 sync/batch",
            baseline: raw,
            goal: "ratio >= 0.5",
        }),
        json!({"figure": "bulk import floor: log entry + data + UPN key, raw, two databases in parallel", "unit": "objects/s",
               "value": floor, "baseline": "raw RocksDB WriteBatch, 1 sync/batch", "baseline_value": raw, "ratio": floor / raw,
               "goal": "informational: the floor of the >= 0.5x goal for this design"}),
    ]
}
