//! `dirctl scrub`: read every replica end to end, mark what is damaged, exit non-zero if any.

use anyhow::{anyhow, Result};
use serde_json::json;

use crate::context::Ctx;
use crate::opt::{Global, ScrubArgs};
use crate::output;

pub fn scrub(g: &Global, a: ScrubArgs) -> Result<()> {
    let mut ctx = Ctx::open(g)?;
    let bar = if output::stdout_is_terminal() {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} scrubbing: {bytes} read ({bytes_per_sec})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let reports = ctx
        .cluster_mut()?
        .scrub(a.datacenter.as_deref(), &mut |n| bar.inc(n))?;
    bar.finish_and_clear();
    let headers = ["partition", "datacenter", "bytes", "entries", "result"];
    output::emit(g.output, &json!({"replicas": reports}), || {
        output::table_by(&headers, &reports, |r| {
            let opt = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_else(|| "-".into());
            vec![
                r.partition.to_string(),
                r.datacenter.clone(),
                opt(r.scrubbed.map(|s| s.bytes)),
                opt(r.scrubbed.map(|s| s.entries)),
                r.result.to_string(),
            ]
        })
    })?;
    let damaged: Vec<String> = reports
        .iter()
        .filter_map(|r| match &r.result {
            engine::cluster::ScrubResult::Damaged(why) => Some(format!(
                "{}: {why}",
                engine::layout::replica_dir(&r.datacenter, r.partition)
            )),
            _ => None,
        })
        .collect();
    if damaged.is_empty() {
        return Ok(());
    }
    Err(anyhow!(
        "scrub found {} damaged replica(s): {}",
        damaged.len(),
        damaged.join("; ")
    ))
}
