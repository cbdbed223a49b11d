//! One replica: one partition's copy in one datacenter, its own RocksDB instance.
//!
//! Column families: `default` holds the directory data, `log` the replication log
//! (key: lsn as u64 big-endian), `meta` the replica's identity and positions.
//! **Invariant:** only this module imports `rocksdb`.
//! **Invariant:** a replica is never created by `open`: only `create` (init, rebuild) makes one.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};

use crate::error::{Error, Result};
use crate::log::{Entry, Op, Position};
use crate::replica_log::{fenced_append, fenced_write};

const CF_LOG: &str = "log";
const CF_META: &str = "meta";
const META_LAST: &[u8] = b"last";
const META_COMMIT: &[u8] = b"commit";
const META_IDENTITY: &[u8] = b"identity";
/// The highest term this replica has seen (fencing): absent on replicas written before it
/// existed, which then count the term of their last entry.
const META_TERM: &[u8] = b"term";
pub const META_PROBE: &[u8] = b"probe";
/// Present on replicas made since promises exist (`create`, `adopt`): their
/// `geodir.promise` missing or empty is damage, not an older replica.
const META_PROMISED: &[u8] = b"promised";
const LOCK_FILE: &str = "geodir.lock";
const QUEUE_FILE: &str = "geodir.queue";

/// Who a replica is: written once at creation, checked at every open.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub cluster_id: String,
    pub datacenter: String,
    pub partition: u32,
}

/// Whether a write waits for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    Synced,
    Buffered,
}

/// How a replica is opened. Both take the replica's lock; a read opens RocksDB read-only and
/// so writes nothing to the folder (no MANIFEST, OPTIONS, WAL or info log, no flush at close):
/// reads go on when the disk is full, and cost no fsyncs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Write,
    Read,
    /// A read that bypasses the operating system's page cache (`use_direct_reads`): a scrub
    /// must check what the disk holds, not a cached copy of it.
    Scrub,
}

pub struct Replica {
    db: DB,
    access: Access,
    path: PathBuf,
    identity: Identity,
    poisoned: AtomicBool,
    /// What this replica promised (`damage::Promise`): held when opened for writes.
    promise: Option<damage::Promise>,
    /// (last position, commit lsn), kept in step with `meta`: this process holds the replica
    /// exclusively, so the copy in memory is the truth between writes.
    positions: Mutex<(Position, u64)>,
    /// The commit lsn as last written to `meta`: the primary notes commits in memory and
    /// writes them with its next batch or when it lets go of the replica.
    persisted_commit: std::sync::atomic::AtomicU64,
    /// The highest term seen (`meta/term`, else the last entry's): writes of a lower term
    /// are refused (`Error::Fenced`). Changed only under `log_writer`.
    seen_term: std::sync::atomic::AtomicU64,
    /// Serializes appends, cuts and term raises: each reads the positions, then writes.
    log_writer: Mutex<()>,
    /// The positions of entries cut off this replica (`truncate_after`) since the holder
    /// last took them (`take_cut`): a server reports every cut of a replica it owns,
    /// whichever process asked for it.
    cut: Mutex<Vec<Position>>,
    _lock: File,
}

fn db_options() -> Options {
    let mut o = Options::default();
    o.create_if_missing(false);
    o.create_missing_column_families(false);
    o.set_keep_log_file_num(2);
    o.set_max_manifest_file_size(4 << 20);
    // Storage faults (docs/design.md): a corrupt record in the middle of a WAL fails the
    // open instead of silently ending recovery there (RocksDB's default, point-in-time,
    // reopened a damaged replica as empty); a torn last record (a crash mid-write, never
    // acknowledged) is dropped, and the promise check catches a dropped synced one.
    o.set_wal_recovery_mode(rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords);
    o.set_paranoid_checks(true);
    // RocksDB's default flush at close is kept on purpose: a dirctl process opens a replica
    // for one command, and replaying a long WAL at every open costs more than one small SST
    // file per writing command (measured: `user get` on the fixtures 13 ms against 65 ms).
    o
}

