//! `dirctl backup …`, `dirctl health` and `dirctl metrics`: promise 8 (backups) and the
//! backup age of promise 10.

use engine::operators::{Job, Need, Role};
use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _, Result};
use engine::request::{Reply, Request};
use engine::Error;
use serde_json::json;

use crate::context::{self, cluster_root, Ctx};
use crate::opt::{BackupCmd, BackupsDir, Global, Output};
use crate::output;

/// Over this age the newest good backup puts promise 8 at risk.
const MAX_BACKUP_AGE_HOURS: i64 = 26;

/// The backups folder, which must exist (listing, verifying or pruning a folder that is not
/// there is a mistyped path, not an empty folder).
fn existing_dest(g: &Global, d: &BackupsDir) -> Result<PathBuf> {
    let dir = dest(g, d)?;
    if !dir.is_dir() {
        return Err(Error::NotFound(format!(
            "the backups folder {} does not exist (no backup was taken there yet?)",
            dir.display()
        ))
        .into());
    }
    Ok(dir)
}

fn dest(g: &Global, d: &BackupsDir) -> Result<PathBuf> {
    match &d.dest {
        Some(p) => Ok(p.clone()),
        None => Ok(cluster_root(g)
            .context("no backups folder given: pass --dest DIR, or --cluster DIR to use <cluster root>/backups")?
            .join("backups")),
    }
}

pub fn run(g: &Global, c: BackupCmd) -> Result<()> {
    match c {
        BackupCmd::Create { dir, force } => {
            let r = create(g, &dir, force);
            audit_after(g, "backup.create", Vec::new(), &r);
            r
        }
        BackupCmd::List { dir } => list(g, &dir),
        BackupCmd::Verify { id, dir } => verify(g, &dir, &id),
        BackupCmd::Prune {
            keep_daily,
            keep_weekly,
            dir,
        } => prune(g, &dir, keep_daily, keep_weekly),
        BackupCmd::Restore {
            id,
            to,
            in_place,
            yes,
            dir,
        } => {
            let r = restore(g, &dir, &id, to.clone(), in_place, yes);
            if in_place {
                let mut targets = vec![id];
                targets.extend(crate::operator::approved_request());
                audit_after(g, "backup.restore-in-place", targets, &r);
            }
            r
        }
        BackupCmd::RestoreObject {
            object_id,
            from,
            tenant,
            dir,
        } => restore_object(g, &dir, &object_id, &from, &tenant),
    }
}

/// `backup verify`: an archive, by path or by ID, is intact and is the backup it says.
fn verify(g: &Global, dir: &BackupsDir, id: &str) -> Result<()> {
    let d = dest(g, dir)?;
    let archive = ::backup::archive_path(&d, id);
    // A path to an archive, or the ID of one in the backups folder.
    let by_path = archive == Path::new(id);
    if !archive.exists() {
        if !by_path {
            existing_dest(g, dir)?;
        }
        return Err(Error::NotFound(format!(
            "no backup {id} at {}: `dirctl backup list` shows the ones there",
            archive.display()
        ))
        .into());
    }
    let m = ::backup::verify(&archive).with_context(|| {
        format!("verify backup {id}; take a new one with `dirctl backup create --force`")
    })?;
    if !by_path && m.id != id {
        return Err(Error::Corrupt(format!(
            "{} holds backup {}, not {id}: the file was renamed; it is not the backup of that day",
            archive.display(),
            m.id
        ))
        .into());
    }
    output::emit(
        g.output,
        &json!({"backup": m.id, "verified": true, "files": m.files.len(), "manifest": manifest_json(&m)}),
        || {
            format!(
                "backup {} is intact: {} files, every SHA-256 matches\n",
                m.id,
                m.files.len()
            )
        },
    )
}

