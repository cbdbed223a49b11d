//! Carries out a `Request` on the embedded cluster: reads on the chosen replica, writes in
//! one transaction on the primary with their audit record in the same log entry. The
//! closures over a replica live here, inside the engine.

mod audit_list;
mod import;
mod tenant;

use crate::audit::{self, Record};
use crate::client::Embedded;
use crate::directory::{self, Overlay, Txn};
use crate::error::{Error, Result};
use crate::log::Op;
use crate::replica::{CheckpointView, Replica};
use crate::request::{Envelope, Note, Object, Progress, Reply, Request, Response};
use crate::session::Token;
use crate::topology::Topology;
use crate::{access, recycle};

pub(crate) fn execute(
    d: &mut Embedded,
    env: &Envelope,
    req: Request,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Response> {
    match req {
        Request::Import {
            tenant,
            file,
            batch_size,
            lines,
        } => import::import(d, env, &tenant, &file, batch_size, &lines, progress),
        Request::CreateTenant { name, partition } => tenant::create(d, env, &name, partition),
        Request::ListAudit { partition } => audit_list::list(d, partition),
        Request::RecordAudit {
            partition,
            op,
            targets,
            outcome,
        } => {
            d.record_outcome(env, partition, &op, targets, &outcome);
            Ok(Response {
                reply: Reply::AuditRecorded,
                token: None,
                served_by: None,
            })
        }
        req if req.is_read() => read(d, env, req),
        req => write(d, env, req),
    }
}

/// The partition a request writes to, decided on the topology alone (None for a read): the
/// server mode sends a write to the server that owns this partition's primary.
pub fn write_partition(topology: &Topology, req: &Request) -> Result<Option<u32>> {
    Ok(match req {
        req if req.is_read() => None,
        Request::CreateTenant { name, partition } => match topology.tenant(name) {
            Ok(placed) => Some(placed.partition),
            Err(_) => Some(partition.unwrap_or_else(|| {
                tenant::fnv1a_32(name.as_bytes()) % topology.partitions.len().max(1) as u32
            })),
        },
        Request::RecordAudit { partition, .. } => Some(*partition),
        req => match req.tenant() {
            Some(t) => Some(topology.tenant(t)?.partition),
            None => None,
        },
    })
}

fn read(d: &mut Embedded, env: &Envelope, req: Request) -> Result<Response> {
    let tenant = req
        .tenant()
        .ok_or_else(|| Error::Invalid(format!("{req:?} names no tenant")))?;
    let placed = d.cluster.topology().tenant(tenant)?.clone();
    let tid = placed.id.as_str();
    let now = d.cluster.clock().now();
    let answer = |r: &Replica| -> Result<Reply> {
        Ok(match &req {
            Request::GetObject {
                object_type, id, ..
            } => Reply::Object(directory::get_typed(r, tid, *object_type, id)?),
            Request::ListObjects { object_type, .. } => {
                Reply::Objects(directory::list(r, tid, *object_type)?)
            }
            Request::ListMembers { group, .. } => {
                Reply::Objects(directory::members(r, tid, group)?)
            }
            Request::ListMemberOf {
                member, transitive, ..
            } => Reply::Objects(directory::member_of(r, tid, member, *transitive)?),
            Request::ListDeleted { .. } => Reply::Tombstones(recycle::list(r, tid, now)?),
            Request::GetDeleted { id, .. } => Reply::Tombstone(recycle::get(r, tid, id, now)?),
            Request::ListGrants { principal, .. } => {
                Reply::Grants(access::list(r, tid, principal.as_deref())?)
            }
            Request::CheckAccess {
                user,
                resource,
                action,
                ..
            } => Reply::Decision(access::check(r, tid, user, resource, action)?),
            other => return Err(Error::Invalid(format!("{other:?} is not a read"))),
        })
    };
    let (reply, served) = d.cluster.read(
        placed.partition,
        env.datacenter.as_deref(),
        env.token.as_ref(),
        answer,
    )?;
    Ok(Response {
        reply,
        token: None,
        served_by: Some(served),
    })
}

fn write(d: &mut Embedded, env: &Envelope, req: Request) -> Result<Response> {
    let w = prepare(d, req)?;
    let (reply, token) = d.audited_write(env, w.partition, &w.op, w.targets, w.change)?;
    Ok(Response {
        reply,
        token: Some(token),
        served_by: None,
    })
}

/// A write's change to the directory, made in a transaction on the primary's state; it may
/// change the audit record's targets (a created object's ID).
type Change = Box<dyn FnOnce(&mut Txn, &mut Vec<String>) -> Result<Reply> + Send>;

/// A write, ready to be made: where it goes, how it is audited, and its change.
struct Prepared {
    partition: u32,
    op: String,
    /// The audit record's targets before the change runs.
    targets: Vec<String>,
    change: Change,
}

/// Whether a request may share a log entry with other writes (group commit): a change to
/// objects of one tenant. Bulk loads, tenants, audit records and restores from a backup
/// take an entry (or many) of their own.
pub fn shares_entries(req: &Request) -> bool {
    !req.is_read()
        && !matches!(
            req,
            Request::Import { .. }
                | Request::CreateTenant { .. }
                | Request::ListAudit { .. }
                | Request::RecordAudit { .. }
                | Request::RestoreFromBackup { .. }
        )
}

/// Whether carrying out a request reports progress as it goes (a bulk load's checked and
/// committed batches), which a server streams to its client before the reply.
pub fn streams_progress(req: &Request) -> bool {
    matches!(req, Request::Import { .. })
}

fn prepare(d: &Embedded, req: Request) -> Result<Prepared> {
    let op = req.audit_op().unwrap_or_default();
    let tenant = req
        .tenant()
        .ok_or_else(|| Error::Invalid(format!("{req:?} names no tenant")))?;
    let placed = d.cluster.topology().tenant(tenant)?.clone();
    let tid = placed.id.clone();
    let clock = d.cluster.clock();
    let (now, now_graph) = (clock.now(), clock.now_graph());
    let targets = initial_targets(&req);
    let purged_tids = tenant_ids(d, &req, placed.partition)?;
    let change: Change = Box::new(move |t, targets| {
        Ok(match req {
            Request::CreateObject {
                object_type,
                fields,
                ..
            } => by_object_id(
                targets,
                directory::create(t, &tid, object_type, fields, &now_graph)?,
            ),
            Request::UpdateObject {
                object_type,
                id,
                patch,
                ..
            } => by_object_id(
                targets,
                directory::update(t, &tid, object_type, &id, patch)?,
            ),
            Request::DeleteObject {
                object_type, id, ..
            } => by_object_id(
                targets,
                directory::delete(t, &tid, object_type, &id, &now_graph)?,
            ),
            Request::AddMember { group, member, .. } => {
                directory::add_member(t, &tid, &group, &member)?;
                by_object_ids(t, &tid, targets)?;
                Reply::Membership
            }
            Request::RemoveMember { group, member, .. } => {
                directory::remove_member(t, &tid, &group, &member)?;
                by_object_ids(t, &tid, targets)?;
                Reply::Membership
            }
            Request::RestoreDeleted { id, new_upn, .. } => {
                Reply::Restored(recycle::restore(t, &tid, &id, new_upn.as_deref(), now)?)
            }
            Request::PurgeDeleted { id, .. } => {
                Reply::Purged(vec![recycle::purge(t, &tid, &id, now)?.id().to_string()])
            }
            Request::PurgeExpired { .. } => {
                let mut ids = Vec::new();
                for tid in &purged_tids {
                    ids.extend(recycle::purge_expired(t, tid, now)?);
                }
                targets.extend(ids.iter().cloned());
                Reply::Purged(ids)
            }
            Request::Grant {
                principal,
                resource,
                action,
                effect,
                ..
            } => Reply::Grant(access::grant(
                t, &tid, &principal, &resource, &action, effect, &now_graph,
            )?),
            Request::Revoke {
                principal,
                resource,
                action,
                ..
            } => Reply::Grant(access::revoke(t, &tid, &principal, &resource, &action)?),
            Request::RestoreFromBackup { checkpoint, id, .. } => {
                let view = CheckpointView::open(&checkpoint)?;
                let (object, skipped) = directory::restore_from(t, &view, &tid, &id)?;
                Reply::RestoredFromBackup { object, skipped }
            }
            other => return Err(Error::Invalid(format!("{other:?} is not a write"))),
        })
    });
    Ok(Prepared {
        partition: placed.partition,
        op,
        targets,
        change,
    })
}

/// Carries out many requests, answering each in order. Writes to one partition from one
/// session's datacenter share log entries (group commit): each change is made on the
/// primary's state with the changes before it applied, each with its audit record, and
/// all of them are committed at once (one entry, one fsync per replica) or fail together.
/// A change that fails alone (a UPN taken, an object not found) fails only its request,
/// and its failure record goes in the same entry. Everything else runs one at a time,
/// first (the requests of a batch came in concurrently: none is ordered before another).
pub(crate) fn execute_many(
    d: &mut Embedded,
    batch: Vec<(Envelope, Request)>,
) -> Vec<Result<Response>> {
    let mut answers: Vec<Option<Result<Response>>> = (0..batch.len()).map(|_| None).collect();
    // Groups by (partition, session's datacenter), in arrival order.
    let mut groups: Vec<((u32, Option<String>), Vec<(usize, Envelope, Prepared)>)> = Vec::new();
    for (i, (env, req)) in batch.into_iter().enumerate() {
        if !shares_entries(&req) {
            answers[i] = Some(execute(d, &env, req, &mut |_| {}));
            continue;
        }
        match prepare(d, req) {
            Err(e) => answers[i] = Some(Err(e)),
            Ok(w) => {
                let key = (w.partition, env.datacenter.clone());
                match groups.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, g)) => g.push((i, env, w)),
                    None => groups.push((key, vec![(i, env, w)])),
                }
            }
        }
    }
    for ((partition, session_dc), group) in groups {
        for (i, got) in write_group(d, partition, session_dc.as_deref(), group) {
            answers[i] = Some(got);
        }
    }
    answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err(Error::Storage("a request was not answered".into()))))
        .collect()
}

