//! Access grants and checks, through the real binary.
#![allow(clippy::unwrap_used)]

mod util;

use serde_json::Value;
use util::Cluster;

fn check(c: &Cluster, user: &str, resource: &str, action: &str) -> Value {
    c.access_check(user, resource, &["--action", action])
}

#[test]
fn deny_wins_over_allow_through_nested_groups_and_a_cycle() {
    let c = Cluster::new();
    let ada = c.create_user("ada@contoso.com");
    let (g1, g2, g3) = (
        c.create_group("g1"),
        c.create_group("g2"),
        c.create_group("g3"),
    );
    // ada ∈ g1 ∈ g2 ∈ g3 ∈ g1 (a cycle).
    for (g, m) in [(&g1, &ada), (&g2, &g1), (&g3, &g2), (&g1, &g3)] {
        c.ok(&["group", "add-member", "--tenant", "contoso", g, m]);
    }
    let v = check(&c, &ada, "payroll", "read");
    assert_eq!(v["decision"], "denied");
    // No grant decided: the field is there, and null.
    assert!(v.get("grant").is_some_and(Value::is_null), "{v}");

    c.ok(&[
        "access",
        "grant",
        "--tenant",
        "contoso",
        "--principal",
        &g3,
        "--resource",
        "payroll",
        "--allow",
    ]);
    let v = check(&c, "ada@contoso.com", "payroll", "read");
    assert_eq!(v["decision"], "allowed", "{v}");
    assert_eq!(v["grant"]["principal"], Value::from(g3.clone()));
    assert_eq!(v["principalsChecked"], 4);

    c.ok(&[
        "access",
        "grant",
        "--tenant",
        "contoso",
        "--principal",
        &g2,
        "--resource",
        "payroll",
        "--deny",
        "--action",
        "read",
    ]);
    let v = check(&c, &ada, "payroll", "read");
    assert_eq!(v["decision"], "denied", "{v}");
    assert_eq!(v["grant"]["principal"], Value::from(g2.clone()));
    assert_eq!(v["grant"]["effect"], "deny");
    // The deny is for `read` only: another action is still allowed by g3's grant.
    assert_eq!(check(&c, &ada, "payroll", "write")["decision"], "allowed");

    let listed = c.ok(&["access", "list", "--tenant", "contoso"]);
    assert_eq!(listed["grants"].as_array().unwrap().len(), 2);
    c.ok(&[
        "access",
        "revoke",
        "--tenant",
        "contoso",
        "--principal",
        &g2,
        "--resource",
        "payroll",
        "--action",
        "read",
    ]);
    assert_eq!(check(&c, &ada, "payroll", "read")["decision"], "allowed");
    c.fails(
        &[
            "access",
            "revoke",
            "--tenant",
            "contoso",
            "--principal",
            &g2,
            "--resource",
            "payroll",
            "--action",
            "read",
        ],
        3,
    );
}

#[test]
fn a_disabled_account_is_denied() {
    let c = Cluster::new();
    let ada = c.create_user("ada@contoso.com");
    c.ok(&[
        "access",
        "grant",
        "--tenant",
        "contoso",
        "--principal",
        &ada,
        "--resource",
        "wiki",
        "--allow",
    ]);
    assert_eq!(check(&c, &ada, "wiki", "read")["decision"], "allowed");
    c.ok(&[
        "user",
        "update",
        "--tenant",
        "contoso",
        &ada,
        "--set",
        "accountEnabled=false",
    ]);
    let v = check(&c, &ada, "wiki", "read");
    assert_eq!(v["decision"], "denied");
    assert!(v["reason"].as_str().unwrap().contains("disabled"), "{v}");
}

#[test]
fn checks_are_served_by_secondaries() {
    let c = Cluster::new();
    let ada = c.create_user("ada@contoso.com");
    c.ok(&[
        "access",
        "grant",
        "--tenant",
        "contoso",
        "--principal",
        &ada,
        "--resource",
        "wiki",
        "--allow",
    ]);
    c.ok(&["sync"]);
    let v = c.access_check(&ada, "wiki", &["--region", "westeurope"]);
    assert_eq!(v["decision"], "allowed");
    assert_eq!(v["servedBy"]["datacenter"], "westeurope");
}
