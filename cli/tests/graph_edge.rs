//! The Graph API's edge: the gateway (`geodird --gateway`, one address for applications)
//! and TLS on a server's HTTP address, against real servers.
mod util;

use std::time::{Duration, Instant};

use serde_json::json;

use util::graph::{id_of, token, user_body, Api};
use util::servers::{wait_for, Gateway, Servers};
use util::Cluster;

const DCS: [&str; 3] = ["westus", "eastus", "westeurope"];
const SESSION: &str = "x-geodir-replica-token";

#[test]
fn the_gateway_sends_each_request_to_the_nearest_healthy_datacenter_and_moves_off_a_killed_one() {
    let c = Cluster::new();
    let mut servers = Servers::start(&c.root, &DCS, &[]);
    let t = token(&c, "contoso", "writer", &[]);
    // Beside westeurope: its server is the nearest, eastus the next (partition 0's
    // primary is westus: a write at westeurope's server goes on to it).
    let gw = Gateway::start(&c.root, "westeurope", &["--probe-interval-ms", "200"]);
    let api = Api::at(&gw.http);
    let logs = |servers: &Servers| format!("{}\n--- gateway:\n{}", servers.logs(), gw.log());

    let created = api.post("users", &t, &user_body("ada@contoso.com"));
    created.expect(201);
    assert_eq!(
        created.header("x-geodir-datacenter"),
        Some("westeurope"),
        "{}",
        created.describe()
    );
    let id = id_of(&created);
    let mut session = created.header(SESSION).unwrap().to_string();

    // Its server killed: every read still answers, from eastus, with the write in it.
    servers.kill("westeurope");
    let killed = Instant::now();
    let mut served = Vec::new();
    for _ in 0..200 {
        let g = api.call(
            "GET",
            &format!("users/{id}"),
            Some(&t),
            None,
            &[(SESSION, &session)],
        );
        assert_eq!(
            g.status,
            200,
            "a read failed after the kill\n{}\n{}",
            g.describe(),
            logs(&servers)
        );
        assert_eq!(
            g.json()["userPrincipalName"],
            "ada@contoso.com",
            "{}",
            g.describe()
        );
        served.push(g.header("x-geodir-datacenter").unwrap_or("?").to_string());
        session = g.header(SESSION).unwrap_or(&session).to_string();
    }
    assert!(
        served.iter().all(|d| d == "eastus"),
        "reads after the kill were served by {served:?}"
    );
    eprintln!(
        "200 reads through the gateway in {:?} after the kill",
        killed.elapsed()
    );
    // Writes too: eastus's server sends them on to the primary.
    let w = api.post("users", &t, &user_body("grace@contoso.com"));
    w.expect(201);
    assert_eq!(
        w.header("x-geodir-datacenter"),
        Some("eastus"),
        "{}",
        w.describe()
    );

    // The server back: its probe passes, and traffic returns to it.
    servers.start_one("westeurope");
    wait_for(
        "reads served by westeurope again",
        Duration::from_secs(10),
        || {
            let g = api.get(&format!("users/{id}"), &t);
            (
                g.status == 200 && g.header("x-geodir-datacenter") == Some("westeurope"),
                g.describe(),
            )
        },
    );

    // No server at all: Graph's 503 with Retry-After, and nothing applied anywhere.
    for dc in DCS {
        servers.kill(dc);
    }
    let down = api.post("users", &t, &user_body("nobody@contoso.com"));
    down.expect_error(503, "serviceNotAvailable");
    assert_eq!(down.header("retry-after"), Some("1"), "{}", down.describe());
    for dc in DCS {
        servers.start_one(dc);
    }
    wait_for(
        "the gateway sees the servers again",
        Duration::from_secs(10),
        || {
            let g = api.get(
                "users?$filter=userPrincipalName%20eq%20'nobody@contoso.com'",
                &t,
            );
            (g.status == 200, g.describe())
        },
    );
    let g = api.get(
        "users?$filter=userPrincipalName%20eq%20'nobody@contoso.com'",
        &t,
    );
    assert_eq!(g.json()["value"], json!([]), "{}", g.describe());
}

#[test]
fn a_server_speaks_tls_with_a_self_signed_certificate_it_keeps_and_clients_can_trust() {
    let c = Cluster::new();
    let mut servers = Servers::start(&c.root, &DCS, &["--tls-self-signed"]);
    let t = token(&c, "contoso", "writer", &[]);
    let (http, cert) = {
        let s = &servers.servers["westus"];
        (
            s.http.clone(),
            s.cert.clone().expect("a cert= in the start line"),
        )
    };
    assert!(http.starts_with("https://"), "{http}");
    let pem = std::fs::read(&cert).unwrap();
    let key = cert.with_file_name("key.pem");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", key.display());

    let api = Api::at_trusting(&http, &pem);
    let created = api.post("users", &t, &user_body("ada@contoso.com"));
    created.expect(201);
    assert!(
        created
            .header("location")
            .is_some_and(|l| l.starts_with("https://")),
        "{}",
        created.describe()
    );
    api.get(&format!("users/{}", id_of(&created)), &t)
        .expect(200);

    // Plain HTTP gets no answer; a client trusting another certificate refuses this one.
    let plain = Api::at(&http.replace("https://", "http://"));
    let r = plain.try_get("users", &t);
    assert!(!matches!(r, Ok(200)), "plain HTTP was served: {r:?}");
    let other = std::fs::read(servers.servers["eastus"].cert.clone().unwrap()).unwrap();
    let r = Api::at_trusting(&http, &other).try_get("users", &t);
    assert!(
        r.is_err(),
        "a certificate the client does not trust was accepted: {r:?}"
    );

    // Restarted, it keeps its certificate: clients told to trust it still do.
    servers.kill("westus");
    servers.start_one("westus");
    let s = &servers.servers["westus"];
    assert_eq!(std::fs::read(s.cert.clone().unwrap()).unwrap(), pem);
    Api::at_trusting(&s.http, &pem).get("users", &t).expect(200);

    // The operator's files, when they are not a certificate and its key: refused by name.
    std::fs::write(c.path("bad.pem"), "not a certificate").unwrap();
    let out = std::process::Command::new(util::servers::geodird())
        .arg("--cluster")
        .arg(&c.root)
        .args(["--datacenter", "westus", "--check-config", "--tls-cert"])
        .arg(c.path("bad.pem"))
        .arg("--tls-key")
        .arg(&key)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr.contains("tls_cert"), "{stderr}");
}
