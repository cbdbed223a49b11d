//! The `Replication` service: a server's own replicas, acted on by the primaries of their
//! partitions from other servers. Every request names the replica; a replica this server
//! does not own is refused (NotFound). Shipped entries are decoded and crc-checked before
//! anything is written; fencing is the replica's own (`ReplicaLog::append` refuses a writer
//! below the term it has seen). Engine calls, which fsync, run in place (`crate::inline_call`).

use std::collections::BTreeMap;
use std::sync::Arc;

use engine::log::Entry;
use engine::replica_log::ReplicaLog;
use engine::Error;
use tonic::{Request, Response, Status};

use crate::pb::replication_server::Replication;
use crate::pb::{
    AppendRequest, CommitRequest, Empty, EntriesReply, GetReply, GetRequest, LsnRequest,
    PositionReply, RangeRequest, ReplicaRef, TermAtReply, TermRequest, TruncateRequest,
};
use crate::status::to_status;

/// A replica this server owns, shared with the threads that act on it.
pub type Owned = Arc<dyn ReplicaLog + Send + Sync>;

/// This server's replica of a partition, if it holds one now (a rebuild replaces it).
pub type Lookup = Box<dyn Fn(u32) -> Option<Owned> + Send + Sync>;

/// Whether a call's credential (`crate::guard`) is a server's of the cluster: the node's
/// `permit` of a server-only call.
pub type Guard = Box<dyn Fn(Option<&str>, &str) -> engine::Result<()> + Send + Sync>;

/// The replicas of one datacenter, by partition.
pub struct ReplicationService {
    datacenter: String,
    replicas: Lookup,
    guard: Option<Guard>,
}

impl ReplicationService {
    pub fn new(datacenter: &str, replicas: Lookup) -> ReplicationService {
        ReplicationService {
            datacenter: datacenter.to_string(),
            replicas,
            guard: None,
        }
    }

    /// Every call must pass `guard` (on a cluster with operators: the servers' own only).
    pub fn with_guard(mut self, guard: Guard) -> ReplicationService {
        self.guard = Some(guard);
        self
    }

    /// Refused unless the guard lets the call's credential through.
    fn allowed(&self, meta: &tonic::metadata::MetadataMap, what: &str) -> Result<(), Status> {
        match &self.guard {
            Some(g) => g(crate::guard::presented(meta), what).map_err(|e| to_status(&e)),
            None => Ok(()),
        }
    }

    /// A fixed set of replicas (tests).
    pub fn fixed(datacenter: &str, replicas: BTreeMap<u32, Owned>) -> ReplicationService {
        ReplicationService::new(datacenter, Box::new(move |p| replicas.get(&p).cloned()))
    }

    /// The replica a request names, if this server owns it.
    fn replica(&self, r: Option<&ReplicaRef>) -> Result<Owned, Status> {
        let r = r.ok_or_else(|| Status::invalid_argument("the request names no replica"))?;
        if r.datacenter != self.datacenter {
            return Err(to_status(&Error::NotFound(format!(
                "this server owns datacenter {}'s replicas, not {}'s",
                self.datacenter, r.datacenter
            ))));
        }
        (self.replicas)(r.partition).ok_or_else(|| {
            to_status(&Error::NotFound(format!(
                "this server holds no replica of partition {} in {}",
                r.partition, self.datacenter
            )))
        })
    }
}

/// Shipped entries, each decoded and checked (crc, format) before anything is written.
pub fn decode_entries(raw: &[Vec<u8>], from: &str) -> engine::Result<Vec<Entry>> {
    raw.iter()
        .enumerate()
        .map(|(i, b)| {
            Entry::decode(b, &format!("{from}, entry {i} of the message")).map_err(|e| match e {
                Error::Corrupt(m) => Error::Invalid(format!("refused, nothing written: {m}")),
                other => other,
            })
        })
        .collect()
}

