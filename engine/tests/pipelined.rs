//! `Cluster::write_pipelined`: each batch is built while the one before is being made
//! durable, so a batch must see the one in flight, and a failure in the middle must settle
//! exactly as a single write's does.
#![allow(clippy::unwrap_used)]

mod common;

use engine::cluster::Cluster;
use engine::directory::{self, ObjectType, Txn};
use engine::session::Token;
use engine::Error;
use serde_json::{json, Map, Value};

use common::NAMES;

/// One partition, tenant `t0`: (folder, cluster, tenant ID).
fn cluster(failpoint: Option<&str>) -> (tempfile::TempDir, Cluster, String) {
    let f = common::cluster(1, failpoint);
    (f.dir, f.cluster, f.tenants[0].0.clone())
}

fn user(upn: &str) -> Map<String, Value> {
    json!({"id": uuid::Uuid::new_v4().to_string(), "userPrincipalName": upn, "displayName": upn})
        .as_object()
        .cloned()
        .unwrap()
}

fn id_of(o: &Map<String, Value>) -> String {
    o["id"].as_str().unwrap().to_string()
}

/// Whether `id` can be read at each datacenter (after `sync`); unreadable datacenters are skipped.
fn visible_at(c: &mut Cluster, tid: &str, id: &str) -> Vec<bool> {
    NAMES
        .iter()
        .filter_map(|dc| {
            c.read(
                0,
                Some(dc),
                None,
                |r| Ok(directory::get(r, tid, id).is_ok()),
            )
            .ok()
            .map(|(found, _)| found)
        })
        .collect()
}

#[test]
fn each_batch_is_built_on_the_batch_still_in_flight() {
    let (_dir, mut c, tid) = cluster(None);
    let (a, b, taken_again) = (user("a@t.com"), user("b@t.com"), user("b@t.com"));
    let group = json!({"id": uuid::Uuid::new_v4().to_string(), "displayName": "g"})
        .as_object()
        .cloned()
        .unwrap();
    let (a_id, b_id, g_id, again_id) = (id_of(&a), id_of(&b), id_of(&group), id_of(&taken_again));
    // Batch 2 needs batch 1's user; batch 3 claims the UPN batch 2 (still in flight while
    // batch 3 is built) took, so it must be refused as a conflict.
    let batches = vec![vec![a.clone()], vec![b, group], vec![taken_again]];
    let mut committed: Vec<Token> = Vec::new();
    let r = c.write_pipelined(
        0,
        None,
        batches.into_iter().enumerate(),
        |r, (i, objs)| {
            let mut t = Txn::new(r);
            for o in objs {
                let ty = if o.contains_key("userPrincipalName") {
                    ObjectType::User
                } else {
                    ObjectType::Group
                };
                directory::create(&mut t, &tid, ty, o, "now")?;
            }
            if i == 1 {
                directory::add_member(&mut t, &tid, &g_id, &a_id)?;
            }
            Ok((t.into_ops(), ()))
        },
        |(), token| committed.push(token.clone()),
    );
    assert!(
        matches!(r, Err(Error::Conflict(ref m)) if m.contains("b@t.com")),
        "{r:?}"
    );
    assert_eq!(
        committed.iter().map(|t| t.lsn).collect::<Vec<_>>(),
        [1, 2],
        "the two batches before the conflict are committed, in order"
    );
    c.sync(0, &mut |_| {}).unwrap();
    for id in [&a_id, &b_id, &g_id] {
        assert_eq!(visible_at(&mut c, &tid, id), [true, true, true], "{id}");
    }
    assert_eq!(visible_at(&mut c, &tid, &again_id), [false, false, false]);
    let (members, _) = c
        .read(0, None, None, |r| directory::members(r, &tid, &g_id))
        .unwrap();
    assert_eq!(
        members.iter().map(id_of).collect::<Vec<_>>(),
        std::slice::from_ref(&a_id)
    );
}

#[test]
fn a_standby_failing_mid_pipeline_keeps_the_batches_before_and_applies_nothing_of_the_rest() {
    // The standby fails from lsn 3 on: batches 1 and 2 commit, batch 3 is cut off the
    // primary and fenced, batches 4 and 5 are never written.
    let (_dir, mut c, tid) = cluster(Some("standby-fails-from-lsn:3"));
    let users: Vec<_> = (0..5).map(|i| user(&format!("u{i}@t.com"))).collect();
    let ids: Vec<_> = users.iter().map(id_of).collect();
    let term_before = c.topology().partition(0).unwrap().term;
    let mut committed = Vec::new();
    let r = c.write_pipelined(
        0,
        None,
        users,
        |r, o| {
            let mut t = Txn::new(r);
            directory::create(&mut t, &tid, ObjectType::User, o, "now")?;
            Ok((t.into_ops(), ()))
        },
        |(), token| committed.push(token.lsn),
    );
    assert!(
        matches!(r, Err(Error::Unavailable(ref m)) if m.contains("nothing was applied")),
        "{r:?}"
    );
    assert_eq!(committed, [1, 2]);
    assert!(
        c.topology().partition(0).unwrap().term > term_before,
        "the cut entry's lsn is fenced by a new term"
    );
    c.set_failpoint(None);
    c.sync(0, &mut |_| {}).unwrap();
    for id in &ids[..2] {
        assert_eq!(visible_at(&mut c, &tid, id), [true, true, true], "{id}");
    }
    for id in &ids[2..] {
        assert_eq!(visible_at(&mut c, &tid, id), [false, false, false], "{id}");
    }
    // The partition takes writes again, after the cut entry.
    let ((), token) = c
        .write(0, None, |r| {
            let mut t = Txn::new(r);
            directory::create(&mut t, &tid, ObjectType::User, user("late@t.com"), "now")?;
            Ok((t.into_ops(), ()))
        })
        .unwrap();
    assert_eq!(token.lsn, 3);
}

#[test]
fn batches_staged_before_another_write_came_in_are_refused_and_write_nothing() {
    let (_dir, mut c, tid) = cluster(None);
    // Staged against the primary at lsn 0, then another write lands first.
    let staged = user("staged@t.com");
    let staged_id = id_of(&staged);
    let ops = {
        let ((ops, ()), _) = c
            .write(0, None, |r| {
                let mut t = Txn::new(r);
                directory::create(&mut t, &tid, ObjectType::User, staged, "now")?;
                Ok((Vec::new(), (t.into_ops(), ())))
            })
            .unwrap();
        ops
    };
    c.write(0, None, |r| {
        let mut t = Txn::new(r);
        directory::create(&mut t, &tid, ObjectType::User, user("other@t.com"), "now")?;
        Ok((t.into_ops(), ()))
    })
    .unwrap();
    let r = c.write_pipelined_at(0, None, Some(0), [ops], |_, ops| Ok((ops, ())), |(), _| {});
    assert!(
        matches!(r, Err(Error::Conflict(ref m)) if m.contains("nothing was written")),
        "{r:?}"
    );
    c.sync(0, &mut |_| {}).unwrap();
    assert_eq!(visible_at(&mut c, &tid, &staged_id), [false, false, false]);
}
