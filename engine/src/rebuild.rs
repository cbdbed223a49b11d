//! Rebuilding lost replicas: a fresh replica seeded from a checkpoint of a healthy replica
//! plus the log after it. The same mechanism re-seeds a secondary that fell behind the
//! retained log.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Serialize;

use crate::cluster::{replica_path, Cluster, ReplicaId};
use crate::error::{Error, Result};
use crate::replica::{sync_dir, Identity, Replica};
use crate::topology::{ControlPlane, Partition};

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RebuildReport {
    pub partition: u32,
    pub datacenter: String,
    /// The replica whose checkpoint seeded the new one.
    pub seeded_from: Option<String>,
    /// The new replica's last lsn after catching up.
    pub lsn: Option<u64>,
    pub result: String,
}

/// A rebuild in progress (or interrupted) leaves this folder beside the replica's.
pub fn rebuild_path(root: &std::path::Path, id: &ReplicaId) -> PathBuf {
    replica_path(root, id).with_extension("rebuild")
}

impl Cluster {
    /// `dirctl dc rebuild NAME`: gives every lost replica of a datacenter a fresh copy.
    /// Replicas that open are kept; a folder that exists but does not open is reported,
    /// never deleted. The primary's own replica cannot be rebuilt: fail over first.
    pub fn rebuild_datacenter(
        &mut self,
        dc: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Vec<RebuildReport>> {
        self.topology = self.control.load()?;
        self.topology.datacenter(dc)?;
        let dc_dir = self.root.join(format!("dc-{dc}"));
        if !dc_dir.exists() {
            std::fs::create_dir_all(&dc_dir)
                .map_err(|e| Error::io(format!("create {}", dc_dir.display()), e))?;
            sync_dir(&self.root)?;
        }
        let mut out = Vec::new();
        for p in self.topology.partitions.clone() {
            let id = ReplicaId::new(dc, p.id);
            let report = |seeded_from, lsn, result: String| RebuildReport {
                partition: p.id,
                datacenter: dc.to_string(),
                seeded_from,
                lsn,
                result,
            };
            if replica_path(&self.root, &id).exists() {
                let failed = self.hold(&[id.clone()].into());
                self.held.remove(&id);
                out.push(match failed.get(&id) {
                    None => report(None, None, "healthy, kept".into()),
                    Some(e) => report(
                        None,
                        None,
                        format!("exists but does not open ({e}); move it away, then rebuild"),
                    ),
                });
                continue;
            }
            if p.primary == dc {
                out.push(report(None, None, format!("is the primary; fail over first: `dirctl failover --partition {} --emergency`", p.id)));
                continue;
            }
            match self.reseed(&p, dc) {
                Ok((from, lsn)) => {
                    progress(1);
                    out.push(report(Some(from), Some(lsn), "rebuilt".into()))
                }
                Err(e) => out.push(report(None, None, format!("failed: {e}"))),
            }
        }
        self.release_all();
        Ok(out)
    }

    /// Creates replica (dc, partition) from a checkpoint of the sync standby (else the
    /// primary), then ships the entries after it. The replica's folder must not exist.
    pub(crate) fn reseed(&mut self, p: &Partition, dc: &str) -> Result<(String, u64)> {
        let id = ReplicaId::new(dc, p.id);
        let target = replica_path(&self.root, &id);
        let tmp = rebuild_path(&self.root, &id);
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
            if !self.hold(&[sid.clone()].into()).contains_key(&sid) {
                source = Some(sid);
                break;
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
        self.held.remove(&sid);
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
            let primary = self.replica(&pid)?;
            Cluster::catch_up(
                primary,
                self.replica(&id)?,
                primary.commit_lsn()?,
                p.term,
                &mut |_| {},
            )?;
            lsn = self.replica(&id)?.last()?.lsn;
        }
        Ok((sid.datacenter, lsn))
    }
}
