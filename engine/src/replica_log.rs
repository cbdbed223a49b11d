//! What replication needs of a replica's log, and the fencing rule every replica applies.
//!
//! **Fencing as data:** each replica keeps the highest term it has seen (raised by an append
//! or by `observe_term`, durably) and refuses an append or a cut from a writer of a lower
//! term with `Error::Fenced`, whatever the writer's own view of the control plane says.

use crate::error::{Error, Result};
use crate::log::{Entry, Position};
use crate::replica::Durability;

/// What replication (shipping, catch-up, settling, failover) needs of one replica: its
/// positions and terms, its entries, and the synced writes that move its log. Implemented
/// by the RocksDB `replica::Replica` and by the in-memory `memlog::MemLog`; both pass the
/// same conformance tests (`tests` below).
///
/// Checkpoints stay RocksDB-only (`Replica::checkpoint`): a checkpoint is a folder of hard
/// links that a backup packs and a rebuild adopts, and an in-memory log has no folder.
pub trait ReplicaLog {
    /// Names the replica in messages (`dc-westus/p3`).
    fn name(&self) -> String;
    /// (term, lsn) of the last entry; `Position::default()` for an empty log.
    fn last(&self) -> Result<Position>;
    /// The highest lsn known committed.
    fn commit_lsn(&self) -> Result<u64>;
    /// Records (synced) the highest lsn known committed.
    fn set_commit_lsn(&self, lsn: u64) -> Result<()>;
    /// The highest term this replica has seen (fencing).
    fn seen_term(&self) -> Result<u64>;
    /// The term of the entry at `lsn`, if this replica holds it.
    fn term_at(&self, lsn: u64) -> Result<Option<u64>>;
    /// Entries `from..=to` in order (`NotFound` if the log ends before `to`).
    fn entries(&self, from: u64, to: u64) -> Result<Vec<Entry>>;
    /// The first lsn still in the log (entries below it were pruned), or None if empty.
    fn first_retained_lsn(&self) -> Result<Option<u64>>;
    /// Appends entries that continue the log, with their data, synced, for a writer acting
    /// in `term` (see `fenced_append`); raises the seen term to `term`.
    fn append(&self, entries: &[Entry], term: u64) -> Result<()>;
    /// `append` with each entry's encoding already made (`encoded[i]` is
    /// `entries[i].encode()`): a writer encodes an entry once for every replica it ships to.
    fn append_encoded(&self, entries: &[Entry], encoded: &[Vec<u8>], term: u64) -> Result<()> {
        debug_assert_eq!(entries.len(), encoded.len());
        self.append(entries, term)
    }
    /// Cuts every entry above `lsn`, undoing its data changes, synced, for a writer acting in
    /// `term` (refused below the seen term). Returns the cut entries, newest first.
    fn truncate_after(&self, lsn: u64, term: u64) -> Result<Vec<Entry>>;
    /// Records (synced) that the partition's term is now `term`; a lower one changes nothing.
    fn observe_term(&self, term: u64) -> Result<()>;
    /// The data: the value of `key` as the log's entries left it.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
}

/// Whether a writer acting in `writer_term` may write to a replica that has seen `seen_term`.
/// Pure: the acceptor's term check (neon's safekeeper refuses a lower term the same way).
pub fn fenced_write(replica: &str, what: &str, writer_term: u64, seen_term: u64) -> Result<()> {
    if writer_term < seen_term {
        return Err(Error::Fenced(format!(
            "{replica} refuses a {what} of term {writer_term}: it has seen term {seen_term}, so the writer is no longer primary"
        )));
    }
    Ok(())
}

/// `fenced_write` for an append, which also refuses an entry of a term above the writer's
/// (a writer never ships an entry newer than its own term: its view is stale).
pub fn fenced_append(
    replica: &str,
    writer_term: u64,
    seen_term: u64,
    entries: &[Entry],
) -> Result<()> {
    fenced_write(replica, "append", writer_term, seen_term)?;
    match entries.iter().find(|e| e.term > writer_term) {
        Some(e) => Err(Error::Fenced(format!(
            "{replica} refuses entry (term {}, lsn {}) shipped by a writer of older term {writer_term}",
            e.term, e.lsn
        ))),
        None => Ok(()),
    }
}

