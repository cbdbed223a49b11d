//! The archive: one zstd-compressed tar of every partition's checkpoint, `cluster.json`,
//! and `MANIFEST.json` last. Packing hashes each file as it streams; reading trusts nothing:
//! every entry's type, path and size is checked before a byte of it is written, and every
//! checksum is compared before the caller may use what was extracted.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{io, Error, Result};
use crate::manifest::{FileEntry, Manifest, ARCHIVE_FORMAT_VERSION, MANIFEST_FILE, TOPOLOGY_FILE};

pub const ZSTD_LEVEL: i32 = 3;
/// Largest manifest or cluster.json accepted (they are read into memory).
const MAX_METADATA_BYTES: u64 = 64 << 20;

/// What an archive may hold before it is refused as oversized.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_entry_bytes: u64,
    pub max_total_bytes: u64,
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entry_bytes: 64 << 30,
            max_total_bytes: 1 << 40,
            max_entries: 1_000_000,
        }
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Passes bytes through, hashing and counting them.
pub struct Hashing<T> {
    inner: T,
    hash: Sha256,
    bytes: u64,
}

impl<T> Hashing<T> {
    pub fn new(inner: T) -> Self {
        Hashing {
            inner,
            hash: Sha256::new(),
            bytes: 0,
        }
    }
    pub fn finish(self) -> (T, FileEntry) {
        (
            self.inner,
            FileEntry {
                bytes: self.bytes,
                sha256: hex(&self.hash.finalize()),
            },
        )
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn header(path: &str, bytes: u64) -> Result<tar::Header> {
    let mut h = tar::Header::new_gnu();
    h.set_path(path)
        .map_err(io(format!("name archive entry {path}")))?;
    h.set_size(bytes);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(h)
}

/// The files of a checkpoint folder, sorted, as (path in the archive, path on disk).
pub fn checkpoint_files(partition: u32, dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io(format!("read {}", dir.display())))? {
        let e = e.map_err(io(format!("read {}", dir.display())))?;
        let ty = e
            .file_type()
            .map_err(io(format!("stat {}", e.path().display())))?;
        if !ty.is_file() {
            return Err(Error::Engine(engine::Error::Invalid(format!(
                "checkpoint {} holds {}, which is not a plain file",
                dir.display(),
                e.path().display()
            ))));
        }
        let name = e.file_name().to_string_lossy().into_owned();
        out.push((format!("p{partition}/{name}"), e.path()));
    }
    out.sort();
    Ok(out)
}

/// Writes the archive to `out`: `files`, then `cluster.json`, then the manifest (which gets
/// every file's size and SHA-256). Returns the final manifest and the archive's own entry.
pub fn pack(
    out: &Path,
    files: &[(String, PathBuf)],
    topology_json: &[u8],
    mut manifest: Manifest,
    progress: &mut dyn FnMut(u64),
) -> Result<(Manifest, FileEntry)> {
    let ctx = || format!("write {}", out.display());
    let f = File::create(out).map_err(io(ctx()))?;
    let mut enc = zstd::Encoder::new(
        Hashing::new(BufWriter::with_capacity(1 << 20, f)),
        ZSTD_LEVEL,
    )
    .map_err(io(ctx()))?;
    enc.include_checksum(true).map_err(io(ctx()))?;
    // One worker compresses while this thread reads, hashes and frames (like `tar | zstd`).
    enc.multithread(1).map_err(io(ctx()))?;
    let mut b = tar::Builder::new(enc);
    for (name, path) in files {
        let src = File::open(path).map_err(io(format!("read {}", path.display())))?;
        let bytes = src
            .metadata()
            .map_err(io(format!("stat {}", path.display())))?
            .len();
        let mut r = Hashing::new(BufReader::with_capacity(1 << 20, src).take(bytes));
        b.append(&header(name, bytes)?, &mut r).map_err(io(ctx()))?;
        let (_, entry) = r.finish();
        if entry.bytes != bytes {
            return Err(Error::Engine(engine::Error::Invalid(format!(
                "{} changed size while it was packed",
                path.display()
            ))));
        }
        progress(bytes);
        manifest.files.insert(name.clone(), entry);
    }
    let topo = Hashing::new(topology_json);
    let mut topo = topo;
    b.append(
        &header(TOPOLOGY_FILE, topology_json.len() as u64)?,
        &mut topo,
    )
    .map_err(io(ctx()))?;
    manifest.files.insert(TOPOLOGY_FILE.into(), topo.finish().1);
    let m = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Error::Engine(engine::Error::Invalid(format!("encode manifest: {e}"))))?;
    b.append(&header(MANIFEST_FILE, m.len() as u64)?, m.as_slice())
        .map_err(io(ctx()))?;
    let enc = b.into_inner().map_err(io(ctx()))?;
    let hashing = enc.finish().map_err(io(ctx()))?;
    let (w, entry) = hashing.finish();
    let f = w.into_inner().map_err(|e| Error::Io {
        context: ctx(),
        source: e.into_error(),
    })?;
    f.sync_all()
        .map_err(io(format!("fsync {}", out.display())))?;
    Ok((manifest, entry))
}

