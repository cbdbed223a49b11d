//! What the engine's integration tests share: a three-datacenter cluster in a fresh folder.
#![allow(clippy::unwrap_used, dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use engine::cluster::{Cluster, ClusterOptions};
use engine::topology::{parse_datacenter, TenantPlacement};

pub const DCS: [&str; 3] = [
    "westus@37.4,-122.1",
    "eastus@37.4,-79.4",
    "westeurope@52.4,4.9",
];
pub const NAMES: [&str; 3] = ["westus", "eastus", "westeurope"];

pub struct Fixture {
    /// The folder holding the cluster root; removed when dropped.
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub cluster: Cluster,
    /// Tenant `t{p}` on partition p: (tenant ID, partition).
    pub tenants: Vec<(String, u32)>,
}

/// `DCS` with `partitions` partitions, a tenant on each, opened with a 5 s lock timeout
/// and `failpoint`.
pub fn cluster(partitions: u32, failpoint: Option<&str>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("c");
    Cluster::init(
        &root,
        DCS.iter().map(|s| parse_datacenter(s).unwrap()).collect(),
        partitions,
    )
    .unwrap();
    let mut cluster = Cluster::open(
        &root,
        ClusterOptions {
            lock_timeout: Duration::from_secs(5),
            failpoint: failpoint.map(str::to_string),
            ..ClusterOptions::default()
        },
    )
    .unwrap();
    let mut tenants = Vec::new();
    for p in 0..partitions {
        let id = uuid::Uuid::new_v4().to_string();
        cluster
            .update_topology(|t| {
                t.tenants.insert(
                    format!("t{p}"),
                    TenantPlacement {
                        id: id.clone(),
                        partition: p,
                    },
                );
                Ok(())
            })
            .unwrap();
        tenants.push((id, p));
    }
    Fixture {
        dir,
        root,
        cluster,
        tenants,
    }
}
