//! The control plane in etcd (docs/server.md): dirctl init on a real etcd, the directory
//! used through the folders and through servers, and what etcd being down means.
#![allow(clippy::unwrap_used)]

mod util;

use util::etcd::Etcd;
use util::servers::Servers;
use util::{Cluster, DCS};

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
