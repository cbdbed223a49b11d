//! Sync standby re-designation never lets one (term, lsn) name two entries: a crashed
//! writer's entry left on the standby alone, with that standby then unreachable, is never
//! taken for the acknowledged write that the next primary entry at that lsn carries.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use engine::cluster::{replica_path, ReplicaId};
use engine::log::{Entry, Op};
use engine::replica::{Durability, Replica};

fn put(key: &[u8]) -> Op {
    Op::Put {
        key: key.to_vec(),
        value: b"v".to_vec(),
        prev: None,
    }
}

#[test]
fn a_stray_entry_on_an_unreachable_standby_is_not_taken_for_an_acknowledged_one() {
    let f = common::cluster(1, None);
    let (root, mut c) = (f.root.clone(), f.cluster);
    c.write(0, None, |_| Ok((vec![put(b"k1")], ()))).unwrap();
    let p = c.topology().partition(0).unwrap().clone();
    c.release_all();
    // A writer died after the standby's synced append of (term, lsn 2), before its own.
    let spath = replica_path(&root, &ReplicaId::new(&p.sync_standby, 0));
    let stray_lsn = {
        let s = Replica::open(&spath, "standby", Duration::from_secs(5)).unwrap();
        let lsn = s.last().unwrap().lsn + 1;
        let e = [Entry {
            term: p.term,
            lsn,
            time_ms: 0,
            ops: vec![put(b"stray")],
        }];
        s.append(&e, p.term, Durability::Synced).unwrap();
        lsn
    };
    // The standby's datacenter becomes unreachable: the next write re-designates another.
    let dc = root.join(format!("dc-{}", p.sync_standby));
    let away = root.join("away");
    std::fs::rename(&dc, &away).unwrap();
    let (_, token) = c.write(0, None, |_| Ok((vec![put(b"k2")], ()))).unwrap();
    let q = c.topology().partition(0).unwrap().clone();
    assert_eq!(
        token.lsn, stray_lsn,
        "the acknowledged write took the stray entry's lsn"
    );
    assert!(
        q.term > p.term && q.sync_standby != p.sync_standby,
        "re-designation must raise the term: before {p:?}, after {q:?}, token {token:?}"
    );
    c.release_all();
    std::fs::rename(&away, &dc).unwrap();
    let reports = c.sync(0, &mut |_| {}).unwrap();
    c.release_all();
    // A planned failover onto the old standby: it must serve k2 and never the stray entry.
    let r = c.failover_planned(0, &p.sync_standby).unwrap();
    c.release_all();
    let s = Replica::open(&spath, "old standby", Duration::from_secs(5)).unwrap();
    let (stray, k2) = (s.get(b"stray").unwrap(), s.get(b"k2").unwrap());
    assert_eq!(
        stray, None,
        "a write never acknowledged is served; sync {reports:?}, failover {r:?}"
    );
    assert_eq!(
        k2,
        Some(b"v".to_vec()),
        "the acknowledged write is lost; sync {reports:?}, failover {r:?}"
    );
}
