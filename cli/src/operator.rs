//! Operators, logins and elevations: `dirctl operator enroll|list|remove|roles`, `login`,
//! `logout`, `elevate`, `elevation list|revoke`. The decisions are `engine::operators`'s;
//! TOTP, sealing and the signed login are `server::identity`'s; this module reads and
//! writes them through the control plane and audits every step.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde_json::json;

use engine::operators::{self, Attempt, Elevation, Need, Operator, Pending, Role};
use engine::topology::{ControlPlane, Topology};
use engine::Error;
use server::graph::token;
use server::identity::{self, Login, LoginClaims};

use crate::context::{cluster_root, control_plane, Ctx};
use crate::opt::{ApproveArgs, ElevateArgs, ElevationCmd, Global, LoginArgs, OperatorCmd};
use crate::output;

fn now() -> Result<i64> {
    Ok(crate::context::clock()?.now().timestamp())
}

fn time_text(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}

fn cp(g: &Global) -> Result<Box<dyn ControlPlane + Sync>> {
    if g.control_plane.is_none() && g.cluster.is_none() {
        return Err(Error::Invalid(
            "operators live in the control plane: pass --cluster DIR or --control-plane etcd://..."
                .into(),
        )
        .into());
    }
    control_plane(g, &cluster_root(g).unwrap_or_default())
}

fn parse_roles(roles: &[String]) -> Result<Vec<Role>> {
    let mut out: Vec<Role> = Vec::new();
    for r in roles {
        let role = Role::parse(r)?;
        if !out.contains(&role) {
            out.push(role);
        }
    }
    Ok(out)
}

fn not_permitted(why: impl Into<String>) -> anyhow::Error {
    Error::NotPermitted(why.into()).into()
}

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
fn prove(ctx: &mut Ctx, cp: &dyn ControlPlane, name: &str, code: &str, op: &str) -> Result<()> {
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

pub fn run(g: &Global, c: OperatorCmd) -> Result<()> {
    match c {
        OperatorCmd::Enroll { name, roles } => enroll(g, &name, &roles),
        OperatorCmd::EnrollService {
            name,
            jobs,
            credential_file,
            duration,
        } => enroll_service(g, &name, &jobs, &credential_file, &duration),
        OperatorCmd::List => {
            let ctx = Ctx::open(g)?;
            let t = ctx.topology();
            let now = now()?;
            let rows: Vec<serde_json::Value> = t
                .operators
                .iter()
                .map(|(name, o)| {
                    json!({
                        "name": name,
                        "roles": o.roles.iter().map(Role::to_string).collect::<Vec<_>>(),
                        "enrolled": time_text(o.enrolled_at),
                        "lockedUntil": o.locked_until.filter(|u| *u > now).map(time_text),
                        "service": o.service,
                    })
                })
                .collect();
            output::emit(g.output, &json!(rows), || {
                output::table_by(&["name", "roles", "enrolled", "locked until"], &rows, |r| {
                    vec![
                        r["name"].as_str().unwrap_or_default().to_string(),
                        r["roles"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|v| v.as_str())
                                    .collect::<Vec<_>>()
                                    .join(",")
                            })
                            .unwrap_or_default(),
                        r["enrolled"].as_str().unwrap_or_default().to_string(),
                        r["lockedUntil"].as_str().unwrap_or("-").to_string(),
                    ]
                })
            })
        }
        OperatorCmd::Remove { name } => {
            let mut ctx = Ctx::open(g)?;
            let what = format!("operator remove {name}");
            ctx.require(&Need::Elevated(Role::SecurityAdmin), &what)?;
            let r = cp(g)?.update(&mut |t| {
                if t.operators.remove(&name).is_none() {
                    return Err(Error::NotFound(format!("no operator {name}")));
                }
                if !t.operators.is_empty() && security_admins(&t.operators) == 0 {
                    return Err(Error::Conflict(format!(
                        "{name} is the last security-admin: enrol or grant another first"
                    )));
                }
                t.elevations.retain(|e| e.operator != name);
                Ok(())
            });
            ctx.audit_outcome(0, "operator.remove", vec![name.clone()], &outcome(&r));
            r?;
            output::emit(g.output, &json!({"removed": name}), || {
                format!("removed operator {name}\n")
            })
        }
        OperatorCmd::Roles { name, roles } => {
            let roles = parse_roles(&roles)?;
            let mut ctx = Ctx::open(g)?;
            let what = format!("operator roles {name}");
            ctx.require(&Need::Elevated(Role::SecurityAdmin), &what)?;
            let r = cp(g)?.update(&mut |t| {
                let Some(o) = t.operators.get_mut(&name) else {
                    return Err(Error::NotFound(format!("no operator {name}")));
                };
                let jobs = roles.iter().all(|r| matches!(r, Role::Job(_)));
                let none = roles.iter().all(|r| !matches!(r, Role::Job(_)));
                match o.service {
                    true if !jobs => {
                        return Err(Error::Invalid(format!(
                            "{name} is a service identity: it takes job: roles only (job:backup, job:purge-expired)"
                        )))
                    }
                    false if !none => {
                        return Err(Error::Invalid(format!(
                            "job: roles are for service identities, and {name} is a person"
                        )))
                    }
                    _ => {}
                }
                o.roles = roles.clone();
                if security_admins(&t.operators) == 0 {
                    return Err(Error::Conflict(format!(
                        "that would leave no security-admin: {name} is the last one"
                    )));
                }
                // An elevation of a role taken away ends with it.
                t.elevations
                    .retain(|e| e.operator != name || roles.contains(&e.role));
                Ok(())
            });
            let text: Vec<String> = roles.iter().map(Role::to_string).collect();
            ctx.audit_outcome(
                0,
                "operator.roles",
                vec![name.clone(), text.join(",")],
                &outcome(&r),
            );
            r?;
            output::emit(g.output, &json!({"name": name, "roles": text}), || {
                format!("operator {name} now has {}\n", text.join(", "))
            })
        }
    }
}

