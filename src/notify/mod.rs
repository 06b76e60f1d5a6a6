//! Delivery of alert notifications to receivers (webhook, Slack, PagerDuty,
//! Alertmanager).
//!
//! The monitor hands every transition (an alert started firing, or resolved)
//! to the [`Dispatcher`], which routes it, renders the receiver's body once
//! and queues it for every URL of every matching receiver. Each URL has its
//! own queue ([`queue::Queue`], on disk) and its own task that delivers in
//! order with retries ([`send`]), so a slow or dead receiver delays nobody
//! else, and never the monitor: the dispatcher only writes to queues.
//!
//! What is firing is also kept on disk (`firing.json`), so that after a
//! restart the rules carry on where they were: an alert still firing is not
//! notified twice, one that ended while the agent was down is resolved.

pub mod payload;
pub mod queue;
mod send;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::{mpsc, Notify};

use crate::config::{endpoint_label, Alerts, Receiver, ReceiverKind, Route, Secret};
use crate::model::alert::{Alert, Transition};
use crate::model::write_errors::WriteErrors;
use payload::{render, unix_now};
use queue::{Message, Queue};
pub use send::ClientError;

/// Delivery counters and queue length of one URL, read by /metrics.
#[derive(Debug)]
pub struct EndpointStats {
    /// The receiver's name.
    pub receiver: String,
    /// host:port of the URL (never its path or query, which may hold a token).
    pub endpoint: String,
    /// Notifications the receiver accepted (2xx).
    pub delivered: AtomicU64,
    /// Attempts that failed and will be retried (network error, timeout,
    /// 408, 429, 5xx).
    pub retried: AtomicU64,
    /// Notifications the receiver refused (other 4xx, 3xx): given up.
    pub refused: AtomicU64,
    /// Notifications dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Notifications waiting now.
    pub queued: AtomicU64,
}

/// Every URL's counters, in config order.
pub type Deliveries = Vec<Arc<EndpointStats>>;

/// Why delivery cannot start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `alerts.state_dir` does not exist and cannot be made.
    #[error("alerts.state_dir {}: cannot create it: {error}", dir.display())]
    StateDir { dir: PathBuf, error: std::io::Error },
    /// A receiver's HTTP client cannot be made from its settings.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A URL's delivery task ended, which it never should: its queue
    /// would fill with nobody sending it.
    #[error("a delivery task stopped: {0}")]
    Sender(String),
}

/// One URL of a receiver: its queue and the wake-up of its delivery task.
#[derive(Debug)]
struct Endpoint {
    stats: Arc<EndpointStats>,
    /// Where the queue's failed writes are counted.
    errors: Arc<WriteErrors>,
    url: Secret,
    queue: Mutex<Queue>,
    wake: Notify,
}

impl Endpoint {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        // A panic while holding the lock leaves a consistent queue behind.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, id: String, created: f64, body: String) {
        let mut q = self.queue();
        if let Some(dropped) = q.push(id, created, body) {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(receiver = %self.stats.receiver, endpoint = %self.stats.endpoint, id = %dropped.id, "delivery queue full: dropped the oldest notification");
        }
        self.counted(&mut q);
        drop(q);
        self.wake.notify_one();
    }

    fn front(&self) -> Option<Message> {
        self.queue().front().cloned()
    }

    fn done(&self, seq: u64) {
        let mut q = self.queue();
        q.done(seq);
        self.counted(&mut q);
    }

    /// Publishes the queue's length and its failed writes.
    fn counted(&self, q: &mut Queue) {
        self.stats.queued.store(q.len() as u64, Ordering::Relaxed);
        self.errors
            .delivery_queue
            .fetch_add(q.take_failed_writes(), Ordering::Relaxed);
    }
}

/// A receiver as the dispatcher runs it.
struct Target {
    config: Receiver,
    endpoints: Vec<Arc<Endpoint>>,
    /// Firing alerts routed here: fingerprint -> when last notified, for
    /// `repeat_interval`.
    last_sent: HashMap<String, f64>,
    /// Alertmanager: per URL, when firing alerts were last pushed again.
    last_resend: Vec<f64>,
}

/// Routes transitions to receivers' queues; owns what is firing.
pub struct Dispatcher {
    targets: Vec<Target>,
    routes: Vec<Route>,
    external_url: String,
    firing: BTreeMap<String, Transition>,
    firing_file: Option<PathBuf>,
    /// Where failed writes of `firing_file` are counted.
    errors: Arc<WriteErrors>,
    /// One delivery task per URL; none may end.
    workers: tokio::task::JoinSet<()>,
}

