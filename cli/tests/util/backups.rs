//! Backup tests' shared helpers: the clock, the backups folder, a cluster with one backup.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Cluster, Run};

pub const DAY1: &str = "2026-12-01T10:00:00Z";

/// Runs dirctl against `c` with extra environment (the clock) and `--dest`.
pub fn run_at(c: &Cluster, now: &str, args: &[&str]) -> Run {
    let (mut cmd, shown) = c.command(args);
    cmd.env("DIRCTL_NOW", now);
    let out = cmd.output().unwrap();
    Run {
        cmd: format!("DIRCTL_NOW={now} {shown}"),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
        logs: String::new(),
    }
}

pub fn ok_at(c: &Cluster, now: &str, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["--output", "json"]);
    let r = run_at(c, now, &a);
    assert_eq!(r.code, 0, "{}", r.describe());
    r.json()
}

pub fn dest(c: &Cluster) -> String {
    c.path("backups").display().to_string()
}

pub fn archive(c: &Cluster, id: &str) -> PathBuf {
    c.path("backups").join(format!("geodir-{id}.tar.zst"))
}

/// The same cluster handle pointed at another root.
pub fn at(root: &Path) -> Cluster {
    Cluster {
        dir: tempfile::tempdir().unwrap(),
        root: root.to_path_buf(),
        servers: None,
        control_plane: None,
    }
}

pub fn backed_up() -> Cluster {
    let c = Cluster::new();
    c.create_user("ada@contoso.com");
    ok_at(&c, DAY1, &["backup", "create", "--dest", &dest(&c)]);
    c
}
