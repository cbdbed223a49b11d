//! Secure operations in the server mode (issue 15): the servers, not dirctl, decide what a
//! caller may do. dirctl runs with DIRCTL_ENDPOINTS only (no control plane, no key), logs
//! in and elevates through a server, and every call presents the login. The servers'
//! clock is DIRCTL_NOW, as dirctl's: 30 minutes pass by restarting them later.
#![allow(clippy::unwrap_used)]

mod util;

use std::time::Duration;

use serde_json::Value;
use util::operators::*;
use util::servers::Servers;
use util::Cluster;

const DCS: [&str; 3] = ["westus", "eastus", "westeurope"];

/// The cluster's servers (re)started with their clock at `t`.
fn serve_at(c: &mut Cluster, t: i64) {
    if let Some(s) = c.servers.take() {
        let mut s = s.into_inner().unwrap();
        for dc in DCS {
            s.stop(dc);
        }
    }
    let mut s = Servers {
        root: c.root.clone(),
        servers: Default::default(),
        known: Default::default(),
        args: Vec::new(),
        hosts: Default::default(),
        env: vec![("DIRCTL_NOW".into(), rfc3339(t))],
    };
    for dc in DCS {
        s.start_one(dc);
    }
    c.servers = Some(std::sync::Mutex::new(s));
}

fn with_logs(c: &Cluster, r: &util::Run) -> String {
    format!("{}\nservers' logs:\n{}", r.describe(), c.server_logs())
}

