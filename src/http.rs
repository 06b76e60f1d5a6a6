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

use crate::config::Kind;
use crate::snapshot::{ClusterView, DeploymentView, SlotsView, Snapshot};
use crate::timeline::Timeline;
use crate::web::{require, BasicAuth};

type Snapshots = watch::Receiver<Arc<Snapshot>>;

/// The most items one API call returns.
const MAX_LIMIT: usize = 1000;

/// The router: `/metrics`, `/-/healthy`, `/-/ready`, `/`, and the JSON API
/// under `/api/v1/` (see docs/api.md). Every route is read-only.
///
/// With `auth`, every request needs credentials (unknown paths too, so
/// that nothing about the agent shows without them) except `/-/healthy`,
/// which says only that the process serves and is what container and
/// Kubernetes probes ask without credentials (docs/security.md).
pub fn router(snapshots: Snapshots, auth: Option<Arc<BasicAuth>>) -> Router {
    let mut protected = Router::new()
        .route("/", get(index))
        .route("/api/v1/failovers", get(failovers))
        .route("/api/v1/failovers/{id}", get(failover))
        .route("/api/v1/events", get(events))
        .route("/api/v1/clusters/{deployment}/slots", get(cluster_slots))
        .route("/api/v1/clusters/{deployment}/keyslot", get(keyslot))
        .route("/api/v1/topology", get(topology))
        .route("/api/v1/alerts", get(alerts))
        .route("/metrics", get(metrics))
        .route("/-/ready", get(ready));
    if let Some(auth) = auth {
        // A layer covers the routes added before it, and the fallback.
        protected = protected.layer(axum::middleware::from_fn_with_state(auth, require));
    }
    protected
        .route("/-/healthy", get(|| async { "OK\n" }))
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
        "<li><a href=\"/api/v1/topology\">/api/v1/topology</a>: deployments, shards, nodes</li>",
        "<li><a href=\"/api/v1/alerts\">/api/v1/alerts</a>: alerts firing now</li>",
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

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// The cluster deployment called `name` and its slot map, or the error to answer.
fn cluster<'a>(
    snapshot: &'a Snapshot,
    name: &str,
) -> Result<(&'a DeploymentView, &'a SlotsView), (StatusCode, &'static str)> {
    let d = snapshot
        .deployments
        .iter()
        .find(|d| *d.name == *name && d.kind == Kind::Cluster)
        .ok_or((
            StatusCode::NOT_FOUND,
            "no cluster deployment with this name",
        ))?;
    let slots = d
        .cluster
        .as_ref()
        .and_then(|c: &ClusterView| c.slots.as_ref())
        .ok_or((
            StatusCode::SERVICE_UNAVAILABLE,
            "no node of this cluster answers",
        ))?;
    Ok((d, slots))
}

