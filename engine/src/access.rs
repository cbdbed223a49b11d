//! Access grants: a principal (user, group or service principal) is allowed or denied an
//! action on a named resource. Grants are hard-deleted on revoke.
//!
//! Key: `0x07 | tenant | principal(16) | resource -> {action: grant JSON}`, so a check finds
//! a principal's grants on a resource with one point read.
//!
//! A check: a disabled account is denied; otherwise the user and every group it belongs to,
//! transitively (a visited set stops cycles), are looked up; any matching deny wins over
//! any allow; no matching grant denies.

use std::collections::{BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::directory::{
    self, decode, encode, id_of, key, type_of, KeyScanner, ObjectType, Store, Txn, K_GRANT,
    K_MEMBER_OF,
};
use crate::error::{Error, Result};

/// The action a grant without `--action` covers: every action.
pub const ANY_ACTION: &str = "*";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    if s.is_empty() || s.len() > 1024 {
        return Err(Error::Invalid(format!(
            "{what} {s:?} must be 1 to 1024 bytes"
        )));
    }
    if s.chars().any(crate::directory::is_unsafe_char) {
        return Err(Error::Invalid(format!(
            "{what} {s:?} holds a control character (a newline, tab, escape...)"
        )));
    }
    Ok(())
}

fn grant_key(tenant: &str, principal: &Uuid, resource: &str) -> Result<Vec<u8>> {
    key(
        K_GRANT,
        tenant,
        &[principal.as_bytes(), resource.as_bytes()],
    )
}

/// A principal's grants on one resource, by action.
fn grants_at(s: &dyn Store, k: &[u8], what: &str) -> Result<Map<String, Value>> {
    match s.get(k)? {
        Some(raw) => decode(&raw, what),
        None => Ok(Map::new()),
    }
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
            "{principal} is {} {}, which cannot hold grants (users, groups and service principals can)",
            if pty.noun().starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" },
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
    let k = grant_key(tenant, &pid, resource)?;
    let mut by_action = grants_at(t, &k, &format!("grants of {pid} on {resource:?}"))?;
    by_action.insert(action.to_string(), Value::Object(g.clone()));
    t.put(k, encode(&by_action))?;
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
    let k = grant_key(tenant, &pid, resource)?;
    let mut by_action = grants_at(t, &k, &format!("grants of {pid} on {resource:?}"))?;
    let g = match by_action.remove(action) {
        Some(Value::Object(g)) => g,
        _ => {
            return Err(Error::NotFound(format!(
                "no grant for {pid} on {resource:?} action {action:?}"
            )))
        }
    };
    if by_action.is_empty() {
        t.delete(k)?;
    } else {
        t.put(k, encode(&by_action))?;
    }
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
    let mut out = Vec::new();
    for (k, v) in s.scan_prefix(&prefix)? {
        for (_, g) in decode(&v, &format!("grant key {}", directory::hex(&k)))? {
            match g {
                Value::Object(g) => out.push(g),
                _ => {
                    return Err(Error::Corrupt(format!(
                        "grant key {}: a grant is not an object",
                        directory::hex(&k)
                    )))
                }
            }
        }
    }
    Ok(out)
}

/// Queues the groups `p` is a direct member of that were not seen yet.
fn continue_walk(
    s: &dyn Store,
    scanner: &mut Option<Box<dyn KeyScanner + '_>>,
    member_of_head: &[u8],
    p: &Uuid,
    visited: &mut BTreeSet<Uuid>,
    queue: &mut VecDeque<Uuid>,
) -> Result<()> {
    let prefix = [member_of_head, p.as_bytes()].concat();
    let keys = match scanner {
        Some(sc) => sc.keys(&prefix)?,
        None => s
            .scan_prefix(&prefix)?
            .into_iter()
            .map(|(k, _)| k)
            .collect(),
    };
    for k in keys {
        let g = directory::second_id(&k, "memberOf")?;
        if visited.insert(g) {
            queue.push_back(g);
        }
    }
    Ok(())
}

/// A check's answer and the grant (or rule) that decided it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
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
    // Only the type and the account flag matter here: read just those fields.
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "@odata.type")]
        odata_type: Option<String>,
        #[serde(rename = "accountEnabled")]
        account_enabled: Option<bool>,
    }
    let uid = directory::resolve_id(s, tenant, user)?;
    let raw = directory::get_raw(s, tenant, &uid.to_string())?;
    let u: Head =
        serde_json::from_slice(&raw).map_err(|e| Error::Corrupt(format!("object {uid}: {e}")))?;
    if u.odata_type.as_deref() != Some(ObjectType::User.odata_type()) {
        return Err(Error::NotFound(format!("{user} is not a user")));
    }
    if u.account_enabled == Some(false) {
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
    let mut scanner = s.key_scanner();
    // Key heads built once (kind and tenant), extended per principal.
    let member_of_head = key(K_MEMBER_OF, tenant, &[])?;
    let grant_head = key(K_GRANT, tenant, &[])?;
    while let Some(p) = queue.pop_front() {
        if let Some(raw) =
            s.get(&[grant_head.as_slice(), p.as_bytes(), resource.as_bytes()].concat())?
        {
            let by_action = decode(&raw, &format!("grants of {p} on {resource:?}"))?;
            for a in &actions {
                if let Some(Value::Object(g)) = by_action.get(*a) {
                    let g = g.clone();
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
        }
        continue_walk(
            s,
            &mut scanner,
            &member_of_head,
            &p,
            &mut visited,
            &mut queue,
        )?;
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
