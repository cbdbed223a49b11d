//! dirctl through the real binary: init refuses bad topologies, survives a kill, runs once.
#![allow(clippy::unwrap_used)]

mod util;

use std::path::Path;
use std::process::Stdio;

use serde_json::Value;
use util::{dirctl, Cluster, DCS};

/// `dirctl --cluster ROOT ARGS...`, run to its end.
fn at_root(root: &Path, args: &[&str]) -> std::process::Output {
    dirctl()
        .arg("--cluster")
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn init_refuses_bad_topologies_and_an_existing_cluster() {
    let c = Cluster::new();
    let r = c.fails(&["init", "--datacenters", DCS], 4);
    assert!(
        r.stderr.contains("already holds a cluster"),
        "{}",
        r.describe()
    );
    let fresh = c.path("fresh");
    let run = |args: &[&str]| {
        dirctl()
            .arg("--cluster")
            .arg(&fresh)
            .args(args)
            .output()
            .unwrap()
    };
    assert_eq!(
        run(&["init", "--datacenters", "westus@37.4,-122.1"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        run(&["init", "--datacenters", DCS, "--partitions", "0"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        run(&["init", "--datacenters", "a@1,2,a@3,4"]).status.code(),
        Some(2)
    );
    assert_eq!(
        run(&["init", "--datacenters", "a@1,2,b@nope,4"])
            .status
            .code(),
        Some(2)
    );
    assert!(!fresh.join("cluster.json").exists());
    let r = run(&["init", "--datacenters", DCS, "--partitions", "100000"]);
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("more than 1024"));
}

#[test]
fn an_init_killed_midway_can_be_run_again_and_leaves_no_cluster_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cluster");
    std::fs::create_dir(&root).unwrap();
    let mut child = dirctl()
        .arg("--cluster")
        .arg(&root)
        .args(["init", "--datacenters", DCS, "--partitions", "1024"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed once it has made some replicas.
    while !root.join("dc-westus").join("p3").exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "init ended before it was killed"
        );
        std::thread::yield_now();
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!root.join("cluster.json").exists());
    let r = at_root(&root, &["status"]);
    assert_ne!(r.status.code(), Some(0));
    // Something else beside the leftovers (a backups folder) is not cleared: init refuses.
    std::fs::create_dir(root.join("backups")).unwrap();
    let out = at_root(&root, &["init", "--datacenters", DCS, "--partitions", "2"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(root.join("backups").exists());
    std::fs::remove_dir(root.join("backups")).unwrap();
    let out = at_root(&root, &["init", "--datacenters", DCS, "--partitions", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut left: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("dc-"))
        .collect();
    left.sort();
    assert_eq!(left, vec!["dc-eastus", "dc-westeurope", "dc-westus"]);
    assert!(
        !root.join("dc-westus").join("p3").exists(),
        "the killed init's replicas stayed"
    );
    assert!(!root.join("init-in-progress").exists());
    let out = at_root(&root, &["status"]);
    assert!(out.status.success());
}

#[test]
fn two_inits_of_one_root_at_once_make_one_cluster_and_the_other_is_refused() {
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cluster");
        let spawn = || {
            dirctl()
                .arg("--cluster")
                .arg(&root)
                .args(["init", "--datacenters", DCS, "--partitions", "16"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        };
        let (mut a, mut b) = (spawn(), spawn());
        let mut codes = [a.wait().unwrap().code(), b.wait().unwrap().code()];
        codes.sort();
        assert_eq!(codes, [Some(0), Some(4)]);
        let out = at_root(&root, &["status", "--output", "json"]);
        assert!(out.status.success());
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            v["replicas"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["health"] == "ok"),
            "{v}"
        );
        assert!(!root.join("init-in-progress").exists());
    }
}