/// The merged slot map by range, disagreements and open slots.
async fn cluster_slots(State(snapshots): State<Snapshots>, Path(name): Path<String>) -> Response {
    let snapshot = snapshots.borrow().clone();
    let (d, sv) = match cluster(&snapshot, &name) {
        Ok(found) => found,
        Err((status, message)) => return error(status, message),
    };
    let now = crate::monitor::unix(std::time::SystemTime::now());
    let ranges: Vec<Value> = sv
        .ranges
        .iter()
        .map(|r| {
            json!({ "start": r.start, "end": r.end, "slots": u32::from(r.end - r.start) + 1,
                    "state": r.state, "shard": r.shard, "master": r.master })
        })
        .collect();
    let divergences: Vec<Value> = sv
        .divergences
        .iter()
        .map(|v| json!({ "node": v.node, "start": v.start, "end": v.end, "says": v.says, "majority": v.majority }))
        .collect();
    let open: Vec<Value> = sv
        .open
        .iter()
        .map(|o| {
            let (source, target) = match o.state {
                "migrating" => (&o.node, &o.peer),
                _ => (&o.peer, &o.node),
            };
            json!({ "node": o.node, "slot": o.slot, "state": o.state, "source": source, "target": target,
                    "open_seconds": (now - o.since).max(0.0) })
        })
        .collect();
    let shards: Vec<Value> = sv
        .shard_slots
        .iter()
        .map(|(s, n)| json!({ "shard": s, "slots": n }))
        .collect();
    Json(json!({
        "deployment": &*d.name,
        "coverage_ratio": (crate::slots::SLOTS as f64 - f64::from(sv.uncovered)) / crate::slots::SLOTS as f64,
        "uncovered": sv.uncovered,
        "uncovered_ranges": sv.uncovered_ranges,
        "config_views": sv.config_views,
        "config_consistent": sv.config_views <= 1,
        "shards": shards,
        "ranges": ranges,
        "divergences": divergences,
        "open_slots": open,
        "shards_without_replica": sv.shards_without_replica,
        "shards_same_host": sv.shards_same_host,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct KeyQuery {
    key: Option<String>,
}

/// Where a key lives: its slot (CRC16 with hash tags), shard and master.
async fn keyslot(
    State(snapshots): State<Snapshots>,
    Path(name): Path<String>,
    Query(q): Query<KeyQuery>,
) -> Response {
    let Some(key) = q.key else {
        return error(StatusCode::BAD_REQUEST, "give the key as ?key=...");
    };
    let snapshot = snapshots.borrow().clone();
    let (d, sv) = match cluster(&snapshot, &name) {
        Ok(found) => found,
        Err((status, message)) => return error(status, message),
    };
    let slot = crate::slots::key_slot(key.as_bytes());
    let range = sv.ranges.iter().find(|r| r.start <= slot && slot <= r.end);
    Json(json!({
        "deployment": &*d.name,
        "key": key,
        "slot": slot,
        "shard": range.and_then(|r| r.shard.clone()),
        "master": range.and_then(|r| r.master.clone()),
        "state": range.map(|r| r.state),
    }))
    .into_response()
}

/// Every deployment, shard, node and sentinel, with roles and health.
async fn topology(State(snapshots): State<Snapshots>) -> Json<Value> {
    let snapshot = snapshots.borrow().clone();
    let deployments: Vec<Value> = snapshot
        .deployments
        .iter()
        .map(|d| {
            let up = |role: crate::model::Role, addr: &str| {
                d.targets.iter().find(|t| t.id.role == role && t.id.addr == addr).map(|t| t.up)
            };
            let failing = |addr: &str| {
                d.cluster.as_ref().and_then(|c| c.failing.iter().find(|f| f.node == addr)).map(|f| {
                    if f.fail {
                        "fail"
                    } else if f.pfail > 0 {
                        "pfail"
                    } else {
                        "ok"
                    }
                })
            };
            let shards: Vec<Value> = d
                .shards
                .iter()
                .map(|s| {
                    let nodes: Vec<Value> = s
                        .nodes
                        .iter()
                        .map(|n| {
                            json!({ "node": n.addr, "role": n.role.map(|r| r.as_str()),
                                    "up": up(crate::model::Role::Node, &n.addr), "cluster_health": failing(&n.addr),
                                    "link_up": n.replica.as_ref().and_then(|r| r.link.as_ref()).map(|l| l.up),
                                    "lag_bytes": n.replica.as_ref().and_then(|r| r.lag_bytes) })
                        })
                        .collect();
                    let canary = d.canaries.iter().find(|c| c.shard == s.name).map(|c| {
                        json!({ "up": c.status.up, "node": c.status.node, "key": c.status.key,
                                "last_ack": c.status.last_ack, "acked": c.status.acked,
                                "lost_writes": c.lost_writes })
                    });
                    json!({ "shard": s.name, "master": s.master, "masters": s.masters,
                            "replicas_healthy": s.replicas_healthy, "failover_in_progress": s.failover_in_progress,
                            "nodes": nodes, "canary": canary })
                })
                .collect();
            let sentinels: Vec<Value> = d
                .targets
                .iter()
                .filter(|t| t.exported && t.id.role == crate::model::Role::Sentinel)
                .map(|t| json!({ "sentinel": t.id.addr, "up": t.up, "tilt": t.tilt }))
                .collect();
            json!({ "deployment": &*d.name, "kind": d.kind.as_str(), "shards": shards, "sentinels": sentinels })
        })
        .collect();
    Json(json!({ "deployments": deployments }))
}

/// Alerts firing now, oldest first.
async fn alerts(State(snapshots): State<Snapshots>) -> Json<Value> {
    let snapshot = snapshots.borrow().clone();
    let mut firing = snapshot.alerts.firing.clone();
    firing.sort_by(|a, b| {
        a.since
            .partial_cmp(&b.since)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    Json(json!({ "alerts": firing }))
}
