//! An import: every line checked against the primary's state in one pass (every conflict
//! found before anything is written), then the staged changes written in batches, each
//! shipped while the one before is made durable. The import's one audit record rides in its
//! last batch; a failure gets a record of its own.

use serde_json::Value;

use crate::audit;
use crate::client::Embedded;
use crate::directory::{self, Txn};
use crate::error::{Error, Result};
use crate::log::Op;
use crate::request::{Envelope, ImportLine, Progress, Reply, Response};

use super::refused;

pub(super) fn import(
    d: &mut Embedded,
    env: &Envelope,
    tenant: &str,
    file: &str,
    batch_size: usize,
    lines: &[ImportLine],
    progress: &mut dyn FnMut(&Progress),
) -> Result<Response> {
    if batch_size == 0 {
        return Err(Error::Invalid("--batch-size must be at least 1".into()));
    }
    let placed = d.cluster.topology().tenant(tenant)?.clone();
    let (tid, partition) = (placed.id, placed.partition);
    let now = d.cluster.clock().now_graph();
    let targets = vec![tenant.to_string(), file.to_string()];
    // The ops of the whole file, cut at batch boundaries: what the batches write (refused,
    // nothing written, if another writer got to the partition in between).
    let staged = d.cluster.write(partition, env.datacenter.as_deref(), |r| {
        let mut t = Txn::new(r);
        let mut ends = Vec::new();
        let mut made = Vec::with_capacity(lines.len());
        for chunk in lines.chunks(batch_size) {
            stage(&mut t, &tid, chunk, &now, file, &mut made)?;
            ends.push(t.op_count());
        }
        Ok((Vec::new(), (t.into_ops(), ends)))
    });
    let ((ops, ends), at) = match staged {
        Ok(s) => s,
        Err(e) => {
            if !refused(&e) {
                d.record_outcome(env, partition, "import", targets, &e.to_string());
            }
            return Err(e);
        }
    };
    progress(&Progress::Checked { token: at.clone() });
    if lines.is_empty() {
        d.record_outcome(
            env,
            partition,
            "import",
            targets.clone(),
            "ok: the file holds no objects",
        );
    }
    let batches = cut(ops, ends);
    let chunks = batches.len();
    let mut record = Some(d.record(env, "import", targets.clone(), "ok"));
    let mut done = 0usize;
    let mut last = None;
    let written = d.cluster.write_pipelined_at(
        partition,
        env.datacenter.as_deref(),
        Some(at.lsn),
        batches
            .into_iter()
            .zip(lines.chunks(batch_size))
            .enumerate(),
        |r, (i, (mut ops, chunk))| {
            if i + 1 == chunks {
                if let Some(rec) = record.take() {
                    let mut t = Txn::new(r);
                    audit::append(&mut t, rec)?;
                    ops.extend(t.into_ops());
                }
            }
            Ok((ops, chunk))
        },
        |chunk, token| {
            done += chunk.len();
            last = Some(token.clone());
            progress(&Progress::Committed {
                through_line: chunk.last().map_or(0, |l| l.number),
                objects: chunk.len(),
                token: token.clone(),
            });
        },
    );
    if let Err(e) = written {
        if !refused(&e) {
            d.record_outcome(env, partition, "import", targets, &e.to_string());
        }
        return Err(e);
    }
    Ok(Response {
        reply: Reply::Imported(done),
        token: last,
        served_by: None,
    })
}

/// The staged ops cut into batches at `ends` (op counts after each batch).
fn cut(ops: Vec<Op>, ends: Vec<usize>) -> Vec<Vec<Op>> {
    let mut ops = ops.into_iter();
    let mut start = 0;
    ends.into_iter()
        .map(|end| {
            let batch = ops.by_ref().take(end - start).collect();
            start = end;
            batch
        })
        .collect()
}

/// Applies import lines to a transaction; `made` gathers (object ID, line number) of the
/// objects the file makes, across calls.
fn stage(
    t: &mut Txn,
    tid: &str,
    lines: &[ImportLine],
    now: &str,
    file: &str,
    made: &mut Vec<(String, usize)>,
) -> Result<()> {
    for l in lines {
        let at = |e: Error| at_line(e, file, l.number, made);
        let obj = directory::create(t, tid, l.object_type, l.fields.clone(), now).map_err(at)?;
        let id = obj
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Corrupt("a created object has no id".into()))?
            .to_string();
        for m in &l.members {
            directory::add_member(t, tid, &id, m).map_err(|e| at_line(e, file, l.number, made))?;
        }
        made.push((id, l.number));
    }
    Ok(())
}

/// An error at a line of the file: says which, and that nothing was imported. A conflict
/// with an object this file makes (not yet written) names that object's line.
fn at_line(e: Error, file: &str, number: usize, made: &[(String, usize)]) -> Error {
    let made_here = |m: String| match made.iter().find(|(id, _)| m.contains(id.as_str())) {
        Some((id, line)) => m.replace(&format!("user {id}"), &format!("line {line} of this file")),
        None => m,
    };
    match e {
        Error::Invalid(m) => Error::Invalid(format!(
            "{file} line {number}: {m}; nothing was imported"
        )),
        Error::Conflict(m) => Error::Conflict(format!(
            "{file} line {number}: {}; nothing was imported",
            made_here(m)
        )),
        Error::NotFound(m) => Error::NotFound(format!(
            "{file} line {number}: {m} (a member must be stored already or made by an earlier line); nothing was imported"
        )),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_ops_are_cut_at_batch_ends() {
        let op = |i: u8| Op::Delete {
            key: vec![i],
            prev: None,
        };
        let batches = cut((0..5).map(op).collect(), vec![2, 2, 5]);
        assert_eq!(
            batches,
            vec![vec![op(0), op(1)], vec![], vec![op(2), op(3), op(4)]]
        );
    }
}
