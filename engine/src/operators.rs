//! Operators: the cluster's identities for dirctl, each proven by a TOTP code, with roles,
//! and their time-bound elevations (just-in-time privilege). The control plane stores them
//! in the topology; every decision here is a pure function of that state and a clock
//! reading. TOTP itself and the sealing of secrets are the server crate's
//! (`server::identity`): this module never sees a secret in clear.
//!
//! A cluster without operators is open (it was made before operators existed, or nobody
//! enrolled one yet): privileged commands ask only for `--yes`, as before. Once one is
//! enrolled, every command needs a login, and privileged ones an active elevation.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod approval;
pub use approval::{
    approved_for, covers, may_approve, may_carry_out, Pending, APPROVAL_SECS, CARRY_OUT_SECS,
};

/// Wrong or replayed codes in a row before an operator is locked out.
pub const LOCKOUT_AFTER: u32 = 5;
/// How long a lock-out lasts, in seconds.
pub const LOCKOUT_SECS: i64 = 15 * 60;
/// The longest an elevation may last, in seconds.
pub const MAX_ELEVATION_SECS: i64 = 8 * 3600;
/// The longest a login lasts, in seconds.
pub const MAX_LOGIN_SECS: i64 = 12 * 3600;

/// What an operator may be trusted with.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads anything: objects, status, audit.
    Reader,
    /// Writes the directory objects of one tenant (`tenant-admin:NAME`).
    TenantAdmin(String),
    /// Failover, drain, rebuild, backup restore, purge: only while elevated.
    Operator,
    /// Enrols and removes operators, changes roles: only while elevated.
    SecurityAdmin,
    /// A service identity's one scheduled job (`job:backup`, `job:purge-expired`).
    Job(Job),
}

/// The scheduled jobs a service identity may be scoped to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Job {
    /// `backup create` (and the reads it needs).
    Backup,
    /// `deleted purge-expired`.
    PurgeExpired,
}

impl Job {
    pub fn name(self) -> &'static str {
        match self {
            Job::Backup => "backup",
            Job::PurgeExpired => "purge-expired",
        }
    }
}

impl Role {
    pub fn parse(s: &str) -> Result<Role> {
        match s {
            "reader" => Ok(Role::Reader),
            "operator" => Ok(Role::Operator),
            "security-admin" => Ok(Role::SecurityAdmin),
            "job:backup" => Ok(Role::Job(Job::Backup)),
            "job:purge-expired" => Ok(Role::Job(Job::PurgeExpired)),
            _ => match s.strip_prefix("tenant-admin:") {
                Some(t) if !t.is_empty() && t.len() <= 64 && !t.chars().any(char::is_control) => {
                    Ok(Role::TenantAdmin(t.to_string()))
                }
                _ => Err(Error::Invalid(format!(
                    "role {s:?}: reader, tenant-admin:TENANT, operator, security-admin, job:backup or job:purge-expired"
                ))),
            },
        }
    }

    /// Whether the role is held only while elevated (just in time), not standing.
    pub fn needs_elevation(&self) -> bool {
        matches!(self, Role::Operator | Role::SecurityAdmin)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Reader => f.write_str("reader"),
            Role::TenantAdmin(t) => write!(f, "tenant-admin:{t}"),
            Role::Operator => f.write_str("operator"),
            Role::SecurityAdmin => f.write_str("security-admin"),
            Role::Job(j) => write!(f, "job:{}", j.name()),
        }
    }
}

impl Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Role, D::Error> {
        let s = String::deserialize(d)?;
        Role::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An enrolled operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    pub roles: Vec<Role>,
    /// The TOTP secret, sealed under the cluster's operator key (never in clear here).
    pub sealed_secret: String,
    /// When enrolled (unix seconds).
    pub enrolled_at: i64,
    /// The last TOTP time step accepted: a code of it or an earlier one is a replay.
    #[serde(default)]
    pub last_step: u64,
    /// Wrong or replayed codes since the last accepted one.
    #[serde(default)]
    pub failures: u32,
    /// Locked out until then (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<i64>,
    /// A service identity (a cron job's): no TOTP secret, no login by code, no elevation;
    /// only its `job:` roles and the reads they need.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub service: bool,
    /// Logins made at or before this time (unix seconds) prove nothing: `dirctl logout`
    /// ends every copy of the login it had.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub logins_after: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// The `operator roles` command that grants `role` to `name` and keeps what they have.
fn grant_hint(name: &str, op: &Operator, role: &Role) -> String {
    let mut args: Vec<String> = op
        .roles
        .iter()
        .chain(std::iter::once(role))
        .map(|r| format!("--role {r}"))
        .collect();
    args.dedup();
    format!(
        "a security-admin grants it with `dirctl operator roles {name} {}`",
        args.join(" ")
    )
}

/// A time-bound grant of a role to an operator, for a reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Elevation {
    pub id: String,
    pub operator: String,
    pub role: Role,
    pub reason: String,
    /// Granted at, and ends at (unix seconds).
    pub from: i64,
    pub until: i64,
}

