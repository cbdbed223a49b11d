//! Continuous replication from the primaries a server owns, log retention, and asking a
//! secondary behind the retained log to be re-seeded.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::cluster::ReplicaId;
use engine::replica::Replica;
use engine::replica_log::ReplicaLog;
use engine::Result;

use super::{endpoints_in, poisoned, Node};
use crate::remote::RemoteLog;

/// The shortest time between two replication rounds while commits keep coming.
const COALESCE: Duration = Duration::from_millis(10);

impl Node {
    /// Continuous replication, on a thread of its own until `stop`: after each commit (or
    /// every `idle`), the primaries this server owns ship their committed entries to every
    /// secondary but the sync standby (which the write path keeps level), in bounded
    /// batches (`catch_up`). A secondary holding entries above the commit lsn of the current
    /// term is left alone: they are a write in flight.
    pub fn replicate(self: &Arc<Self>, idle: Duration) {
        let mut logs: BTreeMap<ReplicaId, RemoteLog> = BTreeMap::new();
        // The addresses `logs` were made for: a server that restarted elsewhere is dialled anew.
        let mut dialled: BTreeMap<String, String> = BTreeMap::new();
        let mut seen = 0;
        let mut pruned_at = Instant::now();
        let mut round_at = Instant::now();
        while !self.stopping.load(Ordering::SeqCst) {
            if let Ok(n) = self.wake.0.lock() {
                if *n == seen {
                    let _ = self.wake.1.wait_timeout(n, idle);
                }
            }
            // Commits close together share a round (fewer RPCs and fsyncs competing with
            // the writes themselves): at most one round per `COALESCE`.
            let since = round_at.elapsed();
            if since < COALESCE {
                if let Ok(n) = self.wake.0.lock() {
                    let _ = self.wake.1.wait_timeout_while(n, COALESCE - since, |_| {
                        !self.stopping.load(Ordering::SeqCst)
                    });
                }
            }
            round_at = Instant::now();
            seen = self.wake.0.lock().map(|n| *n).unwrap_or(seen);
            // A round ships while no failover runs (`replicating`): both bringing the same
            // replica level would make one of them fail ("entry does not follow"). Requests
            // go on meanwhile; what they ship to a secondary is a write in flight, which a
            // round leaves alone.
            let Ok(_round) = self.replicating.lock() else {
                break;
            };
            let t = {
                let Ok(mut dir) = self.dir.lock() else { break };
                if self.refresh(dir.cluster_mut()).is_err() {
                    continue;
                }
                let t = dir.cluster().topology().clone();
                // Entries a crashed writer left (this server, restarted after SIGKILL) are
                // settled against the sync standby now, not at the next write: until then
                // the primary serves no read. Under the handle: no write is in flight.
                for p in t.partitions.iter().filter(|p| p.primary == self.datacenter) {
                    let Some(primary) = self.own(p.id) else {
                        continue;
                    };
                    let unsettled = primary.last().map(|l| l.lsn).unwrap_or(0)
                        > primary.commit_lsn().unwrap_or(0);
                    if unsettled {
                        match dir.cluster_mut().settle_primary(p.id) {
                            Ok(()) => tracing::info!(
                                partition = p.id,
                                "settled the entries a crashed writer left"
                            ),
                            Err(e) => {
                                tracing::warn!(partition = p.id, error = %e, "entries a crashed writer left are not settled yet")
                            }
                        }
                        dir.cluster_mut().release_all();
                    }
                }
                t
            };
            let now = endpoints_in(&t);
            if now != dialled {
                logs.retain(|id, _| now.get(&id.datacenter) == dialled.get(&id.datacenter));
                dialled = now;
            }
            for p in t.partitions.iter().filter(|p| p.primary == self.datacenter) {
                let Some(primary) = self.own(p.id) else {
                    continue;
                };
                for d in t
                    .datacenters
                    .iter()
                    .filter(|d| d.name != self.datacenter && d.name != p.sync_standby)
                {
                    let id = ReplicaId::new(&d.name, p.id);
                    if !logs.contains_key(&id) {
                        match self.remote_log(&id) {
                            Ok(l) => {
                                logs.insert(id.clone(), l);
                            }
                            Err(_) => continue,
                        }
                    }
                    let Some(log) = logs.get(&id) else { continue };
                    let measured = match ship_committed(&primary, log, p.term) {
                        Ok(lag) => {
                            self.metrics.note_lag(p.id, &d.name, lag);
                            Some(lag)
                        }
                        Err(e) => {
                            tracing::debug!(replica = %id, error = %e, "replication round failed");
                            self.metrics.note_lag_unknown(p.id, &d.name);
                            let behind = primary.commit_lsn().and_then(|c| {
                                engine::catch_up::behind_retained_log(&*primary, log, c)
                            });
                            if behind.unwrap_or(false) {
                                self.ask_reseed(&id);
                            }
                            None
                        }
                    };
                    if let Ok(mut lags) = self.lags.lock() {
                        match measured {
                            Some(lag) => lags.insert((p.id, d.name.clone()), lag),
                            None => lags.remove(&(p.id, d.name.clone())),
                        };
                    }
                }
            }
            if pruned_at.elapsed() >= Duration::from_secs(1) {
                pruned_at = Instant::now();
                for p in &t.partitions {
                    if let Err(e) = self.prune(p, &mut logs) {
                        tracing::debug!(partition = p.id, error = %e, "log not pruned");
                    }
                }
            }
            drop(_round);
            // Every cut of a replica this server owns, whoever asked for it (a primary
            // bringing it level, its own write path or read path, a sync): reported here.
            let owned: Vec<(u32, Arc<Replica>)> = match self.owned.read() {
                Ok(o) => o.iter().map(|(p, r)| (*p, r.clone())).collect(),
                Err(_) => break,
            };
            // A primary's own cut is a write that failed (its client was told nothing was
            // applied), not a tail: not reported, or a report that failed the same way
            // would be cut, reported, and so on.
            let cuts: Vec<(u32, Vec<engine::log::Position>)> = owned
                .into_iter()
                .map(|(p, r)| (p, r.take_cut()))
                .filter(|(_, cut)| !cut.is_empty())
                .collect();
            if cuts.is_empty() {
                continue;
            }
            // Judged on the newest topology: a cut asked for by a new primary may come
            // before this server read that it is one no more.
            let fresh = match self.dir.lock() {
                Ok(mut dir) => {
                    let _ = self.refresh(dir.cluster_mut());
                    dir.cluster().topology().clone()
                }
                Err(_) => break,
            };
            for (p, cut) in cuts {
                let Ok(part) = fresh.partition(p) else {
                    continue;
                };
                if part.primary != self.datacenter {
                    self.report_cut(&ReplicaId::new(&self.datacenter, p), part.term, &cut);
                }
            }
        }
    }

