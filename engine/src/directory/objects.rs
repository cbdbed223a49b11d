//! The directory's objects: create, get, list, update, delete, memberships, tenants, and
//! bringing one object back from a backup.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use uuid::Uuid;

use super::keys::*;
use super::schema::*;
use super::store::Store;
use super::txn::Txn;
use crate::error::{Error, Result};

/// How many keys of each kind a store holds (a backup manifest's object counts).
pub fn key_counts(s: &dyn Store) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for (kind, name) in [
        (K_OBJECT, "objects"),
        (K_MEMBER, "memberships"),
        (K_TENANT, "tenants"),
        (K_TOMBSTONE, "tombstones"),
    ] {
        out.insert(name.to_string(), s.count_prefix(&[kind])?);
    }
    Ok(out)
}

/// Brings one object back from a backup (`from`) as it was there: the object, its UPN claim,
/// and its memberships whose other side exists live. Fails with a conflict when an object
/// with that id is live; a tombstone of it is removed (the object is back).
/// Returns the object and the memberships that could not be restored.
pub fn restore_from(
    t: &mut Txn,
    from: &dyn Store,
    tenant: &str,
    id: &str,
) -> Result<(Map<String, Value>, Vec<String>)> {
    let uid = parse_id(id)?;
    let okey = object_key(tenant, &uid)?;
    let raw = from.get(&okey)?.ok_or_else(|| {
        Error::NotFound(format!(
            "the backup holds no live object with id {uid} in this tenant"
        ))
    })?;
    let obj = decode(&raw, &format!("backup object {uid}"))?;
    if t.get(&okey)?.is_some() {
        return Err(Error::Conflict(format!(
            "an object with id {uid} exists live; delete it first or leave it"
        )));
    }
    claim_unique(t, tenant, &obj, &uid)?;
    t.put(okey, raw)?;
    t.delete(key(K_TOMBSTONE, tenant, &[uid.as_bytes()])?)?;
    let mut skipped = Vec::new();
    let noun = type_of(&obj)
        .ok_or_else(|| Error::Corrupt(format!("backup object {uid} has no known @odata.type")))?
        .noun();
    for (k, _) in from.scan_prefix(&key(K_MEMBER_OF, tenant, &[uid.as_bytes()])?)? {
        let g = second_id(&k, "backup memberOf")?;
        if t.get(&object_key(tenant, &g)?)?.is_none() {
            skipped.push(format!("memberOf {g}"));
            continue;
        }
        put_membership(t, tenant, &g, &uid, noun.as_bytes().to_vec())?;
    }
    for (k, v) in from.scan_prefix(&key(K_MEMBER, tenant, &[uid.as_bytes()])?)? {
        let m = second_id(&k, "backup member")?;
        if t.get(&object_key(tenant, &m)?)?.is_none() {
            skipped.push(format!("member {m}"));
            continue;
        }
        put_membership(t, tenant, &uid, &m, v)?;
    }
    Ok((obj, skipped))
}

/// Creates an object in `tenant`; returns it as stored.
pub fn create(
    t: &mut Txn,
    tenant: &str,
    ty: ObjectType,
    fields: Map<String, Value>,
    now: &str,
) -> Result<Map<String, Value>> {
    check_fields(ty, &fields, true)?;
    let (id, supplied) = match fields.get("id").and_then(Value::as_str) {
        Some(s) => (parse_id(s)?, true),
        None => (Uuid::now_v7(), false),
    };
    let okey = object_key(tenant, &id)?;
    // A fresh ID is a time-ordered GUID (UUID version 7: a millisecond timestamp, then 74
    // random bits), so it cannot collide in practice, and the objects a batch creates land
    // side by side in the key space (RocksDB inserts them in order, several times faster
    // than at random places). A supplied ID (import) is checked.
    if supplied
        && (t.get(&okey)?.is_some()
            || t.get(&key(K_TOMBSTONE, tenant, &[id.as_bytes()])?)?
                .is_some())
    {
        return Err(Error::Conflict(format!(
            "an object with id {id} already exists in this tenant"
        )));
    }
    let mut obj = Map::new();
    obj.insert("@odata.type".into(), Value::from(ty.odata_type()));
    obj.insert("id".into(), Value::from(id.to_string()));
    for (k, v) in fields {
        if k != "id" && k != "@odata.type" && !v.is_null() {
            obj.insert(k, v);
        }
    }
    match ty {
        ObjectType::User | ObjectType::ServicePrincipal | ObjectType::Device => {
            obj.entry("accountEnabled").or_insert(Value::Bool(true));
        }
        ObjectType::Group => {
            obj.entry("securityEnabled").or_insert(Value::Bool(true));
            obj.entry("mailEnabled").or_insert(Value::Bool(false));
        }
        ObjectType::Application => {
            obj.entry("appId")
                .or_insert_with(|| Value::from(Uuid::new_v4().to_string()));
        }
    }
    obj.insert("createdDateTime".into(), Value::from(now));
    claim_unique(t, tenant, &obj, &id)?;
    // Absent: checked above for a supplied ID; a fresh random one names no stored object.
    t.put_over(okey, encode(&obj), None);
    Ok(obj)
}

