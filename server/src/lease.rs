//! Leases and automatic failover, with the control plane in etcd (docs/server.md, "Leases
//! and automatic failover").
//!
//! Each server keeps an etcd lease alive. The primary's server of each partition holds the
//! partition's leader key (`PREFIX/leader/P`, value `DC TERM`), bound to that lease, and
//! acknowledges writes only while its lease is surely alive: until the last renewal's send
//! time plus the TTL, minus a margin (self-fencing, on the monotonic clock). When the key
//! goes (the lease expired: the primary's server is dead or cut off from etcd), the sync
//! standby's server, which holds every acknowledged write, promotes its replica: an emergency
//! failover whose control-plane change is one transaction comparing the revision read, so
//! one promotion wins a race. Without a live sync standby nothing is promoted.
//!
//! The decisions are the pure functions here; `Keeper` carries them out.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use engine::topology::Partition;
use engine::{Error, Result};

/// What this server may do now, shared with the write path.
#[derive(Debug)]
pub struct LeaseState {
    /// Until when (monotonic) this server may acknowledge writes: the last renewal's send
    /// time plus the TTL, minus the margin. None: no live lease.
    valid_until: Mutex<Option<Instant>>,
    /// The partitions whose leader key this server holds, with the term it names.
    held: Mutex<BTreeMap<u32, u64>>,
    /// Told when `held` changes.
    changed: std::sync::Condvar,
    /// The keeper's thread, woken when a write waits for a key.
    pub keeper: std::sync::OnceLock<std::thread::Thread>,
}

impl Default for LeaseState {
    fn default() -> Self {
        LeaseState {
            valid_until: Mutex::new(None),
            held: Mutex::new(BTreeMap::new()),
            changed: std::sync::Condvar::new(),
            keeper: std::sync::OnceLock::new(),
        }
    }
}

fn poisoned() -> Error {
    Error::Storage("lease state lock poisoned".into())
}

impl LeaseState {
    /// A write to `partition` (of `term`, as the control plane says) may be carried out and
    /// acknowledged here now; otherwise `Unavailable`, nothing applied.
    pub fn check_write(&self, partition: u32, term: u64) -> Result<()> {
        let until = *self.valid_until.lock().map_err(|_| poisoned())?;
        if !lease_live(until, Instant::now()) {
            return Err(Error::Unavailable(format!(
                "this server's lease in the control plane is not renewed (etcd unreachable?), so it acknowledges no write; nothing was applied to partition {partition}"
            )));
        }
        let held = self
            .held
            .lock()
            .map_err(|_| poisoned())?
            .get(&partition)
            .copied();
        if held != Some(term) {
            return Err(Error::Unavailable(format!(
                "this server does not hold partition {partition}'s leader key for term {term} yet; nothing was applied, try again"
            )));
        }
        Ok(())
    }

    /// `check_write`, waiting up to `wait` for the keeper to take the key (just after a
    /// failover made this server the primary). A lease that is not live is refused at once.
    pub fn await_write(&self, partition: u32, term: u64, wait: Duration) -> Result<()> {
        let deadline = Instant::now() + wait;
        loop {
            let refused = match self.check_write(partition, term) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let now = Instant::now();
            if !self.live() || now >= deadline {
                return Err(refused);
            }
            if let Some(k) = self.keeper.get() {
                k.unpark();
            }
            let held = self.held.lock().map_err(|_| poisoned())?;
            if held.get(&partition) != Some(&term) {
                let _ = self.changed.wait_timeout(held, deadline - now);
            }
        }
    }

    pub fn renewed(&self, until: Option<Instant>) {
        if let Ok(mut v) = self.valid_until.lock() {
            *v = until;
        }
        if until.is_none() {
            if let Ok(mut h) = self.held.lock() {
                h.clear();
            }
        }
    }

    pub fn hold(&self, partition: u32, term: u64) {
        if let Ok(mut h) = self.held.lock() {
            h.insert(partition, term);
        }
        self.changed.notify_all();
    }

    pub fn let_go(&self, partition: u32) {
        if let Ok(mut h) = self.held.lock() {
            h.remove(&partition);
        }
    }

    pub fn holds(&self) -> BTreeMap<u32, u64> {
        self.held.lock().map(|h| h.clone()).unwrap_or_default()
    }

    pub fn live(&self) -> bool {
        lease_live(
            self.valid_until.lock().map(|v| *v).unwrap_or(None),
            Instant::now(),
        )
    }
}

/// Whether a lease good until `until` (margin already taken off) lets writes through at `now`.
pub fn lease_live(until: Option<Instant>, now: Instant) -> bool {
    until.is_some_and(|u| now < u)
}

/// How long a renewal sent at `sent` keeps writes going: the TTL less the safety margin
/// (a quarter of the TTL), so that this server stops before etcd can let the lease expire.
pub fn writes_until(sent: Instant, ttl: Duration) -> Instant {
    sent + ttl - ttl / 4
}

/// The leader key's value: the datacenter and the term it leads.
pub fn leader_value(datacenter: &str, term: u64) -> String {
    format!("{datacenter} {term}")
}

/// What the keeper does about one partition this round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// This server's datacenter is the primary: hold the leader key for this term.
    Lead,
    /// Not the primary, but the key names this datacenter: let it go.
    Release,
    /// The sync standby of a partition whose leader is gone: promote.
    Promote,
    Nothing,
}

