//! `dirctl scrub`: every replica read end to end (`Replica::scrub`), damage found marked,
//! as the scrubs of Ceph and ZFS do (docs/design.md, "Storage faults").

use serde::Serialize;

use super::{Cluster, ReplicaId};
use crate::error::{Error, Result};
use crate::replica::{Access, Replica, Scrubbed};

/// What a scrub found of one replica.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScrubReport {
    pub partition: u32,
    pub datacenter: String,
    /// What was read, for a replica read to its end.
    pub scrubbed: Option<Scrubbed>,
    pub result: ScrubResult,
}

/// One replica's outcome; shown (and serialized) as one line of text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScrubResult {
    /// Read end to end, every check passed.
    Clean,
    /// Damaged (found now or before): the finding and the way out.
    Damaged(String),
    /// Not read (lost, or held elsewhere past the lock timeout): why.
    Skipped(String),
}

impl std::fmt::Display for ScrubResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScrubResult::Clean => f.write_str("clean"),
            ScrubResult::Damaged(why) => write!(f, "damaged: {why}"),
            ScrubResult::Skipped(why) => write!(f, "skipped: {why}"),
        }
    }
}

crate::text::shown_as_text!(ScrubResult);

impl Cluster {
    /// Scrubs every replica (of `datacenter` only, if given), one at a time, each held for
    /// reads while it is read. `progress` hears of the bytes read.
    pub fn scrub(
        &mut self,
        datacenter: Option<&str>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Vec<ScrubReport>> {
        let t = self.reload_topology()?.clone();
        if let Some(dc) = datacenter {
            t.datacenter(dc)?;
        }
        let mut out = Vec::new();
        for p in &t.partitions {
            for d in t
                .datacenters
                .iter()
                .filter(|d| datacenter.is_none_or(|dc| dc == d.name))
            {
                let id = ReplicaId::new(&d.name, p.id);
                let (scrubbed, result) = self.scrub_one(&id, progress);
                out.push(ScrubReport {
                    partition: p.id,
                    datacenter: d.name.clone(),
                    scrubbed,
                    result,
                });
            }
        }
        Ok(out)
    }

    fn scrub_one(
        &mut self,
        id: &ReplicaId,
        progress: &mut dyn FnMut(u64),
    ) -> (Option<Scrubbed>, ScrubResult) {
        // Opened on its own, not among this handle's holds (which may hold it for ordinary
        // reads): with direct reads, so that the scrub reads the disk, not the page cache.
        // Nothing else is held meanwhile, so lock order cannot matter.
        // A file system without direct I/O refuses it ("Invalid argument"): then through
        // the page cache.
        self.release_all();
        let open = |access| {
            Replica::open_for(
                &id.path(&self.root),
                &id.to_string(),
                self.options.lock_timeout,
                access,
            )
        };
        let got = match open(Access::Scrub) {
            Err(e) if e.to_string().contains("Invalid argument") => open(Access::Read),
            opened => opened,
        }
        .and_then(|r| r.scrub(progress))
        .map_err(|e| outcome(id, &e));
        match got {
            Ok(s) => (Some(s), ScrubResult::Clean),
            Err((true, why)) => (None, ScrubResult::Damaged(why)),
            Err((false, why)) => (None, ScrubResult::Skipped(why)),
        }
    }
}

/// Whether a failure is damage, and its message.
fn outcome(id: &ReplicaId, e: &Error) -> (bool, String) {
    match e {
        Error::Damaged(why) => (true, super::status::finding(id, why)),
        e => (false, e.to_string()),
    }
}
