//! The lease keeper (`crate::lease`): renews this server's lease, holds the leader keys of
//! the partitions whose primary is here, lets go of the others, and promotes this server's
//! replica when it is the sync standby of a partition whose leader is gone.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::request::{Envelope, Request};

use super::Node;
use crate::etcd::Leases;
use crate::lease::{decide, leader_value, writes_until, LeaseState, Step};

/// What the keeper remembers of one partition's leader key between rounds.
#[derive(Default)]
pub(crate) struct Seen {
    /// The newest term this server saw the key held for.
    term: Option<u64>,
    /// Since when it has been seen absent.
    absent_since: Option<Instant>,
}

impl Node {
    /// Keeps the lease until the server stops, then gives it back. A round runs every
    /// sixth of the TTL: a lease is renewed well before its margin, and a leader that is
    /// gone is noticed within that.
    pub fn keep_leases(
        self: Arc<Node>,
        leases: Arc<Leases>,
        state: Arc<LeaseState>,
        ttl: Duration,
    ) {
        let _ = state.keeper.set(std::thread::current());
        let mut seen = BTreeMap::new();
        while !self.stopping.load(Ordering::SeqCst) {
            self.lease_round(&leases, &state, ttl, &mut seen);
            std::thread::park_timeout(ttl / 6);
        }
        state.renewed(None);
        leases.revoke();
    }

    /// One round of the keeper (also run once before the server serves, so that a primary
    /// holds its keys from its first request).
    pub(crate) fn lease_round(
        &self,
        leases: &Leases,
        state: &LeaseState,
        ttl: Duration,
        seen: &mut BTreeMap<u32, Seen>,
    ) {
        let (sent, kept) = match leases.renew(ttl) {
            Ok(r) => r,
            Err(e) => {
                // etcd unreachable: the lease runs out on its own, and writes stop before.
                tracing::warn!(error = %e, "lease not renewed");
                return;
            }
        };
        if !kept {
            // A new lease: the keys bound to the old one are gone.
            state.renewed(None);
        }
        state.renewed(Some(writes_until(sent, ttl)));
        let Ok(topology) = self.routing_topology() else {
            return;
        };
        let now = Instant::now();
        for p in &topology.partitions {
            let leader = match leases.leader(p.id) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(partition = p.id, error = %e, "leader key not read");
                    return;
                }
            };
            let s = seen.entry(p.id).or_default();
            match &leader {
                Some(v) => {
                    s.absent_since = None;
                    let term = v.split(' ').nth(1).and_then(|t| t.parse::<u64>().ok());
                    s.term = s.term.max(term);
                }
                None => {
                    s.absent_since.get_or_insert(now);
                }
            }
            let absent_for = s.absent_since.map_or(Duration::ZERO, |a| now - a);
            let step = decide(
                &self.datacenter,
                p,
                leader.as_deref(),
                s.term,
                absent_for,
                2 * ttl,
            );
            match step {
                Step::Lead => {
                    let value = leader_value(&self.datacenter, p.term);
                    match leases.acquire(p.id, &value, leader.as_deref()) {
                        Ok(true) => state.hold(p.id, p.term),
                        Ok(false) => state.let_go(p.id),
                        Err(e) => {
                            tracing::warn!(partition = p.id, error = %e, "leader key not taken")
                        }
                    }
                }
                Step::Release => {
                    state.let_go(p.id);
                    if let Some(v) = &leader {
                        let _ = leases.release(p.id, v);
                    }
                }
                Step::Promote => {
                    state.let_go(p.id);
                    if let Some(term) = self.promote(p.id, leader.is_none() && s.term.is_some()) {
                        // The key at once: the writes waiting for the new primary go on.
                        let value = leader_value(&self.datacenter, term);
                        if let Ok(true) = leases.acquire(p.id, &value, None) {
                            state.hold(p.id, term);
                        }
                        self.audit_promotion(p.id);
                    }
                }
                Step::Nothing => state.let_go(p.id),
            }
        }
    }

    /// The automatic emergency failover of `partition` to this server's replica (its sync
    /// standby): the new term, if it was carried out.
    fn promote(&self, partition: u32, expired: bool) -> Option<u64> {
        tracing::warn!(
            partition,
            expired,
            "the leader of the partition is gone: promoting this server's replica"
        );
        match self.failover(partition, &self.datacenter.clone(), true, false) {
            Ok(r) => {
                self.metrics.note_automatic_failover();
                tracing::info!(partition, from = %r.old_primary, term = r.new_term, "automatic failover");
                self.reload_routing();
                Some(r.new_term)
            }
            Err(e) => {
                tracing::warn!(partition, error = %e, "automatic failover not carried out");
                None
            }
        }
    }

    /// The audit record of an automatic failover, with this server as the actor.
    fn audit_promotion(&self, partition: u32) {
        let envelope = Envelope {
            actor: format!("geodird:{}", self.datacenter),
            correlation_id: uuid_like(),
            datacenter: None,
            token: None,
        };
        let audit = Request::RecordAudit {
            partition,
            op: "failover.automatic".into(),
            targets: vec![format!("partition {partition}"), self.datacenter.clone()],
            outcome: "ok".into(),
        };
        if let Err(e) = self.execute(&envelope, audit, false, &mut |_| {}) {
            tracing::warn!(partition, error = %e, "the automatic failover's audit record was not written");
        }
    }
}

/// A correlation id for the keeper's own records.
fn uuid_like() -> String {
    format!(
        "geodird-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )
}
