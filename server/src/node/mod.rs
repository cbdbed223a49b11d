//! One geodird: its datacenter's replicas, opened once and owned for the server's whole life
//! (no other process opens them while it runs), and the cluster handle that carries
//! requests out on them. Replicas of other datacenters are reached through their servers
//! (`RemoteLog`), so the engine's write path ships each entry over the network.
//!
//! - A write goes to the server that owns its partition's primary (`route`); there the
//!   engine writes the primary while the entry is shipped to the sync standby's server,
//!   and acknowledges once both synced it.
//! - A read is answered by this server's own replica (after pulling up to the session's
//!   token from the primary's server).
//! - `replicate` streams committed entries from the primaries this server owns to every
//!   other secondary, continuously.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use engine::client::{Directory as _, Embedded};
use engine::cluster::{Cluster, ClusterOptions, ReplicaId};
use engine::replica::{Access, Replica};
use engine::request::{Envelope, Note, Progress, Request, Response};
use engine::topology::{ControlPlane, Topology};
use engine::{Error, Result};
use tokio::runtime::Handle;

mod guard;
mod leader;
mod opener;
mod read;
mod rebuild;
mod replicate;

pub use replicate::Lag;

use crate::guard::{Credential, Minter};
use crate::metrics::Metrics;
use opener::{endpoint_of, endpoints_in, ServerOpener};

/// How a server is started (geodird's flags).
#[derive(Clone, Debug)]
pub struct Config {
    /// The cluster root: its control plane (`cluster.json`).
    pub cluster: PathBuf,
    /// etcd (`etcd://...`), or None: the cluster root's cluster.json.
    pub control_plane: Option<String>,
    /// The folder holding this datacenter's replicas (`dc-<name>/p<N>`); the cluster root
    /// unless given.
    pub data: PathBuf,
    pub datacenter: String,
    /// This server's gRPC address as other servers and clients reach it
    /// (`http://127.0.0.1:7401`), recorded in the control plane at start.
    pub advertise: String,
    /// This server's HTTP address (`/metrics`, `/healthz`), recorded for operators.
    pub http: Option<String>,
    /// How long a call to another server may take before it counts as failed.
    pub rpc_timeout: Duration,
    pub lock_timeout: Duration,
    pub retain_log_entries: u64,
    /// The server's clock (tests fix it with DIRCTL_NOW, as dirctl's).
    pub clock: engine::clock::Clock,
}

/// A server's own replicas, by partition, shared by the threads that act on them.
pub type Replicas = Arc<RwLock<BTreeMap<u32, Arc<Replica>>>>;

/// The datacenters' server addresses, as the control plane last said.
type Endpoints = Arc<RwLock<BTreeMap<String, String>>>;

pub struct Node {
    pub datacenter: String,
    /// This datacenter's replicas, by partition, open for the server's whole life (a
    /// rebuild replaces one).
    pub owned: Replicas,
    /// The cluster handle requests are carried out on (one at a time).
    dir: Mutex<Embedded>,
    endpoints: Endpoints,
    runtime: Handle,
    config: Config,
    pub metrics: Arc<Metrics>,
    /// Wakes the replicator after a commit.
    wake: (Mutex<u64>, Condvar),
    /// Held by a replication round and by a failover (taken before `dir`).
    replicating: Mutex<()>,
    stopping: AtomicBool,
    /// With the control plane in etcd: this server's lease and the leader keys it holds;
    /// writes are acknowledged only under them (`crate::lease`).
    pub lease: std::sync::OnceLock<Arc<crate::lease::LeaseState>>,
    /// The lease and leader keys in etcd (with `lease`).
    pub leases: std::sync::OnceLock<Arc<crate::etcd::Leases>>,
    /// Clients of the other servers' Directory service (a write sent on).
    forwarders: Mutex<BTreeMap<String, crate::client::Connection>>,
    /// Writes waiting for the cluster handle (group commit, `write_together`).
    waiting: Mutex<Vec<Waiting>>,
    /// The control plane as requests are routed by, read without the cluster handle (which
    /// a batch of writes holds while it is made durable): a write joins the next batch
    /// without waiting for the one in flight.
    routing: Mutex<(Box<dyn ControlPlane + Sync>, Arc<Topology>)>,
    /// The lag the replicator last measured of each secondary of the primaries this server
    /// owns, by (partition, datacenter).
    lags: Mutex<BTreeMap<(u32, String), Lag>>,
    /// When this server last asked for each secondary behind the retained log to be re-seeded.
    reseeding: Mutex<BTreeMap<ReplicaId, Instant>>,
    /// When `read_if_free` last looked for a changed control plane (ms since `started`).
    read_checked_ms: std::sync::atomic::AtomicU64,
    started: Instant,
    /// This server's own credential, and the cluster key credentials are checked with.
    pub minter: Arc<Minter>,
    /// What this server's calls of the others present (`minter`'s credential).
    credential: Credential,
}

