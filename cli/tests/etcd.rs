//! The control plane in etcd (docs/server.md): dirctl init on a real etcd, the directory
//! used through the folders and through servers, and what etcd being down means.
#![allow(clippy::unwrap_used)]

mod util;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use util::etcd::Etcd;
use util::servers::{acked, visible, wait_for, writer, Seen, Servers};
use util::{Cluster, DCS};

/// One test at a time: each runs an etcd and three servers whose leases must be renewed
/// every few hundred milliseconds, which the others' load on two cores would delay.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `on_etcd` with a server per datacenter on etcd, leases of `ttl` seconds.
fn servers_on_etcd(etcd: &Etcd, ttl: &str) -> Cluster {
    let mut c = on_etcd(etcd, "/geodir");
    let cp = c.control_plane.clone().unwrap();
    let servers = Servers::start(
        &c.root,
        &["westus", "eastus", "westeurope"],
        &["--control-plane", &cp, "--lease-ttl-secs", ttl],
    );
    c.servers = Some(Mutex::new(servers));
    c
}

/// Partition 0's primary and term, as the server of `dc` reports the control plane.
fn primary_of_p0(c: &Cluster) -> (String, u64) {
    let rows = c.status(0);
    let p = rows.iter().find(|r| r["role"] == "primary");
    (
        p.and_then(|r| r["datacenter"].as_str())
            .unwrap_or_default()
            .to_string(),
        p.and_then(|r| r["term"].as_u64()).unwrap_or(0),
    )
}

/// A cluster whose topology lives in `etcd` under `prefix`, its replicas in a temp folder.
fn on_etcd(etcd: &Etcd, prefix: &str) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster {
        root: dir.path().join("cluster"),
        dir,
        servers: None,
        control_plane: Some(etcd.address(prefix)),
    };
    c.ok(&["init", "--datacenters", DCS, "--partitions", "4"]);
    c.ok(&["tenant", "create", "contoso", "--partition", "0"]);
    c
}

#[test]
fn a_cluster_on_etcd_keeps_no_cluster_json_and_runs_every_directory_command() {
    let _serial = serial();
    let etcd = Etcd::start();
    let c = on_etcd(&etcd, "/geodir/a");
    assert!(
        !c.root.join("cluster.json").exists(),
        "init with --control-plane wrote cluster.json"
    );
    let id = c.create_user("ada@contoso.com");
    assert_eq!(c.user_get(&id, &[])["id"], id);
    // A planned failover changes the topology in etcd: the next command sees it.
    c.ok(&["failover", "--partition", "0", "--to", "eastus", "--yes"]);
    let status = c.status(0);
    let primary: Vec<&str> = status
        .iter()
        .filter(|r| r["role"] == "primary")
        .filter_map(|r| r["datacenter"].as_str())
        .collect();
    assert_eq!(
        primary,
        vec!["eastus"],
        "status after the failover: {status:?}"
    );
    c.create_user("grace@contoso.com");
    assert_eq!(c.user_get(&id, &[])["id"], id);
    // A second init on the same prefix is refused (exit 4); another prefix is another cluster.
    let again = c.fails(&["init", "--datacenters", DCS, "--partitions", "4"], 4);
    assert!(
        again.stderr.contains("already holds a cluster"),
        "{}",
        again.describe()
    );
    let other = on_etcd(&etcd, "/geodir/b");
    other.user_get_fails(&id, &[], 3);
}

#[test]
fn etcd_down_fails_commands_clearly_and_they_work_again_when_it_returns() {
    let _serial = serial();
    let mut etcd = Etcd::start();
    let c = on_etcd(&etcd, "/geodir");
    let id = c.create_user("ada@contoso.com");
    etcd.kill();
    let r = c.create_user_fails("grace@contoso.com", 5);
    assert!(
        r.stderr.contains("control plane") && r.stderr.contains("unreachable"),
        "{}",
        r.describe()
    );
    etcd.restart();
    etcd.wait_healthy();
    assert_eq!(c.user_get(&id, &[])["id"], id);
    c.create_user("grace@contoso.com");
}

#[test]
fn servers_on_etcd_serve_writes_and_follow_a_failover() {
    let _serial = serial();
    let etcd = Etcd::start();
    let mut c = on_etcd(&etcd, "/geodir");
    let cp = c.control_plane.clone().unwrap();
    let servers = Servers::start(
        &c.root,
        &["westus", "eastus", "westeurope"],
        &["--control-plane", &cp],
    );
    c.servers = Some(std::sync::Mutex::new(servers));
    let id = c.create_user("ada@contoso.com");
    assert_eq!(c.user_get(&id, &[])["id"], id);
    c.ok(&["failover", "--partition", "0", "--to", "eastus", "--yes"]);
    let grace = c.create_user("grace@contoso.com");
    assert_eq!(c.user_get(&grace, &[])["id"], grace);
    let status = c.status(0);
    assert!(
        status
            .iter()
            .any(|r| r["role"] == "primary" && r["datacenter"] == "eastus"),
        "status after the failover: {status:?}"
    );
}

