//! The RocksDB replica's own tests (the replication ones are `replica_log`'s conformance tests).

use super::*;
use std::time::{Duration, Instant};

fn id() -> Identity {
    Identity {
        cluster_id: "c".into(),
        datacenter: "westus".into(),
        partition: 0,
    }
}

use crate::log::put_entry as entry;

#[test]
fn adopting_a_checkpoint_refuses_a_commit_lsn_it_does_not_end_at() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("r");
    Replica::create(&path, &id()).expect("create");
    std::fs::remove_file(path.join(LOCK_FILE)).expect("lock file");
    // The replica ends at lsn 0: a manifest saying 5 is refused, 0 is taken.
    assert!(
        matches!(Replica::adopt(&path, &id(), 5), Err(Error::Corrupt(m)) if m.contains("ends at lsn 0"))
    );
    Replica::adopt(&path, &id(), 0).expect("adopt at its own position");
}

#[test]
fn open_refuses_a_missing_replica_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("p0");
    assert!(matches!(
        Replica::open(&p, "p0", Duration::ZERO),
        Err(Error::Unavailable(_))
    ));
    assert!(!p.exists());
}

#[test]
fn append_then_truncate_restores_previous_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("p0");
    Replica::create(&p, &id()).expect("create");
    let r = Replica::open(&p, "p0", Duration::ZERO).expect("open");
    r.append(&[entry(1, 1, b"a", b"1", None)], 1, Durability::Synced)
        .expect("append 1");
    r.append(
        &[
            entry(1, 2, b"a", b"2", Some(b"1")),
            entry(1, 3, b"b", b"x", None),
        ],
        1,
        Durability::Synced,
    )
    .expect("append 2,3");
    assert_eq!(r.last().expect("last"), Position { term: 1, lsn: 3 });
    assert!(r.take_cut().is_empty(), "nothing cut yet");
    let cut = r.truncate_after(1, 1).expect("truncate");
    // The cut is noted for the holder to report (a server: every cut of a replica it owns).
    assert_eq!(
        r.take_cut(),
        [Position { term: 1, lsn: 3 }, Position { term: 1, lsn: 2 }]
    );
    assert!(r.take_cut().is_empty(), "taken once");
    assert_eq!(cut.iter().map(|e| e.lsn).collect::<Vec<_>>(), vec![3, 2]);
    assert_eq!(r.get(b"a").expect("get"), Some(b"1".to_vec()));
    assert_eq!(r.get(b"b").expect("get"), None);
    assert_eq!(r.last().expect("last"), Position { term: 1, lsn: 1 });
    assert!(matches!(
        r.append(&[entry(1, 3, b"c", b"y", None)], 1, Durability::Synced),
        Err(Error::Storage(_))
    ));
}

#[test]
fn a_replica_that_has_seen_a_newer_term_refuses_a_stale_primary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("p0");
    Replica::create(&p, &id()).expect("create");
    let r = Replica::open(&p, "p0", Duration::ZERO).expect("open");
    assert_eq!(r.seen_term(), 0, "a new replica has seen no term");
    r.append(
        &[entry(1, 1, b"a", b"1", None), entry(1, 2, b"b", b"2", None)],
        1,
        Durability::Synced,
    )
    .expect("append in term 1");
    assert_eq!(r.seen_term(), 1);
    // A failover elsewhere raised the partition's term to 2, and this replica was told.
    r.observe_term(2).expect("observe term 2");
    r.observe_term(1).expect("a lower term changes nothing");
    drop(r);
    let r = Replica::open(&p, "p0", Duration::ZERO).expect("reopen");
    assert_eq!(r.seen_term(), 2, "the seen term is durable");
    // The stale primary of term 1 writes straight to it: an append, a shipped
    // (pre-encoded) entry, a cut of its tail. Each is refused.
    let stale = [entry(1, 3, b"c", b"3", None)];
    assert!(matches!(
        r.append(&stale, 1, Durability::Synced),
        Err(Error::Fenced(_))
    ));
    let encoded: Vec<Vec<u8>> = stale.iter().map(Entry::encode).collect();
    assert!(matches!(
        r.append_encoded(&stale, &encoded, 1, Durability::Synced),
        Err(Error::Fenced(_))
    ));
    assert!(matches!(r.truncate_after(1, 1), Err(Error::Fenced(_))));
    // Nothing changed.
    assert_eq!(r.last().expect("last"), Position { term: 1, lsn: 2 });
    assert_eq!(r.entries(1, 2).expect("entries").len(), 2);
    assert!(matches!(r.entry(3), Err(Error::NotFound(_))));
    assert_eq!(r.get(b"b").expect("get"), Some(b"2".to_vec()));
    assert_eq!(r.get(b"c").expect("get"), None);
    // The writer of term 2 may ship the old term's entries and cut.
    r.append(&stale, 2, Durability::Synced)
        .expect("term 2 ships a term-1 entry");
    assert_eq!(r.truncate_after(2, 2).expect("cut").len(), 1);
    // An entry newer than its writer's term is refused too.
    assert!(matches!(
        r.append(&[entry(3, 3, b"c", b"3", None)], 2, Durability::Synced),
        Err(Error::Fenced(_))
    ));
}

