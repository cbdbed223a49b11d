//! Promise 7: the recycle bin, through the real binary.
#![allow(clippy::unwrap_used)]

mod util;

use serde_json::Value;
use util::{Cluster, Run};

const DELETED_AT: &str = "2026-12-01T10:00:00Z";

/// Runs with `DIRCTL_NOW=now` and `--output json`.
fn at(c: &Cluster, now: &str, args: &[&str]) -> Run {
    let mut a = args.to_vec();
    a.extend(["--output", "json"]);
    let (mut cmd, shown) = c.command(&a);
    let out = cmd.env("DIRCTL_NOW", now).output().unwrap();
    Run {
        cmd: format!("DIRCTL_NOW={now} {shown}"),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
        logs: String::new(),
    }
}

fn ok_at(c: &Cluster, now: &str, args: &[&str]) -> Value {
    let r = at(c, now, args);
    assert_eq!(r.code, 0, "{}", r.describe());
    r.json()
}

fn member_ids(c: &Cluster, g: &str) -> Vec<String> {
    let v = c.ok(&["group", "members", "--tenant", "contoso", g]);
    v["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn soft_delete_restores_same_id_attributes_and_memberships_at_29_days_23_hours() {
    let c = Cluster::new();
    let ada = c.create_user("ada@contoso.com");
    let bob = c.create_user("bob@contoso.com");
    let (eng, gone, team) = (
        c.create_group("eng"),
        c.create_group("gone"),
        c.create_group("team"),
    );
    for (g, m) in [(&eng, &ada), (&gone, &ada), (&team, &bob)] {
        c.ok(&["group", "add-member", "--tenant", "contoso", g, m]);
    }
    c.ok(&[
        "user",
        "update",
        "--tenant",
        "contoso",
        &ada,
        "--set",
        "jobTitle=Analyst",
    ]);
    ok_at(
        &c,
        DELETED_AT,
        &["user", "delete", "--tenant", "contoso", &ada],
    );
    ok_at(
        &c,
        DELETED_AT,
        &["group", "delete", "--tenant", "contoso", &gone],
    );
    ok_at(
        &c,
        DELETED_AT,
        &["group", "delete", "--tenant", "contoso", &team],
    );
    assert!(member_ids(&c, &eng).is_empty());

    let listed = ok_at(
        &c,
        "2026-12-02T00:00:00Z",
        &["deleted", "list", "--type", "user"],
    );
    let ids: Vec<_> = listed["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].clone())
        .collect();
    assert_eq!(ids, vec![Value::from(ada.clone())]);
    let got = ok_at(
        &c,
        "2026-12-02T00:00:00Z",
        &["deleted", "get", "--tenant", "contoso", &ada],
    );
    assert_eq!(got["deleted"]["deletedDateTime"], DELETED_AT);

    // 29 days 23 hours after the deletion: restorable.
    let v = ok_at(
        &c,
        "2026-12-31T09:00:00Z",
        &["deleted", "restore", "--tenant", "contoso", &ada],
    );
    assert_eq!(v["object"]["id"], Value::from(ada.clone()));
    assert_eq!(v["object"]["jobTitle"], "Analyst");
    assert!(v["object"]
        .as_object()
        .unwrap()
        .get("deletedDateTime")
        .is_none());
    assert_eq!(member_ids(&c, &eng), vec![ada.clone()]);
    let skipped = v["skippedMemberships"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{v}");
    assert!(skipped[0].as_str().unwrap().contains(&gone));
    assert!(skipped[0].as_str().unwrap().contains("deleted meanwhile"));
    let u = c.user_get("ada@contoso.com", &[]);
    assert_eq!(u["id"], Value::from(ada.clone()));

    // A group comes back with its members.
    let v = ok_at(
        &c,
        "2026-12-31T09:00:00Z",
        &["deleted", "restore", "--tenant", "contoso", &team],
    );
    assert_eq!(
        v["restoredMemberships"][0],
        Value::from(format!("member {bob}"))
    );
    assert_eq!(member_ids(&c, &team), vec![bob]);

    // The group ada was in, deleted after her, comes back with her: her restore kept the
    // membership with its tombstone, whichever of the two is restored first.
    let v = ok_at(
        &c,
        "2026-12-31T09:00:00Z",
        &["deleted", "restore", "--tenant", "contoso", &gone],
    );
    assert_eq!(
        v["restoredMemberships"][0],
        Value::from(format!("member {ada}"))
    );
    assert_eq!(member_ids(&c, &gone), vec![ada.clone()]);
    let u = c.user_get(&ada, &[]);
    assert_eq!(u["id"], Value::from(ada));
}

#[test]
fn thirty_days_and_one_second_is_expired_and_purge_expired_is_idempotent() {
    let c = Cluster::new();
    let ada = c.create_user("ada@contoso.com");
    let bob = c.create_user("bob@contoso.com");
    ok_at(
        &c,
        DELETED_AT,
        &["user", "delete", "--tenant", "contoso", &ada],
    );
    ok_at(
        &c,
        "2026-12-02T10:00:00Z",
        &["user", "delete", "--tenant", "contoso", &bob],
    );
    let later = "2026-12-31T10:00:01Z";
    let r = at(
        &c,
        later,
        &["deleted", "restore", "--tenant", "contoso", &ada],
    );
    assert_eq!(r.code, 3, "{}", r.describe());
    assert!(r.stderr.contains("expired"), "{}", r.describe());

    let r = at(&c, later, &["deleted", "purge-expired"]);
    assert_eq!(r.code, 2, "{}", r.describe());
    assert!(r.stderr.contains("--yes"), "{}", r.describe());

    let first = ok_at(&c, later, &["deleted", "purge-expired", "--yes"]);
    assert_eq!(first["purged"], serde_json::json!([ada.clone()]));
    let after_first = ok_at(&c, later, &["deleted", "list"]);
    let second = ok_at(&c, later, &["deleted", "purge-expired", "--yes"]);
    assert_eq!(second["purged"], serde_json::json!([]));
    assert_eq!(ok_at(&c, later, &["deleted", "list"]), after_first);
    let ids: Vec<_> = after_first["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].clone())
        .collect();
    assert_eq!(ids, vec![Value::from(bob.clone())]);

    let r = at(
        &c,
        later,
        &["deleted", "restore", "--tenant", "contoso", &ada],
    );
    assert_eq!(r.code, 3, "{}", r.describe());
    assert!(r.stderr.contains("purged"), "{}", r.describe());

    ok_at(
        &c,
        later,
        &["deleted", "purge", "--tenant", "contoso", &bob, "--yes"],
    );
    let r = at(&c, later, &["deleted", "get", "--tenant", "contoso", &bob]);
    assert_eq!(r.code, 3, "{}", r.describe());
}

#[test]
fn restore_with_a_taken_upn_conflicts_and_new_upn_restores() {
    let c = Cluster::new();
    let old = c.create_user("ada@contoso.com");
    c.ok(&["user", "delete", "--tenant", "contoso", &old]);
    let new = c.create_user("ada@contoso.com");
    let r = c.fails(&["deleted", "restore", "--tenant", "contoso", &old], 4);
    assert!(
        r.stderr.contains(&new) && r.stderr.contains("--new-upn"),
        "{}",
        r.describe()
    );
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
    let u = c.user_get("ada.old@contoso.com", &[]);
    assert_eq!(u["id"], Value::from(old));
    let u = c.user_get("ada@contoso.com", &[]);
    assert_eq!(u["id"], Value::from(new));
}

#[test]
fn a_restore_is_readable_from_every_secondary_after_sync() {
    let c = Cluster::new();
    let ada = c.create_user("ada@contoso.com");
    c.ok(&["user", "delete", "--tenant", "contoso", &ada]);
    c.ok(&["deleted", "restore", "--tenant", "contoso", &ada]);
    c.ok(&["sync"]);
    for dc in ["eastus", "westeurope"] {
        let v = c.user_get(&ada, &["--region", dc]);
        assert_eq!(v["@geodir.servedBy"]["datacenter"], dc, "{v}");
        assert_eq!(v["userPrincipalName"], "ada@contoso.com");
    }
}
