//! The two-person rule: what cannot be undone is recorded as a request (`two_person`),
//! listed (`dirctl requests`), and carried out once a second operator approves it
//! (`dirctl approve`).

use anyhow::{Context as _, Result};
use serde_json::json;

use engine::operators::{Need, Role};
use engine::Error;

use server::proof;

use super::{cp, not_permitted, now, time_text};
use crate::context::Ctx;
use crate::opt::{ApproveArgs, Global};
use crate::output;

/// Where a run connects and whose login it presents: never part of a request's arguments
/// (the approver's run connects as the approver does).
const CONNECTION_FLAGS: [&str; 5] = [
    "--endpoints",
    "--login-file",
    "--cluster",
    "--control-plane",
    "--session",
];

/// `args` without the connection flags and their values.
fn without_connection(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip = false;
    for a in args {
        if std::mem::take(&mut skip) {
            continue;
        }
        let flag = a.split('=').next().unwrap_or_default();
        if CONNECTION_FLAGS.contains(&flag) {
            skip = !a.contains('=');
            continue;
        }
        out.push(a.clone());
    }
    out
}

/// This run's dirctl arguments, as a request under the two-person rule keeps them.
fn this_run() -> Vec<String> {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    without_connection(&args)
}

/// The variable `approve` sets for the run that carries out an approved request.
const APPROVED_VAR: &str = "DIRCTL_APPROVED";

/// The request this run carries out, for its audit record (`approved request ID`).
pub fn approved_request() -> Option<String> {
    std::env::var(APPROVED_VAR)
        .ok()
        .map(|id| format!("approved request {id}"))
}

/// The two-person rule for `what` (something that cannot be undone), on a cluster with
/// operators: a run that carries out an approved request (`dirctl approve`) goes on, and
/// says who asked and who approved, for its audit record; any other run records a request
/// and is refused until a second operator approves it.
pub fn two_person(g: &Global, ctx: &mut Ctx, what: &str) -> Result<Option<String>> {
    if ctx.topology().operators.is_empty() {
        return Ok(None);
    }
    let args = this_run();
    let now = now()?;
    let correlation = ctx.correlation_id.clone();
    if let Ok(id) = std::env::var(APPROVED_VAR) {
        let who = ctx
            .identity
            .clone()
            .ok_or_else(|| not_permitted(format!("carrying out request {id} needs a login")))?;
        // Through the servers, they take the approval for this run's failovers.
        let done = match (ctx.servers_decide(), ctx.remote_mut()) {
            (true, Some(remote)) => remote.carry_out(&id, &args, what, &correlation)?,
            _ => proof::carry_out(cp(g)?.as_ref(), &who, &id, &args, what, now)?,
        };
        return Ok(Some(done));
    }
    let who = ctx
        .identity
        .clone()
        .ok_or_else(|| not_permitted(format!("{what} needs a login")))?;
    let refusal = match ctx.remote() {
        Some(remote) if ctx.servers_decide() => {
            remote
                .connection()
                .request_approval(what, &args, &correlation)
        }
        _ => {
            let cp = cp(g)?;
            proof::request(
                cp.as_ref(),
                &who,
                what,
                args,
                now,
                &mut |_, op, targets, outcome| ctx.audit_outcome(0, op, targets, outcome),
            )?
        }
    };
    Err(refusal.into())
}

/// `dirctl approve ID --otp CODE`: a second operator approves a request and carries it out
/// in a dirctl run of the request's own arguments (its exit code is this one's).
pub fn approve(g: &Global, a: ApproveArgs) -> Result<()> {
    let mut ctx = Ctx::open(g)?;
    let Some(who) = ctx.identity.clone() else {
        return Err(Error::Invalid(
            "this cluster has no operators: there is nothing to approve".into(),
        )
        .into());
    };
    let p = match ctx.remote() {
        // The server checks the approver's elevation and code, and records the approval.
        Some(remote) if ctx.servers_decide() => {
            let correlation = ctx.correlation_id.clone();
            remote.connection().approve(&a.id, &a.otp, &correlation)?
        }
        _ => {
            ctx.require(
                &Need::Elevated(Role::Operator),
                &format!("approving request {}", a.id),
            )?;
            let cp = cp(g)?;
            let now = now()?;
            proof::approve(
                cp.as_ref(),
                &who,
                &a.id,
                &a.otp,
                now,
                &mut |_, op, targets, outcome| ctx.audit_outcome(0, op, targets, outcome),
            )?
        }
    };
    // A request whose arguments would connect elsewhere (and present the approver's login
    // there) was not made by dirctl: refused.
    if without_connection(&p.args) != p.args {
        return Err(not_permitted(format!(
            "request {} names where to connect ({}): not carried out",
            p.id,
            p.args.join(" ")
        )));
    }
    eprintln!(
        "approved request {} by {}: {}; carrying it out: dirctl {}",
        p.id,
        p.operator,
        p.what,
        p.args.join(" ")
    );
    // The replicas this process holds are let go before the run that needs them.
    drop(ctx);
    let exe = std::env::current_exe().context("find dirctl's own binary")?;
    let status = std::process::Command::new(exe)
        .args(&p.args)
        .env(APPROVED_VAR, &p.id)
        .status()
        .context("run the approved command")?;
    std::process::exit(status.code().unwrap_or(1));
}

/// `dirctl requests`: what waits for a second operator, and until when.
pub fn requests(g: &Global) -> Result<()> {
    let ctx = Ctx::open(g)?;
    let now = now()?;
    let rows: Vec<serde_json::Value> = ctx
        .topology()
        .pending
        .iter()
        .filter(|p| p.expires > now && p.approved_by.is_none())
        .map(|p| {
            json!({
                "id": p.id,
                "operator": p.operator,
                "what": p.what,
                "expires": time_text(p.expires),
            })
        })
        .collect();
    output::emit(g.output, &json!(rows), || {
        output::table_by(&["id", "operator", "what", "expires"], &rows, |r| {
            ["id", "operator", "what", "expires"]
                .iter()
                .map(|k| r[*k].as_str().unwrap_or_default().to_string())
                .collect()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::without_connection;

    #[test]
    fn a_request_keeps_no_connection_flags() {
        let args: Vec<String> = [
            "--endpoints",
            "http://evil:1",
            "failover",
            "--login-file=/x",
            "--partition",
            "0",
            "--cluster",
            "/c",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(without_connection(&args), ["failover", "--partition", "0"]);
    }
}