#[test]
fn an_adopted_checkpoint_starts_from_its_last_entrys_term() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("p0");
    Replica::create(&p, &id()).expect("create");
    let r = Replica::open(&p, "p0", Duration::ZERO).expect("open");
    r.append(&[entry(3, 1, b"a", b"1", None)], 3, Durability::Synced)
        .expect("append");
    r.observe_term(5).expect("observe");
    let copy = dir.path().join("copy");
    r.checkpoint(&copy).expect("checkpoint");
    Replica::adopt(&copy, &id(), 0).expect("adopt");
    let c = Replica::open(&copy, "copy", Duration::ZERO).expect("open copy");
    assert_eq!(c.seen_term(), 3, "no stored term: the last entry's");
    assert_eq!(r.seen_term(), 5);
}

#[test]
fn a_second_open_waits_then_fails_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("p0");
    Replica::create(&p, &id()).expect("create");
    let _held = Replica::open(&p, "p0", Duration::ZERO).expect("open");
    let start = Instant::now();
    let second = Replica::open(&p, "p0", Duration::from_millis(100));
    assert!(matches!(second, Err(Error::Unavailable(ref m)) if m.contains("held by another")));
    assert!(start.elapsed() >= Duration::from_millis(100));
}

#[test]
fn a_format_v1_replica_without_a_seen_term_counts_its_last_entrys() {
    // Checked-in replicas predate `meta/term`; read-only, so the fixture is not touched.
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/format-v1/cluster/dc-westus/p0");
    let r =
        Replica::open_for(&path, "fixture", Duration::from_secs(5), Access::Read).expect("open");
    assert_eq!(r.meta_get(META_TERM).expect("read meta"), None);
    let last = r.last().expect("last");
    assert!(last.term > 0, "the fixture holds entries");
    assert_eq!(r.seen_term(), last.term);
}

#[test]
fn a_failed_open_leaves_the_folder_as_it_was_and_a_good_one_keeps_its_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    std::fs::write(p.join("LOG"), "the info log before").expect("LOG");
    std::fs::write(p.join("000009.log"), "wal").expect("wal");
    // What RocksDB does at an open that fails on a full disk.
    let failed_open = || -> std::io::Result<()> {
        std::fs::rename(p.join("LOG"), p.join("LOG.old.1796196394660536"))?;
        std::fs::write(p.join("LOG"), "")?;
        std::fs::write(p.join("000012.log"), "")?;
        Err(std::io::Error::other("No space left on device"))
    };
    let names = || {
        let mut n: Vec<_> = std::fs::read_dir(p)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        n.sort();
        n
    };
    let before = names();
    assert!(undoing_a_failed_open(p, failed_open).is_err());
    assert_eq!(names(), before);
    assert_eq!(
        std::fs::read_to_string(p.join("LOG")).expect("LOG"),
        "the info log before"
    );
    assert!(undoing_a_failed_open(p, || failed_open().or(Ok::<(), ()>(()))).is_ok());
    assert_eq!(names().len(), before.len() + 2, "{:?}", names());
}

#[test]
fn a_disk_is_full_below_the_threshold_and_says_where() {
    let p = Path::new("/c/dc-eastus/p0");
    for free in [0, DISK_FULL_BELOW_BYTES - 1] {
        let why = super::files::full_with(p, free).expect("full");
        assert!(
            why.contains("/c/dc-eastus/p0") && why.contains(&format!("{free} bytes free")),
            "{why}"
        );
    }
    assert_eq!(super::files::full_with(p, DISK_FULL_BELOW_BYTES), None);
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(disk_full(&dir.path().join("missing")), None);
}
