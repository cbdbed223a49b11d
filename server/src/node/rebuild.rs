//! Replacing a server's own replicas: a checkpoint of a partition made for another server
//! (`Checkpoint`), and a lost, damaged or too-far-behind replica rebuilt from a checkpoint
//! its primary's server streams (`Rebuild`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::rebuild::{RebuildReport, RebuildResult};
use engine::replica::{Access, Replica};
use engine::topology::Topology;
use engine::{Error, Result};

use super::{poisoned, Node};

impl Node {
    /// A checkpoint of `partition` at its commit lsn, in a new folder under this server's
    /// data folder (removed with the `TempDir`): made here only when this server owns the
    /// partition's primary, while its writes wait. Its position, and the replica's datacenter.
    pub fn checkpoint(
        &self,
        partition: u32,
    ) -> Result<(tempfile::TempDir, engine::log::Position, String)> {
        let primary = self
            .routing_topology()?
            .partition(partition)?
            .primary
            .clone();
        if primary != self.datacenter {
            return Err(Error::Fenced(format!(
                "this is {}'s server; a checkpoint of partition {partition} is made by its primary's server ({primary})",
                self.datacenter
            )));
        }
        let tmp = tempfile::Builder::new()
            .prefix(".checkpoint-")
            .tempdir_in(&self.config.data)
            .map_err(|e| {
                Error::io(
                    format!("make a folder in {}", self.config.data.display()),
                    e,
                )
            })?;
        let dest = tmp.path().join(format!("p{partition}"));
        let mut dir = self.dir.lock().map_err(|_| poisoned())?;
        self.refresh(dir.cluster_mut())?;
        let (pos, source) = dir.cluster_mut().checkpoint_partition(partition, &dest)?;
        drop(dir);
        tracing::info!(partition, term = pos.term, lsn = pos.lsn, "checkpoint made");
        Ok((tmp, pos, source))
    }

    /// Rebuilds this server's lost or damaged replicas, or re-seeds those of `reseed` (behind
    /// the primary's retained log) although they open: each from a checkpoint its primary's
    /// server streams. A report per partition.
    pub fn rebuild(&self, reseed: &[u32]) -> Result<Vec<RebuildReport>> {
        let t = self.topology()?;
        let mut out = Vec::new();
        for p in &t.partitions {
            let forced = reseed.contains(&p.id);
            if !reseed.is_empty() && !forced {
                continue;
            }
            let report = |seeded_from, lsn, result| RebuildReport {
                partition: p.id,
                datacenter: self.datacenter.clone(),
                seeded_from,
                lsn,
                result,
            };
            // Not kept: a replica in use here cannot be replaced.
            let (held, damaged) = match self.own(p.id) {
                Some(r) => (true, matches!(r.probe(), Err(Error::Damaged(_)))),
                None => (false, false),
            };
            if held && !damaged && !forced {
                out.push(report(None, None, RebuildResult::Kept));
                continue;
            }
            if p.primary == self.datacenter {
                out.push(report(
                    None,
                    None,
                    RebuildResult::IsPrimary { partition: p.id },
                ));
                continue;
            }
            let path = engine::layout::replica_path(&self.config.data, &self.datacenter, p.id);
            if !held && path.exists() {
                // It did not open when this server started: kept if it opens now, replaced
                // if damaged, reported (never deleted) otherwise.
                let name = engine::layout::replica_dir(&self.datacenter, p.id);
                match Replica::open_for(&path, &name, self.config.lock_timeout, Access::Write) {
                    Ok(r) => {
                        self.owned
                            .write()
                            .map_err(|_| poisoned())?
                            .insert(p.id, Arc::new(r));
                        out.push(report(None, None, RebuildResult::Kept));
                        continue;
                    }
                    Err(Error::Damaged(_)) => {}
                    Err(e) => {
                        out.push(report(
                            None,
                            None,
                            RebuildResult::DoesNotOpen(e.to_string()),
                        ));
                        continue;
                    }
                }
            }
            match self.reseed(p.id, &t) {
                Ok((from, lsn)) => {
                    tracing::info!(partition = p.id, from = %from, lsn, "replica re-seeded");
                    out.push(report(Some(from), Some(lsn), RebuildResult::Rebuilt))
                }
                Err(e) => {
                    tracing::warn!(partition = p.id, error = %e, "replica not re-seeded");
                    out.push(report(None, None, RebuildResult::Failed(e.to_string())))
                }
            }
        }
        self.poke();
        Ok(out)
    }