/// `backup prune`: keeps the newest daily and weekly backups and removes the rest.
/// On a cluster with operators, whether the caller may do `what`. Asked only of a cluster
/// that opens: restoring a lost cluster from its backups needs none (its files, and the
/// backups', are the boundary then).
fn require_if_open(g: &Global, need: Need, what: &str) -> Result<()> {
    match Ctx::open_unchecked(g) {
        Ok(mut ctx) => ctx.require(&need, what),
        Err(_) => Ok(()),
    }
}

fn prune(g: &Global, dir: &BackupsDir, keep_daily: usize, keep_weekly: usize) -> Result<()> {
    require_if_open(g, Need::Job(Job::Backup), "backup prune")?;
    let d = existing_dest(g, dir)?;
    let pruned = ::backup::prune(
        &d,
        ::backup::prune::Keep {
            daily: keep_daily,
            weekly: keep_weekly,
        },
    )
    .with_context(|| format!("prune backups in {}", d.display()));
    let targets = pruned
        .as_ref()
        .map(|r| r.removed.clone())
        .unwrap_or_default();
    // Corrupt backups found: the pruning stands, and the command fails naming them.
    let outcome = pruned.as_ref().map_err(|e| anyhow!("{e:#}")).and_then(|p| {
        if p.corrupt.is_empty() {
            return Ok(());
        }
        let list: Vec<_> = p
            .corrupt
            .iter()
            .map(|(id, why)| format!("{id} ({why})"))
            .collect();
        Err(anyhow!(
            "corrupt backup(s) kept for you to look at and not counted as kept, so older intact ones stay: {}; `dirctl backup verify ID` checks one, and removing the file is up to you",
            list.join("; ")
        ))
    });
    audit_after(g, "backup.prune", targets, &outcome);
    let pruned = pruned?;
    output::emit(g.output, &json!(pruned), || {
        let removed = &pruned.removed;
        format!(
            "removed {} backup(s){}\n",
            removed.len(),
            if removed.is_empty() {
                String::new()
            } else {
                format!(": {}", removed.join(", "))
            }
        )
    })?;
    outcome
}

fn create(g: &Global, dir: &BackupsDir, force: bool) -> Result<()> {
    let d = dest(g, dir)?;
    let mut ctx = Ctx::open(g)?;
    ctx.require(&Need::Job(Job::Backup), "backup create")?;
    let now = context::clock()?.now();
    let bar = if output::stdout_is_terminal() {
        indicatif::ProgressBar::new(0)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let created = ::backup::create(
        ctx.checkpoints(),
        &::backup::CreateOptions {
            dest: d.clone(),
            force,
            now,
            sign: crate::audit::signer(g),
        },
        &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    )
    .with_context(|| format!("back up the cluster into {}", d.display()))?;
    bar.finish_and_clear();
    match created {
        ::backup::Created::AlreadyToday(id, path) => output::emit(
            g.output,
            &json!({"backup": id, "path": path, "created": false}),
            || {
                format!("today's backup {id} already exists ({}); nothing done (pass --force to replace it)\n", path.display())
            },
        ),
        ::backup::Created::New(side, path) => {
            let m = &side.manifest;
            output::emit(
                g.output,
                &json!({"backup": m.id, "path": path, "created": true, "bytes": side.archive_bytes, "manifest": manifest_json(m)}),
                || {
                    let headers = ["partition", "term", "lsn", "from", "objects"];
                    let table = output::table_by(&headers, &m.partitions, |p| {
                        let objects = p.counts.get("objects").copied().unwrap_or(0);
                        output::row(&[&p.id, &p.term, &p.lsn, &p.source, &objects])
                    });
                    format!(
                        "backup {} written to {} ({} bytes)\n{}",
                        m.id,
                        path.display(),
                        side.archive_bytes,
                        table
                    )
                },
            )
        }
    }
}

fn list(g: &Global, dir: &BackupsDir) -> Result<()> {
    let d = existing_dest(g, dir)?;
    let all = ::backup::list(&d).with_context(|| format!("list backups in {}", d.display()))?;
    output::emit(g.output, &json!({"backups": all}), || {
        output::table_by(
            &["id", "created", "bytes", "positions", "state"],
            &all,
            |b| {
                let positions: Vec<_> = b
                    .partitions
                    .iter()
                    .map(|p| format!("p{}@{}", p.id, p.lsn))
                    .collect();
                let state = match &b.problem {
                    _ if b.good => "good".to_string(),
                    problem => format!("bad: {}", problem.clone().unwrap_or_default()),
                };
                vec![
                    b.id.clone(),
                    b.created_at.clone().unwrap_or_default(),
                    b.bytes.to_string(),
                    positions.join(" "),
                    state,
                ]
            },
        )
    })
}

fn confirm_in_place(root: &Path) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(engine::Error::Invalid(
            "restore --in-place replaces every replica of the cluster; pass --yes to confirm (stdin is not a terminal)".into(),
        )
        .into());
    }
    eprintln!(
        "This replaces every replica of {} with the backup's. Type yes to go on:",
        root.display()
    );
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if line.trim() != "yes" {
        return Err(engine::Error::Invalid(
            "restore --in-place not confirmed; nothing was changed".into(),
        )
        .into());
    }
    Ok(())
}

