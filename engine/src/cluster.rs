//! The embedded cluster: replicas opened directly under the cluster root.
//!
//! Holds the write path (primary and sync standby in parallel, cut on failure),
//! the read path (nearest healthy secondary, pulling up to a session's token),
//! catch-up (`sync`), status and init.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::clock::Clock;
use crate::directory::{Overlay, Store};
use crate::error::{Error, Result};
use crate::log::{agreement_point, Entry, Op, Position};
use crate::replica::{Access, Durability, Identity, Replica};
use crate::session::Token;
use crate::topology::{
    nearest, ControlPlane, Datacenter, FileControlPlane, Location, Partition, Topology,
    CLUSTER_FILE,
};

/// Entries shipped per synced batch during catch-up.
const CATCH_UP_BATCH_ENTRIES: usize = 512;

#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// How long to wait for another process's hold on a replica.
    pub lock_timeout: Duration,
    pub clock: Clock,
    /// Where the caller is, for nearest-datacenter reads.
    pub region: Option<String>,
    /// Crash tests: `crash-after-primary-append` kills the process (abort) once an entry is
    /// durable on the primary and before it is shipped, leaving an unacknowledged tail.
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
            failpoint: None,
            retain_log_entries: 100_000,
        }
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

/// A thread that appends shipped entries to a replica, so that the primary's own synced
/// write runs at the same time.
struct Shipper {
    jobs: std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>,
}

impl Shipper {
    fn start() -> Shipper {
        let (jobs, rx) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        std::thread::spawn(move || {
            for job in rx {
                job();
            }
        });
        Shipper { jobs }
    }

    /// Appends `entries` (synced) to `replica` on the shipper's thread; the answer comes on the receiver.
    fn ship(
        &self,
        replica: Arc<Replica>,
        entries: Arc<[Entry]>,
        encoded: Arc<[Vec<u8>]>,
    ) -> std::sync::mpsc::Receiver<Result<()>> {
        let (tx, rx) = std::sync::mpsc::channel();
        let job = Box::new(move || {
            let r = replica.append_encoded(&entries, &encoded, Durability::Synced);
            // Let go of the replica before answering: the caller may release and reopen it.
            drop(replica);
            let _ = tx.send(r);
        });
        // A dead shipper drops the job, and with it the sender: the receiver then reports it.
        let _ = self.jobs.send(job);
        rx
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
}

impl std::fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "dc-{}/p{}", self.datacenter, self.partition)
    }
}

/// Which replica answered a read, and where it stood.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServedBy {
    pub datacenter: String,
    pub partition: u32,
    pub term: u64,
    pub lsn: u64,
    /// Entries pulled from the primary first, to honour the session's token.
    pub pulled_entries: u64,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    pub partition: u32,
    pub datacenter: String,
    pub role: &'static str,
    /// The partition's current term (control plane).
    pub partition_term: u64,
    /// The term of this replica's last entry.
    pub term: Option<u64>,
    pub last_lsn: Option<u64>,
    pub lag_entries: Option<u64>,
    pub health: String,
}

/// What catching a secondary up did: entries shipped, and entries cut off because no
/// primary committed them (a fenced primary's tail, a crashed writer's leftovers).
#[derive(Clone, Debug, Default, Serialize)]
pub struct CatchUp {
    pub shipped: u64,
    pub cut: Vec<Position>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncReport {
    pub partition: u32,
    pub datacenter: String,
    pub shipped_entries: u64,
    /// Entries this replica held that no primary committed, now cut off, as (term, lsn).
    pub cut_entries: Vec<Position>,
    pub lsn: Option<u64>,
    pub error: Option<String>,
    /// The replica was behind the retained log and was re-seeded from a checkpoint.
    pub reseeded: bool,
}

pub struct Cluster {
    pub(crate) root: PathBuf,
    pub(crate) control: FileControlPlane,
    pub(crate) topology: Topology,
    pub(crate) options: ClusterOptions,
    pub(crate) held: BTreeMap<ReplicaId, Arc<Replica>>,
    /// Threads that ship entries to the sync standby and the session's secondary while this
    /// thread writes the primary (spawning a thread per write costs about 60 µs here).
    shippers: Option<[Shipper; 2]>,
    /// The gateway's last routing decision per (partition, preferred datacenter): later reads
    /// go straight to that replica while it is held and the topology is unchanged.
    route: Vec<(u32, Option<String>, ReplicaId)>,
}

pub fn replica_path(root: &Path, id: &ReplicaId) -> PathBuf {
    root.join(format!("dc-{}", id.datacenter))
        .join(format!("p{}", id.partition))
}

/// Present in a cluster root while `init` builds it (see `Cluster::init`).
const INIT_MARKER: &str = "init-in-progress";

impl Cluster {
    /// Creates a new cluster root in place (it may be a mount point, or a folder an operator
    /// made with its owner and mode): a marker file first, then every replica, `cluster.json`,
    /// and the marker removed last. A root holding the marker and no `cluster.json` is what an
    /// interrupted init left: a new init clears it and starts again.
    pub fn init(root: &Path, datacenters: Vec<Datacenter>, partitions: u32) -> Result<Topology> {
        let topology = Topology::new(uuid::Uuid::new_v4().to_string(), datacenters, partitions)?;
        if root.join(CLUSTER_FILE).exists() {
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
                || name.starts_with("dc-")
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
                Replica::create(&replica_path(root, &id), &identity)?;
            }
        }
        FileControlPlane::create(root, &topology)?;
        std::fs::remove_file(&marker)
            .map_err(|e| Error::io(format!("remove {}", marker.display()), e))?;
        crate::replica::sync_dir(root)?;
        Ok(topology)
    }

    pub fn open(root: &Path, options: ClusterOptions) -> Result<Cluster> {
        let control = FileControlPlane::open(root)?.with_lock_timeout(options.lock_timeout);
        let topology = control.load()?;
        Ok(Cluster {
            root: root.to_path_buf(),
            control,
            topology,
            options,
            held: BTreeMap::new(),
            shippers: None,
            route: Vec::new(),
        })
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
        self.topology = self.control.update(&mut change)?;
        self.route.clear();
        Ok(&self.topology)
    }

