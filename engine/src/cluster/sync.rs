//! `dirctl sync`: every reachable secondary of a partition brought level with the primary's
//! commit lsn (those behind the retained log re-seeded first), then the log pruned
//! (`retention`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;

use super::{Cluster, ReplicaId};
use crate::catch_up::{behind_retained_log, catch_up};
use crate::error::{Error, Result};
use crate::log::Position;
use crate::topology::Partition;

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

impl Cluster {
    /// Entries the reachable secondaries of `partition` miss, in all.
    pub fn sync_plan(&mut self, partition: u32) -> Result<u64> {
        let (_, ids, pid, _) = self.hold_partition(partition)?;
        // Only an estimate for a progress bar: no settling here.
        let commit = self.log(&pid)?.commit_lsn()?;
        let mut missing = 0;
        for id in ids.iter().filter(|id| **id != pid) {
            if let Ok(r) = self.log(id) {
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
        let (p, ids, pid) = loop {
            let (p, ids, pid, failed) = self.hold_partition(partition)?;
            if !failed.contains_key(&ReplicaId::new(&p.sync_standby, partition)) {
                break (p, ids, pid);
            }
            // The sync standby is unreachable: re-designate, then take the replicas again.
            self.redesignate_standby(partition)?;
        };
        self.resolve_primary(&p)?;
        // Settling may have raised the term (fence_cut).
        let p = self.topology.partition(partition)?.clone();
        // Secondaries behind the retained log are re-seeded from a checkpoint.
        let mut reseeded = BTreeSet::new();
        let mut unknown = BTreeMap::new();
        for id in ids.iter().filter(|id| **id != pid) {
            let behind = match (self.held.get(id), self.held.get(&pid)) {
                (Some(r), Some(primary)) => {
                    behind_retained_log(primary.as_ref(), r.as_ref(), primary.commit_lsn()?)
                }
                _ => Ok(false),
            };
            match behind {
                Ok(true) => {
                    self.reseed_behind(&p, id)?;
                    reseeded.insert(id.clone());
                }
                Ok(false) => {}
                // Reported in its row, not taken for "not behind".
                Err(e) => {
                    unknown.insert(id.clone(), e);
                }
            }
        }
        let mut failed = self.hold(&ids);
        failed.append(&mut unknown);
        let commit = self.log(&pid)?.commit_lsn()?;
        let mut out = Vec::new();
        for id in ids.iter().filter(|id| **id != pid) {
            let mut report = self.sync_one(&p, &pid, id, failed.remove(id), progress)?;
            report.reseeded = reseeded.contains(id);
            out.push(report);
        }
        self.prune_logs(&ids, commit)?;
        Ok(out)
    }

    /// Catches the secondary `id` of `p` up (unless `failed` says why it cannot be) and reports.
    fn sync_one(
        &self,
        p: &Partition,
        pid: &ReplicaId,
        id: &ReplicaId,
        failed: Option<Error>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<SyncReport> {
        let report = |error: Option<String>| SyncReport {
            partition: p.id,
            datacenter: id.datacenter.clone(),
            shipped_entries: 0,
            cut_entries: Vec::new(),
            lsn: None,
            error,
            reseeded: false,
        };
        let r = match (failed, self.held.get(id)) {
            (Some(e), _) => return Ok(report(Some(e.to_string()))),
            (None, None) => return Ok(report(Some(format!("{id} is not held")))),
            (None, Some(r)) => r,
        };
        let primary = self.log(pid)?;
        let commit = primary.commit_lsn()?;
        Ok(
            match catch_up(primary, r.as_ref(), commit, p.term, progress) {
                Ok(n) => SyncReport {
                    shipped_entries: n.shipped,
                    cut_entries: n.cut,
                    lsn: Some(r.last()?.lsn),
                    ..report(None)
                },
                Err(e) => report(Some(e.to_string())),
            },
        )
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
        let ids = self.replica_ids(partition);
        let failed = self.hold(&ids);
        let out = (|| {
            let pid = ReplicaId::new(&p.primary, partition);
            if let Some(e) = failed.get(&pid) {
                return Err(Error::Unavailable(format!(
                    "the primary of partition {partition} ({pid}) is unreachable, so no position is known to be committed: {e}"
                )));
            }
            self.resolve_primary(&p)?;
            // Settling may have raised the term (fence_cut).
            let term = self.topology.partition(partition)?.term;
            let primary = self.replica(&pid)?;
            let commit = primary.commit_lsn()?;
            let commit_term = if commit == 0 {
                0
            } else {
                primary.entry(commit)?.term
            };
            let committed = Position {
                term: commit_term,
                lsn: commit,
            };
            let mut level = None;
            for id in ids.iter().filter(|id| **id != pid) {
                if let Some(r) = self.held.get(id).and_then(|h| h.local()) {
                    if r.last()? == committed {
                        level = Some(r);
                        break;
                    }
                }
            }
            let source = match level {
                Some(r) => r,
                None => {
                    primary.truncate_after(commit, term)?;
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
}
