//! `dirctl tenant create|list`: tenants and their placement on partitions.

use anyhow::Result;
use engine::request::{Reply, Request};
use serde_json::json;

use crate::context::Ctx;
use crate::opt::{Global, TenantCmd};
use crate::output;
use crate::reply;

pub fn tenant(g: &Global, c: TenantCmd) -> Result<()> {
    let mut ctx = Ctx::open(g)?;
    match c {
        TenantCmd::Create { name, partition } => {
            let r = ctx
                .execute(Request::CreateTenant {
                    name: name.clone(),
                    partition,
                })
                .map_err(|e| {
                    // The record may stand (outcome unknown): the placement stays with it.
                    if e.chain().any(|c| {
                        matches!(c.downcast_ref(), Some(engine::Error::OutcomeUnknown(_)))
                    }) {
                        e.context(format!(
                            "tenant {name} stays placed in cluster.json: its record may have been written"
                        ))
                    } else {
                        e
                    }
                })?;
            let token = reply::token(r.token)?;
            let Reply::Tenant { record, partition } = r.reply else {
                return Err(anyhow::anyhow!(
                    "the directory answered {:?} to a tenant create",
                    r.reply
                ));
            };
            let id = record
                .get("id")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_string();
            output::emit(
                g.output,
                &json!({"tenant": record, "name": name, "partition": partition, "replicaToken": token}),
                || {
                    format!("created tenant {name} ({id}) on partition {partition}\nreplicaToken  {token}\n")
                },
            )
        }
        TenantCmd::List => {
            let mut placed = Vec::new();
            for name in ctx.tenant_names() {
                let (id, partition) = ctx.tenant_partition(&name)?;
                placed.push((name, id, partition));
            }
            let list: Vec<_> = placed
                .iter()
                .map(|(n, id, p)| json!({"name": n, "id": id, "partition": p}))
                .collect();
            output::emit(g.output, &json!(list), || {
                output::table_by(&["name", "id", "partition"], &placed, |(n, id, p)| {
                    output::row(&[n, id, p])
                })
            })
        }
    }
}