/// Checks an entry's name: relative, only plain components, and one of the shapes an
/// archive of format 1 holds (`MANIFEST.json`, `cluster.json`, `p<N>/<file>`).
fn check_name(raw: &[u8]) -> std::result::Result<String, String> {
    let name = std::str::from_utf8(raw).map_err(|_| "name is not UTF-8".to_string())?;
    if name.starts_with('/') || name.contains('\\') || name.contains('\0') {
        return Err("absolute or non-portable path".into());
    }
    let parts: Vec<&str> = name.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err("path escapes or is not normal (empty, `.` or `..` component)".into());
    }
    let ok = match parts.as_slice() {
        [f] => *f == MANIFEST_FILE || *f == TOPOLOGY_FILE,
        [p, _] => p
            .strip_prefix('p')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit())),
        _ => false,
    };
    if ok {
        Ok(name.to_string())
    } else {
        Err("not a file a geodir backup holds".into())
    }
}

/// What reading an archive found: the manifest, `cluster.json`'s bytes.
pub struct Checked {
    pub manifest: Manifest,
    pub topology_json: Vec<u8>,
}

/// Reads `archive` entry by entry, refusing anything unsafe before writing it, extracting
/// partition files under `into` (when given; else only hashing them), then compares every
/// file with the manifest. Nothing under `into` may be used unless this returns Ok.
pub fn read(archive: &Path, into: Option<&Path>, limits: Limits) -> Result<Checked> {
    let corrupt = |file: &str, why: String| Error::Corrupt {
        archive: archive.to_path_buf(),
        file: file.to_string(),
        why,
    };
    let unsafe_entry = |entry: &str, why: String| Error::Unsafe {
        archive: archive.to_path_buf(),
        entry: entry.to_string(),
        why,
    };
    let f = open(archive)?;
    let dec = zstd::Decoder::new(f).map_err(io(format!("read {}", archive.display())))?;
    let mut tar = tar::Archive::new(dec);
    let mut seen: BTreeMap<String, FileEntry> = BTreeMap::new();
    let mut manifest_raw = None;
    let mut topology_json = None;
    let mut total = 0u64;
    let mut last = "(start of archive)".to_string();
    // Where the next entry's header begins in the tar stream (after the last entry's data,
    // padded to 512 bytes): a damaged header is named by it.
    let mut next_header = 0u64;
    let entries = tar
        .entries()
        .map_err(|e| corrupt("(archive)", format!("cannot be read: {}", summary(&e))))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| {
            corrupt(
                &format!("tar header at byte {next_header}"),
                format!("damaged or truncated after entry {last}: {}", summary(&e)),
            )
        })?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let ty = entry.header().entry_type();
        if ty.is_dir() {
            continue;
        }
        if !ty.is_file() {
            return Err(unsafe_entry(
                &shown,
                format!("{ty:?} entries (links, devices) are never extracted"),
            ));
        }
        let name = check_name(&raw).map_err(|why| unsafe_entry(&shown, why))?;
        if seen.contains_key(&name) {
            return Err(unsafe_entry(&name, "appears twice".into()));
        }
        let size = entry
            .header()
            .size()
            .map_err(|e| corrupt(&name, summary(&e)))?;
        next_header = entry
            .raw_file_position()
            .saturating_add(size.div_ceil(512).saturating_mul(512));
        let is_meta = name == MANIFEST_FILE || name == TOPOLOGY_FILE;
        total = total.saturating_add(size);
        if let Some(why) = oversized(size, is_meta, total, seen.len() as u64, limits) {
            return Err(unsafe_entry(&name, why));
        }
        let read_err = |e: io::Error| corrupt(&name, format!("damaged or truncated: {e}"));
        let got = if is_meta {
            let mut buf = Vec::with_capacity(size as usize);
            let mut r = Hashing::new(&mut entry);
            r.read_to_end(&mut buf).map_err(read_err)?;
            let (_, fe) = r.finish();
            if name == MANIFEST_FILE {
                manifest_raw = Some(buf);
            } else {
                topology_json = Some(buf);
            }
            fe
        } else {
            let mut r = Hashing::new(&mut entry);
            match into {
                Some(dir) => extract(&mut r, &dir.join(&name), read_err)?,
                None => {
                    io::copy(&mut r, &mut io::sink()).map_err(read_err)?;
                }
            }
            r.finish().1
        };
        if got.bytes != size {
            return Err(corrupt(
                &name,
                format!("truncated: {} of {size} bytes", got.bytes),
            ));
        }
        seen.insert(name.clone(), got);
        last = name;
    }
    // The rest of the compressed stream, read to its end: zstd checks the frame's checksum
    // only there. Without it, a changed byte in what no per-file hash covers (the manifest
    // itself, the tar trailer) went unnoticed.
    io::copy(&mut tar.into_inner(), &mut io::sink()).map_err(|e| {
        corrupt(
            "(archive)",
            format!("the compressed stream is damaged: {}", summary(&e)),
        )
    })?;
    let raw = manifest_raw.ok_or_else(|| {
        corrupt(
            MANIFEST_FILE,
            format!("missing: the archive is truncated or not a geodir backup (last entry {last})"),
        )
    })?;
    let manifest = check_manifest(&raw, seen).map_err(|(file, why)| corrupt(&file, why))?;
    let topology_json =
        topology_json.ok_or_else(|| corrupt(TOPOLOGY_FILE, "missing from the archive".into()))?;
    Ok(Checked {
        manifest,
        topology_json,
    })
}