fn restore(
    g: &Global,
    dir: &BackupsDir,
    id: &str,
    to: Option<PathBuf>,
    in_place: bool,
    yes: bool,
) -> Result<()> {
    let archive = if id.contains('/') || id.ends_with(".tar.zst") {
        PathBuf::from(id)
    } else {
        ::backup::archive_path(&dest(g, dir)?, id)
    };
    let limits = ::backup::Limits::default();
    let done = if in_place {
        let mut ctx = Ctx::open(g)?;
        ctx.require(&Need::Elevated(Role::Operator), "backup restore --in-place")?;
        if !yes {
            confirm_in_place(ctx.cluster_mut()?.root())?;
        }
        if let Some(approval) =
            crate::operator::two_person(g, &mut ctx, "backup restore --in-place")?
        {
            eprintln!("note: {approval}");
        }
        ::backup::restore_in_place(ctx.cluster_mut()?, &archive, limits)
            .with_context(|| format!("restore backup {id} in place; the cluster was left as it was unless the message says otherwise"))?
    } else {
        let to = to.ok_or_else(|| anyhow!("restore needs --to NEWDIR or --in-place"))?;
        require_if_open(g, Need::Elevated(Role::Operator), "backup restore --to")?;
        ::backup::restore_to(&archive, &to, limits).with_context(|| {
            format!(
                "restore backup {id} into {}; {} was left as it was",
                to.display(),
                to.display()
            )
        })?
    };
    output::emit(g.output, &json!({"restored": done}), || {
        format!(
            "restored backup {} into {} (cluster {})\n",
            done.backup,
            done.root.display(),
            done.cluster_id
        )
    })
}

fn restore_object(
    g: &Global,
    dir: &BackupsDir,
    object_id: &str,
    from: &str,
    tenant: &str,
) -> Result<()> {
    let d = dest(g, dir)?;
    let archive = ::backup::archive_path(&d, from);
    let mut ctx = Ctx::open(g)?;
    let scratch = archive
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| d.clone());
    let x = ::backup::extract(&archive, &scratch, ::backup::Limits::default())
        .with_context(|| format!("read backup {from}"))?;
    let placed = x.topology.tenants.get(tenant).ok_or_else(|| {
        engine::Error::NotFound(format!("backup {from} holds no tenant {tenant}"))
    })?;
    let checkpoint = x.partition_dir(placed.partition);
    let (tid, _) = ctx.tenant_partition(tenant)?;
    if tid != placed.id {
        return Err(engine::Error::Conflict(format!(
            "tenant {tenant} has id {tid} here but {} in backup {from}; restore the whole cluster instead",
            placed.id
        ))
        .into());
    }
    let r = ctx
        .execute(Request::RestoreFromBackup {
            tenant: tenant.to_string(),
            backup: from.to_string(),
            checkpoint,
            id: object_id.to_string(),
        })
        .with_context(|| {
            format!("restore object {object_id} of tenant {tenant} from backup {from}")
        })?;
    let token = crate::reply::token(r.token)?;
    let Reply::RestoredFromBackup {
        object: obj,
        skipped,
    } = r.reply
    else {
        anyhow::bail!(
            "the directory answered {:?} to a restore from backup",
            r.reply
        );
    };
    output::emit(
        g.output,
        &json!({"object": obj, "skippedMemberships": skipped, "backup": from, "token": token}),
        || {
            let mut s = format!("restored {object_id} from backup {from}\n");
            for k in &skipped {
                s.push_str(&format!(
                    "not restored (the other side no longer exists): {k}\n"
                ));
            }
            s
        },
    )
}

