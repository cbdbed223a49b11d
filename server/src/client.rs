//! The client side of the Directory service: `Connection`, one server's, and `Remote`,
//! the directory as dirctl sees it with `--endpoints`: the same `engine::client::Directory`
//! as the embedded mode, so every directory command runs unchanged against the servers.

use std::time::Duration;

use engine::client::Directory;
use engine::cluster::{Health, ReplicaStatus, Role};
use engine::request::{Envelope, Note, Progress, Request, Response};
use engine::session::Token;
use engine::topology::{TenantPlacement, Topology};
use engine::{Error, Result};
use tokio::runtime::Handle;
use tonic::transport::{Channel, Endpoint};

use crate::pb::directory_client::DirectoryClient;
use crate::pb::execute_event::Event;
use crate::pb::{
    CheckpointRequest, ExecuteRequest, FailoverRequest, ProbeRequest, RebuildRequest,
    SetDrainedRequest, StatusRequest, TopologyRequest,
};
use crate::status::from_status;

/// One server's Directory service.
#[derive(Clone)]
pub struct Connection {
    address: String,
    client: DirectoryClient<Channel>,
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
            client: DirectoryClient::new(channel)
                .max_decoding_message_size(crate::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(crate::MAX_MESSAGE_BYTES),
            runtime,
            timeout,
        })
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
        let mut events = self
            .runtime
            .block_on(async move { client.execute(req).await })?
            .into_inner();
        // Read to the stream's end (its trailers), the reply included: a stream dropped
        // before its end is reset, and h2 closes a connection that resets too many.
        let mut reply = None;
        while let Some(event) = self.runtime.block_on(events.message())? {
            match event.event {
                Some(Event::Progress(p)) => {
                    if let Ok(p) = serde_json::from_slice::<Progress>(&p) {
                        progress(&p);
                    }
                }
                Some(Event::Reply(r)) => reply = Some(r),
                None => {}
            }
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

    /// The control plane as the server last read it.
    pub fn topology(&self) -> Result<Topology> {
        let t = self.timeout;
        let mut client = self.client.clone();
        let reply = self
            .runtime
            .block_on(async move { client.topology(timed(TopologyRequest {}, t)).await })
            .map_err(|s| from_status(&s, &self.address))?
            .into_inner();
        serde_json::from_slice(&reply.topology).map_err(|e| {
            Error::Corrupt(format!(
                "the topology from {} does not decode: {e}",
                self.address
            ))
        })
    }

    /// A failover carried out by this server (`Node::failover`).
    pub fn failover(
        &self,
        partition: u32,
        to: &str,
        emergency: bool,
        accept_data_loss: bool,
    ) -> Result<engine::failover::FailoverReport> {
        let mut client = self.client.clone();
        let req = FailoverRequest {
            partition,
            to: to.to_string(),
            emergency,
            accept_data_loss,
        };
        let reply = self
            .runtime
            .block_on(async move { client.failover(req).await })
            .map_err(|s| from_status(&s, &self.address))?
            .into_inner();
        serde_json::from_slice(&reply.report).map_err(|e| {
            Error::Corrupt(format!(
                "the failover report from {} does not decode: {e}",
                self.address
            ))
        })
    }

    /// This server's replicas' status, and the lag it measured of the secondaries of the
    /// primaries it owns: (partition, datacenter, lag).
    pub fn status(&self) -> Result<(Vec<ReplicaStatus>, Vec<(u32, String, crate::node::Lag)>)> {
        let t = self.timeout;
        let mut client = self.client.clone();
        let reply = self
            .runtime
            .block_on(async move { client.status(timed(StatusRequest {}, t)).await })
            .map_err(|s| from_status(&s, &self.address))?
            .into_inner();
        let rows = serde_json::from_slice(&reply.replicas).map_err(|e| {
            Error::Corrupt(format!(
                "the status from {} does not decode: {e}",
                self.address
            ))
        })?;
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
        let mut client = self.client.clone();
        let mut chunks = self
            .runtime
            .block_on(async move { client.checkpoint(CheckpointRequest { partition }).await })
            .map_err(|s| from_status(&s, &self.address))?
            .into_inner();
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
        let mut client = self.client.clone();
        let req = RebuildRequest {
            reseed: reseed.to_vec(),
        };
        let reply = self
            .runtime
            .block_on(async move { client.rebuild(req).await })
            .map_err(|s| from_status(&s, &self.address))?
            .into_inner();
        serde_json::from_slice(&reply.reports).map_err(|e| {
            Error::Corrupt(format!(
                "the rebuild reports from {} do not decode: {e}",
                self.address
            ))
        })
    }

    /// Drains or undrains datacenter `dc` (a control-plane change this server stores).
    pub fn set_drained(&self, dc: &str, drained: bool) -> Result<()> {
        let t = self.timeout;
        let mut client = self.client.clone();
        let req = SetDrainedRequest {
            datacenter: dc.to_string(),
            drained,
        };
        self.runtime
            .block_on(async move { client.set_drained(timed(req, t)).await })
            .map_err(|s| from_status(&s, &self.address))?;
        Ok(())
    }

    /// The datacenter this server serves (a real probe).
    pub fn datacenter(&self) -> Result<String> {
        let mut client = self.client.clone();
        let t = self.timeout;
        let reply = self
            .runtime
            .block_on(async move { client.probe(timed(ProbeRequest {}, t)).await })
            .map_err(|s| from_status(&s, &self.address))?
            .into_inner();
        Ok(reply.datacenter)
    }

    /// The transactional probe: healthy, and a line per replica.
    pub fn probe(&self) -> Result<(bool, Vec<String>)> {
        let t = self.timeout;
        let mut client = self.client.clone();
        let reply = self
            .runtime
            .block_on(async move { client.probe(timed(ProbeRequest {}, t)).await })
            .map_err(|s| from_status(&s, &self.address))?
            .into_inner();
        Ok((reply.healthy, reply.replicas))
    }
}

