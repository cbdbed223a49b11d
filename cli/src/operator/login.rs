//! Proof and privilege: `login`, `logout`, the login a command presents (`proven`), a
//! code judged (`prove`), `elevate` and `elevation list|revoke`.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde_json::json;

use engine::operators::{self, Elevation, Need, Role};
use engine::topology::Topology;
use engine::Error;
use server::graph::token;
use server::identity::{self, Login};
use server::proof;

use super::{cp, not_permitted, now, outcome, time_text};
use crate::context::Ctx;
use crate::opt::{ElevateArgs, ElevationCmd, Global, LoginArgs};
use crate::output;

/// Where this machine keeps its login to `cluster`.
fn login_path(g: &Global, cluster: &str) -> Result<PathBuf> {
    if let Some(p) = &g.login_file {
        return Ok(p.clone());
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            Error::Invalid(
                "no HOME to keep the login in: pass --login-file FILE or set DIRCTL_LOGIN_FILE"
                    .into(),
            )
        })?;
    Ok(PathBuf::from(home)
        .join(".dirctl")
        .join(format!("login-{cluster}.json")))
}

/// The operator this machine's login proves for the cluster of `topology`; else why not.
pub fn proven(g: &Global, topology: &Topology) -> std::result::Result<String, String> {
    let login = presented(g, topology)?;
    let cp = cp(g).map_err(|e| format!("the login cannot be checked: {e:#}"))?;
    let seed = cp
        .secret(token::SECRET)
        .map_err(|e| e.to_string())?
        .ok_or("the cluster has no signing key, so no login of it can be valid")?;
    let now = now().map_err(|e| e.to_string())?;
    let name = identity::verify_login(&seed, &topology.cluster_id, &login, now)?;
    match topology.operators.get(&name) {
        Some(o) => operators::login_stands(&name, o, login.claims.from).map(|()| name),
        None => Ok(name),
    }
}

/// The login this machine keeps for the cluster of `topology`, unchecked (the servers
/// check what each call presents); else why there is none.
pub fn presented(g: &Global, topology: &Topology) -> std::result::Result<Login, String> {
    let path = login_path(g, &topology.cluster_id).map_err(|e| e.to_string())?;
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("no login at {}", path.display()))
        }
        Err(e) => return Err(format!("read {}: {e}", path.display())),
    };
    let login: Login = serde_json::from_slice(&text).map_err(|e| {
        format!(
            "the login at {} is damaged ({e}); log in again",
            path.display()
        )
    })?;
    Ok(login)
}

/// The audit records of a proof, written as `ctx`'s (or as the operator it proved).
fn auditing(ctx: &mut Ctx) -> impl FnMut(Option<&str>, &str, Vec<String>, &str) + '_ {
    move |proven, op, targets, outcome| {
        if let Some(name) = proven {
            ctx.actor = name.to_string();
        }
        ctx.audit_outcome(0, op, targets, outcome)
    }
}

pub fn login(g: &Global, a: LoginArgs) -> Result<()> {
    let secs = crate::token::parse_duration("--for", &a.duration)?;
    if !(60..=operators::MAX_LOGIN_SECS).contains(&secs) {
        return Err(Error::Invalid(format!(
            "--for {}: a login lasts from 1 minute to 12 hours",
            a.duration
        ))
        .into());
    }
    let mut ctx = Ctx::open_unchecked(g)?;
    let t = ctx.topology();
    let login = match ctx.remote() {
        // The server proves the code and signs the login; this machine holds no key.
        Some(remote) => {
            remote
                .connection()
                .login(&a.name, &a.otp, secs, &ctx.correlation_id.clone())?
        }
        None => {
            let cp = cp(g)?;
            let now = now()?;
            proof::login(
                cp.as_ref(),
                &a.name,
                &a.otp,
                secs,
                now,
                &mut auditing(&mut ctx),
            )?
        }
    };
    let now = login.claims.from;
    let path = login_path(g, &t.cluster_id)?;
    engine::topology::write_private(&path, &serde_json::to_vec_pretty(&login)?)?;
    output::emit(
        g.output,
        &json!({"operator": a.name, "until": time_text(now + secs), "loginFile": path}),
        || {
            format!(
                "logged in as {} until {} ({})\n",
                a.name,
                time_text(now + secs),
                path.display()
            )
        },
    )
}

