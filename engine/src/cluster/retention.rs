//! Log retention carried out (docs/design.md, "Log retention and re-seeding"): after a
//! `sync`, every held replica prunes what `protocol::retention` allows.

use std::collections::BTreeSet;

use super::{Cluster, ReplicaId};
use crate::error::Result;
use crate::protocol::retention::{must_prune, retention_point};

impl Cluster {
    /// Prunes the logs of the held replicas among `ids` through the retention point: what
    /// every one of them holds, capped at the primary's `commit` lsn, less the margin.
    pub(super) fn prune_logs(&self, ids: &BTreeSet<ReplicaId>, commit: u64) -> Result<()> {
        let held: Vec<_> = ids.iter().filter_map(|id| self.held.get(id)).collect();
        let lasts: Vec<u64> = held
            .iter()
            .map(|r| r.last().map(|l| l.lsn))
            .collect::<Result<_>>()?;
        let Some(through) = retention_point(&lasts, commit, self.options.retain_log_entries) else {
            return Ok(());
        };
        // A replica on another server prunes its own log.
        for r in held.iter().filter_map(|h| h.local()) {
            if must_prune(r.first_log_lsn()?, through) {
                r.prune_log_through(through)?;
            }
        }
        Ok(())
    }
}
