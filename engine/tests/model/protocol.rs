//! The replication protocol over `ReplicaLog`, driven at random with faults, against a model
//! of what was acknowledged; run on the in-memory log and on RocksDB replicas.
//!
//! One partition, three replicas: a primary, a sync standby and a secondary. Steps: writes
//! (shipped to the standby on a `Shipper` thread while the primary appends), a standby that
//! fails (the entry is cut and the term raised), writers that die mid-commit (the entry on
//! the primary, on the standby, or on both), settling a primary's entries in doubt, planned
//! and emergency failovers, a replica unreachable, restarted (RocksDB: closed and reopened)
//! or lost and re-seeded, catch-up, and stale primaries of an older term writing straight to
//! a replica that was told of a newer one. After every step a checker verifies that the
//! primary's data is what was acknowledged (or in doubt), refused writes are visible nowhere,
//! the standby holds every committed entry, no replica has seen a term the control plane has
//! not, and one primary acknowledged per term; each write checks that no replica holds
//! another entry at its (term, lsn), which names one entry.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use engine::catch_up::catch_up;
use engine::log::{Entry, Op};
use engine::memlog::MemLog;
use engine::replica::{Identity, Replica};
use engine::replica_log::ReplicaLog;
use engine::shipping::Shipper;
use engine::Error;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

pub type Log = Arc<dyn ReplicaLog + Send + Sync>;

const REPLICAS: usize = 3;
const KEYS: usize = 6;

/// Where the replicas live.
pub trait Backend {
    /// A new, empty replica `i` (a lost one's replacement).
    fn fresh(&mut self, i: usize) -> Log;
    /// Replica `i` after a crash: what it made durable (every write here is synced).
    fn restart(&mut self, i: usize, log: Log) -> Log;
}

/// In memory: a restart keeps the log (every write is synced the moment it returns).
pub struct Memory;

impl Backend for Memory {
    fn fresh(&mut self, i: usize) -> Log {
        Arc::new(MemLog::new(&format!("mem/r{i}")))
    }
    fn restart(&mut self, _i: usize, log: Log) -> Log {
        log
    }
}

/// RocksDB replicas in a temp folder; a restart closes and reopens one.
pub struct Rocks {
    dir: tempfile::TempDir,
    made: usize,
    paths: Vec<std::path::PathBuf>,
}

impl Rocks {
    pub fn new() -> Rocks {
        Rocks {
            dir: tempfile::tempdir().unwrap(),
            made: 0,
            paths: vec![std::path::PathBuf::new(); REPLICAS],
        }
    }
}

impl Backend for Rocks {
    fn fresh(&mut self, i: usize) -> Log {
        self.made += 1;
        let path = self.dir.path().join(format!("r{i}-{}", self.made));
        let id = Identity {
            cluster_id: "model".into(),
            datacenter: format!("dc{i}"),
            partition: 0,
        };
        Replica::create(&path, &id).unwrap();
        self.paths[i] = path.clone();
        Arc::new(Replica::open(&path, &format!("r{i}"), std::time::Duration::ZERO).unwrap())
    }
    fn restart(&mut self, i: usize, log: Log) -> Log {
        assert_eq!(Arc::strong_count(&log), 1, "replica {i} still shared");
        drop(log);
        let path = &self.paths[i];
        Arc::new(Replica::open(path, &format!("r{i}"), std::time::Duration::ZERO).unwrap())
    }
}

type Value = Option<Vec<u8>>;

struct World<B: Backend> {
    backend: B,
    logs: Vec<Log>,
    /// The control plane.
    term: u64,
    primary: usize,
    standby: usize,
    down: Option<usize>,
    /// Per key, the values it may hold: the acknowledged one and any in doubt since.
    values: Vec<BTreeSet<Value>>,
    /// Writes refused (standby failed, cut): never visible.
    refused: Vec<(usize, Vec<u8>)>,
    /// term -> the replica that acknowledged writes as primary in it.
    writers: BTreeMap<u64, usize>,
    /// (term, replica) of every primary that was replaced: stale writers.
    stale: Vec<(u64, usize)>,
    shipper: Shipper,
    fenced_refusals: usize,
    acknowledged: usize,
}

fn key(k: usize) -> Vec<u8> {
    format!("k{k}").into_bytes()
}