    /// Sets or clears the failpoint (crash tests).
    pub fn set_failpoint(&mut self, failpoint: Option<&str>) {
        self.options.failpoint = failpoint.map(str::to_string);
    }

    /// Releases every replica this handle holds.
    pub fn release_all(&mut self) {
        self.route.clear();
        for r in self.held.values() {
            let _ = r.persist_commit();
            r.stop_background_work();
        }
        self.held.clear();
    }

    /// Holds every replica in `want`, opening them in `ReplicaId` order so that two
    /// processes never wait on each other. Returns the replicas that could not be held.
    pub(crate) fn hold(&mut self, want: &BTreeSet<ReplicaId>) -> BTreeMap<ReplicaId, Error> {
        self.hold_for(want, Access::Write)
    }

    /// `hold`, for `access`: a replica held for reads is reopened for writes (keeping its
    /// lock) when writes are wanted.
    pub(crate) fn hold_for(
        &mut self,
        want: &BTreeSet<ReplicaId>,
        access: Access,
    ) -> BTreeMap<ReplicaId, Error> {
        let mut failed = BTreeMap::new();
        if access == Access::Write {
            let readers: Vec<ReplicaId> = want
                .iter()
                .filter(|id| {
                    self.held
                        .get(*id)
                        .is_some_and(|r| r.access() == Access::Read)
                })
                .cloned()
                .collect();
            for id in readers {
                let Some(r) = self.held.remove(&id) else {
                    continue;
                };
                // Nothing else holds a clone between commands (shipping threads let go of
                // theirs before they answer). A failed reopen has let go of the lock: the
                // replica is opened again below, in lock order.
                match Arc::try_unwrap(r) {
                    Ok(r) => {
                        if let Ok(w) = r.reopen_for_writes() {
                            self.held.insert(id, Arc::new(w));
                        }
                    }
                    Err(shared) => {
                        self.held.insert(id.clone(), shared);
                        failed.insert(id, Error::Storage("held for reads and still in use".into()));
                    }
                }
            }
        }
        let Some(first_missing) = want.iter().find(|id| !self.held.contains_key(*id)).cloned()
        else {
            return failed;
        };
        // Release holds that sort after the first replica still to open.
        self.held.retain(|id, r| {
            let keep = *id < first_missing;
            if !keep {
                let _ = r.persist_commit();
                r.stop_background_work();
            }
            keep
        });
        for id in want.iter().filter(|id| **id >= first_missing) {
            match Replica::open_for(
                &replica_path(&self.root, id),
                &id.to_string(),
                self.options.lock_timeout,
                access,
            ) {
                Ok(r) => {
                    self.held.insert(id.clone(), Arc::new(r));
                    failed.remove(id);
                }
                Err(e) => {
                    failed.insert(id.clone(), e);
                }
            }
        }
        failed
    }

    pub(crate) fn replica(&self, id: &ReplicaId) -> Result<&Replica> {
        self.held
            .get(id)
            .map(Arc::as_ref)
            .ok_or_else(|| Error::Unavailable(format!("replica {id} is not open")))
    }

    fn location_of(&self, region: &str) -> Result<Location> {
        self.topology.region(region)
    }

    /// Where reads of `partition` go, best first: the preferred datacenter (a session's),
    /// then the healthy secondaries by great-circle distance from the caller's region, then
    /// the primary when none of them can answer (it serves only what is committed: `read`).
    /// Drained datacenters are left out.
    pub fn read_order(&self, partition: u32, prefer: Option<&str>) -> Result<Vec<String>> {
        let origin = match (prefer, &self.options.region) {
            (Some(dc), _) => Some(self.location_of(dc)?),
            (None, Some(region)) => Some(self.location_of(region)?),
            (None, None) => None,
        };
        let mut secs: Vec<&Datacenter> = self
            .topology
            .secondaries(partition)?
            .into_iter()
            .filter(|d| !d.drained)
            .collect();
        if let Some(o) = origin {
            secs.sort_by(|a, b| {
                a.location
                    .distance_km(&o)
                    .total_cmp(&b.location.distance_km(&o))
            });
        }
        let primary = &self.topology.partition(partition)?.primary;
        let last_resort = self
            .topology
            .datacenters
            .iter()
            .filter(|d| d.name == *primary && !d.drained);
        Ok(secs
            .into_iter()
            .chain(last_resort)
            .map(|d| d.name.clone())
            .collect())
    }

    /// The datacenter a session with affinity `session_dc` reads `partition` from.
    pub fn session_read_dc(&self, partition: u32, session_dc: &str) -> Result<Option<String>> {
        Ok(self
            .read_order(partition, Some(session_dc))?
            .into_iter()
            .next())
    }

    /// The datacenter nearest the caller's region (a session's affinity when it starts).
    pub fn nearest_datacenter(&self) -> Result<String> {
        let origin = match &self.options.region {
            Some(r) => self.location_of(r)?,
            None => self.topology.datacenters[0].location,
        };
        nearest(
            &origin,
            self.topology.datacenters.iter().filter(|d| !d.drained),
        )
        .or_else(|| self.topology.datacenters.first())
        .map(|d| d.name.clone())
        .ok_or_else(|| Error::Unavailable("the cluster has no datacenter".into()))
    }

