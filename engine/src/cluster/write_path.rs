//! The write path (docs/design.md, "Write path"): hold the primary, the sync standby and
//! the session's secondary; settle and level them; write the entry on the primary while a
//! shipping thread writes it on the sync standby, then on the session's secondary; commit or
//! cut (`commit`). A bulk load pipelines
//! its entries (`write_pipelined`).

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{Cluster, Held, ReplicaId};
use crate::catch_up::catch_up;
use crate::directory::{Overlay, Store};
use crate::error::{Error, Result};
use crate::log::{Entry, Op};
use crate::replica::{Durability, Replica};
use crate::replica_log::ReplicaLog;
use crate::request::Note;
use crate::session::Token;
use crate::shipping::Shipper;
use crate::topology::Partition;

/// What a write holds once it may build its entry.
struct ReadyToWrite {
    /// The partition as the control plane says, read under the holds.
    p: Partition,
    primary: ReplicaId,
    standby: ReplicaId,
    /// The session's secondary, level with the primary's commit lsn.
    session: Option<(ReplicaId, Arc<dyn Held>)>,
    /// The primary's commit lsn: the entry goes at `commit + 1`.
    commit: u64,
}

impl Cluster {
    /// The replicated write path. `build` reads the primary's committed state and returns the
    /// ops of one log entry (many objects may share it: group commit). The entry is written,
    /// synced, on the primary and shipped to the sync standby in parallel (the session's
    /// secondary takes it once the primary holds it); it is acknowledged only when primary
    /// and standby both hold it durably.
    pub fn write<T>(
        &mut self,
        partition: u32,
        session_dc: Option<&str>,
        build: impl FnOnce(&Replica) -> Result<(Vec<Op>, T)>,
    ) -> Result<(T, Token)> {
        let level = self.standby_level.take();
        let w = self.ready_to_write(partition, session_dc, level)?;
        let held_primary = self.held_arc(&w.primary)?;
        let primary = local_primary(&held_primary, &w.primary)?;
        let (ops, out) = build(primary)?;
        let token = |lsn: u64, datacenter: &str| Token {
            partition,
            term: w.p.term,
            lsn,
            datacenter: datacenter.to_string(),
        };
        let session_dc = w.session.as_ref().map(|(id, _)| id.datacenter.clone());
        if ops.is_empty() {
            let dc = session_dc.as_deref().unwrap_or(&w.p.sync_standby);
            return Ok((out, token(w.commit, dc)));
        }
        let lsn = w.commit + 1;
        let entry = self.entry(w.p.term, lsn, ops);
        #[cfg(feature = "failpoints")]
        self.crash_after_primary_append(primary, &entry, w.p.term)?;
        let encoded: Arc<[Vec<u8>]> = entry.iter().map(Entry::encode).collect();
        let standby = self.held_arc(&w.standby)?;
        let st = self.ship_to_standby(standby, entry.clone(), encoded.clone(), w.p.term);
        let on_primary = primary.append_encoded(&entry, &encoded, w.p.term, Durability::Synced);
        drop(held_primary);
        // The session's secondary only once the primary holds the entry: a copy there then
        // stands on the primary too, where a writer that died settles it when the primary
        // reopens (cut and fenced, or committed). A copy on that secondary alone could outlive
        // the crash while the next write reused its (term, lsn) for another entry.
        let se = match (&on_primary, &w.session) {
            (Ok(()), Some((_, r))) => {
                Some(self.ship(1, r.clone(), entry.clone(), encoded, w.p.term))
            }
            _ => None,
        };
        let on_standby = self.answer(st, "sync standby");
        let on_session = se.map(|h| self.answer(h, "session's secondary"));
        let session_took = matches!(on_session, Some(Ok(())));
        self.settle(
            &w.p,
            w.commit,
            on_primary,
            on_standby,
            w.session
                .as_ref()
                .map(|(_, r)| (r.as_ref() as &dyn ReplicaLog, session_took)),
        )?;
        let dc = match session_took {
            true => session_dc.as_deref().unwrap_or(&w.p.sync_standby),
            false => &w.p.sync_standby,
        };
        if let Some(held) = self.held.get(&w.standby) {
            self.standby_level = Some((Arc::downgrade(held), w.p.term, lsn));
        }
        Ok((out, token(lsn, dc)))
    }