/// A write waiting to be carried out, and where its answer goes.
struct Waiting {
    envelope: Envelope,
    request: Request,
    answer: std::sync::mpsc::Sender<Result<(Response, Vec<Note>)>>,
}

fn poisoned() -> Error {
    Error::Storage("a server thread panicked".into())
}

impl Node {
    /// Opens this datacenter's replicas (a replica that cannot be opened is left out and
    /// logged; its partition's requests fail here until it is rebuilt) and records this
    /// server's address in the control plane.
    pub fn start(config: Config, runtime: Handle) -> Result<Arc<Node>> {
        let options = ClusterOptions {
            lock_timeout: config.lock_timeout,
            clock: config.clock,
            region: Some(config.datacenter.clone()),
            retain_log_entries: config.retain_log_entries,
            ..ClusterOptions::default()
        };
        #[allow(unused_mut)]
        let control = |c: &Config| {
            crate::etcd::open(
                c.control_plane.as_deref(),
                &c.cluster,
                c.lock_timeout,
                &runtime,
            )
        };
        let mut cluster = Cluster::open_with(&config.cluster, control(&config)?, options)?;
        #[cfg(feature = "failpoints")]
        cluster.set_failpoint(std::env::var("GEODIR_FAILPOINT").ok().as_deref());
        let dc = cluster
            .topology()
            .datacenter(&config.datacenter)?
            .name
            .clone();
        let mut owned = BTreeMap::new();
        for p in cluster.topology().partitions.clone() {
            let path = engine::layout::replica_path(&config.data, &dc, p.id);
            let name = engine::layout::replica_dir(&dc, p.id);
            match Replica::open_for(&path, &name, config.lock_timeout, Access::Write) {
                Ok(r) => {
                    owned.insert(p.id, Arc::new(r));
                }
                // Another process serves this datacenter: refuse to start, changing nothing.
                Err(Error::Unavailable(m)) if m.contains("held by another") => {
                    return Err(Error::Unavailable(format!(
                        "{name} is held by another process (is another geodird serving datacenter {dc}?): {m}"
                    )))
                }
                Err(e) => tracing::error!(replica = %name, error = %e, "replica not opened"),
            }
        }
        // Another live server of this datacenter (its replicas in another --data folder)
        // keeps it: this one would take its address and cut it off.
        let recorded = cluster.topology().datacenter(&dc)?.endpoint.clone();
        if let Some(other) = recorded.filter(|a| *a != config.advertise) {
            let answered = crate::client::Connection::new(
                runtime.clone(),
                &other,
                config.rpc_timeout,
                Some(config.rpc_timeout),
            )
            .and_then(|c| c.datacenter());
            if answered.is_ok_and(|d| d == dc) {
                return Err(Error::Unavailable(format!(
                    "datacenter {dc} is served by the geodird at {other} already; stop it first (nothing was changed)"
                )));
            }
        }
        let owned: Replicas = Arc::new(RwLock::new(owned));
        // Recorded only once this server holds its replicas.
        let (advertise, http) = (config.advertise.clone(), config.http.clone());
        cluster.update_topology(|t| {
            for d in t.datacenters.iter_mut().filter(|d| d.name == dc) {
                d.endpoint = Some(advertise.clone());
                d.http_endpoint = http.clone();
            }
            Ok(())
        })?;
        let endpoints: Endpoints = Arc::new(RwLock::new(endpoints_in(cluster.topology())));
        let minter = Arc::new(Minter::new(&dc, control(&config)?, config.clock));
        minter.note_operators(!cluster.topology().operators.is_empty());
        // A cluster with operators: this server's credential before its first call.
        minter.refresh();
        let credential = Credential::minted(minter.clone());
        let opener = ServerOpener {
            datacenter: dc.clone(),
            owned: owned.clone(),
            endpoints: endpoints.clone(),
            runtime: runtime.clone(),
            timeout: config.rpc_timeout,
            credential: credential.clone(),
        };
        let routing = (control(&config)?, Arc::new(cluster.topology().clone()));
        let cluster = cluster.with_opener(Arc::new(opener));
        let metrics = Arc::new(Metrics::new(&dc));
        metrics.note_topology(cluster.topology());
        Ok(Arc::new(Node {
            datacenter: dc,
            owned,
            dir: Mutex::new(Embedded::new(cluster)),
            endpoints,
            runtime,
            config,
            metrics,
            wake: (Mutex::new(0), Condvar::new()),
            replicating: Mutex::new(()),
            stopping: AtomicBool::new(false),
            lease: std::sync::OnceLock::new(),
            leases: std::sync::OnceLock::new(),
            forwarders: Mutex::new(BTreeMap::new()),
            waiting: Mutex::new(Vec::new()),
            routing: Mutex::new(routing),
            lags: Mutex::new(BTreeMap::new()),
            reseeding: Mutex::new(BTreeMap::new()),
            read_checked_ms: std::sync::atomic::AtomicU64::new(0),
            started: Instant::now(),
            minter,
            credential,
        }))
    }

