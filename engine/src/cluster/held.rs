//! What a cluster handle holds: a replica opened in this process from the cluster root (the
//! embedded mode), or one that an `Opener` gives (the server mode: a server's own replicas,
//! opened once for its whole life, and replicas on other servers, reached over the network).
//!
//! Replication (writes, settling, catch-up, re-designation) needs only `ReplicaLog`, so it
//! works on both. What only a replica in this process can do (read its data, a checkpoint,
//! a scrub) goes through `Held::local`.

use std::sync::mpsc::Receiver;
use std::sync::Arc;

use super::ReplicaId;
use crate::error::Result;
use crate::log::Entry;
use crate::replica::{Access, Replica};
use crate::replica_log::ReplicaLog;

/// A replica a cluster handle holds.
pub trait Held: ReplicaLog + Send + Sync + std::any::Any {
    /// The replica itself when it is opened in this process; `None` on another server.
    fn local(&self) -> Option<&Replica>;
    /// How it is held (a remote replica takes whatever its server allows).
    fn access(&self) -> Access {
        Access::Write
    }
    /// Notes a commit in memory only (`Replica::note_commit_lsn`); recorded at once elsewhere.
    fn note_commit_lsn(&self, lsn: u64) -> Result<()> {
        self.set_commit_lsn(lsn)
    }
    /// Before letting go: a commit lsn noted in memory reaches the replica's `meta`.
    fn persist_commit(&self) -> Result<()> {
        Ok(())
    }
    /// Before letting go: background work stops, so that the next holder does not wait.
    fn stop_background_work(&self) {}
    /// Starts appending `entries` (synced; `encoded[i]` is `entries[i].encode()`) as the
    /// writer of `term` without a thread of the caller's: the answer comes on the receiver.
    /// `None` (a replica of this process): the caller ships it on a shipping thread. A
    /// replica on another server sends it at once, saving that thread's two hand-offs.
    fn start_append(
        &self,
        _entries: &Arc<[Entry]>,
        _encoded: &Arc<[Vec<u8>]>,
        _term: u64,
    ) -> Option<Receiver<Result<()>>> {
        None
    }
}

impl Held for Replica {
    fn local(&self) -> Option<&Replica> {
        Some(self)
    }
    fn access(&self) -> Access {
        Replica::access(self)
    }
    fn note_commit_lsn(&self, lsn: u64) -> Result<()> {
        Replica::note_commit_lsn(self, lsn)
    }
    fn persist_commit(&self) -> Result<()> {
        Replica::persist_commit(self)
    }
    fn stop_background_work(&self) {
        Replica::stop_background_work(self)
    }
}

/// The replica itself, when the handle opened it (not one an `Opener` gave): only such a
/// replica is reopened, closed or replaced by the handle.
pub(super) fn opened_here(r: Arc<dyn Held>) -> std::result::Result<Arc<Replica>, Arc<dyn Held>> {
    let any: Arc<dyn std::any::Any + Send + Sync> = r.clone();
    match any.downcast::<Replica>() {
        Ok(own) => Ok(own),
        Err(_) => Err(r),
    }
}

/// Opens the replicas a handle does not open from the cluster root itself (the server mode).
pub trait Opener: Send + Sync {
    /// `Some`: the replica `id` as this opener gives it, or why it cannot; `None`: open it
    /// from the cluster root as the embedded mode does.
    fn open(&self, id: &ReplicaId, access: Access) -> Option<Result<Arc<dyn Held>>>;
}

/// A replica opened once and shared by every handle of one process (a server's own
/// replicas, open for its whole life): a handle letting go of it changes nothing, and its
/// background work goes on.
pub struct Shared(pub Arc<Replica>);

impl ReplicaLog for Shared {
    fn name(&self) -> String {
        self.0.name()
    }
    fn last(&self) -> Result<crate::log::Position> {
        self.0.last()
    }
    fn commit_lsn(&self) -> Result<u64> {
        self.0.commit_lsn()
    }
    fn set_commit_lsn(&self, lsn: u64) -> Result<()> {
        ReplicaLog::set_commit_lsn(self.0.as_ref(), lsn)
    }
    fn seen_term(&self) -> Result<u64> {
        Ok(self.0.seen_term())
    }
    fn term_at(&self, lsn: u64) -> Result<Option<u64>> {
        self.0.term_at(lsn)
    }
    fn entries(&self, from: u64, to: u64) -> Result<Vec<crate::log::Entry>> {
        self.0.entries(from, to)
    }
    fn first_retained_lsn(&self) -> Result<Option<u64>> {
        self.0.first_log_lsn()
    }
    fn append(&self, entries: &[crate::log::Entry], term: u64) -> Result<()> {
        ReplicaLog::append(self.0.as_ref(), entries, term)
    }
    fn append_encoded(
        &self,
        entries: &[crate::log::Entry],
        encoded: &[Vec<u8>],
        term: u64,
    ) -> Result<()> {
        ReplicaLog::append_encoded(self.0.as_ref(), entries, encoded, term)
    }
    fn truncate_after(&self, lsn: u64, term: u64) -> Result<Vec<crate::log::Entry>> {
        self.0.truncate_after(lsn, term)
    }
    fn observe_term(&self, term: u64) -> Result<()> {
        self.0.observe_term(term)
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.0.get(key)
    }
}

impl Held for Shared {
    fn local(&self) -> Option<&Replica> {
        Some(&self.0)
    }
    fn access(&self) -> Access {
        self.0.access()
    }
    fn note_commit_lsn(&self, lsn: u64) -> Result<()> {
        self.0.note_commit_lsn(lsn)
    }
    fn persist_commit(&self) -> Result<()> {
        self.0.persist_commit()
    }
}