/// The newest intact backup's id and age in seconds.
type Age = Option<(String, i64)>;

/// Seconds since the newest good backup (with `hash`, one whose bytes still match their
/// recorded SHA-256: it is read whole), or None when there is none; and the newer ones found
/// corrupt.
fn backup_age(g: &Global, d: &BackupsDir, hash: bool) -> Result<(PathBuf, Age, ::backup::Corrupt)> {
    let dir = dest(g, d)?;
    let now = context::clock()?.now();
    let (newest, corrupt) = ::backup::newest_good(&dir, hash)?;
    Ok((
        dir,
        newest.and_then(|b| b.created().map(|t| (b.id.clone(), (now - t).num_seconds()))),
        corrupt,
    ))
}

pub fn health(g: &Global, h: &crate::opt::HealthArgs) -> Result<()> {
    let d = &h.backups;
    let mut problems = Vec::new();
    let mut fine = Vec::new();
    let mut ctx = Ctx::open(g)?;
    let rows = ctx.status()?;
    if g.endpoints.is_some() {
        let lagging = lag_problems(&rows, h.max_lag_ms);
        if lagging.is_empty() {
            fine.push(format!("no secondary lags more than {} ms", h.max_lag_ms));
        }
        problems.extend(lagging);
    }
    for r in &rows {
        if r.health != "ok" && r.health != "drained" {
            problems.push(format!(
                "replica dc-{}/p{} is {}",
                r.datacenter, r.partition, r.health
            ));
        }
    }
    problems.extend(partition_problems(&rows));
    if problems.is_empty() {
        fine.push("every replica answers its probe".to_string());
    }
    // The server mode on etcd: the control plane itself, and a leader for every partition.
    if let (Some(spec), Some(_)) = (&g.control_plane, &g.endpoints) {
        let address = server::etcd::EtcdAddress::parse(spec)?;
        let found =
            server::etcd::problems(&address, context::runtime()?, server::etcd::DEFAULT_TIMEOUT);
        if found.is_empty() {
            fine.push(format!("every partition has a leader in {address}"));
        }
        problems.extend(found);
    }
    let (dir, age, corrupt) = backup_age(g, d, true)?;
    for (id, why) in corrupt {
        problems.push(format!(
            "backup {id} is corrupt ({why}); it cannot be restored"
        ));
    }
    match age {
        None => problems.push(format!("no good backup in {}; run `dirctl backup create`", dir.display())),
        Some((id, secs)) if secs < -3600 => problems.push(format!(
            "the newest good backup {id} is dated {} hours in the future: is this host's clock (or the one that took it) wrong?",
            -secs / 3600
        )),
        Some((id, secs)) if secs > MAX_BACKUP_AGE_HOURS * 3600 => problems.push(format!(
            "the newest good backup {id} is {} hours old (over {MAX_BACKUP_AGE_HOURS}); run `dirctl backup create` and check the cron job",
            secs / 3600
        )),
        Some((id, secs)) => fine.push(format!("newest good backup {id} is {} hours old", secs / 3600)),
    }
    if g.output == Output::Json {
        output::json(&json!({"healthy": problems.is_empty(), "problems": problems, "ok": fine}))?;
    } else {
        for f in &fine {
            output::print(&format!("ok: {f}\n"))?;
        }
        for p in &problems {
            output::print(&format!("warning: {p}\n"))?;
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(
            "{} promise(s) at risk: {}",
            problems.len(),
            problems.join("; ")
        ))
    }
}

