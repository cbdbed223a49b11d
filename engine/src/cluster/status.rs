//! `dirctl status`: every partition × datacenter, with a real probe of each replica.

use serde::{Deserialize, Serialize};

use super::{Cluster, ReplicaId};
use crate::error::{Error, Result};
use crate::log::Position;
use crate::replica::{disk_full, Access};
use crate::topology::Partition;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    pub partition: u32,
    pub datacenter: String,
    pub role: Role,
    /// The partition's current term (control plane).
    pub partition_term: u64,
    /// The term of this replica's last entry.
    pub term: Option<u64>,
    pub last_lsn: Option<u64>,
    pub lag_entries: Option<u64>,
    /// How long ago the oldest committed entry this replica misses was written (0 when it
    /// misses none); None when not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_ms: Option<u64>,
    pub health: Health,
}

/// A replica's part in its partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Primary,
    SyncStandby,
    Secondary,
}

impl Role {
    pub fn of(p: &Partition, datacenter: &str) -> Role {
        if datacenter == p.primary {
            Role::Primary
        } else if datacenter == p.sync_standby {
            Role::SyncStandby
        } else {
            Role::Secondary
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Primary => "primary",
            Role::SyncStandby => "sync-standby",
            Role::Secondary => "secondary",
        })
    }
}

/// What `status` found of a replica; shown (and serialized) as one line of text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    Ok,
    /// An operator drained its datacenter: reads route around it.
    Drained,
    /// Holds uncommitted entries of an older term up to `last` (cut at the next sync or read).
    Fenced {
        last: Position,
    },
    /// The primary holds entries a crashed writer left above its commit lsn.
    Unsettled {
        commit: u64,
        last_lsn: u64,
    },
    /// Not held, and a rebuild's folder is beside it.
    Rebuilding,
    /// Could not be held (lost, or held elsewhere past the lock timeout): why.
    Unreachable(String),
    /// Held, but its probe failed: why.
    ProbeFailed(String),
    /// Its stored bytes failed a check (`replica::damage`): what was found, and the way out.
    Damaged(String),
    /// The disk holding it is full (`replica::disk_full`, or its open failed with ENOSPC):
    /// it serves reads, but takes no write until space is freed; where, and how much is free.
    DiskFull(String),
}

impl Health {
    /// Whether the replica can serve (an operator's drain aside).
    pub fn is_up(&self) -> bool {
        matches!(self, Health::Ok | Health::Drained)
    }
}

/// `Error::Damaged`'s text for replica `id` without its name (a row already shows it).
pub(super) fn finding(id: &ReplicaId, why: &str) -> String {
    let prefix = format!("replica {id} is damaged: ");
    why.strip_prefix(&prefix).unwrap_or(why).to_string()
}

impl Health {
    /// A damaged replica's health: the finding (`Error::Damaged`'s text without the
    /// replica's name, which the row already shows).
    fn damaged(id: &ReplicaId, why: &str) -> Health {
        Health::Damaged(finding(id, why))
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Health::Ok => f.write_str("ok"),
            Health::Drained => f.write_str("drained"),
            Health::Fenced { last } => write!(f, "fenced: holds uncommitted entries of term {} up to lsn {}; cut at the next sync or read", last.term, last.lsn),
            Health::Unsettled { commit, last_lsn } => write!(f, "unsettled: holds entries a crashed writer left above its commit lsn {commit} (up to {last_lsn}), served by no read; the next write or `dirctl sync` settles them"),
            Health::Rebuilding => f.write_str("rebuilding (or an interrupted rebuild: run `dirctl dc rebuild`)"),
            Health::Unreachable(why) => write!(f, "unreachable: {why}"),
            Health::ProbeFailed(why) => write!(f, "probe failed: {why}"),
            Health::Damaged(why) => write!(f, "damaged: {why}"),
            Health::DiskFull(why) => write!(f, "disk full: {why}"),
        }
    }
}

crate::text::shown_as_text!(Health);

