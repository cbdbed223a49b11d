//! `dirctl deleted list|get|restore|purge|purge-expired`: the recycle bin (promise 7).

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use engine::directory::ObjectType;
use engine::recycle;
use serde_json::{json, Value};

use crate::context::{confirm, Ctx};
use crate::opt::{DeletedCmd, Global};
use crate::output;

const COLUMNS: [&str; 5] = [
    "id",
    "@odata.type",
    "displayName",
    "userPrincipalName",
    "deletedDateTime",
];

pub fn run(g: &Global, c: DeletedCmd) -> Result<()> {
    let mut ctx = Ctx::open(g)?;
    let now = ctx.cluster.clock().now();
    let out = ctx.output;
    match c {
        DeletedCmd::List {
            tenant,
            object_type,
        } => {
            let ty = object_type.as_deref().map(ObjectType::parse).transpose()?;
            let tenants: Vec<String> = match tenant {
                Some(t) => vec![t],
                None => ctx.cluster.topology().tenants.keys().cloned().collect(),
            };
            let mut rows = Vec::new();
            let mut all = Vec::new();
            for name in tenants {
                let (tid, partition) = ctx.tenant_partition(&name)?;
                let (tombs, _) = ctx
                    .read(partition, |r| recycle::list(r, &tid, now))
                    .with_context(|| format!("list deleted objects of tenant {name}"))?;
                for t in tombs
                    .into_iter()
                    .filter(|t| ty.is_none() || t.object_type() == ty)
                {
                    let mut row = output::cells(&t.object, &COLUMNS);
                    row.push(name.clone());
                    row.push(if t.expired { "expired" } else { "restorable" }.into());
                    rows.push(row);
                    let mut v = t.to_json();
                    v["tenant"] = Value::from(name.clone());
                    all.push(v);
                }
            }
            let mut cols = COLUMNS.to_vec();
            cols.extend(["tenant", "state"]);
            output::emit(out, &json!({"deleted": all}), || {
                output::table(&cols, &rows)
            })
        }
        DeletedCmd::Get { id, tenant } => {
            let (tid, partition) = ctx.tenant_partition(&tenant)?;
            let (t, _) = ctx
                .read(partition, |r| recycle::get(r, &tid, &id, now))
                .with_context(|| format!("get deleted object {id}"))?;
            let v = t.to_json();
            output::emit(out, &json!({"deleted": v}), || {
                output::object(v.as_object().unwrap_or(&t.object), &[])
            })
        }
        DeletedCmd::Restore {
            id,
            tenant,
            new_upn,
        } => {
            let (tid, partition) = ctx.tenant_partition(&tenant)?;
            let (done, token) = ctx
                .audited_write(partition, "deleted.restore", vec![id.clone()], |t, _| {
                    recycle::restore(t, &tid, &id, new_upn.as_deref(), now)
                })
                .with_context(|| format!("restore deleted object {id}"))?;
            output::emit(
                out,
                &json!({"object": done.object, "restoredMemberships": done.memberships,
                        "skippedMemberships": done.skipped, "replicaToken": token}),
                || {
                    let mut s =
                        output::object(&done.object, &[("replicaToken", token.to_string())]);
                    for m in &done.memberships {
                        s.push_str(&format!("restored   {m}\n"));
                    }
                    for m in &done.skipped {
                        s.push_str(&format!("not restored: {m}\n"));
                    }
                    s
                },
            )
        }
        DeletedCmd::Purge { id, tenant, yes } => {
            confirm(yes, &format!("purge of deleted object {id}"))?;
            let (tid, partition) = ctx.tenant_partition(&tenant)?;
            let (t, token) = ctx
                .audited_write(partition, "deleted.purge", vec![id.clone()], |t, _| {
                    recycle::purge(t, &tid, &id, now)
                })
                .with_context(|| format!("purge deleted object {id}"))?;
            output::emit(
                out,
                &json!({"purged": [t.id()], "replicaToken": token}),
                || format!("purged {} for good\nreplicaToken  {token}\n", t.id()),
            )
        }
        DeletedCmd::PurgeExpired { tenant, yes } => {
            confirm(yes, "purge-expired")?;
            let mut by_partition: BTreeMap<u32, Vec<(String, String)>> = BTreeMap::new();
            let tenants: Vec<String> = match tenant {
                Some(t) => vec![t],
                None => ctx.cluster.topology().tenants.keys().cloned().collect(),
            };
            for name in tenants {
                let (tid, partition) = ctx.tenant_partition(&name)?;
                by_partition.entry(partition).or_default().push((name, tid));
            }
            let mut purged = Vec::new();
            for (partition, tenants) in by_partition {
                let names: Vec<String> = tenants.iter().map(|(n, _)| n.clone()).collect();
                let (ids, _) = ctx
                    .audited_write(partition, "deleted.purge-expired", names, |t, targets| {
                        let mut ids = Vec::new();
                        for (_, tid) in &tenants {
                            ids.extend(recycle::purge_expired(t, tid, now)?);
                        }
                        targets.extend(ids.iter().cloned());
                        Ok(ids)
                    })
                    .with_context(|| format!("purge expired objects on partition {partition}"))?;
                purged.extend(ids);
            }
            output::emit(out, &json!({"purged": purged}), || {
                let mut s = format!("purged {} expired deleted object(s)\n", purged.len());
                for id in &purged {
                    s.push_str(&format!("  {id}\n"));
                }
                s
            })
        }
    }
}
