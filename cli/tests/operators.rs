//! Secure operations (issue 15): operators proven by TOTP codes, just-in-time elevation,
//! "not permitted" (exit 6), replays and lock-outs, and no secret anywhere it should not
//! be. Through the real binary, on the embedded mode, with DIRCTL_NOW as the clock.
#![allow(clippy::unwrap_used)]

mod util;

use serde_json::Value;
use util::operators::*;
use util::Cluster;

#[test]
fn a_privileged_command_is_refused_without_elevation_allowed_with_it_and_refused_after_it_ends() {
    let c = Cluster::new();
    let ann = enroll(&c, T0, "ann", "ann", &["security-admin", "operator"]);
    // No login: even a read is refused, and told how to log in.
    fails_at(
        &c,
        T0,
        "ann",
        &["user", "list", "--tenant", "contoso"],
        6,
        "dirctl login",
    );
    let failover = ["failover", "--partition", "0", "--to", "eastus", "--yes"];
    fails_at(&c, T0, "ann", &failover, 6, "dirctl login");
    login(&c, T0, "ann", "ann", &ann);
    // Logged in, not elevated: refused, naming the role and the command that grants it.
    fails_at(
        &c,
        T0 + 5,
        "ann",
        &failover,
        6,
        "dirctl elevate --role operator",
    );
    // The login's code cannot elevate (a replay); the next one can.
    fails_at(
        &c,
        T0 + 10,
        "ann",
        &[
            "elevate",
            "--role",
            "operator",
            "--for",
            "30m",
            "--reason",
            "INC-1234",
            "--otp",
            &code(&ann, T0),
        ],
        6,
        "already used",
    );
    let t1 = T0 + 30;
    let e = elevate(&c, t1, "ann", &ann, "operator", "30m", "INC-1234");
    assert_eq!(e["role"], "operator", "{e}");
    // The elevation anchored every partition's audit chain in the control plane.
    let topology = std::fs::read_to_string(c.root.join("cluster.json")).unwrap();
    assert!(topology.contains("audit_anchors"), "{topology}");
    let listed = ok_at(&c, t1 + 1, "ann", &["elevation", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    ok_at(&c, t1 + 60, "ann", &failover);
    let status = ok_at(&c, t1 + 61, "ann", &["status"]);
    let row = status["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["partition"] == 0 && r["datacenter"] == "eastus")
        .cloned()
        .unwrap();
    assert_eq!(row["role"], "primary", "failover ran: {status}");
    // 30 minutes on: the elevation has ended by itself.
    let back = ["failover", "--partition", "0", "--to", "westus", "--yes"];
    fails_at(
        &c,
        t1 + 30 * 60,
        "ann",
        &back,
        6,
        "dirctl elevate --role operator",
    );
    let records = audit(&c, t1 + 30 * 60 + 1, "ann");
    let done = with_op(&records, "failover.planned");
    assert_eq!(done.len(), 1, "{records:#?}");
    assert_eq!(
        done[0]["actor"], "ann",
        "the record names the proven operator"
    );
    let elevated = with_op(&records, "operator.elevate");
    assert!(
        elevated.iter().any(|r| r["outcome"] == "ok"
            && r["actor"] == "ann"
            && r["targets"].to_string().contains("INC-1234")),
        "{records:#?}"
    );
    let refused = with_op(&records, "operator.refused");
    assert!(refused.len() >= 3, "every refusal is audited: {records:#?}");
    // Refused before any login: the record names the command and says nobody was proven.
    assert!(
        refused
            .iter()
            .any(|r| r["actor"].as_str().unwrap().starts_with("unproven:")
                && r["targets"].to_string().contains("dirctl user list")),
        "{refused:#?}"
    );
}

#[test]
fn wrong_and_replayed_codes_are_refused_and_five_in_a_row_lock_out_each_audited() {
    let c = Cluster::new();
    let ann = enroll(&c, T0, "ann", "ann", &["security-admin"]);
    let login = |t: i64, code: &str| at(&c, t, "ann", &["login", "ann", "--otp", code]);
    let r = login(T0, &wrong_code(&ann, T0));
    assert_eq!(r.code, 6, "{}", r.describe());
    assert!(r.stderr.contains("wrong code"), "{}", r.describe());
    assert_eq!(login(T0, &code(&ann, T0)).code, 0);
    let r = login(T0 + 10, &code(&ann, T0));
    assert_eq!(r.code, 6, "{}", r.describe());
    assert!(r.stderr.contains("already used"), "{}", r.describe());
    for i in 0..3 {
        let r = login(T0 + 11 + i, &wrong_code(&ann, T0));
        assert_eq!(r.code, 6, "{}", r.describe());
    }
    // The fifth failure in a row (a replay counts) locks ann out.
    let r = login(T0 + 20, &wrong_code(&ann, T0));
    assert_eq!(r.code, 6, "{}", r.describe());
    assert!(r.stderr.contains("locked out"), "{}", r.describe());
    // Even the right code is refused while locked out.
    let t = T0 + 60;
    let r = login(t, &code(&ann, t));
    assert!(
        r.code == 6 && r.stderr.contains("locked out"),
        "{}",
        r.describe()
    );
    // A login made before the lock-out stands (a lock-out stops new codes only: anyone
    // could otherwise end an operator's session by failing codes in their name).
    ok_at(&c, t + 1, "ann", &["user", "list", "--tenant", "contoso"]);
    // Fifteen minutes on, the right code works again.
    let t = T0 + 16 * 60;
    assert_eq!(login(t, &code(&ann, t)).code, 0);
    let records = audit(&c, t + 1, "ann");
    let logins = with_op(&records, "operator.login");
    let outcomes: Vec<&str> = logins
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| o.contains("wrong code")).count(),
        5,
        "{outcomes:#?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| o.contains("already used"))
            .count(),
        1,
        "{outcomes:#?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| o.contains("locked out")).count(),
        1,
        "{outcomes:#?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| o.starts_with("ok")).count(),
        2,
        "{outcomes:#?}"
    );
    assert_eq!(
        with_op(&records, "operator.lockout").len(),
        1,
        "{records:#?}"
    );
}

#[test]
fn roles_bound_what_each_operator_may_do_and_only_an_elevated_security_admin_enrols() {
    let c = Cluster::new();
    let ann = enroll(&c, T0, "ann", "ann", &["security-admin"]);
    // A second "first" operator cannot be enrolled by anyone.
    fails_at(
        &c,
        T0,
        "x",
        &["operator", "enroll", "mallory", "--role", "security-admin"],
        6,
        "log in",
    );
    login(&c, T0, "ann", "ann", &ann);
    fails_at(
        &c,
        T0 + 1,
        "ann",
        &[
            "operator",
            "enroll",
            "ted",
            "--role",
            "tenant-admin:contoso",
        ],
        6,
        "elevate --role security-admin",
    );
    let t = T0 + 30;
    elevate(&c, t, "ann", &ann, "security-admin", "10m", "onboarding");
    // A tenant-admin of a tenant the cluster does not have is refused.
    fails_at(
        &c,
        t + 1,
        "ann",
        &["operator", "enroll", "zed", "--role", "tenant-admin:nosuch"],
        3,
        "no tenant nosuch",
    );
    let ted = enroll(&c, t + 1, "ann", "ted", &["tenant-admin:contoso"]);
    let rita = enroll(&c, t + 2, "ann", "rita", &["reader"]);
    // ann may not write objects: her roles are security-admin only.
    let create = [
        "user",
        "create",
        "--tenant",
        "contoso",
        "--upn",
        "ada@contoso.com",
        "--display-name",
        "Ada",
    ];
    fails_at(&c, t + 3, "ann", &create, 6, "tenant-admin:contoso");
    login(&c, t + 3, "ted", "ted", &ted);
    ok_at(&c, t + 4, "ted", &create);
    // ted may not fail over, nor take a role he does not have.
    fails_at(
        &c,
        t + 5,
        "ted",
        &["failover", "--partition", "0", "--to", "eastus", "--yes"],
        6,
        "does not have",
    );
    let t2 = t + 60;
    fails_at(
        &c,
        t2,
        "ted",
        &[
            "elevate",
            "--role",
            "operator",
            "--for",
            "10m",
            "--reason",
            "x",
            "--otp",
            &code(&ted, t2),
        ],
        6,
        "does not have role operator",
    );
    login(&c, t2, "rita", "rita", &rita);
    let users = ok_at(&c, t2 + 1, "rita", &["user", "list", "--tenant", "contoso"]);
    assert!(users.to_string().contains("ada@contoso.com"), "{users}");
    fails_at(
        &c,
        t2 + 2,
        "rita",
        &[
            "user",
            "create",
            "--tenant",
            "contoso",
            "--upn",
            "bob@contoso.com",
            "--display-name",
            "Bob",
        ],
        6,
        "tenant-admin:contoso",
    );
    // The last security-admin cannot be removed; a forged login proves nobody.
    fails_at(
        &c,
        t2 + 3,
        "ann",
        &["operator", "remove", "ann"],
        4,
        "last security-admin",
    );
    let mut forged: Value =
        serde_json::from_slice(&std::fs::read(c.path("rita")).unwrap()).unwrap();
    forged["claims"]["operator"] = "ann".into();
    std::fs::write(c.path("forged"), forged.to_string()).unwrap();
    fails_at(
        &c,
        t2 + 4,
        "forged",
        &["user", "list", "--tenant", "contoso"],
        6,
        "signature",
    );
    let backups = c.path("backups").display().to_string();
    fails_at(
        &c,
        t2 + 5,
        "rita",
        &["backup", "prune", "--keep-daily", "1", "--dest", &backups],
        6,
        "needs role operator",
    );
    fails_at(
        &c,
        t2 + 5,
        "rita",
        &["backup", "create", "--dest", &backups],
        6,
        "needs role operator",
    );
    // A malformed code is a usage error, not a failed attempt.
    fails_at(
        &c,
        t2 + 5,
        "x",
        &["login", "rita", "--otp", "abc"],
        2,
        "6 digits",
    );
    let list = ok_at(&c, t2 + 5, "rita", &["operator", "list"]);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ann", "rita", "ted"], "{list}");
}

/// Every place a secret must not appear, searched for the TOTP secret (base32 and hex) and
/// for the cluster's keys: outputs of every kind, errors, the audit trail, cluster.json.
#[test]
fn no_secret_appears_in_outputs_errors_audit_records_or_the_topology() {
    let c = Cluster::new();
    let first = ok_at(
        &c,
        T0,
        "ann",
        &[
            "operator",
            "enroll",
            "ann",
            "--role",
            "security-admin",
            "--role",
            "operator",
        ],
    );
    let uri = first["otpauthUri"].as_str().unwrap().to_string();
    let totp = totp_rs::Totp::from_url(&uri).unwrap();
    let b32 = totp.secret().to_base32();
    let hex: String = totp
        .secret()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut secrets = vec![b32.clone(), hex];
    for name in ["operator-sealing-key", "token-signing-key"] {
        let path = c.root.join("secrets").join(name);
        let bytes = std::fs::read(&path).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
        secrets.push(bytes.iter().map(|b| format!("{b:02x}")).collect());
    }
    let mut seen = Vec::new();
    let mut run = |t: i64, login: &str, args: &[&str]| {
        for json in [false, true] {
            let mut a = args.to_vec();
            if json {
                a.extend(["--output", "json"]);
            }
            let r = at(&c, t, login, &a);
            seen.push((r.cmd.clone(), format!("{}\n{}", r.stdout, r.stderr)));
        }
    };
    run(T0, "ann", &["login", "ann", "--otp", &wrong_code(&uri, T0)]);
    run(T0, "ann", &["login", "ann", "--otp", &code(&uri, T0)]);
    run(T0 + 1, "ann", &["login", "ann", "--otp", &code(&uri, T0)]);
    let t = T0 + 60;
    run(
        t,
        "ann",
        &[
            "elevate",
            "--role",
            "operator",
            "--for",
            "30m",
            "--reason",
            "INC-9",
            "--otp",
            &code(&uri, t),
        ],
    );
    run(t + 1, "ann", &["operator", "list"]);
    run(t + 1, "ann", &["elevation", "list"]);
    run(
        t + 1,
        "ann",
        &["operator", "enroll", "ann", "--role", "reader"],
    );
    run(t + 1, "ann", &["status"]);
    run(t + 1, "ann", &["audit", "list"]);
    run(t + 1, "ann", &["audit", "verify"]);
    run(
        t + 1,
        "ann",
        &["token", "issue", "--tenant", "contoso", "--role", "reader"],
    );
    run(t + 1, "nobody", &["user", "list", "--tenant", "contoso"]);
    seen.push((
        "cluster.json".into(),
        std::fs::read_to_string(c.root.join("cluster.json")).unwrap(),
    ));
    seen.push((
        "the login file".into(),
        std::fs::read_to_string(c.path("ann")).unwrap(),
    ));
    for (what, text) in &seen {
        for s in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "a secret appears in {what}:\n{text}"
            );
        }
    }
    assert!(
        seen.iter().any(|(_, t)| t.contains("\"operator.login\"")),
        "the audit list was searched too"
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(c.path("ann"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "the login file is its owner's only");
}

#[test]
fn init_with_admin_enrols_the_first_security_admin_and_an_open_cluster_stays_open() {
    let c = Cluster::new();
    // No operators: privileged commands need only --yes, as before.
    c.ok(&["failover", "--partition", "0", "--to", "eastus", "--yes"]);
    let root = c.path("second");
    let r = util::dirctl()
        .args([
            "init",
            "--datacenters",
            util::DCS,
            "--partitions",
            "1",
            "--admin",
            "ann",
            "--output",
            "json",
        ])
        .env("DIRCTL_CLUSTER", &root)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let doc: Value = serde_json::from_slice(&r.stdout).unwrap();
    let uri = doc["admin"]["otpauthUri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/geodir:ann?"), "{doc}");
    let r = util::dirctl()
        .args(["status"])
        .env("DIRCTL_CLUSTER", &root)
        .env("DIRCTL_LOGIN_FILE", c.path("none"))
        .output()
        .unwrap();
    assert_eq!(
        r.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
}

#[test]
fn logout_ends_every_copy_of_the_login_and_its_elevations() {
    let c = Cluster::new();
    let ann = enroll(&c, T0, "ann", "ann", &["security-admin", "operator"]);
    login(&c, T0, "ann", "ann", &ann);
    let t = T0 + 30;
    elevate(&c, t, "ann", &ann, "operator", "30m", "INC-3");
    std::fs::copy(c.path("ann"), c.path("copy")).unwrap();
    let out = ok_at(&c, t + 1, "ann", &["logout"]);
    assert_eq!(out["loggedOut"], true, "{out}");
    fails_at(
        &c,
        t + 2,
        "copy",
        &["failover", "--partition", "0", "--to", "eastus", "--yes"],
        6,
        "logout",
    );
    // Logged in again, the elevation is gone with the logout.
    let t2 = t + 30;
    login(&c, t2, "ann", "ann", &ann);
    fails_at(
        &c,
        t2 + 1,
        "ann",
        &["failover", "--partition", "0", "--to", "eastus", "--yes"],
        6,
        "dirctl elevate --role operator",
    );
}
