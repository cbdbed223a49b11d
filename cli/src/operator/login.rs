//! Proof and privilege: `login`, `logout`, the login a command presents (`proven`), a
//! code judged (`prove`), `elevate` and `elevation list|revoke`.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde_json::json;

use engine::operators::{self, Attempt, Elevation, Need, Role};
use engine::topology::{ControlPlane, Topology};
use engine::Error;
use server::graph::token;
use server::identity::{self, Login, LoginClaims};

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
    let cp = cp(g).map_err(|e| format!("the login cannot be checked: {e:#}"))?;
    let seed = cp
        .secret(token::SECRET)
        .map_err(|e| e.to_string())?
        .ok_or("the cluster has no signing key, so no login of it can be valid")?;
    let now = now().map_err(|e| e.to_string())?;
    let name = identity::verify_login(&seed, &topology.cluster_id, &login, now)?;
    match topology.operators.get(&name) {
        Some(o) if login.claims.from <= o.logins_after => Err(format!(
            "the login of {name} was ended by `dirctl logout`; log in again"
        )),
        _ => Ok(name),
    }
}

/// Judges `code` as `name`'s and records the attempt in the control plane (replays and
/// failures are counted there, atomically); audits a refusal as `op` and a lock-out.
pub(super) fn prove(
    ctx: &mut Ctx,
    cp: &dyn ControlPlane,
    name: &str,
    code: &str,
    op: &str,
) -> Result<()> {
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(
            Error::Invalid("--otp: the 6 digits the authenticator app shows now".into()).into(),
        );
    }
    let t = cp.load()?;
    let now = now()?;
    let Some(stored) = t.operators.get(name) else {
        ctx.audit_outcome(0, op, vec![name.to_string()], "refused: no such operator");
        return Err(not_permitted(format!("no operator {name} with this code")));
    };
    let key = cp.secret(identity::SEALING_SECRET)?.ok_or_else(|| {
        Error::Corrupt("the control plane has operators but no operator-sealing-key".into())
    })?;
    let secret = identity::unseal(&key, &t.cluster_id, name, &stored.sealed_secret)?;
    let matched = identity::matched_step(&secret, name, code, now)?;
    let mut judged: Option<(Attempt, bool)> = None;
    cp.update(&mut |t| {
        let Some(op) = t.operators.get(name) else {
            return Err(Error::NotPermitted(format!(
                "no operator {name} with this code"
            )));
        };
        let attempt = operators::judge(op, matched, now);
        let (next, locked) = operators::after(op, &attempt, now);
        t.operators.insert(name.to_string(), next);
        judged = Some((attempt, locked));
        Ok(())
    })?;
    let (attempt, locked) = judged.ok_or_else(|| Error::Storage("no attempt judged".into()))?;
    let refusal = match attempt {
        Attempt::Accepted { .. } => return Ok(()),
        Attempt::Wrong => "refused: wrong code".to_string(),
        Attempt::Replayed => "refused: a code already used".to_string(),
        Attempt::LockedOut { until } => format!("refused: locked out until {}", time_text(until)),
    };
    ctx.audit_outcome(0, op, vec![name.to_string()], &refusal);
    if locked {
        let until = time_text(now + operators::LOCKOUT_SECS);
        ctx.audit_outcome(
            0,
            "operator.lockout",
            vec![name.to_string()],
            &format!(
                "locked out until {until} after {} failed codes in a row",
                operators::LOCKOUT_AFTER
            ),
        );
        return Err(not_permitted(format!(
            "{refusal}; operator {name} is now locked out until {until} after {} failed codes in a row",
            operators::LOCKOUT_AFTER
        )));
    }
    Err(not_permitted(refusal))
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
    if t.operators.get(&a.name).is_some_and(|o| o.service) {
        return Err(not_permitted(format!(
            "{} is a service identity: it has no codes, and its jobs use its credential file",
            a.name
        )));
    }
    if t.operators.is_empty() {
        return Err(Error::Invalid(
            "this cluster has no operators yet: enrol the first with `dirctl operator enroll NAME --role security-admin`".into(),
        )
        .into());
    }
    let cp = cp(g)?;
    prove(&mut ctx, cp.as_ref(), &a.name, &a.otp, "operator.login")?;
    let seed = cp.secret_or_create(token::SECRET, &mut token::generate_seed)?;
    let now = now()?;
    let login = identity::sign_login(
        &seed,
        LoginClaims {
            cluster: t.cluster_id.clone(),
            operator: a.name.clone(),
            id: uuid::Uuid::new_v4().to_string(),
            from: now,
            until: now + secs,
        },
    )?;
    let path = login_path(g, &t.cluster_id)?;
    engine::topology::write_private(&path, &serde_json::to_vec_pretty(&login)?)?;
    ctx.actor = a.name.clone();
    ctx.audit_outcome(
        0,
        "operator.login",
        vec![a.name.clone()],
        &format!("ok, until {}", time_text(now + secs)),
    );
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
    let role = Role::parse(&a.role)?;
    if !role.needs_elevation() {
        return Err(Error::Invalid(format!(
            "--role {role} is held standing, not by elevation: elevate to operator or security-admin"
        ))
        .into());
    }
    let secs = crate::token::parse_duration("--for", &a.duration)?;
    operators::check_elevation_secs(secs)?;
    let reason = a.reason.trim().to_string();
    if reason.is_empty() || reason.chars().count() > 200 || reason.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "--reason: 1 to 200 characters (a ticket or incident), no control characters".into(),
        )
        .into());
    }
    let mut ctx = Ctx::open_unchecked(g)?;
    let what = format!("elevate to {role}");
    let Some(who) = ctx.identity.clone() else {
        // decide's refusal: no proven operator (with why, e.g. an expired login).
        ctx.require(&Need::Read, &what)?;
        return Err(not_permitted(format!("{what} needs a login")));
    };
    let has = ctx
        .topology()
        .operators
        .get(&who)
        .is_some_and(|o| o.roles.contains(&role));
    if !has {
        let why = format!(
            "{what}: operator {who} does not have role {role}; a security-admin grants it with `dirctl operator roles {who} --role {role}`"
        );
        ctx.audit_outcome(
            0,
            "operator.elevate",
            vec![who.clone(), role.to_string()],
            &format!("refused: {why}"),
        );
        return Err(not_permitted(why));
    }
    let cp = cp(g)?;
    prove(&mut ctx, cp.as_ref(), &who, &a.otp, "operator.elevate")?;
    let now = now()?;
    let e = Elevation {
        id: uuid::Uuid::new_v4().to_string()[..8].to_string(),
        operator: who.clone(),
        role: role.clone(),
        reason: reason.clone(),
        from: now,
        until: now + secs,
    };
    let r = cp.update(&mut |t| {
        if !t.operators.contains_key(&who) {
            return Err(Error::NotPermitted(format!("operator {who} was removed")));
        }
        t.elevations = operators::prune(&t.elevations, now);
        t.elevations.push(e.clone());
        Ok(())
    });
    ctx.audit_outcome(
        0,
        "operator.elevate",
        vec![
            who.clone(),
            role.to_string(),
            format!("until {}", time_text(e.until)),
            format!("reason {reason}"),
            format!("elevation {}", e.id),
        ],
        &outcome(&r),
    );
    r?;
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
    output::emit(g.output, &elevation_json(&e), || {
        format!(
            "{who} is {role} until {} (elevation {}; end it early with `dirctl elevation revoke {}`)\n",
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