/// The directory reached through servers: the nearest healthy one answers, the next takes
/// over when it fails (reads; a write whose server failed mid-request has an unknown
/// outcome and is not sent again).
pub struct Remote {
    connections: Vec<Connection>,
    current: usize,
    topology: Topology,
    region: Option<String>,
    notes: Vec<Note>,
}

impl Remote {
    /// Connects to the servers at `endpoints`: the first healthy one in order of distance
    /// from `region` (their datacenters' locations, from the control plane) answers.
    pub fn connect(
        runtime: Handle,
        endpoints: &[String],
        region: Option<&str>,
        timeout: Duration,
    ) -> Result<Remote> {
        if endpoints.is_empty() {
            return Err(Error::Invalid("--endpoints names no server".into()));
        }
        let connections = endpoints
            .iter()
            .map(|e| Connection::new(runtime.clone(), e, timeout, None))
            .collect::<Result<Vec<_>>>()?;
        let mut why = Vec::new();
        let mut healthy = None;
        for (i, c) in connections.iter().enumerate() {
            match c.probe().and_then(|(ok, lines)| match ok {
                true => c.topology(),
                false => Err(Error::Unavailable(lines.join("; "))),
            }) {
                Ok(t) => {
                    healthy = Some((i, t));
                    break;
                }
                Err(e) => why.push(format!("{}: {e}", c.address())),
            }
        }
        let Some((current, topology)) = healthy else {
            return Err(Error::Unavailable(format!(
                "no server answered a health probe ({})",
                why.join("; ")
            )));
        };
        // An address the control plane does not record is a server that moved, or one of
        // another cluster: a list mixing two clusters would send commands to either.
        for c in &connections {
            let recorded = topology
                .datacenters
                .iter()
                .any(|d| d.endpoint.as_deref() == Some(c.address()));
            if recorded {
                continue;
            }
            if let Ok(other) = c.topology() {
                if other.cluster_id != topology.cluster_id {
                    return Err(Error::Invalid(format!(
                        "--endpoints names servers of two clusters: {} serves cluster {}, {} serves cluster {}; give one cluster's servers",
                        connections[current].address(),
                        topology.cluster_id,
                        c.address(),
                        other.cluster_id
                    )));
                }
            }
        }
        let mut remote = Remote {
            connections,
            current,
            topology,
            region: region.map(str::to_string),
            notes: Vec::new(),
        };
        if let Some(r) = region {
            remote.topology.region(r)?;
            remote.order_by_distance(r);
        }
        Ok(remote)
    }

