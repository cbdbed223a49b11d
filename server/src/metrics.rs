//! A server's metrics, served at `/metrics` in Prometheus text (`prometheus-client`).

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Duration;

use engine::topology::Topology;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::node::Lag;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    request: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaLabels {
    partition: String,
    datacenter: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RequestLabels, Histogram>,
    term: Family<PartitionLabels, Gauge>,
    primary_here: Family<PartitionLabels, Gauge>,
    /// The datacenter whose server this is.
    datacenter: String,
    lag_entries: Family<ReplicaLabels, Gauge>,
    lag_seconds: Family<ReplicaLabels, Gauge<f64, AtomicU64>>,
    batch: Histogram,
    automatic_failovers: Counter,
    cut_entries: Family<ReplicaLabels, Counter>,
    /// Serializes encoding (the registry is read while metrics change; each is atomic).
    encoding: Mutex<()>,
}

impl Metrics {
    pub fn new(datacenter: &str) -> Metrics {
        let mut registry = Registry::with_prefix("geodir");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests carried out by this server, by request type and outcome",
            requests.clone(),
        );
        let request_seconds = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
        });
        registry.register(
            "request_seconds",
            "Time to carry out a request (a write: until it is durable on the primary and the sync standby)",
            request_seconds.clone(),
        );
        let term = Family::<PartitionLabels, Gauge>::default();
        registry.register("partition_term", "Each partition's term", term.clone());
        let primary_here = Family::<PartitionLabels, Gauge>::default();
        registry.register(
            "partition_primary_here",
            "1 when this server owns the partition's primary (summed over servers: 0 means no primary is being served)",
            primary_here.clone(),
        );
        let lag_entries = Family::<ReplicaLabels, Gauge>::default();
        registry.register(
            "replication_lag_entries",
            "Committed entries a secondary missed at the last replication round (from the primary's server; -1: unreachable)",
            lag_entries.clone(),
        );
        let lag_seconds = Family::<ReplicaLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "replication_lag_seconds",
            "Age of the oldest committed entry a secondary missed at the last replication round",
            lag_seconds.clone(),
        );
        let batch = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register(
            "write_batch_requests",
            "Writes carried out together by this server (group commit: writes to one partition in one batch share a log entry and its fsyncs)",
            batch.clone(),
        );
        let automatic_failovers = Counter::default();
        registry.register(
            "automatic_failovers",
            "Emergency failovers this server carried out on its own (its replica promoted when the primary's lease expired)",
            automatic_failovers.clone(),
        );
        let cut_entries = Family::<ReplicaLabels, Counter>::default();
        registry.register(
            "cut_entries",
            "Uncommitted entries cut from a secondary's log as this server's primary brought it level (a returning old primary's tail)",
            cut_entries.clone(),
        );
        Metrics {
            automatic_failovers,
            cut_entries,
            batch,
            registry,
            requests,
            request_seconds,
            term,
            primary_here,
            datacenter: datacenter.to_string(),
            lag_entries,
            lag_seconds,
            encoding: Mutex::new(()),
        }
    }

    pub fn note_request(&self, request: &str, outcome: &str, took: Duration) {
        let labels = RequestLabels {
            request: request.to_string(),
            outcome: outcome.to_string(),
        };
        self.requests.get_or_create(&labels).inc();
        self.request_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    pub fn note_automatic_failover(&self) {
        self.automatic_failovers.inc();
    }

    /// `n` uncommitted entries cut from the replica of `partition` in `datacenter`.
    pub fn note_cut(&self, partition: u32, datacenter: &str, n: usize) {
        self.cut_entries
            .get_or_create(&ReplicaLabels {
                partition: partition.to_string(),
                datacenter: datacenter.to_string(),
            })
            .inc_by(n as u64);
    }

    /// A batch of `n` writes carried out together (group commit).
    pub fn note_batch(&self, n: usize) {
        self.batch.observe(n as f64);
    }

    /// A (changed) control plane: terms and primaries as it says; the lag series start
    /// afresh (a replica whose role changed is no longer measured by this server).
    pub fn note_topology(&self, t: &Topology) {
        self.lag_entries.clear();
        self.lag_seconds.clear();
        for p in &t.partitions {
            let labels = PartitionLabels {
                partition: p.id.to_string(),
            };
            self.term
                .get_or_create(&labels)
                .set(i64::try_from(p.term).unwrap_or(i64::MAX));
            self.primary_here
                .get_or_create(&labels)
                .set(i64::from(p.primary == self.datacenter));
        }
    }

    pub fn note_lag(&self, partition: u32, datacenter: &str, lag: Lag) {
        let labels = ReplicaLabels {
            partition: partition.to_string(),
            datacenter: datacenter.to_string(),
        };
        self.lag_entries
            .get_or_create(&labels)
            .set(i64::try_from(lag.entries).unwrap_or(i64::MAX));
        self.lag_seconds.get_or_create(&labels).set(lag.seconds);
    }

    pub fn note_lag_unknown(&self, partition: u32, datacenter: &str) {
        let labels = ReplicaLabels {
            partition: partition.to_string(),
            datacenter: datacenter.to_string(),
        };
        self.lag_entries.get_or_create(&labels).set(-1);
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let _one = self.encoding.lock();
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
