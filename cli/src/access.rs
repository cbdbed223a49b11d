//! `dirctl access grant|revoke|list|check`: access grants. Checks are reads (secondaries).

use anyhow::{Context as _, Result};
use engine::access::{self, Effect};
use serde_json::json;

use crate::context::Ctx;
use crate::opt::{AccessCmd, Global};
use crate::output;

const COLUMNS: [&str; 5] = ["principal", "principalType", "resource", "action", "effect"];

pub fn run(g: &Global, c: AccessCmd) -> Result<()> {
    let mut ctx = Ctx::open(g)?;
    let out = ctx.output;
    let now = ctx.cluster.clock().now_graph();
    match c {
        AccessCmd::Grant {
            tenant,
            principal,
            resource,
            allow: _,
            deny,
            action,
        } => {
            let effect = if deny { Effect::Deny } else { Effect::Allow };
            let (tid, partition) = ctx.tenant_partition(&tenant)?;
            let targets = vec![principal.clone(), resource.clone()];
            let (grant, token) = ctx
                .audited_write(partition, "access.grant", targets, |t, _| {
                    access::grant(t, &tid, &principal, &resource, &action, effect, &now)
                })
                .with_context(|| format!("grant {principal} on {resource}"))?;
            output::emit(out, &json!({"grant": grant, "replicaToken": token}), || {
                output::object(&grant, &[("replicaToken", token.to_string())])
            })
        }
        AccessCmd::Revoke {
            tenant,
            principal,
            resource,
            action,
        } => {
            let (tid, partition) = ctx.tenant_partition(&tenant)?;
            let targets = vec![principal.clone(), resource.clone()];
            let (grant, token) = ctx
                .audited_write(partition, "access.revoke", targets, |t, _| {
                    access::revoke(t, &tid, &principal, &resource, &action)
                })
                .with_context(|| format!("revoke the grant of {principal} on {resource}"))?;
            output::emit(
                out,
                &json!({"revoked": grant, "replicaToken": token}),
                || format!("revoked\n{}", output::object(&grant, &[])),
            )
        }
        AccessCmd::List { tenant, principal } => {
            let (tid, partition) = ctx.tenant_partition(&tenant)?;
            let (grants, _) = ctx
                .read(partition, |r| access::list(r, &tid, principal.as_deref()))
                .context("list grants")?;
            let rows: Vec<_> = grants.iter().map(|g| output::cells(g, &COLUMNS)).collect();
            output::emit(out, &json!({"grants": grants}), || {
                output::table(&COLUMNS, &rows)
            })
        }
        AccessCmd::Check {
            tenant,
            user,
            resource,
            action,
        } => {
            let (tid, partition) = ctx.tenant_partition(&tenant)?;
            let (d, served) = ctx
                .read(partition, |r| {
                    access::check(r, &tid, &user, &resource, &action)
                })
                .with_context(|| format!("check {user} on {resource}"))?;
            let answer = if d.allowed { "allowed" } else { "denied" };
            output::emit(
                out,
                &json!({"decision": answer, "allowed": d.allowed, "grant": d.grant,
                        "reason": d.reason, "principalsChecked": d.principals_checked,
                        "servedBy": served}),
                || {
                    let grant = d
                        .grant
                        .as_ref()
                        .map(|g| output::cells(g, &COLUMNS).join(" "))
                        .unwrap_or_else(|| "none".into());
                    format!(
                        "{answer}: {}\ngrant     {grant}\nservedBy  {}\n",
                        d.reason, served.datacenter
                    )
                },
            )
        }
    }
}
