//! Real network partitions in the server mode: one datacenter's geodird runs in a network
//! namespace of its own, joined to this host by a veth pair that the test cuts
//! (`ip link set ... down`) and heals. Nothing acknowledged is lost and nothing refused
//! becomes visible. Needs root (`ip netns`), as scripts/test runs on the project's machines.
mod util;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use util::etcd::Etcd;
use util::netns::{cluster_on, cluster_with, Netns};
use util::servers::{acked, visible, wait_for, writer, Seen};
use util::{Cluster, DCS};

/// Every acknowledged write readable near each region, every refused one nowhere.
fn check(c: &Cluster, seen: &Seen) {
    assert!(seen.other.is_empty(), "{:?}", seen.other);
    for upn in &seen.acked {
        for region in ["westus", "eastus", "westeurope"] {
            wait_for(
                &format!("{upn} readable near {region}"),
                Duration::from_secs(30),
                || (visible(c, upn, region), upn.clone()),
            );
        }
    }
    for (upn, why) in &seen.refused {
        for region in ["westus", "eastus", "westeurope"] {
            assert!(
                !visible(c, upn, region),
                "{upn} was refused ({why}) yet is visible near {region}"
            );
        }
    }
}

#[test]
fn the_sync_standby_cut_off_by_a_partition_loses_nothing_and_shows_nothing_refused() {
    let ns = Netns::new(1);
    let c = cluster_with(&ns, "eastus");
    let stop = AtomicBool::new(false);
    let seen = Mutex::new(Seen::default());
    std::thread::scope(|s| {
        s.spawn(|| writer(&c, "p", 400, &stop, &seen));
        wait_for("10 acknowledged writes", Duration::from_secs(60), || {
            (acked(&seen) >= 10, acked(&seen))
        });
        ns.cut();
        let before = acked(&seen);
        // westeurope becomes the sync standby: writes are acknowledged again.
        wait_for(
            "writes acknowledged during the partition",
            Duration::from_secs(60),
            || (acked(&seen) >= before + 10, acked(&seen)),
        );
        stop.store(true, Ordering::SeqCst);
    });
    ns.heal();
    let seen = seen.into_inner().unwrap();
    check(&c, &seen);
}

