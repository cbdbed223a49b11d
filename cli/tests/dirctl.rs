//! dirctl through the real binary: the promises of DESIGN.md and the foundation's errors.
#![allow(clippy::unwrap_used)]

mod util;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;
use util::{dirctl, rename, Cluster, DCS};

// contoso is on partition 0: primary westus, sync standby eastus, westeurope lags.

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
fn promise_1_acknowledged_write_survives_deleting_the_primary_datacenter_folder() {
    let c = Cluster::new();
    let id = c.create_user("ada@contoso.com");
    std::fs::remove_dir_all(c.dc_dir("westus")).unwrap();
    let v = c.user_get(&id, &["--region", "eastus"]);
    assert_eq!(v["userPrincipalName"], "ada@contoso.com");
    assert_eq!(v["@geodir.servedBy"]["datacenter"], "eastus");
    // The lost primary is reported, never silently recreated as an empty replica.
    c.create_user_fails("b@contoso.com", 5);
    assert!(!c.dc_dir("westus").exists());
}

#[test]
fn promise_2_no_reachable_secondary_in_another_datacenter_gives_exit_5_and_nothing_is_applied_anywhere(
) {
    let c = Cluster::new();
    c.create_user("first@contoso.com");
    let before = c.lsn(0, "westus");
    // The sync standby and the only other secondary are both unreachable.
    let away = c.path("eastus-away");
    rename(&c.dc_dir("eastus"), &away);
    let away2 = c.path("westeurope-away");
    rename(&c.dc_dir("westeurope"), &away2);
    let id = "0b6e8f0a-1111-4222-8333-444455556666";
    let r = c.fails(
        &[
            "user",
            "create",
            "--tenant",
            "contoso",
            "--set",
            &format!("id={id}"),
            "--upn",
            "x@contoso.com",
            "--display-name",
            "x",
        ],
        5,
    );
    assert!(r.stderr.contains("sync standby"), "{}", r.describe());
    rename(&away, &c.dc_dir("eastus"));
    rename(&away2, &c.dc_dir("westeurope"));
    assert_eq!(c.lsn(0, "westus"), before, "the primary's log moved");
    for region in ["westus", "eastus", "westeurope"] {
        c.user_get_fails(id, &["--region", region], 3);
    }
    c.ok(&["sync"]);
    for region in ["westus", "eastus", "westeurope"] {
        c.user_get_fails(id, &["--region", region], 3);
        c.user_get_fails("x@contoso.com", &["--region", region], 3);
    }
    // The UPN was never taken: the same write succeeds now.
    c.create_user("x@contoso.com");
}

#[test]
fn promise_3_session_reads_its_own_write_at_a_datacenter_that_was_lagging() {
    let c = Cluster::new();
    let session = c.path("session.json");
    let session = session.to_str().unwrap();
    // westeurope is unreachable while the session writes: the write commits on westus + eastus only.
    let away = c.path("westeurope-away");
    rename(&c.dc_dir("westeurope"), &away);
    let v = c.ok(&[
        "user",
        "create",
        "--tenant",
        "contoso",
        "--upn",
        "s@contoso.com",
        "--display-name",
        "s",
        "--session",
        session,
        "--region",
        "westeurope",
    ]);
    let id = v["object"]["id"].as_str().unwrap().to_string();
    rename(&away, &c.dc_dir("westeurope"));
    // Without the session, westeurope's replica lags: it does not know the user.
    c.user_get_fails(&id, &["--region", "westeurope"], 3);
    // With the session, westeurope first pulls from the primary, then answers.
    let v = c.user_get(&id, &["--session", session, "--region", "westeurope"]);
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["@geodir.servedBy"]["datacenter"], "westeurope");
    assert!(
        v["@geodir.servedBy"]["pulledEntries"].as_u64().unwrap() >= 1,
        "{v}"
    );
}

