//! Failover decisions, without I/O: who may be promoted, and who becomes the sync standby.
//! The cluster module gathers the facts (reachable replicas and their positions), asks
//! these functions, and carries out the answer.

use crate::error::{Error, Result};
use crate::log::Position;

/// What is known of one replica of a partition at failover time.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub datacenter: String,
    /// None when the replica is unreachable (lost folder, lock timeout, failed probe).
    pub last: Option<Position>,
    pub drained: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Promotion {
    /// Promote this datacenter; no acknowledged write can be lost.
    Safe { datacenter: String },
    /// Promote this datacenter although acknowledged writes may be lost: the operator
    /// accepted it. `known_lsn` is the promoted replica's last lsn; anything acknowledged
    /// above it is lost.
    Lossy { datacenter: String, known_lsn: u64 },
}

/// Emergency failover: the primary is unreachable. The sync standby holds every
/// acknowledged write, so it is promoted when reachable. Otherwise nothing can prove what
/// was acknowledged: refuse unless `accept_data_loss`, then take the most advanced
/// reachable replica.
pub fn emergency_promotion(
    primary: &str,
    sync_standby: &str,
    replicas: &[Candidate],
    accept_data_loss: bool,
) -> Result<Promotion> {
    let reachable = |dc: &str| {
        replicas
            .iter()
            .any(|c| c.datacenter == dc && c.last.is_some())
    };
    if reachable(primary) {
        return Err(Error::Conflict(format!(
            "the primary {primary} is reachable; use a planned failover (`--to DC`), which loses nothing"
        )));
    }
    if reachable(sync_standby) {
        return Ok(Promotion::Safe {
            datacenter: sync_standby.to_string(),
        });
    }
    if !accept_data_loss {
        return Err(Error::Unavailable(format!(
            "the primary {primary} and the sync standby {sync_standby} are both unreachable: no reachable replica is proven to hold every acknowledged write; \
             bring one of them back, or pass --accept-data-loss to promote the most advanced reachable replica"
        )));
    }
    let best = replicas
        .iter()
        .filter(|c| c.datacenter != primary)
        .filter_map(|c| c.last.map(|p| (p, c)))
        // Most advanced by (term, lsn): a fenced old primary's longer tail of an older term
        // must not win over a replica of a newer term.
        .max_by(|(a, ca), (b, cb)| a.cmp(b).then(cb.datacenter.cmp(&ca.datacenter)))
        .ok_or_else(|| {
            Error::Unavailable("no replica of the partition is reachable".to_string())
        })?;
    Ok(Promotion::Lossy {
        datacenter: best.1.datacenter.clone(),
        known_lsn: best.0.lsn,
    })
}

