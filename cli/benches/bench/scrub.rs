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

/// Reads `files` start to end in 2 MiB reads (the scrub's readahead); returns seconds.
fn raw_read(files: &[PathBuf]) -> f64 {
    let mut buf = vec![0u8; 2 << 20];
    let t = Instant::now();
    for f in files {
        let mut r = std::fs::File::open(f).unwrap();
        while r.read(&mut buf).unwrap() > 0 {}
    }
    t.elapsed().as_secs_f64()
}

/// Drops the page cache (root only) so that both reads come from the disk; false if it
/// cannot.
fn drop_caches() -> bool {
    std::process::Command::new("sync").status().is_ok()
        && std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// Scrub MB/s of the primary replica holding `mb` MB of directory data, beside a raw read
/// of the same files: both from the page cache, then (as root) both from the disk. The
/// better of three rounds each, taken alternately.
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
    let mut out = Vec::new();
    for cold in [false, true] {
        if cold && !drop_caches() {
            println!("scrub from disk: skipped (dropping the page cache needs root)");
            continue;
        }
        let (mut ours, mut base) = (f64::MAX, f64::MAX);
        for _ in 0..3 {
            if cold {
                drop_caches();
            }
            base = base.min(raw_read(&files));
            if cold {
                drop_caches();
            }
            let t = Instant::now();
            let reports = c.scrub(Some("westus"), &mut |_| {}).unwrap();
            ours = ours.min(t.elapsed().as_secs_f64());
            assert!(reports.iter().all(|r| r.result == "clean"), "{reports:?}");
        }
        out.push(report(&Figure {
            name: if cold {
                "scrub, from disk"
            } else {
                "scrub, from page cache"
            },
            unit: "MB/s",
            value: mbs / ours,
            baseline_name: "raw sequential read, same files",
            baseline: mbs / base,
            goal: "ratio >= 0.5",
        }));
    }
    out
}
