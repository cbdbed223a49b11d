//! The replica folder's locks and fsyncs, and the raw key scanner.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use super::storage;
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