/// The new sync standby after `new_primary` takes over: a reachable replica in another
/// datacenter, preferring the most advanced (least to ship), then the first by name.
/// `exclude` names datacenters that must not be chosen (e.g. a lost old primary).
pub fn choose_sync_standby(
    new_primary: &str,
    replicas: &[Candidate],
    exclude: &[&str],
) -> Option<String> {
    replicas
        .iter()
        .filter(|c| c.datacenter != new_primary && !exclude.contains(&c.datacenter.as_str()))
        .filter_map(|c| c.last.map(|p| (p, c)))
        .max_by(|(a, ca), (b, cb)| a.cmp(b).then(cb.datacenter.cmp(&ca.datacenter)))
        .map(|(_, c)| c.datacenter.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(dc: &str, last: Option<(u64, u64)>) -> Candidate {
        Candidate {
            datacenter: dc.into(),
            last: last.map(|(term, lsn)| Position { term, lsn }),
            drained: false,
        }
    }

    /// Every combination of reachability for three replicas and the flag.
    #[test]
    fn emergency_promotion_is_safe_exactly_when_the_standby_is_reachable() {
        for mask in 0u8..8 {
            for accept in [false, true] {
                let reach = |i: u8| mask & (1 << i) != 0;
                let replicas = vec![
                    c("p", reach(0).then_some((1, 10))),
                    c("s", reach(1).then_some((1, 10))),
                    c("o", reach(2).then_some((1, 7))),
                ];
                let got = emergency_promotion("p", "s", &replicas, accept);
                match (reach(0), reach(1), reach(2), accept) {
                    (true, _, _, _) => assert!(
                        matches!(got, Err(Error::Conflict(_))),
                        "{mask} {accept}: {got:?}"
                    ),
                    (false, true, _, _) => assert_eq!(
                        got.ok(),
                        Some(Promotion::Safe {
                            datacenter: "s".into()
                        })
                    ),
                    (false, false, _, false) => {
                        assert!(matches!(got, Err(Error::Unavailable(_))), "{mask}: {got:?}")
                    }
                    (false, false, true, true) => assert_eq!(
                        got.ok(),
                        Some(Promotion::Lossy {
                            datacenter: "o".into(),
                            known_lsn: 7
                        })
                    ),
                    (false, false, false, true) => {
                        assert!(matches!(got, Err(Error::Unavailable(_))))
                    }
                }
            }
        }
    }

    #[test]
    fn lossy_promotion_prefers_a_newer_term_over_a_longer_older_tail() {
        let replicas = vec![
            c("p", None),
            c("s", None),
            c("old", Some((1, 102))),
            c("new", Some((2, 101))),
        ];
        assert_eq!(
            emergency_promotion("p", "s", &replicas, true).ok(),
            Some(Promotion::Lossy {
                datacenter: "new".into(),
                known_lsn: 101
            })
        );
        assert_eq!(choose_sync_standby("p", &replicas, &[]), Some("new".into()));
    }

    #[test]
    fn lossy_promotion_takes_the_most_advanced_replica() {
        let replicas = vec![
            c("p", None),
            c("s", None),
            c("a", Some((1, 5))),
            c("b", Some((1, 9))),
        ];
        assert_eq!(
            emergency_promotion("p", "s", &replicas, true).ok(),
            Some(Promotion::Lossy {
                datacenter: "b".into(),
                known_lsn: 9
            })
        );
    }

    #[test]
    fn new_standby_is_reachable_in_another_datacenter_and_most_advanced() {
        let replicas = vec![
            c("p", Some((1, 10))),
            c("s", Some((1, 10))),
            c("o", Some((1, 3))),
            c("x", None),
        ];
        assert_eq!(choose_sync_standby("s", &replicas, &[]), Some("p".into()));
        assert_eq!(
            choose_sync_standby("s", &replicas, &["p"]),
            Some("o".into())
        );
        assert_eq!(choose_sync_standby("s", &replicas, &["p", "o"]), None);
    }
}

use std::collections::BTreeSet;
use std::time::Instant;

use serde::Serialize;

use crate::cluster::{Cluster, ReplicaId};
use crate::replica::Durability;
use crate::topology::{ControlPlane, TermStart};

/// What a failover did.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailoverReport {
    pub partition: u32,
    pub old_primary: String,
    pub new_primary: String,
    pub old_term: u64,
    pub new_term: u64,
    pub sync_standby: String,
    /// The new primary's last lsn: every committed entry up to here is kept.
    pub lsn: u64,
    /// How long writes to the partition were refused, from fencing the old primary to the switch.
    pub write_unavailable_ms: f64,
    /// Emergency with --accept-data-loss: acknowledged writes above this lsn may be lost.
    pub possible_loss_after_lsn: Option<u64>,
    pub emergency: bool,
}

impl Cluster {
    fn candidates(&mut self, partition: u32) -> Result<Vec<Candidate>> {
        let failed = self.hold(&self.replica_ids(partition));
        let mut out = Vec::new();
        for d in self.topology.datacenters.clone() {
            let id = ReplicaId::new(&d.name, partition);
            let last = if failed.contains_key(&id) {
                None
            } else {
                Some(self.replica(&id)?.last()?)
            };
            out.push(Candidate {
                datacenter: d.name.clone(),
                last,
                drained: d.drained,
            });
        }
        Ok(out)
    }

    /// Records the switch in the control plane, refusing if someone else changed the partition meanwhile.
    fn switch(
        &mut self,
        before: &crate::topology::Partition,
        new_primary: &str,
        standby: &str,
        first_lsn: u64,
    ) -> Result<u64> {
        let new_term = before.term + 1;
        let id = before.id;
        self.update_topology(|t| {
            let p = t.partitions.iter_mut().find(|p| p.id == id).ok_or_else(|| Error::NotFound(format!("no partition {id}")))?;
            if p != before {
                return Err(Error::Conflict(format!("partition {id} changed during the failover (now term {}); look at `dirctl status` and retry", p.term)));
            }
            p.primary = new_primary.to_string();
            p.term = new_term;
            p.sync_standby = standby.to_string();
            p.term_starts.push(TermStart { term: new_term, first_lsn });
            Ok(())
        })?;
        Ok(new_term)
    }

