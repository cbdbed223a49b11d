//! An in-memory replica log: a BTreeMap of entries and a key-value map applying their ops.
//!
//! Behaves as `replica::Replica` does for replication (same `ReplicaLog` conformance tests),
//! with every write "synced" the moment it returns. The model-based test runs the
//! replication protocol on it, many more steps than RocksDB allows in the same time; a
//! crashed in-memory replica is one whose log is dropped.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::log::{Entry, Op, Position};
use crate::replica_log::{fenced_append, fenced_write, ReplicaLog};

/// One replica's log and data, in memory.
pub struct MemLog {
    name: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    log: BTreeMap<u64, Entry>,
    data: BTreeMap<Vec<u8>, Vec<u8>>,
    last: Position,
    commit: u64,
    seen_term: u64,
}

impl MemLog {
    /// An empty log named `name` (for messages).
    pub fn new(name: &str) -> MemLog {
        MemLog {
            name: name.to_string(),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> Result<MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| Error::Storage(format!("{}: state lock poisoned", self.name)))
    }

    /// Log retention: drops entries up to and including `lsn` (their data stays).
    pub fn prune_log_through(&self, lsn: u64) -> Result<()> {
        let mut s = self.state()?;
        s.log = s.log.split_off(&(lsn + 1));
        Ok(())
    }

    /// Every (key, value) of the data, in key order.
    pub fn data(&self) -> Result<BTreeMap<Vec<u8>, Vec<u8>>> {
        Ok(self.state()?.data.clone())
    }
}

impl ReplicaLog for MemLog {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn last(&self) -> Result<Position> {
        Ok(self.state()?.last)
    }

    fn commit_lsn(&self) -> Result<u64> {
        Ok(self.state()?.commit)
    }

    fn set_commit_lsn(&self, lsn: u64) -> Result<()> {
        self.state()?.commit = lsn;
        Ok(())
    }

    fn seen_term(&self) -> Result<u64> {
        Ok(self.state()?.seen_term)
    }

    fn term_at(&self, lsn: u64) -> Result<Option<u64>> {
        Ok(self.state()?.log.get(&lsn).map(|e| e.term))
    }

    fn entries(&self, from: u64, to: u64) -> Result<Vec<Entry>> {
        if from > to {
            return Ok(Vec::new());
        }
        let s = self.state()?;
        let out: Vec<Entry> = s.log.range(from..=to).map(|(_, e)| e.clone()).collect();
        if out.first().map(|e| e.lsn) != Some(from) || out.len() as u64 != to - from + 1 {
            return Err(Error::NotFound(format!(
                "{}: log does not hold lsn {from}..={to}",
                self.name
            )));
        }
        Ok(out)
    }

    fn first_retained_lsn(&self) -> Result<Option<u64>> {
        Ok(self.state()?.log.keys().next().copied())
    }

    fn append(&self, entries: &[Entry], term: u64) -> Result<()> {
        let mut s = self.state()?;
        fenced_append(&self.name, term, s.seen_term, entries)?;
        let Some(last_entry) = entries.last() else {
            return Ok(());
        };
        for (expect, e) in (s.last.lsn + 1..).zip(entries) {
            if e.lsn != expect {
                return Err(Error::Storage(format!(
                    "{}: entry lsn {} does not follow {}",
                    self.name,
                    e.lsn,
                    expect - 1
                )));
            }
        }
        for e in entries {
            for op in &e.ops {
                match op {
                    Op::Put { key, value, .. } => s.data.insert(key.clone(), value.clone()),
                    Op::Delete { key, .. } => s.data.remove(key),
                };
            }
            s.log.insert(e.lsn, e.clone());
        }
        s.last = last_entry.position();
        s.seen_term = s.seen_term.max(term);
        Ok(())
    }

    fn truncate_after(&self, lsn: u64, term: u64) -> Result<Vec<Entry>> {
        let mut s = self.state()?;
        fenced_write(&self.name, "cut", term, s.seen_term)?;
        if s.last.lsn <= lsn {
            return Ok(Vec::new());
        }
        let new_last = match lsn {
            0 => Position::default(),
            _ => Position {
                term: s.log.get(&lsn).map(|e| e.term).ok_or_else(|| {
                    Error::NotFound(format!("{}: no log entry at lsn {lsn}", self.name))
                })?,
                lsn,
            },
        };
        let last = s.last.lsn;
        if s.log.range(lsn + 1..=last).count() as u64 != last - lsn {
            return Err(Error::NotFound(format!(
                "{}: log does not hold lsn {}..={last} to cut",
                self.name,
                lsn + 1
            )));
        }
        let cut: Vec<Entry> = s.log.split_off(&(lsn + 1)).into_values().rev().collect();
        for e in &cut {
            for op in e.ops.iter().rev() {
                match op.prev() {
                    Some(p) => s.data.insert(op.key().to_vec(), p.to_vec()),
                    None => s.data.remove(op.key()),
                };
            }
        }
        s.last = new_last;
        s.commit = s.commit.min(lsn);
        Ok(cut)
    }

    fn observe_term(&self, term: u64) -> Result<()> {
        let mut s = self.state()?;
        s.seen_term = s.seen_term.max(term);
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.state()?.data.get(key).cloned())
    }
}
