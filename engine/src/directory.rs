//! The directory's objects and their keys: tenants, users, groups, applications,
//! service principals and devices, with Microsoft Graph's field names.
//!
//! Key layout in the data column family (big-endian, fixed width where it matters):
//!
//! ```text
//! 0x01 | tenant(16) | id(16)              -> object JSON          (live objects)
//! 0x02 | tenant(16) | lowercase UPN bytes -> user id(16)          (UPN uniqueness)
//! 0x03 | tenant(16) | group(16) | member(16) -> member's type     (members)
//! 0x04 | tenant(16) | member(16) | group(16) -> empty             (memberOf)
//! 0x05 | tenant(16)                       -> tenant JSON
//! 0x06 | tenant(16) | id(16)              -> tombstone JSON       (recycle bin)
//! 0x07 | tenant(16) | principal(16) | resource -> {action: grant JSON} (access)
//! 0x08 | seq(8)                           -> audit record JSON    (audit, per partition)
//! 0x09                                    -> seq(8) | sha256(32)  (audit chain head)
//! ```

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::log::Op;
use crate::replica::{CheckpointView, Replica};

pub(crate) const K_OBJECT: u8 = 0x01;
pub(crate) const K_UPN: u8 = 0x02;
pub(crate) const K_MEMBER: u8 = 0x03;
pub(crate) const K_MEMBER_OF: u8 = 0x04;
pub(crate) const K_TENANT: u8 = 0x05;
pub(crate) const K_TOMBSTONE: u8 = 0x06;
pub(crate) const K_GRANT: u8 = 0x07;
pub(crate) const K_AUDIT: u8 = 0x08;
pub(crate) const K_AUDIT_HEAD: u8 = 0x09;

/// Read access to a partition's data: a replica, or a transaction's view of it.
pub trait Store {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Many key-only prefix scans over one iterator (cheaper than an iterator each), for
    /// walks such as an access check's; None: use `scan_prefix`.
    fn key_scanner(&self) -> Option<Box<dyn KeyScanner + '_>> {
        None
    }
}

/// Repeated prefix scans returning keys, reusing one storage iterator.
pub trait KeyScanner {
    fn keys(&mut self, prefix: &[u8]) -> Result<Vec<Vec<u8>>>;
}

impl Store for Replica {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Replica::get(self, key)
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Replica::scan_prefix(self, prefix)
    }
    fn key_scanner(&self) -> Option<Box<dyn KeyScanner + '_>> {
        Some(Box::new(Replica::key_scanner(self)))
    }
}

impl Store for CheckpointView {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        CheckpointView::get(self, key)
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        CheckpointView::scan_prefix(self, prefix)
    }
}

/// How many keys of each kind a checkpoint holds (a backup manifest's object counts).
pub fn key_counts(view: &CheckpointView) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for (kind, name) in [
        (K_OBJECT, "objects"),
        (K_MEMBER, "memberships"),
        (K_TENANT, "tenants"),
        (K_TOMBSTONE, "tombstones"),
    ] {
        let mut n = 0u64;
        view.for_each_prefix(&[kind], |_, _| n += 1)?;
        out.insert(name.to_string(), n);
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
    if type_of(&obj) == Some(ObjectType::User) {
        claim_upn(t, tenant, &obj, &uid)?;
    }
    t.put(okey, raw)?;
    t.delete(key(K_TOMBSTONE, tenant, &[uid.as_bytes()])?)?;
    let mut skipped = Vec::new();
    let other = |k: &[u8]| k.get(33..49).and_then(|b| Uuid::from_slice(b).ok());
    for (k, _) in from.scan_prefix(&key(K_MEMBER_OF, tenant, &[uid.as_bytes()])?)? {
        let g = other(&k).ok_or_else(|| Error::Corrupt("backup memberOf key malformed".into()))?;
        if t.get(&object_key(tenant, &g)?)?.is_none() {
            skipped.push(format!("memberOf {g}"));
            continue;
        }
        let noun = type_of(&obj).map(|ty| ty.noun()).unwrap_or("user");
        t.put(
            key(K_MEMBER, tenant, &[g.as_bytes(), uid.as_bytes()])?,
            noun.as_bytes().to_vec(),
        )?;
        t.put(
            key(K_MEMBER_OF, tenant, &[uid.as_bytes(), g.as_bytes()])?,
            Vec::new(),
        )?;
    }
    for (k, v) in from.scan_prefix(&key(K_MEMBER, tenant, &[uid.as_bytes()])?)? {
        let m = other(&k).ok_or_else(|| Error::Corrupt("backup member key malformed".into()))?;
        if t.get(&object_key(tenant, &m)?)?.is_none() {
            skipped.push(format!("member {m}"));
            continue;
        }
        t.put(key(K_MEMBER, tenant, &[uid.as_bytes(), m.as_bytes()])?, v)?;
        t.put(
            key(K_MEMBER_OF, tenant, &[m.as_bytes(), uid.as_bytes()])?,
            Vec::new(),
        )?;
    }
    Ok((obj, skipped))
}

