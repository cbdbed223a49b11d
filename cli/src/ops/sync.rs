//! `dirctl sync`: brings secondaries level with their primaries.

use anyhow::Result;
use engine::Error;
use serde_json::json;

use crate::context::Ctx;
use crate::opt::{Global, SyncArgs};
use crate::output;

pub fn sync(g: &Global, a: SyncArgs) -> Result<()> {
    let mut ctx = Ctx::open(g)?;
    let parts: Vec<u32> = match a.partition {
        Some(p) => vec![ctx.cluster_mut()?.topology().partition(p)?.id],
        None => ctx
            .cluster_mut()?
            .topology()
            .partitions
            .iter()
            .map(|p| p.id)
            .collect(),
    };
    let bar = progress(&mut ctx, &parts);
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for p in parts {
        match ctx.cluster_mut()?.sync(p, &mut |n| bar.inc(n)) {
            Ok(r) => reports.extend(r),
            Err(e) => failures.push(format!("partition {p}: {e}")),
        }
    }
    bar.finish_and_clear();
    // The sync's audit record, then shipped along so that secondaries stay level.
    let audit_partition = a.partition.unwrap_or(0);
    let behind: Vec<_> = reports
        .iter()
        .filter_map(|r| {
            r.error.as_ref().map(|e| {
                format!(
                    "{}: {e}",
                    engine::layout::replica_dir(&r.datacenter, r.partition)
                )
            })
        })
        .collect();
    let outcome = if failures.is_empty() && behind.is_empty() {
        "ok".to_string()
    } else {
        failures
            .iter()
            .chain(&behind)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ")
    };
    let targets = match a.partition {
        Some(p) => vec![format!("partition {p}")],
        None => vec!["every partition".into()],
    };
    ctx.audit_outcome(audit_partition, "sync", targets, &outcome);
    let _ = ctx.cluster_mut()?.sync(audit_partition, &mut |_| {});
    output::emit(
        g.output,
        &json!({"replicas": reports, "failures": failures}),
        || {
            let headers = ["partition", "datacenter", "shipped", "lsn", "result"];
            let mut s = output::table_by(&headers, &reports, |r| {
                vec![
                    r.partition.to_string(),
                    r.datacenter.clone(),
                    r.shipped_entries.to_string(),
                    r.lsn.map(|l| l.to_string()).unwrap_or_default(),
                    sync_result(r),
                ]
            });
            for f in &failures {
                s.push_str(&format!("failed: {f}\n"));
            }
            s
        },
    )?;
    // A replica left behind is a replica a read may not find level: say so in the exit
    // code too, for cron and scripts.
    left_behind(&failures, &behind)
}

/// The sync's progress bar, counting entries, on a terminal; hidden elsewhere.
fn progress(ctx: &mut Ctx, parts: &[u32]) -> indicatif::ProgressBar {
    let bar = if output::stdout_is_terminal() {
        // The plan takes every replica once more: only worth it for a progress bar. Its
        // errors are the sync's own, reported below.
        let total = parts
            .iter()
            .map(|p| {
                ctx.cluster_mut()
                    .ok()
                    .and_then(|c| c.sync_plan(*p).ok())
                    .unwrap_or(0)
            })
            .sum();
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} entries {per_sec} {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// The sync's failure when partitions could not be reached or replicas were not brought level.
fn left_behind(failures: &[String], behind: &[String]) -> Result<()> {
    let mut why = Vec::new();
    if !failures.is_empty() {
        why.push(format!(
            "could not reach {} partition(s): {}",
            failures.len(),
            failures.join("; ")
        ));
    }
    if !behind.is_empty() {
        why.push(format!(
            "{} replica(s) not brought level: {}",
            behind.len(),
            behind.join("; ")
        ));
    }
    if why.is_empty() {
        return Ok(());
    }
    Err(Error::Unavailable(format!("sync {}", why.join("; and "))).into())
}

/// One replica's line of the sync table: what was done to it, or why it was not.
fn sync_result(r: &engine::cluster::SyncReport) -> String {
    if let Some(e) = &r.error {
        return e.clone();
    }
    let mut done = Vec::new();
    if r.reseeded {
        done.push("re-seeded from a checkpoint".to_string());
    }
    if let (Some(first), Some(last)) = (r.cut_entries.first(), r.cut_entries.last()) {
        done.push(format!(
            "cut {} uncommitted entr{} (term {} lsn {} .. term {} lsn {})",
            r.cut_entries.len(),
            if r.cut_entries.len() == 1 { "y" } else { "ies" },
            first.term,
            first.lsn,
            last.term,
            last.lsn
        ));
    }
    if done.is_empty() {
        "ok".into()
    } else {
        format!("ok; {}", done.join("; "))
    }
}