/// The index entry that makes a field unique in its tenant: a user's userPrincipalName
/// (case-insensitive), an application's appId. None for the other types.
fn unique_key(
    tenant: &str,
    obj: &Map<String, Value>,
    id: &Uuid,
) -> Result<Option<(Vec<u8>, &'static str, String)>> {
    let field = match type_of(obj) {
        Some(ObjectType::User) => "userPrincipalName",
        Some(ObjectType::Application) => "appId",
        _ => return Ok(None),
    };
    // A user without a UPN is corrupt; an application without an appId claims none.
    let value = match obj.get(field).and_then(Value::as_str) {
        Some(v) => v,
        None if field == "appId" => return Ok(None),
        None => return Err(Error::Corrupt(format!("object {id} has no {field}"))),
    };
    let k = match field {
        "appId" => app_id_key(tenant, value)?,
        _ => upn_key(tenant, value)?,
    };
    Ok(Some((k, field, value.to_string())))
}

/// Claims the object's unique field (`unique_key`) for it: a conflict when another live
/// object holds it.
pub(crate) fn claim_unique(
    t: &mut Txn,
    tenant: &str,
    obj: &Map<String, Value>,
    id: &Uuid,
) -> Result<()> {
    let Some((ukey, field, value)) = unique_key(tenant, obj, id)? else {
        return Ok(());
    };
    let prev = t.get(&ukey)?;
    if let Some(owner) = &prev {
        if owner != id.as_bytes() {
            let owner = Uuid::from_slice(owner).map_err(|_| {
                Error::Corrupt(format!("{field} index entry for {value} is not an ID"))
            })?;
            let noun = type_of(obj).map(|t| t.noun()).unwrap_or("object");
            return Err(Error::Conflict(format!(
                "{field} {value} is already taken by {noun} {owner}"
            )));
        }
    }
    t.put_over(ukey, id.as_bytes().to_vec(), prev);
    Ok(())
}

/// Gives up the object's unique field (it is deleted, or the field changes), if it holds
/// it: an entry another object holds (an application made before appIds were indexed
/// shares it) is left alone.
fn release_unique(t: &mut Txn, tenant: &str, obj: &Map<String, Value>, id: &Uuid) -> Result<()> {
    if let Some((ukey, _, _)) = unique_key(tenant, obj, id)? {
        if t.get(&ukey)?.as_deref() == Some(id.as_bytes().as_slice()) {
            t.delete(ukey)?;
        }
    }
    Ok(())
}

/// Finds a live object by ID, or a user by userPrincipalName.
pub fn get(s: &dyn Store, tenant: &str, id_or_upn: &str) -> Result<Map<String, Value>> {
    let id = resolve_id(s, tenant, id_or_upn)?;
    let raw = s
        .get(&object_key(tenant, &id)?)?
        .ok_or_else(|| Error::NotFound(format!("no object with id {id} in this tenant")))?;
    decode(&raw, &format!("object {id}"))
}

/// An object ID, or the ID of the user with that userPrincipalName.
pub fn resolve_id(s: &dyn Store, tenant: &str, id_or_upn: &str) -> Result<Uuid> {
    if !id_or_upn.contains('@') {
        return parse_id(id_or_upn);
    }
    let owner = s
        .get(&upn_key(tenant, id_or_upn)?)?
        .ok_or_else(|| Error::NotFound(format!("no user with userPrincipalName {id_or_upn}")))?;
    Uuid::from_slice(&owner)
        .map_err(|_| Error::Corrupt(format!("UPN index entry for {id_or_upn} is not an ID")))
}

/// The stored bytes (Graph JSON) of a live object, by ID: what a server sends on the wire,
/// without parsing it.
pub fn get_raw(s: &dyn Store, tenant: &str, id: &str) -> Result<Vec<u8>> {
    let id = parse_id(id)?;
    s.get(&object_key(tenant, &id)?)?
        .ok_or_else(|| Error::NotFound(format!("no object with id {id} in this tenant")))
}

