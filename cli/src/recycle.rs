//! `dirctl deleted list|get|restore|purge|purge-expired`: the recycle bin (promise 7).

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use engine::directory::ObjectType;
use engine::request::Request;
use serde_json::{json, Value};

use crate::context::{confirm, Ctx};
use crate::opt::{DeletedCmd, Global, Output};
use crate::output;
use crate::reply;

const COLUMNS: [&str; 5] = [
    "id",
    "@odata.type",
    "displayName",
    "userPrincipalName",
    "deletedDateTime",
];

pub fn run(g: &Global, c: DeletedCmd) -> Result<()> {
    let mut ctx = Ctx::open(g)?;
    let out = ctx.output;
    match c {
        DeletedCmd::List {
            tenant,
            object_type,
        } => list(&mut ctx, out, tenant, object_type),
        DeletedCmd::Get { id, tenant } => {
            let what = format!("get deleted object {id}");
            let r = ctx.request(what, Request::GetDeleted { tenant, id })?;
            let t = reply::tombstone(r.reply)?;
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
            let what = format!("restore deleted object {id}");
            let r = ctx.request(
                what,
                Request::RestoreDeleted {
                    tenant,
                    id,
                    new_upn,
                },
            )?;
            let (done, token) = (reply::restored(r.reply)?, reply::token(r.token)?);
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
            let what = format!("purge deleted object {id}");
            let r = ctx.request(what, Request::PurgeDeleted { tenant, id })?;
            let (ids, token) = (reply::purged(r.reply)?, reply::token(r.token)?);
            output::emit(out, &json!({"purged": ids, "replicaToken": token}), || {
                format!("purged {} for good\nreplicaToken  {token}\n", ids.join(" "))
            })
        }
        DeletedCmd::PurgeExpired { tenant, yes } => purge_expired(&mut ctx, out, tenant, yes),
    }
}

/// `deleted list`: the recycle bin of one tenant, or of every tenant.
fn list(
    ctx: &mut Ctx,
    out: Output,
    tenant: Option<String>,
    object_type: Option<String>,
) -> Result<()> {
    let ty = object_type.as_deref().map(ObjectType::parse).transpose()?;
    let tenants: Vec<String> = match tenant {
        Some(t) => vec![t],
        None => ctx.tenant_names(),
    };
    let mut rows = Vec::new();
    let mut all = Vec::new();
    for name in tenants {
        let r = ctx.request(
            format!("list deleted objects of tenant {name}"),
            Request::ListDeleted {
                tenant: name.clone(),
            },
        )?;
        let tombs = reply::tombstones(r.reply)?;
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

/// `deleted purge-expired`: one request (one log entry) per partition.
fn purge_expired(ctx: &mut Ctx, out: Output, tenant: Option<String>, yes: bool) -> Result<()> {
    confirm(yes, "purge-expired")?;
    let mut by_partition: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let tenants: Vec<String> = match tenant {
        Some(t) => vec![t],
        None => ctx.tenant_names(),
    };
    for name in tenants {
        let (_, partition) = ctx.tenant_partition(&name)?;
        by_partition.entry(partition).or_default().push(name);
    }
    let mut purged = Vec::new();
    for (partition, tenants) in by_partition {
        let r = ctx
            .execute(Request::PurgeExpired { tenants })
            .with_context(|| format!("purge expired objects on partition {partition}"))?;
        purged.extend(reply::purged(r.reply)?);
    }
    output::emit(out, &json!({"purged": purged}), || {
        let mut s = format!("purged {} expired deleted object(s)\n", purged.len());
        for id in &purged {
            s.push_str(&format!("  {id}\n"));
        }
        s
    })
}