    /// Planned failover: fence the old primary (hold it), bring the target level, raise the
    /// term, switch the control plane. Zero loss.
    pub fn failover_planned(&mut self, partition: u32, to: &str) -> Result<FailoverReport> {
        self.topology = self.control.load()?;
        self.topology.datacenter(to)?;
        let p = self.topology.partition(partition)?.clone();
        if p.primary == to {
            return Err(Error::Conflict(format!(
                "{to} is already the primary of partition {partition}"
            )));
        }
        let (pid, tid) = (
            ReplicaId::new(&p.primary, partition),
            ReplicaId::new(to, partition),
        );
        // Writes are unavailable from the moment this process starts taking the replicas.
        let fenced = Instant::now();
        // Only the replicas the switch needs: the primary, the target, and the sync standby
        // (to settle entries a crashed writer left in doubt).
        let want: BTreeSet<ReplicaId> = [
            pid.clone(),
            tid.clone(),
            ReplicaId::new(&p.sync_standby, partition),
        ]
        .into();
        self.hold(&want);
        self.recheck(&p)?;
        self.replica(&pid).map_err(|_| {
            Error::Unavailable(format!("the primary {} of partition {partition} is unreachable; use `dirctl failover --partition {partition} --emergency`", p.primary))
        })?;
        self.replica(&tid).map_err(|_| {
            Error::Unavailable(format!(
                "the target {to} of partition {partition} is unreachable"
            ))
        })?;
        // Settle what a crashed writer left; without the sync standby that cannot be done, so
        // the target takes everything the primary holds, those entries committed with it (an
        // unknown outcome may become visible; an acknowledged write is never lost).
        match self.resolve_primary(&p) {
            Ok(()) | Err(Error::Unavailable(_)) => {}
            Err(e) => return Err(e),
        }
        // Settling may have raised the term (fence_cut).
        let p = self.topology.partition(partition)?.clone();
        let primary = self.replica(&pid)?;
        let target = self.replica(&tid)?;
        let commit = primary.last()?.lsn;
        Cluster::catch_up(primary, target, commit, p.term, &mut |_| {})?;
        target.set_commit_lsn(commit, Durability::Synced)?;
        // The old primary, level and held, becomes the sync standby.
        let standby = p.primary.clone();
        let new_term = self.switch(&p, to, &standby, commit + 1)?;
        let window = fenced.elapsed().as_secs_f64() * 1e3;
        self.release_all();
        Ok(FailoverReport {
            partition,
            old_primary: p.primary.clone(),
            new_primary: to.to_string(),
            old_term: p.term,
            new_term,
            sync_standby: standby,
            lsn: commit,
            write_unavailable_ms: window,
            possible_loss_after_lsn: None,
            emergency: false,
        })
    }

    /// Emergency failover: the primary is unreachable; promote the sync standby (or, with
    /// `accept_data_loss`, the most advanced reachable replica).
    pub fn failover_emergency(
        &mut self,
        partition: u32,
        accept_data_loss: bool,
    ) -> Result<FailoverReport> {
        let started = Instant::now();
        self.topology = self.control.load()?;
        let p = self.topology.partition(partition)?.clone();
        let cands = self.candidates(partition)?;
        self.recheck(&p)?;
        let decision = emergency_promotion(&p.primary, &p.sync_standby, &cands, accept_data_loss)?;
        let (new_primary, loss) = match &decision {
            Promotion::Safe { datacenter } => (datacenter.clone(), None),
            Promotion::Lossy {
                datacenter,
                known_lsn,
            } => (datacenter.clone(), Some(*known_lsn)),
        };
        let nid = ReplicaId::new(&new_primary, partition);
        let np = self.replica(&nid)?;
        // If this replica holds a diverged tail from an even older term, cut it first.
        let mut last = np.last()?;
        if p.diverged(last) {
            let keep = p
                .term_starts
                .iter()
                .find(|s| s.term > last.term)
                .map(|s| s.first_lsn - 1)
                .unwrap_or(last.lsn);
            np.truncate_after(keep)?;
            last = np.last()?;
        }
        // Everything the promoted replica holds is now committed: the standby held every
        // acknowledged write; entries beyond them were "outcome unknown" and may stand.
        np.set_commit_lsn(last.lsn, Durability::Synced)?;
        let standby = choose_sync_standby(&new_primary, &cands, &[p.primary.as_str()])
            .unwrap_or_else(|| p.primary.clone());
        let sid = ReplicaId::new(&standby, partition);
        if let (Ok(np), Ok(s)) = (self.replica(&nid), self.replica(&sid)) {
            Cluster::catch_up(np, s, last.lsn, p.term, &mut |_| {})?;
        }
        let new_term = self.switch(&p, &new_primary, &standby, last.lsn + 1)?;
        self.release_all();
        Ok(FailoverReport {
            partition,
            old_primary: p.primary.clone(),
            new_primary,
            old_term: p.term,
            new_term,
            sync_standby: standby,
            lsn: last.lsn,
            write_unavailable_ms: started.elapsed().as_secs_f64() * 1e3,
            possible_loss_after_lsn: loss,
            emergency: true,
        })
    }

    /// The sync standby is unreachable: bring another secondary in another datacenter level,
    /// record it as the new sync standby, and only then let writes be acknowledged again.
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
        let primary = self.replica(&ReplicaId::new(&p.primary, partition))?;
        let s = self.replica(&ReplicaId::new(&new, partition))?;
        let last = primary.last()?.lsn;
        Cluster::catch_up(primary, s, last, p.term, &mut |_| {})?;
        primary.set_commit_lsn(last, Durability::Synced)?;
        let id = p.id;
        self.update_topology(|t| {
            let q = t
                .partitions
                .iter_mut()
                .find(|q| q.id == id)
                .ok_or_else(|| Error::NotFound(format!("no partition {id}")))?;
            if *q != p {
                return Err(Error::Conflict(format!(
                    "partition {id} changed while its sync standby was re-designated; retry"
                )));
            }
            q.sync_standby = new.clone();
            Ok(())
        })?;
        Ok(new)
    }
}
