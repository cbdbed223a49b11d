//! The directory's `Store` over a replica and over a checkpoint (a backup's copy). Kept out
//! of `directory` so that it does not import `replica` (which implements the directory's
//! `KeyScanner`): no import circle.

use crate::directory::{KeyScanner, Store};
use crate::error::Result;
use crate::replica::{CheckpointView, Replica};

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
    fn count_prefix(&self, prefix: &[u8]) -> Result<u64> {
        let mut n = 0u64;
        self.for_each_prefix(prefix, |_, _| n += 1)?;
        Ok(n)
    }
}