/// Changes staged over a store: reads see them, and they become one log entry's ops
/// (each with the value it replaces, so the entry can be cut off).
pub struct Txn<'a> {
    base: &'a dyn Store,
    /// The newest op on each key this transaction changed (an index into `ops`).
    pending: BTreeMap<Vec<u8>, usize>,
    ops: Vec<Op>,
}

impl<'a> Txn<'a> {
    pub fn new(base: &'a dyn Store) -> Txn<'a> {
        Txn {
            base,
            pending: BTreeMap::new(),
            ops: Vec::new(),
        }
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        let prev = self.get(&key)?;
        self.put_over(key, value, prev);
        Ok(())
    }

    /// `put` when the caller has just read the value it replaces (`prev`): saves the read.
    pub fn put_over(&mut self, key: Vec<u8>, value: Vec<u8>, prev: Option<Vec<u8>>) {
        self.pending.insert(key.clone(), self.ops.len());
        self.ops.push(Op::Put { key, value, prev });
    }

    pub fn delete(&mut self, key: Vec<u8>) -> Result<()> {
        let Some(prev) = self.get(&key)? else {
            return Ok(());
        };
        self.pending.insert(key.clone(), self.ops.len());
        self.ops.push(Op::Delete {
            key,
            prev: Some(prev),
        });
        Ok(())
    }

    /// The value op `i` leaves behind (`None` for a delete).
    fn written(&self, i: usize) -> Option<&[u8]> {
        match &self.ops[i] {
            Op::Put { value, .. } => Some(value),
            Op::Delete { .. } => None,
        }
    }

    pub fn into_ops(self) -> Vec<Op> {
        self.ops
    }

    pub fn op_count(&self) -> usize {
        self.ops.len()
    }
}

/// A store as it will be once `ops` (an entry still being made durable) are applied: what a
/// pipelined writer builds its next entry on (`Cluster::write_pipelined`). Reads of a key the
/// entry changes never reach the base, so it does not matter whether the entry has landed
/// there yet.
pub struct Overlay<'a> {
    base: &'a dyn Store,
    changed: BTreeMap<&'a [u8], Option<&'a [u8]>>,
}

impl<'a> Overlay<'a> {
    pub fn new(base: &'a dyn Store, ops: &'a [Op]) -> Overlay<'a> {
        let changed = ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value, .. } => (key.as_slice(), Some(value.as_slice())),
                Op::Delete { key, .. } => (key.as_slice(), None),
            })
            .collect();
        Overlay { base, changed }
    }
}

impl Store for Overlay<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.changed.get(key) {
            Some(v) => Ok(v.map(<[u8]>::to_vec)),
            None => self.base.get(key),
        }
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let changed = self
            .changed
            .range(prefix..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (*k, *v));
        scan_merged(self.base, prefix, changed)
    }
}

/// `base`'s scan of `prefix` with `changed` (key, value after the change or `None` for a
/// delete) laid over it.
fn scan_merged<'a>(
    base: &dyn Store,
    prefix: &[u8],
    changed: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = base.scan_prefix(prefix)?.into_iter().collect();
    for (k, v) in changed {
        match v {
            Some(v) => merged.insert(k.to_vec(), v.to_vec()),
            None => merged.remove(k),
        };
    }
    Ok(merged.into_iter().collect())
}

