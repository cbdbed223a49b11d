//! Failover, datacenter loss and fencing, through the real binary (promises 4, 5, 6).
#![allow(clippy::unwrap_used)]

mod util;

use util::{rename, Cluster};

// contoso is on partition 0: primary westus, sync standby eastus, westeurope lags.

fn partition(c: &Cluster, p: u64) -> serde_json::Value {
    let t: serde_json::Value =
        serde_json::from_slice(&std::fs::read(c.root.join("cluster.json")).unwrap()).unwrap();
    t["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == p)
        .cloned()
        .unwrap()
}

#[test]
fn planned_failover_loses_nothing_raises_the_term_and_reports_the_window() {
    let c = Cluster::new();
    let ids: Vec<_> = (0..5)
        .map(|i| c.create_user(&format!("pf{i}@contoso.com")))
        .collect();
    let v = c.ok(&[
        "failover",
        "--yes",
        "--partition",
        "0",
        "--to",
        "westeurope",
    ]);
    let r = &v["failovers"][0];
    assert_eq!(r["newPrimary"], "westeurope");
    assert_eq!(r["newTerm"], 2);
    // Writes were refused for a measured, short while: some time passes between fencing
    // the old primary and the switch, and far less than a minute.
    let window = r["writeUnavailableMs"].as_f64().unwrap();
    assert!(window > 0.0 && window < 60_000.0, "{r}");
    let p = partition(&c, 0);
    assert_eq!(p["primary"], "westeurope");
    assert_eq!(p["term"], 2);
    assert_ne!(p["sync_standby"].as_str().unwrap(), "westeurope");
    for id in &ids {
        for region in ["westus", "eastus"] {
            c.user_get(id, &["--region", region]);
        }
    }
    let id = c.create_user("after@contoso.com");
    let v = c.ok(&[
        "user",
        "get",
        "--tenant",
        "contoso",
        &id,
        "--region",
        p["sync_standby"].as_str().unwrap(),
    ]);
    assert_eq!(v["@geodir.servedBy"]["term"], 2);
    c.fails(
        &[
            "failover",
            "--yes",
            "--partition",
            "0",
            "--to",
            "westeurope",
        ],
        4,
    );
}

#[test]
fn emergency_failover_after_deleting_the_primary_folder_keeps_every_acknowledged_write() {
    let c = Cluster::new();
    let ids: Vec<_> = (0..5)
        .map(|i| c.create_user(&format!("ef{i}@contoso.com")))
        .collect();
    std::fs::remove_dir_all(c.dc_dir("westus")).unwrap();
    c.create_user_fails("x@contoso.com", 5);
    // A planned failover needs the primary.
    c.fails(
        &["failover", "--yes", "--partition", "0", "--to", "eastus"],
        5,
    );
    let v = c.ok(&["failover", "--yes", "--partition", "0", "--emergency"]);
    assert_eq!(v["failovers"][0]["newPrimary"], "eastus");
    assert_eq!(v["failovers"][0]["syncStandby"], "westeurope");
    let planned = &v["failovers"][0];
    assert!(
        planned
            .get("possibleLossAfterLsn")
            .is_some_and(|l| l.is_null()),
        "{v}"
    );
    for id in &ids {
        let v = c.user_get(id, &["--region", "westeurope"]);
        assert_eq!(v["@geodir.servedBy"]["datacenter"], "westeurope");
    }
    c.create_user("x@contoso.com");
    assert!(!c.dc_dir("westus").exists(), "a lost replica was recreated");
}

#[test]
fn double_loss_of_primary_and_standby_is_refused_without_accept_data_loss() {
    let c = Cluster::new();
    c.create_user("d@contoso.com");
    std::fs::remove_dir_all(c.dc_dir("westus")).unwrap();
    std::fs::remove_dir_all(c.dc_dir("eastus")).unwrap();
    let r = c.fails(&["failover", "--yes", "--partition", "0", "--emergency"], 5);
    assert!(r.stderr.contains("--accept-data-loss"), "{}", r.describe());
    assert_eq!(partition(&c, 0)["primary"], "westus");
    let v = c.ok(&[
        "failover",
        "--yes",
        "--partition",
        "0",
        "--emergency",
        "--accept-data-loss",
    ]);
    assert_eq!(v["failovers"][0]["newPrimary"], "westeurope");
    assert_eq!(v["failovers"][0]["possibleLossAfterLsn"], 0);
}

#[test]
fn after_a_failover_that_accepts_data_loss_the_replicas_that_come_back_are_cut_and_the_partition_serves_again(
) {
    let c = Cluster::new();
    let a = c.create_user("a@contoso.com");
    // westus (the primary) is lost: eastus takes over in term 2 and acknowledges b.
    let away = |dc: &str| c.path(&format!("away-{dc}"));
    rename(&c.dc_dir("westus"), &away("westus"));
    c.ok(&["failover", "--yes", "--partition", "0", "--emergency"]);
    let session = c.path("session.json").display().to_string();
    let b = c.create_user_with("b@contoso.com", &["--session", &session])["object"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // westus comes back, eastus and westeurope (every holder of b) are lost; the operator
    // accepts the loss and promotes westus, whose last entry is of term 1.
    rename(&away("westus"), &c.dc_dir("westus"));
    for dc in ["eastus", "westeurope"] {
        rename(&c.dc_dir(dc), &away(dc));
    }
    c.ok(&[
        "failover",
        "--yes",
        "--partition",
        "0",
        "--emergency",
        "--accept-data-loss",
    ]);
    for dc in ["eastus", "westeurope"] {
        rename(&away(dc), &c.dc_dir(dc));
    }
    // The returning replicas hold term 2's entries, now lost: they are cut, not a reason to
    // refuse every read and write of the partition.
    for region in ["westus", "eastus", "westeurope"] {
        c.user_get(&a, &["--region", region]);
        c.user_get_fails(&b, &["--region", region], 3);
    }
    // The session that wrote b reads on, told that its write was undone.
    let r = c.user_get_run(&a, &["--session", &session]);
    assert_eq!(r.code, 0, "{}", r.describe());
    assert!(r.stderr.contains("were undone"), "{}", r.describe());
    let d = c.create_user("d@contoso.com");
    let v = c.ok(&["sync"]);
    assert_eq!(v["failures"], serde_json::json!([]), "{v}");
    for row in c.status(0) {
        assert_eq!(row["health"], "ok", "{row}");
    }
    c.ok(&["failover", "--yes", "--partition", "0", "--to", "eastus"]);
    for region in ["westus", "eastus", "westeurope"] {
        c.user_get(&d, &["--region", region]);
    }
}

#[test]
fn stale_primary_tail_is_discarded_and_never_visible() {
    let c = Cluster::new();
    let acked = c.create_user("acked@contoso.com");
    // A writer crashes after its entry is durable on the primary only: an unacknowledged tail.
    let tail_id = "5a1e7a11-0000-4000-8000-00000000a11e";
    c.crash_leaving_an_unacknowledged_tail(tail_id);
    // The primary's datacenter becomes unreachable before anyone settles the tail.
    let away = c.path("westus-away");
    rename(&c.dc_dir("westus"), &away);
    c.ok(&["failover", "--yes", "--partition", "0", "--emergency"]);
    let newer = c.create_user("newer@contoso.com");
    // The old primary comes back: it is a secondary of a newer term now.
    rename(&away, &c.dc_dir("westus"));
    let v = c.ok(&["sync"]);
    let row = v["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["partition"] == 0 && r["datacenter"] == "westus")
        .cloned()
        .unwrap();
    assert_eq!(row["cutEntries"].as_array().unwrap().len(), 1, "{row}");
    assert_eq!(row["cutEntries"][0]["term"], 1);
    for region in ["westus", "eastus", "westeurope"] {
        c.user_get_fails(tail_id, &["--region", region], 3);
        c.user_get(&acked, &["--region", region]);
        c.user_get(&newer, &["--region", region]);
    }
}

#[test]
fn a_returning_stale_primary_is_cut_before_it_serves_a_read() {
    let c = Cluster::new();
    let tail_id = "5a1e7a11-0000-4000-8000-00000000b11e";
    c.crash_leaving_an_unacknowledged_tail(tail_id);
    let away = c.path("westus-away");
    rename(&c.dc_dir("westus"), &away);
    c.ok(&["failover", "--yes", "--partition", "0", "--emergency"]);
    rename(&away, &c.dc_dir("westus"));
    let row = c.status_row(0, "westus");
    assert!(
        row["health"].as_str().unwrap().starts_with("fenced"),
        "{row}"
    );
    // No sync: the read itself finds westus diverged and cuts its tail first.
    let r = c.user_get_fails(tail_id, &["--region", "westus"], 3);
    assert!(!r.stdout.contains("tail@contoso.com"));
    let row = c.status_row(0, "westus");
    assert_eq!(row["role"], "secondary");
}

#[test]
fn failover_all_from_a_datacenter_moves_every_primary_off_it() {
    let c = Cluster::new();
    c.create_user("a@contoso.com");
    let v = c.ok(&["failover", "--yes", "--all-from", "westus"]);
    let moved: Vec<_> = v["failovers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["partition"].as_u64().unwrap())
        .collect();
    assert_eq!(moved, vec![0, 3]);
    for p in 0..4 {
        assert_ne!(partition(&c, p)["primary"].as_str().unwrap(), "westus");
    }
    c.create_user("b@contoso.com");
}

#[test]
fn an_unreachable_sync_standby_is_replaced_before_the_next_write_is_acknowledged() {
    let c = Cluster::new();
    let away = c.path("eastus-away");
    rename(&c.dc_dir("eastus"), &away);
    let id = c.create_user("r@contoso.com");
    let p = partition(&c, 0);
    assert_eq!(p["sync_standby"], "westeurope");
    // The new standby holds the write without any sync.
    let v = c.user_get(&id, &["--region", "westeurope"]);
    assert_eq!(v["@geodir.servedBy"]["datacenter"], "westeurope");
    rename(&away, &c.dc_dir("eastus"));
}

#[test]
fn a_rebuilt_datacenter_answers_reads_equal_to_the_primary() {
    let c = Cluster::new();
    for i in 0..4 {
        c.create_user(&format!("rb{i}@contoso.com"));
    }
    c.ok(&["sync"]);
    std::fs::remove_dir_all(c.dc_dir("westeurope")).unwrap();
    for i in 4..8 {
        c.create_user(&format!("rb{i}@contoso.com"));
    }
    // westeurope holds partition 2's primary: rebuilding it needs a failover first.
    // The other partitions' replicas are rebuilt meanwhile: something was applied, so the
    // exit is 1, not 5 ("nothing applied").
    let r = c.fails(&["dc", "rebuild", "--yes", "westeurope"], 1);
    assert!(r.stderr.contains("fail over first"), "{}", r.describe());
    assert!(r.stdout.contains("rebuilt"), "{}", r.describe());
    c.ok(&[
        "failover",
        "--yes",
        "--all-from",
        "westeurope",
        "--emergency",
    ]);
    let v = c.ok(&["dc", "rebuild", "--yes", "westeurope"]);
    let results: Vec<_> = v["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["result"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        results,
        ["healthy, kept", "healthy, kept", "rebuilt", "healthy, kept"],
        "{v}"
    );
    let here = c.ok(&[
        "user",
        "list",
        "--tenant",
        "contoso",
        "--region",
        "westeurope",
    ]);
    assert_eq!(here["servedBy"]["datacenter"], "westeurope");
    let there = c.ok(&["user", "list", "--tenant", "contoso", "--region", "eastus"]);
    assert_eq!(here["objects"], there["objects"]);
    assert_eq!(here["objects"].as_array().unwrap().len(), 8);
    assert!(c
        .status(0)
        .iter()
        .all(|r| r["lagEntries"] == 0 && r["health"] == "ok"));
    // The rebuilt replica is a full member: it can become primary.
    c.ok(&[
        "failover",
        "--yes",
        "--partition",
        "0",
        "--to",
        "westeurope",
    ]);
    c.create_user("after-rebuild@contoso.com");
}

#[test]
fn a_secondary_behind_the_retained_log_is_reseeded_from_a_checkpoint() {
    let c = Cluster::new();
    let away = c.path("westeurope-away");
    rename(&c.dc_dir("westeurope"), &away);
    let ids: Vec<_> = (0..6)
        .map(|i| c.create_user(&format!("rs{i}@contoso.com")))
        .collect();
    // westeurope is away: sync prunes the log past it and says it was not brought level.
    let v = c
        .fails(
            &[
                "sync",
                "--partition",
                "0",
                "--retain-log-entries",
                "2",
                "--output",
                "json",
            ],
            5,
        )
        .json();
    assert!(v["failures"].as_array().unwrap().is_empty(), "{v}");
    rename(&away, &c.dc_dir("westeurope"));
    let v = c.ok(&["sync", "--partition", "0", "--retain-log-entries", "2"]);
    let row = v["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["datacenter"] == "westeurope")
        .cloned()
        .unwrap();
    assert_eq!(row["reseeded"], true, "{row}");
    for id in &ids {
        c.user_get(id, &["--region", "westeurope"]);
    }
    assert!(!c.root.join("dc-westeurope").join("p0.stale").exists());
}

#[test]
fn status_shows_terms_sync_standbys_and_rebuilding_replicas() {
    let c = Cluster::new();
    c.ok(&["failover", "--partition", "0", "--to", "eastus", "--yes"]);
    let rows = c.status(0);
    let east = rows.iter().find(|r| r["datacenter"] == "eastus").unwrap();
    assert_eq!(east["role"], "primary");
    assert_eq!(east["partitionTerm"], 2);
    assert_eq!(
        rows.iter().find(|r| r["datacenter"] == "westus").unwrap()["role"],
        "sync-standby"
    );
    // A rebuild interrupted half-way leaves its folder: status says so.
    let p0 = c.dc_dir("westeurope").join("p0");
    std::fs::remove_dir_all(&p0).unwrap();
    std::fs::create_dir_all(c.dc_dir("westeurope").join("p0.rebuild")).unwrap();
    let rows = c.status(0);
    assert!(rows
        .iter()
        .find(|r| r["datacenter"] == "westeurope")
        .unwrap()["health"]
        .as_str()
        .unwrap()
        .starts_with("rebuilding"));
    c.ok(&["dc", "rebuild", "westeurope", "--yes"]);
    assert_eq!(
        c.status(0)
            .iter()
            .find(|r| r["datacenter"] == "westeurope")
            .unwrap()["health"],
        "ok"
    );
}

#[test]
fn accepted_data_loss_is_audited_with_the_window_that_may_be_lost() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("four");
    let run = |args: &[&str]| {
        let out = util::dirctl()
            .arg("--cluster")
            .arg(&root)
            .args(args)
            .args(["--output", "json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dirctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    run(&[
        "init",
        "--datacenters",
        "westus@37.4,-122.1,eastus@37.4,-79.4,westeurope@52.4,4.9,northeurope@53.3,-6.3",
        "--partitions",
        "1",
    ]);
    run(&["tenant", "create", "contoso"]);
    run(&[
        "user",
        "create",
        "--tenant",
        "contoso",
        "--upn",
        "a@contoso.com",
        "--display-name",
        "a",
    ]);
    std::fs::remove_dir_all(root.join("dc-westus")).unwrap();
    std::fs::remove_dir_all(root.join("dc-eastus")).unwrap();
    let v = run(&[
        "failover",
        "--partition",
        "0",
        "--emergency",
        "--accept-data-loss",
        "--yes",
    ]);
    assert_eq!(v["failovers"][0]["possibleLossAfterLsn"], 0);
    let audit = run(&["audit", "list", "--op", "failover.emergency"]).to_string();
    assert!(
        audit.contains("acknowledged writes after lsn 0 (term 1) may be lost"),
        "{audit}"
    );
}

#[test]
fn failover_all_from_that_moves_some_partitions_exits_1_not_5_and_names_the_rest() {
    let c = Cluster::new();
    // Partition 3 (primary westus) gets westeurope as its sync standby; partition 0 keeps eastus.
    c.ok(&[
        "failover",
        "--yes",
        "--partition",
        "3",
        "--to",
        "westeurope",
    ]);
    c.ok(&["failover", "--yes", "--partition", "3", "--to", "westus"]);
    assert_eq!(partition(&c, 3)["sync_standby"], "westeurope");
    rename(&c.dc_dir("westus"), &c.path("away-westus"));
    rename(&c.dc_dir("eastus"), &c.path("away-eastus"));
    let r = c.fails(
        &["failover", "--yes", "--all-from", "westus", "--emergency"],
        1,
    );
    assert!(
        r.stderr
            .contains("failover of partition 0 failed (others succeeded"),
        "{}",
        r.describe()
    );
    assert_eq!(partition(&c, 3)["primary"], "westeurope");
    assert_eq!(partition(&c, 0)["primary"], "westus");
}