impl Health {
    /// A health read back from its text (`Display`), as `dirctl status --output json` and a
    /// server's status reply carry it.
    pub fn parse(text: &str) -> Health {
        let after = |prefix: &str| text.strip_prefix(prefix).map(str::to_string);
        // The numbers of a fenced or unsettled replica's text, in order.
        let numbers: Vec<u64> = text
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        match text {
            "ok" => Health::Ok,
            "drained" => Health::Drained,
            t if t.starts_with("rebuilding") => Health::Rebuilding,
            t if t.starts_with("fenced: ") && numbers.len() >= 2 => Health::Fenced {
                last: Position {
                    term: numbers[0],
                    lsn: numbers[1],
                },
            },
            t if t.starts_with("unsettled: ") && numbers.len() >= 2 => Health::Unsettled {
                commit: numbers[0],
                last_lsn: numbers[1],
            },
            _ => None
                .or_else(|| after("unreachable: ").map(Health::Unreachable))
                .or_else(|| after("damaged: ").map(Health::Damaged))
                .or_else(|| after("disk full: ").map(Health::DiskFull))
                .or_else(|| after("probe failed: ").map(Health::ProbeFailed))
                .unwrap_or_else(|| Health::ProbeFailed(text.to_string())),
        }
    }
}

impl<'de> Deserialize<'de> for Health {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Health, D::Error> {
        String::deserialize(d).map(|t| Health::parse(&t))
    }
}

impl Cluster {
    /// Every partition × datacenter: role, term, last lsn, lag, health (a real probe).
    pub fn status(&mut self) -> Result<Vec<ReplicaStatus>> {
        self.status_of(None)
    }