    /// Settles entries a crashed writer left above the primary's commit lsn: those the sync
    /// standby holds are committed, the rest are cut off.
    pub(crate) fn resolve_primary(&mut self, p: &Partition) -> Result<()> {
        let primary = self.replica(&ReplicaId::new(&p.primary, p.id))?;
        let last = primary.last()?;
        if last.term > p.term {
            return Err(Error::Fenced(format!(
                "replica {} holds term {} above the control plane's term {} for partition {}",
                primary.name(),
                last.term,
                p.term,
                p.id
            )));
        }
        let commit = primary.commit_lsn()?;
        if last.lsn <= commit {
            return Ok(());
        }
        let standby = self.replica(&ReplicaId::new(&p.sync_standby, p.id)).map_err(|_| {
            Error::Unavailable(format!(
                "partition {} has entries above its commit lsn {commit} and its sync standby {} is unreachable to settle them",
                p.id, p.sync_standby
            ))
        })?;
        let mut settled = commit;
        while settled < last.lsn
            && standby
                .term_at(settled + 1)?
                .is_some_and(|t| Some(t) == primary.term_at(settled + 1).ok().flatten())
        {
            settled += 1;
        }
        primary.truncate_after(settled)?;
        primary.set_commit_lsn(settled, Durability::Synced)?;
        if settled < last.lsn {
            self.fence_cut(p, settled + 1)?;
        }
        Ok(())
    }

    /// Entries from `first_cut_lsn` on were cut off the primary without being committed:
    /// raise the term, starting there, so that a copy left on any other replica (same term,
    /// same lsn) reads as a fenced tail and is cut before it is served, shipped or promoted.
    /// Otherwise a later entry could reuse the (term, lsn) of the cut one.
    pub(crate) fn fence_cut(&mut self, p: &Partition, first_cut_lsn: u64) -> Result<()> {
        let before = p.clone();
        self.update_topology(|t| {
            let q = t.partitions.iter_mut().find(|q| q.id == before.id).ok_or_else(|| Error::NotFound(format!("no partition {}", before.id)))?;
            if *q != before {
                return Err(Error::Conflict(format!("partition {} changed while an uncommitted entry was cut; run the command again", before.id)));
            }
            q.term += 1;
            q.term_starts.push(crate::topology::TermStart { term: q.term, first_lsn: first_cut_lsn });
            Ok(())
        })?;
        Ok(())
    }

    /// After taking holds, the control plane decides: if `p` changed meanwhile (a failover,
    /// a re-designation), this handle takes the new topology and the caller must start again.
    pub(crate) fn recheck(&mut self, p: &Partition) -> Result<()> {
        if let Some(fresh) = self.control.reload_if_changed()? {
            let now = fresh.partition(p.id)?.clone();
            self.topology = fresh;
            self.route.clear();
            if now != *p {
                return Err(Error::Conflict(format!(
                    "partition {} changed while this command waited for its replicas (now primary {}, term {}); run it again",
                    p.id, now.primary, now.term
                )));
            }
        }
        Ok(())
    }

    /// The highest lsn at which `secondary` holds the same entry as the primary (up to `commit`).
    fn agreement(primary: &Replica, secondary: &Replica, commit: u64) -> Result<u64> {
        agreement_point(
            secondary.last()?,
            |l| secondary.term_at(l),
            |l| {
                if l <= commit {
                    primary.term_at(l)
                } else {
                    Ok(None)
                }
            },
        )
    }

    /// Whether catching `secondary` up would need entries the primary pruned.
    fn behind_retained_log(primary: &Replica, secondary: &Replica, commit: u64) -> Result<bool> {
        let Some(first) = primary.first_log_lsn()? else {
            return Ok(false);
        };
        let agree = Self::agreement(primary, secondary, commit)?;
        Ok(agree < commit && first > agree + 1)
    }