    /// Entries nobody acknowledged were cut off a replica this server owns as a secondary
    /// (an old primary that returned with an uncommitted tail):
    /// logged, counted, and audited in its partition (`replica.cut-tail`, the entries'
    /// positions), so an operator sees it.
    fn report_cut(&self, id: &ReplicaId, term: u64, cut: &[engine::log::Position]) {
        let (Some(first), Some(last)) = (cut.iter().min(), cut.iter().max()) else {
            return;
        };
        let outcome = format!(
            "cut {} uncommitted entr{} (term {} lsn {} to term {} lsn {}) from {id}; the partition is at term {term}",
            cut.len(),
            if cut.len() == 1 { "y" } else { "ies" },
            first.term,
            first.lsn,
            last.term,
            last.lsn
        );
        tracing::warn!(replica = %id, entries = cut.len(), "{outcome}");
        self.metrics
            .note_cut(id.partition, &id.datacenter, cut.len());
        let envelope = engine::request::Envelope {
            actor: format!("geodird:{}", self.datacenter),
            ..Default::default()
        };
        let request = engine::request::Request::RecordAudit {
            partition: id.partition,
            op: "replica.cut-tail".into(),
            targets: vec![id.to_string()],
            outcome,
        };
        if let Err(e) = self.execute(&envelope, request, false, &mut |_| {}) {
            tracing::warn!(replica = %id, error = %e, "the cut tail's audit record was not written");
        }
    }

