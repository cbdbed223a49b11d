//! Re-seeding (docs/design.md, "Log retention and re-seeding"): a replica created from a
//! RocksDB checkpoint of the sync standby (else the primary), given its own identity,
//! renamed into place, and caught up from the log. `dirctl dc rebuild` uses it for lost
//! replicas, `sync` for secondaries behind the retained log.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{Cluster, ReplicaId};
use crate::catch_up::catch_up;
use crate::error::{Error, Result};
use crate::layout;
use crate::replica::{sync_dir, unshare_files, Identity, Replica};
use crate::topology::Partition;

impl Cluster {
    /// Creates replica (dc, partition) from a checkpoint of the sync standby (else the
    /// primary), then ships the entries after it. The replica's folder must not exist.
    pub(crate) fn reseed(&mut self, p: &Partition, dc: &str) -> Result<(String, u64)> {
        let id = ReplicaId::new(dc, p.id);
        let target = id.path(&self.root);
        let tmp = id.rebuild_path(&self.root);
        if tmp.exists() {
            // An interrupted rebuild: its folder was never renamed into place.
            std::fs::remove_dir_all(&tmp)
                .map_err(|e| Error::io(format!("remove {}", tmp.display()), e))?;
        }
        let mut source = None;
        for src in [&p.sync_standby, &p.primary] {
            if src == dc {
                continue;
            }
            let sid = ReplicaId::new(src, p.id);
            if self.hold(&[sid.clone()].into()).contains_key(&sid) {
                continue;
            }
            // A source is proven whole before it is copied: a checkpoint shares its files
            // (hard links), and would carry its damage along. Damage found marks it.
            match self.replica(&sid)?.scrub(&mut |_| {}) {
                Ok(_) => {
                    source = Some(sid);
                    break;
                }
                Err(Error::Damaged(_)) => self.let_go(&sid),
                Err(e) => return Err(e),
            }
        }
        self.recheck(p)?;
        let sid = source.ok_or_else(|| {
            Error::Unavailable(format!(
                "no healthy replica of partition {} to seed {id} from",
                p.id
            ))
        })?;
        self.replica(&sid)?.checkpoint(&tmp)?;
        self.let_go(&sid);
        unshare_files(&tmp)?;
        Replica::adopt(
            &tmp,
            &Identity {
                cluster_id: self.topology.cluster_id.clone(),
                datacenter: dc.to_string(),
                partition: p.id,
            },
            0,
        )?;
        std::fs::rename(&tmp, &target).map_err(|e| {
            Error::io(
                format!("rename {} to {}", tmp.display(), target.display()),
                e,
            )
        })?;
        if let Some(parent) = target.parent() {
            sync_dir(parent)?;
        }
        let pid = ReplicaId::new(&p.primary, p.id);
        let want: BTreeSet<ReplicaId> = [
            id.clone(),
            pid.clone(),
            ReplicaId::new(&p.sync_standby, p.id),
        ]
        .into();
        let failed = self.hold(&want);
        if let Some(e) = failed.get(&id) {
            return Err(Error::Storage(format!(
                "the rebuilt replica {id} does not open: {e}"
            )));
        }
        let mut lsn = self.replica(&id)?.last()?.lsn;
        if !failed.contains_key(&pid) {
            self.resolve_primary(p)?;
            // Settling may have raised the term (fence_cut).
            let term = self.topology.partition(p.id)?.term;
            let primary = self.replica(&pid)?;
            catch_up(
                primary,
                self.replica(&id)?,
                primary.commit_lsn()?,
                term,
                &mut |_| {},
            )?;
            lsn = self.replica(&id)?.last()?.lsn;
        }
        Ok((sid.datacenter, lsn))
    }

    /// Replaces the damaged replica `id` (a secondary): its lock taken and kept through the
    /// replacement, its folder moved aside, a new replica seeded, the old folder removed.
    pub(crate) fn reseed_damaged(
        &mut self,
        p: &Partition,
        id: &ReplicaId,
    ) -> Result<(String, u64)> {
        let path = id.path(&self.root);
        let lock = Replica::lock(&path, &id.to_string(), self.options.lock_timeout)?;
        self.replace(p, id, Some(lock))
    }

    /// Re-seeds the held secondary `id`, which is behind the retained log: its folder is
    /// moved aside (its lock kept through the replacement, so that a waiting process does not
    /// open the folder meanwhile: it notices the new folder by its lock file and starts
    /// again), the new replica built, the old folder removed.
    pub(super) fn reseed_behind(&mut self, p: &Partition, id: &ReplicaId) -> Result<()> {
        let own = match self.held.remove(id).map(super::held::opened_here) {
            Some(Ok(own)) => Some(own),
            Some(Err(given)) => {
                self.held.insert(id.clone(), given);
                return Err(Error::Unavailable(format!(
                    "{id} is behind the primary's retained log and is served by its own server, which re-seeds it from a checkpoint of the primary when the primary's server asks (or `dirctl dc rebuild`)"
                )));
            }
            None => None,
        };
        let lock = own
            .and_then(|r| Arc::try_unwrap(r).ok())
            .map(Replica::close_keeping_lock);
        self.replace(p, id, lock).map(|_| ())
    }

    /// Moves the folder of `id` (whose `lock` this process holds) aside, seeds a new replica
    /// in its place, and removes the old folder.
    fn replace(
        &mut self,
        p: &Partition,
        id: &ReplicaId,
        _lock: Option<std::fs::File>,
    ) -> Result<(String, u64)> {
        let path = id.path(&self.root);
        let stale = layout::stale_path(&self.root, &id.datacenter, id.partition);
        if stale.exists() {
            std::fs::remove_dir_all(&stale)
                .map_err(|e| Error::io(format!("remove {}", stale.display()), e))?;
        }
        std::fs::rename(&path, &stale)
            .map_err(|e| Error::io(format!("move {} aside", path.display()), e))?;
        let seeded = self.reseed(p, &id.datacenter)?;
        std::fs::remove_dir_all(&stale)
            .map_err(|e| Error::io(format!("remove {}", stale.display()), e))?;
        Ok(seeded)
    }
}
