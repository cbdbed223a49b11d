//! `RemoteLog`: a replica on another server, as a `ReplicaLog`. The engine's shipping and
//! catch-up call it as they call a local replica; each call is one gRPC request, made on
//! this log's runtime from the calling (non-async) thread, with a deadline.

use std::time::Duration;

use engine::log::{Entry, Position};
use engine::replica_log::ReplicaLog;
use engine::{Error, Result};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::guard::Credential;
use crate::pb::replication_client::ReplicationClient;
use crate::pb::{
    AppendRequest, CommitRequest, GetRequest, LsnRequest, RangeRequest, ReplicaRef, TermRequest,
    TruncateRequest,
};
use crate::replication::decode_entries;
use crate::status::from_status;

/// A replica (datacenter, partition) served by the server at an address.
pub struct RemoteLog {
    replica: ReplicaRef,
    name: String,
    address: String,
    channel: Channel,
    client: ReplicationClient<InterceptedService<Channel, Credential>>,
    runtime: tokio::runtime::Handle,
}

impl RemoteLog {
    /// The replica of `partition` in `datacenter`, on the server at `address`
    /// (`http://127.0.0.1:7401`). Connects lazily: an unreachable server fails each call
    /// with `Unavailable`, after `timeout`.
    pub fn new(
        runtime: tokio::runtime::Handle,
        address: &str,
        datacenter: &str,
        partition: u32,
        timeout: Duration,
    ) -> Result<RemoteLog> {
        let endpoint = Endpoint::from_shared(address.to_string())
            .map_err(|e| Error::Invalid(format!("server address {address}: {e}")))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .http2_keep_alive_interval(timeout)
            .keep_alive_timeout(timeout)
            .keep_alive_while_idle(true);
        let channel = {
            let _in_runtime = runtime.enter();
            endpoint.connect_lazy()
        };
        Ok(RemoteLog {
            replica: ReplicaRef {
                datacenter: datacenter.to_string(),
                partition,
            },
            name: engine::layout::replica_dir(datacenter, partition),
            address: address.to_string(),
            client: ReplicationClient::with_interceptor(channel.clone(), Credential::none()),
            channel,
            runtime,
        })
    }

    /// This log's calls present `credential` (a server's own, on a cluster with operators).
    pub fn with_credential(mut self, credential: Credential) -> RemoteLog {
        self.client = ReplicationClient::with_interceptor(self.channel.clone(), credential);
        self
    }

    /// Runs one call on this log's runtime; a failure as the engine's error.
    fn call<T>(
        &self,
        f: impl AsyncFnOnce(
            ReplicationClient<InterceptedService<Channel, Credential>>,
        ) -> std::result::Result<tonic::Response<T>, tonic::Status>,
    ) -> Result<T> {
        let client = self.client.clone();
        let peer = self.peer();
        crate::wait(&self.runtime, f(client))
            .map(tonic::Response::into_inner)
            .map_err(|s| from_status(&s, &peer))
    }

    /// Names the replica and its server in errors.
    fn peer(&self) -> String {
        format!("{} at {}", self.name, self.address)
    }

    fn r(&self) -> Option<ReplicaRef> {
        Some(self.replica.clone())
    }
}

impl ReplicaLog for RemoteLog {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn last(&self) -> Result<Position> {
        let r = self.replica.clone();
        let p = self.call(async move |mut c| c.position(r).await)?;
        Ok(Position {
            term: p.last_term,
            lsn: p.last_lsn,
        })
    }

    fn commit_lsn(&self) -> Result<u64> {
        let r = self.replica.clone();
        Ok(self
            .call(async move |mut c| c.position(r).await)?
            .commit_lsn)
    }

    fn set_commit_lsn(&self, lsn: u64) -> Result<()> {
        let replica = self.r();
        self.call(async move |mut c| c.set_commit(CommitRequest { replica, lsn }).await)?;
        Ok(())
    }

    fn seen_term(&self) -> Result<u64> {
        let r = self.replica.clone();
        Ok(self.call(async move |mut c| c.position(r).await)?.seen_term)
    }

    fn term_at(&self, lsn: u64) -> Result<Option<u64>> {
        let replica = self.r();
        let t = self.call(async move |mut c| c.term_at(LsnRequest { replica, lsn }).await)?;
        Ok(t.held.then_some(t.term))
    }

    fn entries(&self, from: u64, to: u64) -> Result<Vec<Entry>> {
        let replica = self.r();
        let got =
            self.call(async move |mut c| c.entries(RangeRequest { replica, from, to }).await)?;
        decode_entries(&got.entries, &format!("entries from {}", self.name))
    }

    fn first_retained_lsn(&self) -> Result<Option<u64>> {
        let r = self.replica.clone();
        let first = self
            .call(async move |mut c| c.position(r).await)?
            .first_retained_lsn;
        Ok((first != 0).then_some(first))
    }

    fn append(&self, entries: &[Entry], term: u64) -> Result<()> {
        let encoded: Vec<Vec<u8>> = entries.iter().map(Entry::encode).collect();
        self.append_encoded(entries, &encoded, term)
    }

    fn append_encoded(&self, _entries: &[Entry], encoded: &[Vec<u8>], term: u64) -> Result<()> {
        let req = AppendRequest {
            replica: self.r(),
            term,
            entries: encoded.to_vec(),
        };
        self.call(async move |mut c| c.append(req).await)?;
        Ok(())
    }

    fn truncate_after(&self, lsn: u64, term: u64) -> Result<Vec<Entry>> {
        let req = TruncateRequest {
            replica: self.r(),
            after_lsn: lsn,
            term,
        };
        let cut = self.call(async move |mut c| c.truncate(req).await)?;
        decode_entries(&cut.entries, &format!("entries cut from {}", self.name))
    }

    fn observe_term(&self, term: u64) -> Result<()> {
        let replica = self.r();
        self.call(async move |mut c| c.observe_term(TermRequest { replica, term }).await)?;
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let req = GetRequest {
            replica: self.r(),
            key: key.to_vec(),
        };
        let v = self.call(async move |mut c| c.get(req).await)?;
        Ok(v.found.then_some(v.value))
    }
}

/// Held by a cluster handle of another server: replication reaches it, its data is read there.
impl engine::cluster::Held for RemoteLog {
    fn local(&self) -> Option<&engine::replica::Replica> {
        None
    }

    /// The Append request is sent from this log's runtime, and its answer comes straight to
    /// the writer: no shipping thread between them (each hand-off between threads costs tens
    /// of microseconds on a small virtual machine).
    fn start_append(
        &self,
        _entries: &std::sync::Arc<[Entry]>,
        encoded: &std::sync::Arc<[Vec<u8>]>,
        term: u64,
    ) -> Option<std::sync::mpsc::Receiver<Result<()>>> {
        let req = AppendRequest {
            replica: self.r(),
            term,
            entries: encoded.to_vec(),
        };
        let mut client = self.client.clone();
        let peer = self.peer();
        let (answer, answered) = std::sync::mpsc::channel();
        self.runtime.spawn(async move {
            let got = client
                .append(req)
                .await
                .map(|_| ())
                .map_err(|s| from_status(&s, &peer));
            let _ = answer.send(got);
        });
        Some(answered)
    }
}
