//! `dirctl demo`: builds a cluster in a fresh folder and walks a person through
//! geodir's promises, running the real `dirctl` for every step and showing the command.

use std::collections::BTreeMap;
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
    /// What earlier steps found (ids, datacenters), by the name steps use for it.
    values: BTreeMap<String, String>,
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
    fn run(&self, env: &[(String, String)], args: &[String], expect_code: i32) -> Result<String> {
        let shown_env: String = env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
        println!("$ {shown_env}dirctl {}", args.join(" "));
        let out = Command::new(&self.exe)
            .args(args)
            .env("DIRCTL_CLUSTER", &self.root)
            .envs(env.iter().map(|(k, v)| (k, v)))
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

    fn json(&self, env: &[(String, String)], args: &[String]) -> Result<Value> {
        let mut a = args.to_vec();
        a.extend(["--output".to_string(), "json".to_string()]);
        let out = Command::new(&self.exe)
            .args(&a)
            .env("DIRCTL_CLUSTER", &self.root)
            .envs(env.iter().map(|(k, v)| (k, v)))
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

/// One step of the walk-through. Text and arguments may name a value found by an earlier
/// step as `{name}` (see `Demo::fill`).
enum Step {
    /// A numbered heading.
    Heading(&'static str),
    /// A line of explanation.
    Say(&'static str),
    /// `dirctl ARGS`, shown with its output; it must exit with `code`.
    Run(&'static [&'static str], i32),
    /// The same in the demo's session (DIRCTL_SESSION, DIRCTL_REGION={lagging}).
    InSession(&'static [&'static str], i32),
    /// `dirctl ARGS --output json` (in the session if `session`), not shown; the created
    /// object's id is kept as `{name}`.
    KeepId {
        name: &'static str,
        args: &'static [&'static str],
        session: bool,
    },
    /// Reads cluster.json: `{part}` (contoso's partition), `{primary}`, `{standby}` and
    /// `{lagging}` (the third datacenter) of that partition.
    LearnPlacement,
    /// Reads cluster.json: `{name}` becomes the partition's current sync standby or primary.
    LearnStandby(&'static str),
    LearnPrimary(&'static str),
    /// Moves `dc-{dc}` away (`away`) or back: the datacenter becomes unreachable or returns.
    MoveAway(&'static str),
    MoveBack(&'static str),
    /// Deletes the datacenter folder `dc-{dc}`.
    DeleteDc(&'static str),
}

use Step::*;

#[rustfmt::skip]
const SESSION_CREATE: &[&str] = &[
    "user", "create", "--tenant", "contoso", "--upn", "alan.turing@contoso.com",
    "--display-name", "Alan Turing",
];

/// The walk-through, in order (one step a line: kept as a table, not reflowed).
#[rustfmt::skip]
const STEPS: &[Step] = &[
    Heading("Create a cluster: 3 datacenters, 4 partitions, one replica of each partition in each datacenter"),
    Run(&["init", "--datacenters", "westus@37.4,-122.1,eastus@37.4,-79.4,westeurope@52.4,4.9", "--partitions", "4"], 0),
    Say("Primaries are spread over the datacenters; each partition's sync standby is the nearest other datacenter."),
    Heading("Create two tenants and bulk-load the fixtures (group commit: 1,000 objects per log entry and fsync)"),
    Run(&["tenant", "create", "contoso"], 0),
    Run(&["tenant", "create", "fabrikam"], 0),
    Run(&["import", "--tenant", "contoso", "{fixtures}/contoso.jsonl"], 0),
    Run(&["import", "--tenant", "fabrikam", "{fixtures}/fabrikam.jsonl"], 0),
    LearnPlacement,
    Heading("Status: every write is durable on the primary and its sync standby; the third datacenter lags"),
    Run(&["status"], 0),
    Say("Tenant contoso lives on partition {part}: primary {primary}, sync standby {standby}, {lagging} lags until synced."),
    Heading("A geo-durable write: acknowledged only once synced in two datacenters; it returns a replica token"),
    KeepId {
        name: "id",
        args: &["user", "create", "--tenant", "contoso", "--upn", "grace.hopper@contoso.com", "--display-name", "Grace Hopper"],
        session: false,
    },
    Run(&["user", "get", "--tenant", "contoso", "grace.hopper@contoso.com", "--region", "{standby}"], 0),
    Heading("Reads go to the nearest secondary: from {lagging}'s region the lagging replica answers, without the new user"),
    Run(&["user", "get", "--tenant", "contoso", "{id}", "--region", "{lagging}"], 3),
    Heading("A session reads its own writes: its write is shipped synchronously to the secondary it reads from"),
    KeepId { name: "s_id", args: SESSION_CREATE, session: true },
    Say("created alan.turing@contoso.com ({s_id}) in a session whose region is {lagging}"),
    InSession(&["user", "get", "--tenant", "contoso", "{s_id}"], 0),
    Heading("Sync brings every secondary level with its primary"),
    Run(&["sync"], 0),
    Run(&["user", "get", "--tenant", "contoso", "{id}", "--region", "{lagging}"], 0),
    Heading("Drain {lagging}: reads route around it and keep working"),
    Run(&["dc", "drain", "--yes", "{lagging}"], 0),
    Run(&["user", "get", "--tenant", "contoso", "{id}", "--region", "{lagging}"], 0),
    Run(&["dc", "undrain", "--yes", "{lagging}"], 0),
    Heading("The sync standby {standby} becomes unreachable: the primary re-designates another secondary, then acknowledges"),
    MoveAway("standby"),
    Say("(moved {root}/dc-{standby} away to make it unreachable)"),
    Run(&["user", "create", "--tenant", "contoso", "--upn", "barbara.liskov@contoso.com", "--display-name", "Barbara Liskov"], 0),
    LearnStandby("now_standby"),
    Say("partition {part}'s sync standby is now {now_standby}, recorded in cluster.json before the write was acknowledged"),
    Heading("No silent downgrade: with no secondary in another datacenter reachable, a write fails with exit 5 and nothing is applied"),
    MoveAway("now_standby"),
    Run(&["user", "create", "--tenant", "contoso", "--upn", "edsger.dijkstra@contoso.com", "--display-name", "Edsger Dijkstra"], 5),
    MoveBack("now_standby"),
    MoveBack("standby"),
    Run(&["user", "get", "--tenant", "contoso", "edsger.dijkstra@contoso.com", "--region", "{now_standby}"], 3),
    Heading("Planned failover of partition {part} to {now_standby}: the target is brought level, the term is raised, nothing is lost"),
    Run(&["failover", "--yes", "--partition", "{part}", "--to", "{now_standby}"], 0),
    Run(&["user", "get", "--tenant", "contoso", "grace.hopper@contoso.com", "--region", "{primary}"], 0),
    LearnPrimary("new_primary"),
    Heading("Disaster: the new primary's datacenter folder dc-{new_primary} is deleted"),
    DeleteDc("new_primary"),
    Say("(deleted {root}/dc-{new_primary})"),
    Run(&["user", "get", "--tenant", "contoso", "grace.hopper@contoso.com"], 0),
    Say("reads keep working; writes to the partition cannot commit without their primary:"),
    Run(&["user", "create", "--tenant", "contoso", "--upn", "katherine.johnson@contoso.com", "--display-name", "Katherine Johnson"], 5),
    Heading("Emergency failover: the sync standby, which holds every acknowledged write, is promoted"),
    Run(&["failover", "--yes", "--partition", "{part}", "--emergency"], 0),
    Run(&["user", "create", "--tenant", "contoso", "--upn", "katherine.johnson@contoso.com", "--display-name", "Katherine Johnson"], 0),
    Run(&["user", "get", "--tenant", "contoso", "alan.turing@contoso.com"], 0),
    Heading("Rebuild {new_primary}: fail its other primaries over, then seed fresh replicas from checkpoints plus the log"),
    Run(&["failover", "--all-from", "{new_primary}", "--emergency", "--yes"], 0),
    Run(&["dc", "rebuild", "{new_primary}", "--yes"], 0),
    Run(&["user", "get", "--tenant", "contoso", "katherine.johnson@contoso.com", "--region", "{new_primary}"], 0),
    Heading("The recycle bin: a deleted user is restored by ID with its attributes and memberships"),
    Run(&["user", "delete", "--tenant", "contoso", "{id}"], 0),
    Run(&["deleted", "list", "--tenant", "contoso", "--type", "user"], 0),
    Run(&["deleted", "restore", "--tenant", "contoso", "{id}"], 0),
    Run(&["user", "get", "--tenant", "contoso", "{id}"], 0),
    Heading("Access grants: groups count transitively, deny wins over allow; checks are reads served by secondaries"),
    KeepId { name: "inner", args: &["group", "create", "--tenant", "contoso", "--display-name", "Payroll clerks"], session: false },
    KeepId { name: "outer", args: &["group", "create", "--tenant", "contoso", "--display-name", "Finance"], session: false },
    Run(&["group", "add-member", "--tenant", "contoso", "{inner}", "{id}"], 0),
    Run(&["group", "add-member", "--tenant", "contoso", "{outer}", "{inner}"], 0),
    Run(&["access", "grant", "--tenant", "contoso", "--principal", "{outer}", "--resource", "payroll", "--allow"], 0),
    Run(&["access", "check", "--tenant", "contoso", "--user", "{id}", "--resource", "payroll"], 0),
    Run(&["access", "grant", "--tenant", "contoso", "--principal", "{id}", "--resource", "payroll", "--deny"], 0),
    Run(&["access", "check", "--tenant", "contoso", "--user", "{id}", "--resource", "payroll"], 0),
    Heading("A daily snapshot backup: every partition at a known (term, lsn), one zstd archive with checksums"),
    Run(&["backup", "create"], 0),
    Run(&["backup", "list"], 0),
    Run(&["backup", "verify", "{today}"], 0),
    Heading("The audit trail: one hash-chained record per operation, replicated like data"),
    Run(&["audit", "list", "--target", "{id}"], 0),
    Run(&["audit", "verify"], 0),
    Heading("Health and metrics"),
    Run(&["health"], 0),
    Run(&["metrics"], 0),
    Heading("Status at the end"),
    Run(&["status"], 0),
];

pub fn run(_g: &Global, a: DemoArgs) -> Result<()> {
    let fixtures = fixtures_dir(&a)?;
    let root = match a.dir.clone() {
        Some(d) => d,
        None => std::env::temp_dir().join(format!(
            "geodir-demo-{}",
            chrono::Utc::now().format("%Y%m%d-%H%M%S")
        )),
    };
    let root_s = root.display().to_string();
    let mut d = Demo {
        exe: std::env::current_exe()?,
        root: root.clone(),
        step: 0,
        values: BTreeMap::from([
            ("root".to_string(), root_s.clone()),
            ("fixtures".to_string(), fixtures.display().to_string()),
            (
                "session".to_string(),
                root.join("session.json").display().to_string(),
            ),
            (
                "today".to_string(),
                chrono::Utc::now().format("%Y-%m-%d").to_string(),
            ),
        ]),
    };
    println!("geodir demo: a directory replicated over three datacenters, in {root_s}");
    println!("(every step runs the real dirctl; set DIRCTL_CLUSTER={root_s} to try the commands yourself)");
    for step in STEPS {
        d.step(step)?;
    }
    println!("\nThe demo cluster stays in {root_s}; remove it when done.");
    Ok(())
}

impl Demo {
    /// `text` with each `{name}` replaced by the value an earlier step found.
    fn fill(&self, text: &str) -> Result<String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let close = rest[open..]
                .find('}')
                .map(|c| open + c)
                .ok_or_else(|| anyhow::anyhow!("demo text {text:?}: an unclosed {{"))?;
            let name = &rest[open + 1..close];
            let value = self.values.get(name).ok_or_else(|| {
                anyhow::anyhow!("demo text {text:?} names {{{name}}}, which no earlier step found")
            })?;
            out.push_str(&rest[..open]);
            out.push_str(value);
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn fill_all(&self, args: &[&str]) -> Result<Vec<String>> {
        args.iter().map(|a| self.fill(a)).collect()
    }

    fn session_env(&self) -> Result<Vec<(String, String)>> {
        Ok(vec![
            ("DIRCTL_SESSION".into(), self.fill("{session}")?),
            ("DIRCTL_REGION".into(), self.fill("{lagging}")?),
        ])
    }

    fn keep(&mut self, name: &str, value: impl Into<String>) {
        self.values.insert(name.to_string(), value.into());
    }

    fn dc_dir(&self, var: &str) -> Result<PathBuf> {
        let dc = self.fill(&format!("{{{var}}}"))?;
        Ok(engine::layout::datacenter_path(&self.root, &dc))
    }

    /// Carries out one step.
    fn step(&mut self, step: &Step) -> Result<()> {
        match step {
            Heading(text) => {
                let text = self.fill(text)?;
                self.heading(&text);
            }
            Say(text) => self.say(&self.fill(text)?),
            Run(args, code) => {
                self.run(&[], &self.fill_all(args)?, *code)?;
            }
            InSession(args, code) => {
                self.run(&self.session_env()?, &self.fill_all(args)?, *code)?;
            }
            KeepId {
                name,
                args,
                session,
            } => {
                let env = if *session {
                    self.session_env()?
                } else {
                    Vec::new()
                };
                let created = self.json(&env, &self.fill_all(args)?)?;
                let id = created["object"]["id"].as_str().ok_or_else(|| {
                    anyhow::anyhow!("dirctl {} returned no object id: {created}", args.join(" "))
                })?;
                self.keep(name, id);
            }
            LearnPlacement => {
                let t = self.topology()?;
                let part = t.tenant("contoso")?.partition;
                let p = t.partition(part)?.clone();
                let lagging = t
                    .datacenters
                    .iter()
                    .find(|x| x.name != p.primary && x.name != p.sync_standby)
                    .map(|x| x.name.clone())
                    .ok_or_else(|| anyhow::anyhow!("the demo cluster has no third datacenter"))?;
                self.keep("part", part.to_string());
                self.keep("primary", p.primary);
                self.keep("standby", p.sync_standby);
                self.keep("lagging", lagging);
            }
            LearnStandby(name) | LearnPrimary(name) => {
                let part: u32 = self.fill("{part}")?.parse()?;
                let t = self.topology()?;
                let p = t.partition(part)?;
                let dc = match step {
                    LearnStandby(_) => p.sync_standby.clone(),
                    _ => p.primary.clone(),
                };
                self.keep(name, dc);
            }
            MoveAway(var) => {
                let dir = self.dc_dir(var)?;
                rename(&dir, &dir.with_extension("unreachable"))?;
            }
            MoveBack(var) => {
                let dir = self.dc_dir(var)?;
                rename(&dir.with_extension("unreachable"), &dir)?;
            }
            DeleteDc(var) => {
                let dir = self.dc_dir(var)?;
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("delete {}", dir.display()))?;
            }
        }
        Ok(())
    }
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to)
        .with_context(|| format!("rename {} to {}", from.display(), to.display()))
}