fn cfs() -> Vec<ColumnFamilyDescriptor> {
    // Directory data: point lookups dominate (reads, uniqueness checks that mostly miss),
    // so whole-key bloom filters in the SST files. Not in the memtable: there every insert,
    // on every replica, pays for it (a tenth of a bulk import measured) while only the
    // primary's uniqueness checks gain, and point reads measured the same without it.
    let mut data = Options::default();
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    table.set_whole_key_filtering(true);
    data.set_block_based_table_factory(&table);
    vec![
        ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, data),
        ColumnFamilyDescriptor::new(CF_LOG, Options::default()),
        ColumnFamilyDescriptor::new(CF_META, Options::default()),
    ]
}

fn storage(context: impl std::fmt::Display, e: rocksdb::Error) -> Error {
    Error::Storage(format!("{context}: {e}"))
}

/// A RocksDB error of the replica at `path`: a checksum or format failure (RocksDB's
/// `Corruption`) marks the replica damaged (`damage::mark`); anything else is a storage error.
fn rocks_error(path: &Path, context: impl std::fmt::Display, e: rocksdb::Error) -> Error {
    match e.kind() {
        rocksdb::ErrorKind::Corruption => damage::mark(path, &format!("{context}: {e}")),
        _ => storage(context, e),
    }
}

fn u64_at(bytes: &[u8], at: usize, what: &str) -> Result<u64> {
    bytes
        .get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| {
            Error::Corrupt(format!(
                "{what}: expected 8 bytes at offset {at}, found {}",
                bytes.len()
            ))
        })
}

fn encode_position(p: Position) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&p.term.to_be_bytes());
    b[8..].copy_from_slice(&p.lsn.to_be_bytes());
    b
}

impl Replica {
    /// The first lsn still in this replica's log (entries below it were pruned), or None if empty.
    pub fn first_log_lsn(&self) -> Result<Option<u64>> {
        let mut it = self.db.iterator_cf(self.cf(CF_LOG)?, IteratorMode::Start);
        match it.next() {
            None => Ok(None),
            Some(item) => {
                let (k, _) = item.map_err(|e| self.rocks("read log", e))?;
                Ok(Some(u64_at(&k, 0, "log key")?))
            }
        }
    }

    /// Log retention: drops entries up to and including `lsn` (their data stays).
    pub fn prune_log_through(&self, lsn: u64) -> Result<()> {
        let mut b = WriteBatch::default();
        b.delete_range_cf(
            self.cf(CF_LOG)?,
            0u64.to_be_bytes(),
            (lsn + 1).to_be_bytes(),
        );
        self.write(
            b,
            Durability::Buffered,
            &format!("prune log through lsn {lsn}"),
        )
    }

    /// A RocksDB error of this replica, with what was being done (`rocks_error`).
    fn rocks(&self, what: &str, e: rocksdb::Error) -> Error {
        rocks_error(&self.path, format!("{what} {}", self.name()), e)
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn name(&self) -> String {
        crate::layout::replica_dir(&self.identity.datacenter, self.identity.partition)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| Error::Corrupt(format!("{}: column family {name} missing", self.name())))
    }

