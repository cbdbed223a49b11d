//! The key layout of the data column family (see the module's table).

use uuid::Uuid;

use crate::error::{Error, Result};

pub(crate) const K_OBJECT: u8 = 0x01;
pub(crate) const K_UPN: u8 = 0x02;
pub(crate) const K_MEMBER: u8 = 0x03;
pub(crate) const K_MEMBER_OF: u8 = 0x04;
pub(crate) const K_TENANT: u8 = 0x05;
pub(crate) const K_TOMBSTONE: u8 = 0x06;
pub(crate) const K_GRANT: u8 = 0x07;
pub(crate) const K_AUDIT: u8 = 0x08;
pub(crate) const K_AUDIT_HEAD: u8 = 0x09;
pub(crate) const K_APP_ID: u8 = 0x0a;

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

pub(crate) fn app_id_key(tenant: &str, app_id: &str) -> Result<Vec<u8>> {
    key(K_APP_ID, tenant, &[app_id.to_lowercase().as_bytes()])
}

pub fn tenant_key(tenant: &str) -> Result<Vec<u8>> {
    key(K_TENANT, tenant, &[])
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The second ID of a two-ID key (`kind | tenant | id | id`): a member's or a group's.
/// A key of another length is corrupt.
pub(crate) fn second_id(k: &[u8], what: &str) -> Result<Uuid> {
    k.get(33..49)
        .filter(|_| k.len() == 49)
        .and_then(|b| Uuid::from_slice(b).ok())
        .ok_or_else(|| Error::Corrupt(format!("{what} key {} is malformed", hex(k))))
}