    /// Holds what a write needs, settled and level: the primary, the sync standby (brought
    /// level with the primary's commit lsn) and the session's secondary (best effort: its
    /// token makes later reads pull if it misses the write). Takes the replicas again when a
    /// failover switched the partition while this process waited for them, or after the
    /// sync standby was re-designated.
    ///
    /// `level`: the standby as this handle's last write left it (`Cluster::standby_level`).
    fn ready_to_write(
        &mut self,
        partition: u32,
        session_dc: Option<&str>,
        level: Option<(std::sync::Weak<dyn Held>, u64, u64)>,
    ) -> Result<ReadyToWrite> {
        let mut retried = false;
        loop {
            let p = self.topology.partition(partition)?.clone();
            let pid = ReplicaId::new(&p.primary, partition);
            let sid = ReplicaId::new(&p.sync_standby, partition);
            let session_id = match session_dc {
                Some(dc) => self
                    .session_read_dc(partition, dc)?
                    .filter(|d| *d != p.sync_standby && *d != p.primary)
                    .map(|d| ReplicaId::new(&d, partition)),
                None => None,
            };
            let mut want: BTreeSet<ReplicaId> = [pid.clone(), sid.clone()].into();
            want.extend(session_id.clone());
            let failed = self.hold(&want);
            // A failover may have switched the partition while this process waited for the
            // replicas: the control plane, read under the hold, decides who may write.
            if let Some(fresh) = self.reload_if_changed()? {
                if *fresh.partition(partition)? != p {
                    self.release_all();
                    continue;
                }
            }
            if let Some(e) = failed.get(&pid) {
                return Err(e.disk_full_or(format!("the primary of partition {partition} cannot take writes"), || Error::Unavailable(format!(
                    "the primary of partition {partition} ({pid}) is unreachable, nothing was written: {e}; fail over with `dirctl failover --partition {partition} --emergency`"
                ))));
            }
            if let Some(e) = failed.get(&sid) {
                // Re-designate: another secondary in another datacenter, brought level and
                // recorded in the control plane before any write is acknowledged again.
                let new = self.redesignate_standby(partition)?;
                self.notes.push(Note::Warning(format!(
                    "the sync standby {sid} of partition {partition} cannot take writes ({e}); {new} is its sync standby now"
                )));
                self.release_all();
                continue;
            }
            // A standby on another server held since an earlier write may have gone since:
            // found unreachable here, it is let go of once and held again, so that the hold
            // finds it unreachable and it is re-designated above, as an unreachable one is.
            let standby_gone = |e: &Error, this: &Cluster| {
                matches!(e, Error::Unavailable(_))
                    && this.held.get(&sid).is_some_and(|h| h.local().is_none())
            };
            if let Err(e) = self.resolve_primary(&p) {
                if !retried && standby_gone(&e, self) {
                    retried = true;
                    self.let_go(&sid);
                    continue;
                }
                return Err(e);
            }
            // Settling may have raised the term (fence_cut).
            let p = self.topology.partition(partition)?.clone();
            let primary = self.log(&pid)?;
            let standby = self.log(&sid)?;
            let commit = primary.commit_lsn()?;
            let known_level = level.as_ref().is_some_and(|(was, term, lsn)| {
                (*term, *lsn) == (p.term, commit)
                    && self
                        .held
                        .get(&sid)
                        .is_some_and(|h| std::ptr::addr_eq(Arc::as_ptr(h), was.as_ptr()))
            });
            let caught_up = match known_level {
                true => Ok(()),
                false => catch_up(primary, standby, commit, p.term, &mut |_| {}).map(|_| ()),
            };
            if let Err(e) = caught_up {
                if !retried && standby_gone(&e, self) {
                    retried = true;
                    self.let_go(&sid);
                    continue;
                }
                return Err(Error::Unavailable(format!("the sync standby {sid} cannot take writes, so no geo-durable commit is possible; nothing was written: {e}")));
            }
            let session = session_id
                .as_ref()
                .and_then(|id| self.held.get(id).map(|r| (id.clone(), r.clone())))
                .filter(|(_, r)| {
                    catch_up(primary, r.as_ref(), commit, p.term, &mut |_| {}).is_ok()
                });
            return Ok(ReadyToWrite {
                p,
                primary: pid,
                standby: sid,
                session,
                commit,
            });
        }
    }

