//! The scrub figure: `Cluster::scrub` of one replica in MB/s of its files, beside a raw
//! sequential read of the same files.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;

use super::backups::write_text_users;
use super::{cluster, report, Figure};

/// The replica's RocksDB data files (SST and write-ahead log) and their total size.
fn data_files(replica: &Path) -> (Vec<PathBuf>, u64) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(replica)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sst" || x == "log"))
        .collect();
    files.sort();
    let bytes = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    (files, bytes)
}

/// Reads `files` start to end in 2 MiB reads (the scrub's readahead) with `O_DIRECT`, as
/// the scrub reads (past the page cache, from the disk); returns seconds.
fn raw_read(files: &[PathBuf]) -> f64 {
    use std::os::unix::fs::OpenOptionsExt;
    const LEN: usize = 2 << 20;
    // O_DIRECT needs a buffer aligned to the device's block size: an aligned window of a
    // larger one.
    let mut backing = vec![0u8; LEN + 4096];
    let at = backing.as_ptr().align_offset(4096);
    let buf = &mut backing[at..at + LEN];
    let t = Instant::now();
    for f in files {
        let mut r = std::fs::File::options()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(f)
            .unwrap();
        while r.read(buf).unwrap() > 0 {}
    }
    t.elapsed().as_secs_f64()
}

/// Scrub MB/s of the primary replica holding `mb` MB of directory data (the scrub reads
/// with direct I/O, from the disk), beside a raw sequential read of the same files with
/// `O_DIRECT`. The better of three rounds each, taken alternately.
pub(super) fn scrub_throughput(dir: &Path, mb: u64) -> Vec<Value> {
    let (mut c, tid) = cluster(&dir.join("s"));
    let replica = c.root().join("dc-westus").join("p0");
    let mut i = 0;
    while data_files(&replica).1 < mb << 20 {
        i = write_text_users(&mut c, &tid, i);
    }
    c.release_all();
    let (files, bytes) = data_files(&replica);
    let mbs = bytes as f64 / (1 << 20) as f64;
    println!("scrub data: {mbs:.0} MB of SST and WAL files ({i} users)");
    let (mut ours, mut base) = (f64::MAX, f64::MAX);
    for _ in 0..3 {
        base = base.min(raw_read(&files));
        let t = Instant::now();
        let reports = c.scrub(Some("westus"), &mut |_| {}).unwrap();
        ours = ours.min(t.elapsed().as_secs_f64());
        assert!(reports.iter().all(|r| r.result == "clean"), "{reports:?}");
    }
    vec![report(&Figure {
        name: "scrub (direct reads)",
        unit: "MB/s",
        value: mbs / ours,
        baseline_name: "O_DIRECT sequential read, same files",
        baseline: mbs / base,
        goal: "ratio >= 0.5",
    })]
}
