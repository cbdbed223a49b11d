//! The server mode with real processes: one geodird per datacenter on free loopback ports,
//! dirctl with DIRCTL_ENDPOINTS, servers killed with SIGKILL mid-write.
mod util;

use std::io::{Read as _, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use util::servers::{acked, visible, wait_for, writer, Seen};
use util::{Cluster, Mode};

#[test]
fn the_primarys_server_killed_mid_write_loses_no_acknowledged_write_after_emergency_failover() {
    let c = Cluster::in_mode(Mode::Server);
    let stop = AtomicBool::new(false);
    let seen = Mutex::new(Seen::default());
    std::thread::scope(|s| {
        s.spawn(|| writer(&c, "k", 400, &stop, &seen));
        wait_for("10 acknowledged writes", Duration::from_secs(60), || {
            (acked(&seen) >= 10, acked(&seen))
        });
        c.take_down("westus");
        // The writer goes on against a dead primary for a while: refused or unknown.
        let after_kill = acked(&seen);
        wait_for(
            "writes refused after the kill",
            Duration::from_secs(60),
            || {
                let s = seen.lock().unwrap();
                (
                    s.refused.len() + s.unknown.len() >= 3,
                    (s.refused.len(), s.unknown.len()),
                )
            },
        );
        stop.store(true, Ordering::SeqCst);
        assert!(
            acked(&seen) <= after_kill + 1,
            "writes were acknowledged with the primary dead: {:?}",
            seen.lock().unwrap()
        );
    });
    let r = c.run(&[
        "failover",
        "--partition",
        "0",
        "--emergency",
        "--yes",
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.describe());
    let v = r.json();
    assert_eq!(v["failovers"][0]["newPrimary"], "eastus", "{v}");
    let seen = seen.into_inner().unwrap();
    assert!(seen.other.is_empty(), "{:?}", seen.other);
    for upn in &seen.acked {
        for region in ["eastus", "westeurope"] {
            // Continuous replication brings westeurope level without any `sync`.
            wait_for(
                &format!("{upn} readable near {region}"),
                Duration::from_secs(20),
                || (visible(&c, upn, region), upn.clone()),
            );
        }
    }
    // A refused write ("nothing applied") is visible nowhere.
    for (upn, why) in &seen.refused {
        assert!(
            !visible(&c, upn, "eastus"),
            "{upn} was refused ({why}) yet is visible"
        );
    }
    // Writes go on at the new primary, and the old primary's server rejoins as a secondary.
    c.create_user("after@contoso.com");
    c.bring_back("westus");
    wait_for(
        "the old primary's server serves the new write",
        Duration::from_secs(20),
        || (visible(&c, "after@contoso.com", "westus"), ()),
    );
    for upn in &seen.acked {
        assert!(
            visible(&c, upn, "westus"),
            "{upn} missing at the rejoined westus\n{}",
            c.server_logs()
        );
    }
}

#[test]
fn the_standbys_server_killed_mid_write_leaves_each_write_acknowledged_or_applied_nowhere() {
    let c = Cluster::in_mode(Mode::Server);
    let stop = AtomicBool::new(false);
    let seen = Mutex::new(Seen::default());
    std::thread::scope(|s| {
        s.spawn(|| writer(&c, "s", 400, &stop, &seen));
        wait_for("10 acknowledged writes", Duration::from_secs(60), || {
            (acked(&seen) >= 10, acked(&seen))
        });
        c.take_down("eastus");
        let before = acked(&seen);
        // A new sync standby (westeurope) takes over: writes are acknowledged again.
        wait_for(
            "writes acknowledged with a new sync standby",
            Duration::from_secs(60),
            || (acked(&seen) >= before + 10, acked(&seen)),
        );
        stop.store(true, Ordering::SeqCst);
    });
    let seen = seen.into_inner().unwrap();
    assert!(seen.other.is_empty(), "{:?}", seen.other);
    c.bring_back("eastus");
    for upn in &seen.acked {
        for region in ["westus", "westeurope", "eastus"] {
            wait_for(
                &format!("{upn} readable near {region}"),
                Duration::from_secs(20),
                || (visible(&c, upn, region), upn.clone()),
            );
        }
    }
    for (upn, why) in &seen.refused {
        assert!(
            why.contains("nothing") || why.contains("no geo-durable"),
            "{upn}: exit 5 without saying nothing was applied: {why}"
        );
        for region in ["westus", "westeurope", "eastus"] {
            assert!(
                !visible(&c, upn, region),
                "{upn} was refused ({why}) yet is visible near {region}"
            );
        }
    }
}

#[test]
fn a_secondarys_server_down_for_10000_writes_catches_up_without_sync() {
    let c = Cluster::in_mode(Mode::Server);
    c.take_down("westeurope");
    let n = 10_000;
    let file = c.path("many.jsonl");
    let lines: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r##"{{"@odata.type":"#microsoft.graph.user","userPrincipalName":"m{i}@contoso.com","displayName":"m{i}"}}"##
            )
        })
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    // One entry per line: 10,000 writes.
    let r = c.run(&[
        "import",
        "--tenant",
        "contoso",
        file.to_str().unwrap(),
        "--batch-size",
        "1",
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.describe());
    let summary: serde_json::Value =
        serde_json::from_str(r.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["imported"], n, "{}", r.describe());
    c.bring_back("westeurope");
    let last = format!("m{}@contoso.com", n - 1);
    wait_for(
        "westeurope holds the last write, with no sync",
        Duration::from_secs(30),
        || (visible(&c, &last, "westeurope"), ()),
    );
    let got = c.user_get(&last, &["--region", "westeurope"]);
    assert_eq!(got["@geodir.servedBy"]["datacenter"], "westeurope", "{got}");
    assert_eq!(got["@geodir.servedBy"]["pulledEntries"], 0, "{got}");
    assert!(visible(&c, "m0@contoso.com", "westeurope"));
}