impl Elevation {
    pub fn active(&self, now: i64) -> bool {
        self.from <= now && now < self.until
    }
}

/// How a presented code was judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// A code of a time step never used before: `step` is now the last used.
    Accepted { step: u64 },
    /// Not the operator's code in the window.
    Wrong,
    /// The operator's code of a step already used (or older).
    Replayed,
    /// Locked out until then; the code was not even looked at.
    LockedOut { until: i64 },
}

/// Judges a code: `matched` is the time step whose code it is (TOTP's check over the
/// window), None if none.
pub fn judge(op: &Operator, matched: Option<u64>, now: i64) -> Attempt {
    if let Some(until) = op.locked_until.filter(|u| now < *u) {
        return Attempt::LockedOut { until };
    }
    match matched {
        None => Attempt::Wrong,
        Some(step) if step <= op.last_step => Attempt::Replayed,
        Some(step) => Attempt::Accepted { step },
    }
}

/// The operator once `attempt` is recorded: an accepted code clears the failures and moves
/// the last step on; a wrong or replayed one counts, and the `LOCKOUT_AFTER`th in a row
/// locks the operator out for `LOCKOUT_SECS`. Whether this attempt locked them out is the
/// second value.
pub fn after(op: &Operator, attempt: &Attempt, now: i64) -> (Operator, bool) {
    let mut next = op.clone();
    match attempt {
        Attempt::Accepted { step } => {
            next.last_step = *step;
            next.failures = 0;
            next.locked_until = None;
            (next, false)
        }
        Attempt::Wrong | Attempt::Replayed => {
            next.failures = op.failures.saturating_add(1);
            if next.failures >= LOCKOUT_AFTER {
                next.failures = 0;
                next.locked_until = Some(now + LOCKOUT_SECS);
                (next, true)
            } else {
                (next, false)
            }
        }
        Attempt::LockedOut { .. } => (next, false),
    }
}

/// What a command needs of its caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    /// A read: any enrolled operator.
    Read,
    /// A write to a tenant's objects: its tenant-admin (standing), or an elevated operator.
    Write { tenant: String },
    /// A privileged command: an active elevation of this role.
    Elevated(Role),
    /// A scheduled job: a service identity scoped to it, or an elevated operator.
    Job(Job),
}

/// What a directory request needs of its caller; None for an audit record of its own
/// (the outcome of a command that was itself checked, or of a refusal). Purges, tenant
/// creation and restores from a backup are privileged; other writes are the tenant's.
pub fn need_of(req: &crate::request::Request) -> Option<Need> {
    use crate::request::Request as R;
    match req {
        R::RecordAudit { .. } => None,
        R::PurgeExpired { .. } => Some(Need::Job(Job::PurgeExpired)),
        R::PurgeDeleted { .. } | R::CreateTenant { .. } | R::RestoreFromBackup { .. } => {
            Some(Need::Elevated(Role::Operator))
        }
        r if r.is_read() => Some(Need::Read),
        r => Some(match r.tenant() {
            Some(t) => Need::Write {
                tenant: t.to_string(),
            },
            None => Need::Elevated(Role::Operator),
        }),
    }
}

