//! The promises through dirctl, each test body run twice: against the cluster's folders
//! (the embedded mode) and against one real geodird per datacenter (`--endpoints`).
mod util;

use serde_json::Value;
use util::{Cluster, Mode};

/// Promises 1 and 3: an acknowledged write is durable in a second datacenter, and a
/// session reads its own write at every datacenter, whichever answers.
fn promise_1_3_a_session_reads_its_write_everywhere(mode: Mode) {
    let c = Cluster::in_mode(mode);
    let session = c.path("session.json");
    let session = session.to_str().unwrap();
    let v = c.create_user_with("s@contoso.com", &["--session", session]);
    let id = v["object"]["id"].as_str().unwrap().to_string();
    let token = v["replicaToken"].as_str().unwrap_or_default().to_string();
    for region in ["westus", "eastus", "westeurope"] {
        let got = c.user_get(&id, &["--session", session, "--region", region]);
        assert_eq!(
            got["id"],
            id.as_str(),
            "read at {region}: {got}\n{}",
            c.server_logs()
        );
        assert_eq!(got["userPrincipalName"], "s@contoso.com");
    }
    // Geo-durable: with westus (the primary) and westeurope gone, eastus (the sync
    // standby) still holds it.
    c.take_down("westus");
    c.take_down("westeurope");
    let got = c.user_get(&id, &["--region", "eastus"]);
    assert_eq!(got["id"], id.as_str(), "token {token}: {got}");
    assert_eq!(got["@geodir.servedBy"]["datacenter"], "eastus");
}
both_modes!(
    promise_1_3_a_session_reads_its_write_everywhere,
    promise_1_3_a_session_reads_its_write_everywhere_embedded,
    promise_1_3_a_session_reads_its_write_everywhere_server
);

/// Promise 2: with no secondary in another datacenter able to take the write, it fails
/// with exit 5 and is applied nowhere, then or later.
fn promise_2_no_silent_downgrade(mode: Mode) {
    let c = Cluster::in_mode(mode);
    c.take_down("eastus");
    c.take_down("westeurope");
    let r = c.create_user_fails("lost@contoso.com", 5);
    assert!(
        r.stderr.contains("nothing") || r.stderr.contains("no geo-durable"),
        "{}",
        r.describe()
    );
    c.bring_back("eastus");
    c.bring_back("westeurope");
    for region in ["westus", "eastus", "westeurope"] {
        let r = c.user_get_fails("lost@contoso.com", &["--region", region], 3);
        assert!(r.stderr.contains("lost@contoso.com"), "{}", r.describe());
    }
    // Writes go on once a second datacenter is back.
    c.create_user("after@contoso.com");
}
both_modes!(
    promise_2_no_silent_downgrade,
    promise_2_no_silent_downgrade_embedded,
    promise_2_no_silent_downgrade_server
);

