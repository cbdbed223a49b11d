//! Operators through the real binary: runs at a time (DIRCTL_NOW) as a login file, TOTP
//! codes as an authenticator app shows them, and the usual steps (enrol, log in, elevate).
#![allow(dead_code, clippy::unwrap_used)]

use serde_json::Value;

use super::{Cluster, Run};

pub const T0: i64 = 1_796_292_000; // 2026-12-03T10:00:00Z

pub fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).unwrap().to_rfc3339()
}

/// Runs `args` at unix time `t` (DIRCTL_NOW) as the login in `login` (a file name in the
/// test's folder).
pub fn at(c: &Cluster, t: i64, login: &str, args: &[&str]) -> Run {
    let (mut cmd, shown) = c.command(args);
    cmd.env("DIRCTL_NOW", rfc3339(t))
        .env("DIRCTL_LOGIN_FILE", c.path(login));
    let out = cmd.output().unwrap();
    Run {
        cmd: format!(
            "DIRCTL_NOW={} DIRCTL_LOGIN_FILE={login} {shown}",
            rfc3339(t)
        ),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
        logs: String::new(),
    }
}

pub fn ok_at(c: &Cluster, t: i64, login: &str, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["--output", "json"]);
    let r = at(c, t, login, &a);
    assert_eq!(r.code, 0, "{}", r.describe());
    r.json()
}

pub fn fails_at(c: &Cluster, t: i64, login: &str, args: &[&str], code: i32, says: &str) -> Run {
    let r = at(c, t, login, args);
    assert_eq!(r.code, code, "{}", r.describe());
    assert!(
        r.stderr.contains(says),
        "stderr should say {says:?}\n{}",
        r.describe()
    );
    r
}

/// The code an authenticator app shows at `t` for this enrolment's URI.
pub fn code(uri: &str, t: i64) -> String {
    totp_rs::Totp::from_url(uri)
        .unwrap()
        .generate(t as u64)
        .to_string()
}

/// A code that is not `uri`'s at `t` (nor in the window around it).
pub fn wrong_code(uri: &str, t: i64) -> String {
    let near: Vec<String> = [t - 30, t, t + 30].iter().map(|s| code(uri, *s)).collect();
    (0..1_000_000)
        .map(|n| format!("{n:06}"))
        .find(|c| !near.contains(c))
        .unwrap()
}

/// Enrols `name` with `roles` at `t` (as `login`, who must be an elevated security-admin
/// unless `name` is the first operator); the otpauth URI.
pub fn enroll(c: &Cluster, t: i64, login: &str, name: &str, roles: &[&str]) -> String {
    let mut a = vec!["operator", "enroll", name];
    for r in roles {
        a.extend(["--role", r]);
    }
    let doc = ok_at(c, t, login, &a);
    doc["otpauthUri"].as_str().unwrap().to_string()
}

pub fn audit(c: &Cluster, t: i64, login: &str) -> Vec<Value> {
    ok_at(c, t, login, &["audit", "list"])["records"]
        .as_array()
        .unwrap()
        .clone()
}

pub fn with_op<'a>(records: &'a [Value], op: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["op"] == op).collect()
}

/// `dirctl login NAME` at `t` with the code `uri` shows then, into login file `login`.
pub fn login(c: &Cluster, t: i64, login: &str, name: &str, uri: &str) -> Value {
    ok_at(c, t, login, &["login", name, "--otp", &code(uri, t)])
}

/// `dirctl elevate` at `t` as `login`, with the code `uri` shows then.
pub fn elevate(
    c: &Cluster,
    t: i64,
    login: &str,
    uri: &str,
    role: &str,
    length: &str,
    reason: &str,
) -> Value {
    ok_at(
        c,
        t,
        login,
        &[
            "elevate",
            "--role",
            role,
            "--for",
            length,
            "--reason",
            reason,
            "--otp",
            &code(uri, t),
        ],
    )
}
