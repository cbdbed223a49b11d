//! `Remote`: the directory as dirctl sees it with `--endpoints`, reached through the
//! servers (the nearest healthy one answers), and the operator verbs that ask them.

use std::time::Duration;

use engine::client::Directory;
use engine::cluster::{Health, ReplicaStatus, Role};
use engine::request::{Envelope, Note, Progress, Request, Response};
use engine::session::Token;
use engine::topology::{TenantPlacement, Topology};
use engine::{Error, Result};
use tokio::runtime::Handle;

use super::{from_server, kind_of, refused_connection, Connection};
use crate::guard::Credential;
use crate::status::from_status;

/// The directory reached through servers: the nearest healthy one answers, the next takes
/// over when it fails (reads; a write whose server failed mid-request has an unknown
/// outcome and is not sent again).
pub struct Remote {
    connections: Vec<Connection>,
    current: usize,
    topology: Topology,
    region: Option<String>,
    notes: Vec<Note>,
    credential: Credential,
    /// The approved request this run carries out (the two-person rule).
    approval: Option<String>,
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
            credential: Credential::none(),
            approval: None,
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
                self.approval.as_deref(),
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
        Ok(
            Connection::new(c.runtime.clone(), address, c.timeout, None)?
                .with_credential(self.credential.clone()),
        )
    }

    /// `Connection::carry_out` on the server answering now; this run's failovers then
    /// present the approval.
    pub fn carry_out(
        &mut self,
        id: &str,
        args: &[String],
        what: &str,
        correlation_id: &str,
    ) -> Result<String> {
        let done = self
            .connection()
            .carry_out(id, args, what, correlation_id)?;
        self.approval = Some(id.to_string());
        Ok(done)
    }

    /// Every call from now on presents `credential` (the caller's login); the topology is
    /// read again with it.
    pub fn set_credential(&mut self, credential: Credential) {
        self.connections = std::mem::take(&mut self.connections)
            .into_iter()
            .map(|c| c.with_credential(credential.clone()))
            .collect();
        self.credential = credential;
        // Read again as the caller proven: roles, elevations and requests are shown only
        // to a proven caller.
        self.refresh_topology();
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
        match engine::protocol::routing::kept_of_token(&self.topology, token) {
            // The server asked first may have read the control plane before the session's
            // last write (a server cut off from etcd keeps the last topology it read): the
            // newest topology any server answers decides.
            Err(Error::ImpossibleToken(why)) => {
                let newest = self
                    .connections
                    .iter()
                    .filter_map(|c| c.topology().ok())
                    .max_by_key(|t| t.generation)
                    .filter(|t| t.generation > self.topology.generation);
                match newest {
                    Some(t) => engine::protocol::routing::kept_of_token(&t, token),
                    None => Err(Error::ImpossibleToken(why)),
                }
            }
            other => other,
        }
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