impl<B: Backend> World<B> {
    fn new(mut backend: B) -> World<B> {
        let logs = (0..REPLICAS).map(|i| backend.fresh(i)).collect();
        World {
            backend,
            logs,
            term: 1,
            primary: 0,
            standby: 1,
            down: None,
            values: vec![[None].into(); KEYS],
            refused: Vec::new(),
            writers: BTreeMap::new(),
            stale: Vec::new(),
            shipper: Shipper::start(),
            fenced_refusals: 0,
            acknowledged: 0,
        }
    }

    fn up(&self, i: usize) -> bool {
        self.down != Some(i)
    }

    fn log(&self, i: usize) -> &dyn ReplicaLog {
        &*self.logs[i]
    }

    /// The control plane raised the term: every reachable replica is told.
    fn raise_term(&mut self) {
        self.term += 1;
        for i in (0..REPLICAS).filter(|i| self.up(*i)) {
            self.log(i).observe_term(self.term).unwrap();
        }
    }

    /// Entries a dead writer left above the primary's commit lsn: those the standby holds
    /// with the same term are committed, the rest cut and fenced. False: cannot settle.
    fn settle(&mut self) -> bool {
        let p = self.log(self.primary);
        let (last, commit) = (p.last().unwrap(), p.commit_lsn().unwrap());
        if last.lsn <= commit {
            return true;
        }
        if !self.up(self.standby) {
            return false;
        }
        let s = self.log(self.standby);
        let mut settled = commit;
        while settled < last.lsn
            && s.term_at(settled + 1).unwrap().is_some()
            && s.term_at(settled + 1).unwrap() == p.term_at(settled + 1).unwrap()
        {
            settled += 1;
        }
        p.truncate_after(settled, self.term).unwrap();
        p.set_commit_lsn(settled).unwrap();
        if settled < last.lsn {
            self.raise_term();
        }
        true
    }

    fn catch_up(&self, to: usize, through: u64) {
        self.catch_up_from(self.primary, to, through);
    }

    fn catch_up_from(&self, from: usize, to: usize, through: u64) {
        catch_up(
            self.log(from),
            self.log(to),
            through,
            self.term,
            &mut |_| {},
        )
        .unwrap_or_else(|e| panic!("catch-up of r{to} from r{from} failed: {e}"));
    }

    /// The standby is unreachable: another replica is brought level (entries in doubt
    /// included, which so become committed) and takes its place, in a new term. The old
    /// standby may hold an entry the primary never did (a writer died after the standby's
    /// append, before its own), and no one can cut it while it is unreachable: written again
    /// in the same term, that (term, lsn) would name two different entries, and catch-up,
    /// which compares terms, would keep the wrong one on the old standby for good.
    fn redesignate(&mut self) -> bool {
        let Some(new) =
            (0..REPLICAS).find(|i| *i != self.primary && *i != self.standby && self.up(*i))
        else {
            return false;
        };
        let last = self.log(self.primary).last().unwrap().lsn;
        self.catch_up(new, last);
        self.log(self.primary).set_commit_lsn(last).unwrap();
        self.standby = new;
        self.raise_term();
        true
    }

    fn write(&mut self, rng: &mut SmallRng, step: usize) {
        if !self.up(self.primary) || !self.settle() {
            return; // Unavailable: nothing written.
        }
        if !self.up(self.standby) && !self.redesignate() {
            return;
        }
        let (p, s) = (self.primary, self.standby);
        let commit = self.log(p).commit_lsn().unwrap();
        self.catch_up(s, commit);
        let k = rng.random_range(0..KEYS);
        let value = format!("v{step}").into_bytes();
        let entry = Entry {
            term: self.term,
            lsn: commit + 1,
            time_ms: 0,
            ops: vec![Op::Put {
                key: key(k),
                value: value.clone(),
                prev: self.log(p).get(&key(k)).unwrap(),
            }],
        };
        // (term, lsn) names one entry: no replica, reachable or not, holds another one there.
        for i in 0..REPLICAS {
            assert_ne!(
                self.log(i).term_at(entry.lsn).unwrap(),
                Some(entry.term),
                "r{i} holds another entry at (term {}, lsn {})",
                entry.term,
                entry.lsn
            );
        }
        let entries: Arc<[Entry]> = Arc::from(vec![entry]);
        let encoded: Arc<[Vec<u8>]> = entries.iter().map(Entry::encode).collect();
        match rng.random_range(0..100) {
            0..=79 => {
                let on_standby = self.shipper.ship(
                    self.logs[s].clone(),
                    entries.clone(),
                    encoded.clone(),
                    self.term,
                );
                self.log(p)
                    .append_encoded(&entries, &encoded, self.term)
                    .unwrap();
                on_standby.recv().unwrap().unwrap();
                self.log(p).set_commit_lsn(commit + 1).unwrap();
                let w = *self.writers.entry(self.term).or_insert(p);
                assert_eq!(w, p, "two primaries acknowledged in term {}", self.term);
                self.values[k] = [Some(value)].into();
                self.acknowledged += 1;
            }
            80..=87 => {
                // The standby failed: cut off the primary, fence the lsn with a new term.
                self.log(p).append(&entries, self.term).unwrap();
                self.log(p).truncate_after(commit, self.term).unwrap();
                self.raise_term();
                self.refused.push((k, value));
            }
            n => {
                // The writer dies mid-commit: the entry is on the primary, both, or the standby.
                if n < 97 {
                    self.log(p).append(&entries, self.term).unwrap();
                }
                if n >= 93 {
                    self.log(s).append(&entries, self.term).unwrap();
                }
                self.values[k].insert(Some(value));
            }
        }
    }

