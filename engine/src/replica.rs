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
use std::time::{Duration, Instant};

use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};

use crate::error::{Error, Result};
use crate::log::{Entry, Op, Position};

const CF_LOG: &str = "log";
const CF_META: &str = "meta";
const META_LAST: &[u8] = b"last";
const META_COMMIT: &[u8] = b"commit";
const META_IDENTITY: &[u8] = b"identity";
pub const META_PROBE: &[u8] = b"probe";
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
}

pub struct Replica {
    db: DB,
    access: Access,
    path: PathBuf,
    identity: Identity,
    poisoned: AtomicBool,
    /// (last position, commit lsn), kept in step with `meta`: this process holds the replica
    /// exclusively, so the copy in memory is the truth between writes.
    positions: Mutex<(Position, u64)>,
    /// The commit lsn as last written to `meta`: the primary notes commits in memory and
    /// writes them with its next batch or when it lets go of the replica.
    persisted_commit: std::sync::atomic::AtomicU64,
    /// Serializes appends and cuts: each reads the last position, then writes after it.
    log_writer: Mutex<()>,
    _lock: File,
}

fn db_options() -> Options {
    let mut o = Options::default();
    o.create_if_missing(false);
    o.create_missing_column_families(false);
    o.set_keep_log_file_num(2);
    o.set_max_manifest_file_size(4 << 20);
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
    /// Creates a new, empty replica at `path` (which must not exist). Used by init and rebuild only.
    pub fn create(path: &Path, identity: &Identity) -> Result<()> {
        if path.exists() {
            return Err(Error::Conflict(format!(
                "{} already exists",
                path.display()
            )));
        }
        std::fs::create_dir_all(path)
            .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
        File::create(path.join(LOCK_FILE))
            .map_err(|e| Error::io(format!("create lock file in {}", path.display()), e))?;
        let mut o = db_options();
        o.create_if_missing(true);
        o.create_missing_column_families(true);
        let db = DB::open_cf_descriptors(&o, path, cfs())
            .map_err(|e| storage(format!("create replica {}", path.display()), e))?;
        let meta = db
            .cf_handle(CF_META)
            .ok_or_else(|| Error::Storage("meta column family missing".into()))?;
        let mut b = WriteBatch::default();
        let id = serde_json::to_vec(identity).map_err(|e| Error::Storage(e.to_string()))?;
        b.put_cf(&meta, META_IDENTITY, id);
        b.put_cf(&meta, META_LAST, encode_position(Position::default()));
        b.put_cf(&meta, META_COMMIT, 0u64.to_be_bytes());
        b.put_cf(&meta, META_PROBE, b"ok");
        let mut w = WriteOptions::default();
        w.set_sync(true);
        db.write_opt(b, &w)
            .map_err(|e| storage(format!("initialise replica {}", path.display()), e))?;
        drop(db);
        sync_dir(path)?;
        if let Some(parent) = path.parent() {
            sync_dir(parent)?;
        }
        Ok(())
    }

    /// Takes a RocksDB checkpoint of this replica into `dest` (which must not exist): hard
    /// links where possible, consistent at `last()` because this process holds the replica.
    pub fn checkpoint(&self, dest: &Path) -> Result<Position> {
        let pos = self.last()?;
        let cp = rocksdb::checkpoint::Checkpoint::new(&self.db)
            .map_err(|e| storage(format!("checkpoint {}", self.name()), e))?;
        cp.create_checkpoint(dest).map_err(|e| {
            storage(
                format!("checkpoint {} into {}", self.name(), dest.display()),
                e,
            )
        })?;
        Ok(pos)
    }

    /// Makes a checkpoint folder a replica with `identity` (a rebuilt datacenter's, a
    /// restored cluster's): rewrites the identity, sets the commit lsn (what the caller knows
    /// was committed there: a backup's position, or 0), adds the lock file.
    pub fn adopt(path: &Path, identity: &Identity, commit_lsn: u64) -> Result<()> {
        let db = DB::open_cf_descriptors(&db_options(), path, cfs())
            .map_err(|e| storage(format!("open checkpoint {}", path.display()), e))?;
        let meta = db.cf_handle(CF_META).ok_or_else(|| {
            Error::Corrupt(format!(
                "checkpoint {}: meta column family missing",
                path.display()
            ))
        })?;
        // A commit lsn given (a backup's position) must be where the checkpoint ends: a
        // manifest that says otherwise is refused, not trusted.
        if commit_lsn != 0 {
            let last = db
                .get_cf(&meta, META_LAST)
                .map_err(|e| storage(format!("read checkpoint {}", path.display()), e))?
                .ok_or_else(|| {
                    Error::Corrupt(format!(
                        "checkpoint {}: last position missing",
                        path.display()
                    ))
                })?;
            let last = u64_at(&last, 8, "last position")?;
            if last != commit_lsn {
                return Err(Error::Corrupt(format!(
                    "checkpoint {} ends at lsn {last}, but its manifest says {commit_lsn}",
                    path.display()
                )));
            }
        }
        let mut b = WriteBatch::default();
        b.put_cf(
            &meta,
            META_IDENTITY,
            serde_json::to_vec(identity).map_err(|e| Error::Storage(e.to_string()))?,
        );
        b.put_cf(&meta, META_COMMIT, commit_lsn.to_be_bytes());
        let mut w = WriteOptions::default();
        w.set_sync(true);
        db.write_opt(b, &w)
            .map_err(|e| storage(format!("adopt checkpoint {}", path.display()), e))?;
        drop(db);
        File::create(path.join(LOCK_FILE))
            .map_err(|e| Error::io(format!("create lock file in {}", path.display()), e))?;
        sync_dir(path)
    }

    /// The first lsn still in this replica's log (entries below it were pruned), or None if empty.
    pub fn first_log_lsn(&self) -> Result<Option<u64>> {
        let mut it = self.db.iterator_cf(self.cf(CF_LOG)?, IteratorMode::Start);
        match it.next() {
            None => Ok(None),
            Some(item) => {
                let (k, _) =
                    item.map_err(|e| storage(format!("read log of {}", self.name()), e))?;
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

    /// Opens an existing replica, waiting up to `lock_timeout` for another process's hold on it.
    /// A missing folder is a lost replica (`Unavailable`), never an empty one to write into.
    pub fn open(path: &Path, name: &str, lock_timeout: Duration) -> Result<Replica> {
        Replica::open_for(path, name, lock_timeout, Access::Write)
    }

    /// Opens a replica for writes or for reads only (`Access`).
    pub fn open_for(
        path: &Path,
        name: &str,
        lock_timeout: Duration,
        access: Access,
    ) -> Result<Replica> {
        let lock_path = path.join(LOCK_FILE);
        let lock = match File::options().read(true).write(true).open(&lock_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Name the highest folder that is missing: the datacenter's, usually.
                let missing = path
                    .ancestors()
                    .take_while(|a| !a.exists())
                    .last()
                    .unwrap_or(&lock_path);
                return Err(Error::Unavailable(format!(
                    "replica {name} is lost: {} does not exist",
                    missing.display()
                )));
            }
            Err(e) => {
                return Err(Error::Unavailable(format!(
                    "replica {name} is unreachable: {e}"
                )))
            }
        };
        // Fair hand-over: a waiter first takes the queue lock, so that the process that just
        // let go of the replica cannot take it again ahead of it.
        let queue_path = path.join(QUEUE_FILE);
        let queue = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&queue_path)
            .map_err(|e| {
                Error::Unavailable(format!(
                    "replica {name}: cannot open {}: {e}",
                    queue_path.display()
                ))
            })?;
        let deadline = Instant::now() + lock_timeout;
        let what = format!("replica {name}");
        wait_for_lock(&queue, deadline, &what, lock_timeout)?;
        wait_for_lock(&lock, deadline, &what, lock_timeout)?;
        drop(queue);
        // The replica may have been replaced (re-seeded, rebuilt, restored) while this process
        // waited: then the lock it holds belongs to the old folder. Start again on the new one.
        if !same_file(&lock, &lock_path) {
            drop(lock);
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Unavailable(format!("replica {name} was being replaced while this process waited; run the command again")));
            }
            std::thread::sleep(Duration::from_millis(1));
            return Replica::open_for(path, name, left, access);
        }
        Replica::open_locked(path, name, lock, access)
    }

    /// Reopens a replica opened for reads so that it takes writes, without letting go of its
    /// lock in between.
    pub fn reopen_for_writes(self) -> Result<Replica> {
        let (path, name) = (self.path.clone(), self.name());
        let lock = self.close_keeping_lock();
        Replica::open_locked(&path, &name, lock, Access::Write)
    }

    pub fn access(&self) -> Access {
        self.access
    }

    fn open_locked(path: &Path, name: &str, lock: File, access: Access) -> Result<Replica> {
        let opened = match access {
            Access::Write => DB::open_cf_descriptors(&db_options(), path, cfs()),
            Access::Read => {
                let mut o = db_options();
                // No info log file either (RocksDB would rotate `LOG` at every open).
                o.set_info_logger(rocksdb::InfoLogger::new_stderr_logger(
                    rocksdb::LogLevel::Fatal,
                    Some("rocksdb"),
                ));
                DB::open_cf_descriptors_read_only(&o, path, cfs(), false)
            }
        };
        let db = opened
            .map_err(|e| {
                let why = e.to_string();
                if why.contains("No space left on device") {
                    Error::Unavailable(format!("replica {name} cannot be opened: the disk holding {} is full; free space there (nothing was written): {why}", path.display()))
                } else {
                    Error::Unavailable(format!("replica {name} cannot be opened: {why}"))
                }
            })?;
        let meta = db
            .cf_handle(CF_META)
            .ok_or_else(|| Error::Corrupt(format!("replica {name}: meta column family missing")))?;
        let raw = db
            .get_cf(&meta, META_IDENTITY)
            .map_err(|e| storage(format!("read identity of {name}"), e))?
            .ok_or_else(|| Error::Corrupt(format!("replica {name}: identity missing")))?;
        let identity: Identity = serde_json::from_slice(&raw)
            .map_err(|e| Error::Corrupt(format!("replica {name}: identity: {e}")))?;
        let last = db
            .get_cf(&meta, META_LAST)
            .map_err(|e| storage(format!("read {name}"), e))?
            .ok_or_else(|| Error::Corrupt(format!("{name}: last position missing")))?;
        let last = Position {
            term: u64_at(&last, 0, "last position")?,
            lsn: u64_at(&last, 8, "last position")?,
        };
        let commit = db
            .get_cf(&meta, META_COMMIT)
            .map_err(|e| storage(format!("read {name}"), e))?
            .ok_or_else(|| Error::Corrupt(format!("{name}: commit lsn missing")))?;
        let commit = u64_at(&commit, 0, "commit lsn")?;
        let r = Replica {
            db,
            access,
            path: path.to_path_buf(),
            identity,
            poisoned: AtomicBool::new(false),
            positions: Mutex::new((last, commit)),
            persisted_commit: std::sync::atomic::AtomicU64::new(commit),
            log_writer: Mutex::new(()),
            _lock: lock,
        };
        r.probe().map_err(|e| {
            Error::Unavailable(format!("replica {name} failed its health probe: {e}"))
        })?;
        Ok(r)
    }

    /// Closes the database but keeps the replica's lock held (returned), so that no other
    /// process can open the folder while it is being replaced.
    pub fn close_keeping_lock(self) -> File {
        let _ = self.persist_commit();
        let Replica { db, _lock, .. } = self;
        drop(db);
        _lock
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn name(&self) -> String {
        format!(
            "dc-{}/p{}",
            self.identity.datacenter, self.identity.partition
        )
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
            .map_err(|e| storage(format!("read {}", self.name()), e))
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
        if self.access == Access::Read {
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
            storage(format!("{what} on {}", self.name()), e)
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

    /// Appends entries (which must continue this log) with their data, in one batch.
    pub fn append(&self, entries: &[Entry], durability: Durability) -> Result<()> {
        let encoded: Vec<Vec<u8>> = entries.iter().map(Entry::encode).collect();
        self.append_encoded(entries, &encoded, durability)
    }

    /// `append` with each entry's encoding already made (`encoded[i]` is `entries[i].encode()`):
    /// a writer encodes an entry once for all the replicas it ships to.
    pub fn append_encoded(
        &self,
        entries: &[Entry],
        encoded: &[Vec<u8>],
        durability: Durability,
    ) -> Result<()> {
        let Some(last_entry) = entries.last() else {
            return Ok(());
        };
        let _writing = self
            .log_writer
            .lock()
            .map_err(|_| Error::Storage(format!("{}: log writer lock poisoned", self.name())))?;
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
        let commit = self.commit_lsn()?;
        b.put_cf(meta, META_COMMIT, commit.to_be_bytes());
        self.write(
            b,
            durability,
            &format!("append lsn {}..={}", entries[0].lsn, last_entry.lsn),
        )?;
        self.positions()?.0 = last_entry.position();
        self.persisted_commit.store(commit, Ordering::SeqCst);
        Ok(())
    }

    /// Cuts off every entry above `lsn`, undoing its data changes, in one synced batch.
    /// Returns the entries that were cut, newest first.
    pub fn truncate_after(&self, lsn: u64) -> Result<Vec<Entry>> {
        let _writing = self
            .log_writer
            .lock()
            .map_err(|_| Error::Storage(format!("{}: log writer lock poisoned", self.name())))?;
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
        Ok(cut)
    }

    /// The entry at `lsn`, checksum checked.
    pub fn entry(&self, lsn: u64) -> Result<Entry> {
        let raw = self
            .db
            .get_cf(self.cf(CF_LOG)?, lsn.to_be_bytes())
            .map_err(|e| storage(format!("read log of {}", self.name()), e))?
            .ok_or_else(|| {
                Error::NotFound(format!("{}: no log entry at lsn {lsn}", self.name()))
            })?;
        let e = Entry::decode(&raw, &format!("{} lsn {lsn}", self.name()))?;
        if e.lsn != lsn {
            return Err(Error::Corrupt(format!(
                "{}: entry stored at lsn {lsn} names lsn {}",
                self.name(),
                e.lsn
            )));
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
            let (k, v) = item.map_err(|e| storage(format!("read log of {}", self.name()), e))?;
            let lsn = u64_at(&k, 0, "log key")?;
            if lsn > to {
                break;
            }
            let e = Entry::decode(&v, &format!("{} lsn {lsn}", self.name()))?;
            if lsn != expect || e.lsn != lsn {
                return Err(Error::Corrupt(format!(
                    "{}: log has a gap or misplaced entry at lsn {lsn} (expected {expect})",
                    self.name()
                )));
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
        self.db
            .get(key)
            .map_err(|e| storage(format!("read {}", self.name()), e))
    }

    /// Prefix scans of keys over one raw iterator (see `directory::KeyScanner`).
    pub fn key_scanner(&self) -> RawKeyScanner<'_> {
        RawKeyScanner {
            it: self.db.raw_iterator(),
            name: self.name(),
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
            let (k, v) = item.map_err(|e| storage(format!("scan {}", self.name()), e))?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}

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

/// Whether the open file `f` is still the file at `path`.
fn same_file(f: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

/// Polls a file lock until `deadline`; `what` names the locked thing in the error.
pub(crate) fn wait_for_lock(
    f: &File,
    deadline: Instant,
    what: &str,
    timeout: Duration,
) -> Result<()> {
    let mut wait = Duration::from_micros(200);
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => {
                if Instant::now() >= deadline {
                    return Err(Error::Unavailable(format!(
                        "{what} is held by another dirctl process; gave up after {} ms (raise --lock-timeout-ms)",
                        timeout.as_millis()
                    )));
                }
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_millis(2));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::Unavailable(format!("{what}: cannot lock: {e}")))
            }
        }
    }
}

/// fsync a folder so that a created or renamed entry in it is durable.
pub fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("fsync folder {}", path.display()), e))
}

