//! Read access to a partition's data, and the views laid over it.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::log::Op;

/// Read access to a partition's data: a replica, or a transaction's view of it.
pub trait Store {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Many key-only prefix scans over one iterator (cheaper than an iterator each), for
    /// walks such as an access check's; None: use `scan_prefix`.
    fn key_scanner(&self) -> Option<Box<dyn KeyScanner + '_>> {
        None
    }
    /// How many keys start with `prefix` (a store may count without copying values).
    fn count_prefix(&self, prefix: &[u8]) -> Result<u64> {
        Ok(self.scan_prefix(prefix)?.len() as u64)
    }
}

/// Repeated prefix scans returning keys, reusing one storage iterator.
pub trait KeyScanner {
    fn keys(&mut self, prefix: &[u8]) -> Result<Vec<Vec<u8>>>;
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
pub(super) fn scan_merged<'a>(
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