/// Secondaries whose oldest missed entry is older than `max_ms` (the server mode, where
/// they follow continuously).
fn lag_problems(rows: &[engine::cluster::ReplicaStatus], max_ms: u64) -> Vec<String> {
    rows.iter()
        .filter_map(|r| match r.lag_ms {
            Some(ms) if ms > max_ms => Some(format!(
                "replica dc-{}/p{} lags {ms} ms ({} entries) behind its primary, over {max_ms} ms",
                r.datacenter,
                r.partition,
                r.lag_entries.unwrap_or_default()
            )),
            _ => None,
        })
        .collect()
}

/// What a partition as a whole has lost: its primary (no write can commit) or every
/// replica that serves reads (each drained or down).
fn partition_problems(rows: &[engine::cluster::ReplicaStatus]) -> Vec<String> {
    use engine::cluster::Role;
    let mut partitions: Vec<u32> = rows.iter().map(|r| r.partition).collect();
    partitions.dedup();
    let mut out = Vec::new();
    for p in partitions {
        let of: Vec<_> = rows.iter().filter(|r| r.partition == p).collect();
        if let Some(primary) = of
            .iter()
            .find(|r| r.role == Role::Primary && !r.health.is_up())
        {
            out.push(format!(
                "partition {p} takes no writes: its primary dc-{}/p{p} is {}; fail over with `dirctl failover --partition {p} --emergency`",
                primary.datacenter, primary.health
            ));
        }
        if !of.iter().any(|r| r.health == "ok") {
            out.push(format!(
                "partition {p} serves no reads: every replica is drained or down; `dirctl dc undrain NAME` one that is up"
            ));
        }
    }
    out
}

/// One metric family: name, help, and its samples (labels, value).
struct Family {
    name: &'static str,
    help: &'static str,
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

pub fn metrics(g: &Global, d: &BackupsDir) -> Result<()> {
    let (_, age, _) = backup_age(g, d, false)?;
    let mut ctx = Ctx::open(g)?;
    let rows = ctx.status()?;
    let topology = ctx.topology();
    let replica = |r: &engine::cluster::ReplicaStatus| {
        vec![
            ("partition", r.partition.to_string()),
            ("datacenter", r.datacenter.clone()),
        ]
    };
    let up = |r: &engine::cluster::ReplicaStatus| r.health == "ok" || r.health == "drained";
    let families = [
        Family {
            name: "geodir_backup_age_seconds",
            help: "Age of the newest good backup (by its size; `dirctl health` also checks its SHA-256).",
            samples: vec![(
                Vec::new(),
                age.map_or(f64::INFINITY, |(_, secs)| secs as f64),
            )],
        },
        Family {
            name: "geodir_replica_lag_entries",
            help: "Entries a replica is behind its primary's commit.",
            samples: rows
                .iter()
                .filter_map(|r| r.lag_entries.map(|lag| (replica(r), lag as f64)))
                .collect(),
        },
        Family {
            name: "geodir_replica_up",
            help: "Whether a replica answers its health probe.",
            samples: rows
                .iter()
                .map(|r| (replica(r), f64::from(u8::from(up(r)))))
                .collect(),
        },
        Family {
            name: "geodir_replica_damaged",
            help: "Whether a replica was found damaged (its stored bytes failed a check); `dirctl dc rebuild` re-seeds it.",
            samples: rows
                .iter()
                .map(|r| {
                    let damaged = matches!(r.health, engine::cluster::Health::Damaged(_));
                    (replica(r), f64::from(u8::from(damaged)))
                })
                .collect(),
        },
        Family {
            name: "geodir_datacenter_up",
            help: "Whether every replica in a datacenter answers its health probe.",
            samples: topology
                .datacenters
                .iter()
                .map(|dc| {
                    let all = rows
                        .iter()
                        .filter(|r| r.datacenter == dc.name)
                        .all(&up);
                    (vec![("datacenter", dc.name.clone())], f64::from(u8::from(all)))
                })
                .collect(),
        },
        Family {
            name: "geodir_datacenter_drained",
            help: "Whether an operator drained a datacenter (reads route around it).",
            samples: topology
                .datacenters
                .iter()
                .map(|dc| {
                    (
                        vec![("datacenter", dc.name.clone())],
                        f64::from(u8::from(dc.drained)),
                    )
                })
                .collect(),
        },
        Family {
            name: "geodir_partition_term",
            help: "A partition's term: it goes up by one at each failover (and fencing cut), so its rate counts them.",
            samples: topology
                .partitions
                .iter()
                .map(|p| (vec![("partition", p.id.to_string())], p.term as f64))
                .collect(),
        },
    ];
    if g.output == Output::Json {
        return output::json(&metrics_json(&families));
    }
    output::print(&exposition(&families))
}

/// The metric families as `{"metrics": [{name, help, samples}]}`.
fn metrics_json(families: &[Family]) -> serde_json::Value {
    let out: Vec<_> = families
        .iter()
        .map(|f| {
            let samples: Vec<_> = f
                .samples
                .iter()
                .map(|(labels, v)| {
                    let labels: serde_json::Map<_, _> = labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), json!(v)))
                        .collect();
                    // JSON has no infinity: no backup at all is null.
                    json!({"labels": labels, "value": v.is_finite().then_some(*v)})
                })
                .collect();
            json!({"name": f.name, "help": f.help, "samples": samples})
        })
        .collect();
    json!({"metrics": out})
}