pub fn logout(g: &Global) -> Result<()> {
    let mut ctx = Ctx::open_unchecked(g)?;
    let path = login_path(g, &ctx.topology().cluster_id)?;
    if let Some(who) = ctx.identity.clone() {
        if ctx
            .topology()
            .operators
            .get(&who)
            .is_some_and(|o| o.service)
        {
            return Err(Error::Invalid(format!(
                "{} is the credential of service identity {who}, not a login: it stays (`dirctl operator remove {who}` ends it)",
                path.display()
            ))
            .into());
        }
        // Every copy of this login ends, and so do its operator's elevations.
        let now = now()?;
        let mut ended = 0;
        let r = cp(g)?.update(&mut |t| {
            if let Some(o) = t.operators.get_mut(&who) {
                o.logins_after = now;
            }
            let before = t.elevations.len();
            t.elevations.retain(|e| e.operator != who);
            ended = before - t.elevations.len();
            Ok(())
        });
        ctx.audit_outcome(
            0,
            "operator.logout",
            vec![who.clone()],
            &match &r {
                Ok(_) => format!("ok, {ended} elevation(s) ended"),
                Err(e) => e.to_string(),
            },
        );
        r?;
    }
    let had = match std::fs::remove_file(&path) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e).with_context(|| format!("remove {}", path.display())),
    };
    output::emit(g.output, &json!({"loggedOut": had}), || match had {
        true => "logged out\n".to_string(),
        false => "not logged in\n".to_string(),
    })
}

pub fn elevate(g: &Global, a: ElevateArgs) -> Result<()> {
    let secs = crate::token::parse_duration("--for", &a.duration)?;
    let asked = proof::ElevationAsked::new(&a.role, secs, &a.reason)?;
    let role = asked.role.clone();
    let mut ctx = Ctx::open_unchecked(g)?;
    if let Some(remote) = ctx.remote() {
        // The server checks the login, proves the code and records the elevation.
        let correlation = ctx.correlation_id.clone();
        let e = remote.connection().elevate(&asked, &a.otp, &correlation)?;
        return print_elevation(g, &e);
    }
    let what = format!("elevate to {role}");
    let Some(who) = ctx.identity.clone() else {
        // decide's refusal: no proven operator (with why, e.g. an expired login).
        ctx.require(&Need::Read, &what)?;
        return Err(not_permitted(format!("{what} needs a login")));
    };
    let cp = cp(g)?;
    let now = now()?;
    let e = proof::elevate(
        cp.as_ref(),
        &who,
        &asked,
        &a.otp,
        now,
        &mut auditing(&mut ctx),
    )?;
    // Every elevation anchors the audit chains (their heads, signed, in the control plane):
    // what is done with the privilege is checked against a point taken before it.
    let partitions = ctx.partition_ids();
    if let Err(err) = cp
        .secret(token::SECRET)
        .map_err(anyhow::Error::from)
        .and_then(|seed| {
            crate::audit::anchor_partitions(&mut ctx, partitions, &seed.unwrap_or_default())
        })
    {
        eprintln!("warning: the elevation stands, but the audit chains were not anchored: {err:#}");
    }
    print_elevation(g, &e)
}

fn print_elevation(g: &Global, e: &Elevation) -> Result<()> {
    output::emit(g.output, &elevation_json(e), || {
        format!(
            "{} is {} until {} (elevation {}; end it early with `dirctl elevation revoke {}`)\n",
            e.operator,
            e.role,
            time_text(e.until),
            e.id,
            e.id
        )
    })
}

fn elevation_json(e: &Elevation) -> serde_json::Value {
    json!({
        "id": e.id,
        "operator": e.operator,
        "role": e.role.to_string(),
        "reason": e.reason,
        "from": time_text(e.from),
        "until": time_text(e.until),
    })
}

pub fn elevation(g: &Global, c: ElevationCmd) -> Result<()> {
    let mut ctx = Ctx::open(g)?;
    let now = now()?;
    match c {
        ElevationCmd::List => {
            let active: Vec<serde_json::Value> = ctx
                .topology()
                .elevations
                .iter()
                .filter(|e| e.active(now))
                .map(elevation_json)
                .collect();
            output::emit(g.output, &json!(active), || {
                output::table_by(
                    &["id", "operator", "role", "until", "reason"],
                    &active,
                    |r| {
                        ["id", "operator", "role", "until", "reason"]
                            .iter()
                            .map(|k| r[*k].as_str().unwrap_or_default().to_string())
                            .collect()
                    },
                )
            })
        }
        ElevationCmd::Revoke { id } => {
            let t = ctx.topology();
            let Some(e) = t.elevations.iter().find(|e| e.id == id && e.active(now)) else {
                return Err(Error::NotFound(format!("no active elevation {id}")).into());
            };
            if ctx.identity.as_deref() != Some(e.operator.as_str()) {
                ctx.require(
                    &Need::Elevated(Role::SecurityAdmin),
                    &format!("elevation revoke {id} (of {})", e.operator),
                )?;
            }
            let r = cp(g)?.update(&mut |t| {
                t.elevations.retain(|e| e.id != id);
                t.elevations = operators::prune(&t.elevations, now);
                Ok(())
            });
            ctx.audit_outcome(
                0,
                "operator.elevation-revoke",
                vec![id.clone(), e.operator.clone(), e.role.to_string()],
                &outcome(&r),
            );
            r?;
            output::emit(g.output, &json!({"revoked": id}), || {
                format!("elevation {id} ended\n")
            })
        }
    }
}
