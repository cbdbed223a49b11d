//! dirctl on a real full disk: a small tmpfs mounted over one replica's folder (its files
//! copied in), filled until writes fail with ENOSPC. Mounting needs root (CI runs as root);
//! without it these tests fail, saying so.
#![allow(clippy::unwrap_used)]

mod util;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use util::Cluster;

/// A small tmpfs mounted over a replica's folder, holding a copy of its files and a filler
/// file that takes every free byte. Unmounted when dropped, on failure too: the folder then
/// holds its files as they were before the mount.
struct FullDisk {
    folder: PathBuf,
}

impl FullDisk {
    /// Mounts a full disk over replica `p<partition>` of datacenter `dc`.
    fn over(c: &Cluster, dc: &str, partition: u32) -> FullDisk {
        use std::os::unix::fs::MetadataExt;
        let uid = std::fs::metadata("/proc/self").unwrap().uid();
        assert_eq!(
            uid, 0,
            "the full-disk tests mount a tmpfs over a replica's folder, which needs root: run them as root (CI does)"
        );
        let folder = c.dc_dir(dc).join(format!("p{partition}"));
        let copy = c.path(&format!("before-full-disk-{dc}-p{partition}"));
        sh(Command::new("cp").arg("-a").arg(&folder).arg(&copy));
        sh(Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(&folder));
        let disk = FullDisk { folder };
        sh(Command::new("cp")
            .arg("-a")
            .arg(copy.join("."))
            .arg(&disk.folder));
        disk.fill();
        disk
    }

    fn filler(&self) -> PathBuf {
        self.folder.join("filler")
    }

    /// Writes the filler until the disk refuses with ENOSPC.
    fn fill(&self) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.filler())
            .unwrap();
        let chunk = vec![0u8; 4096];
        let e = loop {
            if let Err(e) = f.write_all(&chunk).and_then(|_| f.sync_all()) {
                break e;
            }
        };
        assert_eq!(
            e.raw_os_error(),
            Some(28),
            "filling {}: {e}",
            self.folder.display()
        );
    }

    /// Frees the space the filler took.
    fn free(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        let out = Command::new("umount").arg(&self.folder).output();
        if !out.as_ref().is_ok_and(|o| o.status.success()) {
            eprintln!(
                "umount {} failed ({out:?}); unmounting it lazily",
                self.folder.display()
            );
            let _ = Command::new("umount").arg("-l").arg(&self.folder).status();
        }
    }
}

/// Runs a setup command that must succeed.
fn sh(c: &mut Command) {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The files of a folder, by name, with their lengths.
fn files(folder: &Path) -> BTreeMap<String, u64> {
    std::fs::read_dir(folder)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect()
}

#[test]
fn a_failed_open_on_a_full_disk_leaves_the_replica_folder_as_it_was() {
    let c = Cluster::new();
    c.create_user("before@contoso.com");
    let disk = FullDisk::over(&c, "westus", 0);
    let before = files(&disk.folder);
    // Each write opens the primary for writes (twice: the user, then its audit record).
    for i in 0..2 {
        let r = c.fails(&util::create_user_args(&format!("full{i}@contoso.com")), 5);
        let after = files(&disk.folder);
        assert_eq!(
            after,
            before,
            "a failed open changed the files of {}\n{}",
            disk.folder.display(),
            r.describe()
        );
    }
    disk.free();
    c.create_user("after@contoso.com");
}

#[test]
fn a_full_disk_under_the_primary_says_where_and_to_free_space_not_to_fail_over() {
    let c = Cluster::new();
    let disk = FullDisk::over(&c, "westus", 0);
    let r = c.fails(&util::create_user_args("full@contoso.com"), 5);
    let last = r.stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("full")
            && last.contains("dc-westus/p0")
            && last.contains(&disk.folder.display().to_string())
            && last.contains("free space"),
        "{}",
        r.describe()
    );
    assert!(
        !r.stderr.contains("fail over") && !r.stderr.contains("--emergency"),
        "a full disk is no reason to fail over\n{}",
        r.describe()
    );
    disk.free();
    c.create_user("full@contoso.com");
}

#[test]
fn a_planned_failover_refused_for_a_full_disk_says_which_replica_and_where() {
    let c = Cluster::new();
    for (full, role) in [("eastus", "target"), ("westus", "primary")] {
        let disk = FullDisk::over(&c, full, 0);
        let r = c.fails(
            &["failover", "--yes", "--partition", "0", "--to", "eastus"],
            5,
        );
        let last = r.stderr.lines().last().unwrap_or_default();
        assert!(
            last.contains("disk")
                && last.contains("full")
                && last.contains(&format!("dc-{full}/p0"))
                && last.contains(&disk.folder.display().to_string())
                && !last.contains("--emergency"),
            "the {role}'s disk is full\n{}",
            r.describe()
        );
    }
    assert_eq!(c.status_row(0, "westus")["role"], "primary");
}

#[test]
fn a_full_sync_standby_is_replaced_said_on_stderr_and_reported_by_status_and_health() {
    let c = Cluster::new();
    c.ok(&["backup", "create"]);
    c.ok(&["health"]);
    let disk = FullDisk::over(&c, "eastus", 0);
    let path = disk.folder.display().to_string();
    let r = c.run(&util::create_user_args("full@contoso.com"));
    assert_eq!(r.code, 0, "{}", r.describe());
    assert!(
        r.stderr.contains("dc-eastus/p0")
            && r.stderr.contains("full")
            && r.stderr.contains(&path)
            && r.stderr.contains("westeurope"),
        "the re-designation of the sync standby goes unsaid\n{}",
        r.describe()
    );
    assert_eq!(c.status_row(0, "westeurope")["role"], "sync-standby");
    let row = c.status_row(0, "eastus");
    let health = row["health"].as_str().unwrap();
    assert!(
        health.starts_with("disk full") && health.contains(&path),
        "{row}"
    );
    let r = c.run(&["health", "--output", "json"]);
    assert_ne!(r.code, 0, "{}", r.describe());
    let problems = r.json()["problems"].to_string();
    assert!(
        problems.contains("dc-eastus/p0")
            && problems.contains("disk full")
            && problems.contains(&path),
        "{}",
        r.describe()
    );
    disk.free();
    c.ok(&["health"]);
}