/// Like `get`, but the object must be of type `ty`.
pub fn get_typed(
    s: &dyn Store,
    tenant: &str,
    ty: ObjectType,
    id_or_upn: &str,
) -> Result<Map<String, Value>> {
    let obj = get(s, tenant, id_or_upn)?;
    if type_of(&obj) != Some(ty) {
        return Err(Error::NotFound(format!(
            "{id_or_upn} is not a {} (it is a {})",
            ty.noun(),
            type_of(&obj).map(|t| t.noun()).unwrap_or("?")
        )));
    }
    Ok(obj)
}

/// A stored object's ID: one without a GUID for `id` is corrupt.
pub(crate) fn id_of(obj: &Map<String, Value>) -> Result<Uuid> {
    obj.get("id")
        .and_then(Value::as_str)
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(|| Error::Corrupt(format!("stored object has no GUID id: {obj:?}")))
}

/// Every live object of `ty` in `tenant`, in ID order.
pub fn list(s: &dyn Store, tenant: &str, ty: ObjectType) -> Result<Vec<Map<String, Value>>> {
    let mut out = Vec::new();
    for (k, v) in s.scan_prefix(&key(K_OBJECT, tenant, &[])?)? {
        let obj = decode(&v, &format!("object key {}", hex(&k)))?;
        if type_of(&obj) == Some(ty) {
            out.push(obj);
        }
    }
    Ok(out)
}

/// Merges `patch` into an object (null removes an optional field).
pub fn update(
    t: &mut Txn,
    tenant: &str,
    ty: ObjectType,
    id_or_upn: &str,
    patch: Map<String, Value>,
) -> Result<Map<String, Value>> {
    if patch.is_empty() {
        return Err(Error::Invalid(
            "nothing to update: give --set FIELD=VALUE or --json".into(),
        ));
    }
    check_fields(ty, &patch, false)?;
    let mut obj = get_typed(t, tenant, ty, id_or_upn)?;
    let id = id_of(&obj)?;
    let before = obj.clone();
    for (k, v) in patch {
        if v.is_null() {
            if ty.requires(&k) {
                return Err(Error::Invalid(format!(
                    "{} field {k} is required and cannot be removed",
                    ty.noun()
                )));
            }
            obj.remove(&k);
        } else {
            obj.insert(k, v);
        }
    }
    let (old_key, new_key) = (
        unique_key(tenant, &before, &id)?,
        unique_key(tenant, &obj, &id)?,
    );
    if old_key.as_ref().map(|k| &k.0) != new_key.as_ref().map(|k| &k.0) {
        claim_unique(t, tenant, &obj, &id)?;
        release_unique(t, tenant, &before, &id)?;
    }
    t.put(object_key(tenant, &id)?, encode(&obj))?;
    Ok(obj)
}

/// Deletes an object: users, groups, applications and service principals go to the
/// recycle bin with their memberships; devices are removed for good.
pub fn delete(
    t: &mut Txn,
    tenant: &str,
    ty: ObjectType,
    id_or_upn: &str,
    now: &str,
) -> Result<Map<String, Value>> {
    let mut obj = get_typed(t, tenant, ty, id_or_upn)?;
    let id = id_of(&obj)?;
    let member_of: Vec<Uuid> = t
        .scan_prefix(&key(K_MEMBER_OF, tenant, &[id.as_bytes()])?)?
        .into_iter()
        .map(|(k, _)| second_id(&k, "memberOf"))
        .collect::<Result<_>>()?;
    let members: Vec<Uuid> = t
        .scan_prefix(&key(K_MEMBER, tenant, &[id.as_bytes()])?)?
        .into_iter()
        .map(|(k, _)| second_id(&k, "member"))
        .collect::<Result<_>>()?;
    for g in &member_of {
        delete_membership(t, tenant, g, &id)?;
    }
    for m in &members {
        delete_membership(t, tenant, &id, m)?;
    }
    release_unique(t, tenant, &obj, &id)?;
    t.delete(object_key(tenant, &id)?)?;
    if ty.soft_deleted() {
        obj.insert("deletedDateTime".into(), Value::from(now));
        let mut tomb = Map::new();
        tomb.insert("object".into(), Value::Object(obj.clone()));
        tomb.insert(
            "memberOf".into(),
            member_of
                .iter()
                .map(|g| Value::from(g.to_string()))
                .collect(),
        );
        tomb.insert(
            "members".into(),
            members.iter().map(|m| Value::from(m.to_string())).collect(),
        );
        t.put(key(K_TOMBSTONE, tenant, &[id.as_bytes()])?, encode(&tomb))?;
    }
    Ok(obj)
}

