//! `dirctl failover`: planned and emergency failover of partitions.

use anyhow::Result;
use engine::Error;
use serde_json::json;

use crate::context::{confirm, Ctx};
use crate::opt::{FailoverArgs, Global};
use crate::output;
use engine::operators::{Need, Role};

pub fn failover(g: &Global, a: FailoverArgs) -> Result<()> {
    let what = match (&a.partition, &a.all_from) {
        (Some(p), _) => format!("partition {p}"),
        (None, Some(dc)) => format!("every partition whose primary is in {dc}"),
        (None, None) => String::new(),
    };
    let mut ctx = Ctx::open(g)?;
    ctx.require(
        &Need::Elevated(Role::Operator),
        &format!("failover of {what}"),
    )?;
    confirm(a.yes, &format!("failover of {what}"))?;
    let approval = match a.accept_data_loss {
        true => crate::operator::two_person(
            g,
            &mut ctx,
            &format!("failover --accept-data-loss of {what}"),
        )?,
        false => None,
    };
    let mut losses = Vec::new();

    let r = failover_partitions(g, &mut ctx, &a, &mut losses);
    let op = if a.emergency {
        "failover.emergency"
    } else {
        "failover.planned"
    };
    let mut targets = vec![what];
    targets.extend(a.to.iter().map(|to| format!("to {to}")));
    // --accept-data-loss: the audit trail keeps the window that may have been lost.
    targets.extend(losses);
    targets.extend(approval);
    ctx.audit_result(a.partition.unwrap_or(0), op, targets, &r);
    r
}

/// The partitions to fail over, each with the datacenter to move its primary to (planned).
fn partitions(ctx: &mut Ctx, a: &FailoverArgs) -> Result<Vec<(u32, Option<String>)>> {
    let parts = match (&a.partition, &a.all_from) {
        (Some(p), _) => {
            ctx.topology().partition(*p)?;
            if a.to.is_none() && !a.emergency {
                return Err(Error::Invalid(
                    "say where to: --to DC (planned) or --emergency".into(),
                )
                .into());
            }
            vec![(*p, a.to.clone())]
        }
        (None, Some(dc)) => {
            let t = ctx.topology();
            t.datacenter(dc)?;
            if a.to.as_deref() == Some(dc.as_str()) {
                return Err(
                    Error::Invalid(format!("--to {dc} is the datacenter being emptied")).into(),
                );
            }
            t.partitions
                .iter()
                .filter(|p| p.primary == *dc)
                .map(|p| (p.id, a.to.clone().or_else(|| Some(p.sync_standby.clone()))))
                .collect()
        }
        (None, None) => {
            return Err(Error::Invalid("give --partition P or --all-from DC".into()).into())
        }
    };
    Ok(parts)
}

fn failover_partitions(
    g: &Global,
    ctx: &mut Ctx,
    a: &FailoverArgs,
    losses: &mut Vec<String>,
) -> Result<()> {
    let parts = partitions(ctx, a)?;
    let bar = if output::stdout_is_terminal() && parts.len() > 1 {
        indicatif::ProgressBar::new(parts.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for (p, to) in parts {
        let r = ctx.failover(p, to.as_deref(), a.emergency, a.accept_data_loss);
        match r {
            Ok(r) => reports.push(r),
            Err(e) => failures.push((p, e)),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    for r in &reports {
        if let Some(l) = r.possible_loss_after_lsn {
            losses.push(format!(
                "partition {}: acknowledged writes after lsn {l} (term {}) may be lost",
                r.partition, r.old_term
            ));
        }
    }
    let failed: Vec<String> = failures
        .iter()
        .map(|(p, e)| format!("partition {p}: {e}"))
        .collect();
    output::emit(
        g.output,
        &json!({"failovers": reports, "failures": failed}),
        || {
            let mut s = output::table_by(&HEADERS, &reports, row);
            for f in &failed {
                s.push_str(&format!("failed: {f}\n"));
            }
            s
        },
    )?;
    match failures.into_iter().next() {
        Some((_, e)) if reports.is_empty() => Err(e.into()),
        // Some partitions moved: not "nothing applied" (exit 5), so exit 1 with the message.
        Some((p, e)) => Err(anyhow::anyhow!(
            "failover of partition {p} failed (others succeeded; see the table): {e}"
        )),
        None => Ok(()),
    }
}

const HEADERS: [&str; 7] = [
    "partition",
    "primary",
    "term",
    "sync standby",
    "lsn",
    "writes unavailable ms",
    "data loss",
];

/// One partition's failover as a row of the table.
fn row(r: &engine::failover::FailoverReport) -> Vec<String> {
    vec![
        r.partition.to_string(),
        format!("{} -> {}", r.old_primary, r.new_primary),
        format!("{} -> {}", r.old_term, r.new_term),
        r.sync_standby.clone(),
        r.lsn.to_string(),
        format!("{:.1}", r.write_unavailable_ms),
        r.possible_loss_after_lsn
            .map(|l| format!("acknowledged writes after lsn {l} may be lost"))
            .unwrap_or_else(|| "none".into()),
    ]
}
