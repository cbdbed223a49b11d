//! `dirctl init`: a new cluster folder with its datacenters and partitions.

use anyhow::{Context as _, Result};
use engine::cluster::Cluster;
use engine::topology::{parse_datacenter, Topology};
use engine::Error;
use serde_json::{json, Value};

use crate::context::cluster_root;
use crate::opt::{Global, InitArgs};
use crate::output;

pub fn init(g: &Global, a: InitArgs) -> Result<()> {
    let root = cluster_root(g)?;
    if let Some(name) = &a.admin {
        engine::operators::check_name(name)?;
    }
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
    let t = match &g.control_plane {
        None => Cluster::init(&root, dcs, a.partitions),
        Some(_) => {
            let control = crate::context::control_plane(g, &root)?;
            Cluster::init_with(&root, &*control, dcs, a.partitions)
        }
    }
    .with_context(|| format!("init cluster in {}", root.display()))?;
    let admin = match &a.admin {
        Some(name) => Some(
            crate::operator::enrolled(g, name, &["security-admin".to_string()])
                .with_context(|| format!("cluster {} was created, but enrolling {name} failed; enrol with `dirctl operator enroll {name} --role security-admin`", t.cluster_id))?,
        ),
        None => None,
    };
    let mut doc = topology_json(&t);
    if let (Some((admin, _)), Some(map)) = (&admin, doc.as_object_mut()) {
        map.insert("admin".into(), admin.clone());
    }
    output::emit(g.output, &doc, || {
        let headers = ["partition", "primary", "sync standby", "term"];
        let table = output::table_by(&headers, &t.partitions, |p| {
            output::row(&[&p.id, &p.primary, &p.sync_standby, &p.term])
        });
        format!(
            "created cluster {} in {} with {} datacenters and {} partitions\n{}",
            t.cluster_id,
            root.display(),
            t.datacenters.len(),
            t.partitions.len(),
            table
        ) + admin
            .as_ref()
            .map(|(_, text)| text.as_str())
            .unwrap_or_default()
    })
}

/// The new cluster's topology as `--output json` shows it: Graph's camelCase, like every
/// other document dirctl prints (cluster.json keeps its own, versioned field names).
fn topology_json(t: &Topology) -> Value {
    let partitions: Vec<Value> = t
        .partitions
        .iter()
        .map(|p| {
            let starts: Vec<Value> = p
                .term_starts
                .iter()
                .map(|s| json!({"term": s.term, "firstLsn": s.first_lsn}))
                .collect();
            json!({"id": p.id, "primary": p.primary, "term": p.term,
                   "syncStandby": p.sync_standby, "termStarts": starts})
        })
        .collect();
    json!({
        "format": t.format,
        "clusterId": t.cluster_id,
        "generation": t.generation,
        "datacenters": t.datacenters,
        "partitions": partitions,
        "tenants": t.tenants,
    })
}
