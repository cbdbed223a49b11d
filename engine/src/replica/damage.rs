//! What a replica promised, and what it was found to have lost (docs/design.md, "Storage
//! faults").
//!
//! Two small files beside RocksDB's, in the replica folder:
//! - `geodir.promise`: the highest (term, lsn) this replica has made durable (synced), as
//!   `u64 term | u64 lsn | u32 crc32` big-endian. Rewritten in place after every synced
//!   append (no fsync of its own: it is synced when the replica is let go of, and a stale
//!   promise is only a lower one), lowered and synced before a cut. A replica that opens
//!   with less than it promised lost synced writes: it is damaged, never "lagging".
//! - `geodir.damaged`: written once damage is found (at open, by a read, by a scrub): the
//!   finding, in one line of text. A replica with it never opens again; a rebuild replaces
//!   the whole folder.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::files::sync_dir;
use crate::error::{Error, Result};
use crate::log::Position;

pub const PROMISE_FILE: &str = "geodir.promise";
pub const DAMAGED_FILE: &str = "geodir.damaged";
const PROMISE_LEN: usize = 20;

/// The error for a damaged replica at `path`: what was found, and the way out.
pub fn damaged(path: &Path, found: &str) -> Error {
    let dc = path
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix(crate::layout::datacenter_dir("").as_str()))
        .unwrap_or("DC");
    let name = match (path.parent().and_then(|p| p.file_name()), path.file_name()) {
        (Some(d), Some(p)) => format!("{}/{}", d.to_string_lossy(), p.to_string_lossy()),
        _ => path.display().to_string(),
    };
    Error::Damaged(format!(
        "replica {name} is damaged: {found}; it serves no read and is never promoted; re-seed it from a healthy replica with `dirctl dc rebuild {dc}`"
    ))
}

/// Records that the replica at `path` is damaged (`found`), durably, and returns the error
/// that says so. The first finding is kept: a later one adds nothing an operator needs.
pub fn mark(path: &Path, found: &str) -> Error {
    let marker = path.join(DAMAGED_FILE);
    if !marker.exists() {
        let tmp = path.join(format!("{DAMAGED_FILE}.tmp"));
        let written = File::create(&tmp)
            .and_then(|mut f| {
                f.write_all(format!("{found}\n").as_bytes())?;
                f.sync_all()
            })
            .and_then(|()| std::fs::rename(&tmp, &marker));
        // Best effort: a disk too broken to take the marker is found again at the next open.
        if written.is_ok() {
            let _ = sync_dir(path);
        }
    }
    damaged(path, found)
}

/// The finding recorded in `path`'s marker, if the replica was found damaged.
pub fn recorded(path: &Path) -> Option<String> {
    let mut s = String::new();
    File::open(path.join(DAMAGED_FILE))
        .and_then(|mut f| f.read_to_string(&mut s))
        .ok()?;
    let found = s.trim();
    Some(match found.is_empty() {
        true => format!("its {DAMAGED_FILE} marker records no finding"),
        false => found.to_string(),
    })
}

/// Encodes a promise with its checksum.
fn encode(p: Position) -> [u8; PROMISE_LEN] {
    let mut b = [0u8; PROMISE_LEN];
    b[..8].copy_from_slice(&p.term.to_be_bytes());
    b[8..16].copy_from_slice(&p.lsn.to_be_bytes());
    let crc = crc32fast::hash(&b[..16]);
    b[16..].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Decodes a promise; a wrong length or checksum is a finding (what, expected vs found).
fn decode(b: &[u8]) -> std::result::Result<Position, String> {
    if b.len() != PROMISE_LEN {
        return Err(format!(
            "{PROMISE_FILE} holds {} bytes, expected {PROMISE_LEN}",
            b.len()
        ));
    }
    let stored = u32::from_be_bytes([b[16], b[17], b[18], b[19]]);
    let computed = crc32fast::hash(&b[..16]);
    if stored != computed {
        return Err(format!(
            "{PROMISE_FILE} checksum mismatch at offset 16: expected {computed:08x}, found {stored:08x}"
        ));
    }
    let u = |r: std::ops::Range<usize>| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[r]);
        u64::from_be_bytes(a)
    };
    Ok(Position {
        term: u(0..8),
        lsn: u(8..16),
    })
}

/// The check at open: a replica that recovered less than it promised lost synced writes.
/// More than promised is fine (synced after the promise was last written down).
pub fn check_recovery(promised: Position, recovered: Position) -> std::result::Result<(), String> {
    if recovered.lsn < promised.lsn {
        return Err(format!(
            "it promised term {} lsn {} ({PROMISE_FILE}) but recovered only term {} lsn {}: synced writes were lost",
            promised.term, promised.lsn, recovered.term, recovered.lsn
        ));
    }
    if recovered.lsn == promised.lsn && recovered.term != promised.term {
        return Err(format!(
            "it promised term {} at lsn {} ({PROMISE_FILE}) but holds term {} there",
            promised.term, promised.lsn, recovered.term
        ));
    }
    Ok(())
}

