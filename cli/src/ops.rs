//! Cluster-level commands: init, tenant, sync, status, dc.

use anyhow::{Context as _, Result};
use engine::cluster::Cluster;
use engine::directory;
use engine::topology::parse_datacenter;
use engine::Error;
use serde_json::json;

use crate::context::{cluster_root, confirm, Ctx};
use crate::opt::{DcCmd, FailoverArgs, Global, InitArgs, SyncArgs, TenantCmd};
use crate::output;

pub fn init(g: &Global, a: InitArgs) -> Result<()> {
    let root = cluster_root(g)?;
    let dcs = a.datacenters.split(',').collect::<Vec<_>>();
    // NAME@LAT,LON,NAME@LAT,LON: rejoin the pairs split on ','.
    let mut specs = Vec::new();
    let mut i = 0;
    while i < dcs.len() {
        if dcs[i].contains('@') && i + 1 < dcs.len() {
            specs.push(format!("{},{}", dcs[i], dcs[i + 1]));
            i += 2;
        } else {
            return Err(
                Error::Invalid(format!("--datacenters: {:?} is not NAME@LAT,LON", dcs[i])).into(),
            );
        }
    }
    let dcs = specs
        .iter()
        .map(|s| parse_datacenter(s))
        .collect::<engine::Result<Vec<_>>>()?;
    let t = Cluster::init(&root, dcs, a.partitions)
        .with_context(|| format!("init cluster in {}", root.display()))?;
    output::emit(g.output, &serde_json::to_value(&t)?, || {
        let rows: Vec<_> = t
            .partitions
            .iter()
            .map(|p| {
                vec![
                    p.id.to_string(),
                    p.primary.clone(),
                    p.sync_standby.clone(),
                    p.term.to_string(),
                ]
            })
            .collect();
        format!(
            "created cluster {} in {} with {} datacenters and {} partitions\n{}",
            t.cluster_id,
            root.display(),
            t.datacenters.len(),
            t.partitions.len(),
            output::table(&["partition", "primary", "sync standby", "term"], &rows)
        )
    })
}

pub fn tenant(g: &Global, c: TenantCmd) -> Result<()> {
    let mut ctx = Ctx::open(g)?;
    match c {
        TenantCmd::Create { name, partition } => {
            engine::topology::validate_name(&name)?;
            if let Some(same) = ctx
                .cluster
                .topology()
                .tenants
                .keys()
                .find(|k| k.eq_ignore_ascii_case(&name))
            {
                let e = Error::Conflict(format!(
                    "tenant {same} already exists (tenant names are compared without letter case)"
                ));
                let p = ctx.cluster.topology().tenants[same].partition;
                ctx.audit_outcome(p, "tenant.create", vec![name.clone()], &e.to_string());
                return Err(e.into());
            }
            let n = ctx.cluster.topology().partitions.len() as u32;
            let partition = match partition {
                Some(p) => {
                    ctx.cluster.topology().partition(p)?;
                    p
                }
                None => crc32(name.as_bytes()) % n,
            };
            let id = uuid::Uuid::new_v4().to_string();
            let now = ctx.cluster.clock().now_graph();
            let targets = vec![name.clone(), id.clone()];
            // The placement first: cluster.json decides, under its lock, which of two
            // creates of one name wins, before either writes anything to a partition.
            let placed = ctx.cluster.update_topology(|t| {
                if let Some(same) = t.tenants.keys().find(|k| k.eq_ignore_ascii_case(&name)) {
                    return Err(Error::Conflict(format!("tenant {same} already exists")));
                }
                t.tenants.insert(
                    name.clone(),
                    engine::topology::TenantPlacement {
                        id: id.clone(),
                        partition,
                    },
                );
                Ok(())
            });
            if let Err(e) = placed {
                ctx.audit_outcome(partition, "tenant.create", targets, &e.to_string());
                return Err(e.into());
            }
            let written = ctx.audited_write(partition, "tenant.create", targets, |t, _| {
                directory::create_tenant(t, &id, &name, &now)
            });
            let (record, token) = match written {
                Ok(w) => w,
                // The record may stand (outcome unknown): the placement stays with it, so the
                // tenant is found, never made twice.
                Err(e)
                    if e.chain().any(|c| {
                        matches!(c.downcast_ref(), Some(engine::Error::OutcomeUnknown(_)))
                    }) =>
                {
                    return Err(e.context(format!(
                        "tenant {name} stays placed in cluster.json: its record may have been written"
                    )));
                }
                Err(e) => {
                    // Nothing was written to the partition: take the placement back.
                    let undone = ctx.cluster.update_topology(|t| {
                        if t.tenants.get(&name).is_some_and(|p| p.id == id) {
                            t.tenants.remove(&name);
                        }
                        Ok(())
                    });
                    return Err(match undone {
                        Ok(_) => e,
                        Err(u) => e.context(format!(
                            "taking tenant {name}'s placement in cluster.json back failed too ({u}): it stays placed, without its record"
                        )),
                    });
                }
            };
            output::emit(
                g.output,
                &json!({"tenant": record, "name": name, "partition": partition, "replicaToken": token}),
                || {
                    format!("created tenant {name} ({id}) on partition {partition}\nreplicaToken  {token}\n")
                },
            )
        }
        TenantCmd::List => {
            let t = ctx.cluster.topology();
            let list: Vec<_> = t
                .tenants
                .iter()
                .map(|(n, p)| json!({"name": n, "id": p.id, "partition": p.partition}))
                .collect();
            output::emit(g.output, &json!(list), || {
                let rows: Vec<_> = t
                    .tenants
                    .iter()
                    .map(|(n, p)| vec![n.clone(), p.id.clone(), p.partition.to_string()])
                    .collect();
                output::table(&["name", "id", "partition"], &rows)
            })
        }
    }
}