/// Whether `who` (the proven operator, None without a login) may do what `need` says at
/// `now`; else why not and what grants it, for the "not permitted" error (exit 6).
pub fn decide(
    operators: &BTreeMap<String, Operator>,
    elevations: &[Elevation],
    who: Option<&str>,
    need: &Need,
    what: &str,
    now: i64,
) -> std::result::Result<(), String> {
    if operators.is_empty() {
        return Ok(());
    }
    let Some(name) = who else {
        return Err(format!(
            "{what} needs a proven operator: this cluster has operators; log in with `dirctl login NAME --otp CODE`"
        ));
    };
    let Some(op) = operators.get(name) else {
        return Err(format!(
            "{what}: operator {name} is not enrolled (any more); log in as an enrolled operator"
        ));
    };
    let elevated = |role: &Role| {
        elevations
            .iter()
            .any(|e| e.operator == name && &e.role == role && e.active(now))
    };
    if op.service {
        let jobs: Vec<String> = op.roles.iter().map(Role::to_string).collect();
        return match need {
            Need::Read => Ok(()),
            Need::Job(j) if op.roles.contains(&Role::Job(*j)) => Ok(()),
            _ => Err(format!(
                "{what}: {name} is a service identity, scoped to {} only",
                jobs.join(", ")
            )),
        };
    }
    match need {
        Need::Read => Ok(()),
        Need::Job(_) => decide(
            operators,
            elevations,
            who,
            &Need::Elevated(Role::Operator),
            what,
            now,
        ),
        Need::Write { tenant } => {
            if op.roles.contains(&Role::TenantAdmin(tenant.clone())) || elevated(&Role::Operator) {
                Ok(())
            } else {
                let role = Role::TenantAdmin(tenant.clone());
                let elevate = match op.roles.contains(&Role::Operator) {
                    true => ", or an elevation: `dirctl elevate --role operator --for 30m --reason REASON --otp CODE`".to_string(),
                    false => String::new(),
                };
                Err(format!(
                    "{what} needs role {role} (operator {name} has {}){elevate}; {}",
                    roles_text(&op.roles),
                    grant_hint(name, op, &role)
                ))
            }
        }
        Need::Elevated(role) => {
            if elevated(role) {
                Ok(())
            } else if op.roles.contains(role) {
                Err(format!(
                    "{what} needs an active elevation of role {role}: `dirctl elevate --role {role} --for 30m --reason REASON --otp CODE`"
                ))
            } else {
                Err(format!(
                    "{what} needs role {role}, which operator {name} does not have (has {}); {}",
                    roles_text(&op.roles),
                    grant_hint(name, op, role)
                ))
            }
        }
    }
}

