//! `dirctl demo`: builds a cluster in a fresh folder and walks a person through
//! geodir's promises, running the real `dirctl` for every step and showing the command.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};
use engine::topology::{ControlPlane, FileControlPlane, Topology};
use serde_json::Value;

use crate::opt::{DemoArgs, Global};

struct Demo {
    exe: PathBuf,
    root: PathBuf,
    step: usize,
}

impl Demo {
    fn heading(&mut self, text: &str) {
        self.step += 1;
        println!("\n== {}. {text}", self.step);
    }

    fn say(&self, text: &str) {
        println!("   {text}");
    }

    /// Runs `dirctl ARGS` with DIRCTL_CLUSTER set, shows it, and checks its exit code.
    fn run(&self, env: &[(&str, &str)], args: &[&str], expect_code: i32) -> Result<String> {
        let shown_env: String = env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
        println!("$ {shown_env}dirctl {}", args.join(" "));
        let out = Command::new(&self.exe)
            .args(args)
            .env("DIRCTL_CLUSTER", &self.root)
            .envs(env.iter().copied())
            .output()
            .with_context(|| format!("run dirctl {}", args.join(" ")))?;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr);
        for l in stdout.lines().take(14) {
            println!("  {l}");
        }
        if stdout.lines().count() > 14 {
            println!("  ... ({} more lines)", stdout.lines().count() - 14);
        }
        for l in stderr.lines() {
            println!("  {l}");
        }
        let code = out.status.code().unwrap_or(-1);
        if code != 0 {
            println!("  (exit code {code})");
        }
        if code != expect_code {
            bail!(
                "demo step `dirctl {}` exited {code}, expected {expect_code}",
                args.join(" ")
            );
        }
        Ok(stdout)
    }

    fn json(&self, env: &[(&str, &str)], args: &[&str]) -> Result<Value> {
        let mut a = args.to_vec();
        a.extend(["--output", "json"]);
        let out = Command::new(&self.exe)
            .args(&a)
            .env("DIRCTL_CLUSTER", &self.root)
            .envs(env.iter().copied())
            .output()?;
        if !out.status.success() {
            bail!(
                "dirctl {} failed: {}",
                a.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    fn topology(&self) -> Result<Topology> {
        Ok(FileControlPlane::open(&self.root)?.load()?)
    }
}

fn fixtures_dir(a: &DemoArgs) -> Result<PathBuf> {
    let candidates = [
        a.fixtures.clone(),
        Some(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures"
        ))),
        Some(PathBuf::from("fixtures")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.join("contoso.jsonl").is_file())
        .ok_or_else(|| {
            engine::Error::NotFound(
                "fixtures not found: pass --fixtures DIR (the repository's fixtures/ folder)"
                    .into(),
            )
            .into()
        })
}

pub fn run(_g: &Global, a: DemoArgs) -> Result<()> {
    let fixtures = fixtures_dir(&a)?;
    let root = match a.dir.clone() {
        Some(d) => d,
        None => std::env::temp_dir().join(format!(
            "geodir-demo-{}",
            chrono::Utc::now().format("%Y%m%d-%H%M%S")
        )),
    };
    let mut d = Demo {
        exe: std::env::current_exe()?,
        root: root.clone(),
        step: 0,
    };
    let root_s = root.display().to_string();
    println!("geodir demo: a directory replicated over three datacenters, in {root_s}");
    println!("(every step runs the real dirctl; set DIRCTL_CLUSTER={root_s} to try the commands yourself)");

    d.heading("Create a cluster: 3 datacenters, 4 partitions, one replica of each partition in each datacenter");
    d.run(
        &[],
        &[
            "init",
            "--datacenters",
            "westus@37.4,-122.1,eastus@37.4,-79.4,westeurope@52.4,4.9",
            "--partitions",
            "4",
        ],
        0,
    )?;
    d.say("Primaries are spread over the datacenters; each partition's sync standby is the nearest other datacenter.");

    d.heading("Create two tenants and bulk-load the fixtures (group commit: 1,000 objects per log entry and fsync)");
    d.run(&[], &["tenant", "create", "contoso"], 0)?;
    d.run(&[], &["tenant", "create", "fabrikam"], 0)?;
    let contoso = fixtures.join("contoso.jsonl").display().to_string();
    let fabrikam = fixtures.join("fabrikam.jsonl").display().to_string();
    d.run(&[], &["import", "--tenant", "contoso", &contoso], 0)?;
    d.run(&[], &["import", "--tenant", "fabrikam", &fabrikam], 0)?;

    let t = d.topology()?;
    let part = t.tenant("contoso")?.partition;
    let p = t.partition(part)?.clone();
    let lagging = t
        .datacenters
        .iter()
        .find(|x| x.name != p.primary && x.name != p.sync_standby)
        .map(|x| x.name.clone())
        .unwrap_or_default();
    d.heading("Status: every write is durable on the primary and its sync standby; the third datacenter lags");
    d.run(&[], &["status"], 0)?;
    d.say(&format!("Tenant contoso lives on partition {part}: primary {}, sync standby {}, {lagging} lags until synced.", p.primary, p.sync_standby));

    d.heading("A geo-durable write: acknowledged only once synced in two datacenters; it returns a replica token");
    let created = d.json(
        &[],
        &[
            "user",
            "create",
            "--tenant",
            "contoso",
            "--upn",
            "grace.hopper@contoso.com",
            "--display-name",
            "Grace Hopper",
        ],
    )?;
    let id = created["object"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    d.run(
        &[],
        &[
            "user",
            "get",
            "--tenant",
            "contoso",
            "grace.hopper@contoso.com",
            "--region",
            &p.sync_standby,
        ],
        0,
    )?;

    d.heading(&format!("Reads go to the nearest secondary: from {lagging}'s region the lagging replica answers, without the new user"));
    d.run(
        &[],
        &[
            "user", "get", "--tenant", "contoso", &id, "--region", &lagging,
        ],
        3,
    )?;

    d.heading("A session reads its own writes: its write is shipped synchronously to the secondary it reads from");
    let session = root.join("session.json").display().to_string();
    let env = [
        ("DIRCTL_SESSION", session.as_str()),
        ("DIRCTL_REGION", lagging.as_str()),
    ];
    let s_created = d.json(
        &env,
        &[
            "user",
            "create",
            "--tenant",
            "contoso",
            "--upn",
            "alan.turing@contoso.com",
            "--display-name",
            "Alan Turing",
        ],
    )?;
    let s_id = s_created["object"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    d.say(&format!(
        "created alan.turing@contoso.com ({s_id}) in a session whose region is {lagging}"
    ));
    d.run(&env, &["user", "get", "--tenant", "contoso", &s_id], 0)?;

    d.heading("Sync brings every secondary level with its primary");
    d.run(&[], &["sync"], 0)?;
    d.run(
        &[],
        &[
            "user", "get", "--tenant", "contoso", &id, "--region", &lagging,
        ],
        0,
    )?;

    d.heading(&format!(
        "Drain {lagging}: reads route around it and keep working"
    ));
    d.run(&[], &["dc", "drain", "--yes", &lagging], 0)?;
    d.run(
        &[],
        &[
            "user", "get", "--tenant", "contoso", &id, "--region", &lagging,
        ],
        0,
    )?;
    d.run(&[], &["dc", "undrain", "--yes", &lagging], 0)?;

    d.heading(&format!("The sync standby {} becomes unreachable: the primary re-designates another secondary, then acknowledges", p.sync_standby));
    let standby_dir = root.join(format!("dc-{}", p.sync_standby));
    let standby_away = root.join(format!("dc-{}.unreachable", p.sync_standby));
    rename(&standby_dir, &standby_away)?;
    d.say(&format!(
        "(moved {} away to make it unreachable)",
        standby_dir.display()
    ));
    d.run(
        &[],
        &[
            "user",
            "create",
            "--tenant",
            "contoso",
            "--upn",
            "barbara.liskov@contoso.com",
            "--display-name",
            "Barbara Liskov",
        ],
        0,
    )?;
    let now_standby = d.topology()?.partition(part)?.sync_standby.clone();
    d.say(&format!("partition {part}'s sync standby is now {now_standby}, recorded in cluster.json before the write was acknowledged"));

    d.heading("No silent downgrade: with no secondary in another datacenter reachable, a write fails with exit 5 and nothing is applied");
    let other_dir = root.join(format!("dc-{now_standby}"));
    let other_away = root.join(format!("dc-{now_standby}.unreachable"));
    rename(&other_dir, &other_away)?;
    d.run(
        &[],
        &[
            "user",
            "create",
            "--tenant",
            "contoso",
            "--upn",
            "edsger.dijkstra@contoso.com",
            "--display-name",
            "Edsger Dijkstra",
        ],
        5,
    )?;
    rename(&other_away, &other_dir)?;
    rename(&standby_away, &standby_dir)?;
    d.run(
        &[],
        &[
            "user",
            "get",
            "--tenant",
            "contoso",
            "edsger.dijkstra@contoso.com",
            "--region",
            &now_standby,
        ],
        3,
    )?;

    d.heading(&format!("Planned failover of partition {part} to {now_standby}: the target is brought level, the term is raised, nothing is lost"));
    d.run(
        &[],
        &[
            "failover",
            "--yes",
            "--partition",
            &part.to_string(),
            "--to",
            &now_standby,
        ],
        0,
    )?;
    d.run(
        &[],
        &[
            "user",
            "get",
            "--tenant",
            "contoso",
            "grace.hopper@contoso.com",
            "--region",
            &p.primary,
        ],
        0,
    )?;

    let primary = d.topology()?.partition(part)?.primary.clone();
    d.heading(&format!(
        "Disaster: the new primary's datacenter folder dc-{primary} is deleted"
    ));
    std::fs::remove_dir_all(root.join(format!("dc-{primary}")))
        .with_context(|| format!("delete dc-{primary}"))?;
    d.say(&format!(
        "(deleted {})",
        root.join(format!("dc-{primary}")).display()
    ));
    d.run(
        &[],
        &[
            "user",
            "get",
            "--tenant",
            "contoso",
            "grace.hopper@contoso.com",
        ],
        0,
    )?;
    d.say("reads keep working; writes to the partition cannot commit without their primary:");
    d.run(
        &[],
        &[
            "user",
            "create",
            "--tenant",
            "contoso",
            "--upn",
            "katherine.johnson@contoso.com",
            "--display-name",
            "Katherine Johnson",
        ],
        5,
    )?;

    d.heading(
        "Emergency failover: the sync standby, which holds every acknowledged write, is promoted",
    );
    d.run(
        &[],
        &[
            "failover",
            "--yes",
            "--partition",
            &part.to_string(),
            "--emergency",
        ],
        0,
    )?;
    d.run(
        &[],
        &[
            "user",
            "create",
            "--tenant",
            "contoso",
            "--upn",
            "katherine.johnson@contoso.com",
            "--display-name",
            "Katherine Johnson",
        ],
        0,
    )?;
    d.run(
        &[],
        &[
            "user",
            "get",
            "--tenant",
            "contoso",
            "alan.turing@contoso.com",
        ],
        0,
    )?;

    d.heading(&format!("Rebuild {primary}: fail its other primaries over, then seed fresh replicas from checkpoints plus the log"));
    d.run(
        &[],
        &["failover", "--all-from", &primary, "--emergency", "--yes"],
        0,
    )?;
    d.run(&[], &["dc", "rebuild", &primary, "--yes"], 0)?;
    d.run(
        &[],
        &[
            "user",
            "get",
            "--tenant",
            "contoso",
            "katherine.johnson@contoso.com",
            "--region",
            &primary,
        ],
        0,
    )?;

    d.heading(
        "The recycle bin: a deleted user is restored by ID with its attributes and memberships",
    );
    d.run(&[], &["user", "delete", "--tenant", "contoso", &id], 0)?;
    d.run(
        &[],
        &["deleted", "list", "--tenant", "contoso", "--type", "user"],
        0,
    )?;
    d.run(&[], &["deleted", "restore", "--tenant", "contoso", &id], 0)?;
    d.run(&[], &["user", "get", "--tenant", "contoso", &id], 0)?;

    d.heading("Access grants: groups count transitively, deny wins over allow; checks are reads served by secondaries");
    let inner = d.json(
        &[],
        &[
            "group",
            "create",
            "--tenant",
            "contoso",
            "--display-name",
            "Payroll clerks",
        ],
    )?;
    let outer = d.json(
        &[],
        &[
            "group",
            "create",
            "--tenant",
            "contoso",
            "--display-name",
            "Finance",
        ],
    )?;
    let (inner, outer) = (
        inner["object"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        outer["object"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    );
    d.run(
        &[],
        &["group", "add-member", "--tenant", "contoso", &inner, &id],
        0,
    )?;
    d.run(
        &[],
        &["group", "add-member", "--tenant", "contoso", &outer, &inner],
        0,
    )?;
    d.run(
        &[],
        &[
            "access",
            "grant",
            "--tenant",
            "contoso",
            "--principal",
            &outer,
            "--resource",
            "payroll",
            "--allow",
        ],
        0,
    )?;
    d.run(
        &[],
        &[
            "access",
            "check",
            "--tenant",
            "contoso",
            "--user",
            &id,
            "--resource",
            "payroll",
        ],
        0,
    )?;
    d.run(
        &[],
        &[
            "access",
            "grant",
            "--tenant",
            "contoso",
            "--principal",
            &id,
            "--resource",
            "payroll",
            "--deny",
        ],
        0,
    )?;
    d.run(
        &[],
        &[
            "access",
            "check",
            "--tenant",
            "contoso",
            "--user",
            &id,
            "--resource",
            "payroll",
        ],
        0,
    )?;

    d.heading("A daily snapshot backup: every partition at a known (term, lsn), one zstd archive with checksums");
    d.run(&[], &["backup", "create"], 0)?;
    d.run(&[], &["backup", "list"], 0)?;
    let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
    d.run(&[], &["backup", "verify", &day], 0)?;

    d.heading("The audit trail: one hash-chained record per operation, replicated like data");
    d.run(&[], &["audit", "list", "--target", &id], 0)?;
    d.run(&[], &["audit", "verify"], 0)?;

    d.heading("Health and metrics");
    d.run(&[], &["health"], 0)?;
    d.run(&[], &["metrics"], 0)?;

    d.heading("Status at the end");
    d.run(&[], &["status"], 0)?;
    println!("\nThe demo cluster stays in {root_s}; remove it when done.");
    Ok(())
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to)
        .with_context(|| format!("rename {} to {}", from.display(), to.display()))
}