    /// Puts the servers in order of their datacenters' distance from `region`, the first
    /// healthy one current.
    fn order_by_distance(&mut self, region: &str) {
        let Ok(origin) = self.topology.region(region) else {
            return;
        };
        let distance = |c: &Connection| {
            self.topology
                .datacenters
                .iter()
                .find(|d| d.endpoint.as_deref() == Some(c.address()))
                .map_or(f64::MAX, |d| origin.distance_km(&d.location))
        };
        let mut order: Vec<(f64, Connection)> = self
            .connections
            .iter()
            .map(|c| (distance(c), c.clone()))
            .collect();
        order.sort_by(|a, b| a.0.total_cmp(&b.0));
        // The server `connect` found healthy is not probed again: the nearer ones are.
        let probed = self.connections[self.current].address().to_string();
        self.connections = order.into_iter().map(|(_, c)| c).collect();
        self.current = (0..self.connections.len())
            .find(|i| {
                let c = &self.connections[*i];
                c.address() == probed || matches!(c.probe(), Ok((true, _)))
            })
            .unwrap_or(0);
    }

    /// A failover of `partition`, sent to the server that carries it out: the primary's
    /// (planned) or the sync standby's (emergency).
    pub fn failover(
        &mut self,
        partition: u32,
        to: Option<&str>,
        emergency: bool,
        accept_data_loss: bool,
    ) -> Result<engine::failover::FailoverReport> {
        self.refresh_topology();
        let p = self.topology.partition(partition)?;
        let runs_at = match emergency {
            true => p.sync_standby.clone(),
            false => p.primary.clone(),
        };
        let address = self
            .topology
            .datacenter(&runs_at)?
            .endpoint
            .clone()
            .ok_or_else(|| {
                Error::Unavailable(format!("no server address is recorded for {runs_at}"))
            })?;
        // The server that must carry it out; accepting data loss, any other may (the one
        // owning the most advanced reachable replica does).
        let mut order: Vec<Connection> = self
            .connections
            .iter()
            .filter(|c| c.address() == address)
            .cloned()
            .collect();
        if order.is_empty() && !accept_data_loss {
            return Err(Error::Unavailable(format!(
                "the failover of partition {partition} is carried out by {runs_at}'s server ({address}), which is not among --endpoints"
            )));
        }
        if emergency && accept_data_loss {
            order.extend(
                self.connections
                    .iter()
                    .filter(|c| c.address() != address)
                    .cloned(),
            );
        }
        let mut why = Vec::new();
        for c in order {
            match c.failover(
                partition,
                to.unwrap_or_default(),
                emergency,
                accept_data_loss,
            ) {
                Ok(report) => {
                    self.refresh_topology();
                    return Ok(report);
                }
                // Unreachable, or not the server owning the replica to promote: the next one.
                Err(e @ (Error::Unavailable(_) | Error::Fenced(_))) if accept_data_loss => {
                    why.push(format!("{}: {e}", c.address()))
                }
                Err(e) => {
                    self.refresh_topology();
                    return Err(e);
                }
            }
        }
        self.refresh_topology();
        Err(Error::Unavailable(format!(
            "no server could carry out the failover of partition {partition} ({})",
            why.join("; ")
        )))
    }

