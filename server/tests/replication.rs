//! The `Replication` service over real gRPC on loopback: a `RemoteLog` passes the same
//! `ReplicaLog` conformance suite as the RocksDB replica and the in-memory log, and bad
//! input from the network is refused with nothing written.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use engine::replica::{Identity, Replica};
use engine::replica_log::{conformance::conformance, ReplicaLog};
use engine::Error;
use server::pb::replication_client::ReplicationClient;
use server::pb::replication_server::ReplicationServer;
use server::pb::{AppendRequest, ReplicaRef};
use server::remote::RemoteLog;
use server::replication::{Owned, ReplicationService};

/// A server for datacenter `westus` on a free loopback port, serving `replicas`; its address.
fn serve(rt: &tokio::runtime::Runtime, replicas: BTreeMap<u32, Owned>) -> String {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let service = ReplicationServer::new(ReplicationService::fixed("westus", replicas));
    rt.spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream_incoming(listener)),
    );
    format!("http://{addr}")
}

fn tokio_stream_incoming(
    listener: tokio::net::TcpListener,
) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener)
}

fn runtime() -> Arc<tokio::runtime::Runtime> {
    Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
    )
}

fn rocks(dir: &std::path::Path) -> Owned {
    let path = dir.join("p0");
    let id = Identity {
        cluster_id: "c".into(),
        datacenter: "westus".into(),
        partition: 0,
    };
    Replica::create(&path, &id).unwrap();
    Arc::new(Replica::open(&path, "p0", Duration::ZERO).unwrap())
}

#[test]
fn a_remote_rocksdb_replica_conforms() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(&rt, [(0, rocks(dir.path()))].into());
    let remote = RemoteLog::new(
        rt.handle().clone(),
        &addr,
        "westus",
        0,
        Duration::from_secs(5),
    )
    .unwrap();
    conformance(&remote);
}

#[test]
fn a_remote_in_memory_log_conforms() {
    let rt = runtime();
    let mem: Owned = Arc::new(engine::memlog::MemLog::new("mem"));
    let addr = serve(&rt, [(3, mem)].into());
    let remote = RemoteLog::new(
        rt.handle().clone(),
        &addr,
        "westus",
        3,
        Duration::from_secs(5),
    )
    .unwrap();
    conformance(&remote);
}

#[test]
fn a_replica_the_server_does_not_own_is_refused() {
    let rt = runtime();
    let mem: Owned = Arc::new(engine::memlog::MemLog::new("mem"));
    let addr = serve(&rt, [(0, mem)].into());
    for (dc, p) in [("eastus", 0), ("westus", 1)] {
        let remote =
            RemoteLog::new(rt.handle().clone(), &addr, dc, p, Duration::from_secs(5)).unwrap();
        let got = remote.last();
        assert!(
            matches!(&got, Err(Error::NotFound(_))),
            "{dc} p{p}: {got:?}"
        );
    }
}

#[test]
fn an_unreachable_server_is_unavailable() {
    let rt = runtime();
    // A port nothing listens on: bound, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let remote = RemoteLog::new(
        rt.handle().clone(),
        &format!("http://127.0.0.1:{port}"),
        "westus",
        0,
        Duration::from_secs(2),
    )
    .unwrap();
    let got = remote.last();
    assert!(
        matches!(&got, Err(Error::Unavailable(m)) if m.contains("unreachable")),
        "{got:?}"
    );
}

#[test]
fn an_entry_failing_its_checksum_is_refused_and_nothing_is_written() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let replica = rocks(dir.path());
    let addr = serve(&rt, [(0, replica.clone())].into());
    let good = engine::log::put_entry(1, 1, b"a", b"1", None).encode();
    let mut bad = engine::log::put_entry(1, 2, b"b", b"2", None).encode();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    let mut client = rt
        .block_on(ReplicationClient::connect(addr.clone()))
        .unwrap();
    let got = rt.block_on(client.append(AppendRequest {
        replica: Some(ReplicaRef {
            datacenter: "westus".into(),
            partition: 0,
        }),
        term: 1,
        entries: vec![good, bad, b"not an entry".to_vec()],
    }));
    let status = got.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("checksum mismatch"), "{status:?}");
    assert_eq!(replica.last().unwrap().lsn, 0, "nothing was written");
    assert_eq!(replica.get(b"a").unwrap(), None);
}