#[test]
fn sigterm_stops_a_server_cleanly_and_a_restart_rejoins() {
    let c = Cluster::in_mode(Mode::Server);
    c.create_user("before@contoso.com");
    let servers = c.servers.as_ref().unwrap();
    let status = servers.lock().unwrap().stop("westeurope");
    assert!(
        status.success(),
        "geodird exited {status:?} on SIGTERM\n{}",
        c.server_logs()
    );
    c.create_user("during@contoso.com");
    c.bring_back("westeurope");
    wait_for(
        "the restarted server catches up",
        Duration::from_secs(20),
        || (visible(&c, "during@contoso.com", "westeurope"), ()),
    );
    assert!(visible(&c, "before@contoso.com", "westeurope"));
}

/// A plain HTTP/1.1 GET, as Prometheus and a load balancer's health check send it: status
/// code and the whole response.
fn http_get(http: &str, path: &str) -> (u16, String) {
    let addr = http.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

/// The replicas `dirctl status` does not find ok.
fn unhealthy(c: &Cluster) -> Vec<serde_json::Value> {
    let rows = c.ok(&["status"]);
    rows["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["health"] != "ok")
        .cloned()
        .collect()
}

/// A metric's value in a Prometheus text body (the first series named exactly `name`).
fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Group commit: concurrent clients' writes to one partition share log entries, and every
/// acknowledged one is readable, each with its own audit record (a shared entry keeps
/// the chain: the engine's `writes_carried_out_together_share_an_entry...` verifies it).
#[test]
fn concurrent_writes_share_log_entries_and_each_is_acknowledged_and_readable() {
    use engine::directory::ObjectType;
    use engine::request::{Envelope, Request};
    let c = Cluster::in_mode(Mode::Server);
    let (grpc, http) = {
        let s = c.servers.as_ref().unwrap().lock().unwrap();
        let w = &s.servers["westus"];
        (w.grpc.clone(), w.http.clone())
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let conn =
        server::client::Connection::new(rt.handle().clone(), &grpc, Duration::from_secs(10), None)
            .unwrap();
    let (clients, each) = (24, 10);
    let answers = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for k in 0..clients {
            let (conn, answers) = (conn.clone(), &answers);
            s.spawn(move || {
                for i in 0..each {
                    let upn = format!("g{k}-{i}@contoso.com");
                    let request = Request::CreateObject {
                        tenant: "contoso".into(),
                        object_type: ObjectType::User,
                        fields: serde_json::json!({"userPrincipalName": upn, "displayName": upn})
                            .as_object()
                            .cloned()
                            .unwrap(),
                    };
                    let envelope = Envelope {
                        actor: "group-commit-test".into(),
                        correlation_id: upn.clone(),
                        datacenter: None,
                        token: None,
                    };
                    let got = conn.execute(&envelope, &request, false, &mut |_| {});
                    answers
                        .lock()
                        .unwrap()
                        .push((upn, got.map(|(r, _)| r.token)));
                }
            });
        }
    });
    let answers = answers.into_inner().unwrap();
    let failed: Vec<_> = answers.iter().filter(|(_, r)| r.is_err()).collect();
    assert!(failed.is_empty(), "every write is acknowledged: {failed:?}");
    let mut lsns: Vec<u64> = answers
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok()?.as_ref().map(|t| t.lsn))
        .collect();
    lsns.sort_unstable();
    lsns.dedup();
    let writes = clients * each;
    assert!(
        lsns.len() < writes,
        "{writes} concurrent writes took {} log entries: none was shared",
        lsns.len()
    );
    // The server counts its batches: fewer batches than writes.
    let (code, body) = http_get(&http, "/metrics");
    assert_eq!(code, 200, "{body}");
    let batches = metric(&body, "geodir_write_batch_requests_count");
    let batched = metric(&body, "geodir_write_batch_requests_sum");
    assert!(
        batches.is_some_and(|n| n < writes as f64) && batched.is_some_and(|n| n >= writes as f64),
        "batches {batches:?} of {batched:?} writes in all ({writes} sent):\n{body}"
    );
    let listed = c.ok(&["user", "list", "--tenant", "contoso", "--region", "westus"]);
    let names: std::collections::BTreeSet<String> = listed["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["userPrincipalName"].as_str().map(str::to_string))
        .collect();
    let missing: Vec<&String> = answers
        .iter()
        .map(|(u, _)| u)
        .filter(|u| !names.contains(*u))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not listed: {missing:?}"
    );
    let audit = c.ok(&["audit", "list", "--by", "group-commit-test"]);
    let records = audit["records"].as_array().map_or(0, Vec::len);
    assert_eq!(records, writes, "an audit record per write: {audit}");
}