/// One log entry for many writes to `partition` (see `execute_many`).
fn write_group(
    d: &mut Embedded,
    partition: u32,
    session_dc: Option<&str>,
    group: Vec<(usize, Envelope, Prepared)>,
) -> Vec<(usize, Result<Response>)> {
    let mut failed_whole = Vec::new();
    let mut members = Vec::new();
    for (i, env, w) in group {
        let rec = d.record(&env, &w.op, w.targets.clone(), "ok");
        failed_whole.push((i, env, w.op, w.targets));
        members.push((rec, w.change));
    }
    let written = d.cluster.write(partition, session_dc, move |r| {
        let mut ops: Vec<Op> = Vec::new();
        let mut outs = Vec::with_capacity(members.len());
        for (rec, change) in members {
            let (more, out) = {
                let store = Overlay::new(r, &ops);
                let mut t = Txn::new(&store);
                let mut ok = rec.clone();
                match change(&mut t, &mut ok.targets) {
                    Ok(reply) => {
                        audit::append(&mut t, ok)?;
                        (t.into_ops(), Ok(reply))
                    }
                    // Its failure is recorded beside the others' changes (malformed input
                    // is refused without a record).
                    Err(e) => {
                        let mut t = Txn::new(&store);
                        if !refused(&e) {
                            audit::append(
                                &mut t,
                                Record {
                                    outcome: e.to_string(),
                                    ..rec
                                },
                            )?;
                        }
                        (t.into_ops(), Err(e))
                    }
                }
            };
            ops.extend(more);
            outs.push(out);
        }
        Ok((ops, outs))
    });
    match written {
        Ok((outs, token)) => failed_whole
            .into_iter()
            .zip(outs)
            .map(|((i, ..), out)| {
                let answer = out.map(|reply| Response {
                    reply,
                    token: Some(token.clone()),
                    served_by: None,
                });
                (i, answer)
            })
            .collect(),
        Err(e) => failed_whole
            .into_iter()
            .map(|(i, env, op, targets)| {
                if !refused(&e) {
                    d.record_outcome(&env, partition, &op, targets, &e.to_string());
                }
                (i, Err(e.clone()))
            })
            .collect(),
    }
}

