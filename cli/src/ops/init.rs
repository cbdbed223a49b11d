//! `dirctl init`: a new cluster folder with its datacenters and partitions.

use anyhow::{Context as _, Result};
use engine::cluster::Cluster;
use engine::topology::parse_datacenter;
use engine::Error;

use crate::context::cluster_root;
use crate::opt::{Global, InitArgs};
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
