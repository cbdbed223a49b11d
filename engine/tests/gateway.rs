//! The gateway's route cache follows the topology: once a handle takes a changed control
//! plane (here through a write, which re-reads it under its holds), a read no longer goes
//! to the replica it chose before the change.
#![allow(clippy::unwrap_used)]

mod common;

use engine::cluster::{Cluster, ClusterOptions};

#[test]
fn a_changed_topology_drops_the_cached_route() {
    let mut f = common::cluster(1, None);
    // Partition 0: primary westus; reads go to the first undrained secondary, eastus.
    let ((), first) = f.cluster.read(0, None, None, |_| Ok(())).unwrap();
    assert_eq!(first.datacenter, "eastus");
    // Another process drains eastus.
    let mut other = Cluster::open(&f.root, ClusterOptions::default()).unwrap();
    other
        .update_topology(|t| {
            t.datacenters
                .iter_mut()
                .filter(|d| d.name == "eastus")
                .for_each(|d| d.drained = true);
            Ok(())
        })
        .unwrap();
    drop(other);
    // This handle writes (nothing): it takes the new topology under its holds.
    f.cluster.write(0, None, |_| Ok((Vec::new(), ()))).unwrap();
    assert!(f.cluster.topology().datacenter("eastus").unwrap().drained);
    let ((), next) = f.cluster.read(0, None, None, |_| Ok(())).unwrap();
    assert_eq!(
        next.datacenter, "westeurope",
        "a drained datacenter serves no read"
    );
}
