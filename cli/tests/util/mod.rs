//! Runs the real `dirctl` binary in a temp folder; on failure, prints the command,
//! its stdout and stderr.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub mod backups;
#[path = "../../../server/tests/support/etcd.rs"]
pub mod etcd;
pub mod graph;
pub mod netns;
pub mod operators;
pub mod servers;

/// Where a test's dirctl commands go: the cluster's folders, or its servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// dirctl opens the replicas itself (the default).
    Embedded,
    /// One geodird per datacenter; dirctl runs with DIRCTL_ENDPOINTS.
    Server,
}

/// One test body, two backends: `both_modes!(body, name_embedded, name_server)` makes
/// two tests, each calling `body(Mode)`.
#[macro_export]
macro_rules! both_modes {
    ($body:ident, $embedded:ident, $server:ident) => {
        #[test]
        fn $embedded() {
            $body($crate::util::Mode::Embedded)
        }
        #[test]
        fn $server() {
            $body($crate::util::Mode::Server)
        }
    };
}

pub const DCS: &str = "westus@37.4,-122.1,eastus@37.4,-79.4,westeurope@52.4,4.9";

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    /// The server mode's servers (dirctl then runs with DIRCTL_ENDPOINTS only).
    pub servers: Option<std::sync::Mutex<servers::Servers>>,
    /// The control plane in etcd (DIRCTL_CONTROL_PLANE), if not the root's cluster.json.
    pub control_plane: Option<String>,
}

pub struct Run {
    pub cmd: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The servers' logs when the command ran (the server mode).
    pub logs: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("{}\nstdout is not JSON: {e}", self.describe()))
    }
    pub fn describe(&self) -> String {
        format!(
            "command: {}\nexit code: {}\nstdout:\n{}\nstderr:\n{}\n{}",
            self.cmd, self.code, self.stdout, self.stderr, self.logs
        )
    }
}

pub fn dirctl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dirctl"))
}

fn finish(cmd: String, out: Output) -> Run {
    Run {
        cmd,
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
        logs: String::new(),
    }
}

