//! geodir's server mode (docs/server.md): one `geodird` per datacenter.
//!
//! - `node`: a server's state: its datacenter's replicas, owned for its whole life, and the
//!   cluster handle that carries requests out (writes sent on to the primary's server);
//!   continuous replication from the primaries it owns;
//! - `directory`: the `Directory` gRPC service (clients, and writes sent on);
//! - `replication`: the `Replication` service, serving a server's own replicas to the
//!   partitions' primaries on other servers (entries checked on receipt, fencing by term);
//! - `remote`: `RemoteLog`, a replica on another server as an `engine::replica_log::ReplicaLog`,
//!   so that the engine's shipping and catch-up work on it unchanged;
//! - `client`: `Remote`, the directory through the servers (dirctl `--endpoints`);
//! - `http`: `/metrics`, `/healthz` and `/livez`; `metrics`: what `/metrics` says;
//! - `graph`: the Microsoft Graph–compatible REST API at `/v1.0` (docs/graph.md);
//! - `guard`: who calls a server (the credential each call carries) and whether they may;
//! - `proof`: an operator proven with a code, and the login or elevation it grants
//!   (dirctl's embedded mode and the servers share it);
//! - `status`: engine errors to gRPC statuses and back, their kind kept.
//! - `gateway`: `geodird --gateway`, one HTTP address sending each request to the nearest
//!   healthy datacenter's server;
//! - `tls`: TLS on the HTTP address (the operator's certificate, or a self-signed one).
//!
//! **Invariant:** the engine stays free of networking: only this crate imports tonic.

pub mod client;
pub mod config;
pub mod directory;
pub mod etcd;
pub mod gateway;
pub mod graph;
pub mod guard;
pub mod http;
pub mod identity;
pub mod lease;
pub mod metrics;
pub mod node;
pub mod proof;
pub mod remote;
pub mod replication;
pub mod serve;
pub mod status;
pub mod tls;

/// The largest message a server takes or sends (an import's request, a batch of entries).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The generated gRPC code of `proto/geodir/v1`.
#[allow(clippy::all, clippy::unwrap_used)]
pub mod pb {
    tonic::include_proto!("geodir.v1");
}

/// Runs blocking work from async code. On a multi-threaded runtime it runs in place
/// (`block_in_place`: the runtime moves its other tasks to another thread), so the request
/// and its answer stay on one thread: a hand-off to the blocking pool and back costs two
/// wake-ups, tens of microseconds each on a small virtual machine. On another runtime (a
/// test's), it goes to the blocking pool.
/// A panic in `f` is an error, as it is from the blocking pool.
pub async fn inline<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                .map_err(|_| "it panicked".to_string())
        }),
        _ => tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| e.to_string()),
    }
}

/// `inline` for an engine call (which may fsync): its error, or a panic, as a gRPC status.
pub async fn inline_call<T: Send + 'static>(
    f: impl FnOnce() -> engine::Result<T> + Send + 'static,
) -> Result<T, tonic::Status> {
    inline(f)
        .await
        .map_err(|e| tonic::Status::internal(format!("request task failed: {e}")))?
        .map_err(|e| status::to_status(&e))
}

/// Waits for `f` on `runtime` from synchronous code: also from a worker of a runtime (an
/// HTTP handler that answers a read in place), which is let out of the runtime's workers
/// for the wait (`block_in_place`) instead of panicking.
pub fn wait<F: std::future::Future>(runtime: &tokio::runtime::Handle, f: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| runtime.block_on(f))
        }
        _ => runtime.block_on(f),
    }
}