    /// Writes a sequence of entries to one partition, each built (by `build`, on this thread)
    /// while the entry before it is being made durable on the primary and the sync standby
    /// (on their shipping threads): a bulk load's validation overlaps its writes. Each entry
    /// is built on the primary's state as it will be once the entry before it is applied.
    /// `committed` hears of each commit, in order. The first error stops it: the entries
    /// before are committed, the failed one is settled as `write` settles it (cut and
    /// fenced), and nothing after it is written. The first entry takes `write`'s path (with
    /// its settling, standby re-designation and catch-up); the session's secondary takes
    /// only that one, so later tokens name the sync standby's datacenter.
    pub fn write_pipelined<B, T>(
        &mut self,
        partition: u32,
        session_dc: Option<&str>,
        batches: impl IntoIterator<Item = B>,
        build: impl FnMut(&dyn Store, B) -> Result<(Vec<Op>, T)>,
        committed: impl FnMut(T, &Token),
    ) -> Result<()> {
        self.write_pipelined_at(partition, session_dc, None, batches, build, committed)
    }

    /// `write_pipelined` for batches whose ops were staged beforehand against the primary at
    /// lsn `staged_at`: if the primary has moved since (another writer came in while this
    /// process did not hold it), nothing is written (`Conflict`: stage again).
    pub fn write_pipelined_at<B, T>(
        &mut self,
        partition: u32,
        session_dc: Option<&str>,
        staged_at: Option<u64>,
        batches: impl IntoIterator<Item = B>,
        mut build: impl FnMut(&dyn Store, B) -> Result<(Vec<Op>, T)>,
        mut committed: impl FnMut(T, &Token),
    ) -> Result<()> {
        let mut batches = batches.into_iter();
        let Some(first) = batches.next() else {
            return Ok(());
        };
        // Built under the holds the rest of the batches keep.
        let (out, token) = self.write(partition, session_dc, |r| {
            if let Some(at) = staged_at {
                let last = r.last()?.lsn;
                if last != at {
                    return Err(Error::Conflict(format!(
                        "partition {partition} took other writes (lsn {at} to {last}) after these changes were checked; nothing was written, run it again"
                    )));
                }
            }
            build(r, first)
        })?;
        committed(out, &token);
        let p = self.topology.partition(partition)?.clone();
        let pid = ReplicaId::new(&p.primary, partition);
        let (held_primary, standby) = (
            self.held_arc(&pid)?,
            self.held_arc(&ReplicaId::new(&p.sync_standby, partition))?,
        );
        let primary = local_primary(&held_primary, &pid)?;
        let mut commit = primary.commit_lsn()?;
        let token = |lsn: u64| Token {
            partition,
            term: p.term,
            lsn,
            datacenter: p.sync_standby.clone(),
        };
        // The entry in flight: its answers from the primary and the standby, and what its
        // build returned.
        type Answer = std::sync::mpsc::Receiver<Result<()>>;
        let mut in_flight: Option<(Arc<[Entry]>, T, Answer, Answer)> = None;
        loop {
            let built = batches.next().map(|b| {
                let ops = in_flight.as_ref().map_or(&[][..], |f| &f.0[0].ops[..]);
                build(&Overlay::new(primary, ops), b)
            });
            if let Some((_, out, on_primary, on_standby)) = in_flight.take() {
                let on_primary = self.answer(on_primary, "primary");
                let on_standby = self.answer(on_standby, "sync standby");
                self.settle(&p, commit, on_primary, on_standby, None)?;
                commit += 1;
                committed(out, &token(commit));
            }
            let Some(built) = built else {
                return Ok(());
            };
            let (ops, out) = built?;
            if ops.is_empty() {
                committed(out, &token(commit));
                continue;
            }
            // As in `write`: the control plane, read under the holds, decides who may write.
            if let Some(fresh) = self.reload_if_changed()? {
                if *fresh.partition(partition)? != p {
                    return Err(Error::Unavailable(format!(
                        "partition {partition} changed (a failover?) while this process wrote to it: entries through lsn {commit} are committed, nothing after them was written"
                    )));
                }
            }
            let entry = self.entry(p.term, commit + 1, ops);
            let encoded: Arc<[Vec<u8>]> = entry.iter().map(Entry::encode).collect();
            let on_standby =
                self.ship_to_standby(standby.clone(), entry.clone(), encoded.clone(), p.term);
            let on_primary =
                self.shippers()[1].ship(held_primary.clone(), entry.clone(), encoded, p.term);
            in_flight = Some((entry, out, on_primary, on_standby));
        }
    }