    /// This server's replica of `partition`, if it holds one now.
    fn own(&self, partition: u32) -> Option<Arc<Replica>> {
        self.owned.read().ok()?.get(&partition).cloned()
    }

    /// The control plane as this server last read it (read again first if it changed).
    pub fn topology(&self) -> Result<Topology> {
        let mut dir = self.dir.lock().map_err(|_| poisoned())?;
        self.refresh(dir.cluster_mut())?;
        Ok(dir.cluster().topology().clone())
    }

    /// The control plane requests are routed by, read again if it changed (without the
    /// cluster handle).
    /// A secret of the cluster from the control plane (the token signing key).
    pub fn secret(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let routing = self.routing.lock().map_err(|_| poisoned())?;
        routing.0.secret(name)
    }

    /// The cluster's id, as the control plane says.
    pub fn cluster_id(&self) -> Result<String> {
        Ok(self.routing_topology()?.cluster_id.clone())
    }

    /// The partition tenant `name` is placed on.
    pub fn tenant_partition(&self, name: &str) -> Result<u32> {
        // A tenant's placement never changes once made: one the last topology read knows
        // needs no fresh read.
        let known = self.routing.lock().map_err(|_| poisoned())?.1.clone();
        if let Ok(t) = known.tenant(name) {
            return Ok(t.partition);
        }
        Ok(self.routing_topology()?.tenant(name)?.partition)
    }

    fn routing_topology(&self) -> Result<Arc<Topology>> {
        let mut routing = self.routing.lock().map_err(|_| poisoned())?;
        // An unreachable control plane (etcd down): requests are routed on the last one
        // read; reads go on, and writes stop at the primary's lease.
        match routing.0.reload_if_changed() {
            Ok(Some(t)) => routing.1 = Arc::new(t),
            Ok(None) | Err(Error::Unavailable(_)) => {}
            Err(e) => return Err(e),
        }
        Ok(routing.1.clone())
    }

    /// Reads the control plane again for routing now (after this server changed it).
    fn reload_routing(&self) {
        if let Ok(mut r) = self.routing.lock() {
            if let Ok(t) = r.0.load() {
                r.1 = Arc::new(t);
            }
        }
    }

    /// Takes a changed control plane: the addresses of the servers with it.
    fn refresh(&self, cluster: &mut Cluster) -> Result<()> {
        let changed = match cluster.reload_if_changed() {
            Ok(t) => t,
            // etcd down: the last topology read stands (a write checks it again itself).
            Err(Error::Unavailable(_)) => None,
            Err(e) => return Err(e),
        };
        if let Some(t) = changed {
            let fresh = endpoints_in(t);
            self.metrics.note_topology(t);
            let mut known = self.endpoints.write().map_err(|_| poisoned())?;
            if *known != fresh {
                // A server moved (restarted elsewhere): replicas held on it are reached anew.
                *known = fresh;
                drop(known);
                cluster.release_all();
            }
        }
        Ok(())
    }

