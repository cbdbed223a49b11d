//! `dirctl audit list|verify`: the audit trail (promise 9), read from every partition.

use anyhow::{Context as _, Result};
use engine::audit;
use engine::request::Request;
use engine::Error;
use serde_json::json;

use crate::context::Ctx;
use crate::opt::{AuditCmd, Global, Output};
use crate::output;
use crate::reply;

pub fn run(g: &Global, c: AuditCmd) -> Result<()> {
    let mut ctx = Ctx::open(g)?;
    let out = ctx.output;
    let partitions = ctx.partition_ids();
    match c {
        AuditCmd::List {
            since,
            by,
            target,
            op,
        } => list(&mut ctx, out, partitions, since, by, target, op),
        AuditCmd::Verify => verify(&mut ctx, out, partitions),
    }
}

/// `audit list`: every partition's records, filtered.
fn list(
    ctx: &mut Ctx,
    out: Output,
    partitions: Vec<u32>,
    since: Option<String>,
    by: Option<String>,
    target: Option<String>,
    op: Option<String>,
) -> Result<()> {
    let since = since
        .map(|s| engine::clock::Clock::fixed(&s).map(|c| c.now()))
        .transpose()
        .context("--since")?;
    // An auditor wants every record: each partition's most complete copy.
    let mut all = Vec::new();
    for p in partitions {
        let r = ctx
            .execute(Request::ListAudit { partition: p })
            .with_context(|| format!("read the audit records of partition {p}"))?;
        all.extend(reply::audit_records(r.reply)?.into_iter().map(|r| (p, r)));
    }
    all.retain(|(_, r)| {
        since.is_none_or(|s| chrono::DateTime::parse_from_rfc3339(&r.time).is_ok_and(|t| t >= s))
            && by.as_ref().is_none_or(|a| *a == r.actor)
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

/// `audit verify`: every replica's copy walked and compared with the primary's. It reads
/// every copy, so it is a cluster-level operation, not a directory request.
fn verify(ctx: &mut Ctx, out: Output, partitions: Vec<u32>) -> Result<()> {
    // Every replica's copy is walked, and compared with the primary's: a record
    // changed at any one datacenter is found, whichever one a read would reach.
    let mut rows = Vec::new();
    let mut broken = Vec::new();
    let mut unchecked = Vec::new();
    for p in partitions {
        let part = ctx.cluster_mut()?.topology().partition(p)?.clone();
        let copies = ctx
            .cluster_mut()?
            .at_every_replica(p, |r| {
                let chain = match audit::chain(r) {
                    Ok(c) => Ok(c),
                    Err(Error::Corrupt(m)) => Err(m),
                    Err(e) => return Err(e),
                };
                Ok((part.diverged(r.last()?), chain))
            })
            .with_context(|| format!("read the audit records of partition {p}"))?;
        let reference = copies.iter().find_map(|(dc, c)| match c {
            Ok((_, Ok(chain))) if *dc == part.primary => Some(chain.clone()),
            _ => None,
        });
        for (dc, copy) in copies {
            let (records, result) = match copy {
                Err(e) => {
                    unchecked.push(format!("partition {p} at {dc}: {e}"));
                    (None, format!("not checked: {e}"))
                }
                Ok((_, Err(m))) => {
                    broken.push(format!("partition {p} at {dc}: {m}"));
                    (None, m)
                }
                Ok((true, Ok(chain))) => (
                    Some(chain.len()),
                    "intact; holds a fenced tail (cut at the next sync), not compared".to_string(),
                ),
                Ok((false, Ok(chain))) => {
                    let n = Some(chain.len());
                    match compare(&chain, reference.as_deref(), &part.primary) {
                        Ok(m) => (n, m),
                        Err(m) => {
                            broken.push(format!("partition {p} at {dc}: {m}"));
                            (n, m)
                        }
                    }
                }
            };
            let role = if dc == part.primary {
                "primary"
            } else {
                "secondary"
            };
            rows.push(json!({"partition": p, "datacenter": dc, "role": role, "records": records, "result": result}));
        }
    }
    output::emit(out, &json!({"replicas": rows}), || {
        let t: Vec<_> = rows
            .iter()
            .map(|r| {
                vec![
                    r["partition"].to_string(),
                    r["datacenter"].as_str().unwrap_or_default().to_string(),
                    r["role"].as_str().unwrap_or_default().to_string(),
                    r["records"]
                        .as_u64()
                        .map(|n| n.to_string())
                        .unwrap_or_default(),
                    r["result"].as_str().unwrap_or_default().to_string(),
                ]
            })
            .collect();
        output::table(
            &["partition", "datacenter", "role", "records", "result"],
            &t,
        )
    })?;
    if !broken.is_empty() {
        return Err(Error::Corrupt(format!(
            "the audit trail was tampered with: {}",
            broken.join("; ")
        ))
        .into());
    }
    if !unchecked.is_empty() {
        return Err(Error::Unavailable(format!(
            "{} copy(ies) of the audit trail could not be checked (the others are intact): {}",
            unchecked.len(),
            unchecked.join("; ")
        ))
        .into());
    }
    Ok(())
}

/// A replica's intact audit chain against the primary's (`reference`, when it could be
/// read): what it is, or, as the error, how it was tampered with.
fn compare<T: PartialEq>(
    chain: &[T],
    reference: Option<&[T]>,
    primary: &str,
) -> Result<String, String> {
    let differs = reference.and_then(|r| r.iter().zip(chain).position(|(a, b)| a != b));
    match (differs, reference) {
        (Some(i), _) => Err(format!(
            "audit record {} differs from the primary's copy at {primary}: changed at one of them",
            i + 1
        )),
        (None, Some(r)) if chain.len() > r.len() => Err(format!(
            "holds {} audit record(s) past the primary's last ({}): added here, or a crashed write not yet settled (`dirctl sync` cuts those; verify again)",
            chain.len() - r.len(),
            r.len()
        )),
        (None, Some(r)) if r.len() > chain.len() => Ok(format!(
            "intact, {} record(s) behind the primary",
            r.len() - chain.len()
        )),
        (None, Some(_)) => Ok("intact".to_string()),
        (None, None) => Ok("intact (the primary's copy could not be compared)".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::compare;

    #[test]
    fn a_copy_is_compared_with_the_primary_s() {
        // (copy, primary's copy, intact?, what the result says)
        type Row<'a> = (&'a [u8], Option<&'a [u8]>, bool, &'a str);
        let table: &[Row] = &[
            (&[1, 2], Some(&[1, 2]), true, "intact"),
            (
                &[1],
                Some(&[1, 2]),
                true,
                "intact, 1 record(s) behind the primary",
            ),
            (
                &[1, 2],
                None,
                true,
                "intact (the primary's copy could not be compared)",
            ),
            (
                &[1, 3],
                Some(&[1, 2]),
                false,
                "audit record 2 differs from the primary's copy at p",
            ),
            (
                &[1, 2, 3],
                Some(&[1, 2]),
                false,
                "holds 1 audit record(s) past the primary's last (2)",
            ),
        ];
        for (copy, primary, intact, says) in table {
            let got = compare(copy, *primary, "p");
            assert_eq!(
                got.is_ok(),
                *intact,
                "{copy:?} against {primary:?}: {got:?}"
            );
            let text = got.unwrap_or_else(|e| e);
            assert!(
                text.starts_with(says),
                "{copy:?} against {primary:?}: {text}"
            );
        }
    }
}
