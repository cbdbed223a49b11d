//! The Graph API's figures, driven by `wrk` (Debian's package, installed by scripts/setup)
//! against one real geodird with keep-alive, each beside a baseline measured in this run:
//! `GET /users/{id}` beside `/livez`, the same server's trivial endpoint; `POST /users`
//! with 64 connections beside the gRPC write path with 64 clients.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::server::{create, envelope, geodird, Servers};
use super::{cluster, report, Figure};

/// What one wrk run measured.
#[derive(Debug)]
struct Wrk {
    requests_per_sec: f64,
    p99_ms: f64,
    non_2xx: u64,
    output: String,
}

/// A wrk latency figure (`1.23ms`, `870.00us`, `1.01s`) in milliseconds.
fn millis(s: &str) -> Option<f64> {
    let (n, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => return None,
    })
}

fn parse_wrk(output: &str) -> Option<Wrk> {
    let requests_per_sec = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))?
        .trim()
        .parse()
        .ok()?;
    let p99_ms = output.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next()? == "99%").then(|| millis(w.next()?))?
    })?;
    let non_2xx = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    Some(Wrk {
        requests_per_sec,
        p99_ms,
        non_2xx,
        output: output.to_string(),
    })
}

fn wrk(args: &[&str], url: &str) -> Wrk {
    let out = Command::new("wrk")
        .args(args)
        .arg("--latency")
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("wrk: {e} (scripts/setup installs it)"));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let w = parse_wrk(&text).unwrap_or_else(|| {
        panic!(
            "wrk {args:?} {url}: no figures\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(
        w.non_2xx, 0,
        "wrk {args:?} {url}: failed requests\n{}",
        w.output
    );
    w
}

/// A writer token of tenant contoso, from `dirctl token issue`.
fn token(root: &Path) -> String {
    let dirctl = geodird().with_file_name("dirctl");
    let out = Command::new(&dirctl)
        .arg("--cluster")
        .arg(root)
        .args([
            "token", "issue", "--tenant", "contoso", "--role", "writer", "--ttl", "1h",
        ])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/bench builds it)", dirctl.display()));
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub(super) fn graph_figures(dir: &Path, seconds: u64) -> Vec<Value> {
    let (c, _) = cluster(&dir.join("g"));
    let root = c.root().to_path_buf();
    drop(c);
    let servers = Servers::start_with(&root, &["--graph-rate-per-token", "0"]);
    let token = token(&root);
    let http = servers.http_of("westus").to_string();
    let auth = format!("Authorization: Bearer {token}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut created = agent
        .post(format!("{http}/v1.0/users"))
        .header("Authorization", format!("Bearer {token}"))
        .send_json(
            serde_json::json!({"userPrincipalName": "ada@contoso.com", "displayName": "Ada"}),
        )
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = created.body_mut().read_json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let d = format!("{seconds}s");
    let mut out = Vec::new();

    let ours = wrk(
        &["-t2", "-c16", "-d", &d, "-H", &auth],
        &format!("{http}/v1.0/users/{id}"),
    );
    let trivial = wrk(&["-t2", "-c16", "-d", &d], &format!("{http}/livez"));
    out.push(report(&Figure {
        name: "Graph GET /users/{id} requests/s, 16 conns",
        unit: "req/s",
        value: ours.requests_per_sec,
        baseline_name: "GET /livez of the same server",
        baseline: trivial.requests_per_sec,
        goal: ">= 0.5x",
    }));
    out.push(report(&Figure {
        name: "Graph GET /users/{id} p99, 16 conns",
        unit: "ms",
        value: ours.p99_ms,
        baseline_name: "GET /livez p99",
        baseline: trivial.p99_ms,
        goal: "report",
    }));

    // POST /users with 64 connections, each request a new UPN.
    let script = dir.join("post-users.lua");
    std::fs::write(
        &script,
        format!(
            r#"local counter = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function request()
  counter = counter + 1
  local body = '{{"userPrincipalName":"wrk' .. (tid or 0) .. '.' .. counter .. '@contoso.com","displayName":"wrk"}}'
  return wrk.format("POST", nil, {{["Content-Type"]="application/json", ["Authorization"]="Bearer {token}"}}, body)
end
"#
        ),
    )
    .unwrap();
    let posts = wrk(
        &["-t2", "-c64", "-d", &d, "-s", &script.display().to_string()],
        &format!("{http}/v1.0/users"),
    );
    // The gRPC write path, 64 clients, for as long.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let primary = servers.connect(&rt, "westus");
    let env = envelope();
    let next = AtomicUsize::new(5_000_000);
    let until = Instant::now() + Duration::from_secs(seconds);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..64 {
            let (c, env, next) = (primary.clone(), env.clone(), &next);
            s.spawn(move || {
                while Instant::now() < until {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    c.execute(&env, &create(i), false, &mut |_| {}).unwrap();
                }
            });
        }
    });
    let grpc = (next.load(Ordering::SeqCst) - 5_000_000) as f64 / t.elapsed().as_secs_f64();
    out.push(report(&Figure {
        name: "Graph POST /users writes/s, 64 conns",
        unit: "writes/s",
        value: posts.requests_per_sec,
        baseline_name: "gRPC writes/s, 64 clients",
        baseline: grpc,
        goal: "report",
    }));
    out
}
