//! What a client of the directory talks to: `Directory`, one trait whether the cluster is
//! opened in this process (`Embedded`, today's dirctl) or reached over the network (the
//! server mode, later). Requests and replies are plain data (`request`).

use crate::cluster::Cluster;
use crate::error::Result;
use crate::request::{Envelope, Note, Progress, Request, Response};
use crate::session::Token;
use crate::topology::TenantPlacement;

/// The directory as a client sees it.
pub trait Directory {
    /// Where a tenant lives: its id and partition.
    fn placement(&self, tenant: &str) -> Result<TenantPlacement>;
    /// Every tenant's name, in name order.
    fn tenant_names(&self) -> Vec<String>;
    /// Every partition's id (an audit query asks each).
    fn partition_ids(&self) -> Vec<u32>;
    /// The datacenter nearest the client's region (a new session's affinity).
    fn nearest_datacenter(&self) -> Result<String>;
    /// How much of a session token's history the partition still holds (less than its lsn
    /// after a failover that accepted data loss, or a restore in place); `ImpossibleToken`
    /// for a token of a term the partition never reached.
    fn kept_of_token(&self, token: &Token) -> Result<u64>;
    /// Carries out one request: a write in one transaction on the partition's primary (with
    /// its audit record in the same log entry), a read on the chosen replica. `progress`
    /// hears of each committed batch of a request written in several (an import).
    fn execute_with(
        &mut self,
        envelope: &Envelope,
        request: Request,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Response>;
    /// What the client should tell its user since the last call (warnings about audit
    /// records, a copy that could not be read, ...), oldest first.
    fn take_notes(&mut self) -> Vec<Note>;

    fn execute(&mut self, envelope: &Envelope, request: Request) -> Result<Response> {
        self.execute_with(envelope, request, &mut |_| {})
    }
}

/// The directory of a cluster opened in this process.
pub struct Embedded {
    pub(crate) cluster: Cluster,
    pub(crate) notes: Vec<Note>,
}

impl Embedded {
    pub fn new(cluster: Cluster) -> Embedded {
        Embedded {
            cluster,
            notes: Vec::new(),
        }
    }

    /// The cluster, for cluster administration (status, sync, failover, backup...), which
    /// is not a directory request.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    pub fn cluster_mut(&mut self) -> &mut Cluster {
        &mut self.cluster
    }

    /// Carries out many requests at once, answering each in order: concurrent writes to
    /// one partition share a log entry and its fsyncs (group commit; `executor::execute_many`).
    pub fn execute_many(&mut self, batch: Vec<(Envelope, Request)>) -> Vec<Result<Response>> {
        crate::executor::execute_many(self, batch)
    }
}

impl Directory for Embedded {
    fn placement(&self, tenant: &str) -> Result<TenantPlacement> {
        self.cluster.topology().tenant(tenant).cloned()
    }

    fn tenant_names(&self) -> Vec<String> {
        self.cluster.topology().tenants.keys().cloned().collect()
    }

    fn partition_ids(&self) -> Vec<u32> {
        self.cluster
            .topology()
            .partitions
            .iter()
            .map(|p| p.id)
            .collect()
    }

    fn nearest_datacenter(&self) -> Result<String> {
        self.cluster.nearest_datacenter()
    }

    fn kept_of_token(&self, token: &Token) -> Result<u64> {
        crate::protocol::routing::kept_of_token(self.cluster.topology(), token)
    }

    fn execute_with(
        &mut self,
        envelope: &Envelope,
        request: Request,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Response> {
        crate::executor::execute(self, envelope, request, progress)
    }

    fn take_notes(&mut self) -> Vec<Note> {
        let mut notes = self.cluster.take_notes();
        notes.append(&mut self.notes);
        notes
    }
}
