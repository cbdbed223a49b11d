//! `dirctl backup …`: promise 8 (backups).

use engine::operators::{Job, Need, Role};
use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _, Result};
use engine::request::{Reply, Request};
use engine::Error;
use serde_json::json;

use crate::context::{self, cluster_root, Ctx};
use crate::opt::{BackupCmd, BackupsDir, Global};
use crate::output;

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

pub(crate) fn dest(g: &Global, d: &BackupsDir) -> Result<PathBuf> {
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
        "auditAnchors": m.audit_anchors,
    })
}
