//! `dirctl audit list|verify`: the audit trail (promise 9), read from every partition.

use std::collections::BTreeMap;

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
        AuditCmd::Verify { backups } => {
            let seed = signing_seed(g, false)?;
            let from_backup = match backups {
                None => None,
                Some(dir) => Some(newest_anchors(&dir)?),
            };
            verify(&mut ctx, out, partitions, seed.as_deref(), from_backup)
        }
        AuditCmd::Anchor => {
            let seed = signing_seed(g, true)?.unwrap_or_default();
            anchor(&mut ctx, out, partitions, &seed)
        }
    }
}

/// The cluster's key (the token signing key's seed, a control-plane secret); made when
/// `create` and there is none.
fn signing_seed(g: &Global, create: bool) -> Result<Option<Vec<u8>>> {
    use server::graph::token;
    let root = crate::context::cluster_root(g).unwrap_or_default();
    let cp = crate::context::control_plane(g, &root)?;
    Ok(match (cp.secret(token::SECRET)?, create) {
        (Some(s), _) => Some(s),
        (None, true) => Some(cp.secret_or_create(token::SECRET, &mut token::generate_seed)?),
        (None, false) => None,
    })
}

/// What signs a backup's anchors (`backup create`): the cluster's key where this command
/// can read it (the embedded mode, or with the control plane); None through the servers
/// alone.
pub fn signer(g: &Global) -> Option<Box<dyn Fn(&[u8]) -> engine::Result<String>>> {
    if g.cluster.is_none() && g.control_plane.is_none() {
        return None;
    }
    let seed = signing_seed(g, true).ok().flatten()?;
    Some(Box::new(move |m: &[u8]| {
        server::graph::token::sign(&seed, m)
    }))
}

/// The anchors of the newest good backup in `dir`: its ID and the anchors by partition.
fn newest_anchors(dir: &std::path::Path) -> Result<(String, BTreeMap<u32, audit::Anchor>)> {
    let (newest, _) = ::backup::newest_good(dir, false)?;
    let b = newest.ok_or_else(|| {
        Error::NotFound(format!("--backups {}: no good backup there", dir.display()))
    })?;
    if b.audit_anchors.is_empty() {
        return Err(Error::NotFound(format!(
            "--backups {}: backup {} anchors no audit chain (taken without the cluster's key)",
            dir.display(),
            b.id
        ))
        .into());
    }
    Ok((b.id, b.audit_anchors))
}

/// `audit anchor`: each partition's chain head at its primary, checked intact, signed and
/// kept in the control plane.
fn anchor(ctx: &mut Ctx, out: Output, partitions: Vec<u32>, seed: &[u8]) -> Result<()> {
    let rows = anchor_partitions(ctx, partitions, seed)?;
    output::emit(out, &json!({"anchors": rows}), || {
        let t: Vec<_> = rows
            .iter()
            .map(|r| {
                vec![
                    r["partition"].to_string(),
                    r["seq"].to_string(),
                    r["hash"].as_str().unwrap_or_default().to_string(),
                    r["time"].as_str().unwrap_or_default().to_string(),
                ]
            })
            .collect();
        output::table(&["partition", "seq", "hash", "time"], &t)
    })
}

/// Anchors each of `partitions` (also after every elevation): what was anchored.
pub fn anchor_partitions(
    ctx: &mut Ctx,
    partitions: Vec<u32>,
    seed: &[u8],
) -> Result<Vec<serde_json::Value>> {
    let now = crate::context::clock()?.now().to_rfc3339();
    let cluster_id = ctx.cluster_mut()?.topology().cluster_id.clone();
    let mut rows = Vec::new();
    for p in partitions {
        // Only what is settled is anchored: entries a crashed writer left above the commit
        // point are committed or cut first (a cut record's sequence number is used again).
        ctx.cluster_mut()?
            .settle_primary(p)
            .with_context(|| format!("partition {p}: settle the primary before anchoring"))?;
        let primary = ctx.cluster_mut()?.topology().partition(p)?.primary.clone();
        let copies = ctx
            .cluster_mut()?
            .at_every_replica(p, |r| Ok((audit::chain(r), audit::head_hex(r))))
            .with_context(|| format!("read the audit chain of partition {p}"))?;
        let head = copies
            .into_iter()
            .find(|(dc, _)| *dc == primary)
            .map(|(_, c)| c);
        let (seq, hash) = match head {
            Some(Ok((Ok(_), Ok(h)))) => h,
            Some(Ok((Err(e), _))) | Some(Ok((_, Err(e)))) => {
                return Err(anyhow::Error::from(e).context(format!(
                    "partition {p}: the primary's audit chain is not intact; nothing anchored (run `dirctl audit verify`)"
                )))
            }
            Some(Err(e)) => {
                return Err(anyhow::Error::from(e)
                    .context(format!("partition {p}: the primary's copy at {primary}")))
            }
            None => {
                return Err(Error::Unavailable(format!(
                    "partition {p}: the primary's copy at {primary} could not be read; nothing anchored"
                ))
                .into())
            }
        };
        let a = server::identity::anchor(seed, &cluster_id, p, (seq, hash), &now)?;
        let kept = a.clone();
        ctx.cluster_mut()?.update_topology(|t| {
            t.audit_anchors.insert(p, kept.clone());
            Ok(())
        })?;
        rows.push(json!({"partition": p, "seq": a.seq, "hash": a.hash, "time": a.time}));
    }
    Ok(rows)
}