/// The metric families in Prometheus' text exposition format.
fn exposition(families: &[Family]) -> String {
    let mut s = String::new();
    for f in families {
        s.push_str(&format!(
            "# HELP {} {}\n# TYPE {} gauge\n",
            f.name, f.help, f.name
        ));
        for (labels, v) in &f.samples {
            let labels: Vec<_> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            let labels = if labels.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", labels.join(","))
            };
            let v = if v.is_infinite() {
                "+Inf".to_string()
            } else {
                v.to_string()
            };
            s.push_str(&format!("{}{labels} {v}\n", f.name));
        }
    }
    s
}

/// The audit record of a cluster-level backup operation, on partition 0 (best effort: a
/// cluster that cannot be opened is reported on stderr).
fn audit_after<T>(g: &Global, op: &str, targets: Vec<String>, result: &Result<T>) {
    match Ctx::open(g) {
        Ok(mut ctx) => ctx.audit_result(0, op, targets, result),
        Err(e) => eprintln!("warning: the audit record of {op} could not be written: {e:#}"),
    }
}

/// A manifest as `--output json` shows it: Graph's camelCase, like every other document
/// dirctl prints. (The manifest inside an archive keeps its own, versioned field names:
/// docs/design.md, "Backup archive".)
fn manifest_json(m: &::backup::manifest::Manifest) -> serde_json::Value {
    json!({
        "format": m.format,
        "id": m.id,
        "clusterId": m.cluster_id,
        "createdAt": m.created_at,
        "partitions": m.partitions,
        "files": m.files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::cluster::{Health, ReplicaStatus, Role};

    fn row(dc: &str, lag_ms: Option<u64>) -> ReplicaStatus {
        ReplicaStatus {
            partition: 2,
            datacenter: dc.into(),
            role: Role::Secondary,
            partition_term: 1,
            term: Some(1),
            last_lsn: Some(10),
            lag_entries: Some(4),
            lag_ms,
            health: Health::Ok,
        }
    }

    #[test]
    fn only_a_secondary_lagging_past_the_threshold_is_a_problem() {
        let rows = [
            row("a", None),
            row("b", Some(10_000)),
            row("c", Some(10_001)),
        ];
        let p = lag_problems(&rows, 10_000);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("dc-c/p2") && p[0].contains("10001 ms"),
            "{p:?}"
        );
    }
}
