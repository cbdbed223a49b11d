//! Storage faults through the real binary (docs/design.md, "Storage faults"): bytes flipped
//! in a replica's write-ahead log, in an SST file of its data, or in one of its log entries,
//! on a secondary, on the sync standby and on the primary. For each: no command serves
//! wrong data, `status`, `health` and `scrub` name the replica damaged, reads go on from
//! another replica, no acknowledged write is lost, and after a rebuild the replica is
//! healthy and level.
#![allow(clippy::unwrap_used)]

mod util;

use std::collections::BTreeSet;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use util::Cluster;

const USERS: usize = 200;

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// 16 bytes flipped in the middle of the replica's write-ahead log.
    Wal,
    /// 16 bytes flipped in the middle of the largest SST file of the directory data.
    Sst,
    /// One log entry rewritten with a flipped byte through RocksDB (a disk that returns other
    /// bytes than were written, with RocksDB's own checksums intact): only the entry's crc
    /// can tell.
    LogEntry,
}

/// A cluster with `USERS` users imported and one created after, everything synced, and the
/// last write (user `last@contoso.com`) left in the primary's and the standby's WAL.
/// Returns the cluster and every acknowledged user principal name.
fn cluster_with_users() -> (Cluster, BTreeSet<String>) {
    let c = Cluster::new();
    let file = c.path("users.jsonl");
    let mut lines = String::new();
    let mut upns = BTreeSet::new();
    for i in 0..USERS {
        let upn = format!("user{i:04}@contoso.com");
        lines.push_str(&format!(
            "{{\"@odata.type\":\"#microsoft.graph.user\",\"userPrincipalName\":\"{upn}\",\"displayName\":\"User {i}\"}}\n"
        ));
        upns.insert(upn);
    }
    std::fs::write(&file, lines).unwrap();
    let r = c.run(&["import", "--tenant", "contoso", file.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.describe());
    c.ok(&["sync"]);
    c.create_user("last@contoso.com");
    upns.insert("last@contoso.com".into());
    (c, upns)
}

/// Flips `n` bytes of `file` in place at `at` (a fraction of its length).
fn flip(file: &Path, at: f64, n: usize) {
    let f = std::fs::File::options()
        .read(true)
        .write(true)
        .open(file)
        .unwrap();
    let len = f.metadata().unwrap().len() as usize;
    assert!(len > n, "{} has only {len} bytes", file.display());
    let start = ((len as f64 * at) as usize).min(len - n);
    let mut buf = vec![0u8; n];
    f.read_exact_at(&mut buf, start as u64).unwrap();
    for b in &mut buf {
        *b ^= 0xff;
    }
    f.write_all_at(&buf, start as u64).unwrap();
    f.sync_all().unwrap();
}

/// The replica's non-empty write-ahead log file.
fn wal_file(replica: &Path) -> PathBuf {
    let mut logs: Vec<(u64, PathBuf)> = std::fs::read_dir(replica)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .map(|p| (std::fs::metadata(&p).unwrap().len(), p))
        .filter(|(len, _)| *len > 0)
        .collect();
    logs.sort();
    logs.pop()
        .unwrap_or_else(|| {
            panic!(
                "{} has no non-empty WAL: {:?}",
                replica.display(),
                std::fs::read_dir(replica)
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .collect::<Vec<_>>()
            )
        })
        .1
}

fn open_raw(replica: &Path) -> rocksdb::DB {
    rocksdb::DB::open_cf(
        &rocksdb::Options::default(),
        replica,
        ["default", "log", "meta"],
    )
    .unwrap()
}

/// The largest SST file holding the directory data (RocksDB's `default` column family).
fn data_sst(replica: &Path) -> PathBuf {
    let db = rocksdb::DB::open_cf_for_read_only(
        &rocksdb::Options::default(),
        replica,
        ["default", "log", "meta"],
        false,
    )
    .unwrap();
    let mut files: Vec<(usize, String)> = db
        .live_files()
        .unwrap()
        .into_iter()
        .filter(|f| f.column_family_name == "default")
        .map(|f| (f.size, f.name))
        .collect();
    files.sort();
    let (_, name) = files.pop().expect("the data column family has an SST file");
    replica.join(name.trim_start_matches('/'))
}

/// Rewrites the replica's newest log entry with one byte flipped (its crc no longer holds).
fn flip_log_entry(replica: &Path) {
    let db = open_raw(replica);
    let log = db.cf_handle("log").unwrap();
    let (k, v) = db
        .iterator_cf(&log, rocksdb::IteratorMode::End)
        .next()
        .unwrap()
        .unwrap();
    let mut raw = v.to_vec();
    let mid = raw.len() / 2;
    raw[mid] ^= 0x55;
    db.put_cf(&log, k, raw).unwrap();
    db.flush_cf(&log).unwrap();
}

fn damage(c: &Cluster, dc: &str, fault: Fault) {
    let replica = c.dc_dir(dc).join("p0");
    match fault {
        Fault::Wal => flip(&wal_file(&replica), 0.5, 16),
        Fault::Sst => flip(&data_sst(&replica), 0.5, 16),
        Fault::LogEntry => flip_log_entry(&replica),
    }
}

/// Every user principal name a `user list` in contoso returns from `region`, and who served.
fn upns_read(c: &Cluster, region: &str) -> (BTreeSet<String>, String, String) {
    let r = c.run(&[
        "user", "list", "--tenant", "contoso", "--region", region, "--output", "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.describe());
    let v = r.json();
    let got = v["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["userPrincipalName"].as_str().unwrap().to_string())
        .collect();
    (
        got,
        v["servedBy"]["datacenter"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        r.stderr,
    )
}

/// The promise checks of one fault on the replica of `dc` (its role: `role`).
fn damaged_replica_is_found_routed_around_and_rebuilt(fault: Fault, dc: &str) {
    let (c, mut upns) = cluster_with_users();
    let role = c.status_row(0, dc)["role"].as_str().unwrap().to_string();
    damage(&c, dc, fault);

    // No read serves wrong data: from every region, exactly the acknowledged users (a
    // secondary may lag, never invent or lose on its own).
    for region in ["westus", "eastus", "westeurope"] {
        let (got, served, stderr) = upns_read(&c, region);
        assert!(
            got.is_subset(&upns) && got.len() + 1 >= upns.len(),
            "{fault:?} on {dc}: read from {region} (served by {served}) returned {} users, not the {} acknowledged; unknown: {:?}\nstderr: {stderr}",
            got.len(),
            upns.len(),
            got.difference(&upns).collect::<Vec<_>>()
        );
    }

    // The scrub finds it, exits non-zero, and names it; status and health then agree.
    let name = format!("dc-{dc}/p0");
    let scrub = c.fails(&["scrub"], 1);
    assert!(
        scrub.stderr.contains(&name) && scrub.stderr.contains("damaged"),
        "{fault:?} on {dc}\n{}",
        scrub.describe()
    );
    let row = c.status_row(0, dc);
    assert!(
        row["health"].as_str().unwrap().starts_with("damaged: "),
        "{fault:?} on {dc}: {row}"
    );
    let health = c.fails(&["health"], 1);
    assert!(
        health
            .stdout
            .contains(&format!("replica {name} is damaged")),
        "{fault:?} on {dc}\n{}",
        health.describe()
    );
    // Reads from its own region go on, from another replica.
    let (got, served, _) = upns_read(&c, dc);
    assert_ne!(
        served, dc,
        "{fault:?}: a read was served by the damaged replica"
    );
    assert!(got.is_subset(&upns));

    // Its role is taken over: the primary's by an emergency failover to the sync standby
    // (which holds every acknowledged write), the standby's by the next write.
    if role == "primary" {
        let w = c.create_user_fails("refused@contoso.com", 5);
        assert!(w.stderr.contains("damaged"), "{}", w.describe());
        c.ok(&["failover", "--partition", "0", "--emergency", "--yes"]);
    }
    let more = c.run(&[
        "user",
        "create",
        "--tenant",
        "contoso",
        "--upn",
        "after@contoso.com",
        "--display-name",
        "after",
    ]);
    assert_eq!(
        more.code,
        0,
        "{fault:?} on {dc}: a write after the damage\n{}",
        more.describe()
    );
    upns.insert("after@contoso.com".into());
    if role == "sync-standby" {
        assert!(
            more.stderr.contains("sync standby"),
            "the re-designation is said on stderr\n{}",
            more.describe()
        );
        assert_ne!(c.status_row(0, dc)["role"], "sync-standby");
    }

    // No acknowledged write is lost: the new primary holds every one.
    let primary = c
        .status(0)
        .into_iter()
        .find(|r| r["role"] == "primary")
        .unwrap()["datacenter"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(primary, dc);
    // `sync` brings the others level, and names the rebuild instead of shipping on top of
    // the damage.
    let s = c.run(&["sync"]);
    assert!(
        s.code == 5 && s.stderr.contains(&format!("`dirctl dc rebuild {dc}`")),
        "{}",
        s.describe()
    );
    for region in ["westus", "eastus", "westeurope"] {
        let (got, served, _) = upns_read(&c, region);
        assert_eq!(
            got, upns,
            "{fault:?} on {dc}: read from {region}, served by {served}"
        );
    }

    // A rebuild re-seeds it; it is then healthy, level, and scrubs clean.
    let rebuilt = c.ok(&["dc", "rebuild", dc, "--yes"]);
    assert_eq!(rebuilt["replicas"][0]["result"], "rebuilt", "{rebuilt}");
    c.ok(&["sync"]);
    c.ok(&["scrub"]);
    let rows = c.status(0);
    let lsns: BTreeSet<u64> = rows
        .iter()
        .map(|r| r["lastLsn"].as_u64().unwrap())
        .collect();
    assert!(
        rows.iter().all(|r| r["health"] == "ok") && lsns.len() == 1,
        "{fault:?} on {dc}: after the rebuild: {rows:?}"
    );
    let (got, served, _) = upns_read(&c, dc);
    assert_eq!(served, dc);
    assert_eq!(got, upns);
}

#[test]
fn wal_flipped_on_a_secondary() {
    damaged_replica_is_found_routed_around_and_rebuilt(Fault::Wal, "westeurope");
}

#[test]
fn wal_flipped_on_the_sync_standby() {
    damaged_replica_is_found_routed_around_and_rebuilt(Fault::Wal, "eastus");
}

#[test]
fn wal_flipped_on_the_primary() {
    damaged_replica_is_found_routed_around_and_rebuilt(Fault::Wal, "westus");
}

#[test]
fn sst_flipped_on_a_secondary() {
    damaged_replica_is_found_routed_around_and_rebuilt(Fault::Sst, "westeurope");
}

#[test]
fn sst_flipped_on_the_sync_standby() {
    damaged_replica_is_found_routed_around_and_rebuilt(Fault::Sst, "eastus");
}

#[test]
fn sst_flipped_on_the_primary() {
    damaged_replica_is_found_routed_around_and_rebuilt(Fault::Sst, "westus");
}

#[test]
fn log_entry_flipped_on_a_secondary() {
    damaged_replica_is_found_routed_around_and_rebuilt(Fault::LogEntry, "westeurope");
}

#[test]
fn log_entry_flipped_on_the_sync_standby() {
    damaged_replica_is_found_routed_around_and_rebuilt(Fault::LogEntry, "eastus");
}

#[test]
fn log_entry_flipped_on_the_primary() {
    damaged_replica_is_found_routed_around_and_rebuilt(Fault::LogEntry, "westus");
}

/// The sync standby damaged where nothing reads it (its data's SST), then the primary lost:
/// the standby is proven whole before it is promoted, found damaged, and the failover
/// refuses as for a double loss; nothing is promoted.
#[test]
fn standby_damaged_then_primary_lost_emergency_failover_refuses() {
    let (c, _) = cluster_with_users();
    damage(&c, "eastus", Fault::Sst);
    std::fs::remove_dir_all(c.dc_dir("westus")).unwrap();
    let r = c.fails(&["failover", "--partition", "0", "--emergency", "--yes"], 5);
    assert!(
        r.stderr.contains("unreachable or damaged") && r.stderr.contains("--accept-data-loss"),
        "{}",
        r.describe()
    );
    let row = c.status_row(0, "eastus");
    assert!(
        row["health"].as_str().unwrap().starts_with("damaged: "),
        "{row}"
    );
    assert_eq!(
        c.status_row(0, "westus")["role"],
        "primary",
        "nothing was promoted"
    );
}

/// A read that hits a checksum error is answered by another replica in the same command,
/// says so on stderr, and marks the replica damaged.
#[test]
fn a_read_hitting_a_checksum_error_is_answered_by_another_replica() {
    let (c, upns) = cluster_with_users();
    damage(&c, "westeurope", Fault::Sst);
    let (got, served, stderr) = upns_read(&c, "westeurope");
    assert_eq!(got, upns);
    assert_ne!(served, "westeurope");
    assert!(
        stderr.contains("dc-westeurope/p0 is damaged") && stderr.contains("another replica"),
        "{stderr}"
    );
    let row = c.status_row(0, "westeurope");
    assert!(
        row["health"].as_str().unwrap().starts_with("damaged: "),
        "{row}"
    );
    // What was found: the file, the offset and the checksums.
    let found = row["health"].as_str().unwrap();
    assert!(
        found.contains(".sst") && found.contains("offset") && found.contains("checksum mismatch"),
        "{row}"
    );
    let metrics = c.run(&["metrics"]);
    assert!(
        metrics
            .stdout
            .contains("geodir_replica_damaged{partition=\"0\",datacenter=\"westeurope\"} 1"),
        "{}",
        metrics.describe()
    );
}

/// `sync` does not ship on top of damage: it names the replica and the rebuild.
#[test]
fn sync_says_to_rebuild_a_damaged_replica() {
    let (c, _) = cluster_with_users();
    damage(&c, "westeurope", Fault::Wal);
    let r = c.run(&["sync"]);
    assert_ne!(r.code, 0, "{}", r.describe());
    assert!(
        r.stderr.contains("dc-westeurope/p0") && r.stderr.contains("dirctl dc rebuild westeurope"),
        "{}",
        r.describe()
    );
}

/// A rebuilt replica shares no file with its source: a flipped bit in one datacenter's
/// copy must not damage another's (a RocksDB checkpoint hard-links its files).
#[test]
fn a_rebuilt_replica_shares_no_file_with_its_source() {
    use std::os::unix::fs::MetadataExt;
    let (c, _) = cluster_with_users();
    std::fs::remove_dir_all(c.dc_dir("westeurope").join("p0")).unwrap();
    c.ok(&["dc", "rebuild", "westeurope", "--yes"]);
    for e in std::fs::read_dir(c.dc_dir("westeurope").join("p0")).unwrap() {
        let m = e.unwrap().metadata().unwrap();
        assert!(!m.is_file() || m.nlink() == 1, "{m:?}");
    }
}

/// A planned failover reads its target end to end before writes are held up: an SST flip
/// nothing has read yet is found there, the failover refuses (exit 5), and nothing changes.
#[test]
fn a_planned_failover_never_promotes_a_damaged_target() {
    let (c, _) = cluster_with_users();
    damage(&c, "eastus", Fault::Sst);
    let r = c.fails(
        &["failover", "--partition", "0", "--to", "eastus", "--yes"],
        5,
    );
    assert!(
        r.stderr.contains("the target eastus") && r.stderr.contains("damaged"),
        "{}",
        r.describe()
    );
    assert_eq!(
        c.status_row(0, "westus")["role"],
        "primary",
        "nothing was switched"
    );
}

/// Files a replica cannot do without, gone: its promise, RocksDB's CURRENT. Each is
/// damage (status says so, rebuild replaces it), not an older replica or an unreachable one.
#[test]
fn a_missing_promise_or_rocksdb_file_is_damage() {
    for file in ["geodir.promise", "CURRENT"] {
        let (c, _) = cluster_with_users();
        std::fs::remove_file(c.dc_dir("westeurope").join("p0").join(file)).unwrap();
        let row = c.status_row(0, "westeurope");
        assert!(
            row["health"].as_str().unwrap().starts_with("damaged: "),
            "{file} removed: {row}"
        );
        let rebuilt = c.ok(&["dc", "rebuild", "westeurope", "--yes"]);
        assert_eq!(
            rebuilt["replicas"][0]["result"], "rebuilt",
            "{file}: {rebuilt}"
        );
        assert_eq!(c.status_row(0, "westeurope")["health"], "ok", "{file}");
    }
}