/// The smallest key greater than every key starting with `prefix` (None: no such bound).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// One RocksDB iterator reused across prefix scans of the data column family.
pub struct RawKeyScanner<'a> {
    it: rocksdb::DBRawIterator<'a>,
    name: String,
}

impl crate::directory::KeyScanner for RawKeyScanner<'_> {
    fn keys(&mut self, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        self.it.seek(prefix);
        while let Some(k) = self.it.key() {
            if !k.starts_with(prefix) {
                break;
            }
            out.push(k.to_vec());
            self.it.next();
        }
        self.it
            .status()
            .map_err(|e| storage(format!("scan {}", self.name), e))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity {
            cluster_id: "c".into(),
            datacenter: "westus".into(),
            partition: 0,
        }
    }

    fn entry(term: u64, lsn: u64, key: &[u8], value: &[u8], prev: Option<&[u8]>) -> Entry {
        Entry {
            term,
            lsn,
            time_ms: 0,
            ops: vec![Op::Put {
                key: key.to_vec(),
                value: value.to_vec(),
                prev: prev.map(<[u8]>::to_vec),
            }],
        }
    }

    #[test]
    fn adopting_a_checkpoint_refuses_a_commit_lsn_it_does_not_end_at() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r");
        Replica::create(&path, &id()).expect("create");
        std::fs::remove_file(path.join(LOCK_FILE)).expect("lock file");
        // The replica ends at lsn 0: a manifest saying 5 is refused, 0 is taken.
        assert!(
            matches!(Replica::adopt(&path, &id(), 5), Err(Error::Corrupt(m)) if m.contains("ends at lsn 0"))
        );
        Replica::adopt(&path, &id(), 0).expect("adopt at its own position");
    }

    #[test]
    fn open_refuses_a_missing_replica_and_creates_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("p0");
        assert!(matches!(
            Replica::open(&p, "p0", Duration::ZERO),
            Err(Error::Unavailable(_))
        ));
        assert!(!p.exists());
    }

    #[test]
    fn append_then_truncate_restores_previous_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("p0");
        Replica::create(&p, &id()).expect("create");
        let r = Replica::open(&p, "p0", Duration::ZERO).expect("open");
        r.append(&[entry(1, 1, b"a", b"1", None)], Durability::Synced)
            .expect("append 1");
        r.append(
            &[
                entry(1, 2, b"a", b"2", Some(b"1")),
                entry(1, 3, b"b", b"x", None),
            ],
            Durability::Synced,
        )
        .expect("append 2,3");
        assert_eq!(r.last().expect("last"), Position { term: 1, lsn: 3 });
        let cut = r.truncate_after(1).expect("truncate");
        assert_eq!(cut.iter().map(|e| e.lsn).collect::<Vec<_>>(), vec![3, 2]);
        assert_eq!(r.get(b"a").expect("get"), Some(b"1".to_vec()));
        assert_eq!(r.get(b"b").expect("get"), None);
        assert_eq!(r.last().expect("last"), Position { term: 1, lsn: 1 });
        assert!(matches!(
            r.append(&[entry(1, 3, b"c", b"y", None)], Durability::Synced),
            Err(Error::Storage(_))
        ));
    }

    #[test]
    fn a_second_open_waits_then_fails_clearly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("p0");
        Replica::create(&p, &id()).expect("create");
        let _held = Replica::open(&p, "p0", Duration::ZERO).expect("open");
        let start = Instant::now();
        let second = Replica::open(&p, "p0", Duration::from_millis(100));
        assert!(matches!(second, Err(Error::Unavailable(ref m)) if m.contains("held by another")));
        assert!(start.elapsed() >= Duration::from_millis(100));
    }
}
