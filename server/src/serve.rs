//! Running a server: the listeners, the node, the gRPC and HTTP services, the replicator,
//! and a clean stop on SIGTERM or SIGINT (requests in flight finish, replicas close).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use crate::directory::DirectoryService;
use crate::node::{Config, Node};
use crate::pb::directory_server::DirectoryServer;
use crate::pb::replication_server::ReplicationServer;
use crate::replication::{Owned, ReplicationService};

/// What geodird is told.
#[derive(Clone, Debug)]
pub struct Options {
    pub cluster: PathBuf,
    /// etcd (`etcd://...`), or None: the cluster root's cluster.json.
    pub control_plane: Option<String>,
    pub data: Option<PathBuf>,
    pub datacenter: String,
    /// gRPC (port 0: any free port).
    pub listen: SocketAddr,
    /// HTTP: /metrics, /healthz and the Graph API at /v1.0 (port 0: any free port).
    pub http: SocketAddr,
    pub rpc_timeout: Duration,
    pub lock_timeout: Duration,
    /// With etcd: this server's lease TTL (`crate::lease`).
    pub lease_ttl: Duration,
    pub retain_log_entries: u64,
    /// The Graph API's limits.
    pub graph: crate::graph::Limits,
    /// TLS on the HTTP address.
    pub tls: crate::tls::Tls,
    pub clock: engine::clock::Clock,
}

