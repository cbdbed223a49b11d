//! The gateway's read path: the nearest healthy secondary (else the primary, while it holds
//! nothing uncommitted), its choice cached per handle, pulling up to a session's token.
//! The decisions are `protocol::routing`'s.

use serde::Serialize;

use super::{Cluster, ReplicaId};
use crate::catch_up::{catch_up, CatchUp};
use crate::error::{Error, Result};
use crate::protocol::routing::{self, Pull, ReadCheck};
use crate::replica::{Access, Replica};
use crate::session::Token;
use crate::topology::Partition;

/// Which replica answered a read, and where it stood.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServedBy {
    pub datacenter: String,
    pub partition: u32,
    pub term: u64,
    pub lsn: u64,
    /// Entries pulled from the primary first, to honour the session's token.
    pub pulled_entries: u64,
}

impl Cluster {
    /// Where reads of `partition` go, best first (`protocol::routing::read_order`): the
    /// preferred datacenter (a session's), then the healthy secondaries by great-circle
    /// distance from the caller's region, then the primary when none of them can answer (it
    /// serves only what is committed: `read`). Drained datacenters are left out.
    pub fn read_order(&self, partition: u32, prefer: Option<&str>) -> Result<Vec<String>> {
        routing::read_order(
            &self.topology,
            partition,
            prefer,
            self.options.region.as_deref(),
        )
    }

    /// The datacenter a session with affinity `session_dc` reads `partition` from.
    pub fn session_read_dc(&self, partition: u32, session_dc: &str) -> Result<Option<String>> {
        Ok(self
            .read_order(partition, Some(session_dc))?
            .into_iter()
            .next())
    }

    /// The datacenter nearest the caller's region (a session's affinity when it starts).
    pub fn nearest_datacenter(&self) -> Result<String> {
        routing::nearest_datacenter(&self.topology, self.options.region.as_deref())
    }

    /// The read path: the preferred (session's) datacenter, else the nearest healthy secondary.
    /// With a token newer than the replica, the replica first pulls the missing entries. A
    /// token counts only for what the partition's history still holds of it
    /// (`Partition::kept_of_token`): writes a lossy failover or a restore undid are not waited for.
    pub fn read<T>(
        &mut self,
        partition: u32,
        prefer: Option<&str>,
        token: Option<&Token>,
        answer: impl Fn(&Replica) -> Result<T>,
    ) -> Result<(T, ServedBy)> {
        let p = self.topology.partition(partition)?;
        if let Some(t) = token {
            routing::check_token(p, t, None)?;
        }
        let need = routing::token_need(p, token);
        if let Some(served) = self.read_routed(partition, prefer, need, &answer)? {
            return Ok(served);
        }
        let p = self.topology.partition(partition)?.clone();
        let mut why: Vec<String> = self
            .topology
            .datacenters
            .iter()
            .filter(|d| d.drained && d.name != p.primary)
            .map(|d| format!("{}: drained", d.name))
            .collect();
        for dc in self.read_order(partition, prefer)? {
            match self.read_at(&p, &dc, need, &answer)? {
                Ok(served) => {
                    self.route
                        .retain(|(q, d, _)| !(*q == partition && d.as_deref() == prefer));
                    self.route.push((
                        partition,
                        prefer.map(str::to_string),
                        ReplicaId::new(&dc, partition),
                    ));
                    return Ok(served);
                }
                Err(reason) => why.push(reason),
            }
        }
        // No replica could reach the token: if the primary answered, one beyond its last
        // entry never will.
        if let (Some(t), Ok(primary)) = (token, self.log(&ReplicaId::new(&p.primary, partition))) {
            routing::check_token(&p, t, Some(primary.last()?))?;
        }
        Err(Error::Unavailable(format!(
            "no healthy replica of partition {partition} can answer ({})",
            why.join("; ")
        )))
    }

    /// The fast path: the replica this route chose last time, if still held and able to
    /// answer as it is (`ReadCheck::Serve`).
    fn read_routed<T>(
        &self,
        partition: u32,
        prefer: Option<&str>,
        need: u64,
        answer: &impl Fn(&Replica) -> Result<T>,
    ) -> Result<Option<(T, ServedBy)>> {
        let Some((_, _, id)) = self
            .route
            .iter()
            .find(|(p, d, _)| *p == partition && d.as_deref() == prefer)
        else {
            return Ok(None);
        };
        let (Some(r), Ok(p)) = (
            self.held.get(id).and_then(|h| h.local()),
            self.topology.partition(partition),
        ) else {
            return Ok(None);
        };
        let pos = r.last()?;
        let commit = match id.datacenter == p.primary {
            true => Some(r.commit_lsn()?),
            false => None,
        };
        if routing::read_check(p, pos, commit, need) != ReadCheck::Serve {
            return Ok(None);
        }
        let value = match answer(r) {
            // Found damaged (and marked) by this read: the slow path routes around it.
            Err(Error::Damaged(_)) => return Ok(None),
            got => named_not_found(got, &id.datacenter, pos.lsn, &p.primary)?,
        };
        let served = ServedBy {
            datacenter: id.datacenter.clone(),
            partition,
            term: pos.term,
            lsn: pos.lsn,
            pulled_entries: 0,
        };
        Ok(Some((value, served)))
    }

