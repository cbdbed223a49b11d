//! dirctl through the real binary: held replicas, concurrent writers, a corrupt log, clean reads.
#![allow(clippy::unwrap_used)]

mod util;

use std::path::{Path, PathBuf};

use util::{dirctl, Cluster};

#[test]
fn a_replica_held_by_another_process_is_waited_for_then_fails_clearly() {
    let c = Cluster::new();
    let lock = std::fs::File::options()
        .read(true)
        .write(true)
        .open(c.dc_dir("westus").join("p0").join("geodir.lock"))
        .unwrap();
    lock.lock().unwrap();
    let start = std::time::Instant::now();
    let r = c.fails(
        &[
            "user",
            "create",
            "--tenant",
            "contoso",
            "--upn",
            "l@contoso.com",
            "--display-name",
            "l",
            "--lock-timeout-ms",
            "300",
        ],
        5,
    );
    assert!(start.elapsed() >= std::time::Duration::from_millis(300));
    assert!(
        r.stderr
            .contains("held by another process: a dirctl command"),
        "{}",
        r.describe()
    );
    lock.unlock().unwrap();
    c.create_user("l@contoso.com");
}

#[test]
fn a_held_control_plane_is_waited_for_then_fails_clearly_and_changes_nothing() {
    let c = Cluster::new();
    let before = std::fs::read(c.root.join("cluster.json")).unwrap();
    let lock = std::fs::File::options()
        .read(true)
        .write(true)
        .open(c.root.join("cluster.lock"))
        .unwrap();
    lock.lock().unwrap();
    let start = std::time::Instant::now();
    let r = c.fails(
        &["dc", "drain", "--yes", "westus", "--lock-timeout-ms", "300"],
        5,
    );
    assert!(start.elapsed() >= std::time::Duration::from_millis(300));
    assert!(
        r.stderr.contains("control plane")
            && r.stderr
                .contains("held by another process: a dirctl command"),
        "{}",
        r.describe()
    );
    assert_eq!(std::fs::read(c.root.join("cluster.json")).unwrap(), before);
    // A tenant is placed in cluster.json before its record is written: nothing of it lands.
    c.fails(
        &["tenant", "create", "fabrikam", "--lock-timeout-ms", "300"],
        5,
    );
    assert_eq!(std::fs::read(c.root.join("cluster.json")).unwrap(), before);
    lock.unlock().unwrap();
    let ok_records = c.ok(&["audit", "list", "--op", "tenant.create"])["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["targets"][0] == "fabrikam" && r["outcome"] == "ok")
        .count();
    assert_eq!(ok_records, 0);
    let names: Vec<_> = c
        .ok(&["tenant", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].to_string())
        .collect();
    assert_eq!(names, vec!["\"contoso\""], "fabrikam is not placed");
    c.ok(&["tenant", "create", "fabrikam"]);
    c.ok(&["dc", "drain", "--yes", "westus"]);
    assert_ne!(std::fs::read(c.root.join("cluster.json")).unwrap(), before);
}

#[test]
fn two_dirctl_writers_at_once_both_succeed() {
    let c = Cluster::new();
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let root = c.root.clone();
            std::thread::spawn(move || {
                for i in 0..12 {
                    let upn = format!("w{w}-{i}@contoso.com");
                    let out = dirctl()
                        .args([
                            "user",
                            "create",
                            "--tenant",
                            "contoso",
                            "--upn",
                            &upn,
                            "--display-name",
                            &upn,
                            "--cluster",
                        ])
                        .arg(&root)
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "writer {w} item {i}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let list = c.ok(&["user", "list", "--tenant", "contoso", "--region", "eastus"]);
    assert_eq!(list["objects"].as_array().unwrap().len(), 24);
    assert_eq!(c.lsn(0, "westus"), Some(1 + 24));
}

#[test]
fn a_corrupt_log_entry_is_refused_with_its_location_and_never_shipped() {
    let c = Cluster::new();
    c.create_user("c1@contoso.com");
    let id = c.create_user("c2@contoso.com");
    // Flip one byte inside the primary's log entry at lsn 3, directly in RocksDB.
    {
        let path = c.dc_dir("westus").join("p0");
        let db = rocksdb::DB::open_cf(
            &rocksdb::Options::default(),
            &path,
            ["default", "log", "meta"],
        )
        .unwrap();
        let log = db.cf_handle("log").unwrap();
        let mut raw = db.get_cf(&log, 3u64.to_be_bytes()).unwrap().unwrap();
        let mid = raw.len() / 2;
        raw[mid] ^= 0x55;
        db.put_cf(&log, 3u64.to_be_bytes(), raw).unwrap();
    }
    // The primary is found damaged (the entry is its last, checked at open): sync refuses,
    // naming the entry and the way out.
    let r = c.fails(&["sync", "--output", "json"], 5);
    let failures = r.json()["failures"].to_string();
    assert!(
        failures.contains("dc-westus/p0 is damaged")
            && failures.contains("lsn 3")
            && failures.contains("checksum mismatch")
            && failures.contains("--emergency"),
        "{}",
        r.describe()
    );
    // Nothing of the corrupt entry reached the lagging replica.
    c.user_get_fails(&id, &["--region", "westeurope"], 3);
    assert_eq!(c.lsn(0, "westeurope"), Some(0));
}

/// Every file under the cluster's datacenter folders, with its length and modification time.
fn replica_files(c: &Cluster) -> std::collections::BTreeMap<PathBuf, (u64, std::time::SystemTime)> {
    fn walk(
        dir: &Path,
        out: &mut std::collections::BTreeMap<PathBuf, (u64, std::time::SystemTime)>,
    ) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                walk(&e.path(), out);
            } else {
                out.insert(e.path(), (m.len(), m.modified().unwrap()));
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    for dc in ["westus", "eastus", "westeurope"] {
        walk(&c.dc_dir(dc), &mut out);
    }
    out
}

#[test]
fn reads_write_nothing_to_the_replicas_they_read_so_a_full_disk_does_not_stop_them() {
    let c = Cluster::new();
    let id = c.create_user("reader@contoso.com");
    c.ok(&["sync"]);
    let before = replica_files(&c);
    for region in ["westus", "eastus", "westeurope"] {
        let got = c.user_get(&id, &["--region", region]);
        assert_eq!(got["userPrincipalName"], "reader@contoso.com", "{got}");
        c.ok(&["user", "list", "--tenant", "contoso", "--region", region]);
        c.access_check(&id, "wiki", &["--action", "read", "--region", region]);
    }
    c.ok(&["status"]);
    c.ok(&["audit", "list"]);
    let after = replica_files(&c);
    let changed: Vec<_> = before
        .keys()
        .chain(after.keys())
        .filter(|p| before.get(*p) != after.get(*p))
        .collect();
    assert!(
        changed.is_empty(),
        "reads changed replica files: {changed:?}"
    );
}
