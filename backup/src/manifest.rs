//! The manifest packed last into every archive, and the sidecar kept beside it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the archive layout and manifest (docs/design.md, "Backup archive").
pub const ARCHIVE_FORMAT_VERSION: u32 = 1;
pub const MANIFEST_FILE: &str = "MANIFEST.json";
pub const TOPOLOGY_FILE: &str = "cluster.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The backup's ID: its UTC date, `YYYY-MM-DD`.
    pub id: String,
    pub cluster_id: String,
    /// UTC time the backup was taken, RFC 3339.
    pub created_at: String,
    pub partitions: Vec<PartitionEntry>,
    /// Every other file of the archive by its path in the archive.
    pub files: BTreeMap<String, FileEntry>,
    /// Each partition's audit chain head in its checkpoint, signed with the cluster's key:
    /// anchors outside the data (`dirctl audit verify --backups DIR` checks the chains
    /// against them). Absent when the backup could not sign (no key where it ran).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub audit_anchors: BTreeMap<u32, engine::audit::Anchor>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartitionEntry {
    pub id: u32,
    /// The checkpoint is consistent at this (term, lsn).
    pub term: u64,
    pub lsn: u64,
    /// The datacenter whose replica was checkpointed.
    pub source: String,
    /// Keys by kind: objects, memberships, tenants, tombstones.
    pub counts: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub bytes: u64,
    pub sha256: String,
}

/// `<id>.json` beside the archive: the manifest (for `list`, `health`, `prune` without
/// decompressing) and the archive's own size and SHA-256.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sidecar {
    pub manifest: Manifest,
    pub archive_bytes: u64,
    pub archive_sha256: String,
}
