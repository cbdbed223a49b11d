//! The control plane in etcd (docs/server.md, "The control plane in etcd"): the topology is
//! one key, `PREFIX/topology`, holding what `cluster.json` holds. Every change is an etcd
//! transaction comparing the key's revision as read, so no update is lost; a watch on the
//! key tells this handle of another's change without a round trip per request.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::topology::{ControlPlane, FileControlPlane, Topology};
use engine::{Error, Result};
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, Txn, TxnOp};
use tokio::runtime::Handle;

/// Where a cluster's control plane is: `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdAddress {
    /// `http://HOST:PORT`, one per member.
    pub endpoints: Vec<String>,
    /// The key prefix of this cluster (`/geodir` unless given).
    pub prefix: String,
}

impl EtcdAddress {
    pub fn parse(s: &str) -> Result<EtcdAddress> {
        let bad = |why: &str| {
            Error::Invalid(format!(
                "control plane {s:?}: {why}; expected etcd://HOST:PORT[,HOST:PORT...][/PREFIX]"
            ))
        };
        let rest = s
            .strip_prefix("etcd://")
            .ok_or_else(|| bad("not an etcd:// address"))?;
        let (hosts, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let prefix = match prefix {
            "" => "/geodir".to_string(),
            p => p.to_string(),
        };
        let endpoints: Vec<String> = hosts
            .split(',')
            .map(|h| {
                let (host, port) = h
                    .rsplit_once(':')
                    .ok_or_else(|| bad("a member has no :PORT"))?;
                if host.is_empty() || port.parse::<u16>().is_err() {
                    return Err(bad(&format!("member {h:?} is not HOST:PORT")));
                }
                Ok(format!("http://{h}"))
            })
            .collect::<Result<_>>()?;
        if prefix.contains(char::is_whitespace) {
            return Err(bad("the prefix has spaces"));
        }
        Ok(EtcdAddress { endpoints, prefix })
    }

    fn key(&self) -> String {
        format!("{}/topology", self.prefix)
    }
}

impl std::fmt::Display for EtcdAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hosts: Vec<&str> = self
            .endpoints
            .iter()
            .map(|e| e.trim_start_matches("http://"))
            .collect();
        write!(f, "etcd://{}{}", hosts.join(","), self.prefix)
    }
}