/// The ids of the tenants a purge-expired names, which must share `partition`.
fn tenant_ids(d: &Embedded, req: &Request, partition: u32) -> Result<Vec<String>> {
    let Request::PurgeExpired { tenants } = req else {
        return Ok(Vec::new());
    };
    tenants
        .iter()
        .map(|name| {
            let placed = d.cluster.topology().tenant(name)?;
            if placed.partition != partition {
                return Err(Error::Invalid(format!(
                    "tenants {} are not all on partition {partition}: purge them one partition at a time",
                    tenants.join(", ")
                )));
            }
            Ok(placed.id.clone())
        })
        .collect()
}

/// The audit record's targets before the change runs: what the client named.
fn initial_targets(req: &Request) -> Vec<String> {
    match req {
        // A failure is recorded under the name the object was to have; a success under its
        // new ID.
        Request::CreateObject { fields, .. } => ["userPrincipalName", "displayName"]
            .iter()
            .find_map(|f| fields.get(*f).and_then(serde_json::Value::as_str))
            .map(str::to_string)
            .into_iter()
            .collect(),
        Request::UpdateObject { id, .. }
        | Request::DeleteObject { id, .. }
        | Request::RestoreDeleted { id, .. }
        | Request::PurgeDeleted { id, .. } => vec![id.clone()],
        Request::AddMember { group, member, .. } | Request::RemoveMember { group, member, .. } => {
            vec![group.clone(), member.clone()]
        }
        Request::PurgeExpired { tenants } => tenants.clone(),
        Request::Grant {
            principal,
            resource,
            ..
        }
        | Request::Revoke {
            principal,
            resource,
            ..
        } => vec![principal.clone(), resource.clone()],
        Request::RestoreFromBackup { id, backup, .. } => vec![id.clone(), backup.clone()],
        _ => Vec::new(),
    }
}