    fn meta_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db
            .get_cf(self.cf(CF_META)?, key)
            .map_err(|e| self.rocks("read", e))
    }

    /// The real health probe: read the probe key.
    pub fn probe(&self) -> Result<()> {
        match self.meta_get(META_PROBE)? {
            Some(v) if v == b"ok" => Ok(()),
            _ => Err(Error::Corrupt(format!(
                "{}: probe key missing",
                self.name()
            ))),
        }
    }

    /// (term, lsn) of the last entry in this replica's log.
    pub fn last(&self) -> Result<Position> {
        Ok(self.positions()?.0)
    }

    /// The highest lsn known committed (meaningful on a primary).
    pub fn commit_lsn(&self) -> Result<u64> {
        Ok(self.positions()?.1)
    }

    fn positions(&self) -> Result<std::sync::MutexGuard<'_, (Position, u64)>> {
        self.positions
            .lock()
            .map_err(|_| Error::Storage(format!("{}: position lock poisoned", self.name())))
    }

    fn write(&self, batch: WriteBatch, durability: Durability, what: &str) -> Result<()> {
        if self.access != Access::Write {
            return Err(Error::Storage(format!(
                "{what} on {}: the replica was opened for reads only",
                self.name()
            )));
        }
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(Error::Storage(format!(
                "{} refuses writes after an earlier failed write; reopen it",
                self.name()
            )));
        }
        let mut w = WriteOptions::default();
        w.set_sync(durability == Durability::Synced);
        self.db.write_opt(batch, &w).map_err(|e| {
            self.poisoned.store(true, Ordering::SeqCst);
            self.rocks(what, e)
        })
    }

    pub fn set_commit_lsn(&self, lsn: u64, durability: Durability) -> Result<()> {
        let mut b = WriteBatch::default();
        b.put_cf(self.cf(CF_META)?, META_COMMIT, lsn.to_be_bytes());
        self.write(b, durability, "record commit lsn")?;
        self.positions()?.1 = lsn;
        self.persisted_commit.store(lsn, Ordering::SeqCst);
        Ok(())
    }

    /// Notes a commit in memory only: it reaches `meta` with the next batch or `persist_commit`.
    /// After a crash the primary settles the last entry against its sync standby again.
    pub fn note_commit_lsn(&self, lsn: u64) -> Result<()> {
        self.positions()?.1 = lsn;
        Ok(())
    }

    /// Before letting go: ask RocksDB to stop background compactions now, so that closing
    /// (which waits for them) does not keep the next process waiting for this replica.
    pub fn stop_background_work(&self) {
        self.db.cancel_all_background_work(false);
    }

    /// Writes a commit lsn noted in memory (not synced: settling covers a crash).
    pub fn persist_commit(&self) -> Result<()> {
        let commit = self.commit_lsn()?;
        if commit != self.persisted_commit.load(Ordering::SeqCst) {
            self.set_commit_lsn(commit, Durability::Buffered)?;
        }
        Ok(())
    }

    /// Appends entries (which must continue this log) with their data, in one batch, for a
    /// writer acting in `term` (the partition's term: shipped entries may be older). Refused
    /// (`Fenced`) below the highest term this replica has seen; raises that term to `term`
    /// in the same batch.
    pub fn append(&self, entries: &[Entry], term: u64, durability: Durability) -> Result<()> {
        let encoded: Vec<Vec<u8>> = entries.iter().map(Entry::encode).collect();
        self.append_encoded(entries, &encoded, term, durability)
    }

    /// The highest term this replica has seen.
    pub fn seen_term(&self) -> u64 {
        self.seen_term.load(Ordering::SeqCst)
    }

    /// Records (synced) that the partition's term is now `term`, so that a writer of an older
    /// term is refused from here on. A lower or equal term changes nothing.
    pub fn observe_term(&self, term: u64) -> Result<()> {
        let _writing = self.log_writer()?;
        if term <= self.seen_term() {
            return Ok(());
        }
        let mut b = WriteBatch::default();
        b.put_cf(self.cf(CF_META)?, META_TERM, term.to_be_bytes());
        self.write(b, Durability::Synced, &format!("record term {term}"))?;
        self.seen_term.store(term, Ordering::SeqCst);
        Ok(())
    }

    fn log_writer(&self) -> Result<std::sync::MutexGuard<'_, ()>> {
        self.log_writer
            .lock()
            .map_err(|_| Error::Storage(format!("{}: log writer lock poisoned", self.name())))
    }

    /// `append` with each entry's encoding already made (`encoded[i]` is `entries[i].encode()`):
    /// a writer encodes an entry once for all the replicas it ships to.
    pub fn append_encoded(
        &self,
        entries: &[Entry],
        encoded: &[Vec<u8>],
        term: u64,
        durability: Durability,
    ) -> Result<()> {
        let _writing = self.log_writer()?;
        let seen = self.seen_term();
        fenced_append(&self.name(), term, seen, entries)?;
        let Some(last_entry) = entries.last() else {
            return Ok(());
        };
        let next = self.last()?.lsn + 1;
        let (log, meta) = (self.cf(CF_LOG)?, self.cf(CF_META)?);
        let data = self
            .db
            .cf_handle(rocksdb::DEFAULT_COLUMN_FAMILY_NAME)
            .ok_or_else(|| Error::Corrupt("default cf missing".into()))?;
        // Sized up front: a batch of a thousand objects would otherwise grow (and copy
        // itself) a dozen times.
        let size = encoded.iter().map(|b| b.len() + 32).sum::<usize>()
            + entries
                .iter()
                .flat_map(|e| &e.ops)
                .map(|op| match op {
                    Op::Put { key, value, .. } => key.len() + value.len() + 16,
                    Op::Delete { key, .. } => key.len() + 16,
                })
                .sum::<usize>()
            + 128;
        let mut b = WriteBatch::with_capacity_bytes(size);
        for ((expect, e), bytes) in (next..).zip(entries).zip(encoded) {
            if e.lsn != expect {
                return Err(Error::Storage(format!(
                    "{}: entry lsn {} does not follow {}",
                    self.name(),
                    e.lsn,
                    expect - 1
                )));
            }
            b.put_cf(log, e.lsn.to_be_bytes(), bytes);
        }
        // The data changes in key order (a stable sort: a key changed twice keeps its
        // order): RocksDB's memtable inserts each key next to the one before, which is
        // several times cheaper than a search from the top for keys in random order.
        let mut ops: Vec<&Op> = entries.iter().flat_map(|e| &e.ops).collect();
        ops.sort_by(|a, b| a.key().cmp(b.key()));
        for op in ops {
            match op {
                Op::Put { key, value, .. } => b.put_cf(data, key, value),
                Op::Delete { key, .. } => b.delete_cf(data, key),
            }
        }
        b.put_cf(meta, META_LAST, encode_position(last_entry.position()));
        if term > seen {
            b.put_cf(meta, META_TERM, term.to_be_bytes());
        }
        let commit = self.commit_lsn()?;
        b.put_cf(meta, META_COMMIT, commit.to_be_bytes());
        self.write(
            b,
            durability,
            &format!("append lsn {}..={}", entries[0].lsn, last_entry.lsn),
        )?;
        self.positions()?.0 = last_entry.position();
        self.persisted_commit.store(commit, Ordering::SeqCst);
        self.seen_term.store(seen.max(term), Ordering::SeqCst);
        if let (Some(p), Durability::Synced) = (&self.promise, durability) {
            p.record(last_entry.position())?;
        }
        Ok(())
    }

    /// Cuts off every entry above `lsn`, undoing its data changes, in one synced batch, for
    /// a writer acting in `term`: refused (`Fenced`) below the highest term this replica has
    /// seen. Returns the entries that were cut, newest first.
    pub fn truncate_after(&self, lsn: u64, term: u64) -> Result<Vec<Entry>> {
        let _writing = self.log_writer()?;
        fenced_write(&self.name(), "cut", term, self.seen_term())?;
        let last = self.last()?;
        if last.lsn <= lsn {
            return Ok(Vec::new());
        }
        let cut = {
            let mut v = self.entries(lsn + 1, last.lsn)?;
            v.reverse();
            v
        };
        let new_last = if lsn == 0 {
            Position::default()
        } else {
            Position {
                term: self.entry(lsn)?.term,
                lsn,
            }
        };
        let (log, meta) = (self.cf(CF_LOG)?, self.cf(CF_META)?);
        let data = self
            .db
            .cf_handle(rocksdb::DEFAULT_COLUMN_FAMILY_NAME)
            .ok_or_else(|| Error::Corrupt("default cf missing".into()))?;
        // The promise comes down first (synced): a crash after it leaves a replica holding
        // more than it promised, never less.
        if let Some(p) = &self.promise {
            p.record(new_last)?;
            p.sync()?;
        }
        let mut b = WriteBatch::default();
        for e in &cut {
            for op in e.ops.iter().rev() {
                match op.prev() {
                    Some(p) => b.put_cf(data, op.key(), p),
                    None => b.delete_cf(data, op.key()),
                }
            }
            b.delete_cf(log, e.lsn.to_be_bytes());
        }
        b.put_cf(meta, META_LAST, encode_position(new_last));
        let commit = self.commit_lsn()?.min(lsn);
        b.put_cf(meta, META_COMMIT, commit.to_be_bytes());
        self.write(
            b,
            Durability::Synced,
            &format!("cut entries above lsn {lsn}"),
        )?;
        *self.positions()? = (new_last, commit);
        self.persisted_commit.store(commit, Ordering::SeqCst);
        if let Ok(mut noted) = self.cut.lock() {
            noted.extend(cut.iter().map(|e| Position {
                term: e.term,
                lsn: e.lsn,
            }));
        }
        Ok(cut)
    }

    /// The positions of the entries cut off this replica since the last call, oldest cut
    /// first (each cut newest entry first).
    pub fn take_cut(&self) -> Vec<Position> {
        self.cut
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }

    /// A log entry of this replica that failed its checks (`Corrupt`) makes it damaged.
    fn bad_entry(&self, e: Error) -> Error {
        match e {
            Error::Corrupt(found) => damage::mark(&self.path, &found),
            other => other,
        }
    }

    /// The entry at `lsn`, checksum checked.
    pub fn entry(&self, lsn: u64) -> Result<Entry> {
        let raw = self
            .db
            .get_cf(self.cf(CF_LOG)?, lsn.to_be_bytes())
            .map_err(|e| self.rocks("read log", e))?
            .ok_or_else(|| {
                Error::NotFound(format!("{}: no log entry at lsn {lsn}", self.name()))
            })?;
        let e = Entry::decode(&raw, &format!("{} lsn {lsn}", self.name()))
            .map_err(|e| self.bad_entry(e))?;
        if e.lsn != lsn {
            return Err(self.bad_entry(Error::Corrupt(format!(
                "{}: entry stored at lsn {lsn} names lsn {}",
                self.name(),
                e.lsn
            ))));
        }
        Ok(e)
    }

    /// The term of the entry at `lsn`, if this replica holds it.
    pub fn term_at(&self, lsn: u64) -> Result<Option<u64>> {
        match self.entry(lsn) {
            Ok(e) => Ok(Some(e.term)),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Entries `from..=to`, in order, every checksum checked.
    pub fn entries(&self, from: u64, to: u64) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        if from > to {
            return Ok(out);
        }
        let start = from.to_be_bytes();
        let iter = self.db.iterator_cf(
            self.cf(CF_LOG)?,
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut expect = from;
        for item in iter {
            let (k, v) = item.map_err(|e| self.rocks("read log", e))?;
            let lsn = u64_at(&k, 0, "log key")?;
            if lsn > to {
                break;
            }
            let e = Entry::decode(&v, &format!("{} lsn {lsn}", self.name()))
                .map_err(|e| self.bad_entry(e))?;
            if lsn != expect || e.lsn != lsn {
                return Err(self.bad_entry(Error::Corrupt(format!(
                    "{}: log has a gap or misplaced entry at lsn {lsn} (expected {expect})",
                    self.name()
                ))));
            }
            expect += 1;
            out.push(e);
        }
        if expect != to + 1 {
            return Err(Error::NotFound(format!(
                "{}: log ends at lsn {} before {to}",
                self.name(),
                expect - 1
            )));
        }
        Ok(out)
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get(key).map_err(|e| self.rocks("read", e))
    }

    /// Prefix scans of keys over one raw iterator (see `directory::KeyScanner`).
    pub fn key_scanner(&self) -> RawKeyScanner<'_> {
        RawKeyScanner {
            it: self.db.raw_iterator(),
            name: self.name(),
            path: self.path.clone(),
        }
    }

    /// Every (key, value) whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        let mut opts = rocksdb::ReadOptions::default();
        if let Some(end) = prefix_end(prefix) {
            // Stops the iterator at the prefix's end instead of the first key past it.
            opts.set_iterate_upper_bound(end);
        }
        for item in self
            .db
            .iterator_opt(IteratorMode::From(prefix, Direction::Forward), opts)
        {
            let (k, v) = item.map_err(|e| self.rocks("scan", e))?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}

pub mod damage;
mod files;
mod open;
#[cfg(test)]
mod tests;
mod view;

pub(crate) use files::wait_for_lock;
pub use files::{disk_full, DISK_FULL_BELOW_BYTES};
use files::{prefix_end, same_file, undoing_a_failed_open};
pub use files::{sync_dir, unshare_files, RawKeyScanner};
pub use view::CheckpointView;

/// What a scrub read of one replica.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Scrubbed {
    /// Keys and values read, every block's checksum checked.
    pub bytes: u64,
    /// Log entries read, every crc checked.
    pub entries: u64,
}