#[test]
fn promise_3_session_write_is_shipped_to_the_session_datacenter() {
    let c = Cluster::new();
    let session = c.path("s.json");
    let session = session.to_str().unwrap();
    let v = c.ok(&[
        "user",
        "create",
        "--tenant",
        "contoso",
        "--upn",
        "t@contoso.com",
        "--display-name",
        "t",
        "--session",
        session,
        "--region",
        "westeurope",
    ]);
    assert_eq!(v["replicaToken"]["datacenter"], "westeurope");
    // Even without the session, westeurope holds it: it was shipped synchronously.
    let v = c.user_get("t@contoso.com", &["--region", "westeurope"]);
    assert_eq!(v["@geodir.servedBy"]["datacenter"], "westeurope");
}

#[test]
fn promise_6_reads_go_on_with_the_primary_datacenter_drained() {
    let c = Cluster::new();
    let id = c.create_user("r@contoso.com");
    c.ok(&["sync"]);
    c.ok(&["dc", "drain", "--yes", "westus"]);
    for region in ["westus", "eastus", "westeurope"] {
        let v = c.user_get(&id, &["--region", region]);
        let dc = v["@geodir.servedBy"]["datacenter"].as_str().unwrap();
        assert!(["eastus", "westeurope"].contains(&dc), "{v}");
    }
    // Drain the nearest secondary too: reads route to the remaining one.
    c.ok(&["dc", "drain", "--yes", "westeurope"]);
    let v = c.user_get(&id, &["--region", "westeurope"]);
    assert_eq!(v["@geodir.servedBy"]["datacenter"], "eastus");
    c.ok(&["dc", "undrain", "--yes", "westeurope"]);
    c.ok(&["dc", "undrain", "--yes", "westus"]);
}

#[test]
fn promise_6_reads_route_around_an_unreachable_datacenter_found_by_probe() {
    let c = Cluster::new();
    let id = c.create_user("p@contoso.com");
    c.ok(&["sync"]);
    std::fs::remove_dir_all(c.dc_dir("westeurope")).unwrap();
    let v = c.user_get(&id, &["--region", "westeurope"]);
    assert_eq!(v["@geodir.servedBy"]["datacenter"], "eastus");
    let row = c.status_row(0, "westeurope");
    assert!(
        row["health"].as_str().unwrap().starts_with("unreachable"),
        "{row}"
    );
}

#[test]
fn duplicate_upn_is_a_conflict_with_exit_4() {
    let c = Cluster::new();
    c.create_user("dup@contoso.com");
    let r = c.create_user_fails("DUP@contoso.com", 4);
    assert!(r.stderr.contains("already taken"), "{}", r.describe());
    let list = c.ok(&["user", "list", "--tenant", "contoso", "--region", "eastus"]);
    assert_eq!(list["objects"].as_array().unwrap().len(), 1);
}