impl Cluster {
    /// A new cluster: 3 datacenters, 4 partitions, tenant `contoso` on partition 0
    /// (primary westus, sync standby eastus, westeurope an ordinary secondary).
    pub fn new() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cluster");
        let c = Cluster {
            dir,
            root,
            servers: None,
            control_plane: None,
        };
        c.ok(&["init", "--datacenters", DCS, "--partitions", "4"]);
        c.ok(&["tenant", "create", "contoso", "--partition", "0"]);
        c
    }

    /// `new`, its commands going to the folders or (`Mode::Server`) to a server per
    /// datacenter.
    pub fn in_mode(mode: Mode) -> Cluster {
        let mut c = Cluster::new();
        if mode == Mode::Server {
            let s = servers::Servers::start(&c.root, &["westus", "eastus", "westeurope"], &[]);
            c.servers = Some(std::sync::Mutex::new(s));
        }
        c
    }

    pub fn mode(&self) -> Mode {
        match self.servers {
            Some(_) => Mode::Server,
            None => Mode::Embedded,
        }
    }

    /// Datacenter `dc` is lost: its folder moved away, or its server killed (SIGKILL).
    pub fn take_down(&self, dc: &str) {
        match &self.servers {
            Some(s) => s.lock().unwrap().kill(dc),
            None => rename(&self.dc_dir(dc), &self.path(&format!("{dc}-away"))),
        }
    }

    /// Datacenter `dc` is back: its folder, or its server restarted.
    pub fn bring_back(&self, dc: &str) {
        match &self.servers {
            Some(s) => s.lock().unwrap().start_one(dc),
            None => rename(&self.path(&format!("{dc}-away")), &self.dc_dir(dc)),
        }
    }

    /// The servers' logs, for failure messages (empty in the embedded mode).
    pub fn server_logs(&self) -> String {
        self.servers
            .as_ref()
            .map(|s| s.lock().unwrap().logs())
            .unwrap_or_default()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn dc_dir(&self, dc: &str) -> PathBuf {
        self.root.join(format!("dc-{dc}"))
    }

    pub fn command(&self, args: &[&str]) -> (Command, String) {
        let mut c = dirctl();
        c.args(args)
            .env_remove("DIRCTL_REGION")
            .env_remove("DIRCTL_SESSION")
            .env_remove("DIRCTL_TENANT")
            .env_remove("DIRCTL_CONTROL_PLANE")
            // The login (`dirctl login`) in the test's folder, not the user's home.
            .env("DIRCTL_LOGIN_FILE", self.path("login.json"));
        let mut shown_cp = String::new();
        if let Some(cp) = &self.control_plane {
            c.env("DIRCTL_CONTROL_PLANE", cp);
            shown_cp = format!("DIRCTL_CONTROL_PLANE={cp} ");
        }
        let (var, value) = match &self.servers {
            Some(s) => {
                c.env_remove("DIRCTL_CLUSTER");
                ("DIRCTL_ENDPOINTS", s.lock().unwrap().endpoints())
            }
            None => {
                c.env_remove("DIRCTL_ENDPOINTS");
                ("DIRCTL_CLUSTER", self.root.display().to_string())
            }
        };
        c.env(var, &value);
        (
            c,
            format!("{shown_cp}{var}={value} dirctl {}", args.join(" ")),
        )
    }

    /// Runs with arguments as the OS passes them (bytes that need not be UTF-8).
    pub fn run_os(&self, args: &[&std::ffi::OsStr]) -> Run {
        let mut c = self.command(&[]).0;
        c.args(args);
        let shown: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
        let shown = format!(
            "DIRCTL_CLUSTER={} dirctl {}",
            self.root.display(),
            shown.join(" ")
        );
        finish(shown, c.output().unwrap())
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let (mut c, shown) = self.command(args);
        let mut r = finish(shown, c.output().unwrap());
        r.logs = self.server_logs();
        r
    }

    /// Runs with `--output json` and expects exit 0.
    pub fn ok(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["--output", "json"]);
        let r = self.run(&a);
        assert_eq!(r.code, 0, "{}", r.describe());
        r.json()
    }

    /// Runs and expects exit `code`; returns the run for further checks.
    pub fn fails(&self, args: &[&str], code: i32) -> Run {
        let r = self.run(args);
        assert_eq!(r.code, code, "{}", r.describe());
        r
    }

    pub fn create_user(&self, upn: &str) -> String {
        self.create_user_with(upn, &[])["object"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Creates user `upn` in contoso with `more` arguments (`--session`, `--region`); returns
    /// the command's JSON.
    pub fn create_user_with(&self, upn: &str, more: &[&str]) -> Value {
        let mut a = create_user_args(upn);
        a.extend(more);
        self.ok(&a)
    }

    /// A user create in contoso that must fail with exit `code`.
    pub fn create_user_fails(&self, upn: &str, code: i32) -> Run {
        self.fails(&create_user_args(upn), code)
    }

    /// Creates a group in contoso; returns its ID.
    pub fn create_group(&self, name: &str) -> String {
        let v = self.ok(&[
            "group",
            "create",
            "--tenant",
            "contoso",
            "--display-name",
            name,
        ]);
        v["object"]["id"].as_str().unwrap().to_string()
    }

    /// One replica's status row.
    pub fn status_row(&self, partition: u64, dc: &str) -> Value {
        self.status(partition)
            .into_iter()
            .find(|r| r["datacenter"] == dc)
            .unwrap_or_else(|| panic!("no status row for partition {partition} in {dc}"))
    }

    /// The partition's status rows.
    pub fn status(&self, partition: u64) -> Vec<Value> {
        let v = self.ok(&["status"]);
        v["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["partition"] == partition)
            .cloned()
            .collect()
    }

    /// `dirctl access check` in tenant contoso, with `more` arguments (`--action`, `--region`).
    pub fn access_check(&self, user: &str, resource: &str, more: &[&str]) -> Value {
        let mut a = vec![
            "access",
            "check",
            "--tenant",
            "contoso",
            "--user",
            user,
            "--resource",
            resource,
        ];
        a.extend(more);
        self.ok(&a)
    }

    /// A writer (a real dirctl process) dies after its user `tail@contoso.com` (ID `tail_id`)
    /// is durable on the primary only.
    pub fn crash_leaving_an_unacknowledged_tail(&self, tail_id: &str) {
        let (mut cmd, shown) = self.command(&[
            "user",
            "create",
            "--tenant",
            "contoso",
            "--set",
            &format!("id={tail_id}"),
            "--upn",
            "tail@contoso.com",
            "--display-name",
            "tail",
        ]);
        let out = cmd
            .env("DIRCTL_FAILPOINT", "crash-after-primary-append")
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{shown} should have crashed at DIRCTL_FAILPOINT=crash-after-primary-append; failpoints \
             exist only in a dirctl built with `--features geodir-cli/failpoints`, which \
             scripts/test passes"
        );
    }

    /// `dirctl user get` in tenant contoso, with `more` arguments (`--region`, `--session`).
    pub fn user_get(&self, id: &str, more: &[&str]) -> Value {
        let mut a = vec!["user", "get", "--tenant", "contoso", id];
        a.extend(more);
        self.ok(&a)
    }

    /// `user_get` run whatever its exit (for checks of its stderr).
    pub fn user_get_run(&self, id: &str, more: &[&str]) -> Run {
        let mut a = vec!["user", "get", "--tenant", "contoso", id];
        a.extend(more);
        self.run(&a)
    }

    /// `user_get` that must fail with exit `code`.
    pub fn user_get_fails(&self, id: &str, more: &[&str], code: i32) -> Run {
        let mut a = vec!["user", "get", "--tenant", "contoso", id];
        a.extend(more);
        self.fails(&a, code)
    }

    pub fn lsn(&self, partition: u64, dc: &str) -> Option<u64> {
        self.status(partition)
            .iter()
            .find(|r| r["datacenter"] == dc)
            .and_then(|r| r["lastLsn"].as_u64())
    }
}

/// `dirctl user create` of `upn` in contoso (its display name the UPN too).
pub fn create_user_args(upn: &str) -> Vec<&str> {
    vec![
        "user",
        "create",
        "--tenant",
        "contoso",
        "--upn",
        upn,
        "--display-name",
        upn,
    ]
}

pub fn rename(from: &Path, to: &Path) {
    std::fs::rename(from, to)
        .unwrap_or_else(|e| panic!("rename {} -> {}: {e}", from.display(), to.display()));
}
