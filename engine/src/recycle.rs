//! The recycle bin (promise 7): soft-deleted users, groups, applications and service
//! principals, restorable by ID for 30 days with their memberships, then purged.
//!
//! A tombstone is `0x06 | tenant | id -> {object (with deletedDateTime), memberOf, members}`,
//! written by `directory::delete`. Everything here stages changes into a `Txn`, so a restore
//! or a purge is one replicated log entry.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::directory::{
    claim_unique, decode, encode, key, object_key, parse_id, put_membership, type_of, ObjectType,
    Store, Txn, K_GRANT, K_TOMBSTONE,
};
use crate::error::{Error, Result};

/// How long a tombstone stays restorable.
pub const RETENTION_DAYS: i64 = 30;

/// A tombstone as stored, plus whether it is past its retention at `now`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tombstone {
    pub object: Map<String, Value>,
    pub member_of: Vec<String>,
    pub members: Vec<String>,
    pub deleted_at: DateTime<Utc>,
    pub expired: bool,
}

impl Tombstone {
    /// The object's ID (`parse_tombstone` checked that it is a GUID).
    pub fn id(&self) -> &str {
        self.object
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    pub fn object_type(&self) -> Option<ObjectType> {
        type_of(&self.object)
    }

    /// The tombstone as JSON: the object's fields plus the kept memberships and `expired`.
    pub fn to_json(&self) -> Value {
        let mut m = self.object.clone();
        m.insert("memberOf".into(), Value::from(self.member_of.clone()));
        m.insert("members".into(), Value::from(self.members.clone()));
        m.insert("expired".into(), Value::Bool(self.expired));
        Value::Object(m)
    }
}

fn ids(v: Option<&Value>, what: &str) -> Result<Vec<String>> {
    match v {
        None => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| Error::Corrupt(format!("{what}: an ID is not a string")))
            })
            .collect(),
        Some(_) => Err(Error::Corrupt(format!("{what}: not a list"))),
    }
}

fn parse_tombstone(raw: &[u8], what: &str, now: DateTime<Utc>) -> Result<Tombstone> {
    let mut m = decode(raw, what)?;
    let object = match m.remove("object") {
        Some(Value::Object(o)) => o,
        _ => return Err(Error::Corrupt(format!("{what}: no object"))),
    };
    if object
        .get("id")
        .and_then(Value::as_str)
        .and_then(|id| Uuid::parse_str(id).ok())
        .is_none()
    {
        return Err(Error::Corrupt(format!("{what}: the object has no GUID id")));
    }
    let deleted = object
        .get("deletedDateTime")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Corrupt(format!("{what}: no deletedDateTime")))?;
    let deleted_at = DateTime::parse_from_rfc3339(deleted)
        .map_err(|e| Error::Corrupt(format!("{what}: deletedDateTime {deleted:?}: {e}")))?
        .with_timezone(&Utc);
    Ok(Tombstone {
        member_of: ids(m.get("memberOf"), what)?,
        members: ids(m.get("members"), what)?,
        expired: is_expired(deleted_at, now),
        deleted_at,
        object,
    })
}

/// Past retention: deleted 30 days or more before `now`.
pub fn is_expired(deleted_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now - deleted_at >= Duration::days(RETENTION_DAYS)
}

/// Every tombstone of the tenant, in ID order (expired ones included, flagged).
pub fn list(s: &dyn Store, tenant: &str, now: DateTime<Utc>) -> Result<Vec<Tombstone>> {
    s.scan_prefix(&key(K_TOMBSTONE, tenant, &[])?)?
        .into_iter()
        .map(|(k, v)| {
            parse_tombstone(
                &v,
                &format!("tombstone key {}", crate::directory::hex(&k)),
                now,
            )
        })
        .collect()
}

/// One tombstone; NotFound (saying it was purged) when the bin does not hold it.
pub fn get(s: &dyn Store, tenant: &str, id: &str, now: DateTime<Utc>) -> Result<Tombstone> {
    let uid = parse_id(id)?;
    let Some(raw) = s.get(&key(K_TOMBSTONE, tenant, &[uid.as_bytes()])?)? else {
        return Err(if s.get(&object_key(tenant, &uid)?)?.is_some() {
            Error::NotFound(format!("object {uid} is not deleted (it is live)"))
        } else {
            Error::NotFound(format!(
                "no deleted object with id {uid} in this tenant's recycle bin: it was purged, never existed, or belongs to another tenant"
            ))
        });
    };
    parse_tombstone(&raw, &format!("tombstone {uid}"), now)
}

/// What a restore brought back and what it could not.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Restored {
    pub object: Map<String, Value>,
    /// Memberships put back, as `memberOf GROUP` / `member ID`.
    pub memberships: Vec<String>,
    /// Memberships whose other side is not live, with why (deleted meanwhile, purged).
    pub skipped: Vec<String>,
}

