//! geodir's benchmarks. Each figure is printed beside a baseline measured in the same run
//! on the same data (raw RocksDB with the same sync settings), and the run ends with a JSON
//! summary. Run with `scripts/bench`. `GEODIR_BENCH_BACKUP_MB` sets the backup figure's data
//! size (default 1024 MB; 102 with `GEODIR_BENCH_QUICK`), `GEODIR_BENCH_IMPORT_N` the bulk
//! import's object count (default 100,000; 10,000 with `GEODIR_BENCH_QUICK`).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use engine::access::{self, Effect};
use engine::cluster::{Cluster, ClusterOptions};
use engine::directory::{self, ObjectType, Txn};
use engine::topology::{parse_datacenter, TenantPlacement};
use serde_json::{json, Map, Value};

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

fn write_latency(dir: &Path, n: usize) -> Vec<Value> {
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

fn bulk_import(dir: &Path, n: usize, batch: usize) -> Vec<Value> {
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

fn point_reads(dir: &Path, n: usize, reads: usize) -> Vec<Value> {
    let (mut c, tid) = cluster(&dir.join("r"));
    let now = "2026-11-29T00:00:00Z";
    let objs: Vec<_> = (0..n).map(user).collect();
    let mut ids = Vec::new();
    for chunk in objs.chunks(1000) {
        let (mut got, _) = c
            .write(0, None, |r| {
                let mut x = Txn::new(r);
                let mut v = Vec::new();
                for o in chunk {
                    v.push(
                        directory::create(&mut x, &tid, ObjectType::User, o.clone(), now)?["id"]
                            .as_str()
                            .unwrap()
                            .to_string(),
                    );
                }
                Ok((x.into_ops(), v))
            })
            .unwrap();
        ids.append(&mut got);
    }
    c.sync(0, &mut |_| {}).unwrap();
    c.release_all();
    c.read(0, Some("eastus"), None, |_| Ok(())).unwrap();
    let t = Instant::now();
    for i in 0..reads {
        let id = &ids[(i * 7919) % ids.len()];
        c.read(0, Some("eastus"), None, |r| directory::get_raw(r, &tid, id))
            .unwrap();
    }
    let ours = reads as f64 / t.elapsed().as_secs_f64();
    // Baseline on the same data: the same secondary's RocksDB opened raw (read-only, as a
    // read opens it), the same keys (built beforehand), plain gets.
    c.release_all();
    let keys: Vec<Vec<u8>> = ids
        .iter()
        .map(|id| directory::object_key(&tid, &uuid::Uuid::parse_str(id).unwrap()).unwrap())
        .collect();
    let path = dir.join("r").join("cluster").join("dc-eastus").join("p0");
    let db = rocksdb::DB::open_cf_for_read_only(
        &rocksdb::Options::default(),
        &path,
        ["default", "log", "meta"],
        false,
    )
    .unwrap();
    let t = Instant::now();
    for i in 0..reads {
        let v = db.get(&keys[(i * 7919) % keys.len()]).unwrap();
        std::hint::black_box(v);
    }
    let raw = reads as f64 / t.elapsed().as_secs_f64();
    vec![report(&Figure {
        name: "point reads from a secondary",
        unit: "reads/s",
        value: ours,
        baseline_name: "raw RocksDB get, same files, read-only",
        baseline: raw,
        goal: "ratio >= 0.8",
    })]
}

fn catch_up(dir: &Path, entries: usize) -> Vec<Value> {
    let (mut c, tid) = cluster(&dir.join("c"));
    let now = "2026-11-29T00:00:00Z";
    for i in 0..entries {
        let o = user(i);
        c.write(0, None, |r| {
            let mut x = Txn::new(r);
            directory::create(&mut x, &tid, ObjectType::User, o, now)?;
            Ok((x.into_ops(), ()))
        })
        .unwrap();
    }
    let t = Instant::now();
    let rep = c.sync(0, &mut |_| {}).unwrap();
    let ours = t.elapsed().as_secs_f64();
    assert!(
        rep.iter().any(|r| r.shipped_entries as usize == entries),
        "{rep:?}"
    );
    // Baseline: the same entries' data loaded raw, in batches of the same size, one sync each.
    let db = raw_db(&dir.join("raw-c"));
    let t = Instant::now();
    for b in 0..entries.div_ceil(512) {
        let mut wb = rocksdb::WriteBatch::default();
        for i in b * 512..((b + 1) * 512).min(entries) {
            wb.put(format!("k{i:08}"), serde_json::to_vec(&user(i)).unwrap());
        }
        db.write_opt(wb, &synced()).unwrap();
    }
    let raw = t.elapsed().as_secs_f64();
    vec![report(&Figure {
        name: "catch-up of a secondary 10,000 entries behind",
        unit: "s",
        value: ours,
        baseline_name: "raw RocksDB load of the data, 512/sync",
        baseline: raw,
        goal: "report seconds",
    })]
}

fn cli_get_wall(dir: &Path) -> Vec<Value> {
    let exe = env!("CARGO_BIN_EXE_dirctl");
    let root = dir.join("fixtures-cluster");
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures");
    let run = |args: &[&str]| {
        let out = Command::new(exe)
            .args(args)
            .env("DIRCTL_CLUSTER", &root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dirctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    run(&["init", "--datacenters", &DCS.join(","), "--partitions", "4"]);
    run(&["tenant", "create", "contoso"]);
    run(&[
        "import",
        "--tenant",
        "contoso",
        &format!("{fixtures}/contoso.jsonl"),
    ]);
    run(&["sync"]);
    let first = std::fs::read_to_string(format!("{fixtures}/contoso.jsonl")).unwrap();
    let upn = serde_json::from_str::<Value>(first.lines().next().unwrap()).unwrap()
        ["userPrincipalName"]
        .as_str()
        .unwrap()
        .to_string();
    let mut ours = Vec::new();
    let mut base = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        run(&[
            "user",
            "get",
            "--tenant",
            "contoso",
            &upn,
            "--region",
            "westeurope",
        ]);
        ours.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        run(&["--version"]);
        base.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (m, b) = (percentile(&mut ours, 0.5), percentile(&mut base, 0.5));
    vec![report(&Figure {
        name: "dirctl user get wall (fixtures)",
        unit: "ms",
        value: m,
        baseline_name: "dirctl --version wall",
        baseline: b,
        goal: "value < 50 ms",
    })]
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn sh(script: &str) -> f64 {
    let t = Instant::now();
    let st = Command::new("sh").arg("-c").arg(script).status().unwrap();
    assert!(st.success(), "{script}");
    t.elapsed().as_secs_f64()
}

/// Backup create and restore MB/s on `mb` MB of directory data (checkpoint bytes), beside
/// `tar -c | zstd -3` and `zstd -d | tar -x` of the same checkpoint files.
fn backup_throughput(dir: &Path, mb: u64) -> Vec<Value> {
    let (mut c, tid) = cluster(&dir.join("b"));
    let now = "2026-11-29T00:00:00Z";
    // Directory data that compresses like real attributes do, not like zeros.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut text = |n: usize| -> String {
        (0..n)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                b"abcdefghijklmnopqrstuvwxyz  eeeaaoo"[(seed >> 33) as usize % 35] as char
            })
            .collect()
    };
    let mut i = 0;
    let cp = dir.join("b-checkpoint");
    loop {
        for _ in 0..8 {
            let objs: Vec<_> = (i..i + 500)
                .map(|k| {
                    // 2,000 characters of text, in two fields of at most 1,024.
                    let mut u = user(k);
                    u.insert("jobTitle".into(), Value::from(text(1000)));
                    u.insert("department".into(), Value::from(text(1000)));
                    u
                })
                .collect();
            i += 500;
            c.write(0, None, |r| {
                let mut x = Txn::new(r);
                for o in objs {
                    directory::create(&mut x, &tid, ObjectType::User, o, now)?;
                }
                Ok((x.into_ops(), ()))
            })
            .unwrap();
        }
        let _ = std::fs::remove_dir_all(&cp);
        c.checkpoint_partition(0, &cp).unwrap();
        if dir_bytes(&cp) >= mb << 20 {
            break;
        }
    }
    let bytes = dir_bytes(&cp) as f64 / (1 << 20) as f64;
    let dest = dir.join("b-backups");
    let t = Instant::now();
    let opts = backup::CreateOptions {
        dest: dest.clone(),
        force: true,
        now: chrono::Utc::now(),
    };
    let made = backup::create(&mut c, &opts, &mut |_, _| {}).unwrap();
    let ours = bytes / t.elapsed().as_secs_f64();
    let backup::Created::New(_, archive) = made else {
        panic!("no backup made")
    };
    let base_tar = dir.join("b-base.tar.zst");
    let base = bytes
        / sh(&format!(
            "tar -c -C {} . | zstd -3 -q -f -o {}",
            cp.display(),
            base_tar.display()
        ));
    let t = Instant::now();
    backup::restore_to(&archive, &dir.join("b-restored"), backup::Limits::default()).unwrap();
    let ours_r = bytes / t.elapsed().as_secs_f64();
    let out = dir.join("b-base-out");
    std::fs::create_dir_all(&out).unwrap();
    let base_r = bytes
        / sh(&format!(
            "zstd -d -q -c {} | tar -x -C {}",
            base_tar.display(),
            out.display()
        ));
    println!("backup data: {bytes:.0} MB of checkpoint files ({i} users)");
    vec![
        report(&Figure {
            name: "backup create",
            unit: "MB/s",
            value: ours,
            baseline_name: "tar -c | zstd -3, same files",
            baseline: base,
            goal: "ratio >= 0.8",
        }),
        report(&Figure {
            name: "backup restore (verify + 3 DCs)",
            unit: "MB/s",
            value: ours_r,
            baseline_name: "zstd -d | tar -x, same files",
            baseline: base_r,
            goal: "ratio >= 0.8",
        }),
    ]
}

/// Planned failovers while a writer runs: the write-unavailability window each reports
/// (fence to switch), and the longest gap between the writer's acknowledgements.
fn planned_failover_window(dir: &Path, failovers: usize) -> Vec<Value> {
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
fn emergency_failover_window(dir: &Path, rounds: usize) -> Vec<Value> {
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

/// `access check` on the fixtures (contoso: 6,000 users, groups nested 6 levels): every
/// user's groups walked transitively, beside a plain point read (`directory::get`) of the
/// same users on the same secondary in the same run.
fn access_checks(dir: &Path, checks: usize) -> Vec<Value> {
    let (mut c, tid) = cluster(&dir.join("a"));
    let now = "2026-11-29T00:00:00Z";
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/contoso.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<Map<String, Value>> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut users = Vec::new();
    let mut groups = Vec::new();
    for chunk in lines.chunks(1000) {
        let (got, _) = c
            .write(0, None, |r| {
                let mut x = Txn::new(r);
                let mut v = Vec::new();
                for o in chunk {
                    let mut o = o.clone();
                    let ty = ObjectType::parse(o.remove("@odata.type").unwrap().as_str().unwrap())?;
                    let members = o.remove("members");
                    let obj = directory::create(&mut x, &tid, ty, o, now)?;
                    let id = obj["id"].as_str().unwrap().to_string();
                    for m in members.iter().flat_map(|m| m.as_array().cloned().unwrap()) {
                        directory::add_member(&mut x, &tid, &id, m.as_str().unwrap())?;
                    }
                    v.push((ty, id));
                }
                Ok((x.into_ops(), v))
            })
            .unwrap();
        for (ty, id) in got {
            match ty {
                ObjectType::User => users.push(id),
                ObjectType::Group => groups.push(id),
                _ => {}
            }
        }
    }
    c.write(0, None, |r| {
        let mut x = Txn::new(r);
        for (i, g) in groups.iter().enumerate().filter(|(i, _)| i % 10 == 0) {
            let effect = if i % 40 == 0 {
                Effect::Deny
            } else {
                Effect::Allow
            };
            access::grant(&mut x, &tid, g, "payroll", "read", effect, now)?;
        }
        Ok((x.into_ops(), ()))
    })
    .unwrap();
    c.sync(0, &mut |_| {}).unwrap();
    c.release_all();
    c.read(0, Some("eastus"), None, |_| Ok(())).unwrap();
    let t = Instant::now();
    let mut principals = 0;
    for i in 0..checks {
        let id = &users[(i * 7919) % users.len()];
        let (d, _) = c
            .read(0, Some("eastus"), None, |r| {
                access::check(r, &tid, id, "payroll", "read")
            })
            .unwrap();
        principals += d.principals_checked;
    }
    let ours = checks as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for i in 0..checks {
        let id = &users[(i * 7919) % users.len()];
        c.read(0, Some("eastus"), None, |r| directory::get(r, &tid, id))
            .unwrap();
    }
    let plain = checks as f64 / t.elapsed().as_secs_f64();
    println!(
        "access check: {} users, {} groups, {:.1} principals walked per check",
        users.len(),
        groups.len(),
        principals as f64 / checks as f64
    );
    vec![report(&Figure {
        name: "access check (fixtures, nested groups)",
        unit: "checks/s",
        value: ours,
        baseline_name: "directory::get point read",
        baseline: plain,
        goal: "ratio >= 0.3",
    })]
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
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({"benchmarks": all})).unwrap()
    );
}
