//! How a server holds replicas: its own, shared; the others', on their servers
//! (`RemoteLog`), reached at the addresses the control plane records.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use engine::cluster::{Held, Opener, ReplicaId, Shared};
use engine::replica::Access;
use engine::replica_log::ReplicaLog;
use engine::topology::Topology;
use engine::{Error, Result};
use tokio::runtime::Handle;

use super::{poisoned, Endpoints, Node, Replicas};
use crate::guard::Credential;
use crate::remote::RemoteLog;

/// The server mode's way of holding replicas: this server's own, shared; the others', on
/// their servers. A remote replica whose server does not answer is not held, so the write
/// path re-designates an unreachable sync standby as it does in the embedded mode.
pub(super) struct ServerOpener {
    pub(super) datacenter: String,
    pub(super) owned: Replicas,
    pub(super) endpoints: Endpoints,
    pub(super) runtime: Handle,
    pub(super) timeout: Duration,
    pub(super) credential: Credential,
}

impl Opener for ServerOpener {
    fn open(&self, id: &ReplicaId, _access: Access) -> Option<Result<Arc<dyn Held>>> {
        if id.datacenter == self.datacenter {
            let mine = self
                .owned
                .read()
                .ok()
                .and_then(|o| o.get(&id.partition).cloned());
            return Some(match mine {
                Some(r) => Ok(Arc::new(Shared(r)) as Arc<dyn Held>),
                None => Err(Error::Unavailable(format!(
                    "replica {id} did not open when this server started (see its log)"
                ))),
            });
        }
        Some(
            remote(
                &self.endpoints,
                &self.runtime,
                id,
                self.timeout,
                &self.credential,
            )
            .and_then(|log| {
                // A real call: a replica whose server is down is not held.
                log.last()?;
                Ok(Arc::new(log) as Arc<dyn Held>)
            }),
        )
    }
}

/// The replica `id` on its datacenter's server.
fn remote(
    endpoints: &Endpoints,
    runtime: &Handle,
    id: &ReplicaId,
    timeout: Duration,
    credential: &Credential,
) -> Result<RemoteLog> {
    let address = endpoint_of(endpoints, &id.datacenter)?;
    Ok(RemoteLog::new(
        runtime.clone(),
        &address,
        &id.datacenter,
        id.partition,
        timeout,
    )?
    .with_credential(credential.clone()))
}

pub(super) fn endpoint_of(endpoints: &Endpoints, dc: &str) -> Result<String> {
    let known = endpoints.read().map_err(|_| poisoned())?;
    known.get(dc).cloned().ok_or_else(|| {
        Error::Unavailable(format!(
            "no server address is recorded for datacenter {dc}: is its geodird running?"
        ))
    })
}

/// The addresses the topology records.
pub(super) fn endpoints_in(t: &Topology) -> BTreeMap<String, String> {
    t.datacenters
        .iter()
        .filter_map(|d| d.endpoint.clone().map(|e| (d.name.clone(), e)))
        .collect()
}

impl Node {
    /// The replica `id` on its datacenter's server, as this server's calls reach it.
    pub(super) fn remote_log(&self, id: &ReplicaId) -> Result<RemoteLog> {
        remote(
            &self.endpoints,
            &self.runtime,
            id,
            self.config.rpc_timeout,
            &self.credential,
        )
    }
}
