//! The node's side of `crate::guard`: a call's credential checked against the control
//! plane as this server reads it, refusals audited; and the `Login` and `Elevate` calls
//! (`crate::proof`, as dirctl's embedded mode does them).

use engine::operators::{Elevation, Need, Pending, Role};
use engine::request::{Envelope, Request};
use engine::{Error, Result};

use std::sync::Arc;

use super::Node;
use crate::guard::{self, Call, Caller};
use crate::identity::Login;
use crate::proof::{self, ElevationAsked};

impl Node {
    /// Whether the caller presenting `credential` may make `call` (`what` in a refusal):
    /// the actor its audit records name (None: the one the request declares); else "not
    /// permitted", audited (but a server-only call refused is only logged).
    pub fn permit(
        &self,
        credential: Option<&str>,
        call: &Call,
        what: &str,
        declared: &str,
        correlation_id: &str,
    ) -> Result<Option<String>> {
        // An open cluster permits everything: as last looked at (at most a second ago, by
        // `keep_credential`), without waiting on the control plane.
        if !self.minter.closed() {
            return Ok(None);
        }
        let judged =
            |node: &Node| -> Result<(Caller, std::result::Result<Option<String>, String>)> {
                let t = node.routing_topology()?;
                let now = node.config.clock.now().timestamp();
                let caller = guard::caller_of(node.minter.seed().as_deref(), &t, credential, now);
                let permitted = guard::permit(&t, &caller, call, what, declared, now);
                Ok((caller, permitted))
            };
        let (mut caller, mut permitted) = judged(self)?;
        // An elevation or a login of a moment ago: judged again on a fresh control plane.
        if permitted.is_err() && guard::worth_reloading(&caller) && self.reload_now().is_ok() {
            (caller, permitted) = judged(self)?;
        }
        let why = match permitted {
            Ok(actor) => return Ok(actor),
            Err(why) => why,
        };
        tracing::warn!(?caller, what, why = %why, "call refused");
        if *call == Call::Server {
            return Err(Error::NotPermitted(why));
        }
        let actor = match &caller {
            Caller::Operator(name) | Caller::Server(name) => name.clone(),
            Caller::Unproven(_) => format!("unproven:{declared}"),
        };
        Err(self.refused(&actor, correlation_id, what, why))
    }

