//! `dirctl access grant|revoke|list|check`: access grants. Checks are reads (secondaries).

use anyhow::{Context as _, Result};
use engine::access::Effect;
use engine::request::Request;
use serde_json::json;

use crate::context::Ctx;
use crate::opt::{AccessCmd, Global, Output};
use crate::output;
use crate::reply;

const COLUMNS: [&str; 5] = ["principal", "principalType", "resource", "action", "effect"];

pub fn run(g: &Global, c: AccessCmd) -> Result<()> {
    let mut ctx = Ctx::open(g)?;
    let out = ctx.output;
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
            ctx.tenant_partition(&tenant)?;
            let r = ctx
                .execute(Request::Grant {
                    tenant,
                    principal: principal.clone(),
                    resource: resource.clone(),
                    action,
                    effect,
                })
                .with_context(|| format!("grant {principal} on {resource}"))?;
            let (grant, token) = (reply::object(r.reply)?, reply::token(r.token)?);
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
            ctx.tenant_partition(&tenant)?;
            let r = ctx
                .execute(Request::Revoke {
                    tenant,
                    principal: principal.clone(),
                    resource: resource.clone(),
                    action,
                })
                .with_context(|| format!("revoke the grant of {principal} on {resource}"))?;
            let (grant, token) = (reply::object(r.reply)?, reply::token(r.token)?);
            output::emit(
                out,
                &json!({"revoked": grant, "replicaToken": token}),
                || format!("revoked\n{}", output::object(&grant, &[])),
            )
        }
        AccessCmd::List { tenant, principal } => {
            ctx.tenant_partition(&tenant)?;
            let r = ctx
                .execute(Request::ListGrants { tenant, principal })
                .context("list grants")?;
            let grants = reply::objects(r.reply)?;
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
        } => check(&mut ctx, out, tenant, user, resource, action),
    }
}

/// `access check`: whether `user` may do `action` on `resource`, and by which grant (a read).
fn check(
    ctx: &mut Ctx,
    out: Output,
    tenant: String,
    user: String,
    resource: String,
    action: String,
) -> Result<()> {
    ctx.tenant_partition(&tenant)?;
    let r = ctx
        .execute(Request::CheckAccess {
            tenant,
            user: user.clone(),
            resource: resource.clone(),
            action,
        })
        .with_context(|| format!("check {user} on {resource}"))?;
    let (d, served) = (reply::decision(r.reply)?, reply::served_by(r.served_by)?);
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
