//! `dirctl init`: a new cluster root, every replica created, then `cluster.json`.

use std::path::Path;

use super::{Cluster, ReplicaId};
use crate::error::{Error, Result};
use crate::layout;
use crate::replica::{Identity, Replica};
use crate::topology::{ControlPlane, Datacenter, FileControlPlane, Topology, CLUSTER_FILE};

/// Present in a cluster root while `init` builds it (see `Cluster::init`).
const INIT_MARKER: &str = "init-in-progress";

impl Cluster {
    /// Creates a new cluster root in place (it may be a mount point, or a folder an operator
    /// made with its owner and mode): a marker file first, then every replica, `cluster.json`,
    /// and the marker removed last. A root holding the marker and no `cluster.json` is what an
    /// interrupted init left: a new init clears it and starts again.
    pub fn init(root: &Path, datacenters: Vec<Datacenter>, partitions: u32) -> Result<Topology> {
        Cluster::init_with(root, &FileControlPlane::at(root), datacenters, partitions)
    }

    /// `init` with the topology kept by `control` (etcd, say) instead of `root`'s file; the
    /// replicas are made under `root` all the same. A control plane that holds a cluster
    /// already is refused before anything is made.
    pub fn init_with(
        root: &Path,
        control: &dyn ControlPlane,
        datacenters: Vec<Datacenter>,
        partitions: u32,
    ) -> Result<Topology> {
        let topology = Topology::new(uuid::Uuid::new_v4().to_string(), datacenters, partitions)?;
        if root.join(CLUSTER_FILE).exists() || control.load().is_ok() {
            return Err(Error::Conflict(format!(
                "{} already holds a cluster; choose another folder",
                root.display()
            )));
        }
        let marker = root.join(INIT_MARKER);
        if root.exists() && !marker.exists() {
            let mut entries = std::fs::read_dir(root)
                .map_err(|e| Error::io(format!("read {}", root.display()), e))?;
            if entries.next().is_some() {
                return Err(Error::Conflict(format!(
                    "{} is not empty but holds no {CLUSTER_FILE}; a cluster root must be a new or empty folder (if a cluster's {CLUSTER_FILE} was removed, its replicas are still there: restore it from a backup, `dirctl backup restore --to`)",
                    root.display()
                )));
            }
        }
        std::fs::create_dir_all(root)
            .map_err(|e| Error::io(format!("create cluster root {}", root.display()), e))?;
        // The marker is locked for the whole init: a second init at once is refused, and a
        // marker nobody holds is a killed init's.
        let lock = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&marker)
            .map_err(|e| Error::io(format!("create {}", marker.display()), e))?;
        if lock.try_lock().is_err() {
            return Err(Error::Conflict(format!(
                "another dirctl init is building a cluster in {}",
                root.display()
            )));
        }
        if root.join(CLUSTER_FILE).exists() {
            // Another init finished meanwhile: the marker this one opened is not its own.
            let _ = std::fs::remove_file(&marker);
            return Err(Error::Conflict(format!(
                "{} already holds a cluster; choose another folder",
                root.display()
            )));
        }
        // What a killed init left: datacenter folders whose replicas hold nothing yet. Anything
        // else (a backups folder, say) means this is not only a killed init's: refuse.
        let left: Vec<_> = std::fs::read_dir(root)
            .map_err(|e| Error::io(format!("read {}", root.display()), e))?
            .collect::<std::io::Result<_>>()
            .map_err(|e| Error::io(format!("read {}", root.display()), e))?;
        if let Some(other) = left.iter().find(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            !(name == INIT_MARKER
                || layout::is_datacenter_dir(&name)
                || name == "cluster.lock"
                || name == "cluster.tmp")
        }) {
            return Err(Error::Conflict(format!(
                "{} holds {} beside an interrupted init's {INIT_MARKER}; move what you want to keep, then remove {INIT_MARKER} or choose another folder",
                root.display(),
                other.file_name().to_string_lossy()
            )));
        }
        for e in left {
            if e.file_name() == INIT_MARKER {
                continue;
            }
            let path = e.path();
            let gone = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            gone.map_err(|err| Error::io(format!("remove {}", path.display()), err))?;
        }
        crate::replica::sync_dir(root)?;
        for dc in &topology.datacenters {
            for p in &topology.partitions {
                let id = ReplicaId::new(&dc.name, p.id);
                let identity = Identity {
                    cluster_id: topology.cluster_id.clone(),
                    datacenter: dc.name.clone(),
                    partition: p.id,
                };
                Replica::create(&id.path(root), &identity)?;
            }
        }
        control.create(&topology)?;
        std::fs::remove_file(&marker)
            .map_err(|e| Error::io(format!("remove {}", marker.display()), e))?;
        crate::replica::sync_dir(root)?;
        Ok(topology)
    }
}