#[test]
fn metrics_and_healthz_answer_over_http() {
    let c = Cluster::in_mode(Mode::Server);
    c.create_user("m@contoso.com");
    let servers = c.servers.as_ref().unwrap().lock().unwrap();
    let http = servers.servers["westus"].http.clone();
    let get = |path: &str| http_get(&http, path);
    let (code, body) = get("/healthz");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("p0: primary"), "{body}");
    let wanted = [
        "geodir_requests_total{request=\"createObject\",outcome=\"ok\"} 1",
        "geodir_request_seconds_bucket",
        "geodir_partition_term{partition=\"0\"} 1",
        "geodir_partition_primary_here{partition=\"0\"} 1",
        // Once the replicator's first round after the write has run.
        "geodir_replication_lag_entries{partition=\"0\",datacenter=\"westeurope\"} 0",
    ];
    wait_for(
        "/metrics with every series",
        Duration::from_secs(10),
        || {
            let (code, body) = get("/metrics");
            let missing: Vec<&str> = wanted
                .iter()
                .copied()
                .filter(|w| !body.contains(w))
                .collect();
            (code == 200 && missing.is_empty(), (code, missing, body))
        },
    );
}

#[test]
fn malformed_and_oversized_requests_are_refused_and_apply_nothing() {
    use server::pb::directory_client::DirectoryClient;
    use server::pb::ExecuteRequest;
    let c = Cluster::in_mode(Mode::Server);
    let grpc = c.servers.as_ref().unwrap().lock().unwrap().servers["westus"]
        .grpc
        .clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let send = |envelope: Vec<u8>, request: Vec<u8>| -> tonic::Status {
        rt.block_on(async {
            let mut client = DirectoryClient::connect(grpc.clone())
                .await
                .unwrap()
                .max_encoding_message_size(200 * 1024 * 1024);
            let got = client
                .execute(ExecuteRequest {
                    envelope,
                    request,
                    forwarded: false,
                })
                .await;
            match got {
                Err(s) => s,
                Ok(mut stream) => match stream.get_mut().message().await {
                    Err(s) => s,
                    Ok(m) => panic!("accepted: {m:?}"),
                },
            }
        })
    };
    let envelope = br#"{"actor":"t","correlationId":"c","datacenter":null,"token":null}"#.to_vec();
    // Malformed JSON: refused, naming what was wrong.
    let s = send(
        envelope.clone(),
        br#"{"request":"createObject","tenant":"contoso","#.to_vec(),
    );
    assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("malformed request"), "{s:?}");
    assert_eq!(s.metadata().get("geodir-error").unwrap(), "invalid");
    // Well-formed JSON of an unknown request: refused the same way.
    let s = send(
        envelope.clone(),
        br#"{"request":"dropEverything"}"#.to_vec(),
    );
    assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
    // Over the 64 MiB limit: refused by gRPC before it is read.
    let big = format!(
        r##"{{"request":"createObject","tenant":"contoso","objectType":"user","fields":{{"userPrincipalName":"big@contoso.com","displayName":"{}"}}}}"##,
        "x".repeat(65 * 1024 * 1024)
    );
    let s = send(envelope, big.into_bytes());
    assert!(
        matches!(
            s.code(),
            tonic::Code::ResourceExhausted | tonic::Code::OutOfRange
        ),
        "{s:?}"
    );
    // Nothing was applied.
    c.user_get_fails("big@contoso.com", &["--region", "westus"], 3);
    let listed = c.ok(&["user", "list", "--tenant", "contoso", "--region", "westus"]);
    assert_eq!(listed["objects"].as_array().unwrap().len(), 0, "{listed}");
}

