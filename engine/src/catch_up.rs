//! Catch-up: bringing a secondary level with the primary's commit lsn over `ReplicaLog`.
//!
//! The decision is pure (`catch_up_plan`: nothing to do, cut a diverged tail then ship,
//! re-seed from a checkpoint, or refuse a stale view); `catch_up` reads the positions,
//! asks it, and carries it out.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::log::{agreement_point, Position};
use crate::replica_log::ReplicaLog;

/// Entries shipped per synced batch during catch-up.
pub const CATCH_UP_BATCH_ENTRIES: usize = 512;

/// What catching a secondary up did: entries shipped, and entries cut off because no
/// primary committed them (a fenced primary's tail, a crashed writer's leftovers).
#[derive(Clone, Debug, Default, Serialize)]
pub struct CatchUp {
    pub shipped: u64,
    pub cut: Vec<Position>,
}

/// What catching a secondary up takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// The secondary ends at the commit lsn with the primary's entry there.
    Level,
    /// Cut the secondary's entries above `cut_after` (if any), then ship `from..=to` (maybe
    /// an empty range).
    Ship {
        cut_after: Option<u64>,
        from: u64,
        to: u64,
    },
    /// The primary no longer retains entry `needs_lsn`: re-seed from a checkpoint.
    Reseed { needs_lsn: u64 },
    /// The secondary holds a term above the partition's: the caller's view of the control
    /// plane is stale; touch nothing.
    Fenced { secondary_term: u64 },
}

/// Whether catching up from `agreement` to `commit` needs entries below the primary's first
/// retained lsn.
pub fn needs_reseed(agreement: u64, commit: u64, primary_first_retained: Option<u64>) -> bool {
    agreement < commit && primary_first_retained.is_some_and(|first| first > agreement + 1)
}

/// The catch-up decision. `agreement` is where the secondary's log and the primary's
/// committed log last hold the same entry (`log::agreement_point`, at most `commit`).
/// Pure. A stale view is refused first (never cut entries of a term newer than the
/// partition's: not the primary's last entry's term, since a primary promoted with
/// `--accept-data-loss` may hold no entry of its own term yet while the replicas that come
/// back hold the lost entries of the term before); a re-seed is decided before any cut,
/// since a cut may itself need entries the primary pruned.
pub fn catch_up_plan(
    secondary_last: Position,
    agreement: u64,
    commit: u64,
    primary_first_retained: Option<u64>,
    partition_term: u64,
) -> Plan {
    assert!(
        agreement <= commit && agreement <= secondary_last.lsn,
        "agreement {agreement} past commit {commit} or secondary {secondary_last:?}"
    );
    if secondary_last.term > partition_term {
        return Plan::Fenced {
            secondary_term: secondary_last.term,
        };
    }
    if needs_reseed(agreement, commit, primary_first_retained) {
        return Plan::Reseed {
            needs_lsn: agreement + 1,
        };
    }
    let cut_after = (agreement < secondary_last.lsn).then_some(agreement);
    if cut_after.is_none() && agreement >= commit {
        return Plan::Level;
    }
    Plan::Ship {
        cut_after,
        from: agreement + 1,
        to: commit,
    }
}

/// The highest lsn at which `secondary` holds the same entry as the primary (up to `commit`).
pub fn agreement(primary: &dyn ReplicaLog, secondary: &dyn ReplicaLog, commit: u64) -> Result<u64> {
    agreement_below(primary, secondary, secondary.last()?, commit)
}

/// `agreement`, at or below the secondary's `last` as the caller read it: another writer
/// (the server mode's replicator beside a read's pull) may append meanwhile, and the plan
/// is made on what was read.
fn agreement_below(
    primary: &dyn ReplicaLog,
    secondary: &dyn ReplicaLog,
    last: Position,
    commit: u64,
) -> Result<u64> {
    // The secondary's last entry's term is known (it was just read): one call fewer in the
    // common case, where the agreement is the secondary's last entry. (Its log changing
    // meanwhile is caught by the append's own continuity check.)
    let at = agreement_point(
        last,
        |l| match l == last.lsn {
            true => Ok(Some(last.term)),
            false => secondary.term_at(l),
        },
        |l| {
            if l <= commit {
                primary.term_at(l)
            } else {
                Ok(None)
            }
        },
    )?;
    Ok(at.min(last.lsn).min(commit))
}