    /// Reads at the replica of `p` in `dc`, held for reads, pulling first when it must:
    /// the answer, or why this replica cannot give it (the next one is tried).
    #[allow(clippy::type_complexity)]
    fn read_at<T>(
        &mut self,
        p: &Partition,
        dc: &str,
        need: u64,
        answer: &impl Fn(&Replica) -> Result<T>,
    ) -> Result<std::result::Result<(T, ServedBy), String>> {
        let id = ReplicaId::new(dc, p.id);
        if let Some(e) = self
            .hold_for(&[id.clone()].into(), Access::Read)
            .remove(&id)
        {
            if let Error::Damaged(why) = &e {
                self.note_damage_skipped(why);
            }
            return Ok(Err(format!("{dc}: {e}")));
        }
        // The server mode: a replica on another server answers reads there, not here.
        let Some(r) = self.held.get(&id).and_then(|h| h.local()) else {
            return Ok(Err(format!("{dc}: served by its own server")));
        };
        let last = r.last()?;
        let commit = match dc == p.primary {
            true => Some(r.commit_lsn()?),
            false => None,
        };
        let mut pulled = 0;
        match routing::read_check(p, last, commit, need) {
            ReadCheck::Serve => {}
            // The primary, the last resort: entries above its commit lsn (a crashed writer's,
            // durable on it alone) are not facts yet and are never served.
            ReadCheck::Unsettled => {
                return Ok(Err(format!(
                    "{dc} (the primary): holds entries above its commit lsn that a crashed writer left, not yet settled; a write or `dirctl sync` settles them"
                )));
            }
            // Behind the token, or holding a fenced primary's uncommitted tail: pull first.
            ReadCheck::Pull(reason) => match self.pull_racing(p, &id, reason, need) {
                Ok(n) => pulled = n,
                Err(e) => {
                    let state = match reason {
                        Pull::BehindToken => "behind the session's token",
                        Pull::FencedTail => "holds a fenced primary's uncommitted tail",
                    };
                    return Ok(Err(format!(
                        "{dc}: {state} and cannot pull from the primary: {e}"
                    )));
                }
            },
        }
        let r = self.replica(&id)?;
        let pos = r.last()?;
        if pos.lsn < need {
            return Ok(Err(format!(
                "{dc}: at lsn {} after pulling, below the token's {need}",
                pos.lsn
            )));
        }
        let value = match answer(r) {
            // A checksum failure on this replica: it is marked damaged (`replica::damage`),
            // let go of, and the next replica answers.
            Err(Error::Damaged(why)) => {
                self.let_go(&id);
                self.note_damage_skipped(&why);
                return Ok(Err(format!("{dc}: {why}")));
            }
            got => named_not_found(got, dc, pos.lsn, &p.primary)?,
        };
        Ok(Ok((
            value,
            ServedBy {
                datacenter: dc.to_string(),
                partition: p.id,
                term: pos.term,
                lsn: pos.lsn,
                pulled_entries: pulled,
            },
        )))
    }

    /// Tells the caller that a read passed over a damaged replica.
    fn note_damage_skipped(&mut self, why: &str) {
        self.notes.push(crate::request::Note::Warning(format!(
            "{why} (this read was answered by another replica)"
        )));
    }

    /// Pulls the entries a secondary misses from the primary (and cuts a fenced tail it
    /// holds). The read path's one write, contained here: the secondary, held for reads, is
    /// reopened for writes keeping its lock (`hold`), and the primary and the sync standby
    /// are held for writes to settle entries a crashed writer left.
    /// `pull`, where the replica may also be brought level by its primary's continuous
    /// replication (the server mode) at the same time: an append that lost that race
    /// ("does not follow") is tried again, and a replica the replicator brought up to the
    /// token meanwhile needs no pull.
    fn pull_racing(
        &mut self,
        p: &Partition,
        id: &ReplicaId,
        reason: Pull,
        need: u64,
    ) -> Result<u64> {
        let mut tries = 0;
        loop {
            match self.pull(p, id) {
                Ok(n) => return Ok(n.shipped),
                Err(e) => {
                    tries += 1;
                    let there = self.replica(id).and_then(|r| r.last()).map(|l| l.lsn);
                    if reason == Pull::BehindToken && there.as_ref().is_ok_and(|l| *l >= need) {
                        return Ok(0);
                    }
                    if tries >= 3 {
                        return Err(e);
                    }
                }
            }
        }
    }

    fn pull(&mut self, p: &Partition, id: &ReplicaId) -> Result<CatchUp> {
        let pid = ReplicaId::new(&p.primary, p.id);
        let sid = ReplicaId::new(&p.sync_standby, p.id);
        let failed = self.hold(&[id.clone(), pid.clone(), sid].into());
        if let Some(e) = failed.get(id).or(failed.get(&pid)) {
            return Err(Error::Unavailable(e.to_string()));
        }
        self.recheck(p)
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        // Settling entries a crashed writer left needs the sync standby; without it, what is
        // at or below the commit lsn is still a fact and can be shipped.
        match self.resolve_primary(p) {
            Ok(()) | Err(Error::Unavailable(_)) => {}
            Err(e) => return Err(e),
        }
        let primary = self.log(&pid)?;
        catch_up(
            primary,
            self.log(id)?,
            primary.commit_lsn()?,
            p.term,
            &mut |_| {},
        )
    }
}

/// A secondary's "not found" says where it was read: the secondary may not hold a recent
/// write yet (reads are eventually consistent without a session).
fn named_not_found<T>(got: Result<T>, dc: &str, lsn: u64, primary: &str) -> Result<T> {
    match got {
        Err(Error::NotFound(m)) if dc != primary => Err(Error::NotFound(format!(
            "{m} (read at secondary {dc}, lsn {lsn}, which may not hold the newest writes yet: `--session FILE` for read-your-writes, `--region {primary}`, or, without servers, `dirctl sync`)"
        ))),
        other => other,
    }
}