#[test]
fn a_primarys_server_restarted_after_a_crash_mid_write_settles_and_serves_reads_without_a_write() {
    let c = Cluster::in_mode(Mode::Server);
    c.create_user("before@contoso.com");
    // westus (the primary of partition 0) crashes once the next entry is durable on it alone.
    {
        let mut s = c.servers.as_ref().unwrap().lock().unwrap();
        s.kill("westus");
        s.env = vec![(
            "GEODIR_FAILPOINT".into(),
            "crash-after-primary-append".into(),
        )];
        s.start_one("westus");
        s.env.clear();
    }
    let r = c.run(&util::create_user_args("tail@contoso.com"));
    assert_eq!(
        r.code,
        1,
        "the write's outcome is unknown: {}",
        r.describe()
    );
    c.take_down("westus");
    c.bring_back("westus");
    // No write: the restarted server settles its tail itself, then serves reads.
    wait_for("westus serves reads again", Duration::from_secs(20), || {
        let r = c.user_get_run(
            "before@contoso.com",
            &["--region", "westus", "--output", "json"],
        );
        (
            r.code == 0 && r.json()["@geodir.servedBy"]["datacenter"] == "westus",
            r.describe(),
        )
    });
    // The entry left in doubt is cut (the standby never took it), and fenced: visible nowhere.
    for region in ["westus", "eastus", "westeurope"] {
        assert!(
            !visible(&c, "tail@contoso.com", region),
            "tail visible near {region}\n{}",
            c.server_logs()
        );
    }
    c.create_user("after@contoso.com");
}

