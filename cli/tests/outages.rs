//! dirctl through the real binary: datacenters drained, unreachable or gone (promises 1, 2, 6).
#![allow(clippy::unwrap_used)]

mod util;

use util::{dirctl, rename, Cluster};

// contoso is on partition 0: primary westus, sync standby eastus, westeurope lags.

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
    // The last datacenter serving reads is not drained: reads go on.
    let r = c.fails(&["dc", "drain", "--yes", "westus"], 4);
    assert!(
        r.stderr.contains("no datacenter serving reads"),
        "{}",
        r.describe()
    );
    c.user_get(&id, &[]);
}
