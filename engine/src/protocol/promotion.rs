//! Failover decisions: who may be promoted, which tail it cuts, and who becomes the sync
//! standby. `failover` gathers the facts (reachable replicas and their positions), asks
//! these functions, and carries out the answer.

use crate::error::{Error, Result};
use crate::log::Position;
use crate::topology::Partition;

/// What is known of one replica of a partition at failover time.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub datacenter: String,
    /// None when the replica is unreachable (lost folder, lock timeout, failed probe) or damaged.
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
            "the primary {primary} and the sync standby {sync_standby} are both unreachable or damaged: no reachable replica is proven to hold every acknowledged write; \
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

/// The lsn to cut a replica whose last entry is `last` back to, when it holds a fenced
/// primary's tail (entries of an older term at or past the start of a later term); `None`
/// when it holds none. The earliest later start counts (after a lossy promotion a later
/// term may start below an earlier one), as in `Partition::diverged`.
pub fn tail_to_cut(p: &Partition, last: Position) -> Option<u64> {
    p.term_starts
        .iter()
        .filter(|s| s.term > last.term)
        .map(|s| s.first_lsn)
        .min()
        .filter(|first| last.lsn >= *first)
        .map(|first| first - 1)
}

/// What a planned failover to another datacenter does, once the target holds everything
/// the old primary held (`level_lsn`, its last lsn): the target commits through it and
/// takes over in the next term from `level_lsn + 1`, with the old primary (level, held) as
/// its sync standby. Zero loss.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedSwitch {
    pub promote: String,
    pub sync_standby: String,
    pub commit_lsn: u64,
    pub first_lsn: u64,
}

/// A planned failover of `p` to `to` (a datacenter of the cluster) once the target is
/// level at `level_lsn`; `Conflict` when `to` is already the primary.
pub fn planned_switch(p: &Partition, to: &str, level_lsn: u64) -> Result<PlannedSwitch> {
    if p.primary == to {
        return Err(Error::Conflict(format!(
            "{to} is already the primary of partition {}",
            p.id
        )));
    }
    Ok(PlannedSwitch {
        promote: to.to_string(),
        sync_standby: p.primary.clone(),
        commit_lsn: level_lsn,
        first_lsn: level_lsn + 1,
    })
}

/// What an emergency failover does once `emergency_promotion` chose.
#[derive(Clone, Debug, PartialEq)]
pub struct EmergencyPlan {
    pub promote: String,
    /// With `--accept-data-loss`: acknowledged writes above this lsn may be lost.
    pub possible_loss_after_lsn: Option<u64>,
    /// Cut the promoted replica back to this lsn first (it holds a fenced tail).
    pub cut_after: Option<u64>,
    /// The new sync standby, brought level before the switch: the most advanced reachable
    /// replica in another datacenter, else (none reachable) the old primary.
    pub sync_standby: String,
}

/// Emergency failover of `p`, given every replica's reachability and position.
pub fn emergency_plan(
    p: &Partition,
    replicas: &[Candidate],
    accept_data_loss: bool,
) -> Result<EmergencyPlan> {
    let (promote, possible_loss_after_lsn) =
        match emergency_promotion(&p.primary, &p.sync_standby, replicas, accept_data_loss)? {
            Promotion::Safe { datacenter } => (datacenter, None),
            Promotion::Lossy {
                datacenter,
                known_lsn,
            } => (datacenter, Some(known_lsn)),
        };
    let last = replicas
        .iter()
        .find(|c| c.datacenter == promote)
        .and_then(|c| c.last);
    Ok(EmergencyPlan {
        cut_after: last.and_then(|last| tail_to_cut(p, last)),
        sync_standby: choose_sync_standby(&promote, replicas, &[p.primary.as_str()])
            .unwrap_or_else(|| p.primary.clone()),
        promote,
        possible_loss_after_lsn,
    })
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

    fn with_starts(starts: &[(u64, u64)]) -> Partition {
        crate::topology::tests::partition("p", "s", starts)
    }

    #[test]
    fn the_tail_to_cut_is_exactly_what_diverged() {
        for starts in [&[(1, 1), (2, 5), (3, 9)][..], &[(1, 1), (2, 50), (3, 20)]] {
            let p = with_starts(starts);
            for term in 0..=4 {
                for lsn in 0..=60 {
                    let last = Position { term, lsn };
                    let cut = tail_to_cut(&p, last);
                    assert_eq!(cut.is_some(), p.diverged(last), "{starts:?} {last:?}");
                    if let Some(keep) = cut {
                        assert!(keep < lsn && !p.diverged(Position { term, lsn: keep }));
                    }
                }
            }
        }
        let lossy = with_starts(&[(1, 1), (2, 50), (3, 20)]);
        assert_eq!(tail_to_cut(&lossy, Position { term: 1, lsn: 30 }), Some(19));
    }

    #[test]
    fn a_planned_switch_makes_the_old_primary_the_standby_from_the_next_lsn() {
        let p = with_starts(&[(1, 1), (2, 5)]);
        assert_eq!(
            planned_switch(&p, "o", 9).expect("switch"),
            PlannedSwitch {
                promote: "o".into(),
                sync_standby: "p".into(),
                commit_lsn: 9,
                first_lsn: 10,
            }
        );
        assert!(matches!(
            planned_switch(&p, "p", 9),
            Err(Error::Conflict(_))
        ));
    }

    #[test]
    fn emergency_plan_promotes_cuts_and_names_the_new_standby() {
        let p = with_starts(&[(1, 1), (2, 5)]);
        let safe = emergency_plan(
            &p,
            &[c("p", None), c("s", Some((2, 9))), c("o", Some((1, 6)))],
            false,
        )
        .expect("plan");
        assert_eq!(
            safe,
            EmergencyPlan {
                promote: "s".into(),
                possible_loss_after_lsn: None,
                cut_after: None,
                sync_standby: "o".into(),
            }
        );
        let lossy = emergency_plan(
            &p,
            &[c("p", None), c("s", None), c("o", Some((1, 6)))],
            true,
        )
        .expect("plan");
        assert_eq!(
            lossy,
            EmergencyPlan {
                promote: "o".into(),
                possible_loss_after_lsn: Some(6),
                cut_after: Some(4),
                // No other replica reachable: the old primary, caught up when it returns.
                sync_standby: "p".into(),
            }
        );
    }
}