/// The firing alerts recorded when the agent last ran (none without a
/// state directory, or when the file cannot be read: then a still-firing
/// alert is notified again, which beats losing one).
pub fn load_firing(alerts: &Alerts) -> Vec<Transition> {
    let Some(dir) = &alerts.state_dir else {
        return Vec::new();
    };
    let path = dir.join("firing.json");
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(file = %path.display(), error = %e, "cannot parse the firing alerts; starting without them");
            Vec::new()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read the firing alerts; starting without them");
            Vec::new()
        }
    }
}

/// Whether `route` takes `alert`.
fn matches(route: &Route, alert: &Alert) -> bool {
    (route.severity.is_empty() || route.severity.contains(&alert.severity))
        && (route.alertname.is_empty() || route.alertname.contains(&alert.rule))
        && (route.deployment.is_empty()
            || alert
                .labels
                .get("deployment")
                .is_some_and(|d| route.deployment.contains(d)))
}

/// A notification's id: the same alert never changes state twice in a
/// microsecond.
fn message_id(fingerprint: &str, what: &str, now: f64) -> String {
    format!("{fingerprint}-{what}-{:x}", (now * 1e6) as u64)
}

impl Dispatcher {
    /// Opens every receiver's queues (with what they held when the agent
    /// stopped) and starts one delivery task per URL. Writes of the state
    /// files that fail are counted in `errors`.
    pub fn start(
        alerts: &Alerts,
        firing: Vec<Transition>,
        errors: Arc<WriteErrors>,
    ) -> Result<(Self, Deliveries), Error> {
        let dir = alerts.state_dir.as_deref();
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir).map_err(|error| Error::StateDir {
                dir: dir.to_path_buf(),
                error,
            })?;
        }
        let mut stats = Vec::new();
        let mut targets = Vec::new();
        let mut workers = tokio::task::JoinSet::new();
        for r in &alerts.receivers {
            let client = send::client(r)?;
            let mut endpoints = Vec::new();
            for url in &r.urls {
                let endpoint = Arc::new(Endpoint {
                    stats: Arc::new(EndpointStats {
                        receiver: r.name.clone(),
                        endpoint: endpoint_label(url.expose()),
                        delivered: AtomicU64::new(0),
                        retried: AtomicU64::new(0),
                        refused: AtomicU64::new(0),
                        dropped: AtomicU64::new(0),
                        queued: AtomicU64::new(0),
                    }),
                    errors: errors.clone(),
                    url: url.clone(),
                    queue: Mutex::new(open_queue(dir, &r.name, url, r.queue_size, &errors)),
                    wake: Notify::new(),
                });
                let queued = endpoint.queue().len() as u64;
                endpoint.stats.queued.store(queued, Ordering::Relaxed);
                if queued > 0 {
                    tracing::info!(receiver = %r.name, endpoint = %endpoint.stats.endpoint, queued, "resuming delivery of queued notifications");
                }
                stats.push(endpoint.stats.clone());
                workers.spawn(send::deliver(endpoint.clone(), client.clone(), r.clone()));
                endpoints.push(endpoint);
            }
            targets.push(Target {
                config: r.clone(),
                last_resend: vec![0.0; endpoints.len()],
                endpoints,
                last_sent: HashMap::new(),
            });
        }
        let now = unix_now();
        let mut d = Dispatcher {
            targets,
            routes: alerts.routes.clone(),
            external_url: alerts.external_url.clone().unwrap_or_default(),
            firing: BTreeMap::new(),
            firing_file: dir.map(|d| d.join("firing.json")),
            errors,
            workers,
        };
        for t in firing.into_iter().filter(|t| t.resolved_at.is_none()) {
            for i in d.routed(&t.alert) {
                d.targets[i]
                    .last_sent
                    .insert(t.alert.fingerprint.clone(), now);
            }
            d.firing.insert(t.alert.fingerprint.clone(), t);
        }
        Ok((d, stats))
    }

    /// Indexes of the receivers that take `alert`: every receiver when no
    /// route is configured.
    fn routed(&self, alert: &Alert) -> Vec<usize> {
        (0..self.targets.len())
            .filter(|&i| {
                self.routes.is_empty()
                    || self
                        .routes
                        .iter()
                        .any(|r| r.receiver == self.targets[i].config.name && matches(r, alert))
            })
            .collect()
    }

    /// Queues one notification per transition for every receiver it routes
    /// to, then records what is firing.
    pub fn notify(&mut self, transitions: Vec<Transition>, now: f64) {
        if transitions.is_empty() {
            return;
        }
        for t in transitions {
            let fp = t.alert.fingerprint.clone();
            let what = if t.resolved_at.is_some() {
                "resolved"
            } else {
                "firing"
            };
            let id = message_id(&fp, what, now);
            for i in self.routed(&t.alert) {
                let target = &mut self.targets[i];
                let body = render(
                    target.config.kind,
                    &target.config.name,
                    &t,
                    &self.external_url,
                );
                for ep in &target.endpoints {
                    ep.push(id.clone(), now, body.to_string());
                }
                if t.resolved_at.is_some() {
                    target.last_sent.remove(&fp);
                } else {
                    target.last_sent.insert(fp.clone(), now);
                }
            }
            if t.resolved_at.is_some() {
                self.firing.remove(&fp);
            } else {
                self.firing.insert(fp, t);
            }
        }
        self.save_firing();
    }

    /// Notifies again what keeps firing, per receiver `repeat_interval`;
    /// pushes the firing alerts to Alertmanagers again.
    pub fn tick(&mut self, now: f64) {
        let external_url = self.external_url.clone();
        for i in 0..self.targets.len() {
            let Some(every) = self.targets[i].config.repeat_interval else {
                continue;
            };
            let every = every.as_secs_f64();
            let routed: Vec<&Transition> = self
                .firing
                .values()
                .filter(|t| self.routed(&t.alert).contains(&i))
                .collect();
            let target = &mut self.targets[i];
            if target.config.kind == ReceiverKind::Alertmanager {
                if routed.is_empty() {
                    continue;
                }
                let body = Value::Array(
                    routed
                        .iter()
                        .map(|t| payload::alertmanager_alert(&t.alert, None, &external_url))
                        .collect(),
                )
                .to_string();
                for (ep, last) in target.endpoints.iter().zip(&mut target.last_resend) {
                    // A queue that still holds notifications is behind: it
                    // is tried again on the next tick rather than piled up.
                    if now - *last >= every && ep.queue().is_empty() {
                        ep.push(message_id("all", "resend", now), now, body.clone());
                        *last = now;
                    }
                }
                continue;
            }
            for t in routed {
                let fp = &t.alert.fingerprint;
                let last = *target.last_sent.entry(fp.clone()).or_insert(now);
                if now - last < every {
                    continue;
                }
                target.last_sent.insert(fp.clone(), now);
                let body = render(target.config.kind, &target.config.name, t, &external_url);
                for ep in &target.endpoints {
                    ep.push(message_id(fp, "repeat", now), now, body.to_string());
                }
            }
        }
    }

    fn save_firing(&self) {
        let Some(path) = &self.firing_file else {
            return;
        };
        let list: Vec<&Transition> = self.firing.values().collect();
        let text = serde_json::to_vec(&list).expect("plain data serializes");
        let tmp = path.with_extension("tmp");
        let written = queue::private_file(&tmp, true)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &text))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            self.errors.firing_alerts.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(file = %path.display(), error = %e, "cannot record the firing alerts");
        }
    }
}