impl ReplicaLog for crate::replica::Replica {
    fn name(&self) -> String {
        crate::replica::Replica::name(self)
    }
    fn last(&self) -> Result<Position> {
        crate::replica::Replica::last(self)
    }
    fn commit_lsn(&self) -> Result<u64> {
        crate::replica::Replica::commit_lsn(self)
    }
    fn set_commit_lsn(&self, lsn: u64) -> Result<()> {
        crate::replica::Replica::set_commit_lsn(self, lsn, Durability::Synced)
    }
    fn seen_term(&self) -> Result<u64> {
        Ok(crate::replica::Replica::seen_term(self))
    }
    fn term_at(&self, lsn: u64) -> Result<Option<u64>> {
        crate::replica::Replica::term_at(self, lsn)
    }
    fn entries(&self, from: u64, to: u64) -> Result<Vec<Entry>> {
        crate::replica::Replica::entries(self, from, to)
    }
    fn first_retained_lsn(&self) -> Result<Option<u64>> {
        self.first_log_lsn()
    }
    fn append(&self, entries: &[Entry], term: u64) -> Result<()> {
        crate::replica::Replica::append(self, entries, term, Durability::Synced)
    }
    fn append_encoded(&self, entries: &[Entry], encoded: &[Vec<u8>], term: u64) -> Result<()> {
        crate::replica::Replica::append_encoded(self, entries, encoded, term, Durability::Synced)
    }
    fn truncate_after(&self, lsn: u64, term: u64) -> Result<Vec<Entry>> {
        crate::replica::Replica::truncate_after(self, lsn, term)
    }
    fn observe_term(&self, term: u64) -> Result<()> {
        crate::replica::Replica::observe_term(self, term)
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        crate::replica::Replica::get(self, key)
    }
}

/// The conformance suite every `ReplicaLog` passes: the RocksDB replica and the in-memory log
/// here, the remote log over gRPC in the server crate (feature `testing`).
#[cfg(any(test, feature = "testing"))]
#[allow(clippy::unwrap_used)]
pub mod conformance {
    use super::ReplicaLog;
    use crate::error::Error;
    use crate::log::{put_entry as put, Entry, Position};

    fn pos(term: u64, lsn: u64) -> Position {
        Position { term, lsn }
    }

