//! Secure operations (issue 15), what cannot be undone and what runs unattended: the
//! two-person rule (`dirctl approve`) and the cron jobs' service identity. Through the real
//! binary, on the embedded mode, with DIRCTL_NOW as the clock.
#![allow(clippy::unwrap_used)]

mod util;

use util::operators::*;
use util::{Cluster, Run};

/// The request id a refusal under the two-person rule names.
fn request_id(r: &Run) -> String {
    let after = r
        .stderr
        .split("request ")
        .nth(1)
        .unwrap_or_else(|| panic!("no request id\n{}", r.describe()));
    after.split(' ').next().unwrap().to_string()
}

#[test]
fn the_cron_identity_backs_up_and_purges_expired_objects_but_cannot_fail_over_or_restore() {
    let c = Cluster::new();
    let ann = enroll(&c, T0, "ann", "ann", &["security-admin", "operator"]);
    login(&c, T0, "ann", "ann", &ann);
    let t = T0 + 30;
    elevate(&c, t, "ann", &ann, "security-admin", "10m", "cron");
    let credential = c.path("cron-credential");
    let credential_arg = credential.display().to_string();
    ok_at(
        &c,
        t + 1,
        "ann",
        &[
            "operator",
            "enroll-service",
            "cron",
            "--job",
            "backup",
            "--job",
            "purge-expired",
            "--credential-file",
            &credential_arg,
        ],
    );
    let backups = c.path("backups").display().to_string();
    let created = ok_at(
        &c,
        t + 2,
        "cron-credential",
        &["backup", "create", "--dest", &backups],
    );
    assert_eq!(created["created"], true, "{created}");
    ok_at(
        &c,
        t + 3,
        "cron-credential",
        &["deleted", "purge-expired", "--yes"],
    );
    let id = created["backup"].as_str().unwrap().to_string();
    fails_at(
        &c,
        t + 4,
        "cron-credential",
        &["failover", "--partition", "0", "--to", "eastus", "--yes"],
        6,
        "service identity",
    );
    fails_at(
        &c,
        t + 4,
        "cron-credential",
        &[
            "backup",
            "restore",
            &id,
            "--in-place",
            "--yes",
            "--dest",
            &backups,
        ],
        6,
        "service identity",
    );
    fails_at(
        &c,
        t + 4,
        "cron-credential",
        &[
            "user",
            "create",
            "--tenant",
            "contoso",
            "--upn",
            "x@contoso.com",
            "--display-name",
            "X",
        ],
        6,
        "service identity",
    );
    // It cannot be given a person's role (nor count as the last security-admin).
    fails_at(
        &c,
        t + 4,
        "ann",
        &["operator", "roles", "cron", "--role", "security-admin"],
        2,
        "service identity",
    );
    // Its credential is not a login: logout leaves it.
    fails_at(
        &c,
        t + 4,
        "cron-credential",
        &["logout"],
        2,
        "service identity",
    );
    // It has no codes: it cannot log in or elevate.
    fails_at(
        &c,
        t + 5,
        "cron-login",
        &["login", "cron", "--otp", "123456"],
        6,
        "service identity",
    );
    let records = audit(&c, t + 6, "ann");
    let by_cron: Vec<&str> = records
        .iter()
        .filter(|r| r["actor"] == "cron")
        .map(|r| r["op"].as_str().unwrap())
        .collect();
    assert!(by_cron.contains(&"backup.create"), "{by_cron:?}");
    assert!(by_cron.contains(&"deleted.purge-expired"), "{by_cron:?}");
    assert!(by_cron.contains(&"operator.refused"), "{by_cron:?}");
}

