//! The two-person rule: a request that cannot be undone, and who may approve it when.

use serde::{Deserialize, Serialize};

/// How long a request under the two-person rule waits for its approval, in seconds.
pub const APPROVAL_SECS: i64 = 3600;

/// A command that cannot be undone, requested by one operator, carried out only once a
/// second approves it (the two-person rule).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub id: String,
    /// Who asked.
    pub operator: String,
    /// What, in words (`failover --accept-data-loss of partition 1`).
    pub what: String,
    /// The dirctl arguments the approval carries out, exactly.
    pub args: Vec<String>,
    pub created: i64,
    pub expires: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// When the approver's run began carrying it out (through the servers, which then take
    /// the approval for the calls of that run, for `CARRY_OUT_SECS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carried_out: Option<i64>,
    /// The calls the servers took the approval for (`covers`): each once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub used: Vec<String>,
}

/// How long the servers take an approval for the calls of the run carrying it out.
pub const CARRY_OUT_SECS: i64 = 600;

/// Whether `who`'s run with `args`, which does `what`, may begin carrying out request `id`
/// at `now`: approved by them, for these arguments and this description, not begun before.
pub fn may_carry_out<'a>(
    pending: &'a [Pending],
    id: &str,
    args: &[String],
    what: &str,
    who: &str,
    now: i64,
) -> std::result::Result<&'a Pending, String> {
    let p = approved_for(pending, id, args, now)?;
    if p.what != what {
        return Err(format!(
            "request {id} approved {:?}, and this run does {what:?}",
            p.what
        ));
    }
    if p.approved_by.as_deref() != Some(who) {
        return Err(format!(
            "request {id} is carried out by the operator who approved it, not {who}"
        ));
    }
    if p.carried_out.is_some() {
        return Err(format!("request {id} was carried out already"));
    }
    Ok(p)
}

/// Whether approval `id` covers `who`'s call of `what` on `partition` at `now`: a request
/// for `what` (its words begin so; one naming a single partition, that one), approved by
/// `who`, whose run began under `CARRY_OUT_SECS` ago, not yet used for this partition (the
/// caller records the use in `used`).
pub fn covers(
    pending: &[Pending],
    id: &str,
    who: &str,
    what: &str,
    partition: u32,
    now: i64,
) -> std::result::Result<(), String> {
    let p = pending
        .iter()
        .find(|p| p.id == id)
        .ok_or_else(|| format!("no request {id} (expired, or never made)"))?;
    if p.approved_by.as_deref() != Some(who) {
        return Err(format!("request {id} was not approved by {who}"));
    }
    if !p.what.starts_with(what) {
        return Err(format!("request {id} approved {:?}, not {what}", p.what));
    }
    let named = p
        .what
        .rsplit_once(" of partition ")
        .and_then(|(_, n)| n.parse::<u32>().ok());
    if named.is_some_and(|n| n != partition) {
        return Err(format!(
            "request {id} approved {:?}, not partition {partition}",
            p.what
        ));
    }
    if p.used.contains(&partition.to_string()) {
        return Err(format!(
            "request {id} was used for partition {partition} already"
        ));
    }
    match p.carried_out {
        Some(t) if t <= now && now < t + CARRY_OUT_SECS && now < p.expires => Ok(()),
        Some(_) => Err(format!("request {id}'s approved run has ended")),
        None => Err(format!("request {id} is not being carried out")),
    }
}

/// Whether `approver` may approve `p` at `now`: never the operator who asked, never twice,
/// never once it expired.
pub fn may_approve(p: &Pending, approver: &str, now: i64) -> std::result::Result<(), String> {
    if now >= p.expires {
        return Err(format!(
            "request {} expired; ask again with the command itself",
            p.id
        ));
    }
    if p.approved_by.is_some() {
        return Err(format!("request {} is approved already", p.id));
    }
    if p.operator == approver {
        return Err(format!(
            "request {} was made by {approver}: a second operator must approve it (two-person rule)",
            p.id
        ));
    }
    Ok(())
}

/// The approved request `id` that a run with `args` carries out at `now`; else why not.
pub fn approved_for<'a>(
    pending: &'a [Pending],
    id: &str,
    args: &[String],
    now: i64,
) -> std::result::Result<&'a Pending, String> {
    let p = pending
        .iter()
        .find(|p| p.id == id)
        .ok_or_else(|| format!("no request {id} (carried out already, or never made)"))?;
    if p.approved_by.is_none() {
        return Err(format!("request {id} is not approved"));
    }
    if now >= p.expires {
        return Err(format!("request {id} expired"));
    }
    if p.args != args {
        return Err(format!("request {id} approved another command"));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_needs_a_second_operator_and_runs_only_as_approved() {
        let args: Vec<String> = vec!["failover".into(), "--partition".into(), "1".into()];
        let mut p = Pending {
            id: "r1".into(),
            operator: "ann".into(),
            what: "failover".into(),
            args: args.clone(),
            created: 0,
            expires: 100,
            approved_by: None,
            carried_out: None,
            used: Vec::new(),
        };
        assert!(may_approve(&p, "ann", 1)
            .expect_err("refused")
            .contains("second operator"));
        assert!(may_approve(&p, "bob", 100).is_err());
        assert!(may_approve(&p, "bob", 1).is_ok());
        assert!(approved_for(&[p.clone()], "r1", &args, 1).is_err());
        p.approved_by = Some("bob".into());
        assert!(may_approve(&p, "carl", 1).is_err());
        let list = [p];
        assert!(approved_for(&list, "r1", &args, 1).is_ok());
        assert!(approved_for(&list, "r1", &args[..2], 1).is_err());
        assert!(approved_for(&list, "r2", &args, 1).is_err());
        assert!(approved_for(&list, "r1", &args, 100).is_err());
        // Through the servers: only the approver's run carries it out, once, and the
        // approval covers that run's calls of what was asked, for a while.
        assert!(may_carry_out(&list, "r1", &args, "failover", "ann", 1).is_err());
        assert!(may_carry_out(&list, "r1", &args, "failover", "bob", 1).is_ok());
        assert!(may_carry_out(&list, "r1", &args, "something else", "bob", 1).is_err());
        assert!(covers(&list, "r1", "bob", "failover", 0, 1).is_err());
        let mut begun = list[0].clone();
        begun.carried_out = Some(10);
        let list = [begun.clone()];
        assert!(may_carry_out(&list, "r1", &args, "failover", "bob", 11).is_err());
        assert!(covers(&list, "r1", "bob", "failover", 0, 11).is_ok());
        assert!(covers(&list, "r1", "ann", "failover", 0, 11).is_err());
        assert!(covers(&list, "r1", "bob", "backup restore", 0, 11).is_err());
        assert!(covers(&list, "r2", "bob", "failover", 0, 11).is_err());
        assert!(covers(&list, "r1", "bob", "failover", 0, 100).is_err());
        // Each partition once; a request naming one partition covers that one only.
        begun.used = vec!["0".into()];
        assert!(covers(&[begun.clone()], "r1", "bob", "failover", 0, 11).is_err());
        assert!(covers(&[begun.clone()], "r1", "bob", "failover", 1, 11).is_ok());
        begun.what = "failover --accept-data-loss of partition 2".into();
        assert!(covers(&[begun.clone()], "r1", "bob", "failover", 1, 11).is_err());
        assert!(covers(&[begun], "r1", "bob", "failover", 2, 11).is_ok());
    }
}