/// Promise 6: reads keep working while the primary's datacenter is down.
fn promise_6_reads_keep_working_without_the_primary(mode: Mode) {
    let c = Cluster::in_mode(mode);
    let session = c.path("session.json");
    let session = session.to_str().unwrap();
    let id = c.create_user_with("r@contoso.com", &["--session", session])["object"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    c.take_down("westus");
    for region in ["eastus", "westeurope", "westus"] {
        let got = c.user_get(&id, &["--session", session, "--region", region]);
        assert_eq!(got["id"], id.as_str(), "read near {region}: {got}");
        assert_ne!(got["@geodir.servedBy"]["datacenter"], "westus");
    }
    // Writes need the primary: refused with exit 5, nothing applied.
    c.create_user_fails("w@contoso.com", 5);
}
both_modes!(
    promise_6_reads_keep_working_without_the_primary,
    promise_6_reads_keep_working_without_the_primary_embedded,
    promise_6_reads_keep_working_without_the_primary_server
);

/// A taken UPN is a conflict (exit 4) and an unknown ID is not found (exit 3), whichever
/// server is asked.
fn upn_conflict_and_not_found(mode: Mode) {
    let c = Cluster::in_mode(mode);
    let id = c.create_user("ada@contoso.com");
    for region in ["westus", "eastus", "westeurope"] {
        let mut a = util::create_user_args("ADA@contoso.com");
        a.extend(["--region", region]);
        let r = c.fails(&a, 4);
        assert!(
            r.stderr.contains("ada@contoso.com") || r.stderr.contains(&id),
            "{}",
            r.describe()
        );
    }
    let r = c.user_get_fails("00000000-0000-0000-0000-000000000000", &[], 3);
    assert!(
        r.stderr.contains("00000000-0000-0000-0000-000000000000"),
        "{}",
        r.describe()
    );
    let r = c.fails(&["user", "get", "--tenant", "nowhere", &id], 3);
    assert!(r.stderr.contains("nowhere"), "{}", r.describe());
}
both_modes!(
    upn_conflict_and_not_found,
    upn_conflict_and_not_found_embedded,
    upn_conflict_and_not_found_server
);

/// An import commits every line, readable afterwards.
fn import_commits_every_line(mode: Mode) {
    let c = Cluster::in_mode(mode);
    let file = c.path("some.jsonl");
    let lines: Vec<String> = (0..250)
        .map(|i| {
            format!(
                r##"{{"@odata.type":"#microsoft.graph.user","userPrincipalName":"u{i}@contoso.com","displayName":"User {i}"}}"##
            )
        })
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let r = c.run(&[
        "import",
        "--tenant",
        "contoso",
        file.to_str().unwrap(),
        "--batch-size",
        "100",
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.describe());
    // One JSON line per committed batch, then the summary.
    let events: Vec<Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 4, "{}", r.describe());
    assert_eq!(events[2]["committedThroughLine"], 250, "{}", r.describe());
    assert_eq!(events[3]["imported"], 250, "{}", r.describe());
    let got = c.user_get("u249@contoso.com", &["--region", "westus"]);
    assert_eq!(got["displayName"], "User 249");
    // A malformed line: nothing is imported.
    std::fs::write(&file, "{\"@odata.type\":\"#microsoft.graph.user\",").unwrap();
    let r = c.fails(
        &["import", "--tenant", "contoso", file.to_str().unwrap()],
        2,
    );
    assert!(r.stderr.contains("line 1"), "{}", r.describe());
}
both_modes!(
    import_commits_every_line,
    import_commits_every_line_embedded,
    import_commits_every_line_server
);

/// Promise 7 through either mode: a deleted user is in the recycle bin and comes back with
/// its ID; a restore over a taken UPN conflicts until given a new one.
fn recycle_bin_restores_by_id(mode: Mode) {
    let c = Cluster::in_mode(mode);
    let old = c.create_user("ada@contoso.com");
    c.ok(&["user", "delete", "--tenant", "contoso", &old]);
    let listed = c.ok(&[
        "deleted", "list", "--tenant", "contoso", "--region", "westus",
    ]);
    assert!(listed.to_string().contains(&old), "{listed}");
    let new = c.create_user("ada@contoso.com");
    let r = c.fails(&["deleted", "restore", "--tenant", "contoso", &old], 4);
    assert!(r.stderr.contains(&new), "{}", r.describe());
    let v = c.ok(&[
        "deleted",
        "restore",
        "--tenant",
        "contoso",
        &old,
        "--new-upn",
        "ada.old@contoso.com",
    ]);
    assert_eq!(v["object"]["userPrincipalName"], "ada.old@contoso.com");
    let u = c.user_get("ada.old@contoso.com", &["--region", "westus"]);
    assert_eq!(u["id"], Value::from(old));
}
both_modes!(
    recycle_bin_restores_by_id,
    recycle_bin_restores_by_id_embedded,
    recycle_bin_restores_by_id_server
);

/// Access checks: an allow through a group, a deny that wins, at any datacenter.
fn access_check_deny_wins(mode: Mode) {
    let c = Cluster::in_mode(mode);
    let session = c.path("session.json");
    let session = session.to_str().unwrap();
    let ada = c.create_user("ada@contoso.com");
    let g = c.create_group("g");
    c.ok(&["group", "add-member", "--tenant", "contoso", &g, &ada]);
    let grant = |principal: &str, effect: &str| {
        c.ok(&[
            "access",
            "grant",
            "--tenant",
            "contoso",
            "--principal",
            principal,
            "--resource",
            "payroll",
            effect,
            "--session",
            session,
        ]);
    };
    grant(&g, "--allow");
    let check = |region: &str| {
        c.access_check(&ada, "payroll", &["--session", session, "--region", region])["decision"]
            .clone()
    };
    assert_eq!(check("eastus"), "allowed");
    grant(&ada, "--deny");
    for region in ["westus", "eastus", "westeurope"] {
        assert_eq!(check(region), "denied", "at {region}");
    }
}
both_modes!(
    access_check_deny_wins,
    access_check_deny_wins_embedded,
    access_check_deny_wins_server
);

/// Promise 9: every change leaves one audit record naming its actor, target and outcome,
/// a refused one too.
fn audit_records_each_change(mode: Mode) {
    let c = Cluster::in_mode(mode);
    let id = c.create_user("ada@contoso.com");
    c.create_user_fails("ada@contoso.com", 4);
    c.ok(&[
        "user", "delete", "--tenant", "contoso", &id, "--actor", "carol",
    ]);
    let records = c.ok(&["audit", "list"])["records"]
        .as_array()
        .unwrap()
        .clone();
    let ops: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            (
                r["op"].as_str().unwrap_or_default().to_string(),
                r["outcome"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let creates = ops.iter().filter(|(o, _)| o == "user.create").count();
    assert_eq!(creates, 2, "{ops:?}");
    assert!(
        ops.iter().any(|(o, out)| o == "user.create" && out != "ok"),
        "{ops:?}"
    );
    let delete = records
        .iter()
        .find(|r| r["op"] == "user.delete")
        .unwrap_or_else(|| panic!("no user.delete record: {records:?}"));
    assert_eq!(delete["actor"], "carol");
    assert!(delete.to_string().contains(&id), "{delete}");
}
both_modes!(
    audit_records_each_change,
    audit_records_each_change_embedded,
    audit_records_each_change_server
);

/// Operator verbs: `status` shows every replica with its role, lag in entries and in ms,
/// and health; a datacenter that is down shows unreachable and `health` names it (exit 1);
/// `dc drain` routes reads around a datacenter until `dc undrain`.
fn status_health_and_drain(mode: Mode) {
    let c = Cluster::in_mode(mode);
    c.create_user("ada@contoso.com");
    let rows =
        |c: &Cluster| -> Vec<Value> { c.ok(&["status"])["replicas"].as_array().unwrap().clone() };
    let row = |rows: &[Value], p: u64, dc: &str| -> Value {
        rows.iter()
            .find(|r| r["partition"] == p && r["datacenter"] == dc)
            .cloned()
            .unwrap_or_else(|| panic!("no row for p{p} {dc}: {rows:?}"))
    };
    let all = rows(&c);
    assert_eq!(all.len(), 12, "4 partitions x 3 datacenters: {all:?}");
    for r in &all {
        assert_eq!(r["health"], "ok", "{r}\n{}", c.server_logs());
        // Level replicas are 0 ms behind; a lagging one (the embedded mode's westeurope,
        // which only `sync` brings level) says how long ago its first missed entry was written.
        assert!(
            r["lagEntries"].is_u64() && r["lagMs"].is_u64(),
            "lag in entries and ms: {r}"
        );
        if r["lagEntries"] == 0 {
            assert_eq!(r["lagMs"], 0, "{r}");
        }
    }
    assert_eq!(row(&all, 0, "westus")["role"], "primary");
    assert_eq!(row(&all, 0, "eastus")["role"], "sync-standby");
    assert_eq!(row(&all, 0, "eastus")["lagEntries"], 0, "{all:?}");
    let table = c.run(&["status", "--output", "table"]);
    assert!(
        table.stdout.contains("lag ms"),
        "the table has a lag ms column: {}",
        table.describe()
    );

    c.take_down("westeurope");
    let down = rows(&c);
    for p in 0..4 {
        let r = row(&down, p, "westeurope");
        assert_ne!(r["health"], "ok", "westeurope is down: {r}");
    }
    let backups = c.path("backups");
    std::fs::create_dir_all(&backups).unwrap();
    let h = c.run(&["health", "--dest", backups.to_str().unwrap()]);
    assert_eq!(h.code, 1, "{}", h.describe());
    assert!(
        h.stderr.contains("dc-westeurope/p0"),
        "health names the replicas down: {}",
        h.describe()
    );
    assert!(
        h.stderr.contains("partition 2 takes no writes"),
        "health names a partition whose primary is down: {}",
        h.describe()
    );
    c.bring_back("westeurope");

    c.ok(&["dc", "drain", "westeurope", "--yes"]);
    let drained = rows(&c);
    assert_eq!(
        row(&drained, 0, "westeurope")["health"],
        "drained",
        "{drained:?}"
    );
    let got = c.user_get("ada@contoso.com", &["--region", "westeurope"]);
    assert_ne!(
        got["@geodir.servedBy"]["datacenter"], "westeurope",
        "reads route around a drained datacenter: {got}"
    );
    // The last datacenter serving reads is not drained.
    c.ok(&["dc", "drain", "eastus", "--yes"]);
    let r = c.fails(&["dc", "drain", "westus", "--yes"], 4);
    assert!(
        r.stderr.contains("no datacenter serving reads"),
        "{}",
        r.describe()
    );
    c.ok(&["dc", "undrain", "eastus", "--yes"]);
    c.ok(&["dc", "undrain", "westeurope", "--yes"]);
    assert_eq!(row(&rows(&c), 0, "westeurope")["health"], "ok");
    let audit = c.ok(&["audit", "list", "--op", "dc.drain"]);
    let outcomes: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(outcomes.len(), 3, "two drains and a refused one: {audit}");
    assert_eq!(
        outcomes.iter().filter(|o| **o == "ok").count(),
        2,
        "{audit}"
    );
}
both_modes!(
    status_health_and_drain,
    status_health_and_drain_embedded,
    status_health_and_drain_server
);

/// Promise 7's backups: `backup create` takes a checkpoint of every partition (in the
/// server mode, made by each primary's server and streamed to dirctl), and the archive
/// restores into a new cluster holding every acknowledged write. With a partition's
/// primary unreachable it fails (exit 5) and leaves no archive.
fn backup_create_restores_every_write(mode: Mode) {
    let c = Cluster::in_mode(mode);
    let ids: Vec<String> = (0..5)
        .map(|i| c.create_user(&format!("b{i}@contoso.com")))
        .collect();
    let dest = c.path("backups");
    let dest = dest.to_str().unwrap();
    let made = c.ok(&["backup", "create", "--dest", dest]);
    assert_eq!(made["created"], true, "{made}");
    let p0 = made["manifest"]["partitions"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["id"] == 0))
        .cloned()
        .unwrap_or_else(|| panic!("no partition 0 in the manifest: {made}"));
    assert!(p0["lsn"].as_u64().unwrap_or(0) >= 5, "{made}");
    let id = made["backup"].as_str().unwrap().to_string();
    let verified = c.run(&["backup", "verify", "--dest", dest, &id]);
    assert_eq!(verified.code, 0, "{}", verified.describe());
    let to = c.path("restored");
    let to = to.to_str().unwrap();
    c.ok(&["backup", "restore", "--dest", dest, "--to", to, &id]);
    // The restored cluster, opened from its folders.
    let mut list = util::dirctl();
    list.args([
        "--cluster",
        to,
        "user",
        "list",
        "--tenant",
        "contoso",
        "--output",
        "json",
    ])
    .env_remove("DIRCTL_ENDPOINTS");
    let out = list.output().unwrap();
    let listed: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    for want in &ids {
        assert!(
            listed["objects"]
                .as_array()
                .is_some_and(|o| o.iter().any(|u| u["id"] == want.as_str())),
            "{want} restored: {listed}"
        );
    }

    // The primary of partition 0 gone: no position is known to be committed there.
    c.take_down("westus");
    let r = c.fails(&["backup", "create", "--dest", dest, "--force"], 5);
    assert!(r.stderr.contains("partition 0"), "{}", r.describe());
    let left: Vec<String> = std::fs::read_dir(dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".staging") || n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "nothing half-written is left: {left:?}");
}
both_modes!(
    backup_create_restores_every_write,
    backup_create_restores_every_write_embedded,
    backup_create_restores_every_write_server
);
