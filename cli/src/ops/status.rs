//! `dirctl status`: every replica's role, position, lag and health.

use anyhow::Result;
use serde_json::json;

use crate::context::Ctx;
use crate::opt::Global;
use crate::output;

pub fn status(g: &Global) -> Result<()> {
    let mut ctx = Ctx::open(g)?;
    let rows = ctx.status()?;
    let t = ctx.topology();
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
                        opt(r.lag_ms),
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
                        "lag ms",
                        "health"
                    ],
                    &table
                )
            )
        },
    )
}
