//! Fencing as data, through the cluster: once the control plane raises a partition's term
//! (a failover, a cut after a failed standby), the replicas the process held record it, and
//! a stale primary of the old term writing straight to one of them is refused.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use engine::cluster::{replica_path, Cluster, ReplicaId};
use engine::log::{Entry, Op, Position};
use engine::replica::{Durability, Replica};
use engine::Error;

fn put(c: &mut Cluster, key: &[u8]) -> Result<(), Error> {
    let op = Op::Put {
        key: key.to_vec(),
        value: b"v".to_vec(),
        prev: None,
    };
    c.write(0, None, |_| Ok((vec![op], ()))).map(|_| ())
}

/// Opens `dc`'s replica of partition 0 and has a writer of `stale_term` append, ship and
/// cut there: each must be refused and leave the replica as it was.
fn assert_refuses_stale_writer(root: &std::path::Path, dc: &str, stale_term: u64) {
    let r = Replica::open(
        &replica_path(root, &ReplicaId::new(dc, 0)),
        dc,
        Duration::from_secs(5),
    )
    .unwrap();
    assert!(
        r.seen_term() > stale_term,
        "{dc} was not told of the new term"
    );
    let last = r.last().unwrap();
    let stale = [Entry {
        term: stale_term,
        lsn: last.lsn + 1,
        time_ms: 0,
        ops: vec![Op::Put {
            key: b"stale".to_vec(),
            value: b"x".to_vec(),
            prev: None,
        }],
    }];
    let encoded: Vec<Vec<u8>> = stale.iter().map(Entry::encode).collect();
    assert!(matches!(
        r.append(&stale, stale_term, Durability::Synced),
        Err(Error::Fenced(_))
    ));
    assert!(matches!(
        r.append_encoded(&stale, &encoded, stale_term, Durability::Synced),
        Err(Error::Fenced(_))
    ));
    assert!(matches!(
        r.truncate_after(last.lsn.saturating_sub(1), stale_term),
        Err(Error::Fenced(_))
    ));
    assert_eq!(r.last().unwrap(), last);
    assert_eq!(r.get(b"stale").unwrap(), None);
    assert_eq!(r.get(b"k1").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn after_a_planned_failover_the_old_primary_refuses_a_writer_of_the_old_term() {
    let f = common::cluster(1, None);
    let (root, mut c) = (f.root, f.cluster);
    put(&mut c, b"k1").unwrap();
    let p = c.topology().partition(0).unwrap().clone();
    let to = common::NAMES.iter().find(|d| **d != p.primary).unwrap();
    c.failover_planned(0, to).unwrap();
    assert_eq!(c.topology().partition(0).unwrap().term, p.term + 1);
    c.release_all();
    assert_refuses_stale_writer(&root, &p.primary, p.term);
    assert_refuses_stale_writer(&root, to, p.term);
}

#[test]
fn after_a_cut_the_primary_and_standby_refuse_a_writer_of_the_fenced_term() {
    let f = common::cluster(1, Some("standby-fails-from-lsn:2"));
    let (root, mut c) = (f.root, f.cluster);
    put(&mut c, b"k1").unwrap();
    let p = c.topology().partition(0).unwrap().clone();
    assert!(matches!(put(&mut c, b"k2"), Err(Error::Unavailable(_))));
    assert_eq!(c.topology().partition(0).unwrap().term, p.term + 1);
    c.release_all();
    assert_refuses_stale_writer(&root, &p.primary, p.term);
    assert_refuses_stale_writer(&root, &p.sync_standby, p.term);
    // The cut entry is gone from the primary, which ends where the standby does.
    let r = Replica::open(
        &replica_path(&root, &ReplicaId::new(&p.primary, 0)),
        "primary",
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(
        r.last().unwrap(),
        Position {
            term: p.term,
            lsn: 1
        }
    );
}