#[tonic::async_trait]
impl Replication for ReplicationService {
    async fn position(&self, req: Request<ReplicaRef>) -> Result<Response<PositionReply>, Status> {
        self.allowed(req.metadata(), "replication: position")?;
        let r = self.replica(Some(req.get_ref()))?;
        let reply = crate::inline_call(move || {
            let last = r.last()?;
            Ok(PositionReply {
                last_term: last.term,
                last_lsn: last.lsn,
                commit_lsn: r.commit_lsn()?,
                seen_term: r.seen_term()?,
                first_retained_lsn: r.first_retained_lsn()?.unwrap_or(0),
            })
        })
        .await?;
        Ok(Response::new(reply))
    }

    async fn term_at(&self, req: Request<LsnRequest>) -> Result<Response<TermAtReply>, Status> {
        self.allowed(req.metadata(), "replication: term_at")?;
        let r = self.replica(req.get_ref().replica.as_ref())?;
        let lsn = req.get_ref().lsn;
        let term = crate::inline_call(move || r.term_at(lsn)).await?;
        Ok(Response::new(TermAtReply {
            held: term.is_some(),
            term: term.unwrap_or(0),
        }))
    }

    async fn entries(&self, req: Request<RangeRequest>) -> Result<Response<EntriesReply>, Status> {
        self.allowed(req.metadata(), "replication: entries")?;
        let r = self.replica(req.get_ref().replica.as_ref())?;
        let (from, to) = (req.get_ref().from, req.get_ref().to);
        let entries = crate::inline_call(move || r.entries(from, to)).await?;
        Ok(Response::new(EntriesReply {
            entries: entries.iter().map(Entry::encode).collect(),
        }))
    }

    async fn append(&self, req: Request<AppendRequest>) -> Result<Response<Empty>, Status> {
        self.allowed(req.metadata(), "replication: append")?;
        let AppendRequest {
            replica,
            term,
            entries,
        } = req.into_inner();
        let r = self.replica(replica.as_ref())?;
        let from = format!("an append of term {term}");
        crate::inline_call(move || {
            let decoded = decode_entries(&entries, &from)?;
            r.append_encoded(&decoded, &entries, term)
        })
        .await?;
        Ok(Response::new(Empty {}))
    }

    async fn truncate(
        &self,
        req: Request<TruncateRequest>,
    ) -> Result<Response<EntriesReply>, Status> {
        self.allowed(req.metadata(), "replication: truncate")?;
        let r = self.replica(req.get_ref().replica.as_ref())?;
        let (after, term) = (req.get_ref().after_lsn, req.get_ref().term);
        let cut = crate::inline_call(move || r.truncate_after(after, term)).await?;
        Ok(Response::new(EntriesReply {
            entries: cut.iter().map(Entry::encode).collect(),
        }))
    }

    async fn observe_term(&self, req: Request<TermRequest>) -> Result<Response<Empty>, Status> {
        self.allowed(req.metadata(), "replication: observe_term")?;
        let r = self.replica(req.get_ref().replica.as_ref())?;
        let term = req.get_ref().term;
        crate::inline_call(move || r.observe_term(term)).await?;
        Ok(Response::new(Empty {}))
    }

    async fn set_commit(&self, req: Request<CommitRequest>) -> Result<Response<Empty>, Status> {
        self.allowed(req.metadata(), "replication: set_commit")?;
        let r = self.replica(req.get_ref().replica.as_ref())?;
        let lsn = req.get_ref().lsn;
        crate::inline_call(move || r.set_commit_lsn(lsn)).await?;
        Ok(Response::new(Empty {}))
    }

    async fn get(&self, req: Request<GetRequest>) -> Result<Response<GetReply>, Status> {
        self.allowed(req.metadata(), "replication: get")?;
        let r = self.replica(req.get_ref().replica.as_ref())?;
        let key = req.get_ref().key.clone();
        let v = crate::inline_call(move || r.get(&key)).await?;
        Ok(Response::new(GetReply {
            found: v.is_some(),
            value: v.unwrap_or_default(),
        }))
    }
}
