//! The gateway (`geodird --gateway`): one HTTP address for applications. It sends each
//! request on to the Graph API of the nearest healthy datacenter's server, as the control
//! plane records them (`http_endpoint`), and moves traffic away from a failing one within
//! a probe round: every `probe_interval` it asks each server's `/healthz`, the
//! transactional probe (a real read of every replica the server owns). Writes need nothing
//! of it: the server that receives one sends it on to the partition's primary.
//!
//! - `order`: which datacenters to try, in order (pure, unit-tested);
//! - `may_retry`: whether a failed attempt may go to the next datacenter (pure): a request
//!   that never reached a server may; one that reached it and may have been applied is not
//!   sent twice, unless it is a read.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use engine::topology::{Location, Topology};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

use crate::graph::error::GraphError;

/// The header naming the datacenter whose server answered.
pub const DATACENTER_HEADER: &str = "x-geodir-datacenter";

/// What a gateway is told.
#[derive(Clone, Debug)]
pub struct Options {
    pub cluster: PathBuf,
    pub control_plane: Option<String>,
    /// The datacenter the gateway stands beside: the others are tried by distance from it.
    pub near: String,
    pub http: SocketAddr,
    pub tls: crate::tls::Tls,
    /// Where a self-signed certificate is kept.
    pub data: PathBuf,
    /// How long one request to a server may take.
    pub timeout: Duration,
    pub lock_timeout: Duration,
    pub probe_interval: Duration,
    pub max_body_bytes: usize,
}

/// One datacenter's server as the last probe round saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct Backend {
    pub datacenter: String,
    pub url: String,
    pub healthy: bool,
}