/// Runs a server until SIGTERM or SIGINT. Prints one line once it serves:
/// `geodird DC grpc=http://ADDR http=http://ADDR`.
pub async fn run(o: Options) -> anyhow::Result<()> {
    let grpc = TcpListener::bind(o.listen).await?;
    let http = TcpListener::bind(o.http).await?;
    let data = o.data.clone().unwrap_or_else(|| o.cluster.clone());
    let tls = crate::tls::load(
        &o.tls,
        &data.join(format!("tls-{}", o.datacenter)),
        &http.local_addr()?,
    )?;
    let grpc_url = format!("http://{}", grpc.local_addr()?);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let http_url = format!("{scheme}://{}", http.local_addr()?);
    let config = Config {
        data,
        cluster: o.cluster.clone(),
        control_plane: o.control_plane.clone(),
        datacenter: o.datacenter.clone(),
        advertise: grpc_url.clone(),
        http: Some(http_url.clone()),
        rpc_timeout: o.rpc_timeout,
        lock_timeout: o.lock_timeout,
        retain_log_entries: o.retain_log_entries,
        clock: o.clock,
    };
    let handle = tokio::runtime::Handle::current();
    let node = tokio::task::spawn_blocking(move || Node::start(config, handle)).await??;
    let owned = node.owned.clone();
    let lookup = Box::new(move |p: u32| -> Option<Owned> {
        owned.read().ok()?.get(&p).map(|r| r.clone() as Owned)
    });
    let guard = {
        let node = node.clone();
        Box::new(move |credential: Option<&str>, what: &str| {
            // An open cluster: nothing to check (and no hand-off for it).
            if !node.minter.closed() {
                return Ok(());
            }
            // It may read the control plane: the runtime's other tasks move off this worker.
            tokio::task::block_in_place(|| {
                node.permit(credential, &crate::guard::Call::Server, what, "unknown", "")
            })
            .map(|_| ())
        })
    };
    let replication = ReplicationService::new(&node.datacenter, lookup).with_guard(guard);
    let replication = ReplicationServer::new(replication)
        .max_decoding_message_size(crate::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(crate::MAX_MESSAGE_BYTES);
    let directory = DirectoryServer::new(DirectoryService::new(node.clone()))
        .max_decoding_message_size(crate::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(crate::MAX_MESSAGE_BYTES);
    {
        let node = node.clone();
        std::thread::Builder::new()
            .name("credential".into())
            .spawn(move || node.keep_credential())?;
    }
    let replicator = {
        let node = node.clone();
        std::thread::Builder::new()
            .name("replicate".into())
            .spawn(move || node.replicate(Duration::from_millis(50)))?
    };
    // With etcd: the lease and the leader keys, held once before the first request.
    let keeper = match &o.control_plane {
        None => None,
        Some(spec) => {
            let address = crate::etcd::EtcdAddress::parse(spec)?;
            let (node, ttl, timeout) = (node.clone(), o.lease_ttl, o.rpc_timeout);
            let handle = tokio::runtime::Handle::current();
            let state = Arc::new(crate::lease::LeaseState::default());
            let _ = node.lease.set(state.clone());
            let leases = {
                let (node, state) = (node.clone(), state.clone());
                tokio::task::spawn_blocking(move || -> engine::Result<Arc<crate::etcd::Leases>> {
                    let leases = Arc::new(crate::etcd::Leases::connect(address, handle, timeout)?);
                    node.lease_round(&leases, &state, ttl, &mut Default::default());
                    Ok(leases)
                })
                .await??
            };
            let _ = node.leases.set(leases.clone());
            Some(
                std::thread::Builder::new()
                    .name("lease".into())
                    .spawn(move || node.keep_leases(leases, state, ttl))?,
            )
        }
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let grpc_server = {
        let mut rx = stop_rx.clone();
        tonic::transport::Server::builder()
            .add_service(replication)
            .add_service(directory)
            // No Nagle: a small reply held back for the peer's delayed ack costs 40 ms.
            .serve_with_incoming_shutdown(
                TcpIncoming::from(grpc).with_nodelay(Some(true)),
                async move {
                    let _ = rx.changed().await;
                },
            )
    };
    let graph = crate::graph::Graph::new(node.clone(), o.graph.clone(), tls.is_some());
    let routes = crate::http::router(node.clone()).merge(crate::graph::router(graph));
    let mut rx = stop_rx.clone();
    let stopped = async move {
        let _ = rx.changed().await;
    };
    let cert = tls.as_ref().map(|(_, cert)| cert.clone());
    let http_server = serve_http(http, routes, tls.map(|t| t.0), stopped);
    tracing::info!(datacenter = %node.datacenter, grpc = %grpc_url, http = %http_url, "serving");
    match &cert {
        None => println!(
            "geodird {} grpc={grpc_url} http={http_url}",
            node.datacenter
        ),
        Some(cert) => println!(
            "geodird {} grpc={grpc_url} http={http_url} cert={}",
            node.datacenter,
            cert.display()
        ),
    }
    let signals = async {
        stop_signal().await?;
        tracing::info!("stopping: requests in flight finish, replicas close");
        let _ = stop_tx.send(true);
        anyhow::Ok(())
    };
    let (g, h, s) = tokio::join!(grpc_server, http_server, signals);
    g?;
    h?;
    s?;
    let stopping = node.clone();
    tokio::task::spawn_blocking(move || stopping.stop()).await?;
    let _ = tokio::task::spawn_blocking(move || replicator.join()).await;
    if let Some(k) = keeper {
        k.thread().unpark();
        let _ = tokio::task::spawn_blocking(move || k.join()).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Serves `routes` on `listener` until `stopped`, over TLS with `tls`; requests in flight
/// finish.
pub(crate) async fn serve_http(
    listener: TcpListener,
    routes: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    match tls {
        None => Ok(axum::serve(listener, routes)
            .with_graceful_shutdown(stopped)
            .await?),
        Some(config) => {
            let handle = axum_server::Handle::new();
            let stopping = handle.clone();
            tokio::spawn(async move {
                stopped.await;
                stopping.graceful_shutdown(Some(Duration::from_secs(30)));
            });
            axum_server::from_tcp_rustls(
                listener.into_std()?,
                axum_server::tls_rustls::RustlsConfig::from_config(config),
            )?
            .handle(handle)
            .serve(routes.into_make_service())
            .await?;
            Ok(())
        }
    }
}

/// Returns at SIGTERM or SIGINT.
pub(crate) async fn stop_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