    /// Every replica's status, asked of each datacenter's server (those the control plane
    /// records, also beyond --endpoints): a server that does not answer shows its replicas
    /// unreachable. Lag in entries against the primary's last lsn; in ms as the primary's
    /// server last measured it (0 when level).
    pub fn status(&mut self) -> Result<Vec<ReplicaStatus>> {
        self.refresh_topology();
        let t = self.topology.clone();
        let mut rows = Vec::new();
        let mut measured = std::collections::BTreeMap::new();
        for d in &t.datacenters {
            let asked = match &d.endpoint {
                Some(address) => self.to(address).and_then(|c| c.status()),
                None => Err(Error::Unavailable(format!(
                    "no server address is recorded for {}",
                    d.name
                ))),
            };
            match asked {
                Ok((mine, lags)) => {
                    rows.extend(mine);
                    for (p, dc, lag) in lags {
                        measured.insert((p, dc), lag);
                    }
                }
                Err(e) => rows.extend(t.partitions.iter().map(|p| ReplicaStatus {
                    partition: p.id,
                    datacenter: d.name.clone(),
                    role: Role::of(p, &d.name),
                    partition_term: p.term,
                    term: None,
                    last_lsn: None,
                    lag_entries: None,
                    lag_ms: None,
                    health: Health::Unreachable(format!("its server did not answer: {e}")),
                })),
            }
        }
        let order = |r: &ReplicaStatus| {
            let dc = t.datacenters.iter().position(|d| d.name == r.datacenter);
            (r.partition, dc)
        };
        rows.sort_by_key(order);
        let primary_lsn: std::collections::BTreeMap<u32, u64> = rows
            .iter()
            .filter(|r| r.role == Role::Primary)
            .filter_map(|r| Some((r.partition, r.last_lsn?)))
            .collect();
        for r in rows.iter_mut().filter(|r| r.role != Role::Primary) {
            let (Some(last), Some(primary)) = (r.last_lsn, primary_lsn.get(&r.partition)) else {
                continue;
            };
            let behind = primary.saturating_sub(last);
            r.lag_entries = Some(behind);
            r.lag_ms = match behind {
                0 => Some(0),
                _ => measured
                    .get(&(r.partition, r.datacenter.clone()))
                    .map(|l| (l.seconds * 1000.0) as u64),
            };
        }
        Ok(rows)
    }

    /// Drains or undrains datacenter `dc`, through the server answering now.
    pub fn set_drained(&mut self, dc: &str, drained: bool) -> Result<()> {
        let got = self.connection().set_drained(dc, drained);
        self.refresh_topology();
        got
    }

    /// `dirctl dc rebuild NAME`, carried out by NAME's server.
    pub fn rebuild(&mut self, dc: &str) -> Result<Vec<engine::rebuild::RebuildReport>> {
        self.refresh_topology();
        let d = self.topology.datacenter(dc)?;
        let address = d.endpoint.clone().ok_or_else(|| {
            Error::Unavailable(format!(
                "no server address is recorded for {}: start its geodird (with its data folder empty or damaged, it starts and serves nothing until rebuilt)",
                d.name
            ))
        })?;
        let got = self.to(&address)?.rebuild(&[]);
        self.refresh_topology();
        got
    }

    /// The server of partition `partition`'s primary.
    fn primary_server(&self, partition: u32) -> Result<Connection> {
        let p = self.topology.partition(partition)?;
        let address = self
            .topology
            .datacenter(&p.primary)?
            .endpoint
            .clone()
            .ok_or_else(|| {
                Error::Unavailable(format!("no server address is recorded for {}", p.primary))
            })?;
        self.to(&address)
    }

    /// A connection to the server at `address`: one of --endpoints, or a new one.
    fn to(&self, address: &str) -> Result<Connection> {
        if let Some(c) = self.connections.iter().find(|c| c.address() == address) {
            return Ok(c.clone());
        }
        let c = self.connection();
        Connection::new(c.runtime.clone(), address, c.timeout, None)
    }

