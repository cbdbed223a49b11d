//! The cluster root on disk, spelled in one place (docs/design.md, "Cluster root"):
//! `dc-<name>/` per datacenter, `dc-<name>/p<N>/` per replica, and the folders a rebuild
//! and a re-seed leave beside a replica.

use std::path::{Path, PathBuf};

const DATACENTER_PREFIX: &str = "dc-";

/// A datacenter's folder: `ROOT/dc-<name>`.
pub fn datacenter_path(root: &Path, datacenter: &str) -> PathBuf {
    root.join(datacenter_dir(datacenter))
}

/// A datacenter's folder name in the cluster root: `dc-<name>`.
pub fn datacenter_dir(datacenter: &str) -> String {
    format!("{DATACENTER_PREFIX}{datacenter}")
}

/// Whether a file name in the cluster root is a datacenter's folder.
pub fn is_datacenter_dir(name: &str) -> bool {
    name.starts_with(DATACENTER_PREFIX)
}

/// One replica's folder relative to the cluster root, `dc-<name>/p<N>`: also its name in messages.
pub fn replica_dir(datacenter: &str, partition: u32) -> String {
    format!("{}/p{partition}", datacenter_dir(datacenter))
}

/// One replica's folder: `ROOT/dc-<name>/p<N>`.
pub fn replica_path(root: &Path, datacenter: &str, partition: u32) -> PathBuf {
    datacenter_path(root, datacenter).join(format!("p{partition}"))
}

/// A rebuild in progress (or interrupted) leaves this folder beside the replica's.
pub fn rebuild_path(root: &Path, datacenter: &str, partition: u32) -> PathBuf {
    replica_path(root, datacenter, partition).with_extension("rebuild")
}

/// Where a replica behind the retained log is moved aside while it is re-seeded.
pub fn stale_path(root: &Path, datacenter: &str, partition: u32) -> PathBuf {
    replica_path(root, datacenter, partition).with_extension("stale")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_live_in_their_datacenters_folder() {
        let root = Path::new("/r");
        assert_eq!(datacenter_path(root, "westus"), Path::new("/r/dc-westus"));
        assert_eq!(
            replica_path(root, "westus", 3),
            Path::new("/r/dc-westus/p3")
        );
        assert_eq!(
            rebuild_path(root, "westus", 3),
            Path::new("/r/dc-westus/p3.rebuild")
        );
        assert_eq!(
            stale_path(root, "westus", 3),
            Path::new("/r/dc-westus/p3.stale")
        );
        assert_eq!(replica_dir("westus", 3), "dc-westus/p3");
        assert!(is_datacenter_dir("dc-westus") && !is_datacenter_dir("backups"));
    }
}