#[test]
fn not_found_gives_exit_3() {
    let c = Cluster::new();
    c.user_get_fails("7d1c7a1e-0000-4000-8000-000000000000", &[], 3);
    c.fails(
        &["user", "get", "--tenant", "contoso", "nobody@contoso.com"],
        3,
    );
    c.fails(
        &[
            "user",
            "get",
            "--tenant",
            "nosuchtenant",
            "nobody@contoso.com",
        ],
        3,
    );
    c.fails(
        &[
            "group",
            "members",
            "--tenant",
            "contoso",
            "7d1c7a1e-0000-4000-8000-000000000000",
        ],
        3,
    );
    let r = dirctl()
        .args(["status", "--cluster", c.path("nowhere").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(3));
}

#[test]
fn malformed_input_is_refused_clearly_and_nothing_is_written() {
    let c = Cluster::new();
    let before = c.lsn(0, "westus");
    let r = c.fails(
        &[
            "user",
            "create",
            "--tenant",
            "contoso",
            "--json",
            "{not json",
        ],
        2,
    );
    assert!(r.stderr.contains("not valid JSON"), "{}", r.describe());
    let r = c.fails(
        &[
            "user",
            "create",
            "--tenant",
            "contoso",
            "--upn",
            "a@contoso.com",
            "--display-name",
            "a",
            "--set",
            "shoeSize=42",
        ],
        2,
    );
    assert!(r.stderr.contains("shoeSize"), "{}", r.describe());
    c.create_user_fails("not-an-upn", 2);
    // An import with a bad line in the middle writes none of the good lines before it.
    // Imports with a bad line in the middle: none of the good lines before it are written.
    let file = c.path("bad.jsonl");
    let import = |lines: &[&str], code: i32| {
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        c.fails(
            &[
                "import",
                "--tenant",
                "contoso",
                file.to_str().unwrap(),
                "--batch-size",
                "1",
            ],
            code,
        )
    };
    let ok1 = r##"{"@odata.type":"#microsoft.graph.user","userPrincipalName":"ok1@contoso.com","displayName":"ok1"}"##;
    let ok2 = r##"{"@odata.type":"#microsoft.graph.user","userPrincipalName":"ok2@contoso.com","displayName":"ok2"}"##;
    let r = import(
        &[
            ok1,
            ok2,
            r##"{"@odata.type":"#microsoft.graph.user","userPrincipalName":"broken""##,
        ],
        2,
    );
    assert!(r.stderr.contains("line 3"), "{}", r.describe());
    let r = import(
        &[
            ok1,
            r##"{"@odata.type":"#microsoft.graph.printer","displayName":"p"}"##,
        ],
        2,
    );
    assert!(r.stderr.contains("unknown object type"), "{}", r.describe());
    // A group naming a member made by a later line says members come first.
    let r = import(
        &[
            r##"{"@odata.type":"#microsoft.graph.group","displayName":"g","members":["01a2b3c4-0000-7000-8000-000000000001"]}"##,
        ],
        3,
    );
    assert!(r.stderr.contains("earlier line"), "{}", r.describe());
    // Bytes that are not UTF-8 are malformed input too.
    std::fs::write(&file, b"\xff\xfe{}\n").unwrap();
    let r = c.fails(
        &["import", "--tenant", "contoso", file.to_str().unwrap()],
        2,
    );
    assert!(
        r.stderr.contains("line 1: not UTF-8") && r.stderr.contains("nothing was imported"),
        "{}",
        r.describe()
    );
    // A conflict late in the file is found before anything is written; a conflict with
    // an earlier line of the file names that line (its object was never written).
    let r = import(
        &[
            ok1,
            r##"{"@odata.type":"#microsoft.graph.user","userPrincipalName":"OK1@contoso.com","displayName":"ok1 again"}"##,
        ],
        4,
    );
    assert!(
        r.stderr.contains("line 2") && r.stderr.contains("taken by line 1 of this file"),
        "{}",
        r.describe()
    );
    // Only the audit records of the two failed imports (not found, conflict) were written:
    // malformed input is refused before anything is attempted.
    assert_eq!(c.lsn(0, "westus"), before.map(|l| l + 2));
    let failed: Vec<_> = c.ok(&["audit", "list", "--op", "import"])["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed[1].contains("line 1 of this file"), "{failed:?}");
    // A byte-order mark before the first line is not malformed JSON.
    std::fs::write(&file, format!("\u{feff}{ok2}\n")).unwrap();
    let r = c.run(&["import", "--tenant", "contoso", file.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.describe());
    c.user_get("ok2@contoso.com", &[]);
    c.user_get_fails("ok1@contoso.com", &["--region", "eastus"], 3);
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
fn a_replica_held_by_another_process_is_waited_for_then_fails_clearly() {
    let c = Cluster::new();
    let lock = std::fs::File::options()
        .read(true)
        .write(true)
        .open(c.dc_dir("westus").join("p0").join("geodir.lock"))
        .unwrap();
    lock.lock().unwrap();
    let start = std::time::Instant::now();
    let r = c.fails(
        &[
            "user",
            "create",
            "--tenant",
            "contoso",
            "--upn",
            "l@contoso.com",
            "--display-name",
            "l",
            "--lock-timeout-ms",
            "300",
        ],
        5,
    );
    assert!(start.elapsed() >= std::time::Duration::from_millis(300));
    assert!(
        r.stderr.contains("held by another dirctl process"),
        "{}",
        r.describe()
    );
    lock.unlock().unwrap();
    c.create_user("l@contoso.com");
}

#[test]
fn a_held_control_plane_is_waited_for_then_fails_clearly_and_changes_nothing() {
    let c = Cluster::new();
    let before = std::fs::read(c.root.join("cluster.json")).unwrap();
    let lock = std::fs::File::options()
        .read(true)
        .write(true)
        .open(c.root.join("cluster.lock"))
        .unwrap();
    lock.lock().unwrap();
    let start = std::time::Instant::now();
    let r = c.fails(
        &["dc", "drain", "--yes", "westus", "--lock-timeout-ms", "300"],
        5,
    );
    assert!(start.elapsed() >= std::time::Duration::from_millis(300));
    assert!(
        r.stderr.contains("control plane") && r.stderr.contains("held by another dirctl process"),
        "{}",
        r.describe()
    );
    assert_eq!(std::fs::read(c.root.join("cluster.json")).unwrap(), before);
    // A tenant is placed in cluster.json before its record is written: nothing of it lands.
    c.fails(
        &["tenant", "create", "fabrikam", "--lock-timeout-ms", "300"],
        5,
    );
    assert_eq!(std::fs::read(c.root.join("cluster.json")).unwrap(), before);
    lock.unlock().unwrap();
    let ok_records = c.ok(&["audit", "list", "--op", "tenant.create"])["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["targets"][0] == "fabrikam" && r["outcome"] == "ok")
        .count();
    assert_eq!(ok_records, 0);
    let names: Vec<_> = c
        .ok(&["tenant", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].to_string())
        .collect();
    assert_eq!(names, vec!["\"contoso\""], "fabrikam is not placed");
    c.ok(&["tenant", "create", "fabrikam"]);
    c.ok(&["dc", "drain", "--yes", "westus"]);
    assert_ne!(std::fs::read(c.root.join("cluster.json")).unwrap(), before);
}

#[test]
fn two_dirctl_writers_at_once_both_succeed() {
    let c = Cluster::new();
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let root = c.root.clone();
            std::thread::spawn(move || {
                for i in 0..12 {
                    let upn = format!("w{w}-{i}@contoso.com");
                    let out = dirctl()
                        .args([
                            "user",
                            "create",
                            "--tenant",
                            "contoso",
                            "--upn",
                            &upn,
                            "--display-name",
                            &upn,
                            "--cluster",
                        ])
                        .arg(&root)
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "writer {w} item {i}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let list = c.ok(&["user", "list", "--tenant", "contoso", "--region", "eastus"]);
    assert_eq!(list["objects"].as_array().unwrap().len(), 24);
    assert_eq!(c.lsn(0, "westus"), Some(1 + 24));
}

#[test]
fn import_killed_with_sigkill_keeps_every_object_it_reported_committed() {
    let c = Cluster::new();
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/contoso.jsonl");
    let (mut cmd, shown) = c.command(&[
        "import",
        "--tenant",
        "contoso",
        fixtures,
        "--batch-size",
        "100",
        "--output",
        "json",
    ]);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reported = 0u64;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(Ok(line)) = lines.next() {
        let v: Value = serde_json::from_str(&line).unwrap();
        if let Some(n) = v["committedThroughLine"].as_u64() {
            reported = n;
        }
        if reported >= 1500 {
            child.kill().unwrap(); // SIGKILL
            break;
        }
    }
    child.wait().unwrap();
    assert!(
        reported >= 1500,
        "{shown}: import ended before it was killed"
    );
    // Every object of the reported lines is readable.
    let text = std::fs::read_to_string(fixtures).unwrap();
    let ids: Vec<String> = text
        .lines()
        .take(reported as usize)
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let users = c.ok(&["user", "list", "--tenant", "contoso", "--region", "eastus"]);
    let have: std::collections::HashSet<&str> = users["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    for id in &ids {
        assert!(
            have.contains(id.as_str()),
            "object {id} was reported committed but is missing"
        );
    }
    // After sync, the replicas agree.
    c.ok(&["sync"]);
    let rows = c.status(0);
    let lsns: Vec<_> = rows.iter().map(|r| r["lastLsn"].as_u64()).collect();
    assert!(
        lsns.iter().all(|l| *l == lsns[0] && l.is_some()),
        "{rows:?}"
    );
    let a = c.ok(&[
        "user",
        "list",
        "--tenant",
        "contoso",
        "--region",
        "westeurope",
    ]);
    let b = c.ok(&["user", "list", "--tenant", "contoso", "--region", "eastus"]);
    assert_eq!(a["objects"], b["objects"]);
}

#[test]
fn groups_hold_nested_members() {
    let c = Cluster::new();
    let u = c.create_user("m@contoso.com");
    let g1 = c.ok(&[
        "group",
        "create",
        "--tenant",
        "contoso",
        "--display-name",
        "inner",
    ])["object"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let g2 = c.ok(&[
        "group",
        "create",
        "--tenant",
        "contoso",
        "--display-name",
        "outer",
    ])["object"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    c.ok(&["group", "add-member", "--tenant", "contoso", &g1, &u]);
    c.ok(&["group", "add-member", "--tenant", "contoso", &g2, &g1]);
    c.fails(&["group", "add-member", "--tenant", "contoso", &g2, &g1], 4);
    let m = c.ok(&[
        "group", "members", "--tenant", "contoso", &g2, "--region", "eastus",
    ]);
    assert_eq!(m["objects"][0]["id"], g1.as_str());
    c.ok(&["group", "remove-member", "--tenant", "contoso", &g1, &u]);
    let m = c.ok(&[
        "group", "members", "--tenant", "contoso", &g1, "--region", "eastus",
    ]);
    assert_eq!(m["objects"].as_array().unwrap().len(), 0);
    c.fails(
        &["group", "remove-member", "--tenant", "contoso", &g1, &u],
        3,
    );
}

#[test]
fn every_object_type_can_be_created_read_updated_and_deleted() {
    let c = Cluster::new();
    for (noun, args) in [
        (
            "user",
            vec!["--upn", "crud@contoso.com", "--display-name", "Crud"],
        ),
        ("group", vec!["--display-name", "G"]),
        ("app", vec!["--display-name", "App"]),
        (
            "sp",
            vec![
                "--app-id",
                "00000000-0000-4000-8000-00000000000a",
                "--display-name",
                "SP",
            ],
        ),
        (
            "device",
            vec![
                "--display-name",
                "DEV-1",
                "--set",
                "operatingSystem=Windows",
            ],
        ),
    ] {
        let mut a = vec![noun, "create", "--tenant", "contoso"];
        a.extend(args);
        let id = c.ok(&a)["object"]["id"].as_str().unwrap().to_string();
        let v = c.ok(&[
            noun,
            "update",
            "--tenant",
            "contoso",
            &id,
            "--display-name",
            "Renamed",
        ]);
        assert_eq!(v["object"]["displayName"], "Renamed");
        let v = c.ok(&[
            noun, "get", "--tenant", "contoso", &id, "--region", "eastus",
        ]);
        assert_eq!(v["displayName"], "Renamed");
        assert_eq!(
            c.ok(&[noun, "list", "--tenant", "contoso", "--region", "eastus"])["objects"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        c.ok(&[noun, "delete", "--tenant", "contoso", &id]);
        c.fails(
            &[
                noun, "get", "--tenant", "contoso", &id, "--region", "eastus",
            ],
            3,
        );
    }
}

#[test]
fn status_shows_lag_until_sync_brings_secondaries_level() {
    let c = Cluster::new();
    for i in 0..3 {
        c.create_user(&format!("lag{i}@contoso.com"));
    }
    let rows = c.status(0);
    let we = rows
        .iter()
        .find(|r| r["datacenter"] == "westeurope")
        .unwrap();
    assert_eq!(we["lagEntries"], 4);
    assert_eq!(
        rows.iter().find(|r| r["datacenter"] == "eastus").unwrap()["lagEntries"],
        0
    );
    c.ok(&["sync", "--partition", "0"]);
    assert!(c.status(0).iter().all(|r| r["lagEntries"] == 0));
}

#[test]
fn promise_2_two_datacenters_unreachable_sync_standby_gives_exit_5_and_nothing_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("two");
    let run = |args: &[&str]| {
        let out = dirctl()
            .arg("--cluster")
            .arg(&root)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    assert_eq!(
        run(&[
            "init",
            "--datacenters",
            "westus@37.4,-122.1,eastus@37.4,-79.4",
            "--partitions",
            "1"
        ])
        .0,
        Some(0)
    );
    assert_eq!(run(&["tenant", "create", "contoso"]).0, Some(0));
    // partition 0: primary westus, sync standby eastus, and no other datacenter to take over.
    rename(&root.join("dc-eastus"), &dir.path().join("eastus-away"));
    let (code, _, stderr) = run(&[
        "user",
        "create",
        "--tenant",
        "contoso",
        "--upn",
        "x@contoso.com",
        "--display-name",
        "x",
    ]);
    assert_eq!(code, Some(5), "{stderr}");
    rename(&dir.path().join("eastus-away"), &root.join("dc-eastus"));
    assert_eq!(run(&["sync"]).0, Some(0));
    for region in ["westus", "eastus"] {
        let (code, stdout, _) = run(&[
            "user",
            "get",
            "--tenant",
            "contoso",
            "x@contoso.com",
            "--region",
            region,
        ]);
        assert_eq!(code, Some(3), "{stdout}");
    }
}

#[test]
fn a_corrupt_log_entry_is_refused_with_its_location_and_never_shipped() {
    let c = Cluster::new();
    c.create_user("c1@contoso.com");
    let id = c.create_user("c2@contoso.com");
    // Flip one byte inside the primary's log entry at lsn 3, directly in RocksDB.
    {
        let path = c.dc_dir("westus").join("p0");
        let db = rocksdb::DB::open_cf(
            &rocksdb::Options::default(),
            &path,
            ["default", "log", "meta"],
        )
        .unwrap();
        let log = db.cf_handle("log").unwrap();
        let mut raw = db.get_cf(&log, 3u64.to_be_bytes()).unwrap().unwrap();
        let mid = raw.len() / 2;
        raw[mid] ^= 0x55;
        db.put_cf(&log, 3u64.to_be_bytes(), raw).unwrap();
    }
    let r = c.fails(&["sync", "--output", "json"], 5);
    assert!(
        r.stderr.contains("not brought level") && r.stderr.contains("dc-westeurope/p0"),
        "{}",
        r.describe()
    );
    let v = r.json();
    let row = v["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["partition"] == 0 && r["datacenter"] == "westeurope")
        .cloned()
        .unwrap();
    let err = row["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("corrupt data") && err.contains("lsn 3") && err.contains("checksum"),
        "{row}"
    );
    // Nothing of the corrupt entry reached the lagging replica.
    c.user_get_fails(&id, &["--region", "westeurope"], 3);
    assert_eq!(c.lsn(0, "westeurope"), Some(0));
}

#[test]
fn an_import_whose_standby_fails_midway_keeps_the_lines_before_and_says_where_it_stopped() {
    let c = Cluster::new();
    let file = c.path("ten.jsonl");
    let upns: Vec<String> = (1..=10).map(|i| format!("bulk{i}@contoso.com")).collect();
    let text: String = upns
        .iter()
        .map(|u| {
            format!(
                "{{\"@odata.type\": \"#microsoft.graph.user\", \"userPrincipalName\": \"{u}\", \"displayName\": \"{u}\"}}\n"
            )
        })
        .collect();
    std::fs::write(&file, text).unwrap();
    // Five batches of two lines: the standby fails from the third batch's entry on.
    let next = c.lsn(0, "westus").unwrap() + 1;
    let (mut cmd, shown) = c.command(&[
        "import",
        "--tenant",
        "contoso",
        file.to_str().unwrap(),
        "--batch-size",
        "2",
        "--output",
        "json",
    ]);
    let out = cmd
        .env(
            "DIRCTL_FAILPOINT",
            format!("standby-fails-from-lsn:{}", next + 2),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{shown}\n{stdout}\n{stderr}");
    assert!(
        stderr.contains("from line 5; lines before it are committed")
            && stderr.contains("nothing was applied"),
        "{stderr}"
    );
    let reported: Vec<u64> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["committedThroughLine"].as_u64())
        .collect();
    assert_eq!(reported, [2, 4]);
    c.ok(&["sync"]);
    for dc in ["westus", "eastus", "westeurope"] {
        let users = c.ok(&["user", "list", "--tenant", "contoso", "--region", dc]);
        let have: Vec<&str> = users["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["userPrincipalName"].as_str().unwrap())
            .collect();
        for (i, upn) in upns.iter().enumerate() {
            assert_eq!(have.contains(&upn.as_str()), i < 4, "{upn} read at {dc}");
        }
    }
    let audit = c.ok(&["audit", "list", "--op", "import"]);
    let outcomes: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.len(), 1, "{audit}");
    assert!(outcomes[0].contains("standby"), "{audit}");
}

/// Every file under the cluster's datacenter folders, with its length and modification time.
fn replica_files(c: &Cluster) -> std::collections::BTreeMap<PathBuf, (u64, std::time::SystemTime)> {
    fn walk(
        dir: &Path,
        out: &mut std::collections::BTreeMap<PathBuf, (u64, std::time::SystemTime)>,
    ) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                walk(&e.path(), out);
            } else {
                out.insert(e.path(), (m.len(), m.modified().unwrap()));
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    for dc in ["westus", "eastus", "westeurope"] {
        walk(&c.dc_dir(dc), &mut out);
    }
    out
}

#[test]
fn reads_write_nothing_to_the_replicas_they_read_so_a_full_disk_does_not_stop_them() {
    let c = Cluster::new();
    let id = c.create_user("reader@contoso.com");
    c.ok(&["sync"]);
    let before = replica_files(&c);
    for region in ["westus", "eastus", "westeurope"] {
        let got = c.user_get(&id, &["--region", region]);
        assert_eq!(got["userPrincipalName"], "reader@contoso.com", "{got}");
        c.ok(&["user", "list", "--tenant", "contoso", "--region", region]);
        c.access_check(&id, "wiki", &["--action", "read", "--region", region]);
    }
    c.ok(&["status"]);
    c.ok(&["audit", "list"]);
    let after = replica_files(&c);
    let changed: Vec<_> = before
        .keys()
        .chain(after.keys())
        .filter(|p| before.get(*p) != after.get(*p))
        .collect();
    assert!(
        changed.is_empty(),
        "reads changed replica files: {changed:?}"
    );
}

#[test]
fn sync_exits_5_naming_a_replica_it_could_not_bring_level() {
    let c = Cluster::new();
    let id = c.create_user("lagging@contoso.com");
    let away = c.path("westeurope-away");
    util::rename(&c.dc_dir("westeurope"), &away);
    let r = c.fails(&["sync"], 5);
    assert!(
        r.stderr.contains("not brought level") && r.stderr.contains("dc-westeurope/p0"),
        "{}",
        r.describe()
    );
    // The reachable replicas were brought level all the same.
    assert_eq!(c.lsn(0, "eastus"), c.lsn(0, "westus"));
    util::rename(&away, &c.dc_dir("westeurope"));
    c.ok(&["sync"]);
    c.user_get(&id, &["--region", "westeurope"]);
}

#[test]
fn a_committed_write_is_reported_committed_even_when_its_session_file_cannot_be_saved() {
    let c = Cluster::new();
    let session = c.path("s.json");
    let s = session.display().to_string();
    c.ok(&["user", "list", "--tenant", "contoso", "--session", &s]);
    // The session file's temporary sibling cannot be created: saving it fails.
    std::fs::create_dir(c.path("s.tmp")).unwrap();
    let r = c.run(&[
        "user",
        "create",
        "--tenant",
        "contoso",
        "--upn",
        "kept@contoso.com",
        "--display-name",
        "kept",
        "--session",
        &s,
    ]);
    assert_eq!(r.code, 0, "{}", r.describe());
    assert!(
        r.stderr.contains("the write is committed") && r.stderr.contains("could not be saved"),
        "{}",
        r.describe()
    );
    c.user_get("kept@contoso.com", &[]);
    let failed = c.ok(&["audit", "list", "--op", "user.create"])["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] != "ok")
        .count();
    assert_eq!(failed, 0, "a committed write was also recorded as failed");
}

#[test]
fn not_found_at_a_lagging_secondary_names_where_it_was_read_and_how_to_read_level() {
    let c = Cluster::new();
    c.create_user("fresh@contoso.com");
    // westeurope is an ordinary secondary of partition 0: it lags until a sync.
    let r = c.user_get_fails("fresh@contoso.com", &["--region", "westeurope"], 3);
    assert!(
        r.stderr.contains("read at secondary westeurope")
            && r.stderr.contains("dirctl sync")
            && r.stderr.contains("--session"),
        "{}",
        r.describe()
    );
    c.ok(&["sync"]);
    c.user_get("fresh@contoso.com", &["--region", "westeurope"]);
}

#[test]
fn with_every_secondary_drained_the_primary_answers_reads() {
    let c = Cluster::new();
    let id = c.create_user("last.resort@contoso.com");
    c.ok(&["dc", "drain", "--yes", "eastus"]);
    c.ok(&["dc", "drain", "--yes", "westeurope"]);
    let v = c.user_get(&id, &["--region", "westeurope"]);
    assert_eq!(v["@geodir.servedBy"]["datacenter"], "westus");
    // A write in a session whose datacenter is drained still works, and reads its own write.
    let s = c.path("s.json").display().to_string();
    let w = c.create_user_with(
        "in.session@contoso.com",
        &["--session", &s, "--region", "westeurope"],
    );
    let id2 = w["object"]["id"].as_str().unwrap();
    c.user_get(id2, &["--session", &s]);
    // A writer dies after its entry is durable on the primary alone: the primary does not
    // serve it (it is not a fact) until a sync settles it (cut: the standby never got it).
    let tail = "5a1e7a11-0000-4000-8000-00000000c11e";
    c.crash_leaving_an_unacknowledged_tail(tail);
    let r = c.fails(&["user", "get", "--tenant", "contoso", tail], 5);
    assert!(
        r.stderr.contains("above its commit lsn"),
        "{}",
        r.describe()
    );
    // status and health say so: reads of the partition fail until it is settled.
    assert!(c.status_row(0, "westus")["health"]
        .as_str()
        .unwrap()
        .starts_with("unsettled"));
    let r = c.fails(&["health"], 1);
    assert!(
        r.stdout.contains("dc-westus/p0 is unsettled"),
        "{}",
        r.describe()
    );
    c.ok(&["sync"]);
    assert_eq!(c.status_row(0, "westus")["health"], "ok");
    c.fails(&["user", "get", "--tenant", "contoso", tail], 3);
    c.user_get(&id, &[]);
    c.ok(&["dc", "drain", "--yes", "westus"]);
    let r = c.fails(&["user", "get", "--tenant", "contoso", &id], 5);
    assert!(r.stderr.contains("drained"), "{}", r.describe());
}

#[test]
fn regions_take_southern_and_western_coordinates_and_refuse_impossible_ones() {
    let c = Cluster::new();
    let id = c.create_user("sydney@contoso.com");
    c.ok(&["sync"]);
    c.ok(&[
        "user",
        "get",
        "--tenant",
        "contoso",
        &id,
        "--region",
        "-33.9,151.2",
    ]);
    let r = c.fails(
        &[
            "user", "get", "--tenant", "contoso", &id, "--region", "100,0",
        ],
        2,
    );
    assert!(r.stderr.contains("latitude -90..90"), "{}", r.describe());
    // A datacenter's name as a region, in any letter case.
    assert_eq!(
        c.user_get(&id, &["--region", "WestEurope"])["@geodir.servedBy"]["datacenter"],
        "westeurope"
    );
    // Tenant names are unique whatever their letter case.
    let r = c.fails(&["tenant", "create", "Contoso"], 4);
    assert!(
        r.stderr.contains("tenant contoso already exists"),
        "{}",
        r.describe()
    );
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