impl Replica {
    /// Reads this replica end to end (docs/design.md, "Storage faults"): every key and value
    /// of every column family through RocksDB with its block checksums checked, every log
    /// entry's crc and place, and the log's last entry against `meta`. The directory data is
    /// read on a second thread while this one reads the log. Damage found marks the replica
    /// (`damage::mark`) and is returned as `Error::Damaged`. `progress` hears of the bytes
    /// read.
    pub fn scrub(&self, progress: &mut dyn FnMut(u64)) -> Result<Scrubbed> {
        let data_bytes = std::sync::atomic::AtomicU64::new(0);
        let (data, log) = std::thread::scope(|s| {
            let data = s.spawn(|| {
                self.scrub_cf(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, &mut |n| {
                    data_bytes.fetch_add(n, Ordering::Relaxed);
                })
            });
            let log = self.scrub_cf(CF_LOG, progress).and_then(|log| {
                let meta = self.scrub_cf(CF_META, progress)?;
                Ok(Scrubbed {
                    bytes: log.bytes + meta.bytes,
                    entries: log.entries,
                })
            });
            let data = data.join().unwrap_or_else(|_| {
                Err(Error::Storage(format!(
                    "{}: scrub thread panicked",
                    self.name()
                )))
            });
            (data, log)
        });
        let (data, log) = (data?, log?);
        progress(data_bytes.load(Ordering::Relaxed));
        self.check_log_tail()?;
        Ok(Scrubbed {
            bytes: data.bytes + log.bytes,
            entries: log.entries,
        })
    }