impl Store for Txn<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.pending.get(key) {
            Some(&i) => Ok(self.written(i).map(<[u8]>::to_vec)),
            None => self.base.get(key),
        }
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let changed = self
            .pending
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, i)| (k.as_slice(), self.written(*i)));
        scan_merged(self.base, prefix, changed)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectType {
    User,
    Group,
    Application,
    ServicePrincipal,
    Device,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Bool,
    StrList,
}

struct Field {
    name: &'static str,
    kind: Kind,
    required: bool,
}

const fn f(name: &'static str, kind: Kind, required: bool) -> Field {
    Field {
        name,
        kind,
        required,
    }
}

const USER_FIELDS: &[Field] = &[
    f("userPrincipalName", Kind::Str, true),
    f("displayName", Kind::Str, true),
    f("mail", Kind::Str, false),
    f("mailNickname", Kind::Str, false),
    f("givenName", Kind::Str, false),
    f("surname", Kind::Str, false),
    f("jobTitle", Kind::Str, false),
    f("department", Kind::Str, false),
    f("officeLocation", Kind::Str, false),
    f("mobilePhone", Kind::Str, false),
    f("usageLocation", Kind::Str, false),
    f("accountEnabled", Kind::Bool, false),
];
const GROUP_FIELDS: &[Field] = &[
    f("displayName", Kind::Str, true),
    f("description", Kind::Str, false),
    f("mailNickname", Kind::Str, false),
    f("mail", Kind::Str, false),
    f("mailEnabled", Kind::Bool, false),
    f("securityEnabled", Kind::Bool, false),
    f("groupTypes", Kind::StrList, false),
];
const APP_FIELDS: &[Field] = &[
    f("displayName", Kind::Str, true),
    f("appId", Kind::Str, false),
    f("signInAudience", Kind::Str, false),
    f("description", Kind::Str, false),
    f("identifierUris", Kind::StrList, false),
];
const SP_FIELDS: &[Field] = &[
    f("appId", Kind::Str, true),
    f("displayName", Kind::Str, false),
    f("accountEnabled", Kind::Bool, false),
    f("servicePrincipalType", Kind::Str, false),
    f("appDisplayName", Kind::Str, false),
];
const DEVICE_FIELDS: &[Field] = &[
    f("displayName", Kind::Str, true),
    f("deviceId", Kind::Str, false),
    f("operatingSystem", Kind::Str, false),
    f("operatingSystemVersion", Kind::Str, false),
    f("accountEnabled", Kind::Bool, false),
    f("trustType", Kind::Str, false),
];
/// Fields the service sets; a client may supply `id` (import), never the others.
const SERVER_FIELDS: &[&str] = &["id", "@odata.type", "createdDateTime", "deletedDateTime"];

impl ObjectType {
    pub const ALL: [ObjectType; 5] = [
        ObjectType::User,
        ObjectType::Group,
        ObjectType::Application,
        ObjectType::ServicePrincipal,
        ObjectType::Device,
    ];

    pub fn odata_type(self) -> &'static str {
        match self {
            ObjectType::User => "#microsoft.graph.user",
            ObjectType::Group => "#microsoft.graph.group",
            ObjectType::Application => "#microsoft.graph.application",
            ObjectType::ServicePrincipal => "#microsoft.graph.servicePrincipal",
            ObjectType::Device => "#microsoft.graph.device",
        }
    }

    /// The CLI's noun.
    pub fn noun(self) -> &'static str {
        match self {
            ObjectType::User => "user",
            ObjectType::Group => "group",
            ObjectType::Application => "app",
            ObjectType::ServicePrincipal => "sp",
            ObjectType::Device => "device",
        }
    }

    pub fn from_odata(s: &str) -> Option<ObjectType> {
        ObjectType::ALL.into_iter().find(|t| t.odata_type() == s)
    }

    /// Accepts the CLI noun, Graph's type name, or the full `@odata.type`.
    pub fn parse(s: &str) -> Result<ObjectType> {
        let lower = s
            .trim_start_matches("#microsoft.graph.")
            .to_ascii_lowercase();
        match lower.as_str() {
            "user" => Ok(ObjectType::User),
            "group" => Ok(ObjectType::Group),
            "app" | "application" => Ok(ObjectType::Application),
            "sp" | "serviceprincipal" => Ok(ObjectType::ServicePrincipal),
            "device" => Ok(ObjectType::Device),
            _ => Err(Error::Invalid(format!("unknown object type {s:?} (known: user, group, application, servicePrincipal, device)"))),
        }
    }

    fn fields(self) -> &'static [Field] {
        match self {
            ObjectType::User => USER_FIELDS,
            ObjectType::Group => GROUP_FIELDS,
            ObjectType::Application => APP_FIELDS,
            ObjectType::ServicePrincipal => SP_FIELDS,
            ObjectType::Device => DEVICE_FIELDS,
        }
    }

    /// Users, groups, applications and service principals go to the recycle bin; devices do not.
    pub fn soft_deleted(self) -> bool {
        self != ObjectType::Device
    }

    /// What a group may hold as a member.
    pub fn can_be_member(self) -> bool {
        matches!(
            self,
            ObjectType::User | ObjectType::Group | ObjectType::ServicePrincipal
        )
    }
}