    fn switch(&mut self, new_primary: usize, standby: usize) {
        self.stale.push((self.term, self.primary));
        self.primary = new_primary;
        self.standby = standby;
        self.raise_term();
    }

    fn planned_failover(&mut self, rng: &mut SmallRng) {
        let to = rng.random_range(0..REPLICAS);
        if to == self.primary || !self.up(to) || !self.up(self.primary) {
            return;
        }
        // Without the standby nothing settles: the target takes everything the primary holds.
        self.settle();
        let last = self.log(self.primary).last().unwrap().lsn;
        self.catch_up(to, last);
        self.log(to).set_commit_lsn(last).unwrap();
        let old = self.primary;
        self.switch(to, old);
    }

    fn emergency_failover(&mut self) {
        if self.up(self.primary) || !self.up(self.standby) {
            return;
        }
        let np = self.standby;
        let last = self.log(np).last().unwrap().lsn;
        self.log(np).set_commit_lsn(last).unwrap();
        let other = (0..REPLICAS)
            .find(|i| *i != np && *i != self.primary)
            .unwrap();
        self.catch_up_from(np, other, last);
        self.switch(np, other);
    }

    fn toggle_down(&mut self, rng: &mut SmallRng) {
        self.down = match self.down {
            Some(_) => None,
            None => Some(rng.random_range(0..REPLICAS)),
        };
    }

    fn restart(&mut self, rng: &mut SmallRng) {
        let i = rng.random_range(0..REPLICAS);
        let placeholder: Log = Arc::new(MemLog::new("placeholder"));
        let log = std::mem::replace(&mut self.logs[i], placeholder);
        let before = (
            log.last().unwrap(),
            log.commit_lsn().unwrap(),
            log.seen_term().unwrap(),
        );
        self.logs[i] = self.backend.restart(i, log);
        let after = (
            self.log(i).last().unwrap(),
            self.log(i).commit_lsn().unwrap(),
            self.log(i).seen_term().unwrap(),
        );
        assert_eq!(before, after, "r{i} lost synced state in a restart");
    }

    /// A secondary's (or the standby's) data is lost: a fresh replica, caught up.
    fn lose_and_reseed(&mut self, rng: &mut SmallRng) {
        let i = rng.random_range(0..REPLICAS);
        if i == self.primary || !self.up(self.primary) || !self.settle() {
            return;
        }
        self.logs[i] = self.backend.fresh(i);
        self.log(i).observe_term(self.term).unwrap();
        if self.down == Some(i) {
            self.down = None;
        }
        let commit = self.log(self.primary).commit_lsn().unwrap();
        self.catch_up(i, commit);
    }

    fn sync(&mut self) {
        if !self.up(self.primary) || !self.settle() {
            return;
        }
        let commit = self.log(self.primary).commit_lsn().unwrap();
        for i in (0..REPLICAS).filter(|i| *i != self.primary && self.up(*i)) {
            self.catch_up(i, commit);
        }
    }

