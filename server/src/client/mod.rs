//! The client side of the Directory service: `Connection`, one server's, and `Remote`,
//! the directory as dirctl sees it with `--endpoints`: the same `engine::client::Directory`
//! as the embedded mode, so every directory command runs unchanged against the servers.

use std::time::Duration;

use engine::cluster::ReplicaStatus;
use engine::request::{Envelope, Note, Progress, Request, Response};
use engine::topology::Topology;
use engine::{Error, Result};
use tokio::runtime::Handle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::guard::Credential;

use crate::pb::directory_client::DirectoryClient;
use crate::pb::execute_event::Event;
use crate::pb::{
    CheckpointRequest, ExecuteRequest, FailoverRequest, ProbeRequest, RebuildRequest,
    SetDrainedRequest, StatusRequest, TopologyRequest,
};
use crate::status::from_status;

mod servers;

pub use servers::Remote;

/// One server's Directory service.
#[derive(Clone)]
pub struct Connection {
    address: String,
    channel: Channel,
    client: DirectoryClient<InterceptedService<Channel, Credential>>,
    runtime: Handle,
    timeout: Duration,
}

/// A unary call that gives up after `t`: a server that stopped answering (frozen, cut
/// off) fails it instead of holding the caller.
fn timed<T>(message: T, t: Duration) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.set_timeout(t);
    r
}

/// The engine's error kind a server named.
fn kind_of(s: &tonic::Status) -> Option<&str> {
    s.metadata()
        .get("geodir-error")
        .and_then(|v| v.to_str().ok())
}

/// Whether a failed call reached the server at all: a status the server gave names its
/// kind; a transport failure does not.
fn from_server(s: &tonic::Status) -> bool {
    s.metadata().get("geodir-error").is_some()
}

impl Connection {
    /// The server at `address` (`http://127.0.0.1:7401`); each call has `timeout` (a
    /// request may take longer: `request_timeout`).
    pub fn new(
        runtime: Handle,
        address: &str,
        timeout: Duration,
        request_timeout: Option<Duration>,
    ) -> Result<Connection> {
        let mut endpoint = Endpoint::from_shared(address.to_string())
            .map_err(|e| Error::Invalid(format!("server address {address}: {e}")))?
            .connect_timeout(timeout)
            // A server cut off mid-request (a network partition) is noticed within about
            // twice `timeout`: its request fails instead of waiting forever.
            .http2_keep_alive_interval(timeout)
            .keep_alive_timeout(timeout)
            .keep_alive_while_idle(true);
        if let Some(t) = request_timeout {
            endpoint = endpoint.timeout(t);
        }
        let channel = {
            let _in = runtime.enter();
            endpoint.connect_lazy()
        };
        Ok(Connection {
            address: address.to_string(),
            client: client(channel.clone(), Credential::none()),
            channel,
            runtime,
            timeout,
        })
    }