/// Whether catching `secondary` up would need entries the primary pruned.
pub fn behind_retained_log(
    primary: &dyn ReplicaLog,
    secondary: &dyn ReplicaLog,
    commit: u64,
) -> Result<bool> {
    let Some(first) = primary.first_retained_lsn()? else {
        return Ok(false);
    };
    let agree = agreement(primary, secondary, commit)?;
    Ok(needs_reseed(agree, commit, Some(first)))
}

/// Brings `secondary` level with the primary's commit lsn, as the writer of partition term
/// `term`: cuts what diverged, ships the rest (synced batches). `progress` hears of each batch.
pub fn catch_up(
    primary: &dyn ReplicaLog,
    secondary: &dyn ReplicaLog,
    commit: u64,
    term: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<CatchUp> {
    let last = secondary.last()?;
    catch_up_from(primary, secondary, last, commit, term, progress)
}

/// `catch_up`, the secondary's last position `last` read already (one call fewer).
pub fn catch_up_from(
    primary: &dyn ReplicaLog,
    secondary: &dyn ReplicaLog,
    last: Position,
    commit: u64,
    term: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<CatchUp> {
    // The write path's common case, without reading any entry: already level.
    if last == primary.last()? && last.lsn == commit {
        return Ok(CatchUp::default());
    }
    let agree = if last.term > term {
        0 // Fenced whatever the agreement: not worth reading the logs for.
    } else {
        agreement_below(primary, secondary, last, commit)?
    };
    let plan = catch_up_plan(last, agree, commit, primary.first_retained_lsn()?, term);
    let (cut_after, from, to) = match plan {
        Plan::Level => return Ok(CatchUp::default()),
        Plan::Fenced { secondary_term } => {
            return Err(Error::Fenced(format!(
                "{} holds term {secondary_term} above partition term {term} that names {} primary: the control plane read is stale; run the command again",
                secondary.name(),
                primary.name()
            )))
        }
        Plan::Reseed { needs_lsn } => {
            return Err(Error::Unavailable(format!(
                "{} is behind the primary's retained log (needs lsn {needs_lsn}); `dirctl sync` re-seeds it from a checkpoint",
                secondary.name(),
            )))
        }
        Plan::Ship { cut_after, from, to } => (cut_after, from, to),
    };
    let mut cut = Vec::new();
    if let Some(after) = cut_after {
        cut = secondary
            .truncate_after(after, term)?
            .iter()
            .map(|e| e.position())
            .collect();
    }
    let mut shipped = 0;
    let mut from = from;
    while from <= to {
        let end = (from + CATCH_UP_BATCH_ENTRIES as u64 - 1).min(to);
        let batch = primary.entries(from, end)?;
        secondary.append(&batch, term)?;
        shipped += batch.len() as u64;
        progress(batch.len() as u64);
        from = end + 1;
    }
    Ok(CatchUp { shipped, cut })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::log::Entry;
    use crate::memlog::MemLog;

    fn pos(term: u64, lsn: u64) -> Position {
        Position { term, lsn }
    }

    #[test]
    fn the_plan_for_each_case() {
        let ship = |cut_after, from, to| Plan::Ship {
            cut_after,
            from,
            to,
        };
        // (secondary last, agreement, commit, primary's first retained, partition term, plan)
        let table = [
            (pos(0, 0), 0, 0, None, 1, Plan::Level),
            (pos(2, 5), 5, 5, Some(1), 2, Plan::Level),
            (pos(0, 0), 0, 3, None, 1, ship(None, 1, 3)),
            (pos(1, 2), 2, 7, Some(1), 2, ship(None, 3, 7)),
            (pos(1, 2), 2, 7, Some(3), 2, ship(None, 3, 7)),
            // A diverged tail (or one above the commit) is cut first.
            (pos(1, 6), 4, 7, None, 2, ship(Some(4), 5, 7)),
            (pos(2, 6), 5, 5, None, 2, ship(Some(5), 6, 5)),
            (pos(1, 3), 0, 2, None, 2, ship(Some(0), 1, 2)),
            // The primary pruned what the secondary needs: re-seed, before any cut.
            (pos(1, 2), 2, 7, Some(4), 2, Plan::Reseed { needs_lsn: 3 }),
            (pos(1, 6), 1, 7, Some(3), 2, Plan::Reseed { needs_lsn: 2 }),
            (pos(0, 0), 0, 3, Some(2), 1, Plan::Reseed { needs_lsn: 1 }),
            // Level, whatever was pruned.
            (pos(1, 7), 7, 7, Some(9), 1, Plan::Level),
            // A term above the partition's: the caller's view is stale.
            (pos(3, 6), 0, 7, None, 2, Plan::Fenced { secondary_term: 3 }),
            (
                pos(3, 6),
                6,
                7,
                Some(9),
                2,
                Plan::Fenced { secondary_term: 3 },
            ),
        ];
        for (last, agree, commit, first, term, want) in table {
            assert_eq!(
                catch_up_plan(last, agree, commit, first, term),
                want,
                "{last:?} agree {agree} commit {commit} first {first:?} term {term}"
            );
        }
    }

    fn entry(term: u64, lsn: u64) -> Entry {
        crate::log::put_entry(term, lsn, b"k", format!("{term}/{lsn}").as_bytes(), None)
    }

    fn log_of(name: &str, terms: &[u64]) -> MemLog {
        let log = MemLog::new(name);
        for (lsn, t) in (1..).zip(terms) {
            log.append(&[entry(*t, lsn)], *t).unwrap();
        }
        log
    }

    #[test]
    fn catch_up_cuts_a_diverged_tail_and_ships_the_committed_rest() {
        let primary = log_of("p", &[1, 1, 2, 2, 3]);
        let secondary = log_of("s", &[1, 1, 1, 1]);
        let mut batches = 0;
        let done = catch_up(&primary, &secondary, 4, 3, &mut |_| batches += 1).unwrap();
        assert_eq!(done.cut, [pos(1, 4), pos(1, 3)]);
        assert_eq!(done.shipped, 2);
        assert_eq!(batches, 1);
        assert_eq!(secondary.last().unwrap(), pos(2, 4));
        assert_eq!(secondary.get(b"k").unwrap(), Some(b"2/4".to_vec()));
        assert_eq!(
            secondary.seen_term().unwrap(),
            3,
            "shipped by the term-3 writer"
        );
    }

    #[test]
    fn catch_up_refuses_a_stale_view_and_asks_for_a_reseed() {
        let primary = log_of("p", &[1, 1, 2]);
        let newer = log_of("s", &[1, 1, 3]);
        assert!(matches!(
            catch_up(&primary, &newer, 3, 2, &mut |_| {}),
            Err(Error::Fenced(_))
        ));
        assert_eq!(newer.last().unwrap(), pos(3, 3), "nothing cut");
        // A replica that has seen a newer term than the writer's refuses what it ships.
        let told = log_of("t", &[1]);
        told.observe_term(5).unwrap();
        assert!(matches!(
            catch_up(&primary, &told, 3, 2, &mut |_| {}),
            Err(Error::Fenced(_))
        ));
        assert_eq!(told.last().unwrap(), pos(1, 1));
        primary.prune_log_through(1).unwrap();
        let empty = MemLog::new("e");
        assert!(behind_retained_log(&primary, &empty, 3).unwrap());
        assert!(matches!(
            catch_up(&primary, &empty, 3, 2, &mut |_| {}),
            Err(Error::Unavailable(_))
        ));
    }
}