#[test]
fn the_primary_cut_off_by_a_partition_acknowledges_nothing_and_an_emergency_failover_keeps_every_acknowledged_write(
) {
    let ns = Netns::new(2);
    let c = cluster_with(&ns, "westus");
    let stop = AtomicBool::new(false);
    let seen = Mutex::new(Seen::default());
    std::thread::scope(|s| {
        s.spawn(|| writer(&c, "q", 400, &stop, &seen));
        wait_for("10 acknowledged writes", Duration::from_secs(60), || {
            (acked(&seen) >= 10, acked(&seen))
        });
        ns.cut();
        let at_cut = acked(&seen);
        wait_for(
            "writes failing during the partition",
            Duration::from_secs(60),
            || {
                let s = seen.lock().unwrap();
                (
                    s.refused.len() + s.unknown.len() >= 3,
                    (s.refused.len(), s.unknown.len()),
                )
            },
        );
        stop.store(true, Ordering::SeqCst);
        // At most the write in flight at the cut could still be acknowledged.
        assert!(acked(&seen) <= at_cut + 1, "{:?}", seen.lock().unwrap());
    });
    let r = c.run(&[
        "failover",
        "--partition",
        "0",
        "--emergency",
        "--yes",
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.describe());
    c.create_user("after@contoso.com");
    ns.heal();
    let seen = seen.into_inner().unwrap();
    check(&c, &seen);
    // The old primary rejoins as a secondary, its uncommitted tail cut.
    wait_for(
        "the old primary serves the new primary's write",
        Duration::from_secs(30),
        || (visible(&c, "after@contoso.com", "westus"), ()),
    );
}

/// Partition 0's primary as the status of the servers reachable from here reports it.
fn primary_of_p0(c: &Cluster) -> String {
    c.status(0)
        .iter()
        .find(|r| r["role"] == "primary")
        .and_then(|r| r["datacenter"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn with_etcd_the_primary_cut_off_stops_acknowledging_the_standby_promotes_itself_and_the_old_primary_rejoins(
) {
    let ns = Netns::new(3);
    // etcd on this host, reached from the namespace through the link that is cut.
    let etcd = Etcd::start_on(&ns.service_ip);
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster {
        root: dir.path().join("cluster"),
        dir,
        servers: None,
        control_plane: Some(etcd.address("/geodir")),
    };
    c.ok(&["init", "--datacenters", DCS, "--partitions", "4"]);
    c.ok(&["tenant", "create", "contoso", "--partition", "0"]);
    let cp = c.control_plane.clone().unwrap();
    let c = cluster_on(c, &ns, "westus", &["--control-plane", &cp]);
    let stop = AtomicBool::new(false);
    let seen = Mutex::new(Seen::default());
    std::thread::scope(|s| {
        s.spawn(|| writer(&c, "e", 2_000, &stop, &seen));
        wait_for("10 acknowledged writes", Duration::from_secs(60), || {
            (acked(&seen) >= 10, acked(&seen))
        });
        ns.cut();
        let at_cut = acked(&seen);
        // A write reaching the cut-off primary from its own side of the cut: appended there,
        // never acknowledged (its sync standby is out of reach). That tail is cut later.
        let west = c.servers.as_ref().unwrap().lock().unwrap().servers["westus"]
            .grpc
            .clone();
        let mut inside = std::process::Command::new(&ns.exec()[0]);
        inside
            .args(&ns.exec()[1..])
            .arg(env!("CARGO_BIN_EXE_dirctl"))
            .args(["--endpoints", &west])
            .args(util::create_user_args("tail@contoso.com"));
        let out = inside.output().unwrap();
        // Not acknowledged: refused (5) or its outcome unknown (1), never 0.
        assert!(
            matches!(out.status.code(), Some(1 | 5)),
            "a write to the cut-off primary was acknowledged or failed otherwise: {inside:?}\nexit {:?}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        // No operator: eastus's server promotes itself once westus's lease expired, and
        // the writer's writes are acknowledged again.
        wait_for(
            "writes acknowledged again after the cut",
            Duration::from_secs(60),
            || (acked(&seen) >= at_cut + 5, acked(&seen)),
        );
        stop.store(true, Ordering::SeqCst);
    });
    assert_eq!(
        primary_of_p0(&c),
        "eastus",
        "the sync standby was not promoted"
    );
    c.create_user("after@contoso.com");
    ns.heal();
    let seen = seen.into_inner().unwrap();
    check(&c, &seen);
    // The old primary rejoins as a secondary with no operator: it serves the new
    // primary's write, and holds the primary no more.
    wait_for(
        "the old primary serves the new primary's write",
        Duration::from_secs(30),
        || (visible(&c, "after@contoso.com", "westus"), ()),
    );
    let rows = c.status(0);
    let west = rows.iter().find(|r| r["datacenter"] == "westus");
    assert!(
        west.is_some_and(|r| r["role"] != "primary"),
        "westus after the heal: {rows:?}"
    );
    // Its unacknowledged write is nowhere once it rejoined.
    for dc in ["westus", "eastus", "westeurope"] {
        assert!(
            !visible(&c, "tail@contoso.com", dc),
            "the unacknowledged write is visible at {dc}"
        );
    }
    // And the cut tail was reported: audited by westus's server, naming its replica.
    let reported = wait_for(
        "the old primary's cut tail in the audit trail",
        Duration::from_secs(30),
        || {
            let r = c.ok(&["audit", "list", "--op", "replica.cut-tail"]);
            let found = r["records"].as_array().is_some_and(|a| {
                a.iter().any(|x| {
                    x["actor"] == "geodird:westus" && x["targets"].to_string().contains("westus")
                })
            });
            (found, r)
        },
    );
    eprintln!("cut tail reported: {reported}");
    let logs = c.server_logs();
    assert!(logs.contains("uncommitted entr"), "not logged:\n{logs}");
}