/// The control plane in etcd, as one process's handle on it.
pub struct EtcdControlPlane {
    address: EtcdAddress,
    key: String,
    client: Client,
    runtime: Handle,
    timeout: Duration,
    /// The key's revision as this handle last loaded or stored it.
    seen: AtomicI64,
    /// The newest revision of the key the watch reported (while `watching`).
    latest: Arc<AtomicI64>,
    watching: Arc<AtomicBool>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Drop for EtcdControlPlane {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

/// How long a call to etcd may take before the control plane counts as unreachable.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

impl EtcdControlPlane {
    /// A handle on the control plane at `address`, its calls run on `runtime` (from threads
    /// that are not the runtime's own). Connects lazily: an etcd that is down fails the
    /// first call, as `Unavailable`.
    pub fn connect(address: EtcdAddress, runtime: Handle, timeout: Duration) -> Result<Self> {
        let options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            .with_keep_alive(Duration::from_secs(1), timeout);
        let endpoints = address.endpoints.clone();
        let client = runtime
            .block_on(async move { Client::connect(endpoints, Some(options)).await })
            .map_err(|e| unreachable(&address, e))?;
        let key = address.key();
        let latest = Arc::new(AtomicI64::new(0));
        let watching = Arc::new(AtomicBool::new(false));
        let watcher = runtime.spawn(watch(
            client.clone(),
            key.clone(),
            latest.clone(),
            watching.clone(),
        ));
        Ok(EtcdControlPlane {
            address,
            key,
            client,
            runtime,
            timeout,
            seen: AtomicI64::new(0),
            latest,
            watching,
            watcher,
        })
    }

    pub fn address(&self) -> &EtcdAddress {
        &self.address
    }

    /// Runs one call to etcd, bounded by the timeout; a member that refuses the
    /// connection is passed over for another (tried again until the timeout).
    fn call<T>(
        &self,
        f: impl AsyncFn(Client) -> std::result::Result<T, etcd_client::Error>,
    ) -> Result<T> {
        let timeout = self.timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let outcome = crate::wait(&self.runtime, async {
            loop {
                let tried = tokio::time::timeout_at(deadline, f(self.client.clone())).await;
                match tried {
                    Err(_) => return None,
                    Ok(Err(e)) if connect_error(&e) && tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Ok(done) => return Some(done),
                }
            }
        });
        match outcome {
            None => Err(Error::Unavailable(format!(
                "the control plane at {} is unreachable: no answer within {} ms",
                self.address,
                timeout.as_millis()
            ))),
            Some(r) => r.map_err(|e| unreachable(&self.address, e)),
        }
    }

    /// The stored topology and the key's revision; `NotFound` when there is none.
    fn get(&self) -> Result<(Topology, i64)> {
        let key = self.key.clone();
        let r = self.call(async |mut c| c.get(key.clone(), None).await)?;
        let kv = r.kvs().first().ok_or_else(|| {
            Error::NotFound(format!(
                "{} holds no cluster; create one with `dirctl init --control-plane {}`",
                self.address, self.address
            ))
        })?;
        let t = engine::topology::decode(kv.value(), &format!("{}{}", self.address, "/topology"))?;
        Ok((t, kv.mod_revision()))
    }

    /// Stores `t` if the key is still at `revision`: the new revision, or None if it moved.
    /// Each attempt also stores its own id beside the topology, in the same transaction: a
    /// call retried after its first try's reply was lost finds out whether that try was
    /// carried out (the id is its own) instead of storing the change twice.
    fn put_if(&self, t: &Topology, revision: i64) -> Result<Option<i64>> {
        let bytes = engine::topology::encode(t)?;
        let attempt = uuid::Uuid::new_v4().to_string();
        let (key, by) = (self.key.clone(), self.writer_key());
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                revision,
            )])
            .and_then([
                TxnOp::put(key, bytes, None),
                TxnOp::put(by.clone(), attempt.clone(), None),
            ]);
        let r = self.call(async |mut c| c.txn(txn.clone()).await)?;
        if r.succeeded() {
            return Ok(r.header().map(|h| h.revision()));
        }
        let now = self.call(async |mut c| c.get(by.clone(), None).await)?;
        Ok(now
            .kvs()
            .first()
            .filter(|kv| kv.value() == attempt.as_bytes())
            .map(|kv| kv.mod_revision()))
    }

    /// Beside the topology: the id of the attempt that stored it last.
    fn writer_key(&self) -> String {
        format!("{}-writer", self.key)
    }

    /// Every topology the key held, oldest first, as etcd's history keeps them (until it
    /// is compacted): an audit of the control plane, e.g. one primary per term.
    pub fn history(&self) -> Result<Vec<Topology>> {
        let key = self.key.clone();
        let now = self.call(async |mut c| c.get(key.clone(), None).await)?;
        let Some(kv) = now.kvs().first() else {
            return Ok(Vec::new());
        };
        let (first, last) = (kv.create_revision(), kv.mod_revision());
        let mut out: Vec<Topology> = Vec::new();
        let mut seen = 0;
        for rev in first..=last {
            let opts = etcd_client::GetOptions::new().with_revision(rev);
            let r = self.call(async |mut c| c.get(key.clone(), Some(opts.clone())).await)?;
            if let Some(kv) = r.kvs().first().filter(|kv| kv.mod_revision() > seen) {
                seen = kv.mod_revision();
                out.push(engine::topology::decode(
                    kv.value(),
                    &format!("{} at revision {rev}", self.address),
                )?);
            }
        }
        Ok(out)
    }

    fn note_seen(&self, revision: i64) {
        self.seen.fetch_max(revision, Ordering::SeqCst);
    }
}

