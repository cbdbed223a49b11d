//! The two-person rule: what cannot be undone is recorded as a request (`two_person`),
//! listed (`dirctl requests`), and carried out once a second operator approves it
//! (`dirctl approve`).

use anyhow::{Context as _, Result};
use serde_json::json;

use engine::operators::{self, Need, Pending, Role};
use engine::Error;

use super::{cp, not_permitted, now, outcome, prove, time_text};
use crate::context::Ctx;
use crate::opt::{ApproveArgs, Global};
use crate::output;

/// This run's dirctl arguments, as a request under the two-person rule keeps them.
fn this_run() -> Vec<String> {
    std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
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
    // Through servers alone, the servers hold the rule (they refuse what needs it).
    if ctx.topology().operators.is_empty() || ctx.servers_decide() {
        return Ok(None);
    }
    let args = this_run();
    let now = now()?;
    let cp = cp(g)?;
    if let Ok(id) = std::env::var(APPROVED_VAR) {
        let mut done = String::new();
        cp.update(&mut |t| {
            let p = operators::approved_for(&t.pending, &id, &args, now)
                .map_err(Error::NotPermitted)?;
            done = format!(
                "request {id} by {}, approved by {}",
                p.operator,
                p.approved_by.clone().unwrap_or_default()
            );
            t.pending.retain(|p| p.id != id && p.expires > now);
            Ok(())
        })?;
        return Ok(Some(done));
    }
    let who = ctx
        .identity
        .clone()
        .ok_or_else(|| not_permitted(format!("{what} needs a login")))?;
    let p = Pending {
        id: uuid::Uuid::new_v4().to_string()[..8].to_string(),
        operator: who,
        what: what.to_string(),
        args,
        created: now,
        expires: now + operators::APPROVAL_SECS,
        approved_by: None,
    };
    cp.update(&mut |t| {
        t.pending.retain(|p| p.expires > now);
        t.pending.push(p.clone());
        Ok(())
    })?;
    ctx.audit_outcome(
        0,
        "operator.request",
        vec![p.id.clone(), what.to_string()],
        &format!("waits for a second operator until {}", time_text(p.expires)),
    );
    Err(not_permitted(format!(
        "{what} cannot be undone and needs a second operator (two-person rule): request {} recorded; another elevated operator carries it out with `dirctl approve {} --otp CODE` before {}",
        p.id,
        p.id,
        time_text(p.expires)
    )))
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
    let now = now()?;
    let Some(p) = ctx
        .topology()
        .pending
        .iter()
        .find(|p| p.id == a.id)
        .cloned()
    else {
        return Err(Error::NotFound(format!(
            "no request {} (carried out already, expired, or never made)",
            a.id
        ))
        .into());
    };
    if let Err(why) = operators::may_approve(&p, &who, now) {
        ctx.audit_outcome(
            0,
            "operator.approve",
            vec![p.id.clone()],
            &format!("refused: {why}"),
        );
        return Err(not_permitted(why));
    }
    ctx.require(
        &Need::Elevated(Role::Operator),
        &format!("approving request {}", p.id),
    )?;
    let cp = cp(g)?;
    prove(&mut ctx, cp.as_ref(), &who, &a.otp, "operator.approve")?;
    let r = cp.update(&mut |t| {
        let Some(q) = t.pending.iter_mut().find(|q| q.id == p.id) else {
            return Err(Error::NotFound(format!("no request {}", p.id)));
        };
        operators::may_approve(q, &who, now).map_err(Error::NotPermitted)?;
        q.approved_by = Some(who.clone());
        Ok(())
    });
    ctx.audit_outcome(
        0,
        "operator.approve",
        vec![
            p.id.clone(),
            p.what.clone(),
            format!("requested by {}", p.operator),
        ],
        &outcome(&r),
    );
    r?;
    eprintln!(
        "approved request {} by {}: {}; carrying it out",
        p.id, p.operator, p.what
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
