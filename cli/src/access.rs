//! `dirctl access grant|revoke|list|check`: access grants. Checks are reads (secondaries).

use anyhow::Result;
use engine::access::Effect;
use engine::request::Request;
use serde_json::json;

use crate::context::Ctx;
use crate::opt::{AccessCmd, Global, GrantTarget, Output};
use crate::output;
use crate::reply;

const COLUMNS: [&str; 5] = ["principal", "principalType", "resource", "action", "effect"];

pub fn run(g: &Global, c: AccessCmd) -> Result<()> {
    let mut ctx = Ctx::open(g)?;
    let out = ctx.output;
    match c {
        AccessCmd::Grant {
            target:
                GrantTarget {
                    tenant,
                    principal,
                    resource,
                },
            allow: _,
            deny,
            action,
        } => {
            let effect = if deny { Effect::Deny } else { Effect::Allow };
            let r = ctx.request(
                format!("grant {principal} on {resource}"),
                Request::Grant {
                    tenant,
                    principal,
                    resource,
                    action,
                    effect,
                },
            )?;
            let (grant, token) = (reply::object(r.reply)?, reply::token(r.token)?);
            output::emit(out, &json!({"grant": grant, "replicaToken": token}), || {
                output::object(&grant, &[("replicaToken", token.to_string())])
            })
        }
        AccessCmd::Revoke {
            target:
                GrantTarget {
                    tenant,
                    principal,
                    resource,
                },
            action,
        } => {
            let r = ctx.request(
                format!("revoke the grant of {principal} on {resource}"),
                Request::Revoke {
                    tenant,
                    principal,
                    resource,
                    action,
                },
            )?;
            let (grant, token) = (reply::object(r.reply)?, reply::token(r.token)?);
            output::emit(
                out,
                &json!({"revoked": grant, "replicaToken": token}),
                || format!("revoked\n{}", output::object(&grant, &[])),
            )
        }
        AccessCmd::List { tenant, principal } => {
            let r = ctx.request("list grants", Request::ListGrants { tenant, principal })?;
            let grants = reply::objects(r.reply)?;
            output::emit(out, &json!({"grants": grants}), || {
                output::objects_table(&COLUMNS, &grants)
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
    let r = ctx.request(
        format!("check {user} on {resource}"),
        Request::CheckAccess {
            tenant,
            user,
            resource,
            action,
        },
    )?;
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