/// The decision for partition `p` seen from datacenter `me`. `leader`: the leader key's
/// value, if present. `seen_term`: the newest term for which this server saw the key held.
/// `absent_for`: how long the key has been seen absent (zero when present).
/// `grace`: how long an absence that was never preceded by a holder is tolerated (a
/// cluster starting: the primary's server may not be up yet).
pub fn decide(
    me: &str,
    p: &Partition,
    leader: Option<&str>,
    seen_term: Option<u64>,
    absent_for: Duration,
    grace: Duration,
) -> Step {
    let mine = leader.is_some_and(|v| v.split(' ').next() == Some(me));
    if p.primary == me {
        return Step::Lead;
    }
    if mine {
        return Step::Release;
    }
    let gone = leader.is_none() && (seen_term.is_some_and(|t| t >= p.term) || absent_for >= grace);
    if p.sync_standby == me && gone {
        return Step::Promote;
    }
    Step::Nothing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(primary: &str, standby: &str, term: u64) -> Partition {
        let dcs = [
            "westus@37.4,-122.1",
            "eastus@37.4,-79.4",
            "westeurope@52.4,4.9",
        ]
        .iter()
        .map(|d| engine::topology::parse_datacenter(d).expect("dc"))
        .collect();
        let mut t = engine::topology::Topology::new("t".into(), dcs, 1).expect("topology");
        let mut p = t.partitions.remove(0);
        p.primary = primary.into();
        p.sync_standby = standby.into();
        p.term = term;
        p
    }

    const GRACE: Duration = Duration::from_secs(4);

    #[test]
    fn the_primary_leads_and_a_former_leader_lets_go() {
        let p = partition("westus", "eastus", 3);
        assert_eq!(
            decide("westus", &p, None, None, Duration::ZERO, GRACE),
            Step::Lead
        );
        assert_eq!(
            decide(
                "westus",
                &p,
                Some("westus 2"),
                Some(2),
                Duration::ZERO,
                GRACE
            ),
            Step::Lead
        );
        assert_eq!(
            decide(
                "eastus",
                &p,
                Some("eastus 2"),
                Some(2),
                Duration::ZERO,
                GRACE
            ),
            Step::Release
        );
    }

    #[test]
    fn only_the_sync_standby_promotes_and_only_when_the_leader_is_gone() {
        let p = partition("westus", "eastus", 3);
        // Held: nobody moves.
        for me in ["eastus", "westeurope"] {
            assert_eq!(
                decide(me, &p, Some("westus 3"), Some(3), Duration::ZERO, GRACE),
                Step::Nothing
            );
        }
        // Gone after it was held in this term: the standby promotes at once, no one else.
        assert_eq!(
            decide("eastus", &p, None, Some(3), Duration::ZERO, GRACE),
            Step::Promote
        );
        assert_eq!(
            decide(
                "westeurope",
                &p,
                None,
                Some(3),
                Duration::from_secs(60),
                GRACE
            ),
            Step::Nothing
        );
        // Held only in an older term (the primary of this term never took it): the grace.
        assert_eq!(
            decide("eastus", &p, None, Some(2), Duration::from_secs(1), GRACE),
            Step::Nothing
        );
        assert_eq!(
            decide("eastus", &p, None, Some(2), GRACE, GRACE),
            Step::Promote
        );
        // Never seen held (a cluster starting): only after the grace.
        assert_eq!(
            decide("eastus", &p, None, None, Duration::from_secs(1), GRACE),
            Step::Nothing
        );
        assert_eq!(
            decide("eastus", &p, None, None, GRACE, GRACE),
            Step::Promote
        );
        // A stale holder that is not the primary still counts as held (it lets go soon).
        assert_eq!(
            decide(
                "eastus",
                &p,
                Some("westeurope 2"),
                Some(3),
                Duration::ZERO,
                GRACE
            ),
            Step::Nothing
        );
    }

    #[test]
    fn writes_stop_before_the_lease_can_expire() {
        let sent = Instant::now();
        let ttl = Duration::from_secs(2);
        let until = writes_until(sent, ttl);
        assert!(until < sent + ttl, "no margin");
        assert!(lease_live(Some(until), sent + Duration::from_millis(1400)));
        assert!(!lease_live(Some(until), sent + Duration::from_millis(1500)));
        assert!(!lease_live(None, sent));
    }

    #[test]
    fn a_write_needs_a_live_lease_and_the_leader_key_of_its_term() {
        let s = LeaseState::default();
        assert!(matches!(s.check_write(0, 1), Err(Error::Unavailable(_))));
        s.renewed(Some(Instant::now() + Duration::from_secs(5)));
        assert!(
            matches!(s.check_write(0, 1), Err(Error::Unavailable(_))),
            "no key held"
        );
        s.hold(0, 1);
        s.check_write(0, 1).expect("held, live");
        assert!(
            matches!(s.check_write(0, 2), Err(Error::Unavailable(_))),
            "another term"
        );
        s.renewed(Some(Instant::now() - Duration::from_millis(1)));
        assert!(
            matches!(s.check_write(0, 1), Err(Error::Unavailable(_))),
            "expired"
        );
        s.renewed(None);
        assert!(s.holds().is_empty(), "a lost lease holds no key");
    }
}