/// Adds `member` (a user, group or service principal) to `group`.
pub fn add_member(t: &mut Txn, tenant: &str, group: &str, member: &str) -> Result<()> {
    let g = get_typed(t, tenant, ObjectType::Group, group)?;
    let m = get(t, tenant, member)?;
    let mty = type_of(&m).ok_or_else(|| Error::Corrupt(format!("object {member} has no type")))?;
    if !mty.can_be_member() {
        return Err(Error::Invalid(format!(
            "a {} cannot be a group member (users, groups and service principals can)",
            mty.noun()
        )));
    }
    let (gid, mid) = (id_of(&g)?, id_of(&m)?);
    if gid == mid {
        return Err(Error::Invalid(format!(
            "group {gid} cannot be a member of itself"
        )));
    }
    let mkey = key(K_MEMBER, tenant, &[gid.as_bytes(), mid.as_bytes()])?;
    if t.get(&mkey)?.is_some() {
        return Err(Error::Conflict(format!(
            "{} {mid} is already a member of group {gid}",
            mty.noun()
        )));
    }
    put_membership(t, tenant, &gid, &mid, mty.noun().as_bytes().to_vec())
}

/// Writes `member`'s membership in `group`, both ways: the group's member key, holding
/// `noun` (the member's type), and the member's memberOf key.
pub(crate) fn put_membership(
    t: &mut Txn,
    tenant: &str,
    group: &Uuid,
    member: &Uuid,
    noun: Vec<u8>,
) -> Result<()> {
    t.put(
        key(K_MEMBER, tenant, &[group.as_bytes(), member.as_bytes()])?,
        noun,
    )?;
    t.put(
        key(K_MEMBER_OF, tenant, &[member.as_bytes(), group.as_bytes()])?,
        Vec::new(),
    )
}

/// Removes `member`'s membership in `group`, both ways.
fn delete_membership(t: &mut Txn, tenant: &str, group: &Uuid, member: &Uuid) -> Result<()> {
    t.delete(key(
        K_MEMBER,
        tenant,
        &[group.as_bytes(), member.as_bytes()],
    )?)?;
    t.delete(key(
        K_MEMBER_OF,
        tenant,
        &[member.as_bytes(), group.as_bytes()],
    )?)
}

pub fn remove_member(t: &mut Txn, tenant: &str, group: &str, member: &str) -> Result<()> {
    let g = get_typed(t, tenant, ObjectType::Group, group)?;
    let m = get(t, tenant, member)?;
    let (gid, mid) = (id_of(&g)?, id_of(&m)?);
    let mkey = key(K_MEMBER, tenant, &[gid.as_bytes(), mid.as_bytes()])?;
    if t.get(&mkey)?.is_none() {
        return Err(Error::NotFound(format!(
            "{mid} is not a member of group {gid}"
        )));
    }
    delete_membership(t, tenant, &gid, &mid)
}

/// The direct members of a group, as objects.
pub fn members(s: &dyn Store, tenant: &str, group: &str) -> Result<Vec<Map<String, Value>>> {
    let g = get_typed(s, tenant, ObjectType::Group, group)?;
    let gid = id_of(&g)?;
    let mut out = Vec::new();
    for (k, _) in s.scan_prefix(&key(K_MEMBER, tenant, &[gid.as_bytes()])?)? {
        let mid = second_id(&k, "member")?;
        out.push(get(s, tenant, &mid.to_string())?);
    }
    Ok(out)
}

/// The groups `member` belongs to, as objects, each once and in the order found:
/// directly, or (`transitive`) also through the groups it belongs to, breadth first.
pub fn member_of(
    s: &dyn Store,
    tenant: &str,
    member: &str,
    transitive: bool,
) -> Result<Vec<Map<String, Value>>> {
    let start = resolve_id(s, tenant, member)?;
    get(s, tenant, &start.to_string())?;
    let mut seen = std::collections::BTreeSet::from([start]);
    let mut queue = std::collections::VecDeque::from([start]);
    let mut out = Vec::new();
    while let Some(m) = queue.pop_front() {
        for (k, _) in s.scan_prefix(&key(K_MEMBER_OF, tenant, &[m.as_bytes()])?)? {
            let g = second_id(&k, "memberOf")?;
            if seen.insert(g) {
                out.push(get(s, tenant, &g.to_string())?);
                if transitive {
                    queue.push_back(g);
                }
            }
        }
    }
    Ok(out)
}

/// The tenant record written when a tenant is created.
pub fn create_tenant(
    t: &mut Txn,
    tenant_id: &str,
    name: &str,
    now: &str,
) -> Result<Map<String, Value>> {
    let mut m = Map::new();
    m.insert("id".into(), Value::from(tenant_id));
    m.insert("displayName".into(), Value::from(name));
    m.insert("createdDateTime".into(), Value::from(now));
    t.put(tenant_key(tenant_id)?, encode(&m))?;
    Ok(m)
}