    /// The server answering now.
    pub fn connection(&self) -> &Connection {
        &self.connections[self.current]
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    fn refresh_topology(&mut self) {
        if let Ok(t) = self.connection().topology() {
            self.topology = t;
        }
    }
}

/// A backup of the servers' cluster: each partition's checkpoint made by its primary's
/// server and streamed here.
impl engine::cluster::Checkpoints for Remote {
    fn topology(&self) -> Topology {
        self.topology.clone()
    }

    fn checkpoint_partition(
        &mut self,
        partition: u32,
        dest: &std::path::Path,
    ) -> Result<(engine::log::Position, String)> {
        self.refresh_topology();
        let primary = self.topology.partition(partition)?.primary.clone();
        self.primary_server(partition)
            .and_then(|c| c.checkpoint(partition, dest))
            .map_err(|e| {
                let why = format!(
                    "the checkpoint of partition {partition} is made by its primary's server ({primary}), which could not: {e}"
                );
                match e {
                    Error::Unavailable(_) => Error::Unavailable(why),
                    Error::Fenced(_) => Error::Fenced(why),
                    Error::Corrupt(_) => Error::Corrupt(why),
                    _ => Error::Storage(why),
                }
            })
    }
}

impl Directory for Remote {
    fn placement(&self, tenant: &str) -> Result<TenantPlacement> {
        self.topology.tenant(tenant).cloned()
    }

    fn tenant_names(&self) -> Vec<String> {
        self.topology.tenants.keys().cloned().collect()
    }

    fn partition_ids(&self) -> Vec<u32> {
        self.topology.partitions.iter().map(|p| p.id).collect()
    }

    fn nearest_datacenter(&self) -> Result<String> {
        engine::protocol::routing::nearest_datacenter(&self.topology, self.region.as_deref())
    }

    fn kept_of_token(&self, token: &Token) -> Result<u64> {
        engine::protocol::routing::kept_of_token(&self.topology, token)
    }

    fn execute_with(
        &mut self,
        envelope: &Envelope,
        request: Request,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Response> {
        let read = request.is_read();
        let creates_tenant = matches!(request, Request::CreateTenant { .. });
        let mut failures = Vec::new();
        for _ in 0..self.connections.len() {
            let c = self.connection().clone();
            match c.execute_raw(envelope, &request, false, progress) {
                Ok((response, mut notes)) => {
                    self.notes.append(&mut notes);
                    if creates_tenant {
                        self.refresh_topology();
                    }
                    return Ok(response);
                }
                // A read no replica of that server could answer: the next server may.
                Err(s) if read && from_server(&s) && kind_of(&s) == Some("unavailable") => {
                    failures.push(format!("{}: {}", c.address(), s.message()));
                    self.current = (self.current + 1) % self.connections.len();
                }
                // The server said no: its answer stands.
                Err(s) if from_server(&s) => return Err(from_status(&s, c.address())),
                // The server did not answer. A read goes to the next one; a write may have
                // been carried out before the server failed: its outcome is unknown.
                Err(s) => {
                    if !read && !refused_connection(&s) {
                        return Err(c.failed(&s, &request));
                    }
                    failures.push(format!("{}: {}", c.address(), s.message()));
                    self.notes.push(Note::Warning(format!(
                        "server {} did not answer ({}); trying the next one",
                        c.address(),
                        s.message()
                    )));
                    self.current = (self.current + 1) % self.connections.len();
                }
            }
        }
        Err(Error::Unavailable(format!(
            "no server answered; nothing was applied ({})",
            failures.join("; ")
        )))
    }

    fn take_notes(&mut self) -> Vec<Note> {
        std::mem::take(&mut self.notes)
    }
}

/// A transport failure before anything was sent (the connection was refused or never made).
fn refused_connection(s: &tonic::Status) -> bool {
    let m = format!("{s:?}").to_ascii_lowercase();
    m.contains("connection refused")
        || m.contains("tcp connect error")
        || m.contains("connect error")
}
