//! The cluster root on disk, spelled in one place (docs/design.md, "Cluster root"):
//! `dc-<name>/` per datacenter, `dc-<name>/p<N>/` per replica, and the folders a rebuild
//! and a re-seed leave beside a replica.

use std::path::{Path, PathBuf};

use super::ReplicaId;

const DATACENTER_PREFIX: &str = "dc-";

/// A datacenter's folder: `ROOT/dc-<name>`.
pub fn datacenter_path(root: &Path, datacenter: &str) -> PathBuf {
    root.join(format!("{DATACENTER_PREFIX}{datacenter}"))
}

/// Whether a file name in the cluster root is a datacenter's folder.
pub fn is_datacenter_dir(name: &str) -> bool {
    name.starts_with(DATACENTER_PREFIX)
}

/// One replica's folder, relative to the cluster root: `dc-<name>/p<N>` (also its name in messages).
pub fn replica_dir(id: &ReplicaId) -> String {
    format!("{DATACENTER_PREFIX}{}/p{}", id.datacenter, id.partition)
}

/// One replica's folder: `ROOT/dc-<name>/p<N>`.
pub fn replica_path(root: &Path, id: &ReplicaId) -> PathBuf {
    datacenter_path(root, &id.datacenter).join(format!("p{}", id.partition))
}

/// A rebuild in progress (or interrupted) leaves this folder beside the replica's.
pub fn rebuild_path(root: &Path, id: &ReplicaId) -> PathBuf {
    replica_path(root, id).with_extension("rebuild")
}

/// Where a replica behind the retained log is moved aside while it is re-seeded.
pub fn stale_path(root: &Path, id: &ReplicaId) -> PathBuf {
    replica_path(root, id).with_extension("stale")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_live_in_their_datacenters_folder() {
        let root = Path::new("/r");
        let id = ReplicaId::new("westus", 3);
        assert_eq!(replica_path(root, &id), Path::new("/r/dc-westus/p3"));
        assert_eq!(rebuild_path(root, &id), Path::new("/r/dc-westus/p3.rebuild"));
        assert_eq!(stale_path(root, &id), Path::new("/r/dc-westus/p3.stale"));
        assert_eq!(replica_dir(&id), "dc-westus/p3");
        assert_eq!(id.to_string(), "dc-westus/p3");
        assert!(is_datacenter_dir("dc-westus") && !is_datacenter_dir("backups"));
    }
}