/// The promise file of an open replica.
pub struct Promise {
    file: File,
    path: std::path::PathBuf,
    /// Recorded since the last fsync: synced when the replica is let go of.
    dirty: std::sync::atomic::AtomicBool,
}

impl Drop for Promise {
    fn drop(&mut self) {
        if self.dirty.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = self.file.sync_data();
        }
    }
}

impl Promise {
    /// Opens (creating if absent: a replica written before promises existed, or a new one)
    /// the promise of the replica at `path`. Returns it with what it held, if anything.
    pub fn open(path: &Path) -> Result<(Promise, Option<std::result::Result<Position, String>>)> {
        let p = path.join(PROMISE_FILE);
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&p)
            .map_err(|e| Error::io(format!("open {}", p.display()), e))?;
        let mut b = Vec::new();
        file.read_to_end(&mut b)
            .map_err(|e| Error::io(format!("read {}", p.display()), e))?;
        let held = (!b.is_empty()).then(|| decode(&b));
        Ok((
            Promise {
                file,
                path: p,
                dirty: std::sync::atomic::AtomicBool::new(false),
            },
            held,
        ))
    }

    /// What the promise of the replica at `path` holds, without creating or writing it (a
    /// replica opened for reads writes nothing).
    pub fn read(path: &Path) -> Result<Option<std::result::Result<Position, String>>> {
        let p = path.join(PROMISE_FILE);
        match std::fs::read(&p) {
            Ok(b) if b.is_empty() => Ok(None),
            Ok(b) => Ok(Some(decode(&b))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("read {}", p.display()), e)),
        }
    }

    /// Writes the promise down (in place, no fsync: `sync` makes it durable).
    pub fn record(&self, p: Position) -> Result<()> {
        self.file
            .write_all_at(&encode(p), 0)
            .map_err(|e| Error::io(format!("write {}", self.path.display()), e))?;
        self.dirty.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io(format!("fsync {}", self.path.display()), e))?;
        self.dirty.store(false, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Writes a new replica's promise (`create`, `adopt`), synced.
    pub fn write_new(path: &Path, p: Position) -> Result<()> {
        let (promise, _) = Promise::open(path)?;
        promise.record(p)?;
        promise.sync()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pos(term: u64, lsn: u64) -> Position {
        Position { term, lsn }
    }

    #[test]
    fn recovery_below_the_promise_is_damage_and_above_it_is_not() {
        let cases = [
            (pos(1, 10), pos(1, 10), true),
            (pos(1, 10), pos(2, 14), true),
            (pos(0, 0), pos(0, 0), true),
            (pos(1, 10), pos(1, 9), false),
            (pos(1, 10), pos(0, 0), false),
            (pos(2, 10), pos(1, 10), false),
        ];
        for (promised, recovered, ok) in cases {
            let got = check_recovery(promised, recovered);
            assert_eq!(got.is_ok(), ok, "{promised:?} {recovered:?}: {got:?}");
        }
        let why = check_recovery(pos(1, 10), pos(0, 0)).unwrap_err();
        assert!(why.contains("lsn 10") && why.contains("lsn 0"), "{why}");
    }

    #[test]
    fn a_promise_round_trips_and_any_flipped_byte_is_named() {
        let b = encode(pos(3, 77));
        assert_eq!(decode(&b), Ok(pos(3, 77)));
        for i in 0..PROMISE_LEN {
            let mut bad = b;
            bad[i] ^= 0x10;
            assert!(decode(&bad).is_err(), "byte {i}");
        }
        assert!(decode(&b[..12]).unwrap_err().contains("12 bytes"));
    }

    #[test]
    fn a_marker_keeps_the_first_finding_and_names_the_way_out() {
        let dir = tempfile::tempdir().unwrap();
        let replica = dir.path().join("dc-westus").join("p3");
        std::fs::create_dir_all(&replica).unwrap();
        assert_eq!(recorded(&replica), None);
        let e = mark(&replica, "block checksum mismatch in 000012.sst");
        mark(&replica, "a later finding");
        assert_eq!(
            recorded(&replica).as_deref(),
            Some("block checksum mismatch in 000012.sst")
        );
        let shown = e.to_string();
        assert!(
            shown.contains("dc-westus/p3 is damaged")
                && shown.contains("`dirctl dc rebuild westus`"),
            "{shown}"
        );
    }
}
