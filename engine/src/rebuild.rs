//! Rebuilding lost replicas: a fresh replica seeded from a checkpoint of a healthy replica
//! plus the log after it. The same mechanism re-seeds a secondary that fell behind the
//! retained log.

use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, ReplicaId};
use crate::error::{Error, Result};
use crate::layout::datacenter_path;
use crate::replica::sync_dir;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RebuildReport {
    pub partition: u32,
    pub datacenter: String,
    /// The replica whose checkpoint seeded the new one.
    pub seeded_from: Option<String>,
    /// The new replica's last lsn after catching up.
    pub lsn: Option<u64>,
    pub result: RebuildResult,
}

/// What became of one replica in a rebuild; shown (and serialized) as one line of text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RebuildResult {
    /// It opened: kept as it is.
    Kept,
    /// Its folder exists but does not open (why): reported, never deleted.
    DoesNotOpen(String),
    /// It is its partition's primary: fail over first.
    IsPrimary {
        partition: u32,
    },
    Rebuilt,
    Failed(String),
}

impl RebuildResult {
    /// Whether the replica is whole after the rebuild.
    pub fn is_whole(&self) -> bool {
        matches!(self, RebuildResult::Kept | RebuildResult::Rebuilt)
    }
}

impl std::fmt::Display for RebuildResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RebuildResult::Kept => f.write_str("healthy, kept"),
            RebuildResult::DoesNotOpen(why) => {
                write!(f, "exists but does not open ({why}); move it away, then rebuild")
            }
            RebuildResult::IsPrimary { partition } => write!(
                f,
                "is the primary; fail over first: `dirctl failover --partition {partition} --emergency`"
            ),
            RebuildResult::Rebuilt => f.write_str("rebuilt"),
            RebuildResult::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

crate::text::shown_as_text!(RebuildResult);

impl RebuildResult {
    /// A result read back from its text (a server's rebuild report).
    pub fn parse(text: &str) -> RebuildResult {
        let number = text
            .split(|c: char| !c.is_ascii_digit())
            .find_map(|n| n.parse().ok());
        match text {
            "healthy, kept" => RebuildResult::Kept,
            "rebuilt" => RebuildResult::Rebuilt,
            t if t.starts_with("is the primary") => RebuildResult::IsPrimary {
                partition: number.unwrap_or(0),
            },
            t => match (
                t.strip_prefix("exists but does not open ("),
                t.strip_prefix("failed: "),
            ) {
                (Some(rest), _) => RebuildResult::DoesNotOpen(
                    rest.strip_suffix("); move it away, then rebuild")
                        .unwrap_or(rest)
                        .to_string(),
                ),
                (None, Some(why)) => RebuildResult::Failed(why.to_string()),
                (None, None) => RebuildResult::Failed(t.to_string()),
            },
        }
    }
}

impl<'de> Deserialize<'de> for RebuildResult {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d).map(|t| RebuildResult::parse(&t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_result_reads_back_from_its_text() {
        for r in [
            RebuildResult::Kept,
            RebuildResult::Rebuilt,
            RebuildResult::IsPrimary { partition: 3 },
            RebuildResult::DoesNotOpen("held by another process".into()),
            RebuildResult::Failed("no healthy replica of partition 2".into()),
        ] {
            let json = serde_json::to_string(&r).expect("serializes");
            let back: RebuildResult = serde_json::from_str(&json).expect("deserializes");
            assert_eq!(back, r, "{json}");
        }
    }
}

impl Cluster {
    /// `dirctl dc rebuild NAME`: gives every lost or damaged replica of a datacenter a fresh
    /// copy. Replicas that open are kept; a folder that exists but does not open for another reason
    /// (held elsewhere, unreadable) is reported, never deleted. The primary's own replica cannot be rebuilt: fail over first.
    pub fn rebuild_datacenter(
        &mut self,
        dc: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Vec<RebuildReport>> {
        self.reload_topology()?.datacenter(dc)?;
        let dc_dir = datacenter_path(self.root(), dc);
        if !dc_dir.exists() {
            std::fs::create_dir_all(&dc_dir)
                .map_err(|e| Error::io(format!("create {}", dc_dir.display()), e))?;
            sync_dir(self.root())?;
        }
        let mut out = Vec::new();
        for p in self.topology().partitions.clone() {
            let id = ReplicaId::new(dc, p.id);
            let report = |seeded_from, lsn, result: RebuildResult| RebuildReport {
                partition: p.id,
                datacenter: dc.to_string(),
                seeded_from,
                lsn,
                result,
            };
            let damaged = if id.path(self.root()).exists() {
                let failed = self.hold(&[id.clone()].into());
                self.let_go(&id);
                match failed.get(&id) {
                    None => {
                        out.push(report(None, None, RebuildResult::Kept));
                        continue;
                    }
                    // A damaged replica is replaced (below), as a lost one is created.
                    Some(Error::Damaged(_)) => true,
                    Some(e) => {
                        out.push(report(
                            None,
                            None,
                            RebuildResult::DoesNotOpen(e.to_string()),
                        ));
                        continue;
                    }
                }
            } else {
                false
            };
            if p.primary == dc {
                out.push(report(
                    None,
                    None,
                    RebuildResult::IsPrimary { partition: p.id },
                ));
                continue;
            }
            let rebuilt = match damaged {
                true => self.reseed_damaged(&p, &id),
                false => self.reseed(&p, dc),
            };
            match rebuilt {
                Ok((from, lsn)) => {
                    progress(1);
                    out.push(report(Some(from), Some(lsn), RebuildResult::Rebuilt))
                }
                Err(e) => out.push(report(None, None, RebuildResult::Failed(e.to_string()))),
            }
        }
        self.release_all();
        Ok(out)
    }
}