/// Restores a tombstoned object: same ID, attributes, and memberships in both directions
/// whose other side is live. `new_upn` renames a user whose UPN was taken meanwhile.
pub fn restore(
    t: &mut Txn,
    tenant: &str,
    id: &str,
    new_upn: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Restored> {
    let tomb = get(t, tenant, id, now)?;
    let uid = parse_id(id)?;
    if tomb.expired {
        return Err(Error::NotFound(format!(
            "object {uid} was deleted at {}, {RETENTION_DAYS} days or more ago: it expired and cannot be restored (`dirctl deleted purge-expired` removes it)",
            tomb.deleted_at.to_rfc3339()
        )));
    }
    let ty = tomb
        .object_type()
        .ok_or_else(|| Error::Corrupt(format!("tombstone {uid}: no @odata.type")))?;
    let mut obj = tomb.object.clone();
    obj.remove("deletedDateTime");
    if let Some(upn) = new_upn {
        if ty != ObjectType::User {
            return Err(Error::Invalid(format!(
                "--new-upn applies to users; {uid} is a {}",
                ty.noun()
            )));
        }
        let mut f = Map::new();
        f.insert("userPrincipalName".into(), Value::from(upn));
        crate::directory::check_fields(ty, &f, false)?;
        obj.insert("userPrincipalName".into(), Value::from(upn));
    }
    let okey = object_key(tenant, &uid)?;
    if t.get(&okey)?.is_some() {
        return Err(Error::Conflict(format!(
            "an object with id {uid} is live; nothing to restore"
        )));
    }
    claim_unique(t, tenant, &obj, &uid).map_err(|e| match e {
        Error::Conflict(m) if ty == ObjectType::User => Error::Conflict(format!(
            "cannot restore user {uid}: {m} since it was deleted; restore it under another name with `dirctl deleted restore {uid} --new-upn NEW_UPN`"
        )),
        Error::Conflict(m) => Error::Conflict(format!(
            "cannot restore {} {uid}: {m} since it was deleted",
            ty.noun()
        )),
        other => other,
    })?;
    t.put(okey, encode(&obj))?;
    t.delete(key(K_TOMBSTONE, tenant, &[uid.as_bytes()])?)?;
    let mut out = Restored::default();
    for g in &tomb.member_of {
        let gid = parse_id(g)?;
        if let Some(why) = why_not(t, tenant, &uid, &gid, "members")? {
            out.skipped.push(format!("memberOf group {gid}: {why}"));
            continue;
        }
        put_membership(t, tenant, &gid, &uid, ty.noun().as_bytes().to_vec())?;
        out.memberships.push(format!("memberOf group {gid}"));
    }
    for m in &tomb.members {
        let mid = parse_id(m)?;
        if let Some(why) = why_not(t, tenant, &uid, &mid, "memberOf")? {
            out.skipped.push(format!("member {mid}: {why}"));
            continue;
        }
        let raw = t
            .get(&object_key(tenant, &mid)?)?
            .ok_or_else(|| Error::NotFound(format!("member {mid}")))?;
        let member = decode(&raw, &format!("object {mid}"))?;
        let noun = type_of(&member)
            .ok_or_else(|| Error::Corrupt(format!("object {mid} has no known @odata.type")))?
            .noun();
        put_membership(t, tenant, &uid, &mid, noun.as_bytes().to_vec())?;
        out.memberships.push(format!("member {mid}"));
    }
    out.object = obj;
    Ok(out)
}

/// Whether the other side of a membership of `uid` is live (None), or why not. One in the
/// recycle bin keeps the membership in its tombstone's `list`, so that it comes back when
/// that one is restored (in whichever order the two are).
fn why_not(
    t: &mut Txn,
    tenant: &str,
    uid: &Uuid,
    other: &Uuid,
    list: &str,
) -> Result<Option<String>> {
    if t.get(&object_key(tenant, other)?)?.is_some() {
        return Ok(None);
    }
    let tkey = key(K_TOMBSTONE, tenant, &[other.as_bytes()])?;
    let Some(raw) = t.get(&tkey)? else {
        return Ok(Some("no longer exists (purged)".to_string()));
    };
    let mut stone = decode(&raw, &format!("tombstone {other}"))?;
    let ids = stone
        .entry(list)
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(a) = ids {
        if !a
            .iter()
            .any(|x| x.as_str() == Some(uid.to_string().as_str()))
        {
            a.push(Value::from(uid.to_string()));
        }
    }
    t.put(tkey, encode(&stone))?;
    Ok(Some(
        "deleted meanwhile (in the recycle bin): kept with it, back when it is restored"
            .to_string(),
    ))
}

/// Removes one tombstone for good, with the grants it held as a principal.
pub fn purge(t: &mut Txn, tenant: &str, id: &str, now: DateTime<Utc>) -> Result<Tombstone> {
    let tomb = get(t, tenant, id, now)?;
    let uid = parse_id(id)?;
    remove(t, tenant, &uid)?;
    Ok(tomb)
}

fn remove(t: &mut Txn, tenant: &str, uid: &Uuid) -> Result<()> {
    t.delete(key(K_TOMBSTONE, tenant, &[uid.as_bytes()])?)?;
    for (k, _) in t.scan_prefix(&key(K_GRANT, tenant, &[uid.as_bytes()])?)? {
        t.delete(k)?;
    }
    Ok(())
}

/// Removes every tombstone past retention; returns their IDs (none the second time).
pub fn purge_expired(t: &mut Txn, tenant: &str, now: DateTime<Utc>) -> Result<Vec<String>> {
    let mut purged = Vec::new();
    for tomb in list(t, tenant, now)?.into_iter().filter(|x| x.expired) {
        let uid = parse_id(tomb.id())?;
        remove(t, tenant, &uid)?;
        purged.push(uid.to_string());
    }
    Ok(purged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn retention_edges_are_exact() {
        let deleted = at("2026-12-01T10:00:00Z");
        assert!(!is_expired(deleted, at("2026-12-31T09:00:00Z")));
        assert!(!is_expired(deleted, at("2026-12-31T09:59:59Z")));
        assert!(is_expired(deleted, at("2026-12-31T10:00:00Z")));
        assert!(is_expired(deleted, at("2026-12-31T10:00:01Z")));
    }
}
