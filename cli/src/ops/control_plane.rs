//! `dirctl control-plane migrate`: a cluster.json-based cluster moved into etcd.

use anyhow::{Context as _, Result};
use engine::topology::{ControlPlane as _, FileControlPlane, CLUSTER_FILE};
use engine::Error;
use serde_json::json;

use crate::context::{cluster_root, confirm};
use crate::opt::{ControlPlaneCmd, Global};
use crate::output;

pub fn control_plane(g: &Global, c: ControlPlaneCmd) -> Result<()> {
    let ControlPlaneCmd::Migrate { to, yes } = c;
    let root = cluster_root(g)?;
    if g.control_plane.is_some() {
        return Err(Error::Invalid(
            "the cluster is on etcd already (--control-plane / DIRCTL_CONTROL_PLANE): migrate moves a cluster.json into etcd; unset it".into(),
        )
        .into());
    }
    let address = server::etcd::EtcdAddress::parse(&to)?;
    let file = FileControlPlane::open(&root)?;
    confirm(
        yes,
        &format!(
            "moving the control plane of {} into {address} (stop every geodird and dirctl of this cluster first)",
            root.display()
        ),
    )?;
    let etcd = server::etcd::EtcdControlPlane::connect(
        address.clone(),
        crate::context::runtime()?,
        server::etcd::DEFAULT_TIMEOUT,
    )?;
    // Under the file's own lock, so that no change to it is lost on the way: stored in
    // etcd first (a prefix holding a cluster refuses, exit 4), then the file is moved
    // aside so that nothing reads a stale copy.
    let moved = root.join(format!("{CLUSTER_FILE}.moved-to-etcd"));
    let t = file.update(&mut |t| etcd.create(t))?;
    // The cluster's secrets (the token signing key, the operators' sealing key) go along:
    // tokens issued and logins stay valid, operators' codes keep working.
    for name in [
        server::graph::token::SECRET,
        server::identity::SEALING_SECRET,
    ] {
        if let Some(v) = file.secret(name)? {
            etcd.create_secret(name, &v)?;
        }
    }
    std::fs::rename(root.join(CLUSTER_FILE), &moved)
        .with_context(|| format!("rename {} aside", root.join(CLUSTER_FILE).display()))?;
    engine::replica::sync_dir(&root)?;
    output::emit(
        g.output,
        &json!({"clusterId": t.cluster_id, "controlPlane": address.to_string(), "movedAside": moved}),
        || {
            format!(
                "moved cluster {}'s control plane into {address}; {} is now {}\nfrom now on: export DIRCTL_CONTROL_PLANE={address} (geodird: --control-plane {address})\n",
                t.cluster_id,
                CLUSTER_FILE,
                moved.display()
            )
        },
    )
}