    /// Log retention in the server mode: this server's replica of `p` prunes what
    /// `protocol::retention` allows. A primary keeps what a reachable replica still lacks
    /// (an unreachable one that falls behind is re-seeded when it returns); a secondary
    /// keeps its own last entries.
    fn prune(
        &self,
        p: &engine::topology::Partition,
        logs: &mut BTreeMap<ReplicaId, RemoteLog>,
    ) -> Result<()> {
        use engine::protocol::retention::{must_prune, retention_point};
        let Some(r) = self.own(p.id) else {
            return Ok(());
        };
        let last = r.last()?.lsn;
        let mut lasts = vec![last];
        let commit = match p.primary == self.datacenter {
            true => {
                for d in self.endpoints.read().map_err(|_| poisoned())?.keys() {
                    if *d == self.datacenter {
                        continue;
                    }
                    let id = ReplicaId::new(d, p.id);
                    if !logs.contains_key(&id) {
                        let Ok(l) = self.remote_log(&id) else {
                            continue;
                        };
                        logs.insert(id.clone(), l);
                    }
                    if let Some(Ok(l)) = logs.get(&id).map(|l| l.last()) {
                        lasts.push(l.lsn);
                    }
                }
                r.commit_lsn()?
            }
            false => last,
        };
        let Some(through) = retention_point(&lasts, commit, self.config.retain_log_entries) else {
            return Ok(());
        };
        if must_prune(r.first_log_lsn()?, through) {
            r.prune_log_through(through)?;
            tracing::info!(partition = p.id, through, "log pruned");
        }
        Ok(())
    }

    /// Asks the server of secondary `id`, which is behind the retained log, to re-seed it
    /// from a checkpoint of this server's primary: on a thread of its own (it may take a
    /// while, and the replicator goes on), once at a time per replica, at most every 10 s.
    fn ask_reseed(self: &Arc<Self>, id: &ReplicaId) {
        {
            let Ok(mut asked) = self.reseeding.lock() else {
                return;
            };
            if asked
                .get(id)
                .is_some_and(|at| at.elapsed() < Duration::from_secs(10))
            {
                return;
            }
            asked.insert(id.clone(), Instant::now());
        }
        tracing::info!(replica = %id, "behind the retained log: asking its server to re-seed it");
        let (node, id) = (self.clone(), id.clone());
        let _ = std::thread::Builder::new()
            .name("reseed".into())
            .spawn(move || {
                let got = node
                    .connection_to(&id.datacenter)
                    .and_then(|c| c.rebuild(&[id.partition]));
                match got {
                    Ok(r) => tracing::info!(replica = %id, result = ?r.first().map(|r| r.result.to_string()), "re-seed asked"),
                    Err(e) => tracing::warn!(replica = %id, error = %e, "re-seed failed"),
                }
                node.poke();
            });
    }
}

/// A secondary's lag before a replication round: entries, and seconds since the first
/// entry it misses was written.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Lag {
    pub entries: u64,
    pub seconds: f64,
}

/// One replication round to `secondary`: its lag before, then the committed entries it misses.
fn ship_committed(primary: &Replica, secondary: &RemoteLog, term: u64) -> Result<Lag> {
    let commit = primary.commit_lsn()?;
    let last = secondary.last()?;
    if last.lsn > commit && last.term == term {
        return Ok(Lag::default());
    }
    let entries = commit.saturating_sub(last.lsn);
    let seconds = match entries {
        0 => 0.0,
        _ => {
            let first = primary.entries(last.lsn + 1, last.lsn + 1)?;
            let written = first.first().map_or(0, |e| e.time_ms);
            (engine::clock::Clock::system()
                .now_ms()
                .saturating_sub(written)) as f64
                / 1000.0
        }
    };
    engine::catch_up::catch_up_from(primary, secondary, last, commit, term, &mut |_| {})?;
    Ok(Lag { entries, seconds })
}
