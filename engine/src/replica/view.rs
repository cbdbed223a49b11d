//! A read-only view of a checkpoint folder, without a replica's lock.

use std::path::Path;

use rocksdb::{Direction, IteratorMode, DB};

use super::{db_options, storage, u64_at, CF_LOG, CF_META, META_LAST};
use crate::error::{Error, Result};
use crate::log::Position;

/// A read-only view of a checkpoint folder (a backup's partition, a replica nobody writes):
/// reads the data column family and the last position. Takes no `geodir.lock`: the caller
/// owns the folder.
pub struct CheckpointView {
    db: DB,
    name: String,
}

impl CheckpointView {
    pub fn open(path: &Path) -> Result<CheckpointView> {
        let name = path.display().to_string();
        let names = [rocksdb::DEFAULT_COLUMN_FAMILY_NAME, CF_LOG, CF_META];
        let db = DB::open_cf_for_read_only(&db_options(), path, names, false)
            .map_err(|e| Error::Corrupt(format!("checkpoint {name} cannot be opened: {e}")))?;
        Ok(CheckpointView { db, name })
    }

    /// (term, lsn) of the last entry in the checkpoint's log.
    pub fn last(&self) -> Result<Position> {
        let meta = self
            .db
            .cf_handle(CF_META)
            .ok_or_else(|| Error::Corrupt(format!("{}: meta column family missing", self.name)))?;
        let last = self
            .db
            .get_cf(&meta, META_LAST)
            .map_err(|e| storage(format!("read {}", self.name), e))?
            .ok_or_else(|| Error::Corrupt(format!("{}: last position missing", self.name)))?;
        Ok(Position {
            term: u64_at(&last, 0, "last position")?,
            lsn: u64_at(&last, 8, "last position")?,
        })
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db
            .get(key)
            .map_err(|e| storage(format!("read {}", self.name), e))
    }

    /// Calls `f` on every (key, value) of the data column family whose key starts with
    /// `prefix`, in key order, without collecting them.
    pub fn for_each_prefix(&self, prefix: &[u8], mut f: impl FnMut(&[u8], &[u8])) -> Result<()> {
        for item in self
            .db
            .iterator(IteratorMode::From(prefix, Direction::Forward))
        {
            let (k, v) = item.map_err(|e| storage(format!("scan {}", self.name), e))?;
            if !k.starts_with(prefix) {
                break;
            }
            f(&k, &v);
        }
        Ok(())
    }

    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        self.for_each_prefix(prefix, |k, v| out.push((k.to_vec(), v.to_vec())))?;
        Ok(out)
    }
}
