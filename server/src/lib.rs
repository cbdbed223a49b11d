//! geodir's server mode (docs/server.md): log shipping between datacenters over gRPC.
//!
//! - `replication`: the `Replication` service, serving a server's own replicas to the
//!   partitions' primaries on other servers (entries checked on receipt, fencing by term);
//! - `remote`: `RemoteLog`, a replica on another server as an `engine::replica_log::ReplicaLog`,
//!   so that the engine's shipping and catch-up work on it unchanged;
//! - `status`: engine errors to gRPC statuses and back, their kind kept.
//!
//! **Invariant:** the engine stays free of networking: only this crate imports tonic.

pub mod remote;
pub mod replication;
pub mod status;

/// The generated gRPC code of `proto/geodir/v1`.
#[allow(clippy::all, clippy::unwrap_used)]
pub mod pb {
    tonic::include_proto!("geodir.v1");
}