/// A partition's anchor against the cluster's key and a copy's chain: Ok with what it was
/// checked against, or Err how it fails. A secondary's copy that has not reached the
/// anchored record yet is a lagging one (it is compared with the primary's instead); the
/// primary's copy must hold it.
fn check_anchor(
    anchor: Option<&audit::Anchor>,
    seed: Option<&[u8]>,
    cluster_id: &str,
    partition: u32,
    hashes: &[[u8; 32]],
    primary: bool,
) -> Result<Option<String>, String> {
    let Some(a) = anchor else { return Ok(None) };
    let genuine = seed.is_some_and(|s| {
        server::graph::token::signed(s, a.message(cluster_id, partition).as_bytes(), &a.signature)
            .unwrap_or(false)
    });
    if !genuine {
        return Err(format!(
            "the anchor of partition {partition} (record {} at {}) is not signed with the cluster's key",
            a.seq, a.time
        ));
    }
    if !primary && (hashes.len() as u64) < a.seq {
        return Ok(Some(format!(
            "behind the anchor at record {} ({}): compared with the primary's copy",
            a.seq, a.time
        )));
    }
    a.check(hashes)?;
    Ok(Some(format!("anchored at record {} ({})", a.seq, a.time)))
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
fn verify(
    ctx: &mut Ctx,
    out: Output,
    partitions: Vec<u32>,
    seed: Option<&[u8]>,
    from_backup: Option<(String, BTreeMap<u32, audit::Anchor>)>,
) -> Result<()> {
    // Every replica's copy is walked, and compared with the primary's: a record
    // changed at any one datacenter is found, whichever one a read would reach.
    let mut rows = Vec::new();
    let mut broken = Vec::new();
    let mut unchecked = Vec::new();
    for p in partitions {
        let part = ctx.cluster_mut()?.topology().partition(p)?.clone();
        // Every anchor of the partition: the control plane's, and the backup's.
        let mut anchors = Vec::new();
        if let Some(a) = ctx.cluster_mut()?.topology().audit_anchors.get(&p) {
            anchors.push(("the control plane's".to_string(), a.clone()));
        }
        if let Some(a) = from_backup
            .as_ref()
            .and_then(|(id, m)| Some((id, m.get(&p)?)))
        {
            anchors.push((format!("backup {}'s", a.0), a.1.clone()));
        }
        let cluster_id = ctx.cluster_mut()?.topology().cluster_id.clone();
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
                    let anchored = anchors
                        .iter()
                        .map(|(source, a)| {
                            check_anchor(Some(a), seed, &cluster_id, p, &chain, dc == part.primary)
                                .map(|m| m.map(|m| format!("{m}, {source}")))
                                .map_err(|e| format!("{e} (against {source} anchor)"))
                        })
                        .collect::<Result<Vec<_>, String>>()
                        .map(|found| {
                            let found: Vec<String> = found.into_iter().flatten().collect();
                            (!found.is_empty()).then(|| found.join("; "))
                        });
                    match anchored.and_then(|a| {
                        compare(&chain, reference.as_deref(), &part.primary).map(|m| match a {
                            Some(a) => format!("{m}; {a}"),
                            None => m,
                        })
                    }) {
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
    use super::{check_anchor, compare};
    use engine::audit::Anchor;

    #[test]
    fn an_anchor_is_checked_on_the_primary_s_copy_and_on_secondaries_that_reached_it() {
        let seed = server::graph::token::generate_seed();
        let hashes = [[1u8; 32], [2u8; 32], [3u8; 32]];
        let hex: String = [2u8; 32].iter().map(|b| format!("{b:02x}")).collect();
        let mut a = Anchor {
            seq: 2,
            hash: hex,
            time: "t".into(),
            signature: String::new(),
        };
        a.signature = server::graph::token::sign(&seed, a.message("c", 0).as_bytes()).unwrap();
        let check = |hashes: &[[u8; 32]], primary: bool, seed: &[u8]| {
            check_anchor(Some(&a), Some(seed), "c", 0, hashes, primary)
        };
        assert!(check(&hashes, true, &seed)
            .unwrap()
            .unwrap()
            .starts_with("anchored at record 2"));
        // A lagging secondary is not wrong; a primary without the anchored record is.
        assert!(check(&hashes[..1], false, &seed)
            .unwrap()
            .unwrap()
            .starts_with("behind the anchor"));
        assert!(check(&hashes[..1], true, &seed)
            .unwrap_err()
            .contains("removed"));
        let rewritten = [[1u8; 32], [9u8; 32], [3u8; 32]];
        assert!(check(&rewritten, false, &seed)
            .unwrap_err()
            .contains("rewritten"));
        // Another key's anchor, or one changed since it was signed, is refused.
        let other = server::graph::token::generate_seed();
        assert!(check(&hashes, true, &other)
            .unwrap_err()
            .contains("not signed"));
        assert_eq!(
            check_anchor(None, Some(&seed), "c", 0, &hashes, true),
            Ok(None)
        );
    }

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
