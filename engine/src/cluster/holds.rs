//! Holding replicas: each is opened exclusively (its `geodir.lock`) for the length of one
//! command, in `ReplicaId` order so that two processes never wait on each other.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::{Cluster, Held, ReplicaId};
use crate::error::{Error, Result};
use crate::replica::{Access, Replica};
use crate::replica_log::ReplicaLog;
use crate::topology::Partition;

impl Cluster {
    /// Reopens for writes, keeping their locks, the replicas among `want` this handle holds
    /// for reads: the one way a replica held for reads comes to be written (a read that must
    /// pull, a write after a status). Returns those still held for reads and in use.
    fn reopen_for_writes(&mut self, want: &BTreeSet<ReplicaId>) -> BTreeMap<ReplicaId, Error> {
        let mut failed = BTreeMap::new();
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
            // replica is opened again by `hold_for`, in lock order. Only a replica this
            // handle opened itself is held for reads.
            let own = match super::held::opened_here(r) {
                Ok(own) => own,
                Err(given) => {
                    self.held.insert(id, given);
                    continue;
                }
            };
            match Arc::try_unwrap(own) {
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
        failed
    }

    /// Lets go of one replica (its commit lsn noted in memory reaches its `meta` first).
    pub(crate) fn let_go(&mut self, id: &ReplicaId) {
        if let Some(r) = self.held.remove(id) {
            let _ = r.persist_commit();
        }
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
        let mut failed = match access {
            Access::Write => self.reopen_for_writes(want),
            Access::Read | Access::Scrub => BTreeMap::new(),
        };
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
            let opened = match self.opener.as_ref().and_then(|o| o.open(id, access)) {
                Some(got) => got,
                None => Replica::open_for(
                    &id.path(&self.root),
                    &id.to_string(),
                    self.options.lock_timeout,
                    access,
                )
                .map(|r| Arc::new(r) as Arc<dyn Held>),
            };
            match opened {
                Ok(r) => {
                    self.held.insert(id.clone(), r);
                    failed.remove(id);
                }
                Err(e) => {
                    failed.insert(id.clone(), e);
                }
            }
        }
        failed
    }

    /// A held replica opened in this process (its data, checkpoints, scrubs).
    pub(crate) fn replica(&self, id: &ReplicaId) -> Result<&Replica> {
        match self.held.get(id) {
            Some(h) => h.local().ok_or_else(|| {
                Error::Unavailable(format!(
                    "replica {id} is on another server: this is done by its own server"
                ))
            }),
            None => Err(Error::Unavailable(format!("replica {id} is not open"))),
        }
    }

    /// A held replica's log, wherever the replica is (replication needs no more).
    pub(crate) fn log(&self, id: &ReplicaId) -> Result<&dyn ReplicaLog> {
        self.held
            .get(id)
            .map(|h| h.as_ref() as &dyn ReplicaLog)
            .ok_or_else(|| Error::Unavailable(format!("replica {id} is not open")))
    }

    pub(super) fn held_arc(&self, id: &ReplicaId) -> Result<Arc<dyn Held>> {
        self.held
            .get(id)
            .cloned()
            .ok_or_else(|| Error::Unavailable(format!("replica {id} is not open")))
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
    pub(super) fn hold_partition(
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
        match failed.get(&pid) {
            None => {}
            Some(Error::Damaged(why)) => return Err(Error::Unavailable(format!(
                "the primary of partition {partition} is damaged: {why}; first fail over to the sync standby, which holds every acknowledged write: `dirctl failover --partition {partition} --emergency`"
            ))),
            Some(e) => return Err(Error::Unavailable(format!(
                "the primary of partition {partition} ({pid}) is unreachable: {e}"
            ))),
        }
        Ok((p, ids, pid, failed))
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
}