    /// What every `ReplicaLog` must do, run against each implementation.
    pub fn conformance(log: &dyn ReplicaLog) {
        // Empty.
        assert_eq!(log.last().unwrap(), Position::default());
        assert_eq!(log.commit_lsn().unwrap(), 0);
        assert_eq!(log.seen_term().unwrap(), 0);
        assert_eq!(log.first_retained_lsn().unwrap(), None);
        assert_eq!(log.term_at(1).unwrap(), None);
        assert!(log.entries(1, 0).unwrap().is_empty());
        assert!(matches!(log.entries(1, 1), Err(Error::NotFound(_))));
        assert!(log.truncate_after(0, 0).unwrap().is_empty());
        // Appends continue the log and apply their ops.
        let first = [
            put(1, 1, b"a", b"1", None),
            put(1, 2, b"a", b"2", Some(b"1")),
        ];
        log.append(&first, 1).unwrap();
        let encoded: Vec<Vec<u8>> = [put(2, 3, b"b", b"x", None)]
            .iter()
            .map(Entry::encode)
            .collect();
        log.append_encoded(&[put(2, 3, b"b", b"x", None)], &encoded, 2)
            .unwrap();
        assert_eq!(log.last().unwrap(), pos(2, 3));
        assert_eq!(log.seen_term().unwrap(), 2);
        assert_eq!(log.first_retained_lsn().unwrap(), Some(1));
        assert_eq!(log.term_at(2).unwrap(), Some(1));
        assert_eq!(log.term_at(3).unwrap(), Some(2));
        assert_eq!(log.term_at(4).unwrap(), None);
        let all = log.entries(1, 3).unwrap();
        assert_eq!(
            all.iter().map(|e| e.position()).collect::<Vec<_>>(),
            [pos(1, 1), pos(1, 2), pos(2, 3)]
        );
        assert_eq!(&all[..2], &first[..]);
        assert!(matches!(log.entries(2, 4), Err(Error::NotFound(_))));
        assert_eq!(log.get(b"a").unwrap(), Some(b"2".to_vec()));
        assert_eq!(log.get(b"b").unwrap(), Some(b"x".to_vec()));
        // A gap is refused, and changes nothing.
        assert!(matches!(
            log.append(&[put(2, 5, b"c", b"y", None)], 2),
            Err(Error::Storage(_))
        ));
        assert_eq!(log.last().unwrap(), pos(2, 3));
        assert_eq!(log.get(b"c").unwrap(), None);
        // The commit lsn.
        log.set_commit_lsn(3).unwrap();
        assert_eq!(log.commit_lsn().unwrap(), 3);
        // A cut undoes the entries' data, newest first, and lowers the commit lsn with it.
        let cut = log.truncate_after(1, 2).unwrap();
        assert_eq!(cut.iter().map(|e| e.lsn).collect::<Vec<_>>(), [3, 2]);
        assert_eq!(log.last().unwrap(), pos(1, 1));
        assert_eq!(log.commit_lsn().unwrap(), 1);
        assert_eq!(log.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(log.get(b"b").unwrap(), None);
        assert!(
            log.truncate_after(4, 2).unwrap().is_empty(),
            "nothing above lsn 4"
        );
        // Fencing: told of term 4, the log refuses a term-3 writer's append and cut.
        log.observe_term(4).unwrap();
        log.observe_term(3).unwrap();
        assert_eq!(log.seen_term().unwrap(), 4);
        assert!(matches!(
            log.append(&[put(3, 2, b"c", b"y", None)], 3),
            Err(Error::Fenced(_))
        ));
        assert!(matches!(log.truncate_after(0, 3), Err(Error::Fenced(_))));
        assert!(
            matches!(
                log.append(&[put(5, 2, b"c", b"y", None)], 4),
                Err(Error::Fenced(_))
            ),
            "an entry above its writer's term"
        );
        assert_eq!(log.last().unwrap(), pos(1, 1));
        assert_eq!(log.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(log.get(b"c").unwrap(), None);
        // The term-5 writer ships an old entry and raises the seen term.
        log.append(&[put(3, 2, b"c", b"y", None)], 5).unwrap();
        assert_eq!(log.seen_term().unwrap(), 5);
        assert_eq!(log.last().unwrap(), pos(3, 2));
        assert_eq!(log.get(b"c").unwrap(), Some(b"y".to_vec()));
        // Cutting everything empties the log and the data.
        assert_eq!(log.truncate_after(0, 5).unwrap().len(), 2);
        assert_eq!(log.last().unwrap(), Position::default());
        assert_eq!(log.get(b"a").unwrap(), None);
        assert_eq!(log.seen_term().unwrap(), 5, "a cut keeps the seen term");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_in_memory_log_conforms() {
        conformance::conformance(&crate::memlog::MemLog::new("mem"));
    }

    #[test]
    fn the_rocksdb_replica_conforms() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p0");
        let id = crate::replica::Identity {
            cluster_id: "c".into(),
            datacenter: "westus".into(),
            partition: 0,
        };
        crate::replica::Replica::create(&path, &id).expect("create");
        let r =
            crate::replica::Replica::open(&path, "p0", std::time::Duration::ZERO).expect("open");
        conformance::conformance(&r);
    }

    fn entry(term: u64, lsn: u64) -> Entry {
        Entry {
            term,
            lsn,
            time_ms: 0,
            ops: Vec::new(),
        }
    }

    #[test]
    fn a_writer_below_the_seen_term_is_fenced() {
        // (writer term, seen term, allowed)
        let table = [
            (0, 0, true),
            (1, 0, true),
            (3, 3, true),
            (4, 3, true),
            (2, 3, false),
            (0, 1, false),
        ];
        for (writer, seen, allowed) in table {
            let r = fenced_write("r", "cut", writer, seen);
            assert_eq!(r.is_ok(), allowed, "writer {writer} seen {seen}");
            if !allowed {
                assert!(matches!(r, Err(Error::Fenced(_))));
            }
        }
    }

    #[test]
    fn an_append_is_fenced_by_the_seen_term_and_by_entries_newer_than_its_writer() {
        // (writer term, seen term, entry terms, allowed)
        let table: [(u64, u64, &[u64], bool); 6] = [
            (3, 3, &[1, 2, 3], true),
            (4, 3, &[1], true),
            (2, 3, &[1], false),
            (3, 2, &[4], false),
            (3, 0, &[], true),
            (2, 3, &[], false),
        ];
        for (writer, seen, terms, allowed) in table {
            let entries: Vec<Entry> = (1..).zip(terms).map(|(l, t)| entry(*t, l)).collect();
            let r = fenced_append("r", writer, seen, &entries);
            assert_eq!(r.is_ok(), allowed, "writer {writer} seen {seen} {terms:?}");
            if !allowed {
                assert!(matches!(r, Err(Error::Fenced(_))));
            }
        }
    }
}
