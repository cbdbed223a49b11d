//! Failovers carried out: planned (`--to DC`) and emergency. (Re-designating an
//! unreachable sync standby is the write path's: `cluster::standby`.)
//! The decisions (who is promoted, which tail it cuts, who becomes the sync standby) are
//! pure functions in `protocol::promotion`; this module gathers the facts and acts.

pub use crate::protocol::promotion::{
    choose_sync_standby, emergency_plan, emergency_promotion, planned_switch, tail_to_cut,
    Candidate, EmergencyPlan, PlannedSwitch, Promotion,
};

use std::collections::BTreeSet;
use std::time::Instant;

use serde::Serialize;

use crate::cluster::{Cluster, ReplicaId};
use crate::error::{Error, Result};
use crate::replica::Durability;
use crate::topology::Partition;

/// What a failover did.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailoverReport {
    pub partition: u32,
    pub old_primary: String,
    pub new_primary: String,
    pub old_term: u64,
    pub new_term: u64,
    pub sync_standby: String,
    /// The new primary's last lsn: every committed entry up to here is kept.
    pub lsn: u64,
    /// How long writes to the partition were refused, from fencing the old primary to the switch.
    pub write_unavailable_ms: f64,
    /// Emergency with --accept-data-loss: acknowledged writes above this lsn may be lost.
    pub possible_loss_after_lsn: Option<u64>,
    pub emergency: bool,
}

impl Cluster {
    /// Records the switch in the control plane, refusing if someone else changed the partition
    /// meanwhile, and says what the failover did (the caller adds how long it took, and an
    /// emergency's part).
    fn switch(
        &mut self,
        before: &Partition,
        new_primary: String,
        standby: String,
        first_lsn: u64,
        lsn: u64,
    ) -> Result<FailoverReport> {
        let id = before.id;
        let t = self.update_topology(|t| {
            t.change_partition(
                before,
                |now| format!("partition {id} changed during the failover (now term {}); look at `dirctl status` and retry", now.term),
                |p| p.switch_primary(&new_primary, &standby, first_lsn),
            )
        })?;
        let new_term = t.partition(id)?.term;
        self.observe_term(id, new_term);
        Ok(FailoverReport {
            partition: id,
            old_primary: before.primary.clone(),
            new_primary,
            old_term: before.term,
            new_term,
            sync_standby: standby,
            lsn,
            write_unavailable_ms: 0.0,
            possible_loss_after_lsn: None,
            emergency: false,
        })
    }

    /// Planned failover: fence the old primary (hold it), bring the target level, raise the
    /// term, switch the control plane. Zero loss.
    pub fn failover_planned(&mut self, partition: u32, to: &str) -> Result<FailoverReport> {
        let t = self.reload_topology()?;
        t.datacenter(to)?;
        let p = t.partition(partition)?.clone();
        // Refused before any replica is held when the target already is the primary.
        planned_switch(&p, to, 0)?;
        let (pid, tid) = (
            ReplicaId::new(&p.primary, partition),
            ReplicaId::new(to, partition),
        );
        // The target is proven whole first (read end to end, as an emergency failover's
        // candidate is), before writes are held up: a damaged replica is never promoted.
        let held = self.hold(&[tid.clone()].into());
        if let Some(e) = held.get(&tid) {
            return Err(match e {
                Error::Damaged(why) => Error::Unavailable(format!(
                    "the target {to} of partition {partition} is damaged, nothing was changed: {why}"
                )),
                e => e.disk_full_or(
                    format!("the target {to} of partition {partition} cannot take the partition"),
                    || Error::Unavailable(format!(
                        "the target {to} of partition {partition} is unreachable: {e}"
                    )),
                ),
            });
        }
        // (In the server mode a target on another server is scrubbed by its own server's
        // schedule, not here.)
        let scrubbed = self.replica(&tid).ok().map(|r| r.scrub(&mut |_| {}));
        if let Some(Err(Error::Damaged(why))) = scrubbed {
            self.let_go(&tid);
            return Err(Error::Unavailable(format!(
                "the target {to} of partition {partition} is damaged, nothing was changed: {why}"
            )));
        }
        // Writes are unavailable from the moment this process starts taking the replicas.
        let fenced = Instant::now();
        // Only the replicas the switch needs: the primary, the target, and the sync standby
        // (to settle entries a crashed writer left in doubt).
        let want: BTreeSet<ReplicaId> = [
            pid.clone(),
            tid.clone(),
            ReplicaId::new(&p.sync_standby, partition),
        ]
        .into();
        let failed = self.hold(&want);
        self.recheck(&p)?;
        // A full disk is said as such (free space and retry), never as "unreachable".
        let why = |id: &ReplicaId, what: String, otherwise: String| match failed.get(id) {
            Some(e) => e.disk_full_or(what, || Error::Unavailable(otherwise)),
            None => Error::Unavailable(otherwise),
        };
        self.log(&pid).map_err(|_| {
            why(&pid, format!("the primary {} of partition {partition} cannot hand the partition over", p.primary),
                format!("the primary {} of partition {partition} is unreachable; use `dirctl failover --partition {partition} --emergency`", p.primary))
        })?;
        self.log(&tid).map_err(|_| {
            why(
                &tid,
                format!("the target {to} of partition {partition} cannot take the partition"),
                format!("the target {to} of partition {partition} is unreachable"),
            )
        })?;
        // Settle what a crashed writer left; without the sync standby that cannot be done, so
        // the target takes everything the primary holds, those entries committed with it (an
        // unknown outcome may become visible; an acknowledged write is never lost).
        match self.resolve_primary(&p) {
            Ok(()) | Err(Error::Unavailable(_)) => {}
            Err(e) => return Err(e),
        }
        // Settling may have raised the term (fence_cut).
        let p = self.topology().partition(partition)?.clone();
        let primary = self.log(&pid)?;
        let target = self.log(&tid)?;
        let level = primary.last()?.lsn;
        crate::catch_up::catch_up(primary, target, level, p.term, &mut |_| {})?;
        let plan = planned_switch(&p, to, level)?;
        target.set_commit_lsn(plan.commit_lsn)?;
        let mut report = self.switch(
            &p,
            plan.promote,
            plan.sync_standby,
            plan.first_lsn,
            plan.commit_lsn,
        )?;
        report.write_unavailable_ms = fenced.elapsed().as_secs_f64() * 1e3;
        self.release_all();
        Ok(report)
    }

