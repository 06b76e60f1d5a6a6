//! The HTTP endpoints. Every handler reads the latest snapshot and nothing
//! else: a scrape never waits on Redis, however slow a node is.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::snapshot::Snapshot;
use crate::timeline::Timeline;

type Snapshots = watch::Receiver<Arc<Snapshot>>;

/// The most items one API call returns.
const MAX_LIMIT: usize = 1000;

/// The router: `/metrics`, `/-/healthy`, `/-/ready`, `/`, and the JSON API
/// under `/api/v1/` (see docs/api.md). Every route is read-only.
pub fn router(snapshots: Snapshots) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/api/v1/failovers", get(failovers))
        .route("/api/v1/failovers/{id}", get(failover))
        .route("/api/v1/events", get(events))
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
        "<li><a href=\"/api/v1/failovers\">/api/v1/failovers</a>: failover timelines</li>",
        "<li><a href=\"/api/v1/events\">/api/v1/events</a>: recent sentinel events</li>",
        "</ul></body></html>"
    ))
}

#[derive(Deserialize)]
struct FailoverQuery {
    deployment: Option<String>,
    shard: Option<String>,
    limit: Option<usize>,
}

/// A timeline as the API shows it: as stored, plus its derived times.
fn timeline_json(t: &Timeline) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        let phases: serde_json::Map<String, Value> = t
            .phases()
            .into_iter()
            .map(|(p, s)| (p.to_string(), json!(s)))
            .collect();
        map.insert("phases".into(), Value::Object(phases));
        map.insert("started".into(), json!(t.started()));
        map.insert("ended".into(), json!(t.ended()));
        map.insert("duration_seconds".into(), json!(t.duration()));
    }
    v
}

/// Failovers, in progress first, then newest first.
async fn failovers(
    State(snapshots): State<Snapshots>,
    Query(q): Query<FailoverQuery>,
) -> Json<Value> {
    let snapshot = snapshots.borrow().clone();
    let list: Vec<Value> = snapshot
        .failovers
        .timelines
        .iter()
        .filter(|t| q.deployment.as_ref().is_none_or(|d| *d == t.deployment))
        .filter(|t| q.shard.as_ref().is_none_or(|s| *s == t.shard))
        .take(q.limit.unwrap_or(100).min(MAX_LIMIT))
        .map(timeline_json)
        .collect();
    Json(json!({ "failovers": list }))
}

async fn failover(State(snapshots): State<Snapshots>, Path(id): Path<String>) -> Response {
    let snapshot = snapshots.borrow().clone();
    match snapshot.failovers.timelines.iter().find(|t| t.id == id) {
        Some(t) => Json(timeline_json(t)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "no failover with this id" })),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct EventQuery {
    since: Option<f64>,
    deployment: Option<String>,
    limit: Option<usize>,
}

/// Recent sentinel events, oldest first.
async fn events(State(snapshots): State<Snapshots>, Query(q): Query<EventQuery>) -> Json<Value> {
    let snapshot = snapshots.borrow().clone();
    let matching: Vec<_> = snapshot
        .failovers
        .events
        .iter()
        .filter(|e| q.since.is_none_or(|s| e.at > s))
        .filter(|e| q.deployment.as_ref().is_none_or(|d| *d == e.deployment))
        .collect();
    let limit = q.limit.unwrap_or(MAX_LIMIT).min(MAX_LIMIT);
    let list = &matching[matching.len().saturating_sub(limit)..];
    Json(json!({ "events": list }))
}
