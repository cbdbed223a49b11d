//! Operators, logins and elevations: `dirctl operator enroll|list|remove|roles`, `login`,
//! `logout`, `elevate`, `elevation list|revoke`. The decisions are `engine::operators`'s;
//! TOTP, sealing and the signed login are `server::identity`'s; this module reads and
//! writes them through the control plane and audits every step.

use anyhow::Result;
use serde_json::json;

use engine::operators::{self, Need, Operator, Role};
use engine::topology::ControlPlane;
use engine::Error;
use server::graph::token;
use server::identity::{self, LoginClaims};

use crate::context::{cluster_root, control_plane, Ctx};
use crate::opt::{Global, OperatorCmd};
use crate::output;

pub(crate) fn now() -> Result<i64> {
    Ok(crate::context::clock()?.now().timestamp())
}

pub(crate) fn time_text(t: i64) -> String {
    server::proof::time_text(t)
}

pub(crate) fn cp(g: &Global) -> Result<Box<dyn ControlPlane + Sync>> {
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

/// Refuses roles that name a tenant the cluster does not have.
fn known_tenants(roles: &[Role], ctx: &Ctx) -> Result<()> {
    let t = ctx.topology();
    let unknown = operators::unknown_tenants(roles, &|name| t.tenant(name).is_ok());
    match unknown.is_empty() {
        true => Ok(()),
        false => Err(Error::NotFound(format!(
            "no tenant {}: create it first (`dirctl tenant create NAME`), or name one of {}",
            unknown.join(", "),
            ctx.tenant_names().join(", ")
        ))
        .into()),
    }
}

pub(crate) fn not_permitted(why: impl Into<String>) -> anyhow::Error {
    Error::NotPermitted(why.into()).into()
}

mod approval;
mod login;

pub use approval::{approve, approved_request, requests, two_person};
pub use login::{elevate, elevation, login, logout, presented, proven};

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
            known_tenants(&roles, &ctx)?;
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
    known_tenants(&roles, &ctx)?;
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
    let key = cp.secret_or_create(identity::SEALING_SECRET, &mut identity::generate_key)?;
    // The login's signing key, made now if nobody issued a token yet.
    cp.secret_or_create(token::SECRET, &mut token::generate_seed)?;
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
    let seed = cp.secret_or_create(token::SECRET, &mut token::generate_seed)?;
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
    engine::topology::write_private(credential, &serde_json::to_vec_pretty(&login)?)?;
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

pub(crate) fn outcome<T>(r: &engine::Result<T>) -> String {
    match r {
        Ok(_) => "ok".to_string(),
        Err(e) => e.to_string(),
    }
}
