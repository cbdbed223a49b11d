//! A transaction: changes staged over a store, read back by later steps, then one log entry.

use std::collections::BTreeMap;

use super::store::{scan_merged, Store};
use crate::error::Result;
use crate::log::Op;

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
