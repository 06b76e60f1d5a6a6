//! The HTTP endpoints. Every handler reads the latest snapshot and nothing
//! else: a scrape never waits on Redis, however slow a node is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::Kind;
use crate::model::snapshot::{DeploymentView, OpenState, SlotsView, Snapshot};
use crate::model::timeline::Timeline;
use crate::model::write_errors::WriteErrors;
use crate::model::TargetKind;
use crate::notify::EndpointStats;
use crate::slots::{key_slot, SLOTS};
use crate::util::time::unix_now;
use crate::web::{require, BasicAuth};

/// What every route reads: the latest snapshot, and for /metrics the
/// delivery counters, the failed writes of state files and the body
/// rendered from the latest snapshot.
#[derive(Clone)]
struct Shared {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    deliveries: Arc<Vec<Arc<EndpointStats>>>,
    write_errors: Arc<WriteErrors>,
    rendered: Arc<Mutex<Arc<Rendered>>>,
}

/// The /metrics body of one snapshot, rendered on its first scrape and
/// reused by later ones, so scrapes cost nothing between snapshots.
#[derive(Default)]
struct Rendered {
    generation: u64,
    body: OnceLock<Bytes>,
}

impl Shared {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshots.borrow().clone()
    }
}

/// The most items one API call returns.
const MAX_LIMIT: usize = 1000;

/// The router: `/metrics`, `/-/healthy`, `/-/ready`, the web UI (`/` and
/// `/ui/`, see [`crate::ui`]), and the JSON API under `/api/v1/` (see
/// docs/api.md). Every route is read-only.
///
/// With `auth`, every request needs credentials (unknown paths too, so
/// that nothing about the agent shows without them) except `/-/healthy`,
/// which says only that the process serves and is what container and
/// Kubernetes probes ask without credentials (docs/security.md).
pub fn router(
    snapshots: watch::Receiver<Arc<Snapshot>>,
    deliveries: Vec<Arc<EndpointStats>>,
    write_errors: Arc<WriteErrors>,
    auth: Option<Arc<BasicAuth>>,
) -> Router {
    let mut protected = crate::ui::routes()
        .route("/api/v1/failovers", get(failovers))
        .route("/api/v1/failovers/{id}", get(failover))
        .route("/api/v1/events", get(events))
        .route("/api/v1/clusters/{deployment}/slots", get(cluster_slots))
        .route("/api/v1/clusters/{deployment}/keyslot", get(keyslot))
        .route("/api/v1/topology", get(topology))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/findings", get(findings))
        .route("/metrics", get(metrics))
        .route("/-/ready", get(ready));
    if let Some(auth) = auth {
        // A layer covers the routes added before it, and the fallback.
        protected = protected.layer(axum::middleware::from_fn_with_state(auth, require));
    }
    let shared = Shared {
        snapshots,
        deliveries: Arc::new(deliveries),
        write_errors,
        rendered: Arc::default(),
    };
    protected
        .route("/-/healthy", get(|| async { "OK\n" }))
        .with_state(shared)
}

async fn metrics(State(shared): State<Shared>) -> Response {
    let snapshot = shared.snapshot();
    let rendered = {
        let mut current = shared.rendered.lock().unwrap_or_else(|e| e.into_inner());
        if current.generation != snapshot.generation {
            *current = Arc::new(Rendered {
                generation: snapshot.generation,
                body: OnceLock::new(),
            });
        }
        current.clone()
    };
    let body = rendered
        .body
        .get_or_init(|| Bytes::from(crate::metrics::render(&snapshot)))
        .clone();
    let live = crate::metrics::render_live(&shared.deliveries, &shared.write_errors);
    let body = Bytes::from([&body[..], live.as_bytes()].concat());
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response()
}

async fn ready(State(shared): State<Shared>) -> (StatusCode, &'static str) {
    if shared.snapshots.borrow().ready {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the first poll of every discovered target\n",
        )
    }
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
            .map(|(p, s)| (p.as_str().to_string(), json!(s)))
            .collect();
        map.insert("phases".into(), Value::Object(phases));
        map.insert("started".into(), json!(t.started()));
        map.insert("ended".into(), json!(t.ended()));
        map.insert("duration_seconds".into(), json!(t.duration()));
    }
    v
}

