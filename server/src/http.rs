//! A server's HTTP side: `/metrics` (Prometheus text), `/healthz` (the transactional
//! probe: a real read of every replica this server owns, 200 or 503 with the reason) and
//! `/livez` (the process answers; nothing is read: the benchmarks' trivial endpoint).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::node::Node;

pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/livez", get(|| async { "ok\n" }))
        .with_state(node)
}

async fn metrics(State(node): State<Arc<Node>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        node.metrics.encode(),
    )
}

async fn healthz(State(node): State<Arc<Node>>) -> impl IntoResponse {
    let probed = tokio::task::spawn_blocking(move || node.probe()).await;
    match probed {
        Ok(Ok((true, lines))) => (StatusCode::OK, format!("ok\n{}\n", lines.join("\n"))),
        Ok(Ok((false, lines))) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy\n{}\n", lines.join("\n")),
        ),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("unhealthy\n{e}\n")),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("unhealthy\n{e}\n")),
    }
}
