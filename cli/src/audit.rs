//! `dirctl audit list|verify`: the audit trail (promise 9), read from every partition.

use anyhow::{Context as _, Result};
use engine::audit;
use engine::Error;
use serde_json::json;

use crate::context::Ctx;
use crate::opt::{AuditCmd, Global};
use crate::output;

pub fn run(g: &Global, c: AuditCmd) -> Result<()> {
    let mut ctx = Ctx::open(g)?;
    let out = ctx.output;
    let partitions: Vec<u32> = ctx
        .cluster
        .topology()
        .partitions
        .iter()
        .map(|p| p.id)
        .collect();
    match c {
        AuditCmd::List {
            since,
            actor,
            target,
            op,
        } => {
            let since = since
                .map(|s| engine::clock::Clock::fixed(&s).map(|c| c.now()))
                .transpose()
                .context("--since")?;
            let mut all = Vec::new();
            for p in partitions {
                let (recs, _) = ctx
                    .read(p, |r| audit::list(r))
                    .with_context(|| format!("read the audit records of partition {p}"))?;
                all.extend(recs.into_iter().map(|r| (p, r)));
            }
            all.retain(|(_, r)| {
                since.is_none_or(|s| {
                    chrono::DateTime::parse_from_rfc3339(&r.time).is_ok_and(|t| t >= s)
                }) && actor.as_ref().is_none_or(|a| *a == r.actor)
                    && op.as_ref().is_none_or(|o| *o == r.op)
                    && target.as_ref().is_none_or(|t| r.targets.contains(t))
            });
            all.sort_by(|(pa, a), (pb, b)| (&a.time, pa, a.seq).cmp(&(&b.time, pb, b.seq)));
            let records: Vec<_> = all
                .iter()
                .map(|(p, r)| {
                    let mut v = json!(r);
                    v["partition"] = json!(p);
                    v
                })
                .collect();
            output::emit(out, &json!({"records": records}), || {
                let rows: Vec<_> = all
                    .iter()
                    .map(|(p, r)| {
                        vec![
                            r.time.clone(),
                            format!("{p}/{}", r.seq),
                            r.actor.clone(),
                            r.op.clone(),
                            r.targets.join(","),
                            r.outcome.clone(),
                        ]
                    })
                    .collect();
                output::table(
                    &["time", "partition/seq", "actor", "op", "targets", "outcome"],
                    &rows,
                )
            })
        }
        AuditCmd::Verify => {
            let mut rows = Vec::new();
            let mut broken = Vec::new();
            for p in partitions {
                let (r, _) = ctx
                    .read(p, |r| match audit::verify(r) {
                        Ok(n) => Ok(Ok(n)),
                        Err(Error::Corrupt(m)) => Ok(Err(m)),
                        Err(e) => Err(e),
                    })
                    .with_context(|| format!("read the audit records of partition {p}"))?;
                match r {
                    Ok(n) => rows.push(json!({"partition": p, "records": n, "result": "intact"})),
                    Err(m) => {
                        rows.push(json!({"partition": p, "result": m}));
                        broken.push(format!("partition {p}: {m}"));
                    }
                }
            }
            output::emit(out, &json!({"partitions": rows}), || {
                let t: Vec<_> = rows
                    .iter()
                    .map(|r| {
                        vec![
                            r["partition"].to_string(),
                            r["records"]
                                .as_u64()
                                .map(|n| n.to_string())
                                .unwrap_or_default(),
                            r["result"].as_str().unwrap_or_default().to_string(),
                        ]
                    })
                    .collect();
                output::table(&["partition", "records", "result"], &t)
            })?;
            if !broken.is_empty() {
                return Err(Error::Corrupt(format!(
                    "the audit trail was tampered with: {}",
                    broken.join("; ")
                ))
                .into());
            }
            Ok(())
        }
    }
}