#[test]
fn the_two_person_rule_a_request_alone_does_nothing_its_maker_cannot_approve_it_and_a_second_operator_carries_it_out(
) {
    let c = Cluster::new();
    let ann = enroll(&c, T0, "ann", "ann", &["security-admin", "operator"]);
    login(&c, T0, "ann", "ann", &ann);
    elevate(&c, T0 + 30, "ann", &ann, "security-admin", "30m", "INC-7");
    let bob = enroll(&c, T0 + 31, "ann", "bob", &["operator"]);
    login(&c, T0 + 32, "bob", "bob", &bob);
    elevate(&c, T0 + 60, "ann", &ann, "operator", "30m", "INC-7");
    elevate(&c, T0 + 62, "bob", &bob, "operator", "30m", "INC-7");
    let backups = c.path("backups").display().to_string();
    let made = ok_at(
        &c,
        T0 + 63,
        "ann",
        &["backup", "create", "--dest", &backups],
    );
    let id = made["backup"].as_str().unwrap().to_string();
    ok_at(
        &c,
        T0 + 64,
        "ann",
        &[
            "user",
            "create",
            "--tenant",
            "contoso",
            "--upn",
            "late@contoso.com",
            "--display-name",
            "Late",
        ],
    );
    // Enrolled after the backup: a restore in place keeps today's operators.
    enroll(&c, T0 + 64, "ann", "carl", &["reader"]);
    let restore = [
        "backup",
        "restore",
        id.as_str(),
        "--in-place",
        "--yes",
        "--dest",
        backups.as_str(),
    ];
    let r = fails_at(&c, T0 + 65, "ann", &restore, 6, "two-person rule");
    let request = request_id(&r);
    let waiting = ok_at(&c, T0 + 65, "bob", &["requests"]);
    assert_eq!(waiting[0]["id"], request.as_str(), "{waiting}");
    assert_eq!(waiting[0]["operator"], "ann", "{waiting}");
    // Nothing was restored: the user made after the backup is still there.
    ok_at(
        &c,
        T0 + 66,
        "ann",
        &["user", "get", "--tenant", "contoso", "late@contoso.com"],
    );
    fails_at(
        &c,
        T0 + 90,
        "ann",
        &["approve", &request, "--otp", &code(&ann, T0 + 90)],
        6,
        "second operator",
    );
    let approved = at(
        &c,
        T0 + 92,
        "bob",
        &["approve", &request, "--otp", &code(&bob, T0 + 92)],
    );
    assert_eq!(approved.code, 0, "{}", approved.describe());
    // Carried out: the cluster is as the backup was.
    fails_at(
        &c,
        T0 + 93,
        "bob",
        &["user", "get", "--tenant", "contoso", "late@contoso.com"],
        3,
        "",
    );
    let waiting = ok_at(&c, T0 + 93, "bob", &["requests"]);
    assert_eq!(waiting, serde_json::json!([]), "carried out: {waiting}");
    // Once carried out, the approval is spent.
    let (mut again, shown) = c.command(&restore);
    let out = again
        .env("DIRCTL_NOW", rfc3339(T0 + 94))
        .env("DIRCTL_LOGIN_FILE", c.path("bob"))
        .env("DIRCTL_APPROVED", &request)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(6),
        "{shown}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = ok_at(&c, T0 + 94, "bob", &["operator", "list"]).to_string();
    assert!(
        names.contains("carl"),
        "the restore kept today's operators: {names}"
    );
    // A restore into a new cluster starts it without operators (their secrets were sealed
    // for this one).
    let copy = c.path("copy");
    ok_at(
        &c,
        T0 + 94,
        "bob",
        &[
            "backup",
            "restore",
            &id,
            "--to",
            &copy.display().to_string(),
            "--dest",
            &backups,
        ],
    );
    let r = util::dirctl()
        .args(["operator", "list", "--output", "json"])
        .env("DIRCTL_CLUSTER", &copy)
        .env("DIRCTL_LOGIN_FILE", c.path("none"))
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "[]");
    let records = audit(&c, T0 + 95, "bob");
    let restored = with_op(&records, "backup.restore-in-place");
    assert!(
        restored.iter().any(|r| r["actor"] == "bob"
            && r["outcome"] == "ok"
            && r["targets"]
                .to_string()
                .contains(&format!("approved request {request}"))),
        "{records:#?}"
    );
}