/// A call that failed on its way to a member (refused, or a connection to a member that
/// died): another member may answer. A change retried after its reply was lost is told
/// apart by what is stored (`put_if`).
fn connect_error(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(s) => {
            s.code() == tonic::Code::Unavailable
                || (s.code() == tonic::Code::Unknown && s.message().contains("transport error"))
        }
        _ => false,
    }
}

/// An etcd error as the engine's: the control plane is unreachable.
fn unreachable(address: &EtcdAddress, e: etcd_client::Error) -> Error {
    Error::Unavailable(format!(
        "the control plane at {address} is unreachable: {e}"
    ))
}

/// Follows the key: every change's revision into `latest`. While it runs, `watching`; it
/// starts again after etcd comes back.
async fn watch(mut client: Client, key: String, latest: Arc<AtomicI64>, watching: Arc<AtomicBool>) {
    loop {
        if let Ok(mut stream) = client.watch(key.clone(), None).await {
            // The watch exists: a change from now on is reported; one before it is read here.
            if let Ok(r) = client.get(key.clone(), None).await {
                if let Some(kv) = r.kvs().first() {
                    latest.fetch_max(kv.mod_revision(), Ordering::SeqCst);
                }
                watching.store(true, Ordering::SeqCst);
                while let Ok(Some(resp)) = stream.message().await {
                    if resp.canceled() {
                        break;
                    }
                    for kv in resp.events().iter().filter_map(|e| e.kv()) {
                        latest.fetch_max(kv.mod_revision(), Ordering::SeqCst);
                    }
                }
            }
        }
        watching.store(false, Ordering::SeqCst);
        // etcd is unreachable: reload_if_changed asks it directly meanwhile.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl ControlPlane for EtcdControlPlane {
    fn create(&self, topology: &Topology) -> Result<()> {
        topology.check()?;
        let bytes = engine::topology::encode(topology)?;
        let key = self.key.clone();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, bytes, None)]);
        let r = self.call(async |mut c| c.txn(txn.clone()).await)?;
        if !r.succeeded() {
            return Err(Error::Conflict(format!(
                "{} already holds a cluster; choose another prefix (etcd://HOST:PORT/PREFIX)",
                self.address
            )));
        }
        if let Some(h) = r.header() {
            self.note_seen(h.revision());
        }
        Ok(())
    }

    fn load(&self) -> Result<Topology> {
        let (t, revision) = self.get()?;
        self.note_seen(revision);
        Ok(t)
    }

    fn reload_if_changed(&self) -> Result<Option<Topology>> {
        let seen = self.seen.load(Ordering::SeqCst);
        if self.watching.load(Ordering::SeqCst) && self.latest.load(Ordering::SeqCst) <= seen {
            return Ok(None);
        }
        let (t, revision) = self.get()?;
        if revision <= seen {
            return Ok(None);
        }
        self.note_seen(revision);
        Ok(Some(t))
    }

    fn replace(&self, expected: u64, topology: &Topology) -> Result<Topology> {
        topology.check()?;
        let (now, revision) = self.get()?;
        let conflict = |now: u64| {
            Error::Conflict(format!(
                "the control plane changed (generation {expected} is now {now}); read it again"
            ))
        };
        if now.generation != expected {
            return Err(conflict(now.generation));
        }
        let mut t = topology.clone();
        t.generation = expected + 1;
        match self.put_if(&t, revision)? {
            Some(r) => {
                self.note_seen(r);
                Ok(t)
            }
            None => Err(conflict(expected + 1)),
        }
    }

    fn update(&self, change: &mut dyn FnMut(&mut Topology) -> Result<()>) -> Result<Topology> {
        // Read, change, store if nobody stored meanwhile; else again, on what they stored.
        for _ in 0..50 {
            let (mut t, revision) = self.get()?;
            change(&mut t)?;
            t.check()?;
            t.generation += 1;
            if let Some(r) = self.put_if(&t, revision)? {
                self.note_seen(r);
                return Ok(t);
            }
        }
        Err(Error::Conflict(format!(
            "the control plane at {} kept changing under this update; run it again",
            self.address
        )))
    }
    fn secret(&self, name: &str) -> Result<Option<Vec<u8>>> {
        engine::topology::check_secret_name(name)?;
        let key = format!("{}/secret/{name}", self.address.prefix);
        let r = self.call(async |mut c| c.get(key.clone(), None).await)?;
        Ok(r.kvs().first().map(|kv| kv.value().to_vec()))
    }

    fn create_secret(&self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        engine::topology::check_secret_name(name)?;
        let key = format!("{}/secret/{name}", self.address.prefix);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), value.to_vec(), None)]);
        // A retry after a lost reply finds its own value, or the winner's: either is right.
        self.call(async |mut c| c.txn(txn.clone()).await)?;
        self.secret(name)?.ok_or_else(|| {
            Error::Unavailable(format!(
                "secret {name} was not found in {} right after it was stored",
                self.address
            ))
        })
    }
}