    /// This connection's calls present `credential` (a login, or a server's own).
    pub fn with_credential(mut self, credential: Credential) -> Connection {
        self.client = client(self.channel.clone(), credential);
        self
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Carries out one request on this server (`forwarded`: a server sending a write on).
    pub fn execute(
        &self,
        envelope: &Envelope,
        request: &Request,
        forwarded: bool,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<(Response, Vec<Note>)> {
        self.execute_raw(envelope, request, forwarded, progress)
            .map_err(|s| self.failed(&s, request))
    }

    /// A failed call as the engine's error. A write whose server did not answer may have
    /// been carried out before the connection failed: its outcome is unknown, never
    /// "nothing applied" (unless the connection was never made).
    fn failed(&self, s: &tonic::Status, request: &Request) -> Error {
        if from_server(s) || request.is_read() || refused_connection(s) {
            return from_status(s, &self.address);
        }
        Error::OutcomeUnknown(format!(
            "the server {} failed while carrying out the write ({}); it may or may not have been applied: read it back before retrying",
            self.address,
            s.message()
        ))
    }

    fn execute_raw(
        &self,
        envelope: &Envelope,
        request: &Request,
        forwarded: bool,
        progress: &mut dyn FnMut(&Progress),
    ) -> std::result::Result<(Response, Vec<Note>), tonic::Status> {
        let json = |v: serde_json::Result<Vec<u8>>| {
            v.map_err(|e| tonic::Status::invalid_argument(format!("encode: {e}")))
        };
        let req = ExecuteRequest {
            envelope: json(serde_json::to_vec(envelope))?,
            request: json(serde_json::to_vec(request))?,
            forwarded,
        };
        let mut client = self.client.clone();
        // One wait for the call and its first message: a server answers a request without
        // progress in one go, so the calling thread is woken once, not again for the
        // reply after the headers. Progress is handed on outside the runtime (a server
        // sending a bulk load on passes it to a blocking channel).
        let (mut events, mut next) = self.runtime.block_on(async move {
            let mut events = client.execute(req).await?.into_inner();
            let first = events.message().await?;
            Ok::<_, tonic::Status>((events, first))
        })?;
        // Read to the stream's end (its trailers), the reply included: a stream dropped
        // before its end is reset, and h2 closes a connection that resets too many.
        let mut reply = None;
        while let Some(event) = next {
            match event.event {
                Some(Event::Progress(p)) => {
                    if let Ok(p) = serde_json::from_slice::<Progress>(&p) {
                        progress(&p);
                    }
                }
                Some(Event::Reply(r)) => reply = Some(r),
                None => {}
            }
            next = self.runtime.block_on(events.message())?;
        }
        let reply = reply
            .ok_or_else(|| tonic::Status::unknown("the server's reply ended without a result"))?;
        let response: Response = serde_json::from_slice(&reply.response).map_err(|e| {
            tonic::Status::internal(format!("the server's reply does not decode: {e}"))
        })?;
        let notes = reply
            .notes
            .iter()
            .filter_map(|n| serde_json::from_slice::<Note>(n).ok())
            .collect();
        Ok((response, notes))
    }

    /// One unary call on this server, its status as the engine's error.
    fn call<T, F>(
        &self,
        call: impl FnOnce(DirectoryClient<InterceptedService<Channel, Credential>>) -> F,
    ) -> Result<T>
    where
        F: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        self.runtime
            .block_on(call(self.client.clone()))
            .map(tonic::Response::into_inner)
            .map_err(|s| from_status(&s, &self.address))
    }

    /// A reply's JSON, decoded (`what` names it in the error).
    fn decoded<T: serde::de::DeserializeOwned>(&self, bytes: &[u8], what: &str) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| {
            Error::Corrupt(format!(
                "the {what} from {} does not decode: {e}",
                self.address
            ))
        })
    }

    /// The control plane as the server last read it.
    pub fn topology(&self) -> Result<Topology> {
        let t = self.timeout;
        let reply =
            self.call(|mut c| async move { c.topology(timed(TopologyRequest {}, t)).await })?;
        self.decoded(&reply.topology, "topology")
    }

    /// A failover carried out by this server (`Node::failover`).
    pub fn failover(
        &self,
        partition: u32,
        to: &str,
        emergency: bool,
        accept_data_loss: bool,
        approval: Option<&str>,
    ) -> Result<engine::failover::FailoverReport> {
        let req = FailoverRequest {
            partition,
            to: to.to_string(),
            emergency,
            accept_data_loss,
            approval: approval.unwrap_or_default().to_string(),
        };
        let reply = self.call(|mut c| async move { c.failover(req).await })?;
        self.decoded(&reply.report, "failover report")
    }

    /// This server's replicas' status, and the lag it measured of the secondaries of the
    /// primaries it owns: (partition, datacenter, lag).
    pub fn status(&self) -> Result<(Vec<ReplicaStatus>, Vec<(u32, String, crate::node::Lag)>)> {
        let t = self.timeout;
        let reply = self.call(|mut c| async move { c.status(timed(StatusRequest {}, t)).await })?;
        let rows = self.decoded(&reply.replicas, "status")?;
        let lags = reply
            .lags
            .into_iter()
            .map(|l| {
                let lag = crate::node::Lag {
                    entries: l.entries,
                    seconds: l.seconds,
                };
                (l.partition, l.datacenter, lag)
            })
            .collect();
        Ok((rows, lags))
    }

    /// A checkpoint of `partition` made by this server (its primary's) and written into the
    /// new folder `dest`, each file synced: its position, and the replica's datacenter.
    pub fn checkpoint(
        &self,
        partition: u32,
        dest: &std::path::Path,
    ) -> Result<(engine::log::Position, String)> {
        use std::io::Write as _;
        let failed = |what: String, e: std::io::Error| Error::io(what, e);
        std::fs::create_dir_all(dest)
            .map_err(|e| failed(format!("create {}", dest.display()), e))?;
        let mut chunks =
            self.call(|mut c| async move { c.checkpoint(CheckpointRequest { partition }).await })?;
        let mut file: Option<(std::path::PathBuf, std::fs::File)> = None;
        let finish = |f: Option<(std::path::PathBuf, std::fs::File)>| -> Result<()> {
            match f {
                Some((path, f)) => f
                    .sync_all()
                    .map_err(|e| failed(format!("fsync {}", path.display()), e)),
                None => Ok(()),
            }
        };
        loop {
            let chunk = self
                .runtime
                .block_on(chunks.message())
                .map_err(|s| from_status(&s, &self.address))?;
            let Some(chunk) = chunk else {
                return Err(Error::Unavailable(format!(
                    "the checkpoint of partition {partition} from {} ended before it was complete",
                    self.address
                )));
            };
            if let Some(done) = chunk.done {
                finish(file.take())?;
                engine::replica::sync_dir(dest)?;
                let pos = engine::log::Position {
                    term: done.term,
                    lsn: done.lsn,
                };
                return Ok((pos, done.source));
            }
            if !chunk.file.is_empty() {
                // A plain file name, nothing that reaches outside `dest`.
                let plain = std::path::Path::new(&chunk.file)
                    .file_name()
                    .is_some_and(|n| n == chunk.file.as_str())
                    && chunk.file != ".."
                    && chunk.file != ".";
                if !plain {
                    return Err(Error::Corrupt(format!(
                        "the checkpoint from {} names the file {:?}, which is not a plain file name",
                        self.address, chunk.file
                    )));
                }
                finish(file.take())?;
                let path = dest.join(&chunk.file);
                let f = std::fs::File::create(&path)
                    .map_err(|e| failed(format!("create {}", path.display()), e))?;
                file = Some((path, f));
            }
            match &mut file {
                Some((path, f)) => f
                    .write_all(&chunk.data)
                    .map_err(|e| failed(format!("write {}", path.display()), e))?,
                None if chunk.data.is_empty() => {}
                None => {
                    return Err(Error::Corrupt(format!(
                        "the checkpoint from {} sent data before naming its file",
                        self.address
                    )))
                }
            }
        }
    }

    /// Rebuilds this server's lost or damaged replicas, or re-seeds those of `reseed`.
    pub fn rebuild(&self, reseed: &[u32]) -> Result<Vec<engine::rebuild::RebuildReport>> {
        let req = RebuildRequest {
            reseed: reseed.to_vec(),
        };
        let reply = self.call(|mut c| async move { c.rebuild(req).await })?;
        self.decoded(&reply.reports, "rebuild reports")
    }

    /// An operator's login, proven by `code` on this server (`proof::login`).
    pub fn login(
        &self,
        operator: &str,
        code: &str,
        seconds: i64,
        correlation_id: &str,
    ) -> Result<crate::identity::Login> {
        let t = self.timeout;
        let req = crate::pb::LoginRequest {
            operator: operator.to_string(),
            code: code.to_string(),
            seconds,
            correlation_id: correlation_id.to_string(),
        };
        let reply = self.call(|mut c| async move { c.login(timed(req, t)).await })?;
        self.decoded(&reply.login, "login")
    }

    /// An elevation of the operator this connection's credential proves (`proof::elevate`).
    pub fn elevate(
        &self,
        asked: &crate::proof::ElevationAsked,
        code: &str,
        correlation_id: &str,
    ) -> Result<engine::operators::Elevation> {
        let t = self.timeout;
        let req = crate::pb::ElevateRequest {
            role: asked.role.to_string(),
            seconds: asked.secs,
            reason: asked.reason.clone(),
            code: code.to_string(),
            correlation_id: correlation_id.to_string(),
        };
        let reply = self.call(|mut c| async move { c.elevate(timed(req, t)).await })?;
        self.decoded(&reply.elevation, "elevation")
    }

    /// The two-person rule's request of `what` (`args`: the dirctl run that carries it
    /// out): the server records it and refuses; the refusal, naming it.
    pub fn request_approval(&self, what: &str, args: &[String], correlation_id: &str) -> Error {
        let t = self.timeout;
        let req = crate::pb::ApprovalRequest {
            what: what.to_string(),
            args: args.to_vec(),
            correlation_id: correlation_id.to_string(),
        };
        match self.call(|mut c| async move { c.request_approval(timed(req, t)).await }) {
            Ok(_) => {
                Error::Storage("the server took a request that needs a second operator".into())
            }
            Err(e) => e,
        }
    }

    /// A second operator's approval of request `id`, proven with `code`: the request.
    pub fn approve(
        &self,
        id: &str,
        code: &str,
        correlation_id: &str,
    ) -> Result<engine::operators::Pending> {
        let t = self.timeout;
        let req = crate::pb::ApproveRequest {
            id: id.to_string(),
            code: code.to_string(),
            correlation_id: correlation_id.to_string(),
        };
        let reply = self.call(|mut c| async move { c.approve(timed(req, t)).await })?;
        self.decoded(&reply.pending, "request")
    }

    /// The approver's run of request `id` begins: what to say of it in its audit record.
    pub fn carry_out(
        &self,
        id: &str,
        args: &[String],
        what: &str,
        correlation_id: &str,
    ) -> Result<String> {
        let t = self.timeout;
        let req = crate::pb::CarryOutRequest {
            id: id.to_string(),
            args: args.to_vec(),
            correlation_id: correlation_id.to_string(),
            what: what.to_string(),
        };
        Ok(self
            .call(|mut c| async move { c.carry_out(timed(req, t)).await })?
            .done)
    }

    /// Drains or undrains datacenter `dc` (a control-plane change this server stores).
    pub fn set_drained(&self, dc: &str, drained: bool) -> Result<()> {
        let t = self.timeout;
        let req = SetDrainedRequest {
            datacenter: dc.to_string(),
            drained,
        };
        self.call(|mut c| async move { c.set_drained(timed(req, t)).await })?;
        Ok(())
    }

    /// The datacenter this server serves (a real probe).
    pub fn datacenter(&self) -> Result<String> {
        self.probe_reply().map(|r| r.datacenter)
    }

    /// The transactional probe: healthy, and a line per replica.
    pub fn probe(&self) -> Result<(bool, Vec<String>)> {
        self.probe_reply().map(|r| (r.healthy, r.replicas))
    }

    fn probe_reply(&self) -> Result<crate::pb::ProbeReply> {
        let t = self.timeout;
        self.call(|mut c| async move { c.probe(timed(ProbeRequest {}, t)).await })
    }
}

fn client(
    channel: Channel,
    credential: Credential,
) -> DirectoryClient<InterceptedService<Channel, Credential>> {
    DirectoryClient::with_interceptor(channel, credential)
        .max_decoding_message_size(crate::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(crate::MAX_MESSAGE_BYTES)
}

/// A transport failure before anything was sent (the connection was refused or never made).
fn refused_connection(s: &tonic::Status) -> bool {
    let m = format!("{s:?}").to_ascii_lowercase();
    m.contains("connection refused")
        || m.contains("tcp connect error")
        || m.contains("connect error")
}
