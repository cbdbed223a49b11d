//! `dirctl health` and `dirctl metrics`: the cluster's state, its replicas' lag and the
//! backup age of promise 10.

use std::path::PathBuf;

use anyhow::{anyhow, Result};
use serde_json::json;

use crate::backup::dest;
use crate::context::{self, Ctx};
use crate::opt::{BackupsDir, Global, Output};
use crate::output;

/// Over this age the newest good backup puts promise 8 at risk.
const MAX_BACKUP_AGE_HOURS: i64 = 26;

/// The newest intact backup's id and age in seconds.
type Age = Option<(String, i64)>;

/// Seconds since the newest good backup (with `hash`, one whose bytes still match their
/// recorded SHA-256: it is read whole), or None when there is none; and the newer ones found
/// corrupt.
fn backup_age(g: &Global, d: &BackupsDir, hash: bool) -> Result<(PathBuf, Age, ::backup::Corrupt)> {
    let dir = dest(g, d)?;
    let now = context::clock()?.now();
    let (newest, corrupt) = ::backup::newest_good(&dir, hash)?;
    Ok((
        dir,
        newest.and_then(|b| b.created().map(|t| (b.id.clone(), (now - t).num_seconds()))),
        corrupt,
    ))
}

pub fn health(g: &Global, h: &crate::opt::HealthArgs) -> Result<()> {
    let d = &h.backups;
    let mut problems = Vec::new();
    let mut fine = Vec::new();
    let mut ctx = Ctx::open(g)?;
    let rows = ctx.status()?;
    if g.endpoints.is_some() {
        let lagging = lag_problems(&rows, h.max_lag_ms);
        if lagging.is_empty() {
            fine.push(format!("no secondary lags more than {} ms", h.max_lag_ms));
        }
        problems.extend(lagging);
    }
    for r in &rows {
        if r.health != "ok" && r.health != "drained" {
            problems.push(format!(
                "replica dc-{}/p{} is {}",
                r.datacenter, r.partition, r.health
            ));
        }
    }
    problems.extend(partition_problems(&rows));
    if problems.is_empty() {
        fine.push("every replica answers its probe".to_string());
    }
    // The server mode on etcd: the control plane itself, and a leader for every partition.
    if let (Some(spec), Some(_)) = (&g.control_plane, &g.endpoints) {
        let address = server::etcd::EtcdAddress::parse(spec)?;
        let found =
            server::etcd::problems(&address, context::runtime()?, server::etcd::DEFAULT_TIMEOUT);
        if found.is_empty() {
            fine.push(format!("every partition has a leader in {address}"));
        }
        problems.extend(found);
    }
    let (dir, age, corrupt) = backup_age(g, d, true)?;
    for (id, why) in corrupt {
        problems.push(format!(
            "backup {id} is corrupt ({why}); it cannot be restored"
        ));
    }
    match age {
        None => problems.push(format!("no good backup in {}; run `dirctl backup create`", dir.display())),
        Some((id, secs)) if secs < -3600 => problems.push(format!(
            "the newest good backup {id} is dated {} hours in the future: is this host's clock (or the one that took it) wrong?",
            -secs / 3600
        )),
        Some((id, secs)) if secs > MAX_BACKUP_AGE_HOURS * 3600 => problems.push(format!(
            "the newest good backup {id} is {} hours old (over {MAX_BACKUP_AGE_HOURS}); run `dirctl backup create` and check the cron job",
            secs / 3600
        )),
        Some((id, secs)) => fine.push(format!("newest good backup {id} is {} hours old", secs / 3600)),
    }
    if g.output == Output::Json {
        output::json(&json!({"healthy": problems.is_empty(), "problems": problems, "ok": fine}))?;
    } else {
        for f in &fine {
            output::print(&format!("ok: {f}\n"))?;
        }
        for p in &problems {
            output::print(&format!("warning: {p}\n"))?;
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(
            "{} promise(s) at risk: {}",
            problems.len(),
            problems.join("; ")
        ))
    }
}

/// Secondaries whose oldest missed entry is older than `max_ms` (the server mode, where
/// they follow continuously).
fn lag_problems(rows: &[engine::cluster::ReplicaStatus], max_ms: u64) -> Vec<String> {
    rows.iter()
        .filter_map(|r| match r.lag_ms {
            Some(ms) if ms > max_ms => Some(format!(
                "replica dc-{}/p{} lags {ms} ms ({} entries) behind its primary, over {max_ms} ms",
                r.datacenter,
                r.partition,
                r.lag_entries.unwrap_or_default()
            )),
            _ => None,
        })
        .collect()
}

/// What a partition as a whole has lost: its primary (no write can commit) or every
/// replica that serves reads (each drained or down).
fn partition_problems(rows: &[engine::cluster::ReplicaStatus]) -> Vec<String> {
    use engine::cluster::Role;
    let mut partitions: Vec<u32> = rows.iter().map(|r| r.partition).collect();
    partitions.dedup();
    let mut out = Vec::new();
    for p in partitions {
        let of: Vec<_> = rows.iter().filter(|r| r.partition == p).collect();
        if let Some(primary) = of
            .iter()
            .find(|r| r.role == Role::Primary && !r.health.is_up())
        {
            out.push(format!(
                "partition {p} takes no writes: its primary dc-{}/p{p} is {}; fail over with `dirctl failover --partition {p} --emergency`",
                primary.datacenter, primary.health
            ));
        }
        if !of.iter().any(|r| r.health == "ok") {
            out.push(format!(
                "partition {p} serves no reads: every replica is drained or down; `dirctl dc undrain NAME` one that is up"
            ));
        }
    }
    out
}