fn crc32(b: &[u8]) -> u32 {
    // A stable hash for placement: the same name lands on the same partition on every machine.
    b.iter().fold(0x811c_9dc5u32, |h, x| {
        (h ^ u32::from(*x)).wrapping_mul(0x0100_0193)
    })
}

pub fn sync(g: &Global, a: SyncArgs) -> Result<()> {
    let mut ctx = Ctx::open(g)?;
    let parts: Vec<u32> = match a.partition {
        Some(p) => vec![ctx.cluster.topology().partition(p)?.id],
        None => ctx
            .cluster
            .topology()
            .partitions
            .iter()
            .map(|p| p.id)
            .collect(),
    };
    let bar = if output::stdout_is_terminal() {
        // The plan takes every replica once more: only worth it for a progress bar. Its
        // errors are the sync's own, reported below.
        let total = parts
            .iter()
            .map(|p| ctx.cluster.sync_plan(*p).unwrap_or(0))
            .sum();
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} entries {per_sec} {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for p in parts {
        match ctx.cluster.sync(p, &mut |n| bar.inc(n)) {
            Ok(r) => reports.extend(r),
            Err(e) => failures.push(format!("partition {p}: {e}")),
        }
    }
    bar.finish_and_clear();
    // The sync's audit record, then shipped along so that secondaries stay level.
    let audit_partition = a.partition.unwrap_or(0);
    let behind: Vec<_> = reports
        .iter()
        .filter_map(|r| {
            r.error
                .as_ref()
                .map(|e| format!("dc-{}/p{}: {e}", r.datacenter, r.partition))
        })
        .collect();
    let outcome = if failures.is_empty() && behind.is_empty() {
        "ok".to_string()
    } else {
        failures
            .iter()
            .chain(&behind)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ")
    };
    let targets = match a.partition {
        Some(p) => vec![format!("partition {p}")],
        None => vec!["every partition".into()],
    };
    ctx.audit_outcome(audit_partition, "sync", targets, &outcome);
    let _ = ctx.cluster.sync(audit_partition, &mut |_| {});
    let rows: Vec<_> = reports
        .iter()
        .map(|r| {
            vec![
                r.partition.to_string(),
                r.datacenter.clone(),
                r.shipped_entries.to_string(),
                r.lsn.map(|l| l.to_string()).unwrap_or_default(),
                sync_result(r),
            ]
        })
        .collect();
    output::emit(
        g.output,
        &json!({"replicas": reports, "failures": failures}),
        || {
            let mut s = output::table(
                &["partition", "datacenter", "shipped", "lsn", "result"],
                &rows,
            );
            for f in &failures {
                s.push_str(&format!("failed: {f}\n"));
            }
            s
        },
    )?;
    // A replica left behind is a replica a read may not find level: say so in the exit
    // code too, for cron and scripts.
    let mut why = Vec::new();
    if !failures.is_empty() {
        why.push(format!(
            "could not reach {} partition(s): {}",
            failures.len(),
            failures.join("; ")
        ));
    }
    if !behind.is_empty() {
        why.push(format!(
            "{} replica(s) not brought level: {}",
            behind.len(),
            behind.join("; ")
        ));
    }
    if !why.is_empty() {
        return Err(Error::Unavailable(format!("sync {}", why.join("; and "))).into());
    }
    Ok(())
}

/// One replica's line of the sync table: what was done to it, or why it was not.
fn sync_result(r: &engine::cluster::SyncReport) -> String {
    if let Some(e) = &r.error {
        return e.clone();
    }
    let mut done = Vec::new();
    if r.reseeded {
        done.push("re-seeded from a checkpoint".to_string());
    }
    if let (Some(first), Some(last)) = (r.cut_entries.first(), r.cut_entries.last()) {
        done.push(format!(
            "cut {} uncommitted entr{} (term {} lsn {} .. term {} lsn {})",
            r.cut_entries.len(),
            if r.cut_entries.len() == 1 { "y" } else { "ies" },
            first.term,
            first.lsn,
            last.term,
            last.lsn
        ));
    }
    if done.is_empty() {
        "ok".into()
    } else {
        format!("ok; {}", done.join("; "))
    }
}

pub fn status(g: &Global) -> Result<()> {
    let mut ctx = Ctx::open(g)?;
    let rows = ctx.cluster.status()?;
    let t = ctx.cluster.topology();
    output::emit(
        g.output,
        &json!({"clusterId": t.cluster_id, "generation": t.generation, "replicas": rows}),
        || {
            let table: Vec<_> = rows
                .iter()
                .map(|r| {
                    let opt =
                        |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_else(|| "-".into());
                    vec![
                        r.partition.to_string(),
                        r.datacenter.clone(),
                        r.role.to_string(),
                        r.partition_term.to_string(),
                        format!("{}/{}", opt(r.term), opt(r.last_lsn)),
                        opt(r.lag_entries),
                        r.health.to_string(),
                    ]
                })
                .collect();
            format!(
                "cluster {} (generation {})\n{}",
                t.cluster_id,
                t.generation,
                output::table(
                    &[
                        "partition",
                        "datacenter",
                        "role",
                        "term",
                        "last term/lsn",
                        "lag",
                        "health"
                    ],
                    &table
                )
            )
        },
    )
}

pub fn dc(g: &Global, c: DcCmd) -> Result<()> {
    let mut ctx = Ctx::open(g)?;
    let (name, drained) = match c {
        DcCmd::Drain { name, yes } => {
            confirm(yes, &format!("dc drain {name}"))?;
            (name, true)
        }
        DcCmd::Undrain { name, yes } => {
            confirm(yes, &format!("dc undrain {name}"))?;
            (name, false)
        }
        DcCmd::Rebuild { name, yes } => {
            confirm(yes, &format!("dc rebuild {name}"))?;
            let r = rebuild(g, &mut ctx, &name);
            ctx.audit_result(0, "dc.rebuild", vec![name], &r);
            // Shipped along, so that the rebuilt datacenter stays level.
            let _ = ctx.cluster.sync(0, &mut |_| {});
            return r;
        }
        DcCmd::List => {
            let t = ctx.cluster.topology();
            let rows: Vec<_> = t
                .datacenters
                .iter()
                .map(|d| {
                    vec![
                        d.name.clone(),
                        format!("{},{}", d.location.lat, d.location.lon),
                        if d.drained { "drained" } else { "serving" }.to_string(),
                    ]
                })
                .collect();
            return output::emit(g.output, &json!(t.datacenters), || {
                output::table(&["name", "location", "reads"], &rows)
            });
        }
    };
    let op = if drained { "dc.drain" } else { "dc.undrain" };
    let changed = ctx
        .cluster
        .topology()
        .datacenter(&name)
        .map(|_| ())
        .and_then(|()| {
            ctx.cluster.update_topology(|t| {
                for d in t.datacenters.iter_mut().filter(|d| d.name == name) {
                    d.drained = drained;
                }
                Ok(())
            })?;
            Ok(())
        })
        .map_err(anyhow::Error::from);
    ctx.audit_result(0, op, vec![name.clone()], &changed);
    changed?;
    let what = if drained {
        "drained: reads route around it"
    } else {
        "undrained: reads may reach it again"
    };
    output::emit(
        g.output,
        &json!({"datacenter": name, "drained": drained}),
        || format!("datacenter {name} {what}\n"),
    )
}

fn rebuild(g: &Global, ctx: &mut Ctx, name: &str) -> Result<()> {
    let n = ctx.cluster.topology().partitions.len() as u64;
    let bar = if output::stdout_is_terminal() {
        indicatif::ProgressBar::new(n)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let reports = ctx.cluster.rebuild_datacenter(name, &mut |k| bar.inc(k))?;
    bar.finish_and_clear();
    let rows: Vec<_> = reports
        .iter()
        .map(|r| {
            vec![
                r.partition.to_string(),
                r.seeded_from.clone().unwrap_or_default(),
                r.lsn.map(|l| l.to_string()).unwrap_or_default(),
                r.result.to_string(),
            ]
        })
        .collect();
    output::emit(
        g.output,
        &json!({"datacenter": name, "replicas": reports}),
        || output::table(&["partition", "seeded from", "lsn", "result"], &rows),
    )?;
    let bad: Vec<_> = reports
        .iter()
        .filter(|r| r.result != "rebuilt" && r.result != "healthy, kept")
        .map(|r| format!("partition {}: {}", r.partition, r.result))
        .collect();
    if !bad.is_empty() {
        let msg = format!("datacenter {name} is not whole: {}", bad.join("; "));
        // Some replicas were rebuilt: not "nothing applied" (exit 5), so exit 1.
        let rebuilt = reports.iter().any(|r| r.result == "rebuilt");
        return Err(if rebuilt {
            anyhow::anyhow!("{msg} (the others were rebuilt; see the table)")
        } else {
            Error::Unavailable(msg).into()
        });
    }
    Ok(())
}

pub fn failover(g: &Global, a: FailoverArgs) -> Result<()> {
    let what = match (&a.partition, &a.all_from) {
        (Some(p), _) => format!("partition {p}"),
        (None, Some(dc)) => format!("every partition whose primary is in {dc}"),
        (None, None) => String::new(),
    };
    confirm(a.yes, &format!("failover of {what}"))?;
    let mut ctx = Ctx::open(g)?;
    let mut losses = Vec::new();
    let r = failover_partitions(g, &mut ctx, &a, &mut losses);
    let op = if a.emergency {
        "failover.emergency"
    } else {
        "failover.planned"
    };
    let mut targets = vec![what];
    targets.extend(a.to.iter().map(|to| format!("to {to}")));
    // --accept-data-loss: the audit trail keeps the window that may have been lost.
    targets.extend(losses);
    ctx.audit_result(a.partition.unwrap_or(0), op, targets, &r);
    r
}

fn failover_partitions(
    g: &Global,
    ctx: &mut Ctx,
    a: &FailoverArgs,
    losses: &mut Vec<String>,
) -> Result<()> {
    let parts: Vec<(u32, Option<String>)> = match (&a.partition, &a.all_from) {
        (Some(p), _) => {
            ctx.cluster.topology().partition(*p)?;
            if a.to.is_none() && !a.emergency {
                return Err(Error::Invalid(
                    "say where to: --to DC (planned) or --emergency".into(),
                )
                .into());
            }
            vec![(*p, a.to.clone())]
        }
        (None, Some(dc)) => {
            let t = ctx.cluster.topology();
            t.datacenter(dc)?;
            if a.to.as_deref() == Some(dc.as_str()) {
                return Err(
                    Error::Invalid(format!("--to {dc} is the datacenter being emptied")).into(),
                );
            }
            t.partitions
                .iter()
                .filter(|p| p.primary == *dc)
                .map(|p| (p.id, a.to.clone().or_else(|| Some(p.sync_standby.clone()))))
                .collect()
        }
        (None, None) => {
            return Err(Error::Invalid("give --partition P or --all-from DC".into()).into())
        }
    };
    let bar = if output::stdout_is_terminal() && parts.len() > 1 {
        indicatif::ProgressBar::new(parts.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for (p, to) in parts {
        let r = if a.emergency {
            ctx.cluster.failover_emergency(p, a.accept_data_loss)
        } else {
            ctx.cluster
                .failover_planned(p, to.as_deref().unwrap_or_default())
        };
        match r {
            Ok(r) => reports.push(r),
            Err(e) => failures.push((p, e)),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    for r in &reports {
        if let Some(l) = r.possible_loss_after_lsn {
            losses.push(format!(
                "partition {}: acknowledged writes after lsn {l} (term {}) may be lost",
                r.partition, r.old_term
            ));
        }
    }
    let rows: Vec<_> = reports
        .iter()
        .map(|r| {
            vec![
                r.partition.to_string(),
                format!("{} -> {}", r.old_primary, r.new_primary),
                format!("{} -> {}", r.old_term, r.new_term),
                r.sync_standby.clone(),
                r.lsn.to_string(),
                format!("{:.1}", r.write_unavailable_ms),
                r.possible_loss_after_lsn
                    .map(|l| format!("acknowledged writes after lsn {l} may be lost"))
                    .unwrap_or_else(|| "none".into()),
            ]
        })
        .collect();
    let failed: Vec<String> = failures
        .iter()
        .map(|(p, e)| format!("partition {p}: {e}"))
        .collect();
    output::emit(
        g.output,
        &json!({"failovers": reports, "failures": failed}),
        || {
            let mut s = output::table(
                &[
                    "partition",
                    "primary",
                    "term",
                    "sync standby",
                    "lsn",
                    "writes unavailable ms",
                    "data loss",
                ],
                &rows,
            );
            for f in &failed {
                s.push_str(&format!("failed: {f}\n"));
            }
            s
        },
    )?;
    match failures.into_iter().next() {
        Some((_, e)) if reports.is_empty() => Err(e.into()),
        // Some partitions moved: not "nothing applied" (exit 5), so exit 1 with the message.
        Some((p, e)) => Err(anyhow::anyhow!(
            "failover of partition {p} failed (others succeeded; see the table): {e}"
        )),
        None => Ok(()),
    }
}
