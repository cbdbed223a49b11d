//! Creating a tenant: its placement in the control plane first (which decides, under its
//! lock, which of two creates of one name wins), then its record on the partition.

use crate::client::Embedded;
use crate::directory;
use crate::error::{Error, Result};
use crate::request::{Envelope, Reply, Response};
use crate::topology::{validate_name, TenantPlacement};

/// FNV-1a (32 bits): the stable hash that places a tenant by name, so that the same name
/// lands on the same partition on every machine.
pub fn fnv1a_32(b: &[u8]) -> u32 {
    b.iter().fold(0x811c_9dc5u32, |h, x| {
        (h ^ u32::from(*x)).wrapping_mul(0x0100_0193)
    })
}

pub(super) fn create(
    d: &mut Embedded,
    env: &Envelope,
    name: &str,
    partition: Option<u32>,
) -> Result<Response> {
    const OP: &str = "tenant.create";
    validate_name(name)?;
    let topology = d.cluster.topology();
    if let Some(same) = topology
        .tenants
        .keys()
        .find(|k| k.eq_ignore_ascii_case(name))
    {
        let e = Error::Conflict(format!(
            "tenant {same} already exists (tenant names are compared without letter case)"
        ));
        let p = topology.tenants[same].partition;
        d.record_outcome(env, p, OP, vec![name.to_string()], &e.to_string());
        return Err(e);
    }
    let n = topology.partitions.len() as u32;
    let partition = match partition {
        Some(p) => {
            topology.partition(p)?;
            p
        }
        None => fnv1a_32(name.as_bytes()) % n,
    };
    let id = uuid::Uuid::new_v4().to_string();
    let now = d.cluster.clock().now_graph();
    let targets = vec![name.to_string(), id.clone()];
    let placed = d.cluster.update_topology(|t| {
        if let Some(same) = t.tenants.keys().find(|k| k.eq_ignore_ascii_case(name)) {
            return Err(Error::Conflict(format!("tenant {same} already exists")));
        }
        t.tenants.insert(
            name.to_string(),
            TenantPlacement {
                id: id.clone(),
                partition,
            },
        );
        Ok(())
    });
    if let Err(e) = placed {
        d.record_outcome(env, partition, OP, targets, &e.to_string());
        return Err(e);
    }
    let written = d.audited_write(env, partition, OP, targets, |t, _| {
        directory::create_tenant(t, &id, name, &now)
    });
    let (record, token) = match written {
        Ok(w) => w,
        // The record may stand (outcome unknown): the placement stays with it, so the
        // tenant is found, never made twice.
        Err(e @ Error::OutcomeUnknown(_)) => return Err(e),
        Err(e) => {
            // Nothing was written to the partition: take the placement back.
            let undone = d.cluster.update_topology(|t| {
                if t.tenants.get(name).is_some_and(|p| p.id == id) {
                    t.tenants.remove(name);
                }
                Ok(())
            });
            return Err(match undone {
                Ok(_) => e,
                Err(u) => with_context(
                    e,
                    &format!("taking tenant {name}'s placement in cluster.json back failed too ({u}): it stays placed, without its record"),
                ),
            });
        }
    };
    Ok(Response {
        reply: Reply::Tenant { record, partition },
        token: Some(token),
        served_by: None,
    })
}

/// `e` of the same kind, its message prefixed with what was being done (anyhow's
/// `context: cause` form, which dirctl printed before).
fn with_context(e: Error, context: &str) -> Error {
    let m = |s: String| format!("{context}: {s}");
    match e {
        Error::Invalid(s) => Error::Invalid(m(s)),
        Error::ImpossibleToken(s) => Error::ImpossibleToken(m(s)),
        Error::NotFound(s) => Error::NotFound(m(s)),
        Error::Conflict(s) => Error::Conflict(m(s)),
        Error::Unavailable(s) => Error::Unavailable(m(s)),
        Error::DiskFull(s) => Error::DiskFull(m(s)),
        Error::OutcomeUnknown(s) => Error::OutcomeUnknown(m(s)),
        Error::Corrupt(s) => Error::Corrupt(m(s)),
        Error::Fenced(s) => Error::Fenced(m(s)),
        Error::Damaged(s) => Error::Damaged(m(s)),
        Error::Storage(s) => Error::Storage(m(s)),
        Error::NotPermitted(s) => Error::NotPermitted(m(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values computed with the function as it stood in cli/src/ops.rs (`crc32`) before it
    /// was renamed: placement depends on them.
    #[test]
    fn fnv1a_32_keeps_its_values() {
        for (name, want) in FNV_PINNED {
            assert_eq!(fnv1a_32(name.as_bytes()), *want, "{name}");
        }
    }

    const FNV_PINNED: &[(&str, u32)] = &[
        ("", 0x811c_9dc5),
        ("a", 0xe40c_292c),
        ("contoso", 0xf9e1_dfa0),
        ("fabrikam", 0xbd55_b4a6),
        ("Contoso", 0x2d05_2440),
        ("tenant-42", 0xf7d2_15c2),
        ("northwind", 0xdfce_d8ea),
    ];
}
