//! The control plane in etcd against a real etcd (Debian's etcd-server, started by the
//! test on free loopback ports): the `ControlPlane` conformance suite, etcd down and back,
//! and one member of three lost.
#![allow(clippy::unwrap_used)]

#[path = "support/etcd.rs"]
mod etcd;

use std::time::{Duration, Instant};

use engine::topology::{parse_datacenter, ControlPlane as _, Topology};
use engine::Error;
use etcd::{address_of, one_primary_per_term, Etcd};
use server::etcd::{EtcdAddress, EtcdControlPlane};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn handle(rt: &tokio::runtime::Runtime, address: &str) -> EtcdControlPlane {
    EtcdControlPlane::connect(
        EtcdAddress::parse(address).unwrap(),
        rt.handle().clone(),
        Duration::from_secs(2),
    )
    .unwrap()
}

fn topology() -> Topology {
    let dcs = ["westus@37.4,-122.1", "eastus@37.4,-79.4"]
        .iter()
        .map(|d| parse_datacenter(d).unwrap())
        .collect();
    Topology::new("t".into(), dcs, 1).unwrap()
}

#[test]
fn the_etcd_control_plane_passes_the_conformance_suite() {
    let etcd = Etcd::start();
    let rt = runtime();
    let address = etcd.address("/conformance");
    let (a, b) = (handle(&rt, &address), handle(&rt, &address));
    engine::topology::conformance::conformance(&a, &b);
    // Another prefix is another cluster.
    let other = handle(&rt, &etcd.address("/other"));
    assert!(
        matches!(other.load(), Err(Error::NotFound(_))),
        "a prefix holding nothing loaded a topology"
    );
}

#[test]
fn etcd_down_is_unavailable_and_the_handle_works_again_when_it_returns() {
    let mut etcd = Etcd::start();
    let rt = runtime();
    let cp = handle(&rt, &etcd.address("/geodir"));
    cp.create(&topology()).unwrap();
    etcd.kill();
    let t = Instant::now();
    let down = cp.load();
    assert!(
        matches!(down, Err(Error::Unavailable(_))),
        "load with etcd killed gave {down:?}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "load took {:?} to fail",
        t.elapsed()
    );
    let refused = cp.update(&mut |t| {
        t.datacenters[0].endpoint = Some(format!("http://127.0.0.1:{}", 1 + t.generation));
        Ok(())
    });
    assert!(
        matches!(refused, Err(Error::Unavailable(_))),
        "update with etcd killed gave {refused:?}"
    );
    etcd.restart();
    etcd.wait_healthy();
    let deadline = Instant::now() + Duration::from_secs(20);
    let back = loop {
        match cp.load() {
            Ok(t) => break t,
            Err(_) if Instant::now() < deadline => std::thread::yield_now(),
            Err(e) => panic!("etcd is back but load still fails: {e}"),
        }
    };
    assert_eq!(
        back.generation,
        topology().generation,
        "something was stored while etcd was down"
    );
    cp.update(&mut |t| {
        t.datacenters[0].endpoint = Some(format!("http://127.0.0.1:{}", 1 + t.generation));
        Ok(())
    })
    .unwrap();
}

#[test]
fn one_etcd_member_of_three_lost_changes_nothing() {
    let mut members = Etcd::cluster(3);
    let rt = runtime();
    let address = address_of(&members, "/geodir");
    let (a, b) = (handle(&rt, &address), handle(&rt, &address));
    a.create(&topology()).unwrap();
    members[0].kill();
    for _ in 0..5 {
        a.update(&mut |t| {
            t.datacenters[0].endpoint = Some(format!("http://127.0.0.1:{}", 1 + t.generation));
            Ok(())
        })
        .unwrap_or_else(|e| panic!("an update with one member of three down failed: {e}"));
    }
    let t = b.load().unwrap();
    assert_eq!(
        t.generation,
        topology().generation + 5,
        "an update was lost"
    );
}

#[test]
fn promotions_racing_from_four_handles_one_wins_and_etcd_history_has_one_primary_per_term() {
    let etcd = Etcd::start();
    let rt = runtime();
    let address = etcd.address("/race");
    let first = handle(&rt, &address);
    let dcs = [
        "westus@37.4,-122.1",
        "eastus@37.4,-79.4",
        "westeurope@52.4,4.9",
    ]
    .iter()
    .map(|d| parse_datacenter(d).unwrap())
    .collect();
    first
        .create(&Topology::new("race".into(), dcs, 1).unwrap())
        .unwrap();
    let before = first.load().unwrap().partitions[0].clone();
    let handles: Vec<EtcdControlPlane> = (0..4).map(|_| handle(&rt, &address)).collect();
    let results: Vec<engine::Result<Topology>> = std::thread::scope(|s| {
        let running: Vec<_> = handles
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let before = before.clone();
                let (me, standby) = match i % 2 {
                    0 => ("eastus", "westeurope"),
                    _ => ("westeurope", "eastus"),
                };
                s.spawn(move || {
                    // What an emergency failover stores: the same change a server makes.
                    h.update(&mut |t| {
                        t.change_partition(
                            &before,
                            |now| format!("partition 0 changed meanwhile (term {})", now.term),
                            |p| p.switch_primary(me, standby, 1),
                        )
                    })
                })
            })
            .collect();
        running.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "promotions won: {results:?}");
    for r in results.iter().filter(|r| r.is_err()) {
        assert!(
            matches!(r, Err(Error::Conflict(_))),
            "a loser failed otherwise: {r:?}"
        );
    }
    let history = first.history().unwrap();
    assert_eq!(history.len(), 2, "etcd's history: {history:?}");
    let primaries = one_primary_per_term(&history);
    assert_eq!(primaries.len(), 2, "{primaries:?}");
}