#[test]
fn the_primarys_server_killed_the_sync_standby_promotes_itself_and_no_acknowledged_write_is_lost() {
    let _serial = serial();
    let etcd = Etcd::start();
    let c = servers_on_etcd(&etcd, "1");
    let (before, term) = primary_of_p0(&c);
    assert_eq!(before, "westus");
    let stop = AtomicBool::new(false);
    let seen = Mutex::new(Seen::default());
    let mut killed_at = None;
    let mut first_after = None;
    std::thread::scope(|s| {
        s.spawn(|| writer(&c, "k", 2_000, &stop, &seen));
        wait_for("10 acknowledged writes", Duration::from_secs(60), || {
            (acked(&seen) >= 10, acked(&seen))
        });
        c.take_down("westus");
        let at_kill = acked(&seen);
        killed_at = Some(Instant::now());
        // No operator: the writer's writes are acknowledged again once eastus promoted itself.
        wait_for(
            "a write acknowledged after the kill",
            Duration::from_secs(30),
            || (acked(&seen) > at_kill + 1, acked(&seen)),
        );
        first_after = Some(Instant::now());
        stop.store(true, Ordering::SeqCst);
    });
    let took = first_after.unwrap() - killed_at.unwrap();
    eprintln!("from kill -9 of the primary's server to writes acknowledged again: {took:?}");
    let (after, new_term) = primary_of_p0(&c);
    assert_eq!(after, "eastus", "the sync standby was not promoted");
    assert!(
        new_term > term,
        "the term did not rise: {term} then {new_term}"
    );
    let seen = seen.into_inner().unwrap();
    assert!(seen.other.is_empty(), "{:?}", seen.other);
    for upn in &seen.acked {
        wait_for(
            &format!("{upn} readable near eastus"),
            Duration::from_secs(20),
            || (visible(&c, upn, "eastus"), upn.clone()),
        );
    }
    // Audited, with the promoting server as the actor.
    let audit = c.ok(&["audit", "list", "--op", "failover.automatic"]);
    assert!(
        audit.to_string().contains("geodird:eastus"),
        "no audit record of the automatic failover by geodird:eastus: {audit}"
    );
    // The old primary's server returns: it rejoins as a secondary, with no operator.
    c.bring_back("westus");
    let last = c.create_user("after.return@contoso.com");
    wait_for(
        "westus level again as a secondary",
        Duration::from_secs(30),
        || {
            let rows = c.status(0);
            let west = rows.iter().find(|r| r["datacenter"] == "westus").cloned();
            let ok = west
                .as_ref()
                .is_some_and(|r| r["role"] != "primary" && r["lagEntries"] == 0);
            (ok, west)
        },
    );
    wait_for(
        "the last write readable at westus",
        Duration::from_secs(20),
        || (visible(&c, &last, "westus"), last.clone()),
    );
    assert_eq!(
        primary_of_p0(&c).0,
        "eastus",
        "the returning server took the primary back"
    );
    // One primary per term, in every topology etcd ever held.
    for ((partition, term), primary) in etcd_history(&c) {
        eprintln!("partition {partition} term {term}: {primary}");
    }
}

/// Each (partition, term) with its one primary, from etcd's history of the topology key;
/// panics if a term had two.
fn etcd_history(c: &Cluster) -> std::collections::BTreeMap<(u32, u64), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let address = server::etcd::EtcdAddress::parse(c.control_plane.as_deref().unwrap()).unwrap();
    let cp = server::etcd::EtcdControlPlane::connect(
        address,
        rt.handle().clone(),
        Duration::from_secs(2),
    )
    .unwrap();
    util::etcd::one_primary_per_term(&cp.history().unwrap())
}

