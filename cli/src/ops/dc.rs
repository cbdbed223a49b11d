//! `dirctl dc list|drain|undrain|rebuild`: datacenters.

use anyhow::Result;
use engine::Error;
use serde_json::json;

use crate::context::{confirm, Ctx};
use crate::opt::{DcCmd, Global};
use crate::output;
use engine::operators::{Need, Role};

pub fn dc(g: &Global, c: DcCmd) -> Result<()> {
    let mut ctx = Ctx::open(g)?;
    let privileged = match &c {
        DcCmd::Drain { name, .. } => Some(format!("dc drain {name}")),
        DcCmd::Undrain { name, .. } => Some(format!("dc undrain {name}")),
        DcCmd::Rebuild { name, .. } => Some(format!("dc rebuild {name}")),
        DcCmd::List => None,
    };
    if let Some(what) = privileged {
        ctx.require(&Need::Elevated(Role::Operator), &what)?;
    }
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
            // Shipped along, so that the rebuilt datacenter stays level (the servers'
            // primaries ship on their own).
            if let Ok(c) = ctx.cluster_mut() {
                let _ = c.sync(0, &mut |_| {});
            }
            return r;
        }
        DcCmd::List => {
            let t = ctx.topology();
            return output::emit(g.output, &json!(t.datacenters), || {
                output::table_by(&["name", "location", "reads"], &t.datacenters, |d| {
                    vec![
                        d.name.clone(),
                        format!("{},{}", d.location.lat, d.location.lon),
                        if d.drained { "drained" } else { "serving" }.to_string(),
                    ]
                })
            });
        }
    };
    let op = if drained { "dc.drain" } else { "dc.undrain" };
    let changed = ctx.set_drained(&name, drained).map_err(anyhow::Error::from);
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
    let n = ctx.topology().partitions.len() as u64;
    let bar = if output::stdout_is_terminal() {
        indicatif::ProgressBar::new(n)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let reports = ctx.rebuild(name, &mut |k| bar.inc(k))?;
    bar.finish_and_clear();
    let headers = ["partition", "seeded from", "lsn", "result"];
    output::emit(
        g.output,
        &json!({"datacenter": name, "replicas": reports}),
        || {
            output::table_by(&headers, &reports, |r| {
                vec![
                    r.partition.to_string(),
                    r.seeded_from.clone().unwrap_or_default(),
                    r.lsn.map(|l| l.to_string()).unwrap_or_default(),
                    r.result.to_string(),
                ]
            })
        },
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
