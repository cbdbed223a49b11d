//! Commit and cut, carried out: the protocol's decisions (`protocol::commit`) applied to the
//! held replicas and the control plane. Settles an entry once its replicas answered, and
//! the entries a crashed writer left above a reopened primary's commit lsn.

use std::sync::Arc;

use super::{Cluster, Held, ReplicaId};
use crate::error::{Error, Result};
use crate::protocol::commit::{
    carry_out, settle_in_doubt, settle_reply, Command, InDoubt, Outcome, Side,
};
use crate::replica::Access;
use crate::replica_log::ReplicaLog;
use crate::topology::Partition;

impl Cluster {
    /// Settles what a crashed writer left above the primary of `partition`'s commit lsn
    /// (the server mode: its server, restarted after SIGKILL, before it serves reads).
    /// Nothing to do when the primary is settled or on another server.
    pub fn settle_primary(&mut self, partition: u32) -> Result<()> {
        let (p, ..) = self.hold_partition(partition)?;
        self.resolve_primary(&p)
    }

    /// Settles entries a crashed writer left above the primary's commit lsn: those the sync
    /// standby holds are committed, the rest are cut off.
    pub(crate) fn resolve_primary(&mut self, p: &Partition) -> Result<()> {
        let primary = self.held_arc(&ReplicaId::new(&p.primary, p.id))?;
        // Only the process that owns the primary settles it: seen from another server, an
        // entry above its commit lsn may be a write in flight there.
        if primary.local().is_none() {
            return Ok(());
        }
        let last = primary.last()?;
        let commit = primary.commit_lsn()?;
        let terms = match self.held.get(&ReplicaId::new(&p.sync_standby, p.id)) {
            Some(standby) if last.lsn > commit => Some(
                (commit + 1..=last.lsn)
                    .map(|l| Ok((primary.term_at(l)?, standby.term_at(l)?)))
                    .collect::<Result<Vec<_>>>()?,
            ),
            _ => None,
        };
        match settle_in_doubt(p.term, last, commit, terms.as_deref()) {
            InDoubt::Settled => Ok(()),
            InDoubt::AboveTerm => Err(Error::Fenced(format!(
                "replica {} holds term {} above the control plane's term {} for partition {}",
                primary.name(),
                last.term,
                p.term,
                p.id
            ))),
            InDoubt::NeedsStandby => Err(Error::Unavailable(format!(
                "partition {} has entries above its commit lsn {commit} and its sync standby {} is unreachable to settle them",
                p.id, p.sync_standby
            ))),
            InDoubt::Settle { commands, .. } => {
                carry_out(&InDoubt::steps(&commands), |c| self.execute(p, c, None))
            }
        }
    }

    /// Carries out one command of the protocol on partition `p`'s replicas; `session` is the
    /// session's secondary a write was shipped to.
    pub(super) fn execute(
        &mut self,
        p: &Partition,
        command: Command,
        session: Option<&dyn ReplicaLog>,
    ) -> Result<()> {
        let on = |side: Side| -> Result<Arc<dyn Held>> {
            match side {
                Side::Primary => self.held_arc(&ReplicaId::new(&p.primary, p.id)),
                Side::Standby => self.held_arc(&ReplicaId::new(&p.sync_standby, p.id)),
                Side::Session => Err(Error::Unavailable("no session's secondary".into())),
            }
        };
        match command {
            Command::CutAfter {
                on: Side::Session,
                lsn,
            } => match session {
                Some(r) => r.truncate_after(lsn, p.term).map(|_| ()),
                None => Ok(()),
            },
            Command::CutAfter { on: side, lsn } => {
                on(side)?.truncate_after(lsn, p.term).map(|_| ())
            }
            Command::NoteCommit { lsn } => on(Side::Primary)?.note_commit_lsn(lsn),
            Command::RecordCommit { lsn } => on(Side::Primary)?.set_commit_lsn(lsn),
            Command::FenceFrom { first_lsn } => self.fence_cut(p, first_lsn),
        }
    }

