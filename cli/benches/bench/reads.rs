//! Read figures: point reads and catch-up of a secondary, `dirctl user get` wall time and
//! access checks.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use engine::access::{self, Effect};
use engine::directory::{self, ObjectType, Txn};
use serde_json::{Map, Value};

use super::{cluster, percentile, raw_db, report, synced, user, Figure, DCS};

pub(super) fn point_reads(dir: &Path, n: usize, reads: usize) -> Vec<Value> {
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

pub(super) fn catch_up(dir: &Path, entries: usize) -> Vec<Value> {
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

pub(super) fn cli_get_wall(dir: &Path) -> Vec<Value> {
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

/// `access check` on the fixtures (contoso: 6,000 users, groups nested 6 levels): every
/// user's groups walked transitively, beside a plain point read (`directory::get`) of the
/// same users on the same secondary in the same run.
pub(super) fn access_checks(dir: &Path, checks: usize) -> Vec<Value> {
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