fn roles_text(roles: &[Role]) -> String {
    match roles.is_empty() {
        true => "no role".into(),
        false => roles
            .iter()
            .map(Role::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Whether a login of `name` made at `from` (signed, current) still proves them: not once
/// `dirctl logout` ended it; else why not. A lock-out stops new codes, not the logins made
/// before it: anyone who can reach a server could otherwise end every operator's session
/// by failing five codes in their name (`logout` and `operator remove` end a login).
pub fn login_stands(name: &str, op: &Operator, from: i64) -> std::result::Result<(), String> {
    if from <= op.logins_after {
        return Err(format!(
            "the login of {name} was ended by `dirctl logout`; log in again"
        ));
    }
    Ok(())
}

/// The tenants `roles` name (`tenant-admin:T`) that `known` does not hold.
pub fn unknown_tenants<'a>(roles: &'a [Role], known: &dyn Fn(&str) -> bool) -> Vec<&'a str> {
    roles
        .iter()
        .filter_map(|r| match r {
            Role::TenantAdmin(t) if !known(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

/// An operator's name: 1 to 64 letters, digits, dots, dashes, underscores or `@`.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'));
    match ok {
        true => Ok(()),
        false => Err(Error::Invalid(format!(
            "operator name {name:?}: 1 to 64 letters, digits, dots, dashes, underscores or @"
        ))),
    }
}

/// An elevation's length: 1 minute to `MAX_ELEVATION_SECS`.
pub fn check_elevation_secs(secs: i64) -> Result<()> {
    match (60..=MAX_ELEVATION_SECS).contains(&secs) {
        true => Ok(()),
        false => Err(Error::Invalid(format!(
            "an elevation lasts from 1 minute to {} hours, not {secs} s",
            MAX_ELEVATION_SECS / 3600
        ))),
    }
}

/// The elevations still worth keeping at `now` (ended ones are dropped when the list is
/// next written; the audit trail keeps their history).
pub fn prune(elevations: &[Elevation], now: i64) -> Vec<Elevation> {
    elevations
        .iter()
        .filter(|e| e.until > now)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(roles: &[Role]) -> Operator {
        Operator {
            roles: roles.to_vec(),
            sealed_secret: "sealed".into(),
            enrolled_at: 0,
            last_step: 100,
            failures: 0,
            locked_until: None,
            service: false,
            logins_after: 0,
        }
    }

    fn ops(list: &[(&str, Operator)]) -> BTreeMap<String, Operator> {
        list.iter()
            .map(|(n, o)| (n.to_string(), o.clone()))
            .collect()
    }

    #[test]
    fn roles_read_back_as_written_and_nonsense_is_refused() {
        for s in [
            "reader",
            "operator",
            "security-admin",
            "tenant-admin:contoso",
        ] {
            assert_eq!(Role::parse(s).expect(s).to_string(), s);
        }
        for s in [
            "",
            "admin",
            "tenant-admin:",
            "Operator",
            "tenant-admin:a\nb",
        ] {
            assert!(Role::parse(s).is_err(), "{s:?}");
        }
        assert!(Role::Operator.needs_elevation() && Role::SecurityAdmin.needs_elevation());
        assert!(!Role::Reader.needs_elevation());
    }

    #[test]
    fn a_code_is_accepted_once_and_a_replay_or_an_older_step_is_refused() {
        let o = op(&[Role::Operator]);
        assert_eq!(judge(&o, Some(101), 0), Attempt::Accepted { step: 101 });
        let (o, _) = after(&o, &Attempt::Accepted { step: 101 }, 0);
        assert_eq!(judge(&o, Some(101), 0), Attempt::Replayed);
        assert_eq!(judge(&o, Some(100), 0), Attempt::Replayed);
        assert_eq!(judge(&o, None, 0), Attempt::Wrong);
        assert_eq!(judge(&o, Some(102), 0), Attempt::Accepted { step: 102 });
    }

    #[test]
    fn the_fifth_failure_in_a_row_locks_out_and_the_lock_ends_in_time() {
        let mut o = op(&[Role::Operator]);
        for i in 1..LOCKOUT_AFTER {
            let (next, locked) = after(&o, &Attempt::Wrong, 1000);
            assert!(!locked, "failure {i}");
            o = next;
        }
        let (o, locked) = after(&o, &Attempt::Replayed, 1000);
        assert!(locked);
        let until = 1000 + LOCKOUT_SECS;
        // Even the right code is not looked at while locked out.
        assert_eq!(judge(&o, Some(200), 1001), Attempt::LockedOut { until });
        assert_eq!(judge(&o, Some(200), until), Attempt::Accepted { step: 200 });
        // An accepted code clears the count.
        let mut o2 = op(&[]);
        o2.failures = 3;
        let (o2, _) = after(&o2, &Attempt::Accepted { step: 300 }, 0);
        assert_eq!((o2.failures, o2.last_step), (0, 300));
    }

    #[test]
    fn privileged_commands_need_an_active_elevation_of_their_role() {
        let all = ops(&[("ann", op(&[Role::Operator])), ("bob", op(&[Role::Reader]))]);
        let need = Need::Elevated(Role::Operator);
        let e = Elevation {
            id: "e1".into(),
            operator: "ann".into(),
            role: Role::Operator,
            reason: "INC-1".into(),
            from: 1000,
            until: 1000 + 1800,
        };
        let refused = decide(&all, &[], Some("ann"), &need, "failover", 1000).expect_err("refused");
        assert!(
            refused.contains("dirctl elevate --role operator"),
            "{refused}"
        );
        assert!(decide(&all, &[e.clone()], Some("ann"), &need, "failover", 1000).is_ok());
        assert!(decide(&all, &[e.clone()], Some("ann"), &need, "failover", 2799).is_ok());
        // Ended at its time.
        assert!(decide(&all, &[e.clone()], Some("ann"), &need, "failover", 2800).is_err());
        // Another operator's elevation is not yours, and without the role it says so.
        let bob =
            decide(&all, &[e.clone()], Some("bob"), &need, "failover", 1000).expect_err("refused");
        assert!(bob.contains("does not have"), "{bob}");
        // The hint keeps the roles bob has.
        assert!(
            bob.contains("dirctl operator roles bob --role reader --role operator"),
            "{bob}"
        );
        // No login: refused, and told how to log in.
        let none = decide(&all, &[e], None, &need, "failover", 1000).expect_err("refused");
        assert!(none.contains("dirctl login"), "{none}");
        // A cluster without operators is open.
        assert!(decide(&BTreeMap::new(), &[], None, &need, "failover", 0).is_ok());
    }

    #[test]
    fn a_service_identity_runs_its_jobs_and_nothing_privileged() {
        let mut cron = op(&[Role::Job(Job::Backup), Role::Job(Job::PurgeExpired)]);
        cron.service = true;
        let mut backup_only = op(&[Role::Job(Job::Backup)]);
        backup_only.service = true;
        let all = ops(&[
            ("cron", cron),
            ("bk", backup_only),
            ("ann", op(&[Role::Operator])),
        ]);
        let ok = |who: &str, need: Need| decide(&all, &[], Some(who), &need, "x", 0).is_ok();
        assert!(ok("cron", Need::Job(Job::Backup)));
        assert!(ok("cron", Need::Job(Job::PurgeExpired)));
        assert!(ok("cron", Need::Read));
        assert!(!ok("bk", Need::Job(Job::PurgeExpired)));
        assert!(!ok("cron", Need::Elevated(Role::Operator)));
        assert!(!ok(
            "cron",
            Need::Write {
                tenant: "contoso".into()
            }
        ));
        // Even an elevation recorded for a service counts for nothing.
        let e = Elevation {
            id: "e".into(),
            operator: "cron".into(),
            role: Role::Operator,
            reason: "r".into(),
            from: 0,
            until: 100,
        };
        assert!(decide(
            &all,
            &[e],
            Some("cron"),
            &Need::Elevated(Role::Operator),
            "x",
            1
        )
        .is_err());
        // People run the jobs' commands as elevated operators only.
        assert!(!ok("ann", Need::Job(Job::Backup)));
        assert!(!ok("ann", Need::Job(Job::PurgeExpired)));
        let e = Elevation {
            id: "e".into(),
            operator: "ann".into(),
            role: Role::Operator,
            reason: "r".into(),
            from: 0,
            until: 100,
        };
        let need = Need::Job(Job::Backup);
        assert!(decide(&all, &[e], Some("ann"), &need, "x", 1).is_ok());
        assert_eq!(
            Role::parse("job:backup").expect("r").to_string(),
            "job:backup"
        );
    }

    #[test]
    fn a_tenant_write_needs_that_tenants_admin() {
        let all = ops(&[
            ("ann", op(&[Role::TenantAdmin("contoso".into())])),
            ("rita", op(&[Role::Reader])),
        ]);
        let w = |t: &str| Need::Write { tenant: t.into() };
        assert!(decide(&all, &[], Some("ann"), &w("contoso"), "user create", 0).is_ok());
        assert!(decide(&all, &[], Some("ann"), &w("fabrikam"), "user create", 0).is_err());
        assert!(decide(&all, &[], Some("rita"), &w("contoso"), "user create", 0).is_err());
        assert!(decide(&all, &[], Some("rita"), &Need::Read, "user get", 0).is_ok());
        assert!(decide(&all, &[], Some("zed"), &Need::Read, "user get", 0).is_err());
    }

    #[test]
    fn purges_and_tenant_creation_are_privileged_and_other_writes_the_tenants() {
        use crate::request::Request as R;
        let purge = R::PurgeExpired {
            tenants: vec!["contoso".into()],
        };
        assert_eq!(need_of(&purge), Some(Need::Job(Job::PurgeExpired)));
        let audit = R::RecordAudit {
            partition: 0,
            op: "x".into(),
            targets: vec![],
            outcome: "ok".into(),
        };
        assert_eq!(need_of(&audit), None);
        let list = R::ListDeleted {
            tenant: "contoso".into(),
        };
        assert_eq!(need_of(&list), Some(Need::Read));
    }

    #[test]
    fn names_and_lengths_are_checked_and_ended_elevations_pruned() {
        assert!(check_name("ann.ops@contoso").is_ok());
        for bad in ["", "a b", "a/b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_elevation_secs(1800).is_ok());
        assert!(check_elevation_secs(30).is_err() && check_elevation_secs(9 * 3600).is_err());
        let e = |id: &str, until| Elevation {
            id: id.into(),
            operator: "a".into(),
            role: Role::Operator,
            reason: "r".into(),
            from: 0,
            until,
        };
        let kept = prune(&[e("old", 100), e("new", 300)], 200);
        assert_eq!(
            kept.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["new"]
        );
    }
}