    /// Emergency failover: the primary is unreachable; promote the sync standby (or, with
    /// `accept_data_loss`, the most advanced reachable replica).
    pub fn failover_emergency(
        &mut self,
        partition: u32,
        accept_data_loss: bool,
    ) -> Result<FailoverReport> {
        let started = Instant::now();
        let p = self.reload_topology()?.partition(partition)?.clone();
        let mut cands = self.candidates(partition)?;
        self.recheck(&p)?;
        // The replica to promote is proven whole first (read end to end: docs/design.md,
        // "Storage faults"): one found damaged counts as lost, and the plan is made again,
        // so that damage on the sync standby refuses as a double loss does.
        let plan = loop {
            let plan = emergency_plan(&p, &cands, accept_data_loss)?;
            let nid = ReplicaId::new(&plan.promote, partition);
            match self.replica(&nid)?.scrub(&mut |_| {}) {
                Ok(_) => break plan,
                Err(Error::Damaged(_)) => {
                    self.let_go(&nid);
                    for c in cands.iter_mut().filter(|c| c.datacenter == plan.promote) {
                        c.last = None;
                    }
                }
                Err(e) => return Err(e),
            }
        };
        let nid = ReplicaId::new(&plan.promote, partition);
        let np = self.replica(&nid)?;
        // Fenced first (fencing as data): a primary that is only unreachable from here (the
        // server mode: another process, maybe still writing) can land no entry on the
        // replica being promoted once its last position is read.
        let new_term = p.term + 1;
        np.observe_term(new_term)?;
        // A diverged tail from an even older term is cut first.
        if let Some(keep) = plan.cut_after {
            np.truncate_after(keep, new_term)?;
        }
        let last = np.last()?;
        // Everything the promoted replica holds is now committed: the standby held every
        // acknowledged write; entries beyond them were "outcome unknown" and may stand.
        np.set_commit_lsn(last.lsn, Durability::Synced)?;
        let sid = ReplicaId::new(&plan.sync_standby, partition);
        if let (Ok(np), Ok(s)) = (self.log(&nid), self.log(&sid)) {
            crate::catch_up::catch_up(np, s, last.lsn, p.term, &mut |_| {})?;
        }
        let report = self.switch(&p, plan.promote, plan.sync_standby, last.lsn + 1, last.lsn)?;
        self.release_all();
        Ok(FailoverReport {
            write_unavailable_ms: started.elapsed().as_secs_f64() * 1e3,
            possible_loss_after_lsn: plan.possible_loss_after_lsn,
            emergency: true,
            ..report
        })
    }
}