/// Failovers, in progress first, then newest first.
async fn failovers(State(shared): State<Shared>, Query(q): Query<FailoverQuery>) -> Json<Value> {
    let snapshot = shared.snapshot();
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

async fn failover(State(shared): State<Shared>, Path(id): Path<String>) -> Response {
    let snapshot = shared.snapshot();
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
async fn events(State(shared): State<Shared>, Query(q): Query<EventQuery>) -> Json<Value> {
    let snapshot = shared.snapshot();
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
        .deployment(name)
        .filter(|d| d.kind == Kind::Cluster)
        .ok_or((
            StatusCode::NOT_FOUND,
            "no cluster deployment with this name",
        ))?;
    let slots = d.slots().ok_or((
        StatusCode::SERVICE_UNAVAILABLE,
        "no node of this cluster answers",
    ))?;
    Ok((d, slots))
}

/// The merged slot map by range, disagreements and open slots.
async fn cluster_slots(State(shared): State<Shared>, Path(name): Path<String>) -> Response {
    let snapshot = shared.snapshot();
    let (d, sv) = match cluster(&snapshot, &name) {
        Ok(found) => found,
        Err((status, message)) => return error(status, message),
    };
    let now = unix_now();
    let ranges: Vec<Value> = sv
        .ranges
        .iter()
        .map(|r| {
            json!({ "start": r.start, "end": r.end, "slots": u32::from(r.end - r.start) + 1,
                    "state": r.state.as_str(), "shard": r.shard, "master": r.master })
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
                OpenState::Migrating => (&o.node, &o.peer),
                OpenState::Importing => (&o.peer, &o.node),
            };
            json!({ "node": o.node, "slot": o.slot, "state": o.state.as_str(), "source": source, "target": target,
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
        "coverage_ratio": (SLOTS as f64 - f64::from(sv.uncovered)) / SLOTS as f64,
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
    State(shared): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<KeyQuery>,
) -> Response {
    let Some(key) = q.key else {
        return error(StatusCode::BAD_REQUEST, "give the key as ?key=...");
    };
    let snapshot = shared.snapshot();
    let (d, sv) = match cluster(&snapshot, &name) {
        Ok(found) => found,
        Err((status, message)) => return error(status, message),
    };
    let slot = key_slot(key.as_bytes());
    let range = sv.ranges.iter().find(|r| r.start <= slot && slot <= r.end);
    Json(json!({
        "deployment": &*d.name,
        "key": key,
        "slot": slot,
        "shard": range.and_then(|r| r.shard.clone()),
        "master": range.and_then(|r| r.master.clone()),
        "state": range.map(|r| r.state.as_str()),
    }))
    .into_response()
}

/// Every deployment, shard, node and sentinel, with roles and health.
async fn topology(State(shared): State<Shared>) -> Json<Value> {
    let snapshot = shared.snapshot();
    let deployments: Vec<Value> = snapshot
        .deployments
        .iter()
        .map(|d| {
            let up: HashMap<&str, bool> = d
                .targets
                .iter()
                .filter(|t| t.id.kind == TargetKind::Node)
                .map(|t| (t.id.addr.as_str(), t.up))
                .collect();
            let health: HashMap<&str, &'static str> = d
                .cluster
                .iter()
                .flat_map(|c| &c.failing)
                .map(|f| {
                    let h = if f.fail {
                        "fail"
                    } else if f.pfail > 0 {
                        "pfail"
                    } else {
                        "ok"
                    };
                    (f.node.as_str(), h)
                })
                .collect();
            let shards: Vec<Value> = d
                .shards
                .iter()
                .map(|s| {
                    let nodes: Vec<Value> = s
                        .nodes
                        .iter()
                        .map(|n| {
                            json!({ "node": n.addr, "role": n.role.map(|r| r.as_str()),
                                    "up": up.get(n.addr.as_str()), "cluster_health": health.get(n.addr.as_str()),
                                    "link_up": n.replica.as_ref().and_then(|r| r.link.as_ref()).map(|l| l.up),
                                    "lag_bytes": n.replica.as_ref().and_then(|r| r.lag_bytes) })
                        })
                        .collect();
                    let canary = d.canaries.iter().find(|c| c.shard == s.name).map(|c| {
                        json!({ "up": c.status.up, "node": c.status.node, "key": c.status.key,
                                "last_ack": c.status.last_ack, "acked": c.status.acked,
                                "lost_writes": c.lost_writes })
                    });
                    let sentinel = s.sentinel.as_ref().map(|v| {
                        json!({ "master_addr": v.master_addr, "quorum": v.quorum, "reachable": v.reachable,
                                "quorum_ok": v.quorum_ok, "agreement": v.agreement, "config_epoch": v.config_epoch,
                                "sdown": v.sdown, "odown": v.odown })
                    });
                    json!({ "shard": s.name, "master": s.master, "masters": s.masters,
                            "replicas_healthy": s.replicas_healthy, "failover_in_progress": s.failover_in_progress,
                            "nodes": nodes, "canary": canary, "sentinel": sentinel })
                })
                .collect();
            let sentinels: Vec<Value> = d
                .targets
                .iter()
                .filter(|t| t.exported && t.id.kind == TargetKind::Sentinel)
                .map(|t| json!({ "sentinel": t.id.addr, "up": t.up, "tilt": t.tilt }))
                .collect();
            json!({ "deployment": &*d.name, "kind": d.kind.as_str(), "shards": shards, "sentinels": sentinels })
        })
        .collect();
    Json(json!({ "deployments": deployments }))
}

/// Alerts firing now, oldest first.
async fn alerts(State(shared): State<Shared>) -> Json<Value> {
    let snapshot = shared.snapshot();
    let mut firing = snapshot.alerts.firing.clone();
    firing.sort_by(|a, b| {
        a.since
            .partial_cmp(&b.since)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    Json(json!({ "alerts": firing }))
}

/// What is wrong with each deployment's setup now, the most severe first;
/// and where checks cannot tell, so that a missing finding is never read
/// as "fine" where nothing was checked.
async fn findings(State(shared): State<Shared>) -> Json<Value> {
    let snapshot = shared.snapshot();
    let mut all: Vec<&crate::model::finding::Finding> = snapshot
        .deployments
        .iter()
        .flat_map(|d| d.findings.iter())
        .collect();
    all.sort_by_key(|f| f.severity);
    let unknown: Vec<_> = snapshot
        .deployments
        .iter()
        .flat_map(|d| d.findings_unknown.iter())
        .collect();
    Json(json!({ "findings": all, "unknown": unknown }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PasswordHash;
    use axum::body::Body;
    use axum::http::Request;
    use std::collections::BTreeMap;
    use tower::ServiceExt as _;

    /// The router with one user, `alice` / `right`.
    fn protected() -> Router {
        let users = BTreeMap::from([(
            "alice".to_string(),
            PasswordHash::parse(&bcrypt::hash("right", 4).unwrap()).unwrap(),
        )]);
        let (_, snapshots) = watch::channel(Arc::new(Snapshot::default()));
        router(
            snapshots,
            Vec::new(),
            Arc::default(),
            crate::web::BasicAuth::new(&users).unwrap(),
        )
    }

    async fn status(router: &Router, path: &str, credentials: Option<&str>) -> StatusCode {
        let mut request = Request::get(path);
        if let Some(c) = credentials {
            use base64::Engine as _;
            let token = base64::engine::general_purpose::STANDARD.encode(c);
            request = request.header(header::AUTHORIZATION, format!("Basic {token}"));
        }
        router
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn the_ui_needs_the_same_credentials_as_the_api_and_health_none() {
        let router = protected();
        let asset = format!("/ui/assets/{}/common.js", crate::ui::version());
        for path in [
            "/",
            "/ui/topology",
            "/ui/failovers/a%3Ab%3A1",
            "/ui/clusters/c",
            &asset,
        ] {
            assert_eq!(
                status(&router, path, None).await,
                StatusCode::UNAUTHORIZED,
                "{path}"
            );
            assert_eq!(
                status(&router, path, Some("alice:wrong")).await,
                StatusCode::UNAUTHORIZED,
                "{path}"
            );
            assert_eq!(
                status(&router, path, Some("alice:right")).await,
                StatusCode::OK,
                "{path}"
            );
        }
        assert_eq!(status(&router, "/-/healthy", None).await, StatusCode::OK);
    }
}
