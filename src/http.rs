//! The HTTP endpoints. Every handler reads the latest snapshot and nothing
//! else: a scrape never waits on Redis, however slow a node is.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

use crate::snapshot::Snapshot;

type Snapshots = watch::Receiver<Arc<Snapshot>>;

/// The router: `/metrics`, `/-/healthy`, `/-/ready` and `/`.
pub fn router(snapshots: Snapshots) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "OK\n" }))
        .route("/-/ready", get(ready))
        .with_state(snapshots)
}

async fn metrics(State(snapshots): State<Snapshots>) -> Response {
    let snapshot = snapshots.borrow().clone();
    let body = snapshot
        .rendered
        .get_or_init(|| Bytes::from(crate::metrics::render(&snapshot)))
        .clone();
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response()
}

async fn ready(State(snapshots): State<Snapshots>) -> (StatusCode, &'static str) {
    if snapshots.borrow().ready {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the first poll of every discovered target\n",
        )
    }
}

async fn index() -> Html<&'static str> {
    Html(concat!(
        "<!doctype html><html><head><title>redis-ha-exporter</title></head><body>",
        "<h1>redis-ha-exporter ",
        env!("CARGO_PKG_VERSION"),
        "</h1><p>Watches Redis Sentinel and Redis Cluster deployments.</p><ul>",
        "<li><a href=\"/metrics\">/metrics</a>: Prometheus metrics</li>",
        "<li><a href=\"/-/ready\">/-/ready</a>: ready once every discovered target has been polled</li>",
        "<li><a href=\"/-/healthy\">/-/healthy</a>: the process is serving</li>",
        "</ul></body></html>"
    ))
}