    /// A new entry, stamped with the clock, shared by the threads that ship it.
    fn entry(&self, term: u64, lsn: u64, ops: Vec<Op>) -> Arc<[Entry]> {
        Arc::from(vec![Entry {
            term,
            lsn,
            time_ms: self.options.clock.now_ms(),
            ops,
        }])
    }

    fn shippers(&mut self) -> &[Shipper; 2] {
        self.shippers
            .get_or_insert_with(|| [Shipper::start(), Shipper::start()])
    }

    /// Ships an entry to the sync standby (shipper 0). Failpoint `standby-fails-from-lsn:N`:
    /// from lsn N on, the standby answers with an error and writes nothing (for tests of
    /// settling, also in the middle of a pipelined write).
    fn ship_to_standby(
        &mut self,
        standby: Arc<dyn Held>,
        entries: Arc<[Entry]>,
        encoded: Arc<[Vec<u8>]>,
        term: u64,
    ) -> std::sync::mpsc::Receiver<Result<()>> {
        #[cfg(feature = "failpoints")]
        {
            let fail_from = self
                .options
                .failpoint
                .as_deref()
                .and_then(|f| f.strip_prefix("standby-fails-from-lsn:"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(n) = fail_from.filter(|n| entries.iter().any(|e| e.lsn >= *n)) {
                let (tx, rx) = std::sync::mpsc::channel();
                let _ = tx.send(Err(Error::Storage(format!(
                    "failpoint standby-fails-from-lsn:{n}"
                ))));
                return rx;
            }
        }
        self.ship(0, standby, entries, encoded, term)
    }

    /// Ships an entry to `replica`: sent at once when it is on another server
    /// (`Held::start_append`), on shipping thread `shipper` otherwise.
    fn ship(
        &mut self,
        shipper: usize,
        replica: Arc<dyn Held>,
        entries: Arc<[Entry]>,
        encoded: Arc<[Vec<u8>]>,
        term: u64,
    ) -> std::sync::mpsc::Receiver<Result<()>> {
        match replica.start_append(&entries, &encoded, term) {
            Some(answer) => answer,
            None => self.shippers()[shipper].ship(replica, entries, encoded, term),
        }
    }

    /// Failpoints `crash-after-primary-append` (abort) and `vanish-after-primary-append`:
    /// the entry lands on the primary alone, unsettled.
    #[cfg(feature = "failpoints")]
    fn crash_after_primary_append(
        &mut self,
        primary: &Replica,
        entry: &[Entry],
        term: u64,
    ) -> Result<()> {
        match self.options.failpoint.as_deref() {
            Some("crash-after-primary-append") => {
                primary.append(entry, term, Durability::Synced)?;
                std::process::abort();
            }
            Some("vanish-after-primary-append") => {
                // In-process stand-in for the same crash: the entry stays on the primary
                // only, unsettled, and this handle lets go of every replica as a dead process would.
                primary.append(entry, term, Durability::Synced)?;
                self.release_all();
                Err(Error::OutcomeUnknown(
                    "failpoint vanish-after-primary-append".into(),
                ))
            }
            _ => Ok(()),
        }
    }

    /// A shipped entry's answer. A replica whose disk stalls must not hang the writer: past
    /// the lock timeout its write counts as failed (and is fenced if it lands later).
    fn answer(&self, rx: std::sync::mpsc::Receiver<Result<()>>, what: &str) -> Result<()> {
        let wait = self.options.lock_timeout;
        match rx.recv_timeout(wait) {
            Ok(r) => r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(Error::Storage(format!(
                "the {what} did not make the write durable within {} ms",
                wait.as_millis()
            ))),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                Err(Error::Storage(format!("the {what} shipping thread died")))
            }
        }
    }
}

/// The primary a write builds on and appends to: a replica opened in this process (in the
/// server mode, writes go to the server that owns the primary).
fn local_primary<'a>(held: &'a Arc<dyn Held>, id: &ReplicaId) -> Result<&'a Replica> {
    held.local().ok_or_else(|| {
        Error::Unavailable(format!(
            "the primary {id} is on another server; nothing was written here: send the write to its server"
        ))
    })
}
