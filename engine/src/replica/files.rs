//! The replica folder's locks and fsyncs, and the raw key scanner.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Whether the open file `f` is still the file at `path`.
pub(super) fn same_file(f: &File, path: &Path) -> bool {
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
                        "{what} is held by another process: a dirctl command (raise --lock-timeout-ms to wait longer), or the geodird serving its datacenter (with servers running, send commands to them with --endpoints); gave up after {} ms",
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

/// Runs `open`, RocksDB opening the replica folder `path` for writes; if it fails, puts the
/// folder's files back as they were. A failed open (on a full disk, say) leaves a new empty
/// WAL and rotates the info log `LOG` to `LOG.old.<time>` at every try. Only files that did
/// not exist before the open are touched (this process holds the replica's lock, so nobody
/// else adds any): the rotated `LOG.old.*` goes back to being `LOG`, the others are removed.
pub(super) fn undoing_a_failed_open<T, E>(
    path: &Path,
    open: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    let names = || -> std::io::Result<BTreeSet<OsString>> {
        std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect()
    };
    let before = names();
    let opened = open();
    if let (Err(_), Ok(before), Ok(after)) = (&opened, before, names()) {
        let mut log_back = !before.contains(&OsString::from("LOG"));
        for added in after.difference(&before) {
            let from = path.join(added);
            // Best effort: the open's own error is what the caller reports.
            if !log_back && added.to_string_lossy().starts_with("LOG.old.") {
                log_back = std::fs::rename(&from, path.join("LOG")).is_ok();
            } else {
                let _ = std::fs::remove_file(&from);
            }
        }
    }
    opened
}

/// Below this many free bytes, the disk holding a replica counts as full: an open for writes
/// alone writes a new MANIFEST, an OPTIONS file and a WAL, and flushes what the old WAL held.
pub const DISK_FULL_BELOW_BYTES: u64 = 1 << 20;

/// Why the disk holding the folder `path` counts as full (`DISK_FULL_BELOW_BYTES`), or None
/// (None too when its free space cannot be read: the replica's own open then says why).
pub fn disk_full(path: &Path) -> Option<String> {
    let s = rustix::fs::statvfs(path).ok()?;
    full_with(path, s.f_bavail.saturating_mul(s.f_frsize))
}

/// `disk_full`'s decision, for `free` bytes free.
pub(super) fn full_with(path: &Path, free: u64) -> Option<String> {
    (free < DISK_FULL_BELOW_BYTES).then(|| {
        format!(
            "the disk holding {} has {free} bytes free; free space there (writes to this replica fail until then)",
            path.display()
        )
    })
}

/// The smallest key greater than every key starting with `prefix` (None: no such bound).
pub(super) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
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
    pub(super) it: rocksdb::DBRawIterator<'a>,
    pub(super) name: String,
    pub(super) path: std::path::PathBuf,
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
            .map_err(|e| super::rocks_error(&self.path, format!("scan {}", self.name), e))?;
        Ok(out)
    }
}

/// Gives every file in `dir` that shares its data with another path (a RocksDB checkpoint's
/// hard links) its own copy: a replica of another datacenter must not share a disk block
/// with its source, or one flipped bit would damage both. Copies, fsyncs, renames over.
pub fn unshare_files(dir: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut copied = 0;
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
        let path = entry.path();
        let meta = entry
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
        if !meta.is_file() || meta.nlink() < 2 {
            continue;
        }
        let tmp = path.with_extension("unshare");
        std::fs::copy(&path, &tmp)
            .and_then(|_| File::open(&tmp)?.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| Error::io(format!("copy {} to its own file", path.display()), e))?;
        copied += meta.len();
    }
    sync_dir(dir)?;
    Ok(copied)
}