/// The queue of one URL: on disk under `dir`, named after the receiver and
/// a hash of the URL (so reordering `urls` keeps each queue with its URL).
fn open_queue(
    dir: Option<&Path>,
    receiver: &str,
    url: &Secret,
    size: usize,
    errors: &WriteErrors,
) -> Queue {
    let Some(dir) = dir else {
        return Queue::in_memory(size);
    };
    let mut h = crate::util::hash::Fnv::default();
    h.write(url.expose().as_bytes());
    let path = dir.join(format!("queue-{receiver}-{:016x}.jsonl", h.0));
    Queue::open(path.clone(), size).unwrap_or_else(|e| {
        errors.delivery_queue.fetch_add(1, Ordering::Relaxed);
        tracing::error!(file = %path.display(), error = %e, "cannot open the delivery queue; keeping it in memory only");
        Queue::in_memory(size)
    })
}

/// Runs the dispatcher: transitions as they come, repeats once a second,
/// until the monitor is gone. Every transition it was sent is then in the
/// queue files (and `firing.json` up to date), so what the agent did not
/// deliver before it stopped is delivered after it starts again. The
/// delivery tasks end with it, mid-request or not: a request cut short
/// stays queued, and is sent again with the same id.
///
/// Ends with an error if a delivery task ends (it never should): the agent
/// then exits rather than go on without paging anyone.
pub async fn run(
    mut d: Dispatcher,
    mut rx: mpsc::UnboundedReceiver<Vec<Transition>>,
) -> Result<(), Error> {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            got = rx.recv() => match got {
                Some(t) => d.notify(t, unix_now()),
                None => return Ok(()),
            },
            _ = tick.tick() => d.tick(unix_now()),
            Some(ended) = d.workers.join_next() => {
                let why = ended.map_or_else(|e| e.to_string(), |()| "it returned".into());
                return Err(Error::Sender(why));
            }
        }
    }
}
