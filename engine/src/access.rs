//! Access grants: a principal (user, group or service principal) is allowed or denied an
//! action on a named resource. Grants are hard-deleted on revoke.
//!
//! Key: `0x07 | tenant | principal(16) | resource | 0x00 | action -> grant JSON`, so a check
//! finds a principal's grants on a resource with point reads (the exact action and `*`).
//!
//! A check: a disabled account is denied; otherwise the user and every group it belongs to,
//! transitively (a visited set stops cycles), are looked up; any matching deny wins over
//! any allow; no matching grant denies.

use std::collections::{BTreeSet, VecDeque};

use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::directory::{
    self, decode, encode, id_of, key, type_of, ObjectType, Store, Txn, K_GRANT, K_MEMBER_OF,
};
use crate::error::{Error, Result};

/// The action a grant without `--action` covers: every action.
pub const ANY_ACTION: &str = "*";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Deny,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        }
    }
}

fn check_name(what: &str, s: &str) -> Result<()> {
    if s.is_empty() || s.len() > 1024 || s.contains('\0') {
        return Err(Error::Invalid(format!(
            "{what} {s:?} must be 1 to 1024 bytes without NUL"
        )));
    }
    Ok(())
}

fn grant_key(tenant: &str, principal: &Uuid, resource: &str, action: &str) -> Result<Vec<u8>> {
    key(
        K_GRANT,
        tenant,
        &[
            principal.as_bytes(),
            resource.as_bytes(),
            &[0],
            action.as_bytes(),
        ],
    )
}

/// Grants (or replaces) `effect` for `principal` on `resource`/`action`; returns the grant.
pub fn grant(
    t: &mut Txn,
    tenant: &str,
    principal: &str,
    resource: &str,
    action: &str,
    effect: Effect,
    now: &str,
) -> Result<Map<String, Value>> {
    check_name("resource", resource)?;
    check_name("action", action)?;
    let p = directory::get(t, tenant, principal)?;
    let pty =
        type_of(&p).ok_or_else(|| Error::Corrupt(format!("object {principal} has no type")))?;
    if !pty.can_be_member() {
        return Err(Error::Invalid(format!(
            "a {} cannot hold grants (users, groups and service principals can)",
            pty.noun()
        )));
    }
    let pid = id_of(&p)?;
    let mut g = Map::new();
    g.insert("principal".into(), Value::from(pid.to_string()));
    g.insert("principalType".into(), Value::from(pty.noun()));
    g.insert("resource".into(), Value::from(resource));
    g.insert("action".into(), Value::from(action));
    g.insert("effect".into(), Value::from(effect.as_str()));
    g.insert("createdDateTime".into(), Value::from(now));
    t.put(grant_key(tenant, &pid, resource, action)?, encode(&g))?;
    Ok(g)
}

/// Removes a grant for good; NotFound when there is none.
pub fn revoke(
    t: &mut Txn,
    tenant: &str,
    principal: &str,
    resource: &str,
    action: &str,
) -> Result<Map<String, Value>> {
    let pid = directory::parse_id(principal)?;
    let k = grant_key(tenant, &pid, resource, action)?;
    let raw = t.get(&k)?.ok_or_else(|| {
        Error::NotFound(format!(
            "no grant for {pid} on {resource:?} action {action:?}"
        ))
    })?;
    let g = decode(&raw, &format!("grant of {pid}"))?;
    t.delete(k)?;
    Ok(g)
}

/// Every grant of the tenant (or of one principal), in key order.
pub fn list(
    s: &dyn Store,
    tenant: &str,
    principal: Option<&str>,
) -> Result<Vec<Map<String, Value>>> {
    let prefix = match principal {
        Some(p) => key(K_GRANT, tenant, &[directory::parse_id(p)?.as_bytes()])?,
        None => key(K_GRANT, tenant, &[])?,
    };
    s.scan_prefix(&prefix)?
        .into_iter()
        .map(|(k, v)| decode(&v, &format!("grant key {}", directory::hex(&k))))
        .collect()
}

/// A check's answer and the grant (or rule) that decided it.
#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    pub allowed: bool,
    /// The grant that decided, if one did.
    pub grant: Option<Map<String, Value>>,
    /// Why, in words.
    pub reason: String,
    /// Principals considered: the user and its groups, transitively.
    pub principals_checked: usize,
}

/// Is `user` allowed `action` on `resource`?
pub fn check(
    s: &dyn Store,
    tenant: &str,
    user: &str,
    resource: &str,
    action: &str,
) -> Result<Decision> {
    let u = directory::get_typed(s, tenant, ObjectType::User, user)?;
    let uid = id_of(&u)?;
    if u.get("accountEnabled") == Some(&Value::Bool(false)) {
        return Ok(Decision {
            allowed: false,
            grant: None,
            reason: format!("account {uid} is disabled (accountEnabled false)"),
            principals_checked: 0,
        });
    }
    let mut actions = vec![action];
    if action != ANY_ACTION {
        actions.push(ANY_ACTION);
    }
    let mut visited = BTreeSet::from([uid]);
    let mut queue = VecDeque::from([uid]);
    let mut allow = None;
    while let Some(p) = queue.pop_front() {
        for a in &actions {
            if let Some(raw) = s.get(&grant_key(tenant, &p, resource, a)?)? {
                let g = decode(&raw, &format!("grant of {p} on {resource:?}"))?;
                if g.get("effect").and_then(Value::as_str) == Some("deny") {
                    return Ok(Decision {
                        allowed: false,
                        reason: format!("denied by the grant to {p}"),
                        grant: Some(g),
                        principals_checked: visited.len(),
                    });
                }
                allow.get_or_insert((p, g));
            }
        }
        for (k, _) in s.scan_prefix(&key(K_MEMBER_OF, tenant, &[p.as_bytes()])?)? {
            let g = k
                .get(33..49)
                .and_then(|b| Uuid::from_slice(b).ok())
                .ok_or_else(|| {
                    Error::Corrupt(format!("memberOf key {} is malformed", directory::hex(&k)))
                })?;
            if visited.insert(g) {
                queue.push_back(g);
            }
        }
    }
    Ok(match allow {
        Some((p, g)) => Decision {
            allowed: true,
            reason: format!("allowed by the grant to {p}"),
            grant: Some(g),
            principals_checked: visited.len(),
        },
        None => Decision {
            allowed: false,
            grant: None,
            reason: "no grant matches".into(),
            principals_checked: visited.len(),
        },
    })
}