    /// Replaces this server's replica of `partition` (if it holds one) with a new one seeded
    /// from a checkpoint its primary's server streams. Requests wait meanwhile; the replica's
    /// lock is kept until the new folder is in place.
    fn reseed(&self, partition: u32, t: &Topology) -> Result<(String, u64)> {
        let dc = self.datacenter.clone();
        let name = engine::layout::replica_dir(&dc, partition);
        let data = &self.config.data;
        let target = engine::layout::replica_path(data, &dc, partition);
        let tmp = engine::layout::rebuild_path(data, &dc, partition);
        let stale = engine::layout::stale_path(data, &dc, partition);
        let primary = t.partition(partition)?.primary.clone();
        let mut dir = self.dir.lock().map_err(|_| poisoned())?;
        dir.cluster_mut().release_all();
        let taken = self
            .owned
            .write()
            .map_err(|_| poisoned())?
            .remove(&partition);
        // The old replica closed (its lock kept): the threads that used it let go first.
        let _lock = match taken {
            Some(r) => Some(close_when_unused(r, self.config.lock_timeout).map_err(|e| {
                // Back in service: nothing was changed.
                if let Ok(mut o) = self.owned.write() {
                    o.insert(partition, e.1);
                }
                e.0
            })?),
            None if target.exists() => {
                Some(Replica::lock(&target, &name, self.config.lock_timeout)?)
            }
            None => None,
        };
        let io =
            |what: &str, p: &std::path::Path, e| Error::io(format!("{what} {}", p.display()), e);
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| io("remove", &tmp, e))?;
        }
        if let Some(parent) = tmp.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io("create", parent, e))?;
        }
        let conn = self.connection_to(&primary)?;
        let (pos, from) = conn.checkpoint(partition, &tmp)?;
        Replica::adopt(
            &tmp,
            &engine::replica::Identity {
                cluster_id: t.cluster_id.clone(),
                datacenter: dc.clone(),
                partition,
            },
            0,
        )?;
        if target.exists() {
            if stale.exists() {
                std::fs::remove_dir_all(&stale).map_err(|e| io("remove", &stale, e))?;
            }
            std::fs::rename(&target, &stale).map_err(|e| io("move aside", &target, e))?;
        }
        std::fs::rename(&tmp, &target).map_err(|e| io("move into place", &tmp, e))?;
        if let Some(parent) = target.parent() {
            engine::replica::sync_dir(parent)?;
        }
        if stale.exists() {
            std::fs::remove_dir_all(&stale).map_err(|e| io("remove", &stale, e))?;
        }
        drop(_lock);
        let r = Replica::open_for(&target, &name, self.config.lock_timeout, Access::Write)?;
        self.owned
            .write()
            .map_err(|_| poisoned())?
            .insert(partition, Arc::new(r));
        drop(dir);
        Ok((from, pos.lsn))
    }
}

/// Closes `r` keeping its lock, once no other thread uses it (within `wait`); otherwise
/// the error, and the replica back.
fn close_when_unused(
    mut r: Arc<Replica>,
    wait: Duration,
) -> std::result::Result<std::fs::File, (Error, Arc<Replica>)> {
    let deadline = Instant::now() + wait;
    loop {
        match Arc::try_unwrap(r) {
            Ok(replica) => return Ok(replica.close_keeping_lock()),
            Err(back) if Instant::now() >= deadline => {
                return Err((
                    Error::Unavailable(format!(
                        "{} is still in use after {} ms; nothing was changed, run it again",
                        back.name(),
                        wait.as_millis()
                    )),
                    back,
                ))
            }
            Err(back) => {
                r = back;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}