    /// `status` of the replicas of datacenter `only` (a server's own), or of every one. A
    /// replica's lag is known when its partition's primary is among them.
    pub fn status_of(&mut self, only: Option<&str>) -> Result<Vec<ReplicaStatus>> {
        let mut out = Vec::new();
        let now_ms = self.options.clock.now_ms();
        for p in self.topology.partitions.clone() {
            let mut rows = Vec::new();
            let mut primary_commit = None;
            // The primary's entries' times, for each lag in ms.
            let mut primary_id = None;
            let datacenters = self.topology.datacenters.clone();
            for dc in datacenters
                .iter()
                .filter(|d| only.is_none_or(|o| o == d.name))
            {
                let id = ReplicaId::new(&dc.name, p.id);
                let role = Role::of(&p, &dc.name);
                let failed = self.hold_for(&[id.clone()].into(), Access::Read);
                let (pos, health) = match failed.get(&id) {
                    Some(_) if id.rebuild_path(&self.root).exists() => (None, Health::Rebuilding),
                    Some(Error::Damaged(why)) => (None, Health::damaged(&id, why)),
                    Some(Error::DiskFull(why)) => (None, Health::DiskFull(why.clone())),
                    Some(e) => (None, Health::Unreachable(e.to_string())),
                    None => {
                        let r = self.replica(&id)?;
                        match r.probe().and_then(|_| r.last()) {
                            Ok(pos) => {
                                let commit = r.commit_lsn()?;
                                if role == Role::Primary {
                                    primary_commit = Some(commit.min(pos.lsn));
                                    primary_id = Some(id.clone());
                                }
                                let health = if p.diverged(pos) {
                                    Health::Fenced { last: pos }
                                } else if role == Role::Primary && pos.lsn > commit {
                                    Health::Unsettled {
                                        commit,
                                        last_lsn: pos.lsn,
                                    }
                                } else if let Some(why) = disk_full(&id.path(&self.root)) {
                                    Health::DiskFull(why)
                                } else if dc.drained {
                                    Health::Drained
                                } else {
                                    Health::Ok
                                };
                                (Some(pos), health)
                            }
                            Err(Error::Damaged(why)) => (None, Health::damaged(&id, &why)),
                            Err(e) => (None, Health::ProbeFailed(e.to_string())),
                        }
                    }
                };
                self.let_go(&id);
                rows.push((dc.name.clone(), role, pos, health));
            }
            // The primary held again (alone: holds are taken in order) for the times of
            // the entries the others miss.
            let behind = rows
                .iter()
                .any(|(_, _, pos, _)| pos.zip(primary_commit).is_some_and(|(p, c)| p.lsn < c));
            if let Some(pid) = primary_id.as_ref().filter(|_| behind) {
                if !self
                    .hold_for(&[pid.clone()].into(), Access::Read)
                    .is_empty()
                {
                    primary_id = None;
                }
            }
            for (dc, role, pos, health) in rows {
                let pos: Option<Position> = pos;
                let lag = match (pos, primary_commit) {
                    (Some(pos), Some(c)) => Some(c.saturating_sub(pos.lsn)),
                    _ => None,
                };
                // The time the first entry it misses was written, on the primary.
                let lag_ms = match (lag, pos, &primary_id) {
                    (Some(0), ..) => Some(0),
                    (Some(_), Some(pos), Some(pid)) => self
                        .replica(pid)
                        .and_then(|r| r.entries(pos.lsn + 1, pos.lsn + 1))
                        .ok()
                        .and_then(|e| e.first().map(|e| now_ms.saturating_sub(e.time_ms)))
                        .map(|ms| u64::try_from(ms).unwrap_or(0)),
                    _ => None,
                };
                out.push(ReplicaStatus {
                    partition: p.id,
                    datacenter: dc,
                    role,
                    partition_term: p.term,
                    term: pos.map(|x| x.term),
                    last_lsn: pos.map(|x| x.lsn),
                    lag_entries: lag,
                    lag_ms,
                    health,
                });
            }
            if let Some(pid) = primary_id {
                self.let_go(&pid);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(v: impl Serialize) -> String {
        serde_json::to_string(&v).expect("serializes")
    }

    /// `dirctl status` shows these texts and `--output json` carries them: the enums keep
    /// the strings the fields held before.
    #[test]
    fn role_and_health_show_and_serialize_as_their_text() {
        let table: Vec<(String, String, &str)> = vec![
            (Role::Primary.to_string(), json(Role::Primary), "primary"),
            (
                Role::SyncStandby.to_string(),
                json(Role::SyncStandby),
                "sync-standby",
            ),
            (
                Role::Secondary.to_string(),
                json(Role::Secondary),
                "secondary",
            ),
            (Health::Ok.to_string(), json(Health::Ok), "ok"),
            (
                Health::Drained.to_string(),
                json(Health::Drained),
                "drained",
            ),
            (
                Health::Unreachable("held elsewhere".into()).to_string(),
                json(Health::Unreachable("held elsewhere".into())),
                "unreachable: held elsewhere",
            ),
            (
                Health::ProbeFailed("io".into()).to_string(),
                json(Health::ProbeFailed("io".into())),
                "probe failed: io",
            ),
            (
                Health::DiskFull("/c/dc-eastus/p0 has 0 bytes free".into()).to_string(),
                json(Health::DiskFull("/c/dc-eastus/p0 has 0 bytes free".into())),
                "disk full: /c/dc-eastus/p0 has 0 bytes free",
            ),
        ];
        for (shown, serialized, want) in table {
            assert_eq!(shown, want);
            assert_eq!(serialized, format!("{want:?}"));
        }
        let fenced = Health::Fenced {
            last: Position { term: 2, lsn: 9 },
        };
        assert_eq!(
            fenced.to_string(),
            "fenced: holds uncommitted entries of term 2 up to lsn 9; cut at the next sync or read"
        );
        assert!(Health::Ok == "ok" && Health::Drained.is_up() && !fenced.is_up());
    }

    /// A server sends its replicas' status as `--output json` shows it; dirctl reads each
    /// health back from its text.
    #[test]
    fn every_health_reads_back_from_its_text() {
        let all = [
            Health::Ok,
            Health::Drained,
            Health::Fenced {
                last: Position { term: 2, lsn: 9 },
            },
            Health::Unsettled {
                commit: 4,
                last_lsn: 7,
            },
            Health::Rebuilding,
            Health::Unreachable("its server at http://127.0.0.1:1 did not answer".into()),
            Health::ProbeFailed("io: 3".into()),
            Health::Damaged("lsn 3 fails its crc: run `dirctl dc rebuild eastus`".into()),
            Health::DiskFull("/c/dc-eastus/p0 has 0 bytes free".into()),
        ];
        for h in all {
            let json = serde_json::to_string(&h).expect("serializes");
            let back: Health = serde_json::from_str(&json).expect("deserializes");
            assert_eq!(back, h, "{json}");
        }
    }
}