/// An object addressed by UPN is recorded in the audit trail by its object ID, as every
/// other record names it (`audit list --target ID` finds it).
fn by_object_id(targets: &mut Vec<String>, obj: Object) -> Reply {
    if let Some(id) = obj.get("id").and_then(serde_json::Value::as_str) {
        *targets = vec![id.to_string()];
    }
    Reply::Object(obj)
}

/// Targets named by UPN, recorded by object ID (each resolved in the transaction).
fn by_object_ids(t: &Txn, tid: &str, targets: &mut [String]) -> Result<()> {
    for target in targets.iter_mut() {
        *target = directory::resolve_id(t, tid, target)?.to_string();
    }
    Ok(())
}

impl Embedded {
    fn record(&self, env: &Envelope, op: &str, targets: Vec<String>, outcome: &str) -> Record {
        Record::new(
            &self.cluster.clock().now_graph(),
            &env.actor,
            op,
            targets,
            outcome,
            &env.correlation_id,
        )
    }

    /// A replicated write with its audit record in the same log entry (atomic with the
    /// change). `build` may change the targets (a created object's ID). When the write
    /// fails, a separate record with the error is written (best effort, `record_outcome`);
    /// malformed input (Invalid) is refused before anything is attempted and writes nothing.
    fn audited_write<T>(
        &mut self,
        env: &Envelope,
        partition: u32,
        op: &str,
        targets: Vec<String>,
        build: impl FnOnce(&mut Txn, &mut Vec<String>) -> Result<T>,
    ) -> Result<(T, Token)> {
        let mut rec = self.record(env, op, targets.clone(), "ok");
        let result = self
            .cluster
            .write(partition, env.datacenter.as_deref(), move |r| {
                let mut t = Txn::new(r);
                let out = build(&mut t, &mut rec.targets)?;
                audit::append(&mut t, rec)?;
                Ok((t.into_ops(), out))
            });
        if let Err(e) = &result {
            if !refused(e) {
                self.record_outcome(env, partition, op, targets, &e.to_string());
            }
        }
        result
    }