#[test]
fn with_the_primarys_and_the_standbys_servers_killed_nothing_is_promoted_and_health_says_so() {
    let _serial = serial();
    let etcd = Etcd::start();
    let c = servers_on_etcd(&etcd, "1");
    c.create_user("ada@contoso.com");
    c.take_down("westus");
    c.take_down("eastus");
    // Well past the lease and the grace (2 x TTL): westeurope's server does not promote.
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        let (primary, _) = primary_of_p0(&c);
        assert_eq!(
            primary, "westus",
            "a replica was promoted without the sync standby"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let dest = c.path("backups").display().to_string();
    let r = c.run(&["health", "--dest", &dest, "--output", "json"]);
    assert_ne!(r.code, 0, "{}", r.describe());
    assert!(
        r.stdout.contains("partition 0 has no leader key"),
        "health does not name partition 0's missing leader: {}",
        r.describe()
    );
    c.create_user_fails("grace@contoso.com", 5);
}

#[test]
fn with_etcd_down_reads_go_on_writes_stop_and_both_come_back() {
    let _serial = serial();
    let mut etcd = Etcd::start();
    let c = servers_on_etcd(&etcd, "1");
    let id = c.create_user("ada@contoso.com");
    etcd.kill();
    // Within the lease's TTL the primary stops acknowledging: exit 5, nothing applied.
    let refused = wait_for(
        "writes refused with etcd down",
        Duration::from_secs(10),
        || {
            let r = c.run(&util::create_user_args("grace@contoso.com"));
            (r.code == 5, r.describe())
        },
    );
    assert!(refused.contains("nothing"), "{refused}");
    assert_eq!(
        c.user_get(&id, &[])["id"],
        id,
        "reads stopped with etcd down"
    );
    etcd.restart();
    etcd.wait_healthy();
    wait_for(
        "writes again once etcd is back",
        Duration::from_secs(20),
        || {
            let r = c.run(&util::create_user_args("grace@contoso.com"));
            (r.code == 0, r.describe())
        },
    );
}

#[test]
fn servers_on_three_etcd_members_lose_one_and_nothing_changes() {
    let _serial = serial();
    let mut members = Etcd::cluster(3);
    let mut c = on_etcd(&members[0], "/geodir");
    let cp = util::etcd::address_of(&members, "/geodir");
    c.control_plane = Some(cp.clone());
    let servers = Servers::start(
        &c.root,
        &["westus", "eastus", "westeurope"],
        &["--control-plane", &cp],
    );
    c.servers = Some(Mutex::new(servers));
    let ada = c.create_user("ada@contoso.com");
    let (primary, term) = primary_of_p0(&c);
    // A follower: losing it changes nothing. (Losing etcd's leader pauses etcd itself for
    // its election, which a lease renewal may wait out: writes may pause for it.)
    let follower = wait_for(
        "a follower among the members",
        Duration::from_secs(10),
        || {
            let f = members.iter().position(|m| !m.is_leader());
            let leaders = members.iter().filter(|m| m.is_leader()).count();
            (f.is_some() && leaders == 1, f)
        },
    )
    .unwrap();
    members[follower].kill();
    // Writes and reads go on for several lease TTLs (the default, 2 s), and nothing fails
    // over: the member killed may be etcd's leader, whose successor is elected meanwhile.
    let until = Instant::now() + Duration::from_secs(6);
    let mut i = 0;
    while Instant::now() < until {
        c.create_user(&format!("w{i}@contoso.com"));
        i += 1;
    }
    assert_eq!(c.user_get(&ada, &[])["id"], ada);
    assert_eq!(
        primary_of_p0(&c),
        (primary, term),
        "losing one etcd member of three moved the primary"
    );
    assert!(i > 0);
}

#[test]
fn a_file_based_cluster_moves_into_etcd_and_keeps_every_object() {
    let _serial = serial();
    let etcd = Etcd::start();
    let mut c = Cluster::new();
    let ada = c.create_user("ada@contoso.com");
    // A Graph token issued before the move: the signing key moves with the topology.
    let before = util::graph::token(&c, "contoso", "reader", &[]);
    let address = etcd.address("/moved");
    let r = c.run(&["control-plane", "migrate", "--to", &address, "--yes"]);
    assert_eq!(r.code, 0, "{}", r.describe());
    assert!(
        !c.root.join("cluster.json").exists() && c.root.join("cluster.json.moved-to-etcd").exists(),
        "cluster.json was not moved aside"
    );
    // Without etcd the cluster root alone holds no cluster any more (exit 3).
    c.user_get_fails(&ada, &[], 3);
    c.control_plane = Some(address.clone());
    assert_eq!(c.user_get(&ada, &[])["id"], ada);
    c.create_user("grace@contoso.com");
    c.ok(&["failover", "--partition", "0", "--to", "eastus", "--yes"]);
    assert_eq!(c.user_get(&ada, &[])["id"], ada);
    {
        let servers = Servers::start(&c.root, &["westus"], &["--control-plane", &address]);
        let api = util::graph::Api::at(&servers.servers["westus"].http);
        // (The server asks etcd for the key from an async handler: this once panicked.)
        if let Err(e) = api.try_get(&format!("users/{ada}"), &before) {
            panic!("{e}\n{}", servers.logs());
        }
        let got = api.get(&format!("users/{ada}"), &before);
        got.expect(200);
        assert_eq!(got.json()["id"], ada.as_str(), "{}", got.describe());
    }
    // Another cluster into the same prefix is refused (exit 4), its cluster.json untouched.
    let other = Cluster::new();
    let r = other.fails(&["control-plane", "migrate", "--to", &address, "--yes"], 4);
    assert!(
        r.stderr.contains("already holds a cluster"),
        "{}",
        r.describe()
    );
    assert!(
        other.root.join("cluster.json").exists(),
        "a refused migrate moved cluster.json"
    );
}