/// One metric family: name, help, and its samples (labels, value).
struct Family {
    name: &'static str,
    help: &'static str,
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

pub fn metrics(g: &Global, d: &BackupsDir) -> Result<()> {
    let (_, age, _) = backup_age(g, d, false)?;
    let mut ctx = Ctx::open(g)?;
    let rows = ctx.status()?;
    let topology = ctx.topology();
    let replica = |r: &engine::cluster::ReplicaStatus| {
        vec![
            ("partition", r.partition.to_string()),
            ("datacenter", r.datacenter.clone()),
        ]
    };
    let up = |r: &engine::cluster::ReplicaStatus| r.health == "ok" || r.health == "drained";
    let families = [
        Family {
            name: "geodir_backup_age_seconds",
            help: "Age of the newest good backup (by its size; `dirctl health` also checks its SHA-256).",
            samples: vec![(
                Vec::new(),
                age.map_or(f64::INFINITY, |(_, secs)| secs as f64),
            )],
        },
        Family {
            name: "geodir_replica_lag_entries",
            help: "Entries a replica is behind its primary's commit.",
            samples: rows
                .iter()
                .filter_map(|r| r.lag_entries.map(|lag| (replica(r), lag as f64)))
                .collect(),
        },
        Family {
            name: "geodir_replica_up",
            help: "Whether a replica answers its health probe.",
            samples: rows
                .iter()
                .map(|r| (replica(r), f64::from(u8::from(up(r)))))
                .collect(),
        },
        Family {
            name: "geodir_replica_damaged",
            help: "Whether a replica was found damaged (its stored bytes failed a check); `dirctl dc rebuild` re-seeds it.",
            samples: rows
                .iter()
                .map(|r| {
                    let damaged = matches!(r.health, engine::cluster::Health::Damaged(_));
                    (replica(r), f64::from(u8::from(damaged)))
                })
                .collect(),
        },
        Family {
            name: "geodir_datacenter_up",
            help: "Whether every replica in a datacenter answers its health probe.",
            samples: topology
                .datacenters
                .iter()
                .map(|dc| {
                    let all = rows
                        .iter()
                        .filter(|r| r.datacenter == dc.name)
                        .all(&up);
                    (vec![("datacenter", dc.name.clone())], f64::from(u8::from(all)))
                })
                .collect(),
        },
        Family {
            name: "geodir_datacenter_drained",
            help: "Whether an operator drained a datacenter (reads route around it).",
            samples: topology
                .datacenters
                .iter()
                .map(|dc| {
                    (
                        vec![("datacenter", dc.name.clone())],
                        f64::from(u8::from(dc.drained)),
                    )
                })
                .collect(),
        },
        Family {
            name: "geodir_partition_term",
            help: "A partition's term: it goes up by one at each failover (and fencing cut), so its rate counts them.",
            samples: topology
                .partitions
                .iter()
                .map(|p| (vec![("partition", p.id.to_string())], p.term as f64))
                .collect(),
        },
    ];
    if g.output == Output::Json {
        return output::json(&metrics_json(&families));
    }
    output::print(&exposition(&families))
}

/// The metric families as `{"metrics": [{name, help, samples}]}`.
fn metrics_json(families: &[Family]) -> serde_json::Value {
    let out: Vec<_> = families
        .iter()
        .map(|f| {
            let samples: Vec<_> = f
                .samples
                .iter()
                .map(|(labels, v)| {
                    let labels: serde_json::Map<_, _> = labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), json!(v)))
                        .collect();
                    // JSON has no infinity: no backup at all is null.
                    json!({"labels": labels, "value": v.is_finite().then_some(*v)})
                })
                .collect();
            json!({"name": f.name, "help": f.help, "samples": samples})
        })
        .collect();
    json!({"metrics": out})
}

/// The metric families in Prometheus' text exposition format.
fn exposition(families: &[Family]) -> String {
    let mut s = String::new();
    for f in families {
        s.push_str(&format!(
            "# HELP {} {}\n# TYPE {} gauge\n",
            f.name, f.help, f.name
        ));
        for (labels, v) in &f.samples {
            let labels: Vec<_> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            let labels = if labels.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", labels.join(","))
            };
            let v = if v.is_infinite() {
                "+Inf".to_string()
            } else {
                v.to_string()
            };
            s.push_str(&format!("{}{labels} {v}\n", f.name));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::cluster::{Health, ReplicaStatus, Role};

    fn row(dc: &str, lag_ms: Option<u64>) -> ReplicaStatus {
        ReplicaStatus {
            partition: 2,
            datacenter: dc.into(),
            role: Role::Secondary,
            partition_term: 1,
            term: Some(1),
            last_lsn: Some(10),
            lag_entries: Some(4),
            lag_ms,
            health: Health::Ok,
        }
    }

    #[test]
    fn only_a_secondary_lagging_past_the_threshold_is_a_problem() {
        let rows = [
            row("a", None),
            row("b", Some(10_000)),
            row("c", Some(10_001)),
        ];
        let p = lag_problems(&rows, 10_000);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("dc-c/p2") && p[0].contains("10001 ms"),
            "{p:?}"
        );
    }
}