    /// Carries out one request: a write whose partition's primary is on another server is
    /// sent there (once: `forwarded`); everything else runs here.
    pub fn execute(
        &self,
        envelope: &Envelope,
        request: Request,
        forwarded: bool,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<(Response, Vec<Note>)> {
        let kind = request.name();
        let started = Instant::now();
        // A session's token only this server's view of the control plane finds impossible
        // may be of a newer term than it read (etcd's watch lags by milliseconds; a server
        // cut off from etcd keeps the last topology it read): read it again, then judge.
        let again = envelope.token.as_ref().map(|_| request.clone());
        let mut out = self.execute_here_or_there(envelope, request, forwarded, progress);
        if let (Err(Error::ImpossibleToken(why)), Some(request)) = (&out, again) {
            out = match self.reload_now() {
                Ok(true) => self.execute_here_or_there(envelope, request, forwarded, progress),
                Ok(false) => Err(Error::ImpossibleToken(why.clone())),
                Err(e) => Err(Error::Unavailable(format!(
                    "this server cannot tell whether the session's token is possible: its control plane is unreachable ({e}); nothing was read, ask another server"
                ))),
            };
        }
        self.metrics
            .note_request(kind, outcome(&out), started.elapsed());
        out
    }

    /// Reads the control plane again now, for routing and for the cluster handle: whether
    /// it changed since this server last read it.
    fn reload_now(&self) -> Result<bool> {
        let fresh = {
            let mut r = self.routing.lock().map_err(|_| poisoned())?;
            let t = r.0.load()?;
            let changed = t.generation != r.1.generation;
            r.1 = Arc::new(t);
            changed
        };
        let mut dir = self.dir.lock().map_err(|_| poisoned())?;
        let before = dir.cluster().topology().generation;
        let now = dir.cluster_mut().reload_topology()?.generation;
        Ok(fresh || now != before)
    }

    fn execute_here_or_there(
        &self,
        envelope: &Envelope,
        mut request: Request,
        forwarded: bool,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<(Response, Vec<Note>)> {
        let topology = self.routing_topology()?;
        let write = engine::executor::write_partition(&topology, &request)?;
        // An audit query reads the most complete copy: the primary's, on its server (when
        // that server cannot answer, the most complete copy here does, with a warning). An
        // audit record goes to its partition's primary's server; when that server cannot
        // answer, this one writes it to another partition (`Embedded::record_outcome`).
        let audit = match &request {
            Request::ListAudit { partition } | Request::RecordAudit { partition, .. } => {
                Some(*partition)
            }
            _ => None,
        };
        if let Some(partition) = write.or(audit) {
            let primary = topology.partition(partition)?.primary.clone();
            if primary != self.datacenter && !(forwarded && audit.is_some()) {
                if forwarded {
                    return Err(Error::Unavailable(format!(
                        "partition {partition}'s primary moved to {primary} while the write was sent on; nothing was written, run it again"
                    )));
                }
                // Only an audit request (small) is kept for the fallback; a write is moved.
                let fallback = audit.map(|_| request.clone());
                match (
                    self.forward(&primary, envelope, request, progress),
                    fallback,
                ) {
                    (Err(Error::Unavailable(_)), Some(kept)) => request = kept,
                    (got, _) => return got,
                }
            }
        }
        // Self-fencing: a primary whose lease may have run out acknowledges nothing.
        // Just after a failover made this server the primary, the keeper takes the key
        // within a moment: the write waits for it, bounded.
        if let (Some(partition), Some(lease)) = (write, self.lease.get()) {
            let term = topology.partition(partition)?.term;
            lease.await_write(partition, term, self.config.rpc_timeout)?;
        }
        if write.is_some() && engine::executor::shares_entries(&request) {
            return self.write_together(envelope, request);
        }
        let mut dir = self.dir.lock().map_err(|_| poisoned())?;
        self.refresh(dir.cluster_mut())?;
        let got = dir.execute_with(envelope, request, progress);
        let notes = dir.take_notes();
        if write.is_some() && got.is_ok() {
            self.poke();
        }
        if got.as_ref().is_err_and(holds_in_doubt) {
            dir.cluster_mut().release_all();
        }
        got.map(|r| (r, notes))
    }

    /// Group commit: a write waits for the cluster handle with the others that came in
    /// meanwhile, and whichever takes the handle first carries out every waiting write at
    /// once (`Embedded::execute_many`: writes to one partition share a log entry and its
    /// fsyncs). While one batch is being made durable, the next one gathers.
    fn write_together(
        &self,
        envelope: &Envelope,
        request: Request,
    ) -> Result<(Response, Vec<Note>)> {
        let (answer, answered) = std::sync::mpsc::channel();
        self.waiting.lock().map_err(|_| poisoned())?.push(Waiting {
            envelope: envelope.clone(),
            request,
            answer,
        });
        let mut dir = self.dir.lock().map_err(|_| poisoned())?;
        // Carried out by the batch before, while this one waited for the handle.
        if let Ok(got) = answered.try_recv() {
            return got;
        }
        // This write is in it: only a writer that took the handle empties the queue.
        let batch = std::mem::take(&mut *self.waiting.lock().map_err(|_| poisoned())?);
        self.metrics.note_batch(batch.len());
        let (requests, answers): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|w| ((w.envelope, w.request), w.answer))
            .unzip();
        let started = Instant::now();
        // Kept for one more try: a sync standby whose server died since the last batch is
        // found only when the entry is shipped to it; the entry is then cut and fenced
        // (nothing applied), and holding the replicas again re-designates the standby.
        let again = requests.clone();
        let mut results = match self.refresh(dir.cluster_mut()) {
            Ok(()) => dir.execute_many(requests),
            Err(e) => requests.iter().map(|_| Err(e.clone())).collect(),
        };
        if results
            .iter()
            .all(|r| matches!(r, Err(Error::Unavailable(_))))
        {
            dir.cluster_mut().release_all();
            results = dir.execute_many(again);
        }
        tracing::debug!(
            writes = results.len(),
            micros = started.elapsed().as_micros() as u64,
            "batch of writes carried out"
        );
        let notes = dir.take_notes();
        if results.iter().any(Result::is_ok) {
            self.poke();
        }
        if results
            .iter()
            .any(|r| r.as_ref().is_err_and(holds_in_doubt))
        {
            dir.cluster_mut().release_all();
        }
        // Answered under the handle: a writer of this batch that takes it next finds its answer.
        for (to, got) in answers.into_iter().zip(results) {
            let _ = to.send(got.map(|r| (r, notes.clone())));
        }
        drop(dir);
        answered
            .recv()
            .unwrap_or_else(|_| Err(Error::Storage("a write was not answered".into())))
    }

    /// Sends a write to the server of the partition's primary.
    fn forward(
        &self,
        dc: &str,
        envelope: &Envelope,
        request: Request,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<(Response, Vec<Note>)> {
        self.connection_to(dc)?
            .execute(envelope, &request, true, progress)
    }

    /// A failover of `partition`, if this server is the one to carry it out (the
    /// `Failover` RPC says which); `Fenced` naming the right server otherwise.
    pub fn failover(
        &self,
        partition: u32,
        to: &str,
        emergency: bool,
        accept_data_loss: bool,
    ) -> Result<engine::failover::FailoverReport> {
        let _no_round = self.replicating.lock().map_err(|_| poisoned())?;
        let mut dir = self.dir.lock().map_err(|_| poisoned())?;
        self.refresh(dir.cluster_mut())?;
        let p = dir.cluster().topology().partition(partition)?.clone();
        let runs_at = match emergency {
            true => &p.sync_standby,
            false => &p.primary,
        };
        // Accepting data loss, the most advanced reachable replica is promoted, wherever it
        // is: any server tries, and refuses when the plan promotes another's replica.
        if *runs_at != self.datacenter && !(emergency && accept_data_loss) {
            return Err(Error::Fenced(format!(
                "this is {}'s server; a {} failover of partition {partition} is carried out by {runs_at}'s server",
                self.datacenter,
                if emergency { "emergency" } else { "planned" }
            )));
        }
        let got = match emergency {
            true => dir
                .cluster_mut()
                .failover_emergency(partition, accept_data_loss),
            false => dir.cluster_mut().failover_planned(partition, to),
        };
        dir.cluster_mut().release_all();
        if let Ok(r) = &got {
            // The leader key goes with the primary at once (the new primary's writes wait
            // for it).
            if let (Some(leases), Some(state)) = (self.leases.get(), self.lease.get()) {
                if r.old_primary == self.datacenter {
                    state.let_go(partition);
                    let value = crate::lease::leader_value(&self.datacenter, p.term);
                    let _ = leases.release(partition, &value);
                }
            }
            tracing::info!(partition, from = %r.old_primary, to = %r.new_primary, term = r.new_term, emergency, "failover");
            self.metrics.note_topology(dir.cluster().topology());
        }
        drop(dir);
        self.poke();
        got
    }

    /// This server's replicas as `status` shows them (a real probe of each), and the lag
    /// the replicator last measured of the secondaries of the primaries it owns.
    #[allow(clippy::type_complexity)]
    pub fn status(
        &self,
    ) -> Result<(
        Vec<engine::cluster::ReplicaStatus>,
        BTreeMap<(u32, String), Lag>,
    )> {
        let rows = {
            let mut dir = self.dir.lock().map_err(|_| poisoned())?;
            self.refresh(dir.cluster_mut())?;
            dir.cluster_mut().status_of(Some(&self.datacenter))?
        };
        let t = self.routing_topology()?;
        // Measured for the roles the control plane gives now (a round after a failover).
        let lags = self
            .lags
            .lock()
            .map_err(|_| poisoned())?
            .iter()
            .filter(|((p, dc), _)| {
                t.partition(*p).is_ok_and(|q| {
                    q.primary == self.datacenter && q.sync_standby != *dc && q.primary != *dc
                })
            })
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        Ok((rows, lags))
    }

    /// A client of datacenter `dc`'s server (kept for the next call).
    fn connection_to(&self, dc: &str) -> Result<crate::client::Connection> {
        let address = endpoint_of(&self.endpoints, dc)?;
        let mut f = self.forwarders.lock().map_err(|_| poisoned())?;
        if let Some(c) = f.get(&address) {
            return Ok(c.clone());
        }
        let c = crate::client::Connection::new(
            self.runtime.clone(),
            &address,
            self.config.rpc_timeout,
            None,
        )?
        .with_credential(self.credential.clone());
        f.insert(address, c.clone());
        Ok(c)
    }

    /// Drains or undrains datacenter `dc` in the control plane.
    pub fn set_drained(&self, dc: &str, drained: bool) -> Result<()> {
        let mut dir = self.dir.lock().map_err(|_| poisoned())?;
        self.refresh(dir.cluster_mut())?;
        dir.cluster_mut()
            .update_topology(|t| t.set_drained(dc, drained))?;
        tracing::info!(datacenter = dc, drained, "drain changed");
        Ok(())
    }

    /// Wakes the replicator.
    fn poke(&self) {
        if let Ok(mut n) = self.wake.0.lock() {
            *n += 1;
            self.wake.1.notify_all();
        }
    }

    /// The transactional health probe: a real read of each replica this server owns.
    /// Per replica a line; healthy when every partition's replica answered.
    pub fn probe(&self) -> Result<(bool, Vec<String>)> {
        let t = self.topology()?;
        let mut lines = Vec::new();
        let mut healthy = true;
        for p in &t.partitions {
            let role = if p.primary == self.datacenter {
                "primary"
            } else if p.sync_standby == self.datacenter {
                "sync standby"
            } else {
                "secondary"
            };
            match self.own(p.id).map(|r| r.last()) {
                Some(Ok(pos)) => lines.push(format!(
                    "p{}: {role} at (term {}, lsn {})",
                    p.id, pos.term, pos.lsn
                )),
                Some(Err(e)) => {
                    healthy = false;
                    lines.push(format!("p{}: {role}: {e}", p.id));
                }
                None => {
                    healthy = false;
                    lines.push(format!("p{}: {role}: not open on this server", p.id));
                }
            }
        }
        Ok((healthy, lines))
    }

    /// Stops the replicator and records the commit lsns noted in memory (SIGTERM).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.poke();
        if let Ok(mut dir) = self.dir.lock() {
            dir.cluster_mut().release_all();
        }
        let owned: Vec<Arc<Replica>> = self
            .owned
            .read()
            .map(|o| o.values().cloned().collect())
            .unwrap_or_default();
        for r in owned {
            let _ = r.persist_commit();
        }
    }
}

/// Whether an error may come from a replica this server holds (a remote one whose server
/// died, a standby that failed): then every replica is let go of, and the next request
/// holds them again, finding an unreachable one unreachable (and a sync standby
/// re-designated) instead of failing every write. A refused request leaves them held.
fn holds_in_doubt(e: &Error) -> bool {
    !matches!(
        e,
        Error::Invalid(_) | Error::ImpossibleToken(_) | Error::NotFound(_) | Error::Conflict(_)
    )
}

/// A result's name in metrics.
fn outcome<T>(r: &Result<T>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(Error::Invalid(_) | Error::ImpossibleToken(_)) => "invalid",
        Err(Error::NotFound(_)) => "not_found",
        Err(Error::Conflict(_)) => "conflict",
        Err(Error::Unavailable(_) | Error::DiskFull(_)) => "unavailable",
        Err(Error::Fenced(_)) => "fenced",
        Err(_) => "error",
    }
}
