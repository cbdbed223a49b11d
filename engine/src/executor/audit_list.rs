//! A partition's audit records for an auditor: from its most complete settled copy, not the
//! nearest secondary's (which may lag). A copy holding entries not yet committed (a fenced
//! tail, a primary's unsettled ones) does not count. Each copy's chain head (one key) says
//! how complete it is; only the chosen copy's records are read.

use crate::audit;
use crate::client::Embedded;
use crate::error::{Error, Result};
use crate::request::{Note, Reply, Response};

pub(super) fn list(d: &mut Embedded, partition: u32) -> Result<Response> {
    let part = d.cluster.topology().partition(partition)?.clone();
    let copies = d.cluster.at_every_replica(partition, |r| {
        let last = r.last()?;
        let unsettled_primary =
            r.identity().datacenter == part.primary && last.lsn > r.commit_lsn()?;
        let settled = !part.diverged(last) && !unsettled_primary;
        Ok(if settled {
            Some(audit::last_seq(r)?)
        } else {
            None
        })
    })?;
    let primary_read = copies
        .iter()
        .any(|(dc, c)| *dc == part.primary && matches!(c, Ok(Some(_))));
    let (best, why) = most_complete(copies);
    let best = best.ok_or_else(|| {
        Error::Unavailable(format!(
            "no replica of partition {partition} can answer: {}",
            why.join("; ")
        ))
    })?;
    let records = d.cluster.at_replica(partition, &best, |r| audit::list(r))?;
    if !primary_read {
        d.notes.push(Note::Warning(format!(
            "partition {partition}: the primary's copy of the audit trail could not be read ({}); listed from the most complete secondary, which may lack the newest records",
            why.join("; ")
        )));
    }
    Ok(Response {
        reply: Reply::AuditRecords(records),
        token: None,
        served_by: None,
    })
}

/// The datacenter whose settled copy holds the most records (the first of equals), and why
/// each other copy did not count.
fn most_complete(copies: Vec<(String, Result<Option<u64>>)>) -> (Option<String>, Vec<String>) {
    let mut why = Vec::new();
    let mut best: Option<(String, u64)> = None;
    for (dc, copy) in copies {
        match copy {
            Ok(Some(n)) if best.as_ref().is_none_or(|(_, b)| n > *b) => best = Some((dc, n)),
            Ok(Some(_)) => {}
            Ok(None) => why.push(format!("{dc}: holds entries not yet committed")),
            Err(e) => why.push(format!("{dc}: {e}")),
        }
    }
    (best.map(|(dc, _)| dc), why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_with_most_records_wins_and_the_others_say_why() {
        let copies = vec![
            ("a".to_string(), Ok(Some(3))),
            ("b".to_string(), Ok(None)),
            ("c".to_string(), Ok(Some(5))),
            ("d".to_string(), Ok(Some(5))),
            ("e".to_string(), Err(Error::Unavailable("down".into()))),
        ];
        let (best, why) = most_complete(copies);
        assert_eq!(best.as_deref(), Some("c"));
        assert_eq!(
            why,
            vec![
                "b: holds entries not yet committed".to_string(),
                "e: down".to_string()
            ]
        );
        assert_eq!(most_complete(Vec::new()).0, None);
    }
}