/// One server's lease and the leader keys bound to it (`PREFIX/leader/P`).
pub struct Leases {
    plane: EtcdControlPlane,
    prefix: String,
    /// The lease this server holds (0: none yet, or it expired).
    lease: std::sync::Mutex<i64>,
}

impl Leases {
    pub fn connect(address: EtcdAddress, runtime: Handle, timeout: Duration) -> Result<Leases> {
        let prefix = address.prefix.clone();
        Ok(Leases {
            plane: EtcdControlPlane::connect(address, runtime, timeout)?,
            prefix,
            lease: std::sync::Mutex::new(0),
        })
    }

    fn key(&self, partition: u32) -> String {
        format!("{}/leader/{partition}", self.prefix)
    }

    fn id(&self) -> i64 {
        self.lease.lock().map(|l| *l).unwrap_or(0)
    }

    /// Renews the lease (granting one, of `ttl`, when there is none or it expired): when
    /// the renewal was sent (etcd keeps the lease at least `ttl` from then), and whether it
    /// was the same lease (false: a new one, and every key bound to the old one is gone).
    pub fn renew(&self, ttl: Duration) -> Result<(Instant, bool)> {
        let sent = Instant::now();
        let id = self.id();
        if id != 0 {
            let alive = self.plane.call(async |mut c| {
                let (mut keeper, mut stream) = c.lease_keep_alive(id).await?;
                keeper.keep_alive().await?;
                Ok(stream.message().await?.map(|r| r.ttl()).unwrap_or(0))
            })?;
            if alive > 0 {
                return Ok((sent, true));
            }
        }
        let secs = ttl.as_secs().max(1) as i64;
        let granted = self
            .plane
            .call(async |mut c| c.lease_grant(secs, None).await)?;
        if let Ok(mut l) = self.lease.lock() {
            *l = granted.id();
        }
        Ok((sent, false))
    }