thread_local! {
    /// The tenant ID parsed last: nearly every key one command builds is in one tenant, and
    /// parsing the ID costs a point read about a tenth of its time.
    static TENANT: std::cell::RefCell<Option<(String, [u8; 16])>> =
        const { std::cell::RefCell::new(None) };
}

fn tenant_bytes(tenant: &str) -> Result<[u8; 16]> {
    let cached = TENANT.with_borrow(|c| {
        c.as_ref()
            .filter(|(t, _)| t == tenant)
            .map(|(_, bytes)| *bytes)
    });
    if let Some(bytes) = cached {
        return Ok(bytes);
    }
    let bytes = Uuid::parse_str(tenant)
        .map(|u| *u.as_bytes())
        .map_err(|_| Error::Corrupt(format!("tenant id {tenant:?} is not a UUID")))?;
    TENANT.with_borrow_mut(|c| *c = Some((tenant.to_string(), bytes)));
    Ok(bytes)
}

pub(crate) fn key(kind: u8, tenant: &str, parts: &[&[u8]]) -> Result<Vec<u8>> {
    let mut k = Vec::with_capacity(1 + 16 + parts.iter().map(|p| p.len()).sum::<usize>());
    k.push(kind);
    k.extend_from_slice(&tenant_bytes(tenant)?);
    for p in parts {
        k.extend_from_slice(p);
    }
    Ok(k)
}

pub fn parse_id(id: &str) -> Result<Uuid> {
    Uuid::parse_str(id).map_err(|_| {
        Error::Invalid(format!(
            "{id:?} is not an object ID (a GUID such as 3f2504e0-4f89-11d3-9a0c-0305e82c3301)"
        ))
    })
}

/// The data key of a live object (documented in docs/design.md).
pub fn object_key(tenant: &str, id: &Uuid) -> Result<Vec<u8>> {
    key(K_OBJECT, tenant, &[id.as_bytes()])
}

pub(crate) fn upn_key(tenant: &str, upn: &str) -> Result<Vec<u8>> {
    key(K_UPN, tenant, &[upn.to_lowercase().as_bytes()])
}

pub fn tenant_key(tenant: &str) -> Result<Vec<u8>> {
    key(K_TENANT, tenant, &[])
}

pub(crate) fn decode(raw: &[u8], what: &str) -> Result<Map<String, Value>> {
    match serde_json::from_slice(raw) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Error::Corrupt(format!(
            "{what}: stored value is not a JSON object"
        ))),
        Err(e) => Err(Error::Corrupt(format!("{what}: {e}"))),
    }
}

pub(crate) fn encode(m: &Map<String, Value>) -> Vec<u8> {
    serde_json::to_vec(m).unwrap_or_default()
}

pub(crate) fn type_of(m: &Map<String, Value>) -> Option<ObjectType> {
    m.get("@odata.type")
        .and_then(Value::as_str)
        .and_then(ObjectType::from_odata)
}

/// Characters no stored name may hold: control characters, and the ones that break or
/// reorder a line on a terminal (line and paragraph separators, bidirectional overrides).
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// Longest string a field takes (Graph's own limits are lower for most fields: 256 for
/// displayName, 113 for userPrincipalName).
const MAX_STRING_CHARS: usize = 1024;