    /// Keeps this server's own credential current (`Minter::refresh`, once a second) until
    /// the server stops; on a thread of its own, so that no call waits on the control plane
    /// for it. On a cluster with operators it also anchors the audit chains of the primaries
    /// it owns (`anchor_own`): when it starts, at least hourly, and whenever the control
    /// plane shows an elevation it has not anchored after.
    pub fn keep_credential(self: &Arc<Self>) {
        let mut anchored: Option<(std::time::Instant, Vec<String>)> = None;
        while !self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            self.minter.refresh();
            if let (true, Some(seed)) = (self.minter.closed(), self.minter.seed()) {
                let elevations: Vec<String> = self
                    .routing_topology()
                    .map(|t| t.elevations.iter().map(|e| e.id.clone()).collect())
                    .unwrap_or_default();
                if anchor_due(
                    anchored.as_ref(),
                    &elevations,
                    std::time::Duration::from_secs(3600),
                ) {
                    match self.anchor_own(&seed) {
                        Ok(done) => {
                            tracing::info!(partitions = ?done, "audit chains anchored");
                            anchored = Some((std::time::Instant::now(), elevations));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "audit chains not anchored");
                            // Tried again in a minute, not every second.
                            let retry = std::time::Duration::from_secs(3600 - 60);
                            let at = std::time::Instant::now().checked_sub(retry);
                            anchored = at.map(|at| (at, elevations));
                        }
                    }
                }
            }
            std::thread::park_timeout(std::time::Duration::from_secs(1));
        }
    }

    /// Anchors the audit chain of each partition whose primary this server owns: its head,
    /// settled (nothing above the commit point) and intact, signed into the control plane.
    pub fn anchor_own(&self, seed: &[u8]) -> Result<Vec<u32>> {
        let _no_round = self.replicating.lock().map_err(|_| super::poisoned())?;
        let mut dir = self.dir.lock().map_err(|_| super::poisoned())?;
        self.refresh(dir.cluster_mut())?;
        let t = dir.cluster().topology().clone();
        let now = self.config.clock.now().to_rfc3339();
        let mut done = Vec::new();
        let mut result = Ok(());
        for p in t.partitions.iter().filter(|p| p.primary == self.datacenter) {
            let one = (|| -> Result<()> {
                dir.cluster_mut().settle_primary(p.id)?;
                let Some(r) = self.own(p.id) else {
                    return Ok(());
                };
                engine::audit::chain(&*r)?;
                let head = engine::audit::head_hex(&*r)?;
                let a = crate::identity::anchor(seed, &t.cluster_id, p.id, head, &now)?;
                dir.cluster_mut().update_topology(|t| {
                    t.audit_anchors.insert(p.id, a.clone());
                    Ok(())
                })?;
                done.push(p.id);
                Ok(())
            })();
            if let Err(e) = one {
                tracing::warn!(partition = p.id, error = %e, "audit chain not anchored");
                result = Err(e);
            }
        }
        dir.cluster_mut().release_all();
        result.map(|()| done)
    }

    /// Whether `credential` proves a caller (an operator, or a server) on a cluster with
    /// operators; on an open cluster, everyone is.
    pub fn proves(&self, credential: Option<&str>) -> bool {
        if !self.minter.closed() {
            return true;
        }
        let Ok(t) = self.routing_topology() else {
            return false;
        };
        let now = self.config.clock.now().timestamp();
        !matches!(
            guard::caller_of(self.minter.seed().as_deref(), &t, credential, now),
            Caller::Unproven(_)
        )
    }

    /// A refusal of `what` to `actor`, audited: "not permitted" (exit 6 in dirctl).
    pub fn refused(&self, actor: &str, correlation_id: &str, what: &str, why: String) -> Error {
        self.audit(
            actor,
            correlation_id,
            "operator.refused",
            vec![what.to_string()],
            &why,
        );
        Error::NotPermitted(why)
    }

    /// The operator `credential` proves, permitted `call`; else "not permitted" (a server,
    /// or nobody proven), or "invalid" on a cluster without operators.
    fn operator(
        &self,
        credential: Option<&str>,
        call: &Call,
        what: &str,
        correlation_id: &str,
    ) -> Result<String> {
        match self.permit(credential, call, what, "unknown", correlation_id)? {
            Some(who) if !who.starts_with(guard::SERVER_PREFIX) => Ok(who),
            Some(_) => Err(Error::NotPermitted(format!(
                "{what}: a server is not an operator"
            ))),
            None => Err(Error::Invalid(format!(
                "{what}: this cluster has no operators"
            ))),
        }
    }

    /// The `RequestApproval` call: the two-person rule's request, recorded and audited; the
    /// refusal that names it.
    pub fn request_approval(
        &self,
        credential: Option<&str>,
        what: &str,
        args: Vec<String>,
        correlation_id: &str,
    ) -> Result<Error> {
        let need = Call::Need(Need::Elevated(Role::Operator));
        let who = self.operator(credential, &need, what, correlation_id)?;
        let now = self.config.clock.now().timestamp();
        let refusal = proof::request(
            self.minter.control(),
            &who,
            what,
            args,
            now,
            &mut |_, op, targets, outcome| self.audit(&who, correlation_id, op, targets, outcome),
        )?;
        let _ = self.reload_now();
        Ok(refusal)
    }

    /// The `Approve` call: an elevated operator's approval, proven with a code, audited.
    pub fn approve(
        &self,
        credential: Option<&str>,
        id: &str,
        code: &str,
        correlation_id: &str,
    ) -> Result<Pending> {
        let what = format!("approving request {id}");
        let need = Call::Need(Need::Elevated(Role::Operator));
        let who = self.operator(credential, &need, &what, correlation_id)?;
        let now = self.config.clock.now().timestamp();
        let p = proof::approve(
            self.minter.control(),
            &who,
            id,
            code,
            now,
            &mut |_, op, targets, outcome| self.audit(&who, correlation_id, op, targets, outcome),
        )?;
        let _ = self.reload_now();
        Ok(p)
    }

    /// The `CarryOut` call: the approver's run of request `id` begins (once).
    pub fn carry_out(
        &self,
        credential: Option<&str>,
        id: &str,
        args: &[String],
        what: &str,
        correlation_id: &str,
    ) -> Result<String> {
        let doing = format!("carrying out request {id}");
        let who = self.operator(credential, &Call::Need(Need::Read), &doing, correlation_id)?;
        let now = self.config.clock.now().timestamp();
        let done = proof::carry_out(self.minter.control(), &who, id, args, what, now)?;
        let _ = self.reload_now();
        Ok(done)
    }

    /// Whether `who`'s call of `what` on `partition` (it cannot be undone) is covered by an
    /// approval of a second operator, which it then uses (each partition once); refused
    /// (and audited) if not.
    pub fn two_person(
        &self,
        who: &str,
        approval: &str,
        what: &str,
        partition: u32,
        correlation_id: &str,
    ) -> Result<()> {
        let now = self.config.clock.now().timestamp();
        let covered = match approval {
            "" => Err("no approved request was presented".to_string()),
            id => {
                let mut why = None;
                let used = self
                    .minter
                    .control()
                    .update(&mut |t| match engine::operators::covers(
                        &t.pending, id, who, what, partition, now,
                    ) {
                        Ok(()) => {
                            for p in t.pending.iter_mut().filter(|p| p.id == id) {
                                p.used.push(partition.to_string());
                            }
                            Ok(())
                        }
                        Err(w) => {
                            why = Some(w.clone());
                            Err(Error::NotPermitted(w))
                        }
                    });
                match (used, why) {
                    (Ok(_), _) => Ok(()),
                    (Err(_), Some(w)) => Err(w),
                    (Err(e), None) => return Err(e),
                }
            }
        };
        covered.map_err(|why| {
            let why = format!(
                "{what} cannot be undone and needs a second operator (two-person rule): {why}; `dirctl {what}` records a request, which another elevated operator carries out with `dirctl approve ID --otp CODE`"
            );
            self.refused(who, correlation_id, what, why)
        })
    }

    /// An audit record of this server's own (best effort: a failure is logged).
    fn audit(
        &self,
        actor: &str,
        correlation_id: &str,
        op: &str,
        targets: Vec<String>,
        outcome: &str,
    ) {
        let envelope = Envelope {
            actor: actor.to_string(),
            correlation_id: correlation_id.to_string(),
            datacenter: None,
            token: None,
        };
        let req = Request::RecordAudit {
            partition: 0,
            op: op.to_string(),
            targets,
            outcome: outcome.to_string(),
        };
        if let Err(e) = self.execute(&envelope, req, false, &mut |_| {}) {
            tracing::warn!(op, error = %e, "audit record not written");
        }
    }

    /// The `Login` call: `proof::login` on this server's control plane, each step audited.
    pub fn login(
        &self,
        operator: &str,
        code: &str,
        secs: i64,
        correlation_id: &str,
    ) -> Result<Login> {
        let now = self.config.clock.now().timestamp();
        let declared = format!("unproven:{operator}");
        let control = self.minter.control();
        let login = proof::login(
            control,
            operator,
            code,
            secs,
            now,
            &mut |proven, op, targets, outcome| {
                self.audit(
                    proven.unwrap_or(&declared),
                    correlation_id,
                    op,
                    targets,
                    outcome,
                )
            },
        )?;
        self.minter.key_made();
        Ok(login)
    }

    /// The `Elevate` call by the operator `credential` proves: `proof::elevate`, audited.
    pub fn elevate(
        &self,
        credential: Option<&str>,
        asked: &ElevationAsked,
        code: &str,
        correlation_id: &str,
    ) -> Result<Elevation> {
        let what = format!("elevate to {}", asked.role);
        let who = self.operator(credential, &Call::Need(Need::Read), &what, correlation_id)?;
        let now = self.config.clock.now().timestamp();
        let control = self.minter.control();
        let e = proof::elevate(
            control,
            &who,
            asked,
            code,
            now,
            &mut |_, op, targets, outcome| self.audit(&who, correlation_id, op, targets, outcome),
        )?;
        let _ = self.reload_now();
        Ok(e)
    }
}

/// Whether the audit chains are due an anchor: never anchored, anchored `every` ago, or an
/// elevation in `elevations` (ids) that was not there at the last anchor.
fn anchor_due(
    last: Option<&(std::time::Instant, Vec<String>)>,
    elevations: &[String],
    every: std::time::Duration,
) -> bool {
    match last {
        None => true,
        Some((at, seen)) => at.elapsed() >= every || elevations.iter().any(|e| !seen.contains(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::anchor_due;
    use std::time::{Duration, Instant};

    #[test]
    fn the_chains_are_anchored_at_start_hourly_and_after_each_new_elevation() {
        let hour = Duration::from_secs(3600);
        assert!(anchor_due(None, &[], hour));
        let last = (Instant::now(), vec!["e1".to_string()]);
        assert!(!anchor_due(Some(&last), &["e1".into()], hour));
        // An ended elevation (pruned) is no reason; a new one is.
        assert!(!anchor_due(Some(&last), &[], hour));
        assert!(anchor_due(Some(&last), &["e1".into(), "e2".into()], hour));
        assert!(anchor_due(Some(&last), &[], Duration::ZERO));
    }
}