/// `dirctl dc rebuild` in the server mode: a datacenter whose folder was lost restarts its
/// server (serving nothing), and its server rebuilds every replica from checkpoints the
/// primaries' servers stream; the primaries then ship the rest, with no `sync`.
#[test]
fn a_lost_datacenter_is_rebuilt_through_its_server() {
    let c = Cluster::in_mode(Mode::Server);
    c.create_user("before@contoso.com");
    c.take_down("westeurope");
    std::fs::remove_dir_all(c.dc_dir("westeurope")).unwrap();
    // westeurope was partition 2's primary: its sync standby takes over first.
    c.ok(&["failover", "--partition", "2", "--emergency", "--yes"]);
    c.bring_back("westeurope");
    c.create_user("during@contoso.com");
    let v = c.ok(&["dc", "rebuild", "westeurope", "--yes"]);
    let results: Vec<String> = v["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["result"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(results, vec!["rebuilt"; 4], "{v}\n{}", c.server_logs());
    c.create_user("after@contoso.com");
    for upn in [
        "before@contoso.com",
        "during@contoso.com",
        "after@contoso.com",
    ] {
        wait_for(
            &format!("{upn} at the rebuilt westeurope"),
            Duration::from_secs(20),
            || (visible(&c, upn, "westeurope"), ()),
        );
    }
    let bad = unhealthy(&c);
    assert!(
        bad.is_empty(),
        "every replica ok after the rebuild: {bad:?}"
    );
    // A second rebuild keeps what is whole.
    let again = c.ok(&["dc", "rebuild", "westeurope", "--yes"]);
    assert!(
        again["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["result"] == "healthy, kept"),
        "{again}"
    );
}

/// A secondary that fell behind the primary's retained log while its server was down is
/// re-seeded over the network when it returns: the primary's server asks, the secondary's
/// server fetches a checkpoint, and the replicator ships the rest. No operator action.
#[test]
fn a_secondary_behind_the_retained_log_is_reseeded_over_the_network() {
    let mut c = Cluster::new();
    c.servers = Some(Mutex::new(util::servers::Servers::start(
        &c.root,
        &["westus", "eastus", "westeurope"],
        &["--retain-log-entries", "5"],
    )));
    c.create_user("first@contoso.com");
    wait_for("first at westeurope", Duration::from_secs(20), || {
        (visible(&c, "first@contoso.com", "westeurope"), ())
    });
    c.take_down("westeurope");
    for i in 0..30 {
        c.create_user(&format!("gone{i}@contoso.com"));
    }
    // The primary prunes what every reachable replica holds (westeurope is not reachable).
    wait_for(
        "westus to prune partition 0's log",
        Duration::from_secs(20),
        || {
            let logs = c.server_logs();
            (
                logs.lines()
                    .any(|l| l.contains("log pruned") && l.contains("partition=0")),
                logs,
            )
        },
    );
    c.bring_back("westeurope");
    wait_for(
        "the last write at the returned westeurope",
        Duration::from_secs(30),
        || {
            (
                visible(&c, "gone29@contoso.com", "westeurope"),
                c.server_logs(),
            )
        },
    );
    let logs = c.server_logs();
    assert!(
        logs.contains("asking its server to re-seed") && logs.contains("replica re-seeded"),
        "it was re-seeded, not caught up from the log:\n{logs}"
    );
    assert!(visible(&c, "first@contoso.com", "westeurope"));
}

/// A second geodird for a datacenter whose server runs (its replicas in another --data
/// folder, so no replica lock stops it) is refused and changes nothing: the running server
/// keeps its address in the control plane.
#[test]
fn a_second_server_for_a_running_datacenter_is_refused() {
    let c = Cluster::in_mode(Mode::Server);
    let empty = c.path("elsewhere");
    std::fs::create_dir_all(&empty).unwrap();
    let mut cmd = std::process::Command::new(util::servers::geodird());
    cmd.arg("--cluster")
        .arg(&c.root)
        .arg("--data")
        .arg(&empty)
        .args([
            "--datacenter",
            "westus",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ]);
    let shown = format!("{cmd:?}");
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("served by the geodird at"),
        "{shown}: {:?}\n{stderr}",
        out.status
    );
    c.create_user("still@contoso.com");
    let bad = unhealthy(&c);
    assert!(bad.is_empty(), "{bad:?}\n{}", c.server_logs());
}

/// The sync standby's server dies between two writes: the next write is not refused. The
/// primary's server finds the standby gone when it ships the entry (cut and fenced, nothing
/// applied), holds the replicas again, re-designates the standby and writes it then.
#[test]
fn the_first_write_after_the_standbys_server_died_succeeds_with_a_new_standby() {
    let c = Cluster::in_mode(Mode::Server);
    c.create_user("before@contoso.com");
    c.take_down("eastus");
    let r = c.run(&util::create_user_args("after@contoso.com"));
    assert_eq!(r.code, 0, "{}", r.describe());
    assert!(
        r.stderr.contains("sync standby now"),
        "the re-designation is told: {}",
        r.describe()
    );
    let status = c.ok(&["status"]);
    let standby = status["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["partition"] == 0 && r["role"] == "sync-standby")
        .cloned();
    assert_eq!(
        standby.as_ref().map(|r| r["datacenter"].clone()),
        Some(serde_json::json!("westeurope")),
        "{status}"
    );
}

/// `--endpoints` naming servers of two clusters is refused (exit 2) before anything is
/// sent: otherwise commands would go to whichever answered first.
#[test]
fn endpoints_of_two_clusters_are_refused() {
    let a = Cluster::in_mode(Mode::Server);
    let b = Cluster::in_mode(Mode::Server);
    let grpc = |c: &Cluster, dc: &str| {
        c.servers.as_ref().unwrap().lock().unwrap().servers[dc]
            .grpc
            .clone()
    };
    let mixed = format!("{},{}", grpc(&a, "westus"), grpc(&b, "eastus"));
    let (mut cmd, _) = a.command(&util::create_user_args("mixed@contoso.com"));
    cmd.env("DIRCTL_ENDPOINTS", &mixed);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "DIRCTL_ENDPOINTS={mixed}: {stderr}"
    );
    assert!(stderr.contains("two clusters"), "{stderr}");
    for c in [&a, &b] {
        c.user_get_fails("mixed@contoso.com", &[], 3);
    }
}