#[test]
fn the_servers_enforce_logins_elevations_and_service_scopes() {
    let mut c = Cluster::new();
    // Enrolled on the control plane (the embedded mode), before the servers start.
    let ann = enroll(&c, T0, "ann-here", "ann", &["security-admin", "operator"]);
    login(&c, T0, "ann-here", "ann", &ann);
    elevate(
        &c,
        T0 + 30,
        "ann-here",
        &ann,
        "security-admin",
        "30m",
        "enrol cron",
    );
    let bob = enroll(&c, T0 + 31, "ann-here", "bob", &["operator"]);
    let carl = enroll(&c, T0 + 31, "ann-here", "carl", &["reader"]);
    let credential = c.path("cron-credential").display().to_string();
    ok_at(
        &c,
        T0 + 31,
        "ann-here",
        &[
            "operator",
            "enroll-service",
            "cron",
            "--job",
            "backup",
            "--job",
            "purge-expired",
            "--credential-file",
            &credential,
        ],
    );
    let t = T0 + 3600;
    serve_at(&mut c, t);
    let list = ["user", "list", "--tenant", "contoso"];
    let drain = ["dc", "drain", "westeurope", "--yes"];

    // No login: the server refuses even a read, and says how to log in.
    let r = fails_at(&c, t, "nobody", &list, 6, "dirctl login");
    // A wrong code is refused (and counted); the right one logs in through a server.
    let wrong = wrong_code(&ann, t);
    fails_at(
        &c,
        t,
        "ann",
        &["login", "ann", "--otp", &wrong],
        6,
        "wrong code",
    );
    let doc = login(&c, t, "ann", "ann", &ann);
    assert_eq!(doc["operator"], "ann", "{doc}");
    // The same code again is a replay.
    fails_at(
        &c,
        t + 1,
        "again",
        &["login", "ann", "--otp", &code(&ann, t)],
        6,
        "already used",
    );
    // Five failures in a row lock carl out, through the servers as on the folders: then
    // even the right code is refused.
    for i in 0..4 {
        let r = at(
            &c,
            t + 1,
            "carl",
            &["login", "carl", "--otp", &wrong_code(&carl, t)],
        );
        assert!(
            r.code == 6 && r.stderr.contains("wrong code"),
            "{i}: {}",
            with_logs(&c, &r)
        );
    }
    fails_at(
        &c,
        t + 1,
        "carl",
        &["login", "carl", "--otp", &wrong_code(&carl, t)],
        6,
        "locked out",
    );
    fails_at(
        &c,
        t + 1,
        "carl",
        &["login", "carl", "--otp", &code(&carl, t)],
        6,
        "locked out",
    );
    // Logged in: reads go; a privileged call waits for an elevation, and names it.
    ok_at(&c, t + 2, "ann", &list);
    let r2 = fails_at(
        &c,
        t + 2,
        "ann",
        &drain,
        6,
        "dirctl elevate --role operator",
    );
    assert!(!r2.stderr.contains("--cluster"), "{}", with_logs(&c, &r2));
    // ann is no tenant-admin of contoso: a user write is refused.
    fails_at(
        &c,
        t + 2,
        "ann",
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
        "tenant-admin:contoso",
    );
    // Elevated through the server (the next code: the login's is spent), the drain goes.
    let e = elevate(&c, t + 30, "ann", &ann, "operator", "30m", "INC-77");
    assert_eq!(e["operator"], "ann", "{e}");
    // The elevation anchors the audit chains: the server of partition 0's primary signs its
    // head, the elevation's own record included, into the control plane.
    let records = audit(&c, t + 30, "ann");
    let elevated = with_op(&records, "operator.elevate")
        .iter()
        .filter(|r| r["outcome"] == "ok")
        .filter_map(|r| r["seq"].as_u64())
        .max()
        .unwrap_or_else(|| panic!("no elevation record: {records:#?}"));
    util::servers::wait_for(
        "partition 0's chain anchored after the elevation",
        Duration::from_secs(10),
        || {
            let t: Value =
                serde_json::from_slice(&std::fs::read(c.root.join("cluster.json")).unwrap())
                    .unwrap();
            let seq = t["audit_anchors"]["0"]["seq"].as_u64().unwrap_or(0);
            (seq >= elevated, t["audit_anchors"].clone())
        },
    );
    ok_at(&c, t + 31, "ann", &drain);
    ok_at(&c, t + 32, "ann", &["dc", "undrain", "westeurope", "--yes"]);
    ok_at(
        &c,
        t + 33,
        "ann",
        &[
            "user",
            "create",
            "--tenant",
            "contoso",
            "--upn",
            "y@contoso.com",
            "--display-name",
            "Y",
        ],
    );
    // Sent to westeurope's server, the write goes on to the primary's (westus) with the
    // servers' own credential, and its record names ann too (asserted below).
    ok_at(
        &c,
        t + 33,
        "ann",
        &[
            "--region",
            "westeurope",
            "user",
            "create",
            "--tenant",
            "contoso",
            "--upn",
            "z@contoso.com",
            "--display-name",
            "Z",
        ],
    );
    // What cannot be undone needs a second operator: the servers refuse it alone.
    fails_at(
        &c,
        t + 34,
        "ann",
        &[
            "failover",
            "--partition",
            "0",
            "--emergency",
            "--accept-data-loss",
            "--yes",
        ],
        6,
        "two-person",
    );
    // A login changed by hand (a longer life) proves nobody.
    let mut forged: Value = serde_json::from_slice(&std::fs::read(c.path("ann")).unwrap()).unwrap();
    forged["claims"]["until"] = (t + 100_000).into();
    std::fs::write(c.path("forged"), forged.to_string()).unwrap();
    fails_at(&c, t + 35, "forged", &list, 6, "signature");

    // The cron identity backs up and purges expired objects, and does nothing else.
    let backups = c.path("backups").display().to_string();
    let created = ok_at(
        &c,
        t + 40,
        "cron-credential",
        &["backup", "create", "--dest", &backups],
    );
    assert_eq!(created["created"], true, "{created}");
    ok_at(
        &c,
        t + 41,
        "cron-credential",
        &["deleted", "purge-expired", "--yes"],
    );
    fails_at(
        &c,
        t + 42,
        "cron-credential",
        &["failover", "--partition", "0", "--to", "eastus", "--yes"],
        6,
        "service identity",
    );
    fails_at(&c, t + 42, "cron-credential", &drain, 6, "service identity");

    // The audit trail, through the servers: each refusal and each proof, the records of
    // what ann did naming ann (proven), never a declared name.
    let records = audit(&c, t + 50, "ann");
    let refused = with_op(&records, "operator.refused");
    assert!(
        refused
            .iter()
            .any(|r| r["actor"].as_str().unwrap().starts_with("unproven:")
                && r["outcome"].as_str().unwrap().contains("dirctl login")),
        "{refused:#?}\n{}",
        r.describe()
    );
    assert!(refused.iter().any(|r| r["actor"] == "ann"), "{refused:#?}");
    assert!(refused.iter().any(|r| r["actor"] == "cron"), "{refused:#?}");
    let logins = with_op(&records, "operator.login");
    assert!(
        logins
            .iter()
            .any(|r| r["outcome"].as_str().unwrap().contains("wrong code")),
        "{logins:#?}"
    );
    assert!(
        logins
            .iter()
            .any(|r| r["outcome"].as_str().unwrap().contains("already used")),
        "{logins:#?}"
    );
    assert!(
        logins
            .iter()
            .any(|r| r["actor"] == "ann" && r["outcome"].as_str().unwrap().starts_with("ok")),
        "{logins:#?}"
    );
    let lockouts = with_op(&records, "operator.lockout");
    assert!(
        lockouts.len() == 1 && lockouts[0]["targets"][0] == "carl",
        "{lockouts:#?}"
    );
    let elevations = with_op(&records, "operator.elevate");
    assert!(
        elevations
            .iter()
            .any(|r| r["actor"] == "ann" && r["outcome"] == "ok"),
        "{elevations:#?}"
    );
    let creates: Vec<&Value> = records
        .iter()
        .filter(|r| r["op"] == "user.create")
        .collect();
    assert!(
        creates.len() >= 2 && creates.iter().all(|r| r["actor"] == "ann"),
        "{creates:#?}"
    );

    // Only servers replicate: a call without a server's credential is refused, and a write
    // "sent on" by a client is not taken for a server's.
    let grpc = c.servers.as_ref().unwrap().lock().unwrap().servers["eastus"]
        .grpc
        .clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let log = server::remote::RemoteLog::new(
        rt.handle().clone(),
        &grpc,
        "eastus",
        0,
        Duration::from_secs(5),
    )
    .unwrap();
    let got = engine::replica_log::ReplicaLog::last(&log);
    assert!(
        matches!(got, Err(engine::Error::NotPermitted(_))),
        "{got:?}"
    );
    let login_file: server::identity::Login =
        serde_json::from_slice(&std::fs::read(c.path("ann")).unwrap()).unwrap();
    let as_ann = server::guard::Credential::fixed(&login_file).unwrap();
    let log = log.with_credential(as_ann.clone());
    let got = engine::replica_log::ReplicaLog::observe_term(&log, 1_000);
    assert!(
        matches!(got, Err(engine::Error::NotPermitted(_))),
        "{got:?}"
    );
    let conn =
        server::client::Connection::new(rt.handle().clone(), &grpc, Duration::from_secs(5), None)
            .unwrap()
            .with_credential(as_ann);
    let envelope = engine::request::Envelope {
        actor: "geodird:westus".into(),
        correlation_id: "c".into(),
        datacenter: None,
        token: None,
    };
    let req = engine::request::Request::RecordAudit {
        partition: 0,
        op: "forged.by-a-client".into(),
        targets: vec![],
        outcome: "ok".into(),
    };
    let got = conn.execute(&envelope, &req, true, &mut |_| {});
    assert!(
        matches!(got, Err(engine::Error::NotPermitted(_))),
        "{got:?}"
    );

    // 30 minutes on (the servers' clock too), the elevation has ended by itself.
    let t2 = t + 30 * 60 + 31;
    serve_at(&mut c, t2);
    fails_at(&c, t2, "ann", &drain, 6, "dirctl elevate --role operator");

    // The two-person rule through the servers: westus (partition 0's primary) is lost; a
    // failover that accepts data loss is only a request until a second operator approves
    // it, never by the one who asked, and the approval runs it once.
    c.take_down("westus");
    elevate(&c, t2 + 30, "ann", &ann, "operator", "30m", "INC-78");
    let emergency = [
        "failover",
        "--partition",
        "0",
        "--emergency",
        "--accept-data-loss",
        "--yes",
    ];
    let r = fails_at(&c, t2 + 31, "ann", &emergency, 6, "two-person");
    let id = r
        .stderr
        .split("request ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no request id\n{}", with_logs(&c, &r)))
        .to_string();
    let waiting = ok_at(&c, t2 + 32, "ann", &["requests"]);
    assert!(
        waiting
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["id"] == id.as_str()),
        "{waiting}"
    );
    let role_of = |dc: &str| -> Value {
        let status = ok_at(&c, t2 + 32, "ann", &["status"]);
        status["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["partition"] == 0 && r["datacenter"] == dc)
            .map(|r| r["role"].clone())
            .unwrap_or_else(|| panic!("no row of partition 0 in {dc}: {status}"))
    };
    assert_eq!(
        role_of("eastus"),
        "sync-standby",
        "a request alone changed nothing"
    );
    fails_at(
        &c,
        t2 + 33,
        "ann",
        &["approve", &id, "--otp", "123456"],
        6,
        "second operator",
    );
    // A failover naming a request its caller did not approve is refused by the servers.
    let grpc = c.servers.as_ref().unwrap().lock().unwrap().servers["eastus"]
        .grpc
        .clone();
    let ann_login: server::identity::Login =
        serde_json::from_slice(&std::fs::read(c.path("ann")).unwrap()).unwrap();
    let as_ann =
        server::client::Connection::new(rt.handle().clone(), &grpc, Duration::from_secs(5), None)
            .unwrap()
            .with_credential(server::guard::Credential::fixed(&ann_login).unwrap());
    let got = as_ann.failover(0, "", true, true, Some(&id));
    assert!(
        matches!(&got, Err(engine::Error::NotPermitted(m)) if m.contains("two-person")),
        "{got:?}"
    );
    ok_at(
        &c,
        t2,
        "bob",
        &["login", "bob", "--otp", &code(&bob, t2 - 30)],
    );
    ok_at(
        &c,
        t2 + 34,
        "bob",
        &[
            "elevate",
            "--role",
            "operator",
            "--for",
            "30m",
            "--reason",
            "INC-78",
            "--otp",
            &code(&bob, t2),
        ],
    );
    let r = at(
        &c,
        t2 + 35,
        "bob",
        &["approve", &id, "--otp", &code(&bob, t2 + 30)],
    );
    assert_eq!(r.code, 0, "{}", with_logs(&c, &r));
    assert_eq!(role_of("eastus"), "primary", "the approved failover ran");
    // Spent: its run cannot begin again.
    let (mut again, shown) = c.command(&emergency);
    let out = again
        .env("DIRCTL_NOW", rfc3339(t2 + 36))
        .env("DIRCTL_LOGIN_FILE", c.path("bob"))
        .env("DIRCTL_APPROVED", &id)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(6),
        "{shown}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = audit(&c, t2 + 37, "bob");
    let approvals = with_op(&records, "operator.approve");
    assert!(
        approvals
            .iter()
            .any(|r| r["actor"] == "ann" && r["outcome"].as_str().unwrap().contains("refused")),
        "{approvals:#?}"
    );
    assert!(
        approvals
            .iter()
            .any(|r| r["actor"] == "bob" && r["outcome"] == "ok"),
        "{approvals:#?}"
    );
    // Two requests: this one, and the one the earlier attempt recorded (never approved).
    assert_eq!(
        with_op(&records, "operator.request").len(),
        2,
        "{records:#?}"
    );

    // No secret in the servers' logs: not the TOTP secret, not a login's signature.
    let secret = ann
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    let logs = c.server_logs();
    assert!(
        !logs.contains(&secret),
        "the TOTP secret is in the servers' logs"
    );
    let signature = login_file.signature.clone();
    assert!(
        !logs.contains(&signature),
        "a login's signature is in the servers' logs"
    );
    assert!(
        logs.contains("call refused"),
        "refusals are logged:\n{logs}"
    );
}
