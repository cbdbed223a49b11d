//! The conformance suite every `ControlPlane` passes: the file here, etcd in the server
//! crate (feature `testing`). `fresh` gives a new, empty control plane each call;
//! `second` another handle on the same one (another process's view).
#![allow(clippy::unwrap_used)]

use super::{parse_datacenter, ControlPlane, Topology};
use crate::error::Error;

fn topology() -> Topology {
    let dcs = [
        "westus@37.4,-122.1",
        "eastus@37.4,-79.4",
        "westeurope@52.4,4.9",
    ]
    .iter()
    .map(|d| parse_datacenter(d).unwrap())
    .collect();
    Topology::new("conformance".into(), dcs, 2).unwrap()
}

/// A change every topology accepts: datacenter `i`'s recorded server port, plus one.
fn bump(t: &mut Topology, i: usize) {
    let n = port(t, i);
    t.datacenters[i].endpoint = Some(format!("http://127.0.0.1:{}", n + 1));
}

fn port(t: &Topology, i: usize) -> u32 {
    t.datacenters[i]
        .endpoint
        .as_deref()
        .and_then(|e| e.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(1000)
}

/// What every `ControlPlane` must do; `a` and `b` are two handles on one new, empty one.
pub fn conformance(a: &(dyn ControlPlane + Sync), b: &(dyn ControlPlane + Sync)) {
    // Empty: nothing to load; the first create wins, a second is a conflict.
    assert!(
        a.load().is_err(),
        "an empty control plane loaded a topology"
    );
    let t = topology();
    a.create(&t).unwrap();
    assert!(
        matches!(b.create(&t), Err(Error::Conflict(_))),
        "a second create was not refused as a conflict"
    );
    let loaded = b.load().unwrap();
    assert_eq!(loaded, t, "load gives back what create stored");
    assert_eq!(
        a.reload_if_changed().unwrap(),
        None,
        "nothing changed since a stored it"
    );

    // replace: compare-and-swap on the generation.
    let mut changed = loaded.clone();
    bump(&mut changed, 0);
    let stored = a.replace(loaded.generation, &changed).unwrap();
    assert_eq!(
        stored.generation,
        loaded.generation + 1,
        "replace raises the generation"
    );
    assert_eq!(stored.datacenters, changed.datacenters);
    assert_eq!(
        a.reload_if_changed().unwrap(),
        None,
        "a's own replace counts as seen"
    );
    // b still holds the old generation: its replace is refused, and nothing is stored.
    let mut stale = loaded.clone();
    bump(&mut stale, 1);
    assert!(
        matches!(
            b.replace(loaded.generation, &stale),
            Err(Error::Conflict(_))
        ),
        "a replace of a stale generation was not refused as a conflict"
    );
    assert_eq!(
        a.load().unwrap(),
        stored,
        "a refused replace stored something"
    );
    // b notices the change (through a watch: within a deadline).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let noticed = loop {
        match b.reload_if_changed().unwrap() {
            Some(t) => break t,
            None if std::time::Instant::now() < deadline => std::thread::yield_now(),
            None => panic!("another handle's change was not noticed within 5 s"),
        }
    };
    assert_eq!(noticed, stored, "the change noticed is not the one stored");
    assert_eq!(b.reload_if_changed().unwrap(), None, "noticed twice");

    // update: read, change, store, generation + 1; a failed change stores nothing.
    let updated = b
        .update(&mut |t| {
            bump(t, 1);
            Ok(())
        })
        .unwrap();
    assert_eq!(updated.generation, stored.generation + 1);
    assert_eq!(port(&updated, 1), port(&stored, 1) + 1);
    let refused = a.update(&mut |_| Err(Error::Conflict("no".into())));
    assert!(matches!(refused, Err(Error::Conflict(_))), "{refused:?}");
    assert_eq!(
        a.load().unwrap(),
        updated,
        "a failed change stored something"
    );
    // A change that breaks the topology's rules is refused.
    let broken = a.update(&mut |t| {
        t.partitions[0].sync_standby = t.partitions[0].primary.clone();
        Ok(())
    });
    assert!(
        broken.is_err(),
        "a topology whose standby is its primary was stored"
    );
    assert_eq!(a.load().unwrap(), updated);

    // Concurrent updates from two handles: none is lost.
    std::thread::scope(|s| {
        for h in [a, b] {
            s.spawn(move || {
                for _ in 0..10 {
                    h.update(&mut |t| {
                        bump(t, 2);
                        Ok(())
                    })
                    .unwrap();
                }
            });
        }
    });
    let last = a.load().unwrap();
    assert_eq!(port(&last, 2), port(&updated, 2) + 20, "an update was lost");
    assert_eq!(last.generation, updated.generation + 20);

    // Secrets: none until made; the first create wins, and both handles read its value;
    // a topology never holds one.
    assert_eq!(
        a.secret("signing-key").unwrap(),
        None,
        "a secret nobody made"
    );
    assert_eq!(
        a.create_secret("signing-key", b"s3cr3t-one").unwrap(),
        b"s3cr3t-one"
    );
    assert_eq!(
        b.create_secret("signing-key", b"second").unwrap(),
        b"s3cr3t-one",
        "a second create replaced the secret"
    );
    assert_eq!(
        b.secret("signing-key").unwrap().as_deref(),
        Some(&b"s3cr3t-one"[..])
    );
    assert_eq!(a.secret("other").unwrap(), None);
    assert!(
        matches!(a.create_secret("../x", b"v"), Err(Error::Invalid(_))),
        "a secret name with a path in it was taken"
    );
    let shown = super::encode(&a.load().unwrap()).unwrap();
    assert!(
        !String::from_utf8_lossy(&shown).contains("s3cr3t-one"),
        "the topology holds the secret"
    );
}