/// Checks client-supplied fields against the type's schema.
pub(crate) fn check_fields(
    ty: ObjectType,
    fields: &Map<String, Value>,
    creating: bool,
) -> Result<()> {
    let schema = ty.fields();
    for (name, v) in fields {
        if name == "id" && creating {
            parse_id(v.as_str().unwrap_or_default())?;
            continue;
        }
        if name == "@odata.type" && v.as_str().and_then(ObjectType::from_odata) == Some(ty) {
            continue;
        }
        let Some(field) = schema.iter().find(|f| f.name == name) else {
            if SERVER_FIELDS.contains(&name.as_str()) {
                return Err(Error::Invalid(format!(
                    "{} field {name} is set by the service, not by a client",
                    ty.noun()
                )));
            }
            let known: Vec<_> = schema.iter().map(|f| f.name).collect();
            return Err(Error::Invalid(format!(
                "{} has no field {name:?} (known: {})",
                ty.noun(),
                known.join(", ")
            )));
        };
        let ok = match field.kind {
            Kind::Str => {
                v.as_str().is_some_and(|s| !s.trim().is_empty()) || (!field.required && v.is_null())
            }
            Kind::Bool => v.is_boolean(),
            Kind::StrList => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        };
        let strings: Vec<&str> = match v {
            Value::String(s) => vec![s],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        for s in strings {
            if s.chars().count() > MAX_STRING_CHARS {
                return Err(Error::Invalid(format!(
                    "{} field {name} is {} characters long; at most {MAX_STRING_CHARS}",
                    ty.noun(),
                    s.chars().count()
                )));
            }
            if s.chars().any(is_unsafe_char) {
                return Err(Error::Invalid(format!(
                    "{} field {name} holds a control character or a text-direction one (a newline, tab, escape, U+202E...): {s:?}",
                    ty.noun()
                )));
            }
        }
        if !ok {
            let want = match field.kind {
                Kind::Str => "a non-empty string",
                Kind::Bool => "true or false",
                Kind::StrList => "a list of strings",
            };
            return Err(Error::Invalid(format!(
                "{} field {name} must be {want}, got {v}",
                ty.noun()
            )));
        }
    }
    if creating {
        for f in schema.iter().filter(|f| f.required) {
            if !fields.contains_key(f.name) {
                return Err(Error::Invalid(format!("a {} needs {}", ty.noun(), f.name)));
            }
        }
    }
    if let Some(app_id) = fields.get("appId").and_then(Value::as_str) {
        if Uuid::parse_str(app_id).is_err() {
            return Err(Error::Invalid(format!(
                "appId {app_id:?} is not a GUID (such as 3f2504e0-4f89-11d3-9a0c-0305e82c3301)"
            )));
        }
    }
    if let Some(upn) = fields.get("userPrincipalName").and_then(Value::as_str) {
        let dotted = |p: &str| !p.is_empty() && p.split('.').all(|l| !l.is_empty());
        let valid = upn.split_once('@').is_some_and(|(alias, domain)| {
            dotted(alias)
                && alias.chars().count() <= 64
                && dotted(domain)
                && domain.contains('.')
                && !domain.contains('@')
                && upn.chars().count() <= 113
                && !upn.contains(char::is_whitespace)
        });
        if !valid {
            return Err(Error::Invalid(format!(
                "userPrincipalName {upn:?} is not of the form alias@domain.tld (one @, no empty or leading/trailing dot parts, alias at most 64 and all at most 113 characters)"
            )));
        }
    }
    Ok(())
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
    if ty == ObjectType::User {
        claim_upn(t, tenant, &obj, &id)?;
    }
    // Absent: checked above for a supplied ID; a fresh random one names no stored object.
    t.put_over(okey, encode(&obj), None);
    Ok(obj)
}

pub(crate) fn claim_upn(
    t: &mut Txn,
    tenant: &str,
    obj: &Map<String, Value>,
    id: &Uuid,
) -> Result<()> {
    let upn = obj
        .get("userPrincipalName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let ukey = upn_key(tenant, upn)?;
    let prev = t.get(&ukey)?;
    if let Some(owner) = &prev {
        if owner != id.as_bytes() {
            let owner = Uuid::from_slice(owner)
                .map(|u| u.to_string())
                .unwrap_or_default();
            return Err(Error::Conflict(format!(
                "userPrincipalName {upn} is already taken by user {owner}"
            )));
        }
    }
    t.put_over(ukey, id.as_bytes().to_vec(), prev);
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

pub(crate) fn id_of(obj: &Map<String, Value>) -> Result<Uuid> {
    parse_id(obj.get("id").and_then(Value::as_str).unwrap_or_default())
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
    let old_upn = obj
        .get("userPrincipalName")
        .and_then(Value::as_str)
        .map(str::to_string);
    for (k, v) in patch {
        if v.is_null() {
            if ty.fields().iter().any(|f| f.name == k && f.required) {
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
    if ty == ObjectType::User {
        let new_upn = obj
            .get("userPrincipalName")
            .and_then(Value::as_str)
            .map(str::to_string);
        if new_upn.as_ref().map(|u| u.to_lowercase()) != old_upn.as_ref().map(|u| u.to_lowercase())
        {
            claim_upn(t, tenant, &obj, &id)?;
            if let Some(old) = old_upn {
                t.delete(upn_key(tenant, &old)?)?;
            }
        }
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
        .filter_map(|(k, _)| k.get(33..49).and_then(|b| Uuid::from_slice(b).ok()))
        .collect();
    let members: Vec<(Uuid, Vec<u8>)> = t
        .scan_prefix(&key(K_MEMBER, tenant, &[id.as_bytes()])?)?
        .into_iter()
        .filter_map(|(k, v)| {
            k.get(33..49)
                .and_then(|b| Uuid::from_slice(b).ok())
                .map(|m| (m, v))
        })
        .collect();
    for g in &member_of {
        t.delete(key(K_MEMBER, tenant, &[g.as_bytes(), id.as_bytes()])?)?;
        t.delete(key(K_MEMBER_OF, tenant, &[id.as_bytes(), g.as_bytes()])?)?;
    }
    for (m, _) in &members {
        t.delete(key(K_MEMBER, tenant, &[id.as_bytes(), m.as_bytes()])?)?;
        t.delete(key(K_MEMBER_OF, tenant, &[m.as_bytes(), id.as_bytes()])?)?;
    }
    if let Some(upn) = obj.get("userPrincipalName").and_then(Value::as_str) {
        t.delete(upn_key(tenant, upn)?)?;
    }
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
            members
                .iter()
                .map(|(m, _)| Value::from(m.to_string()))
                .collect(),
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
    t.put(mkey, mty.noun().as_bytes().to_vec())?;
    t.put(
        key(K_MEMBER_OF, tenant, &[mid.as_bytes(), gid.as_bytes()])?,
        Vec::new(),
    )
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
    t.delete(mkey)?;
    t.delete(key(K_MEMBER_OF, tenant, &[mid.as_bytes(), gid.as_bytes()])?)
}

/// The direct members of a group, as objects.
pub fn members(s: &dyn Store, tenant: &str, group: &str) -> Result<Vec<Map<String, Value>>> {
    let g = get_typed(s, tenant, ObjectType::Group, group)?;
    let gid = id_of(&g)?;
    let mut out = Vec::new();
    for (k, _) in s.scan_prefix(&key(K_MEMBER, tenant, &[gid.as_bytes()])?)? {
        let mid = k
            .get(33..49)
            .and_then(|b| Uuid::from_slice(b).ok())
            .ok_or_else(|| Error::Corrupt(format!("member key {} is malformed", hex(&k))))?;
        out.push(get(s, tenant, &mid.to_string())?);
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

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Empty;
    impl Store for Empty {
        fn get(&self, _: &[u8]) -> Result<Option<Vec<u8>>> {
            Ok(None)
        }
        fn scan_prefix(&self, _: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
            Ok(Vec::new())
        }
    }

    const T: &str = "6f1d2a4e-0000-4000-8000-000000000001";

    fn user(upn: &str) -> Map<String, Value> {
        serde_json::json!({"userPrincipalName": upn, "displayName": upn})
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn duplicate_upn_in_one_transaction_conflicts_case_insensitively() {
        let mut t = Txn::new(&Empty);
        create(&mut t, T, ObjectType::User, user("ada@contoso.com"), "now").expect("first");
        assert!(matches!(
            create(&mut t, T, ObjectType::User, user("ADA@contoso.com"), "now"),
            Err(Error::Conflict(_))
        ));
    }

    #[test]
    fn malformed_upns_long_strings_and_control_characters_are_invalid() {
        let mut t = Txn::new(&Empty);
        let long_alias = format!("{}@contoso.com", "a".repeat(65));
        for upn in [
            "a@@b.com",
            "a@b.c@d.com",
            ".dot@c.com",
            "dot.@c.com",
            "a..b@c.com",
            "x@.c.com",
            "x@c..com",
            "x@com",
            "x y@c.com",
            long_alias.as_str(),
        ] {
            assert!(
                matches!(
                    create(&mut t, T, ObjectType::User, user(upn), "now"),
                    Err(Error::Invalid(_))
                ),
                "{upn} was accepted"
            );
        }
        create(
            &mut t,
            T,
            ObjectType::User,
            user("first.last@sub.contoso.com"),
            "now",
        )
        .expect("a plain UPN");
        let mut app = Map::new();
        app.insert("displayName".into(), Value::from("app"));
        app.insert("appId".into(), Value::from("not-a-guid"));
        assert!(
            matches!(create(&mut t, T, ObjectType::Application, app, "now"), Err(Error::Invalid(m)) if m.contains("not a GUID"))
        );
        let mut u = user("long@contoso.com");
        u.insert("displayName".into(), Value::from("W".repeat(1025)));
        assert!(
            matches!(create(&mut t, T, ObjectType::User, u, "now"), Err(Error::Invalid(m)) if m.contains("at most 1024"))
        );
        let mut u = user("rtl@contoso.com");
        u.insert("displayName".into(), Value::from("abc\u{202e}fdp.exe"));
        assert!(
            matches!(create(&mut t, T, ObjectType::User, u, "now"), Err(Error::Invalid(m)) if m.contains("text-direction"))
        );
        let mut u = user("eve@contoso.com");
        u.insert(
            "displayName".into(),
            Value::from("Eve\n0000  ceo@contoso.com"),
        );
        assert!(
            matches!(create(&mut t, T, ObjectType::User, u, "now"), Err(Error::Invalid(m)) if m.contains("control character"))
        );
    }

    #[test]
    fn unknown_fields_and_missing_required_fields_are_invalid() {
        let mut t = Txn::new(&Empty);
        let mut u = user("a@b.com");
        u.insert("shoeSize".into(), Value::from(42));
        assert!(
            matches!(create(&mut t, T, ObjectType::User, u, "now"), Err(Error::Invalid(m)) if m.contains("shoeSize"))
        );
        let mut u = user("a@b.com");
        u.remove("displayName");
        assert!(
            matches!(create(&mut t, T, ObjectType::User, u, "now"), Err(Error::Invalid(m)) if m.contains("displayName"))
        );
        assert_eq!(t.op_count(), 0);
    }

    #[test]
    fn delete_keeps_memberships_with_the_tombstone() {
        let mut t = Txn::new(&Empty);
        let u = create(&mut t, T, ObjectType::User, user("a@b.com"), "now").expect("user");
        let g = create(
            &mut t,
            T,
            ObjectType::Group,
            serde_json::json!({"displayName": "g"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            "now",
        )
        .expect("group");
        let (uid, gid) = (
            u["id"].as_str().unwrap_or_default().to_string(),
            g["id"].as_str().unwrap_or_default().to_string(),
        );
        add_member(&mut t, T, &gid, &uid).expect("add");
        assert_eq!(members(&t, T, &gid).expect("members").len(), 1);
        delete(&mut t, T, ObjectType::User, &uid, "later").expect("delete");
        assert_eq!(members(&t, T, &gid).expect("members").len(), 0);
        assert!(matches!(get(&t, T, "a@b.com"), Err(Error::NotFound(_))));
        let tomb = t
            .get(&key(K_TOMBSTONE, T, &[parse_id(&uid).expect("id").as_bytes()]).expect("key"))
            .expect("get")
            .expect("tombstone");
        let tomb: Value = serde_json::from_slice(&tomb).expect("json");
        assert_eq!(tomb["memberOf"][0], Value::from(gid));
        assert_eq!(tomb["object"]["deletedDateTime"], Value::from("later"));
    }
}