    /// A replaced primary, still running with its old term, writes straight to a replica
    /// that was told of a newer one: an append, a shipped entry and a cut, each refused.
    fn stale_writer(&mut self, rng: &mut SmallRng) {
        if self.stale.is_empty() {
            return;
        }
        let (term, _) = self.stale[rng.random_range(0..self.stale.len())];
        let i = rng.random_range(0..REPLICAS);
        if !self.up(i) || self.log(i).seen_term().unwrap() <= term {
            return;
        }
        let r = self.log(i);
        let before = (r.last().unwrap(), r.commit_lsn().unwrap(), self.data(i));
        let entry = Entry {
            term,
            lsn: before.0.lsn + 1,
            time_ms: 0,
            ops: vec![Op::Put {
                key: key(0),
                value: b"stale".to_vec(),
                prev: None,
            }],
        };
        assert!(matches!(
            r.append(std::slice::from_ref(&entry), term),
            Err(Error::Fenced(_))
        ));
        let entries: Arc<[Entry]> = Arc::from(vec![entry]);
        let encoded: Arc<[Vec<u8>]> = entries.iter().map(Entry::encode).collect();
        let shipped = self
            .shipper
            .ship(self.logs[i].clone(), entries, encoded, term);
        assert!(matches!(shipped.recv().unwrap(), Err(Error::Fenced(_))));
        let r = self.log(i);
        assert!(matches!(
            r.truncate_after(before.0.lsn.saturating_sub(1), term),
            Err(Error::Fenced(_))
        ));
        assert_eq!(
            (r.last().unwrap(), r.commit_lsn().unwrap(), self.data(i)),
            before
        );
        self.fenced_refusals += 1;
    }

    fn data(&self, i: usize) -> Vec<Value> {
        (0..KEYS)
            .map(|k| self.log(i).get(&key(k)).unwrap())
            .collect()
    }

    fn check(&self) {
        for i in (0..REPLICAS).filter(|i| self.up(*i)) {
            let seen = self.log(i).seen_term().unwrap();
            assert!(
                seen <= self.term,
                "r{i} has seen term {seen} above the control plane's {}",
                self.term
            );
            for (k, v) in &self.refused {
                assert_ne!(
                    self.log(i).get(&key(*k)).unwrap().as_ref(),
                    Some(v),
                    "refused write visible on r{i}"
                );
            }
        }
        if !self.up(self.primary) {
            return;
        }
        let p = self.log(self.primary);
        for (k, v) in self.data(self.primary).into_iter().enumerate() {
            assert!(
                self.values[k].contains(&v),
                "primary r{} holds {v:?} for k{k}, model allows {:?}",
                self.primary,
                self.values[k]
            );
        }
        let commit = p.commit_lsn().unwrap();
        if self.up(self.standby) && commit > 0 {
            let s = self.log(self.standby);
            assert!(
                s.last().unwrap().lsn >= commit,
                "standby r{} behind the commit lsn {commit}",
                self.standby
            );
            assert_eq!(
                s.term_at(commit).unwrap(),
                p.term_at(commit).unwrap(),
                "standby diverges at the commit lsn"
            );
        }
    }

    /// Heal, settle, sync: every replica level with the primary and holding its data.
    fn finish(&mut self) {
        self.down = None;
        self.sync();
        self.check();
        let last = self.log(self.primary).last().unwrap();
        let data = self.data(self.primary);
        for i in 0..REPLICAS {
            assert_eq!(
                self.log(i).last().unwrap(),
                last,
                "r{i} not level after sync"
            );
            assert_eq!(self.data(i), data, "r{i} data differs from the primary's");
        }
    }
}

/// Runs `steps` random steps on `backend`; returns how many stale writes were refused.
pub fn run<B: Backend>(backend: B, seed: u64, steps: usize) -> usize {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut w = World::new(backend);
    for step in 0..steps {
        match rng.random_range(0..100) {
            0..=49 => w.write(&mut rng, step),
            50..=57 => w.sync(),
            58..=65 => w.toggle_down(&mut rng),
            66..=71 => w.planned_failover(&mut rng),
            72..=79 => w.emergency_failover(),
            80..=85 => w.restart(&mut rng),
            86..=89 => w.lose_and_reseed(&mut rng),
            _ => w.stale_writer(&mut rng),
        }
        w.check();
    }
    w.finish();
    eprintln!(
        "  {} writes acknowledged, {} terms, {} stale writes refused",
        w.acknowledged, w.term, w.fenced_refusals
    );
    assert!(
        steps < 100 || w.acknowledged > 0,
        "no write was acknowledged"
    );
    w.fenced_refusals
}
