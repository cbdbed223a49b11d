//! The embedded cluster: replicas opened directly under the cluster root, one module per
//! mechanism of DESIGN.md:
//!
//! - `holds`: holding replicas (exclusive, in `ReplicaId` order) for one command;
//! - `write_path`: the primary's write and the shipping to the sync standby and the
//!   session's secondary; `commit`: commit or cut after the answers, settling a reopened
//!   primary, fencing; `standby`: re-designating an unreachable sync standby;
//! - `gateway`: the read path (routing, the route cache, pulling up to a session's token);
//! - `sync`: `dirctl sync` (catch-up is `crate::catch_up`) and checkpoints;
//!   `reseed`: a replica re-seeded from a checkpoint; `retention`: log pruning;
//! - `status` and `init` (the on-disk layout of the cluster root is `crate::layout`).
//!
//! The decisions are pure functions in `crate::protocol`; these modules gather the facts
//! and carry the decisions out. Only `Cluster`'s own modules touch its fields.

mod commit;
mod gateway;
mod held;
mod holds;
mod init;
mod reseed;
mod retention;
mod scrub;
mod standby;
mod status;
mod sync;
mod write_path;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use crate::catch_up::CatchUp;
pub use gateway::ServedBy;
pub use held::{Held, Opener, Shared};
pub use scrub::{ScrubReport, ScrubResult};
pub use status::{Health, ReplicaStatus, Role};
pub use sync::SyncReport;

use crate::clock::Clock;
use crate::error::Result;
use crate::layout;
use crate::replica::{Access, Replica};
use crate::request::Note;
use crate::shipping::Shipper;
use crate::topology::{ControlPlane, FileControlPlane, Topology};

#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// How long to wait for another process's hold on a replica.
    pub lock_timeout: Duration,
    pub clock: Clock,
    /// Where the caller is, for nearest-datacenter reads.
    pub region: Option<String>,
    /// Tests only (cargo feature `failpoints`): `crash-after-primary-append` kills the
    /// process (abort) once an entry is durable on the primary and before it is shipped,
    /// leaving an unacknowledged tail; `vanish-after-primary-append` is its in-process
    /// stand-in; `standby-fails-from-lsn:N` makes the sync standby refuse entries from lsn N on.
    #[cfg(feature = "failpoints")]
    pub failpoint: Option<String>,
    /// Log retention: entries every reachable replica holds are pruned, keeping this many.
    pub retain_log_entries: u64,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            lock_timeout: crate::topology::DEFAULT_LOCK_TIMEOUT,
            clock: Clock::system(),
            region: None,
            #[cfg(feature = "failpoints")]
            failpoint: None,
            retain_log_entries: 100_000,
        }
    }
}

/// Where a backup's checkpoints come from: the cluster's folders, or its servers.
pub trait Checkpoints {
    /// The control plane the checkpoints are taken under.
    fn topology(&self) -> Topology;
    /// A checkpoint of `partition` at its commit lsn, made in the new folder `dest`: the
    /// position, and the datacenter whose replica it was taken from.
    fn checkpoint_partition(
        &mut self,
        partition: u32,
        dest: &Path,
    ) -> Result<(crate::log::Position, String)>;
}

impl Checkpoints for Cluster {
    fn topology(&self) -> Topology {
        self.topology.clone()
    }

    fn checkpoint_partition(
        &mut self,
        partition: u32,
        dest: &Path,
    ) -> Result<(crate::log::Position, String)> {
        Cluster::checkpoint_partition(self, partition, dest)
    }
}

impl Drop for Cluster {
    /// Commit lsns noted in memory reach the primaries' `meta` before the replicas close.
    fn drop(&mut self) {
        for r in self.held.values() {
            let _ = r.persist_commit();
        }
    }
}

/// Names one replica; ordered so that every process takes replica holds in the same order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaId {
    pub datacenter: String,
    pub partition: u32,
}

impl ReplicaId {
    pub fn new(datacenter: &str, partition: u32) -> ReplicaId {
        ReplicaId {
            datacenter: datacenter.to_string(),
            partition,
        }
    }

    /// Its folder under the cluster root (`layout`).
    pub fn path(&self, root: &Path) -> PathBuf {
        layout::replica_path(root, &self.datacenter, self.partition)
    }

    /// The folder a rebuild of it builds in, beside its own.
    pub fn rebuild_path(&self, root: &Path) -> PathBuf {
        layout::rebuild_path(root, &self.datacenter, self.partition)
    }
}

/// Replica `id`'s folder under the cluster root `root`.
pub fn replica_path(root: &Path, id: &ReplicaId) -> PathBuf {
    id.path(root)
}

impl std::fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&layout::replica_dir(&self.datacenter, self.partition))
    }
}