    /// A separate, small replicated write of one audit record: failed operations and
    /// cluster-level ones. If it cannot be written, a note says so and the operation's own
    /// result is left alone.
    pub(crate) fn record_outcome(
        &mut self,
        env: &Envelope,
        partition: u32,
        op: &str,
        targets: Vec<String>,
        outcome: &str,
    ) {
        let rec = self.record(env, op, targets, outcome);
        #[cfg(feature = "failpoints")]
        self.cluster.set_failpoint(None);
        // The operation's own partition first; when it cannot commit (the very failure being
        // recorded, often), any other partition keeps the record (`audit list` reads them all).
        let others = self
            .cluster
            .topology()
            .partitions
            .iter()
            .map(|p| p.id)
            .filter(|p| *p != partition);
        let order: Vec<u32> = std::iter::once(partition).chain(others).collect();
        let mut failures = Vec::new();
        for p in order {
            self.cluster.release_all();
            let rec = rec.clone();
            let r = self.cluster.write(p, None, move |r| {
                let mut t = Txn::new(r);
                audit::append(&mut t, rec)?;
                Ok((t.into_ops(), ()))
            });
            match r {
                // The record may stand where it went: writing it again elsewhere could make two.
                Err(e) if matches!(e, Error::OutcomeUnknown(_)) => {
                    self.notes.push(Note::Warning(format!(
                        "the audit record of {op} may or may not have been written to partition {p}: {e}"
                    )));
                    return;
                }
                Ok(_) if failures.is_empty() => return,
                Ok(_) => {
                    self.notes.push(Note::Info(format!(
                        "the audit record of {op} went to partition {p} ({})",
                        failures.join("; ")
                    )));
                    return;
                }
                Err(e) => failures.push(format!("partition {p}: {e}")),
            }
        }
        self.notes.push(Note::Warning(format!(
            "the audit record of {op} could not be written to any partition: {}",
            failures.join("; ")
        )));
    }
}

/// Malformed input is refused before anything is attempted: no audit record.
pub(crate) fn refused(e: &Error) -> bool {
    matches!(e, Error::Invalid(_))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::directory::ObjectType;

    fn fields(v: serde_json::Value) -> Object {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn only_a_bulk_load_streams_progress() {
        let import = Request::Import {
            tenant: "contoso".into(),
            file: "users.jsonl".into(),
            batch_size: 100,
            lines: Vec::new(),
        };
        let create = Request::CreateObject {
            tenant: "contoso".into(),
            object_type: ObjectType::User,
            fields: fields(json!({"displayName": "Ada", "userPrincipalName": "ada@c.com"})),
        };
        let read = Request::GetObject {
            tenant: "contoso".into(),
            object_type: ObjectType::User,
            id: "ada@c.com".into(),
        };
        assert!(streams_progress(&import));
        assert!(!streams_progress(&create), "{create:?}");
        assert!(!streams_progress(&read), "{read:?}");
    }

    #[test]
    fn audit_targets_start_as_the_client_named_them() {
        let t = || "contoso".to_string();
        let cases: Vec<(Request, Vec<&str>)> = vec![
            (
                Request::CreateObject {
                    tenant: t(),
                    object_type: ObjectType::User,
                    fields: fields(json!({"displayName": "Ada", "userPrincipalName": "ada@c.com"})),
                },
                vec!["ada@c.com"],
            ),
            (
                Request::CreateObject {
                    tenant: t(),
                    object_type: ObjectType::Group,
                    fields: fields(json!({"displayName": "Finance"})),
                },
                vec!["Finance"],
            ),
            (
                Request::CreateObject {
                    tenant: t(),
                    object_type: ObjectType::Device,
                    fields: Object::new(),
                },
                vec![],
            ),
            (
                Request::AddMember {
                    tenant: t(),
                    group: "g".into(),
                    member: "m".into(),
                },
                vec!["g", "m"],
            ),
            (
                Request::Revoke {
                    tenant: t(),
                    principal: "p".into(),
                    resource: "r".into(),
                    action: "*".into(),
                },
                vec!["p", "r"],
            ),
            (
                Request::PurgeExpired {
                    tenants: vec![t(), "fabrikam".into()],
                },
                vec!["contoso", "fabrikam"],
            ),
            (
                Request::RestoreFromBackup {
                    tenant: t(),
                    backup: "2026-12-01".into(),
                    checkpoint: "/x".into(),
                    id: "i".into(),
                },
                vec!["i", "2026-12-01"],
            ),
        ];
        for (req, want) in cases {
            assert_eq!(initial_targets(&req), want, "{req:?}");
        }
    }

    #[test]
    fn only_malformed_input_is_refused_without_a_record() {
        assert!(refused(&Error::Invalid("x".into())));
        for e in [
            Error::NotFound("x".into()),
            Error::Conflict("x".into()),
            Error::Unavailable("x".into()),
            Error::OutcomeUnknown("x".into()),
            Error::Corrupt("x".into()),
            Error::Fenced("x".into()),
            Error::Damaged("x".into()),
            Error::Storage("x".into()),
        ] {
            assert!(!refused(&e), "{e:?}");
        }
    }
}
