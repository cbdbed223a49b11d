//! Creating, adopting, checkpointing, opening and closing a replica folder.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rocksdb::{WriteBatch, WriteOptions, DB};

use super::*;

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
        b.put_cf(&meta, META_PROMISED, b"1");
        let mut w = WriteOptions::default();
        w.set_sync(true);
        db.write_opt(b, &w)
            .map_err(|e| storage(format!("initialise replica {}", path.display()), e))?;
        drop(db);
        damage::Promise::write_new(path, Position::default())?;
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
        let last = db
            .get_cf(&meta, META_LAST)
            .map_err(|e| storage(format!("read checkpoint {}", path.display()), e))?
            .ok_or_else(|| {
                Error::Corrupt(format!(
                    "checkpoint {}: last position missing",
                    path.display()
                ))
            })?;
        let last = Position {
            term: u64_at(&last, 0, "last position")?,
            lsn: u64_at(&last, 8, "last position")?,
        };
        // A commit lsn given (a backup's position) must be where the checkpoint ends: a
        // manifest that says otherwise is refused, not trusted.
        if commit_lsn != 0 && last.lsn != commit_lsn {
            return Err(Error::Corrupt(format!(
                "checkpoint {} ends at lsn {}, but its manifest says {commit_lsn}",
                path.display(),
                last.lsn
            )));
        }
        let mut b = WriteBatch::default();
        b.put_cf(
            &meta,
            META_IDENTITY,
            serde_json::to_vec(identity).map_err(|e| Error::Storage(e.to_string()))?,
        );
        b.put_cf(&meta, META_COMMIT, commit_lsn.to_be_bytes());
        // The copy joins another partition history (a restored cluster's control plane may
        // name a lower term than its source had seen): it starts from its last entry's term,
        // and the first write or `observe_term` of its partition raises it.
        b.delete_cf(&meta, META_TERM);
        b.put_cf(&meta, META_PROMISED, b"1");
        let mut w = WriteOptions::default();
        w.set_sync(true);
        db.write_opt(b, &w)
            .map_err(|e| storage(format!("adopt checkpoint {}", path.display()), e))?;
        drop(db);
        // A copy promises what it holds: its checkpoint was consistent and synced.
        damage::Promise::write_new(path, last)?;
        File::create(path.join(LOCK_FILE))
            .map_err(|e| Error::io(format!("create lock file in {}", path.display()), e))?;
        sync_dir(path)
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
        let lock = Replica::lock(path, name, lock_timeout)?;
        Replica::open_locked(path, name, lock, access)
    }

    /// Takes the lock of the replica folder at `path` without opening it (a rebuild replacing
    /// a damaged replica holds it through the replacement), waiting up to `lock_timeout`.
    pub fn lock(path: &Path, name: &str, lock_timeout: Duration) -> Result<File> {
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
            return Replica::lock(path, name, left);
        }
        Ok(lock)
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
        if let Some(found) = damage::recorded(path) {
            return Err(damage::damaged(path, &found));
        }
        let opened = match access {
            Access::Write => {
                undoing_a_failed_open(path, || DB::open_cf_descriptors(&db_options(), path, cfs()))
            }
            Access::Read | Access::Scrub => {
                let mut o = db_options();
                // No info log file either (RocksDB would rotate `LOG` at every open).
                o.set_info_logger(rocksdb::InfoLogger::new_stderr_logger(
                    rocksdb::LogLevel::Fatal,
                    Some("rocksdb"),
                ));
                o.set_use_direct_reads(access == Access::Scrub);
                DB::open_cf_descriptors_read_only(&o, path, cfs(), false)
            }
        };
        let db = opened
            .map_err(|e| {
                let why = e.to_string();
                if e.kind() == rocksdb::ErrorKind::Corruption {
                    damage::mark(path, &format!("RocksDB refused to open it: {why}{}", wal_files(path, &why)))
                } else if e.kind() == rocksdb::ErrorKind::IOError && why.contains("No such file") {
                    // The folder is the replica's (its lock file is there) but RocksDB's own
                    // files are gone: CURRENT, the MANIFEST or an SST it names.
                    damage::mark(path, &format!("RocksDB's files are missing: {why}"))
                } else if why.contains("No space left on device") {
                    Error::DiskFull(format!("replica {name} cannot be opened: the disk holding {} is full; free space there (nothing was written): {why}", path.display()))
                } else {
                    Error::Unavailable(format!("replica {name} cannot be opened: {why}"))
                }
            })?;
        let meta = db
            .cf_handle(CF_META)
            .ok_or_else(|| Error::Corrupt(format!("replica {name}: meta column family missing")))?;
        let raw = db
            .get_cf(&meta, META_IDENTITY)
            .map_err(|e| rocks_error(path, format!("read identity of {name}"), e))?
            .ok_or_else(|| Error::Corrupt(format!("replica {name}: identity missing")))?;
        let identity: Identity = serde_json::from_slice(&raw)
            .map_err(|e| Error::Corrupt(format!("replica {name}: identity: {e}")))?;
        let last = db
            .get_cf(&meta, META_LAST)
            .map_err(|e| rocks_error(path, format!("read {name}"), e))?
            .ok_or_else(|| Error::Corrupt(format!("{name}: last position missing")))?;
        let last = Position {
            term: u64_at(&last, 0, "last position")?,
            lsn: u64_at(&last, 8, "last position")?,
        };
        let commit = db
            .get_cf(&meta, META_COMMIT)
            .map_err(|e| rocks_error(path, format!("read {name}"), e))?
            .ok_or_else(|| Error::Corrupt(format!("{name}: commit lsn missing")))?;
        let commit = u64_at(&commit, 0, "commit lsn")?;
        let promised = db
            .get_cf(&meta, META_PROMISED)
            .map_err(|e| rocks_error(path, format!("read {name}"), e))?
            .is_some();
        let seen_term = match db
            .get_cf(&meta, META_TERM)
            .map_err(|e| rocks_error(path, format!("read {name}"), e))?
        {
            Some(t) => u64_at(&t, 0, "seen term")?.max(last.term),
            None => last.term,
        };
        // What RocksDB recovered against what the replica promised (docs/design.md,
        // "Storage faults"): less is damage, never lag.
        let promise = match access {
            Access::Write => {
                let (promise, held) = damage::Promise::open(path)?;
                check_promise(path, held, promised, last)?;
                Some(promise)
            }
            Access::Read | Access::Scrub => {
                check_promise(path, damage::Promise::read(path)?, promised, last)?;
                None
            }
        };
        let r = Replica {
            db,
            access,
            promise,
            path: path.to_path_buf(),
            identity,
            poisoned: AtomicBool::new(false),
            positions: Mutex::new((last, commit)),
            persisted_commit: std::sync::atomic::AtomicU64::new(commit),
            seen_term: std::sync::atomic::AtomicU64::new(seen_term),
            log_writer: Mutex::new(()),
            cut: Mutex::new(Vec::new()),
            _lock: lock,
        };
        r.probe().map_err(|e| match e {
            Error::Damaged(_) => e,
            e => Error::Unavailable(format!("replica {name} failed its health probe: {e}")),
        })?;
        r.check_log_tail()?;
        if let Some(p) = &r.promise {
            p.record(last)?;
        }
        Ok(r)
    }

    /// The log's last entry is the one `meta` names, and it passes its checks (the rest of
    /// the log is checked as it is read, and by a scrub).
    pub(super) fn check_log_tail(&self) -> Result<()> {
        let last = self.last()?;
        let mut it = self.db.iterator_cf(self.cf(CF_LOG)?, IteratorMode::End);
        let Some(item) = it.next() else {
            // Empty: nothing written yet, or every entry pruned.
            return Ok(());
        };
        let (k, _) = item.map_err(|e| self.rocks("read log", e))?;
        let lsn = u64_at(&k, 0, "log key").map_err(|e| self.bad_entry(e))?;
        if lsn != last.lsn {
            return Err(damage::mark(
                &self.path,
                &format!(
                    "its log ends at lsn {lsn} but its last position (meta) is term {} lsn {}",
                    last.term, last.lsn
                ),
            ));
        }
        let e = self.entry(lsn)?;
        if e.position() != last {
            return Err(damage::mark(
                &self.path,
                &format!(
                    "its last log entry is term {} lsn {} but its last position (meta) is term {} lsn {}",
                    e.term, e.lsn, last.term, last.lsn
                ),
            ));
        }
        Ok(())
    }

    /// Closes the database but keeps the replica's lock held (returned), so that no other
    /// process can open the folder while it is being replaced.
    pub fn close_keeping_lock(self) -> File {
        let _ = self.persist_commit();
        let Replica { db, _lock, .. } = self;
        drop(db);
        _lock
    }
}