    /// The leader key of `partition`: its value, if present.
    pub fn leader(&self, partition: u32) -> Result<Option<String>> {
        let key = self.key(partition);
        let r = self
            .plane
            .call(async |mut c| c.get(key.clone(), None).await)?;
        Ok(r.kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
    }

    /// Puts `value` (`DC TERM`) in `partition`'s leader key bound to this server's lease:
    /// if the key is absent, or `current` (its value as just read) names this datacenter
    /// (this server before a restart, or an older term of it). Whether this server holds it.
    pub fn acquire(&self, partition: u32, value: &str, current: Option<&str>) -> Result<bool> {
        let (key, lease) = (self.key(partition), self.id());
        if lease == 0 {
            return Ok(false);
        }
        let dc = |v: &str| v.split(' ').next().map(str::to_string);
        let condition = match current {
            Some(v) if dc(v) == dc(value) => Compare::value(key.clone(), CompareOp::Equal, v),
            Some(_) => return Ok(false),
            None => Compare::create_revision(key.clone(), CompareOp::Equal, 0),
        };
        let put = TxnOp::put(
            key,
            value,
            Some(etcd_client::PutOptions::new().with_lease(lease)),
        );
        let txn = Txn::new().when([condition]).and_then([put]);
        Ok(self
            .plane
            .call(async |mut c| c.txn(txn.clone()).await)?
            .succeeded())
    }

    /// Deletes `partition`'s leader key if it still holds `value`.
    pub fn release(&self, partition: u32, value: &str) -> Result<()> {
        let key = self.key(partition);
        let txn = Txn::new()
            .when([Compare::value(key.clone(), CompareOp::Equal, value)])
            .and_then([TxnOp::delete(key, None)]);
        self.plane.call(async |mut c| c.txn(txn.clone()).await)?;
        Ok(())
    }

    /// Gives the lease back (a clean stop): its leader keys go at once.
    pub fn revoke(&self) {
        let id = self.id();
        if id != 0 {
            let _ = self.plane.call(async |mut c| c.lease_revoke(id).await);
        }
    }
}

/// What `dirctl health` finds wrong in the control plane at `address`: unreachable, or a
/// partition whose leader key is held by no server (no primary acknowledges its writes).
pub fn problems(address: &EtcdAddress, runtime: Handle, timeout: Duration) -> Vec<String> {
    let topology = EtcdControlPlane::connect(address.clone(), runtime.clone(), timeout)
        .and_then(|cp| cp.load());
    let t = match topology {
        Ok(t) => t,
        Err(e) => return vec![e.to_string()],
    };
    let leases = match Leases::connect(address.clone(), runtime, timeout) {
        Ok(l) => l,
        Err(e) => return vec![e.to_string()],
    };
    t.partitions
        .iter()
        .filter_map(|p| match leases.leader(p.id) {
            Ok(Some(_)) => None,
            Ok(None) => Some(format!(
                "partition {} has no leader key in {address}: no server acknowledges its writes (its primary {}'s server holds no lease; the sync standby {}'s server promotes itself once the lease expired)",
                p.id, p.primary, p.sync_standby
            )),
            Err(e) => Some(e.to_string()),
        })
        .collect()
}

/// The control plane a command or server uses: etcd when `spec` names one, else the file
/// in the cluster root `root`.
pub fn open(
    spec: Option<&str>,
    root: &Path,
    lock_timeout: Duration,
    runtime: &Handle,
) -> Result<Box<dyn ControlPlane + Sync>> {
    match spec {
        Some(s) => Ok(Box::new(EtcdControlPlane::connect(
            EtcdAddress::parse(s)?,
            runtime.clone(),
            DEFAULT_TIMEOUT,
        )?)),
        None => Ok(Box::new(
            FileControlPlane::open(root)?.with_lock_timeout(lock_timeout),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_members_and_a_prefix() {
        let a = EtcdAddress::parse("etcd://127.0.0.1:2379").expect("one member");
        assert_eq!(a.endpoints, vec!["http://127.0.0.1:2379"]);
        assert_eq!(a.prefix, "/geodir");
        let a = EtcdAddress::parse("etcd://127.0.0.1:2379,127.0.0.2:2379/prod/geo/").expect("two");
        assert_eq!(a.endpoints.len(), 2);
        assert_eq!(a.prefix, "/prod/geo");
        assert_eq!(
            a.to_string(),
            "etcd://127.0.0.1:2379,127.0.0.2:2379/prod/geo"
        );
        assert_eq!(EtcdAddress::parse(&a.to_string()).expect("again"), a);
        for bad in [
            "127.0.0.1:2379",
            "etcd://",
            "etcd://host",
            "etcd://h:port",
            "etcd://:1",
            "http://h:1",
        ] {
            assert!(
                matches!(EtcdAddress::parse(bad), Err(Error::Invalid(_))),
                "{bad} was accepted"
            );
        }
    }
}