fn security_admins(ops: &std::collections::BTreeMap<String, Operator>) -> usize {
    ops.values()
        .filter(|o| !o.service && o.roles.contains(&Role::SecurityAdmin))
        .count()
}

fn enroll(g: &Global, name: &str, roles: &[String]) -> Result<()> {
    let (doc, text) = enrolled(g, name, roles)?;
    output::emit(g.output, &doc, || text)
}

/// `operator enroll`, also `init --admin`'s first security-admin: the enrolment's JSON and
/// text, both holding the otpauth URI, the one time it is shown.
pub fn enrolled(g: &Global, name: &str, roles: &[String]) -> Result<(serde_json::Value, String)> {
    operators::check_name(name)?;
    let roles = parse_roles(roles)?;
    if roles.iter().any(|r| matches!(r, Role::Job(_))) {
        return Err(Error::Invalid(
            "job: roles are for service identities: `dirctl operator enroll-service NAME --job JOB --credential-file FILE`".into(),
        )
        .into());
    }
    let mut ctx = Ctx::open_unchecked(g)?;
    let first = ctx.topology().operators.is_empty();
    let what = format!("operator enroll {name}");
    if first {
        if !roles.contains(&Role::SecurityAdmin) {
            return Err(Error::Invalid(format!(
                "{name} would be the cluster's first operator, who must be a security-admin: add --role security-admin"
            ))
            .into());
        }
    } else {
        ctx.require(&Need::Elevated(Role::SecurityAdmin), &what)?;
    }
    let cp = cp(g)?;
    let cluster = ctx.topology().cluster_id;
    let key = match cp.secret(identity::SEALING_SECRET)? {
        Some(k) => k,
        None => cp.create_secret(identity::SEALING_SECRET, &identity::generate_key())?,
    };
    // The login's signing key, made now if nobody issued a token yet.
    if cp.secret(token::SECRET)?.is_none() {
        cp.create_secret(token::SECRET, &token::generate_seed())?;
    }
    let secret = identity::generate_secret();
    let sealed = identity::seal(&key, &cluster, name, &secret)?;
    let now = now()?;
    let r = cp.update(&mut |t| {
        if t.operators.contains_key(name) {
            return Err(Error::Conflict(format!(
                "operator {name} is enrolled already"
            )));
        }
        if first && !t.operators.is_empty() {
            return Err(Error::Conflict(
                "another operator was enrolled meanwhile: log in as a security-admin and elevate"
                    .into(),
            ));
        }
        t.operators.insert(
            name.to_string(),
            Operator {
                roles: roles.clone(),
                sealed_secret: sealed.clone(),
                enrolled_at: now,
                last_step: 0,
                failures: 0,
                locked_until: None,
                service: false,
                logins_after: 0,
            },
        );
        Ok(())
    });
    let text: Vec<String> = roles.iter().map(Role::to_string).collect();
    ctx.audit_outcome(
        0,
        "operator.enroll",
        vec![name.to_string(), text.join(",")],
        &outcome(&r),
    );
    r?;
    let uri = identity::otpauth_uri(&secret, name)?;
    // The one time the secret is shown: for the operator's authenticator app.
    let qr = identity::qr_text(&uri).unwrap_or_default();
    let words = format!(
        "enrolled operator {name} ({})\nadd this to {name}'s authenticator app now: it is never shown again\n{qr}\n{uri}\n",
        text.join(", ")
    );
    Ok((
        json!({"name": name, "roles": text, "otpauthUri": uri}),
        words,
    ))
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
    let seed = match cp.secret(token::SECRET)? {
        Some(s) => s,
        None => cp.create_secret(token::SECRET, &token::generate_seed())?,
    };
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
    write_private(&path, &serde_json::to_vec_pretty(&login)?)?;
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

/// A file readable by its owner only, in a folder of theirs, replaced atomically.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("create {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("create {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("write {}", path.display()))?;
    Ok(())
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

/// `operator enroll-service`: a cron job's identity and its signed credential.
fn enroll_service(
    g: &Global,
    name: &str,
    jobs: &[String],
    credential: &std::path::Path,
    duration: &str,
) -> Result<()> {
    operators::check_name(name)?;
    let mut roles = Vec::new();
    for j in jobs {
        let role = Role::parse(&format!("job:{j}"))
            .map_err(|_| Error::Invalid(format!("--job {j:?}: backup or purge-expired")))?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    let secs = crate::token::parse_duration("--for", duration)?;
    if !(3600..=366 * 86_400).contains(&secs) {
        return Err(Error::Invalid(format!(
            "--for {duration}: a service credential lasts from 1 hour to 366 days"
        ))
        .into());
    }
    if credential.exists() {
        return Err(Error::Conflict(format!(
            "{} exists: give --credential-file a new file (remove the old one yourself)",
            credential.display()
        ))
        .into());
    }
    let mut ctx = Ctx::open_unchecked(g)?;
    let what = format!("operator enroll-service {name}");
    if ctx.topology().operators.is_empty() {
        return Err(Error::Invalid(
            "enrol the cluster's first security-admin before any service identity".into(),
        )
        .into());
    }
    ctx.require(&Need::Elevated(Role::SecurityAdmin), &what)?;
    let cp = cp(g)?;
    let cluster = ctx.topology().cluster_id;
    let seed = match cp.secret(token::SECRET)? {
        Some(s) => s,
        None => cp.create_secret(token::SECRET, &token::generate_seed())?,
    };
    let now = now()?;
    let r = cp.update(&mut |t| {
        if t.operators.contains_key(name) {
            return Err(Error::Conflict(format!(
                "{name} is enrolled already (remove it first to renew its credential)"
            )));
        }
        t.operators.insert(
            name.to_string(),
            Operator {
                roles: roles.clone(),
                sealed_secret: String::new(),
                enrolled_at: now,
                last_step: 0,
                failures: 0,
                locked_until: None,
                service: true,
                logins_after: 0,
            },
        );
        Ok(())
    });
    let text: Vec<String> = roles.iter().map(Role::to_string).collect();
    ctx.audit_outcome(
        0,
        "operator.enroll-service",
        vec![name.to_string(), text.join(",")],
        &outcome(&r),
    );
    r?;
    let login = identity::sign_login(
        &seed,
        LoginClaims {
            cluster,
            operator: name.to_string(),
            id: uuid::Uuid::new_v4().to_string(),
            from: now,
            until: now + secs,
        },
    )?;
    write_private(credential, &serde_json::to_vec_pretty(&login)?)?;
    output::emit(
        g.output,
        &json!({"name": name, "roles": text, "credentialFile": credential, "until": time_text(now + secs)}),
        || {
            format!(
                "enrolled service identity {name} ({}) until {}; its credential is {} (set DIRCTL_LOGIN_FILE to it in the job's environment)\n",
                text.join(", "),
                time_text(now + secs),
                credential.display()
            )
        },
    )
}

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
    if ctx.topology().operators.is_empty() {
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

fn outcome<T>(r: &engine::Result<T>) -> String {
    match r {
        Ok(_) => "ok".to_string(),
        Err(e) => e.to_string(),
    }
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