/// The check at open of what a replica promised (`held`) against what it recovered. A
/// replica made before promises existed (`promised` false) may have none yet; one made since
/// must.
fn check_promise(
    path: &Path,
    held: Option<std::result::Result<Position, String>>,
    promised: bool,
    recovered: Position,
) -> Result<()> {
    match held {
        None if promised => Err(damage::mark(
            path,
            &format!("its {} is missing or empty", damage::PROMISE_FILE),
        )),
        None => Ok(()),
        Some(Err(found)) => Err(damage::mark(path, &found)),
        Some(Ok(promised)) => {
            damage::check_recovery(promised, recovered).map_err(|found| damage::mark(path, &found))
        }
    }
}

/// The write-ahead log files of a replica, with their sizes, for a RocksDB error at open that
/// names no file (a WAL record's checksum): " (write-ahead log: 000016.log, 770 bytes)".
fn wal_files(path: &Path, why: &str) -> String {
    if why.contains(".sst") || why.contains(".log") || why.contains("MANIFEST") {
        return String::new();
    }
    let mut wal: Vec<String> = std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| {
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            format!("{}, {size} bytes", e.file_name().to_string_lossy())
        })
        .collect();
    wal.sort();
    match wal.is_empty() {
        true => String::new(),
        false => format!(" (write-ahead log: {})", wal.join("; ")),
    }
}