    /// One column family read to its end, checksums verified; the log's entries checked
    /// (crc, format, place) without decoding their operations.
    fn scrub_cf(&self, cf: &str, progress: &mut dyn FnMut(u64)) -> Result<Scrubbed> {
        let mut done = Scrubbed::default();
        let mut pending = 0u64;
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_verify_checksums(true);
        // A scrub reads everything once: it must not push the working set out of the cache.
        opts.fill_cache(false);
        opts.set_readahead_size(2 << 20);
        let mut it = self.db.raw_iterator_cf_opt(self.cf(cf)?, opts);
        it.seek_to_first();
        let mut expect: Option<u64> = None;
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if cf == CF_LOG {
                let lsn = u64_at(k, 0, "log key").map_err(|e| self.bad_entry(e))?;
                let at = Entry::check(v, &format!("{} lsn {lsn}", self.name()))
                    .map_err(|e| self.bad_entry(e))?;
                if at.lsn != lsn || expect.is_some_and(|x| x != lsn) {
                    return Err(self.bad_entry(Error::Corrupt(format!(
                        "{}: log has a gap or misplaced entry at lsn {lsn} (expected {})",
                        self.name(),
                        expect.unwrap_or(lsn)
                    ))));
                }
                expect = Some(lsn + 1);
                done.entries += 1;
            }
            let n = (k.len() + v.len()) as u64;
            done.bytes += n;
            pending += n;
            if pending >= 1 << 20 {
                progress(pending);
                pending = 0;
            }
            it.next();
        }
        it.status().map_err(|e| self.rocks("scrub", e))?;
        progress(pending);
        Ok(done)
    }
}
