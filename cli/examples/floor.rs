#![allow(clippy::unwrap_used)]
use serde_json::{json, Map, Value};
use std::sync::mpsc;
use std::time::Instant;

fn user(i: usize) -> Map<String, Value> {
    json!({"userPrincipalName": format!("bench.user.{i}@contoso.com"), "displayName": format!("Bench User {i}"),
           "mail": format!("bench.user.{i}@contoso.com"), "department": "Engineering", "jobTitle": "Engineer"})
    .as_object().cloned().unwrap()
}
fn raw_db(dir: &std::path::Path, wal: bool) -> rocksdb::DB {
    let mut o = rocksdb::Options::default();
    o.create_if_missing(true);
    let _ = wal;
    rocksdb::DB::open(&o, dir).unwrap()
}
fn synced(wal: bool) -> rocksdb::WriteOptions {
    let mut w = rocksdb::WriteOptions::default();
    if wal {
        w.set_sync(true);
    } else {
        w.disable_wal(true);
    }
    w
}
fn main() {
    let n = 100_000;
    let batch = 1000;
    let dir = tempfile::tempdir_in("/work").unwrap();
    let objs: Vec<_> = (0..n).map(user).collect();
    for round in 0..3 {
        let d = dir.path().join(format!("r{round}"));
        let db = raw_db(&d.join("raw"), true);
        let t = Instant::now();
        for (b, chunk) in objs.chunks(batch).enumerate() {
            let mut wb = rocksdb::WriteBatch::default();
            for (i, o) in chunk.iter().enumerate() {
                wb.put(
                    format!("k{:08}", b * batch + i),
                    serde_json::to_vec(o).unwrap(),
                );
            }
            db.write_opt(wb, &synced(true)).unwrap();
        }
        let raw = n as f64 / t.elapsed().as_secs_f64();
        // variant: objects once + UPN key, two DBs in parallel, pipelined build
        for (name, with_log, upn) in [
            ("primary log+obj+upn, standby log only", true, true),
            ("obj+upn, 2 DBs, pipelined", false, true),
            ("obj only, 2 DBs, pipelined", false, false),
            ("log+obj+upn (today's shape), pipelined", true, true),
        ] {
            let sub = d.join(name.replace([' ', ',', '+', '(', ')', '\''], "_"));
            let dbs: Vec<_> = (0..2)
                .map(|i| std::sync::Arc::new(raw_db(&sub.join(format!("db{i}")), true)))
                .collect();
            let mut txs = Vec::new();
            let mut hs = Vec::new();
            let (dtx, drx) = mpsc::channel::<()>();
            for db in &dbs {
                let (tx, rx) = mpsc::channel::<std::sync::Arc<Vec<u8>>>();
                let db = db.clone();
                let dtx = dtx.clone();
                hs.push(std::thread::spawn(move || {
                    for data in rx {
                        db.write_opt(rocksdb::WriteBatch::from_data(&data), &synced(true))
                            .unwrap();
                        dtx.send(()).unwrap();
                    }
                }));
                txs.push(tx);
            }
            let t = Instant::now();
            let mut inflight = 0;
            for (b, chunk) in objs.chunks(batch).enumerate() {
                let mut log = Vec::new();
                let mut kv = Vec::with_capacity(2 * chunk.len());
                for o in chunk {
                    let v = serde_json::to_vec(o).unwrap();
                    let id = uuid::Uuid::now_v7();
                    let mut k = vec![1u8; 17];
                    k.extend_from_slice(id.as_bytes());
                    if with_log {
                        log.extend_from_slice(&k);
                        log.extend_from_slice(&v);
                    }
                    if upn {
                        let mut u = vec![2u8; 17];
                        u.extend_from_slice(o["userPrincipalName"].as_str().unwrap().as_bytes());
                        kv.push((u, id.as_bytes().to_vec()));
                    }
                    kv.push((k, v));
                }
                kv.sort();
                let mut wb = rocksdb::WriteBatch::default();
                if with_log {
                    wb.put(format!("log{b:08}"), &log);
                } else {
                    wb.put(format!("log{b:08}"), b"term,lsn,crc");
                }
                for (k, v) in kv {
                    wb.put(k, v);
                }
                let data = std::sync::Arc::new(wb.data().to_vec());
                let standby = if name.starts_with("primary") {
                    let mut w = rocksdb::WriteBatch::default();
                    w.put(format!("log{b:08}"), &log);
                    std::sync::Arc::new(w.data().to_vec())
                } else {
                    data.clone()
                };
                for _ in 0..inflight {
                    drx.recv().unwrap();
                }
                txs[0].send(data.clone()).unwrap();
                txs[1].send(standby).unwrap();
                inflight = 2;
            }
            for _ in 0..inflight {
                drx.recv().unwrap();
            }
            let r = n as f64 / t.elapsed().as_secs_f64();
            drop(txs);
            for h in hs {
                h.join().unwrap();
            }
            println!(
                "round {round}: {name}: {r:.0}/s = {:.2}x raw {raw:.0}/s",
                r / raw
            );
        }
    }
}
