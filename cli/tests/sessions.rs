//! dirctl through the real binary: sessions at lagging secondaries (promise 3), status and sync.
#![allow(clippy::unwrap_used)]

mod util;

use util::{rename, Cluster};

// contoso is on partition 0: primary westus, sync standby eastus, westeurope lags.

/// A change made to a JSON file by hand.
type Edit = fn(&mut serde_json::Value);

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

/// The session file of `c` after one write: its JSON, and its path.
fn session_after_a_write(c: &Cluster) -> (serde_json::Value, String) {
    let path = c.path("s.json").to_str().unwrap().to_string();
    c.create_user_with("w@contoso.com", &["--session", &path]);
    let s = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    (s, path)
}

/// A token no partition could have given (hand-edited, or a session file of another
/// cluster): its lsn past the primary's last entry, or its term after the partition's. A
/// read refuses it as a damaged session file (exit 2, naming the file and how to start
/// afresh) instead of waiting for it forever (exit 5); a new session file reads again.
#[test]
fn an_impossible_session_token_is_a_damaged_session_file_exit_2() {
    let c = Cluster::new();
    let (good, path) = session_after_a_write(&c);
    let edits: [(&str, Edit); 2] = [
        ("lsn", |s| s["tokens"]["0"]["lsn"] = 999_999.into()),
        ("term", |s| s["tokens"]["0"]["term"] = 7.into()),
    ];
    for (what, edit) in edits {
        let mut s = good.clone();
        edit(&mut s);
        std::fs::write(&path, serde_json::to_vec(&s).unwrap()).unwrap();
        for region in ["eastus", "westus", "westeurope"] {
            let r = c.fails(
                &[
                    "user",
                    "list",
                    "--tenant",
                    "contoso",
                    "--session",
                    &path,
                    "--region",
                    region,
                ],
                2,
            );
            assert!(
                r.stderr.contains(&path)
                    && r.stderr.contains("beyond anything partition 0 ever held")
                    && r.stderr.contains("delete it"),
                "{what}: {}",
                r.describe()
            );
        }
        // The file is left as it was (the operator decides), and another session reads.
        let kept: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(kept, s, "{what}");
        let fresh = c.path("fresh.json");
        c.ok(&[
            "user",
            "list",
            "--tenant",
            "contoso",
            "--session",
            fresh.to_str().unwrap(),
        ]);
    }
}

/// A session file naming a datacenter the cluster does not have says so, naming the file,
/// instead of calling it a bad "region".
#[test]
fn a_session_files_unknown_datacenter_is_named_as_such() {
    let c = Cluster::new();
    let (mut s, path) = session_after_a_write(&c);
    s["datacenter"] = "mars".into();
    std::fs::write(&path, serde_json::to_vec(&s).unwrap()).unwrap();
    let r = c.fails(
        &["user", "list", "--tenant", "contoso", "--session", &path],
        2,
    );
    assert!(
        r.stderr.contains(&format!("session file {path}"))
            && r.stderr.contains("datacenter \"mars\"")
            && !r.stderr.contains("region"),
        "{}",
        r.describe()
    );
}
