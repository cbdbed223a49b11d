//! Sync standby re-designation (docs/design.md, "Failover"): when the sync standby cannot be
//! held, the primary ships everything it holds to the most advanced reachable secondary in
//! another datacenter, records its commit lsn, records the new standby, and only then
//! writes, in a new term. The choice is `protocol::promotion::choose_sync_standby`.

use super::{Cluster, ReplicaId};
use crate::error::{Error, Result};
use crate::protocol::promotion::{choose_sync_standby, Candidate};

impl Cluster {
    /// What is known of every replica of `partition` (each held): reachable or not, and
    /// its last position.
    pub(crate) fn candidates(&mut self, partition: u32) -> Result<Vec<Candidate>> {
        let failed = self.hold(&self.replica_ids(partition));
        let mut out = Vec::new();
        for d in self.topology.datacenters.clone() {
            let id = ReplicaId::new(&d.name, partition);
            let last = if failed.contains_key(&id) {
                None
            } else {
                Some(self.log(&id)?.last()?)
            };
            out.push(Candidate {
                datacenter: d.name.clone(),
                last,
                drained: d.drained,
            });
        }
        Ok(out)
    }

    /// The sync standby is unreachable: bring another secondary in another datacenter level,
    /// record it as the new sync standby, and only then let writes be acknowledged again.
    /// The same update raises the term from the next lsn on: the old standby may hold a
    /// crashed writer's entry there that the primary never took, and the next write must not
    /// give its (term, lsn) to another entry (the old copy then reads as a fenced tail and is
    /// cut before it is served, shipped or promoted).
    pub(crate) fn redesignate_standby(&mut self, partition: u32) -> Result<String> {
        let p = self.topology.partition(partition)?.clone();
        let cands = self.candidates(partition)?;
        self.recheck(&p)?;
        let Some(new) = choose_sync_standby(&p.primary, &cands, &[p.sync_standby.as_str()]) else {
            return Err(Error::Unavailable(format!(
                "the sync standby {} of partition {partition} is unreachable and no other secondary in another datacenter can take writes; nothing was written",
                p.sync_standby
            )));
        };
        // Entries above the primary's commit lsn cannot be settled without the old standby,
        // which may hold them (and may have acknowledged them): ship them too, so they
        // become committed. An unknown outcome may become visible; an acknowledged write is never lost.
        let primary = self.log(&ReplicaId::new(&p.primary, partition))?;
        let s = self.log(&ReplicaId::new(&new, partition))?;
        let last = primary.last()?.lsn;
        crate::catch_up::catch_up(primary, s, last, p.term, &mut |_| {})?;
        primary.set_commit_lsn(last)?;
        self.update_topology(|t| {
            t.change_partition(
                &p,
                |_| format!("partition {partition} changed while its sync standby was re-designated; retry"),
                |q| {
                    q.set_sync_standby(&new);
                    q.fence_from(last + 1);
                },
            )
        })?;
        self.observe_term(partition, p.term + 1);
        Ok(new)
    }
}