/// The datacenters to try, in order: the healthy ones by distance from `near`, then the
/// unhealthy ones by distance (a probe can be wrong; trying them beats refusing). Drained
/// datacenters, those without a recorded HTTP address, and those serving HTTPS (the
/// gateway does not speak TLS to servers) are left out.
pub fn order(
    topology: &Topology,
    near: &Location,
    health: &BTreeMap<String, bool>,
) -> Vec<Backend> {
    let mut out: Vec<(bool, f64, Backend)> = topology
        .datacenters
        .iter()
        .filter(|d| !d.drained)
        .filter_map(|d| {
            // The gateway reaches servers over plain HTTP only (docs/graph.md).
            let url = d
                .http_endpoint
                .clone()
                .filter(|u| u.starts_with("http://"))?;
            let healthy = health.get(&d.name).copied().unwrap_or(false);
            Some((
                !healthy,
                d.location.distance_km(near),
                Backend {
                    datacenter: d.name.clone(),
                    url,
                    healthy,
                },
            ))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    out.into_iter().map(|(_, _, b)| b).collect()
}

/// Whether a request whose attempt failed may be sent to the next datacenter: when it never
/// reached the server (the connection was refused), or when sending it twice changes
/// nothing (a read).
pub fn may_retry(method: &Method, never_reached: bool) -> bool {
    never_reached || matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

struct Gateway {
    backends: RwLock<Vec<Backend>>,
    client: Client<HttpConnector, Full<Bytes>>,
    /// How long one request may take at a server: longer than a server's own bounds (its
    /// lock wait and a forward to the primary), so a slow write is not taken for a lost one.
    timeout: Duration,
    /// `http` or `https`: how clients reach the gateway.
    scheme: &'static str,
    max_body_bytes: usize,
}

/// Headers that belong to one connection, never sent on.
fn hop_by_hop(name: &header::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-authorization"
            | "proxy-authenticate"
            | "content-length"
    )
}

impl Gateway {
    async fn forward(&self, req: Request) -> Response {
        let request_id = req
            .headers()
            .get("client-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let (parts, body) = req.into_parts();
        let body = match axum::body::to_bytes(body, self.max_body_bytes).await {
            Ok(b) => b,
            Err(_) => {
                let mut e = GraphError::bad_request(format!(
                    "the request body is larger than {} bytes",
                    self.max_body_bytes
                ));
                e.close = true;
                return e.into_response_for(&request_id);
            }
        };
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let backends = self.backends.read().map(|b| b.clone()).unwrap_or_default();
        let mut why = Vec::new();
        for b in &backends {
            let mut out = hyper::Request::builder()
                .method(parts.method.clone())
                .uri(format!("{}{path}", b.url));
            // `Host` passes through, and the scheme the client used: the server's links
            // (`Location`, `@odata.nextLink`) then point at the gateway.
            for (name, value) in &parts.headers {
                if !hop_by_hop(name) && name != "x-forwarded-proto" {
                    out = out.header(name, value);
                }
            }
            out = out.header("x-forwarded-proto", self.scheme);
            if !parts.headers.contains_key("client-request-id") {
                out = out.header("client-request-id", &request_id);
            }
            let out = match out.body(Full::new(body.clone())) {
                Ok(r) => r,
                Err(e) => {
                    return GraphError::bad_request(e.to_string()).into_response_for(&request_id)
                }
            };
            match tokio::time::timeout(self.timeout, self.client.request(out)).await {
                Ok(Ok(resp)) => {
                    let (mut parts, incoming) = resp.into_parts();
                    let drop: Vec<_> = parts
                        .headers
                        .keys()
                        .filter(|n| hop_by_hop(n) && *n != header::CONTENT_LENGTH)
                        .cloned()
                        .collect();
                    for n in drop {
                        parts.headers.remove(n);
                    }
                    if let Ok(v) = HeaderValue::from_str(&b.datacenter) {
                        parts.headers.insert(DATACENTER_HEADER, v);
                    }
                    return Response::from_parts(
                        parts,
                        Body::new(incoming.map_err(axum::Error::new)),
                    );
                }
                Ok(Err(e)) => {
                    let never_reached = e.is_connect();
                    tracing::warn!(datacenter = %b.datacenter, error = %e, "request not answered");
                    self.mark(&b.datacenter);
                    if !may_retry(&parts.method, never_reached) {
                        return unknown_outcome(&b.datacenter, &e.to_string(), &request_id);
                    }
                    why.push(format!("{}: {e}", b.datacenter));
                }
                Err(_) => {
                    tracing::warn!(datacenter = %b.datacenter, "request timed out");
                    self.mark(&b.datacenter);
                    if !may_retry(&parts.method, false) {
                        return unknown_outcome(&b.datacenter, "timed out", &request_id);
                    }
                    why.push(format!("{}: timed out", b.datacenter));
                }
            }
        }
        GraphError {
            retry_after: Some(1),
            ..GraphError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "serviceNotAvailable",
                format!(
                    "no datacenter's server answered ({}); nothing was applied",
                    if why.is_empty() {
                        "none is known".to_string()
                    } else {
                        why.join("; ")
                    }
                ),
            )
        }
        .into_response_for(&request_id)
    }

    /// A server that failed a request counts as unhealthy until the next probe says again.
    fn mark(&self, datacenter: &str) {
        if let Ok(mut b) = self.backends.write() {
            if let Some(i) = b.iter().position(|x| x.datacenter == datacenter) {
                let mut failed = b.remove(i);
                failed.healthy = false;
                b.push(failed);
            }
        }
    }
}

/// A write that reached a server which then failed: it may or may not be applied.
fn unknown_outcome(datacenter: &str, why: &str, request_id: &str) -> Response {
    GraphError::new(
        StatusCode::BAD_GATEWAY,
        "UnknownError",
        format!(
            "datacenter {datacenter}'s server failed during the request ({why}): it may or may not have been applied; read before trying again"
        ),
    )
    .into_response_for(request_id)
}

async fn handle(State(g): State<Arc<Gateway>>, req: Request) -> Response {
    g.forward(req).await
}

/// Asks each server's /healthz: healthy when it answers 200 within `timeout`.
async fn probe(
    client: &Client<HttpConnector, Full<Bytes>>,
    topology: &Topology,
    timeout: Duration,
) -> BTreeMap<String, bool> {
    let mut asks = tokio::task::JoinSet::new();
    for d in &topology.datacenters {
        let Some(url) = &d.http_endpoint else {
            continue;
        };
        let req = hyper::Request::get(format!("{url}/healthz")).body(Full::new(Bytes::new()));
        let (name, client) = (d.name.clone(), client.clone());
        asks.spawn(async move {
            let ok = match req {
                Ok(r) => matches!(
                    tokio::time::timeout(timeout, client.request(r)).await,
                    Ok(Ok(resp)) if resp.status() == StatusCode::OK
                ),
                Err(_) => false,
            };
            (name, ok)
        });
    }
    asks.join_all().await.into_iter().collect()
}

/// Runs a gateway until SIGTERM or SIGINT. Prints one line once it serves:
/// `geodird gateway near=DC http=http://ADDR`.
pub async fn run(o: Options) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(o.http).await?;
    let local = listener.local_addr()?;
    let tls = crate::tls::load(&o.tls, &o.data.join("tls-gateway"), &local)?;
    let runtime = tokio::runtime::Handle::current();
    let control = {
        let (spec, root, lock) = (o.control_plane.clone(), o.cluster.clone(), o.lock_timeout);
        let runtime = runtime.clone();
        Arc::new(
            tokio::task::spawn_blocking(move || {
                crate::etcd::open(spec.as_deref(), &root, lock, &runtime)
            })
            .await??,
        )
    };
    let load = {
        let control = control.clone();
        move || {
            let control = control.clone();
            async move { tokio::task::spawn_blocking(move || control.load()).await }
        }
    };
    let topology = load().await??;
    let near = topology.region(&o.near)?;
    topology.datacenter(&o.near)?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    // A connect that times out never reached the server (the request may go on to the
    // next); it ends well within the request's own timeout.
    connector.set_connect_timeout(Some(o.timeout / 2));
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
    let health = probe(&client, &topology, o.timeout).await;
    let gateway = Arc::new(Gateway {
        backends: RwLock::new(order(&topology, &near, &health)),
        client: client.clone(),
        timeout: o.lock_timeout + o.timeout * 3,
        scheme: if tls.is_some() { "https" } else { "http" },
        max_body_bytes: o.max_body_bytes,
    });
    // The probe rounds: the topology read again (a server moved, a datacenter drained),
    // every server asked.
    let prober = {
        let gateway = gateway.clone();
        let interval = o.probe_interval;
        let timeout = o.timeout.min(interval.max(Duration::from_millis(200)));
        tokio::spawn(async move {
            let mut topology = topology;
            loop {
                tokio::time::sleep(interval).await;
                match load().await {
                    Ok(Ok(t)) => topology = t,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "control plane not read; the last topology kept")
                    }
                    Err(e) => tracing::warn!(error = %e, "control plane not read"),
                }
                let health = probe(&client, &topology, timeout).await;
                let next = order(&topology, &near, &health);
                let changed = gateway.backends.read().map(|b| *b != next).unwrap_or(true);
                if changed {
                    tracing::info!(
                        order = %next.iter().map(|b| format!("{}{}", b.datacenter, if b.healthy { "" } else { "(unhealthy)" })).collect::<Vec<_>>().join(","),
                        "routing changed"
                    );
                }
                if let Ok(mut b) = gateway.backends.write() {
                    *b = next;
                }
            }
        })
    };
    let routes = Router::new()
        .route("/livez", axum::routing::get(|| async { "ok\n" }))
        .fallback(handle)
        .with_state(gateway);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let stopped = async move {
        let _ = rx.changed().await;
    };
    let server =
        crate::serve::serve_http(listener, routes, tls.as_ref().map(|t| t.0.clone()), stopped);
    tracing::info!(near = %o.near, http = %format!("{scheme}://{local}"), "gateway serving");
    match &tls {
        None => println!("geodird gateway near={} http={scheme}://{local}", o.near),
        Some((_, cert)) => println!(
            "geodird gateway near={} http={scheme}://{local} cert={}",
            o.near,
            cert.display()
        ),
    }
    let signals = async move {
        crate::serve::stop_signal().await?;
        let _ = tx.send(true);
        anyhow::Ok(())
    };
    // The server ending by itself (its listener failed) ends the gateway too.
    tokio::pin!(server);
    let served = tokio::select! {
        h = &mut server => h,
        s = signals => match s {
            Ok(()) => server.await,
            Err(e) => Err(e),
        },
    };
    prober.abort();
    served
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::topology::parse_datacenter;

    fn topology() -> Topology {
        let mut t = Topology::new(
            "c".into(),
            [
                "westus@37.4,-122.1",
                "eastus@37.4,-79.4",
                "westeurope@52.4,4.9",
            ]
            .iter()
            .map(|d| parse_datacenter(d).expect("dc"))
            .collect(),
            1,
        )
        .expect("topology");
        for (i, d) in t.datacenters.iter_mut().enumerate() {
            d.http_endpoint = Some(format!("http://127.0.0.1:{}", 9000 + i));
        }
        t
    }

    fn names(b: &[Backend]) -> Vec<&str> {
        b.iter().map(|b| b.datacenter.as_str()).collect()
    }

    #[test]
    fn healthy_datacenters_come_first_by_distance_then_the_unhealthy_ones() {
        let t = topology();
        let near = t.region("westus").expect("region");
        let all: BTreeMap<String, bool> = t
            .datacenters
            .iter()
            .map(|d| (d.name.clone(), true))
            .collect();
        assert_eq!(
            names(&order(&t, &near, &all)),
            ["westus", "eastus", "westeurope"]
        );
        let mut west_down = all.clone();
        west_down.insert("westus".into(), false);
        let o = order(&t, &near, &west_down);
        assert_eq!(names(&o), ["eastus", "westeurope", "westus"]);
        assert!(!o[2].healthy);
        let from_europe = t.region("westeurope").expect("region");
        assert_eq!(
            names(&order(&t, &from_europe, &all)),
            ["westeurope", "eastus", "westus"]
        );
    }

    #[test]
    fn drained_datacenters_and_those_without_an_address_are_never_tried() {
        let mut t = topology();
        t.datacenters[1].drained = true;
        t.datacenters[2].http_endpoint = None;
        t.datacenters[0].http_endpoint = Some("https://127.0.0.1:1".into());
        let near = t.region("westus").expect("region");
        assert!(order(&t, &near, &BTreeMap::new()).is_empty());
        t.datacenters[0].http_endpoint = Some("http://127.0.0.1:1".into());
        let near = t.region("westus").expect("region");
        assert_eq!(names(&order(&t, &near, &BTreeMap::new())), ["westus"]);
    }

    #[test]
    fn only_reads_or_requests_that_never_reached_a_server_are_sent_again() {
        assert!(may_retry(&Method::GET, false));
        assert!(may_retry(&Method::POST, true));
        assert!(!may_retry(&Method::POST, false));
        assert!(!may_retry(&Method::PATCH, false));
        assert!(!may_retry(&Method::DELETE, false));
    }
}