    /// Entries from `first_cut_lsn` on were cut off the primary without being committed:
    /// raise the term, starting there, so that a copy left on any other replica (same term,
    /// same lsn) reads as a fenced tail and is cut before it is served, shipped or promoted.
    /// Otherwise a later entry could reuse the (term, lsn) of the cut one.
    pub(crate) fn fence_cut(&mut self, p: &Partition, first_cut_lsn: u64) -> Result<()> {
        self.update_topology(|t| {
            t.change_partition(
                p,
                |_| format!("partition {} changed while an uncommitted entry was cut; run the command again", p.id),
                |q| q.fence_from(first_cut_lsn),
            )
        })?;
        self.observe_term(p.id, p.term + 1);
        Ok(())
    }

    /// Tells the partition's replicas this process holds for writes that its term is now
    /// `term` (fencing as data: a stale writer of an older term is refused there). Called
    /// once the control plane has the new term. Best effort: the control plane's term is
    /// what fences a writer first, and a replica that misses this takes the term with the
    /// next append or cut.
    pub(crate) fn observe_term(&self, partition: u32, term: u64) {
        for (id, r) in &self.held {
            if id.partition == partition && r.access() == Access::Write {
                let _ = r.observe_term(term);
            }
        }
    }

    /// After taking holds, the control plane decides: if `p` changed meanwhile (a failover,
    /// a re-designation), this handle takes the new topology and the caller must start again.
    pub(crate) fn recheck(&mut self, p: &Partition) -> Result<()> {
        if let Some(fresh) = self.reload_if_changed()? {
            let now = fresh.partition(p.id)?.clone();
            if now != *p {
                return Err(Error::Conflict(format!(
                    "partition {} changed while this command waited for its replicas (now primary {}, term {}); run it again",
                    p.id, now.primary, now.term
                )));
            }
        }
        Ok(())
    }

    /// Settles the entry at `commit + 1` from its replicas' answers. Durable on the primary
    /// and the sync standby: committed (`Ok`). Otherwise it is cut off wherever it landed
    /// and fenced, and the error says whether anything may have been applied. `session` is
    /// the session's secondary, with whether it took the entry.
    pub(super) fn settle(
        &mut self,
        p: &Partition,
        commit: u64,
        on_primary: Result<()>,
        on_standby: Result<()>,
        session: Option<(&dyn ReplicaLog, bool)>,
    ) -> Result<()> {
        let pid = ReplicaId::new(&p.primary, p.id);
        let sid = ReplicaId::new(&p.sync_standby, p.id);
        let plan = settle_reply(
            commit,
            on_primary.is_ok(),
            on_standby.is_ok(),
            session.map(|(_, took)| took),
        );
        let carried = carry_out(&plan.steps, |c| self.execute(p, c, session.map(|(r, _)| r)));
        let why = |r: Result<()>| {
            r.err()
                .map_or_else(|| "no error".to_string(), |e| e.to_string())
        };
        match (plan.outcome(carried.is_ok()), on_primary, on_standby) {
            (Outcome::Committed, ..) => Ok(()),
            (_, Err(primary_err), _) => Err(Error::OutcomeUnknown(format!(
                "writing to the primary {pid} failed mid-commit: {primary_err}"
            ))),
            (Outcome::NothingApplied, Ok(()), standby) => Err(Error::Unavailable(format!(
                "the sync standby {sid} failed to make the write durable, so it was cut off the primary and fenced everywhere; nothing was applied: {}",
                why(standby)
            ))),
            (Outcome::OutcomeUnknown, Ok(()), standby) => Err(Error::OutcomeUnknown(format!(
                "the sync standby {sid} failed ({}) and cutting the write off failed too ({})",
                why(standby),
                why(carried)
            ))),
        }
    }
}