pub struct Cluster {
    root: PathBuf,
    control: Box<dyn ControlPlane>,
    topology: Topology,
    options: ClusterOptions,
    held: BTreeMap<ReplicaId, Arc<dyn Held>>,
    /// The server mode's way of opening replicas (`held`); none in the embedded mode.
    opener: Option<Arc<dyn Opener>>,
    /// Threads that ship entries to the sync standby and the session's secondary while this
    /// thread writes the primary (spawning a thread per write costs about 60 µs here).
    shippers: Option<[Shipper; 2]>,
    /// The gateway's last routing decision per (partition, preferred datacenter): later reads
    /// go straight to that replica while it is held and the topology is unchanged.
    route: Vec<(u32, Option<String>, ReplicaId)>,
    /// What the user should be told of what this handle did on its own (a sync standby
    /// re-designated), oldest first; the client takes them with its own.
    notes: Vec<Note>,
    /// The sync standby this handle's last write committed on, and (term, lsn) it holds
    /// since: while that same held replica is the standby and the primary's commit lsn has
    /// not moved, the next write need not ask the standby where it is (a network round trip
    /// in the server mode). Only the primary's writer writes a sync standby.
    standby_level: Option<(std::sync::Weak<dyn Held>, u64, u64)>,
}

impl Cluster {
    pub fn open(root: &Path, options: ClusterOptions) -> Result<Cluster> {
        let control = FileControlPlane::open(root)?.with_lock_timeout(options.lock_timeout);
        Cluster::open_with(root, Box::new(control), options)
    }

    /// A cluster whose replicas are under `root` and whose topology `control` keeps.
    pub fn open_with(
        root: &Path,
        control: Box<dyn ControlPlane>,
        options: ClusterOptions,
    ) -> Result<Cluster> {
        let topology = control.load()?;
        Ok(Cluster {
            root: root.to_path_buf(),
            control,
            topology,
            options,
            held: BTreeMap::new(),
            opener: None,
            shippers: None,
            route: Vec::new(),
            notes: Vec::new(),
            standby_level: None,
        })
    }

    /// This handle opens replicas through `opener` (the server mode) before the cluster root.
    pub fn with_opener(mut self, opener: Arc<dyn Opener>) -> Cluster {
        self.opener = Some(opener);
        self
    }

    /// What the user should be told since the last call, oldest first.
    pub fn take_notes(&mut self) -> Vec<Note> {
        std::mem::take(&mut self.notes)
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    pub fn clock(&self) -> Clock {
        self.options.clock
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Changes the control plane and keeps the new topology.
    pub fn update_topology(
        &mut self,
        mut change: impl FnMut(&mut Topology) -> Result<()>,
    ) -> Result<&Topology> {
        let t = self.control.update(&mut change)?;
        self.set_topology(t);
        Ok(&self.topology)
    }

    /// Reads the control plane again and keeps what it holds.
    pub fn reload_topology(&mut self) -> Result<&Topology> {
        let t = self.control.load()?;
        self.set_topology(t);
        Ok(&self.topology)
    }

    /// The control plane if it changed since this handle last read it, now kept.
    pub fn reload_if_changed(&mut self) -> Result<Option<&Topology>> {
        match self.control.reload_if_changed()? {
            Some(t) => {
                self.set_topology(t);
                Ok(Some(&self.topology))
            }
            None => Ok(None),
        }
    }

    /// The one place the topology this handle acts on changes: the gateway's cached routes
    /// were decided on the old one and go with it.
    pub(super) fn set_topology(&mut self, topology: Topology) {
        self.topology = topology;
        self.route.clear();
    }

    /// Sets or clears the failpoint (crash tests).
    #[cfg(feature = "failpoints")]
    pub fn set_failpoint(&mut self, failpoint: Option<&str>) {
        self.options.failpoint = failpoint.map(str::to_string);
    }

    /// `answer` on the replica of `partition` in datacenter `dc`, held for reads (nothing is
    /// pulled or cut).
    pub fn at_replica<T>(
        &mut self,
        partition: u32,
        dc: &str,
        answer: impl Fn(&Replica) -> Result<T>,
    ) -> Result<T> {
        let id = ReplicaId::new(dc, partition);
        if let Some(e) = self
            .hold_for(&[id.clone()].into(), Access::Read)
            .remove(&id)
        {
            return Err(e);
        }
        answer(self.replica(&id)?)
    }

    /// `answer` on every replica of `partition`, each held for reads (nothing is pulled or
    /// cut): per datacenter, its answer, or why it could not be held.
    pub fn at_every_replica<T>(
        &mut self,
        partition: u32,
        answer: impl Fn(&Replica) -> Result<T>,
    ) -> Result<Vec<(String, Result<T>)>> {
        let ids = self.replica_ids(partition);
        let mut failed = self.hold_for(&ids, Access::Read);
        let mut out = Vec::new();
        for id in ids {
            // A replica on another server (the server mode) answers there, not here.
            let got = match failed.remove(&id) {
                Some(e) => Err(e),
                None => self.replica(&id).and_then(&answer),
            };
            out.push((id.datacenter, got));
        }
        Ok(out)
    }
}
