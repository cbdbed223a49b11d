//! Packaging (docs/install.md): the Debian package installed into a throwaway root, the
//! cron jobs' wrapper as cron runs it, bash completion, and geodird's config file.
#![allow(clippy::unwrap_used)]

mod util;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use util::servers::geodird;
use util::Cluster;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `c`; returns (exit code, stdout, stderr) and what ran, for the failure message.
fn run(c: &mut Command) -> (i32, String, String, String) {
    let shown = format!("{c:?}");
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
        shown,
    )
}

fn ok(c: &mut Command) -> String {
    let (code, stdout, stderr, shown) = run(c);
    assert_eq!(
        code, 0,
        "command: {shown}\nexit code: {code}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

/// The target folder of this build (where dirctl and geodird are).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_dirctl"))
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf()
}

/// dpkg on the throwaway root `root`: its maintainer scripts run outside a chroot with
/// DPKG_ROOT set (the root has no shell); the dependencies (libc) are the host's.
fn dpkg(root: &Path) -> Command {
    let mut c = Command::new("dpkg");
    c.arg(format!("--root={}", root.display())).args([
        "--force-script-chrootless",
        "--force-depends",
        "--log=/dev/null",
    ]);
    c
}

/// dirctl's top-level subcommands, as its help lists them.
fn subcommands(dirctl: &Path) -> Vec<String> {
    let help = ok(Command::new(dirctl).arg("--help"));
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn the_debian_package_installs_into_a_throwaway_root_runs_and_removes_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    // The binaries this test run built (scripts/package builds release ones without
    // --no-build; cargo holds the build folder while tests run).
    let stdout = ok(Command::new(repo().join("scripts/package"))
        .args(["--no-build", "--fast", "--output"])
        .arg(&out)
        .env("CARGO_TARGET_DIR", target_dir()));
    let deb = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    assert!(
        deb.is_file(),
        "scripts/package printed {stdout:?}, not a .deb"
    );

    // Its file list.
    let list = ok(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let files: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.'))
        .collect();
    for want in [
        "/usr/bin/dirctl",
        "/usr/bin/geodird",
        "/lib/systemd/system/geodird@.service",
        "/etc/cron.d/geodir",
        "/etc/geodir/cron.conf",
        "/etc/logrotate.d/geodir",
        "/usr/lib/geodir/geodir-cron",
        "/usr/lib/sysusers.d/geodir.conf",
        "/usr/lib/tmpfiles.d/geodir.conf",
        "/usr/share/doc/geodir/examples/westus.toml",
        "/usr/share/bash-completion/completions/dirctl",
        "/usr/share/zsh/vendor-completions/_dirctl",
        "/usr/share/fish/vendor_completions.d/dirctl.fish",
        "/usr/share/man/man1/dirctl.1.gz",
        "/usr/share/man/man8/geodird.8.gz",
    ] {
        assert!(
            files.contains(&want),
            "{want} is not in the package:\n{list}"
        );
    }
    let dirctl = target_dir().join("release/dirctl");
    let commands = subcommands(&dirctl);
    assert!(commands.len() > 10, "dirctl --help listed {commands:?}");
    for sub in &commands {
        let page = format!("/usr/share/man/man1/dirctl-{sub}.1.gz");
        assert!(
            files.contains(&page.as_str()),
            "{page} is not in the package:\n{list}"
        );
    }
    let conffiles = ok(Command::new("dpkg-deb")
        .arg("--info")
        .arg(&deb)
        .arg("conffiles"));
    for conf in [
        "/etc/cron.d/geodir",
        "/etc/geodir/cron.conf",
        "/etc/logrotate.d/geodir",
    ] {
        assert!(
            conffiles.lines().any(|l| l == conf),
            "{conf} is not a conffile:\n{conffiles}"
        );
    }

    // Installed into a throwaway root.
    let root = tmp.path().join("root");
    for d in ["var/lib/dpkg/updates", "var/lib/dpkg/info"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    ok(dpkg(&root).arg("-i").arg(&deb));
    let version = ok(Command::new(root.join("usr/bin/dirctl")).arg("--version"));
    assert!(
        version.starts_with("dirctl "),
        "dirctl --version said {version:?}"
    );
    ok(Command::new(root.join("usr/bin/geodird")).arg("--version"));
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(
        passwd.lines().any(|l| l.starts_with("geodir:")),
        "no geodir user in the root's /etc/passwd:\n{passwd}"
    );
    for d in ["var/lib/geodir", "var/log/geodir"] {
        assert!(root.join(d).is_dir(), "/{d} was not made");
    }
    for page in [
        "usr/share/man/man1/dirctl.1.gz",
        "usr/share/man/man1/dirctl-backup-create.1.gz",
        "usr/share/man/man8/geodird.8.gz",
    ] {
        let text = ok(Command::new("man")
            .arg("-l")
            .arg(root.join(page))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80"));
        assert!(
            text.contains("SYNOPSIS") && text.contains("--"),
            "man -l {page} showed:\n{text}"
        );
    }
    // systemd-analyze verify on an instance of the unit, against the root: the host's own
    // systemd units stand in for the systemd package (its targets), and MANPATH points its
    // man-page check at the root's pages.
    let units = root.join("lib/systemd/system");
    ok(Command::new("cp")
        .args(["-an", "/lib/systemd/system/."])
        .arg(&units));
    let (code, stdout, stderr, shown) = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("geodird@westus.service")
        .env("MANPATH", root.join("usr/share/man")));
    assert!(
        code == 0 && stderr.trim().is_empty(),
        "command: {shown}\nexit code: {code}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );

    // Remove keeps the configuration and the data; purge removes the configuration.
    std::fs::write(root.join("var/lib/geodir/kept"), "data").unwrap();
    std::fs::write(
        root.join("etc/geodir/westus.toml"),
        "datacenter = \"westus\"\n",
    )
    .unwrap();
    ok(dpkg(&root).args(["-r", "geodir"]));
    assert!(
        !root.join("usr/bin/dirctl").exists(),
        "dirctl is left after remove"
    );
    assert!(
        !root.join("usr/bin/geodird").exists(),
        "geodird is left after remove"
    );
    for kept in [
        "etc/geodir/cron.conf",
        "etc/geodir/westus.toml",
        "etc/cron.d/geodir",
        "var/lib/geodir/kept",
    ] {
        assert!(root.join(kept).exists(), "/{kept} is gone after remove");
    }
    ok(dpkg(&root).args(["-P", "geodir"]));
    for gone in ["etc/geodir", "etc/cron.d/geodir", "etc/logrotate.d/geodir"] {
        assert!(!root.join(gone).exists(), "/{gone} is left after purge");
    }
    assert!(
        root.join("var/lib/geodir/kept").exists(),
        "purge deleted the directory's data"
    );
}

/// The cron wrapper of the repo (the one the package installs).
fn geodir_cron(job: &str, conf: &Path) -> Command {
    let mut c = Command::new(repo().join("packaging/geodir-cron"));
    // An empty environment, as cron gives a job.
    c.env_clear().arg(job).arg(conf);
    c
}

struct CronSetup {
    conf: PathBuf,
    logs: PathBuf,
    locks: PathBuf,
    backups: PathBuf,
}

fn cron_setup(dir: &Path, cluster: &Path) -> CronSetup {
    let s = CronSetup {
        conf: dir.join("cron.conf"),
        logs: dir.join("log"),
        locks: dir.join("locks"),
        backups: dir.join("backups"),
    };
    std::fs::create_dir_all(&s.locks).unwrap();
    std::fs::write(
        &s.conf,
        format!(
            "GEODIR_CRON=yes\nGEODIR_CLUSTER={}\nGEODIR_BACKUPS={}\nGEODIR_LOG_DIR={}\nGEODIR_LOCK_DIR={}\nDIRCTL={}\n",
            cluster.display(),
            s.backups.display(),
            s.logs.display(),
            s.locks.display(),
            env!("CARGO_BIN_EXE_dirctl"),
        ),
    )
    .unwrap();
    s
}

fn log_of(s: &CronSetup, job: &str) -> String {
    std::fs::read_to_string(s.logs.join(format!("{job}.log"))).unwrap_or_default()
}

#[test]
fn cron_jobs_fail_clearly_on_a_missing_cluster_do_their_job_on_a_real_one_and_never_overlap() {
    let c = Cluster::new();
    let jobs = ["backup", "purge-expired", "scrub", "audit-anchor"];

    // A missing cluster: non-zero, and the log says why.
    let missing = cron_setup(&c.path("missing"), &c.path("no-such-cluster"));
    for job in jobs {
        let (code, stdout, stderr, shown) = run(&mut geodir_cron(job, &missing.conf));
        let log = log_of(&missing, job);
        assert!(
            code != 0 && log.contains("no-such-cluster") && log.contains(&format!("{job} failed")),
            "command: {shown}\nexit code: {code}\nstdout:\n{stdout}\nstderr:\n{stderr}\nlog:\n{log}"
        );
        assert!(
            stderr.contains("failed"),
            "cron would mail nothing: stderr {stderr:?}"
        );
    }

    // A real cluster: a user deleted 40 days ago, one deleted today.
    let old = (chrono::Utc::now() - chrono::Duration::days(40))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let gone = c.create_user("old@contoso.com");
    let (mut del, _) = c.command(&["user", "delete", "--tenant", "contoso", &gone]);
    ok(del.env("DIRCTL_NOW", &old));
    let recent = c.create_user("recent@contoso.com");
    c.ok(&["user", "delete", "--tenant", "contoso", &recent]);
    let real = cron_setup(&c.path("real"), &c.root);
    for job in jobs {
        let (code, stdout, stderr, shown) = run(&mut geodir_cron(job, &real.conf));
        let log = log_of(&real, job);
        assert!(
            code == 0 && log.contains(&format!("{job} done")),
            "command: {shown}\nexit code: {code}\nstdout:\n{stdout}\nstderr:\n{stderr}\nlog:\n{log}"
        );
    }
    let listed = c.ok(&[
        "backup",
        "list",
        "--dest",
        &real.backups.display().to_string(),
    ]);
    let backups = listed["backups"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        backups.len(),
        1,
        "backup list after the backup job: {listed}"
    );
    let backup_log = log_of(&real, "backup");
    assert!(
        backup_log.contains("is intact") && backup_log.contains("removed 0 backup"),
        "the backup job did not verify and prune; its log:\n{backup_log}"
    );
    let deleted = c.ok(&["deleted", "list", "--tenant", "contoso", "--type", "user"]);
    let ids: Vec<&str> = deleted["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert_eq!(ids, vec![recent.as_str()], "after purge-expired: {deleted}");
    // The hourly anchor: every partition's chain head signed into the control plane.
    let topology = std::fs::read_to_string(c.root.join("cluster.json")).unwrap();
    let anchored: serde_json::Value = serde_json::from_str(&topology).unwrap();
    assert_eq!(
        anchored["audit_anchors"].as_object().map(|a| a.len()),
        Some(4),
        "after audit-anchor, cluster.json: {topology}"
    );
    let audit = c.ok(&["audit", "list", "--by", "cron:purge-expired"]);
    assert!(
        audit.to_string().contains(&gone),
        "the purge is not audited as cron:purge-expired: {audit}"
    );

    // A second run while one holds the lock is refused, and says so: each job.
    for job in jobs {
        let lock = real.locks.join(format!("geodir-cron-{job}.lock"));
        let mut holder = Command::new("flock")
            .arg("-x")
            .arg(&lock)
            .arg("cat")
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Command::new("flock")
            .arg("-n")
            .arg(&lock)
            .arg("true")
            .status()
            .unwrap()
            .success()
        {
            assert!(
                Instant::now() < deadline,
                "flock never took {}",
                lock.display()
            );
        }
        let before = log_of(&real, job).len();
        let (code, stdout, stderr, shown) = run(&mut geodir_cron(job, &real.conf));
        drop(holder.stdin.take());
        holder.wait().unwrap();
        let log = log_of(&real, job)[before..].to_string();
        assert!(
            code != 0
                && log.contains("another run holds")
                && !log.contains(&format!("{job} start"))
                && stderr.contains("another run holds"),
            "command: {shown}\nexit code: {code}\nstdout:\n{stdout}\nstderr:\n{stderr}\nthis run's log:\n{log}"
        );
    }
    let listed = c.ok(&[
        "backup",
        "list",
        "--dest",
        &real.backups.display().to_string(),
    ]);
    assert_eq!(
        listed["backups"].as_array().map(Vec::len),
        Some(1),
        "the refused run made a backup: {listed}"
    );

    // Switched off (the package's default): nothing runs, exit 0.
    let off = cron_setup(&c.path("off"), &c.root);
    let text = std::fs::read_to_string(&off.conf).unwrap();
    std::fs::write(&off.conf, text.replace("GEODIR_CRON=yes", "GEODIR_CRON=no")).unwrap();
    ok(&mut geodir_cron("backup", &off.conf));
    assert!(
        log_of(&off, "backup").contains("skipped"),
        "{}",
        log_of(&off, "backup")
    );
    assert!(
        !off.backups.exists(),
        "a switched-off backup job made {}",
        off.backups.display()
    );
}

#[test]
fn bash_completion_loads_and_completes_a_subcommand_and_a_flag() {
    let tmp = tempfile::tempdir().unwrap();
    ok(util::dirctl()
        .args(["generate-assets", "--out"])
        .arg(tmp.path()));
    let script = tmp.path().join("completions/dirctl");
    let complete = |words: &[&str]| -> Vec<String> {
        // As bash calls a completion function: the words so far, the current one's index.
        let cmd = format!(
            "source '{}' || exit 9; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{}'; COMP_POINT=${{#COMP_LINE}}; _dirctl dirctl '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display(),
            words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" "),
            words.len() - 1,
            words.join(" "),
            words[words.len() - 1],
            words[words.len() - 2],
        );
        let out = ok(Command::new("bash")
            .args(["--norc", "--noprofile", "-c", &cmd])
            .env_clear()
            .env("PATH", "/usr/bin:/bin"));
        out.lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    };
    // Loads without a word on stderr.
    let (code, _, stderr, shown) = run(Command::new("bash")
        .args(["--norc", "--noprofile", "-c"])
        .arg(format!("source '{}'", script.display())));
    assert!(
        code == 0 && stderr.is_empty(),
        "{shown}: exit {code}, stderr {stderr:?}"
    );
    let subs = complete(&["dirctl", "ba"]);
    assert_eq!(subs, vec!["backup"], "completing `dirctl ba`");
    let flags = complete(&["dirctl", "backup", "create", "--de"]);
    assert_eq!(
        flags,
        vec!["--dest"],
        "completing `dirctl backup create --de`"
    );
    let hidden = complete(&["dirctl", "gen"]);
    assert!(hidden.is_empty(), "a hidden command is offered: {hidden:?}");
}

#[test]
fn geodird_check_config_accepts_the_example_and_names_a_bad_field() {
    let c = Cluster::new();
    let example = std::fs::read_to_string(repo().join("packaging/westus.toml")).unwrap();
    let conf = c.path("westus.toml");
    let write = |text: &str| std::fs::write(&conf, text).unwrap();
    write(&example.replace("/var/lib/geodir/cluster", &c.root.display().to_string()));
    let check = |extra: &[&str]| {
        run(Command::new(geodird())
            .arg("--config")
            .arg(&conf)
            .arg("--check-config")
            .args(extra)
            .env_remove("DIRCTL_CLUSTER")
            .env_remove("GEODIR_DATACENTER"))
    };
    let (code, stdout, stderr, shown) = check(&[]);
    assert!(
        code == 0 && stdout.contains("listen = \"127.0.0.1:7401\""),
        "command: {shown}\nexit code: {code}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // A flag over the file.
    let (code, stdout, stderr, shown) = check(&["--listen", "127.0.0.1:7999"]);
    assert!(
        code == 0 && stdout.contains("listen = \"127.0.0.1:7999\""),
        "command: {shown}\nexit code: {code}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for (bad, field) in [
        ("datacentre = \"westus\"", "datacentre"),
        ("listen = \"everywhere\"", "listen"),
        ("datacenter = \"mars\"", "datacenter"),
        ("rpc_timeout_ms = \"soon\"", "rpc_timeout_ms"),
    ] {
        let key = bad.split(' ').next().unwrap();
        let mut text: Vec<String> = example
            .replace("/var/lib/geodir/cluster", &c.root.display().to_string())
            .lines()
            .filter(|l| !l.starts_with(&format!("{key} ")))
            .map(str::to_string)
            .collect();
        text.push(bad.to_string());
        write(&text.join("\n"));
        let (code, stdout, stderr, shown) = check(&[]);
        assert!(
            code == 2 && stderr.contains(field),
            "with `{bad}`: command: {shown}\nexit code: {code}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
    }

    // The server runs from the file alone (free ports), and serves.
    let text = example
        .replace("/var/lib/geodir/cluster", &c.root.display().to_string())
        .replace("127.0.0.1:7401", "127.0.0.1:0")
        .replace("127.0.0.1:9401", "127.0.0.1:0");
    write(&text);
    let mut server = Command::new(geodird())
        .arg("--config")
        .arg(&conf)
        .env_remove("DIRCTL_CLUSTER")
        .env_remove("GEODIR_DATACENTER")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    use std::io::BufRead as _;
    std::io::BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let grpc = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("grpc="))
        .map(str::to_string);
    let status = grpc.as_ref().map(|g| {
        let (mut cmd, _) = c.command(&["status", "--output", "json"]);
        run(cmd.env_remove("DIRCTL_CLUSTER").env("DIRCTL_ENDPOINTS", g))
    });
    server.kill().unwrap();
    let out = server.wait_with_output().unwrap();
    let (code, stdout, stderr, shown) = status.unwrap_or_else(|| {
        panic!(
            "geodird --config did not start: {line:?}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        code == 0 && stdout.contains("westus"),
        "command: {shown}\nexit code: {code}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}
