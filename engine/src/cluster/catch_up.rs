//! Catch-up: a secondary brought level with the primary's commit lsn. (Moved verbatim from
//! cluster.rs; the log's owner moves it on, with the shipping threads.)

use std::sync::Arc;

use serde::Serialize;

use super::Cluster;
use crate::error::{Error, Result};
use crate::log::{agreement_point, Entry, Position};
use crate::replica::{Durability, Replica};

/// Entries shipped per synced batch during catch-up.
const CATCH_UP_BATCH_ENTRIES: usize = 512;

/// A thread that appends shipped entries to a replica, so that the primary's own synced
/// write runs at the same time.
pub(super) struct Shipper {
    jobs: std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>,
}

impl Shipper {
    pub(super) fn start() -> Shipper {
        let (jobs, rx) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        std::thread::spawn(move || {
            for job in rx {
                job();
            }
        });
        Shipper { jobs }
    }

    /// Appends `entries` (synced) to `replica` on the shipper's thread; the answer comes on the receiver.
    pub(super) fn ship(
        &self,
        replica: Arc<Replica>,
        entries: Arc<[Entry]>,
        encoded: Arc<[Vec<u8>]>,
    ) -> std::sync::mpsc::Receiver<Result<()>> {
        let (tx, rx) = std::sync::mpsc::channel();
        let job = Box::new(move || {
            let r = replica.append_encoded(&entries, &encoded, Durability::Synced);
            // Let go of the replica before answering: the caller may release and reopen it.
            drop(replica);
            let _ = tx.send(r);
        });
        // A dead shipper drops the job, and with it the sender: the receiver then reports it.
        let _ = self.jobs.send(job);
        rx
    }
}

/// What catching a secondary up did: entries shipped, and entries cut off because no
/// primary committed them (a fenced primary's tail, a crashed writer's leftovers).
#[derive(Clone, Debug, Default, Serialize)]
pub struct CatchUp {
    pub shipped: u64,
    pub cut: Vec<Position>,
}

impl Cluster {
    /// The highest lsn at which `secondary` holds the same entry as the primary (up to `commit`).
    pub(super) fn agreement(primary: &Replica, secondary: &Replica, commit: u64) -> Result<u64> {
        agreement_point(
            secondary.last()?,
            |l| secondary.term_at(l),
            |l| {
                if l <= commit {
                    primary.term_at(l)
                } else {
                    Ok(None)
                }
            },
        )
    }

    /// Whether catching `secondary` up would need entries the primary pruned.
    pub(super) fn behind_retained_log(primary: &Replica, secondary: &Replica, commit: u64) -> Result<bool> {
        let Some(first) = primary.first_log_lsn()? else {
            return Ok(false);
        };
        let agree = Self::agreement(primary, secondary, commit)?;
        Ok(agree < commit && first > agree + 1)
    }

    /// Brings `secondary` level with the primary's commit lsn: cuts what diverged, ships the rest.
    pub(crate) fn catch_up(
        primary: &Replica,
        secondary: &Replica,
        commit: u64,
        term: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<CatchUp> {
        let last = secondary.last()?;
        let primary_last = primary.last()?;
        if last == primary_last && last.lsn == commit {
            return Ok(CatchUp::default());
        }
        // A backstop against a stale view of the control plane: never cut entries of a term
        // newer than the partition's term there. (Not the primary's last entry's term: a
        // primary promoted with `--accept-data-loss` may hold no entry of its own term yet,
        // while the replicas that come back hold the lost entries of the term before it.)
        if last.term > term {
            return Err(Error::Fenced(format!(
                "{} holds term {} above partition term {} that names {} primary: the control plane read is stale; run the command again",
                secondary.name(),
                last.term,
                term,
                primary.name()
            )));
        }
        let agree = Self::agreement(primary, secondary, commit)?;
        // Entries the primary no longer retains: re-seed instead (checked before cutting
        // anything, since a cut may itself need entries this replica pruned).
        if agree < commit
            && primary
                .first_log_lsn()?
                .is_some_and(|first| first > agree + 1)
        {
            return Err(Error::Unavailable(format!(
                "{} is behind the primary's retained log (needs lsn {}); `dirctl sync` re-seeds it from a checkpoint",
                secondary.name(),
                agree + 1
            )));
        }
        let mut cut = Vec::new();
        if agree < last.lsn {
            cut = secondary
                .truncate_after(agree)?
                .iter()
                .map(|e| e.position())
                .collect();
        }
        let mut shipped = 0;
        let mut from = agree + 1;
        while from <= commit {
            let to = (from + CATCH_UP_BATCH_ENTRIES as u64 - 1).min(commit);
            let batch = primary.entries(from, to)?;
            secondary.append(&batch, Durability::Synced)?;
            shipped += batch.len() as u64;
            progress(batch.len() as u64);
            from = to + 1;
        }
        Ok(CatchUp { shipped, cut })
    }
}
