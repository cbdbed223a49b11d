//! Proving an operator with a code, and what a proof grants (a login, an elevation),
//! through the control plane: shared by dirctl in the embedded mode and by the servers'
//! `Login` and `Elevate` calls, so both modes judge alike. The decisions are
//! `engine::operators`'s; each step is handed to `audit` (operation, targets, outcome) for
//! the caller to record its own way.

use engine::operators::{self, Attempt, Elevation, Pending, Role};
use engine::topology::ControlPlane;
use engine::{Error, Result};

use crate::graph::token;
use crate::identity::{self, Login, LoginClaims};

/// Where each step's audit record goes: (the operator it proves, if any: the record's
/// actor; else the caller's), operation, targets, outcome.
pub type Audit<'a> = &'a mut dyn FnMut(Option<&str>, &str, Vec<String>, &str);

/// A unix time as RFC 3339.
pub fn time_text(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}

fn not_permitted(why: impl Into<String>) -> Error {
    Error::NotPermitted(why.into())
}

/// Judges `code` as `name`'s and records the attempt in the control plane (replays and
/// failures are counted there, atomically); a refusal is audited as `op`, and so is a
/// lock-out.
pub fn prove(
    cp: &dyn ControlPlane,
    name: &str,
    code: &str,
    op: &str,
    now: i64,
    audit: Audit,
) -> Result<()> {
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Invalid(
            "--otp: the 6 digits the authenticator app shows now".into(),
        ));
    }
    let t = cp.load()?;
    let Some(stored) = t.operators.get(name) else {
        audit(
            None,
            op,
            vec![name.to_string()],
            "refused: no such operator",
        );
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
            return Err(not_permitted(format!("no operator {name} with this code")));
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
    audit(None, op, vec![name.to_string()], &refusal);
    if locked {
        let until = time_text(now + operators::LOCKOUT_SECS);
        audit(
            None,
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

/// `dirctl login NAME --otp CODE`: the code proven, a login of `secs` signed with the
/// cluster key (made if the cluster has none yet), and audited.
pub fn login(
    cp: &dyn ControlPlane,
    name: &str,
    code: &str,
    secs: i64,
    now: i64,
    audit: Audit,
) -> Result<Login> {
    if !(60..=operators::MAX_LOGIN_SECS).contains(&secs) {
        return Err(Error::Invalid(format!(
            "a login lasts from 1 minute to 12 hours, not {secs} s"
        )));
    }
    let t = cp.load()?;
    if t.operators.is_empty() {
        return Err(Error::Invalid(
            "this cluster has no operators yet: enrol the first with `dirctl operator enroll NAME --role security-admin`".into(),
        ));
    }
    if t.operators.get(name).is_some_and(|o| o.service) {
        return Err(not_permitted(format!(
            "{name} is a service identity: it has no codes, and its jobs use its credential file"
        )));
    }
    prove(cp, name, code, "operator.login", now, audit)?;
    let seed = cp.secret_or_create(token::SECRET, &mut token::generate_seed)?;
    let login = identity::sign_login(
        &seed,
        LoginClaims {
            cluster: t.cluster_id.clone(),
            operator: name.to_string(),
            id: uuid::Uuid::new_v4().to_string(),
            from: now,
            until: now + secs,
        },
    )?;
    audit(
        Some(name),
        "operator.login",
        vec![name.to_string()],
        &format!("ok, until {}", time_text(now + secs)),
    );
    Ok(login)
}

/// What an elevation asks for, checked before anything is proven or recorded.
pub struct ElevationAsked {
    pub role: Role,
    pub secs: i64,
    pub reason: String,
}

impl ElevationAsked {
    pub fn new(role: &str, secs: i64, reason: &str) -> Result<ElevationAsked> {
        let role = Role::parse(role)?;
        if !role.needs_elevation() {
            return Err(Error::Invalid(format!(
                "--role {role} is held standing, not by elevation: elevate to operator or security-admin"
            )));
        }
        operators::check_elevation_secs(secs)?;
        let reason = reason.trim().to_string();
        if reason.is_empty() || reason.chars().count() > 200 || reason.chars().any(char::is_control)
        {
            return Err(Error::Invalid(
                "--reason: 1 to 200 characters (a ticket or incident), no control characters"
                    .into(),
            ));
        }
        Ok(ElevationAsked { role, secs, reason })
    }
}

/// `dirctl elevate`: operator `who` (proven by their login) proves a code again and is
/// granted `asked.role` until `now + secs`, recorded in the control plane and audited.
pub fn elevate(
    cp: &dyn ControlPlane,
    who: &str,
    asked: &ElevationAsked,
    code: &str,
    now: i64,
    audit: Audit,
) -> Result<Elevation> {
    let role = &asked.role;
    let has = cp
        .load()?
        .operators
        .get(who)
        .is_some_and(|o| o.roles.contains(role));
    if !has {
        let why = format!(
            "elevate to {role}: operator {who} does not have role {role}; a security-admin grants it with `dirctl operator roles {who} --role {role}`"
        );
        audit(
            None,
            "operator.elevate",
            vec![who.to_string(), role.to_string()],
            &format!("refused: {why}"),
        );
        return Err(not_permitted(why));
    }
    prove(cp, who, code, "operator.elevate", now, audit)?;
    let e = Elevation {
        id: uuid::Uuid::new_v4().to_string()[..8].to_string(),
        operator: who.to_string(),
        role: role.clone(),
        reason: asked.reason.clone(),
        from: now,
        until: now + asked.secs,
    };
    let r = cp.update(&mut |t| {
        if !t.operators.get(who).is_some_and(|o| o.roles.contains(role)) {
            return Err(not_permitted(format!(
                "operator {who} was removed, or lost role {role}, meanwhile"
            )));
        }
        t.elevations = operators::prune(&t.elevations, now);
        t.elevations.push(e.clone());
        Ok(())
    });
    audit(
        None,
        "operator.elevate",
        vec![
            who.to_string(),
            role.to_string(),
            format!("until {}", time_text(e.until)),
            format!("reason {}", asked.reason),
            format!("elevation {}", e.id),
        ],
        &match &r {
            Ok(_) => "ok".to_string(),
            Err(err) => err.to_string(),
        },
    );
    r?;
    Ok(e)
}

/// Something that cannot be undone, asked by `who`: recorded as a request that waits for a
/// second operator (the two-person rule), and audited; the refusal that tells how to
/// approve it.
pub fn request(
    cp: &dyn ControlPlane,
    who: &str,
    what: &str,
    args: Vec<String>,
    now: i64,
    audit: Audit,
) -> Result<Error> {
    let p = Pending {
        id: uuid::Uuid::new_v4().to_string()[..8].to_string(),
        operator: who.to_string(),
        what: what.to_string(),
        args,
        created: now,
        expires: now + operators::APPROVAL_SECS,
        approved_by: None,
        carried_out: None,
        used: Vec::new(),
    };
    cp.update(&mut |t| {
        t.pending.retain(|p| p.expires > now);
        t.pending.push(p.clone());
        Ok(())
    })?;
    audit(
        None,
        "operator.request",
        vec![p.id.clone(), what.to_string()],
        &format!("waits for a second operator until {}", time_text(p.expires)),
    );
    Ok(not_permitted(format!(
        "{what} cannot be undone and needs a second operator (two-person rule): request {} recorded; another elevated operator carries it out with `dirctl approve {} --otp CODE` before {}",
        p.id,
        p.id,
        time_text(p.expires)
    )))
}

/// `dirctl approve ID --otp CODE` by `who` (an elevated operator, checked by the caller):
/// never the one who asked, proven again with a code, recorded and audited. The request.
pub fn approve(
    cp: &dyn ControlPlane,
    who: &str,
    id: &str,
    code: &str,
    now: i64,
    audit: Audit,
) -> Result<Pending> {
    let Some(p) = cp.load()?.pending.iter().find(|p| p.id == id).cloned() else {
        return Err(Error::NotFound(format!(
            "no request {id} (carried out already, expired, or never made)"
        )));
    };
    if let Err(why) = operators::may_approve(&p, who, now) {
        audit(
            None,
            "operator.approve",
            vec![p.id.clone()],
            &format!("refused: {why}"),
        );
        return Err(not_permitted(why));
    }
    prove(cp, who, code, "operator.approve", now, audit)?;
    let r = cp.update(&mut |t| {
        let Some(q) = t.pending.iter_mut().find(|q| q.id == p.id) else {
            return Err(Error::NotFound(format!("no request {}", p.id)));
        };
        operators::may_approve(q, who, now).map_err(Error::NotPermitted)?;
        q.approved_by = Some(who.to_string());
        Ok(())
    });
    audit(
        None,
        "operator.approve",
        vec![
            p.id.clone(),
            p.what.clone(),
            format!("requested by {}", p.operator),
        ],
        &match &r {
            Ok(_) => "ok".to_string(),
            Err(e) => e.to_string(),
        },
    );
    r?;
    Ok(p)
}

/// The approver's run begins carrying out request `id` (its arguments `args`, doing
/// `what`): marked in the control plane, once. What to say of it in the run's audit record.
pub fn carry_out(
    cp: &dyn ControlPlane,
    who: &str,
    id: &str,
    args: &[String],
    what: &str,
    now: i64,
) -> Result<String> {
    let mut done = String::new();
    cp.update(&mut |t| {
        let p = operators::may_carry_out(&t.pending, id, args, what, who, now)
            .map_err(Error::NotPermitted)?;
        done = format!("request {id} by {}, approved by {who}", p.operator);
        for p in t.pending.iter_mut().filter(|p| p.id == id) {
            p.carried_out = Some(now);
        }
        t.pending.retain(|p| p.expires > now);
        Ok(())
    })?;
    Ok(done)
}