/// A tar or zstd reader's error as a clean phrase: its text before the first ": ", after
/// which tar quotes a damaged header's raw bytes, without unprintable characters.
fn summary(e: &io::Error) -> String {
    let text = e.to_string();
    let head = text.split(": ").next().unwrap_or_default();
    head.chars()
        .filter(|c| !c.is_control() && *c != char::REPLACEMENT_CHARACTER)
        .collect()
}

/// Opens a backup archive; a missing one is NotFound.
fn open(archive: &Path) -> Result<File> {
    File::open(archive).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::Engine(engine::Error::NotFound(format!(
            "no backup archive {}; see `dirctl backup list`",
            archive.display()
        ))),
        _ => Error::Io {
            context: format!("open {}", archive.display()),
            source: e,
        },
    })
}

/// Why an entry of `size` bytes breaks `limits`, if it does: `total` counts it, and
/// `entries` are the files before it.
fn oversized(size: u64, is_meta: bool, total: u64, entries: u64, limits: Limits) -> Option<String> {
    let max = if is_meta {
        MAX_METADATA_BYTES
    } else {
        limits.max_entry_bytes
    };
    (size > max || total > limits.max_total_bytes || entries >= limits.max_entries).then(|| {
        format!(
            "oversized: {size} bytes (limit {max} per entry, {} in all)",
            limits.max_total_bytes
        )
    })
}

/// Checks the manifest's bytes against the files `seen` in the archive: it decodes, has the
/// format this build reads, and lists exactly those files with their sizes and checksums.
/// An error names the file at fault and why.
fn check_manifest(
    raw: &[u8],
    mut seen: BTreeMap<String, FileEntry>,
) -> std::result::Result<Manifest, (String, String)> {
    let manifest: Manifest = serde_json::from_slice(raw)
        .map_err(|e| (MANIFEST_FILE.to_string(), format!("does not decode: {e}")))?;
    if manifest.format != ARCHIVE_FORMAT_VERSION {
        return Err((
            MANIFEST_FILE.to_string(),
            format!(
                "unknown archive format {} (this dirctl reads {ARCHIVE_FORMAT_VERSION})",
                manifest.format
            ),
        ));
    }
    seen.remove(MANIFEST_FILE);
    let listed: BTreeSet<&String> = manifest.files.keys().collect();
    for name in seen.keys() {
        if !listed.contains(name) {
            return Err((
                name.clone(),
                "is in the archive but not in its manifest".into(),
            ));
        }
    }
    for (name, want) in &manifest.files {
        let got = seen.get(name).ok_or_else(|| {
            (
                name.clone(),
                "is in the manifest but missing from the archive".into(),
            )
        })?;
        if got != want {
            return Err((
                name.clone(),
                format!(
                    "checksum mismatch: SHA-256 {} ({} bytes), manifest says {} ({} bytes)",
                    got.sha256, got.bytes, want.sha256, want.bytes
                ),
            ));
        }
    }
    Ok(manifest)
}

