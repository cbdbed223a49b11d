//! A test host of its own: a network namespace joined to this one by a veth pair, which a
//! test cuts (`ip link set ... down`) to partition the network and heals again. Made and
//! removed by the test (root: `ip netns`); every address is in 10.0.0.0/8, on this machine.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Mutex;

use super::servers::Servers;
use super::Cluster;

/// A cluster (`Cluster::new`) in the server mode whose `isolated` datacenter's server runs
/// in `ns`, the others on this host.
pub fn cluster_with(ns: &Netns, isolated: &str) -> Cluster {
    cluster_on(Cluster::new(), ns, isolated, &[])
}

/// `cluster_with` for a cluster made already, its servers started with `args`.
pub fn cluster_on(mut c: Cluster, ns: &Netns, isolated: &str, args: &[&str]) -> Cluster {
    let hosts: BTreeMap<String, (String, Vec<String>)> = ["westus", "eastus", "westeurope"]
        .iter()
        .map(|dc| {
            let host = match *dc == isolated {
                true => (ns.ns_ip.clone(), ns.exec()),
                false => (ns.service_ip.clone(), Vec::new()),
            };
            (dc.to_string(), host)
        })
        .collect();
    c.servers = Some(Mutex::new(Servers::start_on(&c.root, hosts, args)));
    c
}

pub struct Netns {
    pub name: String,
    /// The veth end on this (the host's) side.
    pub host_if: String,
    /// The host side's address, and the namespace's.
    pub host_ip: String,
    pub ns_ip: String,
    /// An address of this host that stays up when the link is cut (a link of its own): the
    /// host's servers listen there, and the namespace reaches it through the link.
    pub service_ip: String,
    dummy: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| {
        panic!("ip {}: {e} (the partition tests need iproute2, which scripts/setup installs, and root)", args.join(" "))
    });
    assert!(
        out.status.success(),
        "ip {} failed (the partition tests need root): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// A namespace for this test process, `tag` telling several apart (0..=250).
    pub fn new(tag: u8) -> Netns {
        let pid = std::process::id();
        let name = format!("geodir-{pid}-{tag}");
        let host_if = format!("gd{}h{tag}", pid % 100_000);
        let ns_if = format!("gd{}n{tag}", pid % 100_000);
        let (a, b) = (10 + (pid % 200) as u8, tag);
        assert!(tag < 100, "tag {tag}: at most 99");
        let host_ip = format!("10.{a}.{b}.1");
        let ns_ip = format!("10.{a}.{b}.2");
        let service_ip = format!("10.{a}.{}.1", 128 + b);
        let dummy = format!("gd{}d{tag}", pid % 100_000);
        // A namespace left by a test that died is replaced.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let _ = Command::new("ip").args(["link", "del", &host_if]).output();
        let _ = Command::new("ip").args(["link", "del", &dummy]).output();
        ip(&["netns", "add", &name]);
        let n = Netns {
            name: name.clone(),
            host_if: host_if.clone(),
            host_ip: host_ip.clone(),
            ns_ip: ns_ip.clone(),
            service_ip: service_ip.clone(),
            dummy: dummy.clone(),
        };
        // (No `dummy` module on every kernel: a veth pair with both ends here does the same.)
        let dummy_peer = format!("gd{}e{tag}", pid % 100_000);
        ip(&[
            "link",
            "add",
            &dummy,
            "type",
            "veth",
            "peer",
            "name",
            &dummy_peer,
        ]);
        ip(&["addr", "add", &format!("{service_ip}/24"), "dev", &dummy]);
        ip(&["link", "set", &dummy, "up"]);
        ip(&["link", "set", &dummy_peer, "up"]);
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &name]);
        ip(&["addr", "add", &format!("{host_ip}/24"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{ns_ip}/24"),
            "dev",
            &ns_if,
        ]);
        ip(&["-n", &name, "link", "set", &ns_if, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        ip(&["-n", &name, "route", "add", "default", "via", &host_ip]);
        n
    }

    /// The command prefix that runs a program inside the namespace.
    pub fn exec(&self) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.name.clone(),
        ]
    }

    /// The partition: the link between the namespace and this host goes down.
    pub fn cut(&self) {
        ip(&["link", "set", &self.host_if, "down"]);
    }

    /// The partition heals.
    pub fn heal(&self) {
        ip(&["link", "set", &self.host_if, "up"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.dummy])
            .output();
    }
}