    /// Brings `secondary` level with the primary's commit lsn: cuts what diverged, ships the rest.
    pub(crate) fn catch_up(
        primary: &Replica,
        secondary: &Replica,
        commit: u64,
        term: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<CatchUp> {
        let last = secondary.last()?;
        let primary_last = primary.last()?;
        if last == primary_last && last.lsn == commit {
            return Ok(CatchUp::default());
        }
        // A backstop against a stale view of the control plane: never cut entries of a term
        // newer than the partition's term there. (Not the primary's last entry's term: a
        // primary promoted with `--accept-data-loss` may hold no entry of its own term yet,
        // while the replicas that come back hold the lost entries of the term before it.)
        if last.term > term {
            return Err(Error::Fenced(format!(
                "{} holds term {} above partition term {} that names {} primary: the control plane read is stale; run the command again",
                secondary.name(),
                last.term,
                term,
                primary.name()
            )));
        }
        let agree = Self::agreement(primary, secondary, commit)?;
        // Entries the primary no longer retains: re-seed instead (checked before cutting
        // anything, since a cut may itself need entries this replica pruned).
        if agree < commit
            && primary
                .first_log_lsn()?
                .is_some_and(|first| first > agree + 1)
        {
            return Err(Error::Unavailable(format!(
                "{} is behind the primary's retained log (needs lsn {}); `dirctl sync` re-seeds it from a checkpoint",
                secondary.name(),
                agree + 1
            )));
        }
        let mut cut = Vec::new();
        if agree < last.lsn {
            cut = secondary
                .truncate_after(agree)?
                .iter()
                .map(|e| e.position())
                .collect();
        }
        let mut shipped = 0;
        let mut from = agree + 1;
        while from <= commit {
            let to = (from + CATCH_UP_BATCH_ENTRIES as u64 - 1).min(commit);
            let batch = primary.entries(from, to)?;
            secondary.append(&batch, Durability::Synced)?;
            shipped += batch.len() as u64;
            progress(batch.len() as u64);
            from = to + 1;
        }
        Ok(CatchUp { shipped, cut })
    }

    /// The replicated write path. `build` reads the primary's committed state and returns the
    /// ops of one log entry (many objects may share it: group commit). The entry is written,
    /// synced, on the primary and shipped to the sync standby (and the session's secondary)
    /// in parallel; it is acknowledged only when primary and standby both hold it durably.
    pub fn write<T>(
        &mut self,
        partition: u32,
        session_dc: Option<&str>,
        build: impl FnOnce(&Replica) -> Result<(Vec<Op>, T)>,
    ) -> Result<(T, Token)> {
        let p = self.topology.partition(partition)?.clone();
        let pid = ReplicaId::new(&p.primary, partition);
        let sid = ReplicaId::new(&p.sync_standby, partition);
        let session_id = match session_dc {
            Some(dc) => self
                .session_read_dc(partition, dc)?
                .filter(|d| *d != p.sync_standby && *d != p.primary)
                .map(|d| ReplicaId::new(&d, partition)),
            None => None,
        };
        let mut want: BTreeSet<ReplicaId> = [pid.clone(), sid.clone()].into();
        want.extend(session_id.clone());
        let failed = self.hold(&want);
        // A failover may have switched the partition while this process waited for the
        // replicas: the control plane, read under the hold, decides who may write.
        if let Some(fresh) = self.control.reload_if_changed()? {
            let changed = *fresh.partition(partition)? != p;
            self.topology = fresh;
            if changed {
                self.release_all();
                return self.write(partition, session_dc, build);
            }
        }
        if let Some(e) = failed.get(&pid) {
            return Err(Error::Unavailable(format!(
                "the primary of partition {partition} ({pid}) is unreachable, nothing was written: {e}; fail over with `dirctl failover --partition {partition} --emergency`"
            )));
        }
        if failed.contains_key(&sid) {
            // Re-designate: another secondary in another datacenter, brought level and
            // recorded in the control plane before any write is acknowledged again.
            self.redesignate_standby(partition)?;
            self.release_all();
            return self.write(partition, session_dc, build);
        }
        self.resolve_primary(&p)?;
        // Settling may have raised the term (fence_cut).
        let p = self.topology.partition(partition)?.clone();
        let primary = self.replica(&pid)?;
        let standby = self.replica(&sid)?;
        let commit = primary.commit_lsn()?;
        Self::catch_up(primary, standby, commit, p.term, &mut |_| {}).map_err(|e| {
            Error::Unavailable(format!("the sync standby {sid} cannot take writes, so no geo-durable commit is possible; nothing was written: {e}"))
        })?;
        // The session's secondary is best effort: its token makes later reads pull if it misses this write.
        let session = session_id
            .as_ref()
            .and_then(|id| self.held.get(id))
            .filter(|r| Self::catch_up(primary, r, commit, p.term, &mut |_| {}).is_ok())
            .cloned();
        let (ops, out) = build(primary)?;
        let token_dc = session
            .as_ref()
            .map(|r| r.identity().datacenter.clone())
            .unwrap_or_else(|| p.sync_standby.clone());
        if ops.is_empty() {
            return Ok((
                out,
                Token {
                    partition,
                    term: p.term,
                    lsn: commit,
                    datacenter: token_dc,
                },
            ));
        }
        let lsn = commit + 1;
        let entry = self.entry(p.term, lsn, ops);
        match self.options.failpoint.as_deref() {
            Some("crash-after-primary-append") => {
                primary.append(&entry, Durability::Synced)?;
                std::process::abort();
            }
            Some("vanish-after-primary-append") => {
                // In-process stand-in for the same crash: the entry stays on the primary
                // only, unsettled, and this handle lets go of every replica as a dead process would.
                primary.append(&entry, Durability::Synced)?;
                self.release_all();
                return Err(Error::OutcomeUnknown(
                    "failpoint vanish-after-primary-append".into(),
                ));
            }
            _ => {}
        }
        let standby_arc = self.held_arc(&sid)?;
        let encoded: Arc<[Vec<u8>]> = entry.iter().map(Entry::encode).collect();
        let st = self.ship_to_standby(standby_arc, entry.clone(), encoded.clone());
        let se = session
            .as_ref()
            .map(|r| self.shippers()[1].ship(r.clone(), entry.clone(), encoded.clone()));
        let on_primary = self
            .replica(&pid)?
            .append_encoded(&entry, &encoded, Durability::Synced);
        let on_standby = self.answer(st, "sync standby");
        let on_session = se.map(|h| self.answer(h, "session's secondary"));
        let session_took = matches!(on_session, Some(Ok(())));
        self.settle(
            &p,
            commit,
            on_primary,
            on_standby,
            session.as_deref().map(|r| (r, session_took)),
        )?;
        let token_dc = if session_took {
            token_dc
        } else {
            p.sync_standby.clone()
        };
        Ok((
            out,
            Token {
                partition,
                term: p.term,
                lsn,
                datacenter: token_dc,
            },
        ))
    }

    /// Writes a sequence of entries to one partition, each built (by `build`, on this thread)
    /// while the entry before it is being made durable on the primary and the sync standby
    /// (on their shipping threads): a bulk load's validation overlaps its writes. Each entry
    /// is built on the primary's state as it will be once the entry before it is applied.
    /// `committed` hears of each commit, in order. The first error stops it: the entries
    /// before are committed, the failed one is settled as `write` settles it (cut and
    /// fenced), and nothing after it is written. The first entry takes `write`'s path (with
    /// its settling, standby re-designation and catch-up); the session's secondary takes
    /// only that one, so later tokens name the sync standby's datacenter.
    pub fn write_pipelined<B, T>(
        &mut self,
        partition: u32,
        session_dc: Option<&str>,
        batches: impl IntoIterator<Item = B>,
        build: impl FnMut(&dyn Store, B) -> Result<(Vec<Op>, T)>,
        committed: impl FnMut(T, &Token),
    ) -> Result<()> {
        self.write_pipelined_at(partition, session_dc, None, batches, build, committed)
    }

    /// `write_pipelined` for batches whose ops were staged beforehand against the primary at
    /// lsn `staged_at`: if the primary has moved since (another writer came in while this
    /// process did not hold it), nothing is written (`Conflict`: stage again).
    pub fn write_pipelined_at<B, T>(
        &mut self,
        partition: u32,
        session_dc: Option<&str>,
        staged_at: Option<u64>,
        batches: impl IntoIterator<Item = B>,
        mut build: impl FnMut(&dyn Store, B) -> Result<(Vec<Op>, T)>,
        mut committed: impl FnMut(T, &Token),
    ) -> Result<()> {
        let mut batches = batches.into_iter();
        let Some(first) = batches.next() else {
            return Ok(());
        };
        // Built under the holds the rest of the batches keep.
        let (out, token) = self.write(partition, session_dc, |r| {
            if let Some(at) = staged_at {
                let last = r.last()?.lsn;
                if last != at {
                    return Err(Error::Conflict(format!(
                        "partition {partition} took other writes (lsn {at} to {last}) after these changes were checked; nothing was written, run it again"
                    )));
                }
            }
            build(r, first)
        })?;
        committed(out, &token);
        let p = self.topology.partition(partition)?.clone();
        let (primary, standby) = (
            self.held_arc(&ReplicaId::new(&p.primary, partition))?,
            self.held_arc(&ReplicaId::new(&p.sync_standby, partition))?,
        );
        let mut commit = primary.commit_lsn()?;
        let token = |lsn: u64| Token {
            partition,
            term: p.term,
            lsn,
            datacenter: p.sync_standby.clone(),
        };
        // The entry in flight: its answers from the primary and the standby, and what its
        // build returned.
        type Answer = std::sync::mpsc::Receiver<Result<()>>;
        let mut in_flight: Option<(Arc<[Entry]>, T, Answer, Answer)> = None;
        loop {
            let built = batches.next().map(|b| {
                let ops = in_flight.as_ref().map_or(&[][..], |f| &f.0[0].ops[..]);
                build(&Overlay::new(primary.as_ref(), ops), b)
            });
            if let Some((_, out, on_primary, on_standby)) = in_flight.take() {
                let on_primary = self.answer(on_primary, "primary");
                let on_standby = self.answer(on_standby, "sync standby");
                self.settle(&p, commit, on_primary, on_standby, None)?;
                commit += 1;
                committed(out, &token(commit));
            }
            let Some(built) = built else {
                return Ok(());
            };
            let (ops, out) = built?;
            if ops.is_empty() {
                committed(out, &token(commit));
                continue;
            }
            // As in `write`: the control plane, read under the holds, decides who may write.
            if let Some(fresh) = self.control.reload_if_changed()? {
                let changed = *fresh.partition(partition)? != p;
                self.topology = fresh;
                if changed {
                    return Err(Error::Unavailable(format!(
                        "partition {partition} changed (a failover?) while this process wrote to it: entries through lsn {commit} are committed, nothing after them was written"
                    )));
                }
            }
            let entry = self.entry(p.term, commit + 1, ops);
            let encoded: Arc<[Vec<u8>]> = entry.iter().map(Entry::encode).collect();
            let on_standby = self.ship_to_standby(standby.clone(), entry.clone(), encoded.clone());
            let on_primary = self.shippers()[1].ship(primary.clone(), entry.clone(), encoded);
            in_flight = Some((entry, out, on_primary, on_standby));
        }
    }

    /// A new entry, stamped with the clock, shared by the threads that ship it.
    fn entry(&self, term: u64, lsn: u64, ops: Vec<Op>) -> Arc<[Entry]> {
        Arc::from(vec![Entry {
            term,
            lsn,
            time_ms: self.options.clock.now_ms(),
            ops,
        }])
    }

    fn shippers(&mut self) -> &[Shipper; 2] {
        self.shippers
            .get_or_insert_with(|| [Shipper::start(), Shipper::start()])
    }

    /// Ships an entry to the sync standby (shipper 0). Failpoint `standby-fails-from-lsn:N`:
    /// from lsn N on, the standby answers with an error and writes nothing (for tests of
    /// settling, also in the middle of a pipelined write).
    fn ship_to_standby(
        &mut self,
        standby: Arc<Replica>,
        entries: Arc<[Entry]>,
        encoded: Arc<[Vec<u8>]>,
    ) -> std::sync::mpsc::Receiver<Result<()>> {
        let fail_from = self
            .options
            .failpoint
            .as_deref()
            .and_then(|f| f.strip_prefix("standby-fails-from-lsn:"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(n) = fail_from.filter(|n| entries.iter().any(|e| e.lsn >= *n)) {
            let (tx, rx) = std::sync::mpsc::channel();
            let _ = tx.send(Err(Error::Storage(format!(
                "failpoint standby-fails-from-lsn:{n}"
            ))));
            return rx;
        }
        self.shippers()[0].ship(standby, entries, encoded)
    }

    fn held_arc(&self, id: &ReplicaId) -> Result<Arc<Replica>> {
        self.held
            .get(id)
            .cloned()
            .ok_or_else(|| Error::Unavailable(format!("replica {id} is not open")))
    }

    /// A shipped entry's answer. A replica whose disk stalls must not hang the writer: past
    /// the lock timeout its write counts as failed (and is fenced if it lands later).
    fn answer(&self, rx: std::sync::mpsc::Receiver<Result<()>>, what: &str) -> Result<()> {
        let wait = self.options.lock_timeout;
        match rx.recv_timeout(wait) {
            Ok(r) => r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(Error::Storage(format!(
                "the {what} did not make the write durable within {} ms",
                wait.as_millis()
            ))),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                Err(Error::Storage(format!("the {what} shipping thread died")))
            }
        }
    }

    /// Settles the entry at `commit + 1` from its replicas' answers. Durable on the primary
    /// and the sync standby: committed (`Ok`). Otherwise it is cut off wherever it landed
    /// and fenced, and the error says whether anything may have been applied. `session` is
    /// the session's secondary, with whether it took the entry.
    fn settle(
        &mut self,
        p: &Partition,
        commit: u64,
        on_primary: Result<()>,
        on_standby: Result<()>,
        session: Option<(&Replica, bool)>,
    ) -> Result<()> {
        let lsn = commit + 1;
        let pid = ReplicaId::new(&p.primary, p.id);
        let sid = ReplicaId::new(&p.sync_standby, p.id);
        let primary = self.replica(&pid)?;
        let standby = self.replica(&sid)?;
        match (on_primary, on_standby) {
            (Ok(()), Ok(())) => {
                // Committed: durable in two datacenters. Recording the commit lsn can lag; a
                // reopened primary settles it again against the standby.
                let _ = primary.note_commit_lsn(lsn);
                Ok(())
            }
            (Ok(()), Err(standby_err)) => {
                // The session's secondary first, then the primary: a crash in between leaves
                // the entry on the primary, in doubt, where the next writer settles it.
                let mut cut = Ok(());
                if let Some((r, true)) = session {
                    cut = r.truncate_after(commit).map(|_| ());
                }
                let cut = cut.and_then(|()| primary.truncate_after(commit).map(|_| ()));
                // The standby may still hold a copy (its write failed, perhaps after the WAL):
                // a new term from this lsn on fences any such copy, so it is never served.
                let fenced = cut.and_then(|()| self.fence_cut(p, lsn));
                match fenced {
                    Ok(()) => Err(Error::Unavailable(format!(
                        "the sync standby {sid} failed to make the write durable, so it was cut off the primary and fenced everywhere; nothing was applied: {standby_err}"
                    ))),
                    Err(e) => Err(Error::OutcomeUnknown(format!("the sync standby {sid} failed ({standby_err}) and cutting the write off failed too ({e})"))),
                }
            }
            (Err(primary_err), _) => {
                let _ = standby.truncate_after(commit);
                if let Some((r, _)) = session {
                    let _ = r.truncate_after(commit);
                }
                let _ = self.fence_cut(p, lsn);
                Err(Error::OutcomeUnknown(format!(
                    "writing to the primary {pid} failed mid-commit: {primary_err}"
                )))
            }
        }
    }

    /// The read path: the preferred (session's) datacenter, else the nearest healthy secondary.
    /// With a token newer than the replica, the replica first pulls the missing entries. A
    /// token counts only for what the partition's history still holds of it
    /// (`Partition::kept_of_token`): writes a lossy failover or a restore undid are not waited for.
    pub fn read<T>(
        &mut self,
        partition: u32,
        prefer: Option<&str>,
        token: Option<&Token>,
        answer: impl Fn(&Replica) -> Result<T>,
    ) -> Result<(T, ServedBy)> {
        let need = match token {
            Some(t) => self
                .topology
                .partition(partition)?
                .kept_of_token(t.term, t.lsn),
            None => 0,
        };
        // Fast path: the replica this route chose last time, still held, level with the token.
        if let Some((_, _, id)) = self
            .route
            .iter()
            .find(|(p, d, _)| *p == partition && d.as_deref() == prefer)
        {
            if let (Some(r), Ok(p)) = (self.held.get(id), self.topology.partition(partition)) {
                let pos = r.last()?;
                let unsettled = id.datacenter == p.primary && pos.lsn > r.commit_lsn()?;
                if pos.lsn >= need && !p.diverged(pos) && !unsettled {
                    let value = named_not_found(answer(r), &id.datacenter, pos.lsn, &p.primary)?;
                    let served = ServedBy {
                        datacenter: id.datacenter.clone(),
                        partition,
                        term: pos.term,
                        lsn: pos.lsn,
                        pulled_entries: 0,
                    };
                    return Ok((value, served));
                }
            }
        }
        let p = self.topology.partition(partition)?.clone();
        let mut why = Vec::new();
        for dc in self
            .topology
            .datacenters
            .iter()
            .filter(|d| d.drained && d.name != p.primary)
        {
            why.push(format!("{}: drained", dc.name));
        }
        for dc in self.read_order(partition, prefer)? {
            let id = ReplicaId::new(&dc, partition);
            if let Some(e) = self
                .hold_for(&[id.clone()].into(), Access::Read)
                .remove(&id)
            {
                why.push(format!("{dc}: {e}"));
                continue;
            }
            let r = self.replica(&id)?;
            let mut pulled = 0;
            let last = r.last()?;
            // The primary, the last resort: entries above its commit lsn (a crashed writer's,
            // durable on it alone) are not facts yet and are never served.
            if dc == p.primary && last.lsn > r.commit_lsn()? {
                why.push(format!(
                    "{dc} (the primary): holds entries above its commit lsn that a crashed writer left, not yet settled; a write or `dirctl sync` settles them"
                ));
                continue;
            }
            // Behind the token, or holding a fenced primary's uncommitted tail: pull first.
            if last.lsn < need || p.diverged(last) {
                match self.pull(&p, &id) {
                    Ok(n) => pulled = n.shipped,
                    Err(e) => {
                        let state = if last.lsn < need {
                            "behind the session's token"
                        } else {
                            "holds a fenced primary's uncommitted tail"
                        };
                        why.push(format!(
                            "{dc}: {state} and cannot pull from the primary: {e}"
                        ));
                        continue;
                    }
                }
            }
            let r = self.replica(&id)?;
            let pos = r.last()?;
            if pos.lsn < need {
                why.push(format!(
                    "{dc}: at lsn {} after pulling, below the token's {need}",
                    pos.lsn
                ));
                continue;
            }
            let value = named_not_found(answer(r), &dc, pos.lsn, &p.primary)?;
            self.route
                .retain(|(q, d, _)| !(*q == partition && d.as_deref() == prefer));
            self.route.push((partition, prefer.map(str::to_string), id));
            return Ok((
                value,
                ServedBy {
                    datacenter: dc,
                    partition,
                    term: pos.term,
                    lsn: pos.lsn,
                    pulled_entries: pulled,
                },
            ));
        }
        Err(Error::Unavailable(format!(
            "no healthy replica of partition {partition} can answer ({})",
            why.join("; ")
        )))
    }

    /// Pulls the entries a secondary misses from the primary.
    fn pull(&mut self, p: &Partition, id: &ReplicaId) -> Result<CatchUp> {
        let pid = ReplicaId::new(&p.primary, p.id);
        let sid = ReplicaId::new(&p.sync_standby, p.id);
        let failed = self.hold(&[id.clone(), pid.clone(), sid].into());
        if let Some(e) = failed.get(id).or(failed.get(&pid)) {
            return Err(Error::Unavailable(e.to_string()));
        }
        self.recheck(p)
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        // Settling entries a crashed writer left needs the sync standby; without it, what is
        // at or below the commit lsn is still a fact and can be shipped.
        match self.resolve_primary(p) {
            Ok(()) | Err(Error::Unavailable(_)) => {}
            Err(e) => return Err(e),
        }
        let primary = self.replica(&pid)?;
        Self::catch_up(
            primary,
            self.replica(id)?,
            primary.commit_lsn()?,
            p.term,
            &mut |_| {},
        )
    }

    /// Every replica of a partition.
    pub(crate) fn replica_ids(&self, partition: u32) -> BTreeSet<ReplicaId> {
        self.topology
            .datacenters
            .iter()
            .map(|d| ReplicaId::new(&d.name, partition))
            .collect()
    }

    /// Holds every replica of `partition`; the primary must be among them.
    #[allow(clippy::type_complexity)]
    fn hold_partition(
        &mut self,
        partition: u32,
    ) -> Result<(
        Partition,
        BTreeSet<ReplicaId>,
        ReplicaId,
        BTreeMap<ReplicaId, Error>,
    )> {
        let (p, ids, failed) = loop {
            let p = self.topology.partition(partition)?.clone();
            let ids = self.replica_ids(partition);
            let failed = self.hold(&ids);
            match self.recheck(&p) {
                Ok(()) => break (p, ids, failed),
                // A failover happened while this process waited: take the replicas again.
                Err(Error::Conflict(_)) => self.release_all(),
                Err(e) => return Err(e),
            }
        };
        let pid = ReplicaId::new(&p.primary, partition);
        if let Some(e) = failed.get(&pid) {
            return Err(Error::Unavailable(format!(
                "the primary of partition {partition} ({pid}) is unreachable: {e}"
            )));
        }
        Ok((p, ids, pid, failed))
    }

    /// Entries the reachable secondaries of `partition` miss, in all.
    pub fn sync_plan(&mut self, partition: u32) -> Result<u64> {
        let (_, ids, pid, _) = self.hold_partition(partition)?;
        // Only an estimate for a progress bar: no settling here.
        let commit = self.replica(&pid)?.commit_lsn()?;
        let mut missing = 0;
        for id in ids.iter().filter(|id| **id != pid) {
            if let Ok(r) = self.replica(id) {
                missing += commit.saturating_sub(r.last()?.lsn);
            }
        }
        Ok(missing)
    }

    /// Brings every reachable secondary of `partition` level with the primary's commit lsn.
    pub fn sync(
        &mut self,
        partition: u32,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Vec<SyncReport>> {
        let (p, ids, pid, failed) = self.hold_partition(partition)?;
        if failed.contains_key(&ReplicaId::new(&p.sync_standby, partition)) {
            self.redesignate_standby(partition)?;
            return self.sync(partition, progress);
        }
        self.resolve_primary(&p)?;
        // Settling may have raised the term (fence_cut).
        let p = self.topology.partition(partition)?.clone();
        // Secondaries behind the retained log are re-seeded from a checkpoint.
        let mut reseeded = BTreeSet::new();
        for id in ids.iter().filter(|id| **id != pid) {
            let behind = match (self.held.get(id), self.held.get(&pid)) {
                (Some(r), Some(primary)) => {
                    Self::behind_retained_log(primary, r, primary.commit_lsn()?).unwrap_or(false)
                }
                _ => false,
            };
            if behind {
                // Keep the lock through the replacement: a waiting process must not open the
                // folder meanwhile (it notices the new folder by its lock file and starts again).
                let _lock = self
                    .held
                    .remove(id)
                    .and_then(|r| Arc::try_unwrap(r).ok())
                    .map(Replica::close_keeping_lock);
                let path = replica_path(&self.root, id);
                let stale = path.with_extension("stale");
                if stale.exists() {
                    std::fs::remove_dir_all(&stale)
                        .map_err(|e| Error::io(format!("remove {}", stale.display()), e))?;
                }
                std::fs::rename(&path, &stale)
                    .map_err(|e| Error::io(format!("move {} aside", path.display()), e))?;
                self.reseed(&p, &id.datacenter)?;
                std::fs::remove_dir_all(&stale)
                    .map_err(|e| Error::io(format!("remove {}", stale.display()), e))?;
                reseeded.insert(id.clone());
            }
        }
        let failed = self.hold(&ids);
        let primary = self.replica(&pid)?;
        let commit = primary.commit_lsn()?;
        let mut out = Vec::new();
        for id in ids.iter().filter(|id| **id != pid) {
            let report = match self.held.get(id) {
                None => SyncReport {
                    partition,
                    datacenter: id.datacenter.clone(),
                    shipped_entries: 0,
                    cut_entries: Vec::new(),
                    lsn: None,
                    error: Some(failed.get(id).map(|e| e.to_string()).unwrap_or_default()),
                    reseeded: false,
                },
                Some(r) => match Self::catch_up(primary, r, commit, p.term, progress) {
                    Ok(n) => SyncReport {
                        partition,
                        datacenter: id.datacenter.clone(),
                        shipped_entries: n.shipped,
                        cut_entries: n.cut,
                        lsn: Some(r.last()?.lsn),
                        error: None,
                        reseeded: false,
                    },
                    Err(e) => SyncReport {
                        partition,
                        datacenter: id.datacenter.clone(),
                        shipped_entries: 0,
                        cut_entries: Vec::new(),
                        lsn: None,
                        error: Some(e.to_string()),
                        reseeded: false,
                    },
                },
            };
            let report = if reseeded.contains(id) {
                SyncReport {
                    reseeded: true,
                    ..report
                }
            } else {
                report
            };
            out.push(report);
        }
        // Log retention: prune what every reachable replica holds, keeping a margin.
        let held_lsns: Vec<u64> = ids
            .iter()
            .filter_map(|id| self.held.get(id))
            .map(|r| r.last().map(|l| l.lsn))
            .collect::<Result<_>>()?;
        let through = held_lsns
            .iter()
            .copied()
            .min()
            .unwrap_or(0)
            .min(commit)
            // Never the last entry: a replica must find where it agrees with the primary.
            .saturating_sub(self.options.retain_log_entries.max(1));
        if through > 0 {
            for id in &ids {
                if let Some(r) = self.held.get(id) {
                    if r.first_log_lsn()?.is_some_and(|f| f <= through) {
                        r.prune_log_through(through)?;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Takes a checkpoint of `partition` into `dest` (which must not exist), consistent at the
    /// returned position, and names the datacenter it came from: from a secondary level with the primary's commit where one is (so
    /// the primary is not slowed), else from the primary. Holds the partition's replicas only
    /// while checkpointing (hard links: cheap) and releases them before returning.
    pub fn checkpoint_partition(
        &mut self,
        partition: u32,
        dest: &Path,
    ) -> Result<(Position, String)> {
        let p = self.topology.partition(partition)?.clone();
        let ids: BTreeSet<ReplicaId> = self
            .topology
            .datacenters
            .iter()
            .map(|d| ReplicaId::new(&d.name, partition))
            .collect();
        let failed = self.hold(&ids);
        let out = (|| {
            let pid = ReplicaId::new(&p.primary, partition);
            if let Some(e) = failed.get(&pid) {
                return Err(Error::Unavailable(format!(
                    "the primary of partition {partition} ({pid}) is unreachable, so no position is known to be committed: {e}"
                )));
            }
            self.resolve_primary(&p)?;
            let primary = self.replica(&pid)?;
            let commit = primary.commit_lsn()?;
            let commit_term = if commit == 0 {
                0
            } else {
                primary.entry(commit)?.term
            };
            let level = ids.iter().filter(|id| **id != pid).find_map(|id| {
                let r = self.held.get(id)?;
                (r.last().ok()?
                    == Position {
                        term: commit_term,
                        lsn: commit,
                    })
                .then_some(r)
            });
            let source = match level {
                Some(r) => r,
                None => {
                    primary.truncate_after(commit)?;
                    primary
                }
            };
            Ok((
                source.checkpoint(dest)?,
                source.identity().datacenter.clone(),
            ))
        })();
        self.release_all();
        out
    }

    /// Holds every replica of the cluster (an in-place restore swaps them); returns those
    /// that could not be held (lost or held elsewhere).
    pub fn hold_every_replica(&mut self) -> BTreeMap<ReplicaId, Error> {
        let ids: BTreeSet<ReplicaId> = self
            .topology
            .datacenters
            .iter()
            .flat_map(|d| {
                self.topology
                    .partitions
                    .iter()
                    .map(|p| ReplicaId::new(&d.name, p.id))
            })
            .collect();
        self.hold(&ids)
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
            let got = match failed.remove(&id) {
                Some(e) => Err(e),
                None => answer(self.replica(&id)?),
            };
            out.push((id.datacenter, got));
        }
        Ok(out)
    }

    /// Every partition × datacenter: role, term, last lsn, lag, health (a real probe).
    pub fn status(&mut self) -> Result<Vec<ReplicaStatus>> {
        let mut out = Vec::new();
        for p in self.topology.partitions.clone() {
            let mut rows = Vec::new();
            let mut primary_commit = None;
            for dc in self.topology.datacenters.clone() {
                let id = ReplicaId::new(&dc.name, p.id);
                let role = if dc.name == p.primary {
                    "primary"
                } else if dc.name == p.sync_standby {
                    "sync-standby"
                } else {
                    "secondary"
                };
                let failed = self.hold_for(&[id.clone()].into(), Access::Read);
                let (pos, health) = match failed.get(&id) {
                    Some(_) if crate::rebuild::rebuild_path(&self.root, &id).exists() => (
                        None,
                        "rebuilding (or an interrupted rebuild: run `dirctl dc rebuild`)"
                            .to_string(),
                    ),
                    Some(e) => (None, format!("unreachable: {e}")),
                    None => {
                        let r = self.replica(&id)?;
                        match r.probe().and_then(|_| r.last()) {
                            Ok(pos) => {
                                let commit = r.commit_lsn()?;
                                if role == "primary" {
                                    primary_commit = Some(commit.min(pos.lsn));
                                }
                                let health = if p.diverged(pos) {
                                    format!("fenced: holds uncommitted entries of term {} up to lsn {}; cut at the next sync or read", pos.term, pos.lsn)
                                } else if role == "primary" && pos.lsn > commit {
                                    format!("unsettled: holds entries a crashed writer left above its commit lsn {commit} (up to {}), served by no read; the next write or `dirctl sync` settles them", pos.lsn)
                                } else if dc.drained {
                                    "drained".to_string()
                                } else {
                                    "ok".to_string()
                                };
                                (Some(pos), health)
                            }
                            Err(e) => (None, format!("probe failed: {e}")),
                        }
                    }
                };
                self.held.remove(&id);
                rows.push((dc.name.clone(), role, pos, health));
            }
            for (dc, role, pos, health) in rows {
                let pos: Option<Position> = pos;
                let lag = match (pos, primary_commit) {
                    (Some(pos), Some(c)) => Some(c.saturating_sub(pos.lsn)),
                    _ => None,
                };
                out.push(ReplicaStatus {
                    partition: p.id,
                    datacenter: dc,
                    role,
                    partition_term: p.term,
                    term: pos.map(|x| x.term),
                    last_lsn: pos.map(|x| x.lsn),
                    lag_entries: lag,
                    health,
                });
            }
        }
        Ok(out)
    }
}

/// A secondary's "not found" says where it was read: the secondary may not hold a recent
/// write yet (reads are eventually consistent without a session).
fn named_not_found<T>(got: Result<T>, dc: &str, lsn: u64, primary: &str) -> Result<T> {
    match got {
        Err(Error::NotFound(m)) if dc != primary => Err(Error::NotFound(format!(
            "{m} (read at secondary {dc}, lsn {lsn}, which may not hold the newest writes yet: `dirctl sync`, `--session FILE` for read-your-writes, or `--region {primary}`)"
        ))),
        other => other,
    }
}