/// Copies one partition file from the archive to `dest`, a new file, and syncs it;
/// `read_err` says what a failed read of the archive means.
fn extract(
    r: &mut impl Read,
    dest: &Path,
    read_err: impl FnOnce(io::Error) -> Error,
) -> Result<()> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(io(format!("create {}", parent.display())))?;
    }
    let out = File::options()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(io(format!("create {}", dest.display())))?;
    let mut w = BufWriter::with_capacity(1 << 20, out);
    io::copy(r, &mut w).map_err(read_err)?;
    let out = w.into_inner().map_err(|e| Error::Io {
        context: format!("write {}", dest.display()),
        source: e.into_error(),
    })?;
    out.sync_all()
        .map_err(io(format!("fsync {}", dest.display())))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_reader_error_is_summed_up_without_the_header_bytes_it_quotes() {
        let e = std::io::Error::other(
            "numeric field did not have utf-8 text: \u{7}\u{1b}[31m\u{fffd}\u{1} when getting cksum for p0/1.sst",
        );
        assert_eq!(super::summary(&e), "numeric field did not have utf-8 text");
        let e = std::io::Error::other("archive header\u{1b} checksum mismatch");
        assert_eq!(super::summary(&e), "archive header checksum mismatch");
    }

    use super::*;

    #[test]
    fn names_that_escape_or_are_unexpected_are_refused() {
        for bad in [
            "../../x",
            "/etc/passwd",
            "p0/../../x",
            "p0/./f",
            "p0//f",
            "x",
            "p0/a/b",
            "pa/f",
            "",
        ] {
            assert!(check_name(bad.as_bytes()).is_err(), "{bad}");
        }
        for good in [
            "MANIFEST.json",
            "cluster.json",
            "p0/000012.sst",
            "p12/CURRENT",
        ] {
            assert_eq!(check_name(good.as_bytes()).as_deref(), Ok(good));
        }
    }

    /// Promise 8 at the byte level: a byte flipped anywhere in an archive (a partition's
    /// file, `cluster.json`, the manifest, the tar trailer, zstd's frame) is caught, or
    /// changed nothing that the archive holds (a frame header field such as the window
    /// size). Deterministic: every byte of one small archive, each flipped in turn.
    #[test]
    fn a_byte_flipped_anywhere_in_an_archive_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("000012.sst");
        std::fs::write(&file, b"the partition's checkpoint, a few bytes of it").unwrap();
        let topology = br#"{"clusterId": "c", "datacenters": []}"#;
        let manifest = Manifest {
            format: ARCHIVE_FORMAT_VERSION,
            id: "2026-12-03".into(),
            cluster_id: "c".into(),
            created_at: "2026-12-03T10:00:00Z".into(),
            partitions: vec![crate::manifest::PartitionEntry {
                id: 0,
                term: 1,
                lsn: 7,
                source: "westus".into(),
                counts: BTreeMap::new(),
            }],
            files: BTreeMap::new(),
            audit_anchors: BTreeMap::new(),
        };
        let archive = dir.path().join("backup.tar.zst");
        let files = vec![("p0/000012.sst".to_string(), file)];
        let (packed, _) = pack(&archive, &files, topology, manifest, &mut |_| {}).unwrap();
        let good = read(&archive, None, Limits::default()).unwrap();
        assert_eq!(good.manifest, packed);
        let bytes = std::fs::read(&archive).unwrap();
        let flipped = dir.path().join("flipped.tar.zst");
        let mut missed = Vec::new();
        for at in 0..bytes.len() {
            let mut b = bytes.clone();
            b[at] ^= 0x5a;
            std::fs::write(&flipped, &b).unwrap();
            match read(&flipped, None, Limits::default()) {
                Err(_) => {}
                Ok(got) => {
                    assert_eq!(
                        (&got.manifest, &got.topology_json[..]),
                        (&packed, &topology[..]),
                        "byte {at} of {} flipped: the archive read as good with other contents",
                        bytes.len()
                    );
                    missed.push(at);
                }
            }
        }
        // Only bytes that change nothing read back (zstd's frame header, before any content).
        assert!(
            missed.iter().all(|at| *at < 18),
            "flipped bytes read as good past the frame header: {missed:?} of {}",
            bytes.len()
        );
    }
}
