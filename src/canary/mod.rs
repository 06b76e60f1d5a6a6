//! The canary probe (`canary.enabled` per deployment; docs/timelines.md,
//! "Canary"): one task per shard that behaves as a well-behaved client and
//! measures what clients lose in a failover.
//!
//! Every interval it sends `SET <key> <seq>:<unix_ms> GET` to the shard's
//! master, a write and a read in one command, with the interval as timeout
//! and no retry, so each write is acknowledged or not. Sentinel shards: it
//! asks a sentinel for the master (`GET-MASTER-ADDR-BY-NAME`), and asks
//! again after a failed write, a `READONLY`, or a `+switch-master` the
//! agent heard. Cluster shards: one key per shard, its hash tag in the
//! shard's first slot; it follows `MOVED`, and after any other failure
//! looks the slot up in the agent's merged slot map. After a failure or a
//! move it reads the key before writing again: the sequence number there
//! says which acknowledged writes the node never had.
//!
//! The probe reports to the monitor on the same channel as the pollers: a
//! status every poll interval (and when writes start or stop failing), and
//! every episode when writes resume; the monitor adds episodes to the
//! failover they overlap.

pub mod ledger;
pub mod reply;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fred::prelude::*;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::client::{client, command, Naming, PollSettings, Purpose};
use crate::config::{Deployment, Kind};
use crate::model::canary::{Episode, Report, ReportKind, Status};
use crate::model::snapshot::{DeploymentView, Snapshot};
use crate::model::timeline::MarkName;
use crate::model::{Input, PollError, TargetKind};
use crate::util::time::unix;
use ledger::Tracker;
use reply::{Held, Refusal};

/// Runs of acknowledged sequence numbers a status carries, for the API.
const RUNS_REPORTED: usize = 16;

/// One server the probe talks to, over a client of its own.
struct Conn {
    addr: Arc<str>,
    client: Client,
    task: JoinHandle<Result<(), Error>>,
    /// When the probe started using it (unix seconds).
    since: f64,
    naming: Naming,
}

impl Conn {
    fn open(
        addr: &str,
        auth: &crate::config::Auth,
        tls: Option<&crate::config::Tls>,
        timeout: Duration,
    ) -> Result<Conn, PollError> {
        let client = client(addr, auth, tls, timeout, Purpose::Canary)?;
        let naming = Naming::new(&client);
        let task = client.connect();
        Ok(Conn {
            addr: addr.into(),
            client,
            task,
            since: unix(SystemTime::now()),
            naming,
        })
    }

    /// Closes it in the background: a frozen server may never answer QUIT,
    /// and the probe must not wait for the node it is leaving.
    fn close(self, timeout: Duration) {
        tokio::spawn(async move {
            let _ = tokio::time::timeout(timeout, self.client.quit()).await;
            self.task.abort();
        });
    }
}

/// Asks the deployment's sentinels for a master's address, as
/// Sentinel-aware clients do: the same sentinel while it answers, the next
/// one when it does not.
#[derive(Default)]
struct Asker {
    conn: Option<Conn>,
    turn: usize,
}

impl Asker {
    async fn ask(
        &mut self,
        view: &DeploymentView,
        deployment: &Deployment,
        master: &str,
        timeout: Duration,
    ) -> Option<String> {
        // Sentinels that answered their last poll first, in address order.
        let mut sentinels: Vec<(bool, &str)> = view
            .targets
            .iter()
            .filter(|t| t.id.kind == TargetKind::Sentinel && t.exported)
            .map(|t| (!t.up, t.id.addr.as_str()))
            .collect();
        sentinels.sort();
        if sentinels.is_empty() {
            return None;
        }
        if self
            .conn
            .as_ref()
            .is_none_or(|c| !sentinels.iter().any(|(_, s)| **s == *c.addr))
        {
            if let Some(gone) = self.conn.take() {
                gone.close(timeout);
            }
            let (_, addr) = sentinels[self.turn % sentinels.len()];
            self.conn = Conn::open(
                addr,
                &deployment.sentinel_auth,
                deployment.sentinel_tls.as_ref(),
                timeout,
            )
            .ok();
        }
        let Some(conn) = &self.conn else {
            // An address the client refuses: the next sentinel next time.
            self.turn += 1;
            return None;
        };
        let answer = conn
            .client
            .custom::<Option<Vec<String>>, _>(
                command("SENTINEL"),
                vec!["GET-MASTER-ADDR-BY-NAME", master],
            )
            .await;
        let answer = answer.map(|r| reply::master_addr(r.as_deref()));
        match answer {
            Ok(Ok(Some(addr))) => Some(addr),
            failed => {
                tracing::debug!(deployment = %deployment.name, shard = master, sentinel = %conn.addr, answer = ?failed, "canary: no master address from this sentinel");
                self.turn += 1;
                if let Some(c) = self.conn.take() {
                    c.close(timeout);
                }
                None
            }
        }
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The probe's key for `shard` now, with the slot it must live in for
/// cluster shards; `None` while the shard has no slot.
fn key_of(
    view: &DeploymentView,
    deployment: &Deployment,
    shard: &str,
    tag: &mut Option<(u16, String)>,
) -> Option<(String, Option<u16>)> {
    let prefix = &deployment.canary.key_prefix;
    if deployment.kind == Kind::Sentinel {
        return Some((reply::sentinel_key(prefix, shard), None));
    }
    let first = view
        .cluster
        .as_ref()?
        .slots
        .as_ref()?
        .ranges
        .iter()
        .filter(|r| r.shard.as_deref() == Some(shard))
        .map(|r| r.start)
        .min()?;
    if tag.as_ref().is_none_or(|(slot, _)| *slot != first) {
        *tag = Some((first, reply::tag_for_slot(first)?));
    }
    let (slot, tag) = tag.as_ref()?;
    Some((reply::cluster_key(prefix, tag), Some(*slot)))
}

/// The master serving `slot` in the agent's merged slot map.
fn slot_owner(view: &DeploymentView, slot: u16) -> Option<String> {
    view.cluster
        .as_ref()?
        .slots
        .as_ref()?
        .ranges
        .iter()
        .find(|r| r.start <= slot && slot <= r.end)?
        .master
        .clone()
}

/// Whether the agent heard `+switch-master` for this shard, naming another
/// master, since the probe started writing to `conn`.
fn switched_away(snapshot: &Snapshot, deployment: &str, shard: &str, conn: &Conn) -> bool {
    snapshot
        .failovers
        .timelines
        .iter()
        .find(|t| t.deployment == deployment && t.shard == shard)
        .is_some_and(|t| {
            t.at(MarkName::Switched).is_some_and(|at| at > conn.since)
                && t.new_master.as_deref().is_some_and(|m| *m != *conn.addr)
        })
}

/// The probe of one shard, from its first write to `stop`.
struct Probe {
    deployment: Arc<Deployment>,
    name: Arc<str>,
    shard: String,
    settings: PollSettings,
    tracker: Tracker,
    conn: Option<Conn>,
    asker: Asker,
    /// Where the last `MOVED` pointed.
    redirect: Option<String>,
    /// Whether to look for the master before the next write.
    resolve: bool,
    key: Option<(String, Option<u16>)>,
    tag: Option<(u16, String)>,
    latencies: Vec<f64>,
    /// What the log last said: writes acknowledged or not.
    logged_up: Option<bool>,
    backoff: Backoff,
}

/// A refusal that lasts, or no master to be found, pauses the probe for a
/// while (doubling, capped) instead of asking again every interval: a
/// server that refuses the probe must not be hammered by it.
#[derive(Default)]
struct Backoff {
    until: Option<Instant>,
    step: Duration,
}

/// The longest pause after refusals that last (permissions, wrong type).
const LASTING_BACKOFF: Duration = Duration::from_secs(60);
/// The longest pause while no master is found: short, because the end of a
/// failover is timed by the first write that succeeds after it.
const LOOKUP_BACKOFF: Duration = Duration::from_secs(1);

impl Backoff {
    fn ready(&self) -> bool {
        self.until.is_none_or(|until| Instant::now() >= until)
    }

    fn fail(&mut self, first: Duration, cap: Duration) {
        self.step = (self.step * 2).max(first).min(cap);
        self.until = Some(Instant::now() + self.step);
    }
}

/// Probes `shard` of `deployment` until `stop` turns true.
pub async fn run(
    deployment: Arc<Deployment>,
    shard: String,
    settings: PollSettings,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    tx: mpsc::Sender<Input>,
    mut stop: watch::Receiver<bool>,
) {
    let mut writes = tokio::time::interval(deployment.canary.interval);
    writes.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut statuses = tokio::time::interval(settings.interval);
    statuses.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut probe = Probe {
        name: deployment.name.as_str().into(),
        // Numbers start at the start time in ms, above every number an
        // earlier run wrote: a node still holding one is seen as behind.
        tracker: Tracker::new(unix_ms(SystemTime::now())),
        deployment,
        shard,
        settings,
        conn: None,
        asker: Asker::default(),
        redirect: None,
        resolve: true,
        key: None,
        tag: None,
        latencies: Vec::new(),
        logged_up: None,
        backoff: Backoff::default(),
    };
    loop {
        let news = tokio::select! {
            _ = stop.changed() => break,
            _ = statuses.tick() => vec![probe.status()],
            _ = writes.tick() => {
                let snapshot = snapshots.borrow_and_update().clone();
                probe.write(&snapshot).await
            }
        };
        for kind in news {
            let report = Report {
                deployment: probe.name.clone(),
                shard: probe.shard.clone(),
                at: SystemTime::now(),
                kind,
            };
            if tx.send(Input::Canary(report)).await.is_err() {
                return;
            }
        }
    }
    let timeout = probe.settings.timeout;
    for conn in [probe.conn.take(), probe.asker.conn.take()]
        .into_iter()
        .flatten()
    {
        conn.close(timeout);
    }
}

impl Probe {
    fn status(&mut self) -> ReportKind {
        ReportKind::Status(Status {
            up: self.tracker.up(),
            node: self.conn.as_ref().map(|c| c.addr.clone()),
            key: self.key.as_ref().map(|(k, _)| k.clone()),
            last_ack: self.tracker.last_ack().cloned(),
            acked: self.tracker.runs(RUNS_REPORTED),
            latencies: std::mem::take(&mut self.latencies),
        })
    }

    /// One interval: find the master if needed, read back if needed,
    /// write. Returns what to report now.
    async fn write(&mut self, snapshot: &Snapshot) -> Vec<ReportKind> {
        if !self.backoff.ready() {
            return Vec::new();
        }
        let was_up = self.tracker.up();
        let mut news = Vec::new();
        if let Some(episode) = self.attempt(snapshot).await {
            tracing::info!(deployment = %self.name, shard = %self.shard,
                from = %episode.from.node, to = %episode.to.node,
                unavailable_seconds = episode.unavailable_seconds(), lost_writes = episode.lost_total,
                "canary: writes acknowledged again");
            news.push(ReportKind::Episode(Box::new(episode)));
        }
        if self.tracker.up() != was_up {
            news.push(self.status());
        }
        news
    }

    async fn attempt(&mut self, snapshot: &Snapshot) -> Option<Episode> {
        let view = snapshot
            .deployments
            .iter()
            .find(|d| *d.name == *self.name)?;
        // While the agent knows no slot map (no node answers), the key and
        // slot stay what they were, as a client's would.
        let key = key_of(view, &self.deployment, &self.shard, &mut self.tag)
            .or_else(|| self.key.clone())?;
        if self.key.as_ref().is_some_and(|(k, _)| *k != key.0) {
            // The shard's first slot moved (resharding): a new key, new records.
            self.tracker = Tracker::new(unix_ms(SystemTime::now()));
        }
        let (key, slot) = self.key.insert(key).clone();
        if self.deployment.kind == Kind::Sentinel
            && self
                .conn
                .as_ref()
                .is_some_and(|c| switched_away(snapshot, &self.name, &self.shard, c))
        {
            self.resolve = true;
        }
        if self.resolve || self.conn.is_none() {
            self.find_master(view, slot).await;
        }
        let Some(conn) = &self.conn else {
            self.failed("no master known", None);
            let interval = self.deployment.canary.interval;
            self.backoff.fail(interval, LOOKUP_BACKOFF);
            return None;
        };
        let options = Options {
            timeout: Some(self.deployment.canary.interval),
            max_attempts: Some(1),
            ..Default::default()
        };
        let client = conn.client.with_options(&options);
        let node = conn.addr.clone();
        if self.tracker.needs_read_back() {
            match client.get::<Option<String>, _>(key.as_str()).await {
                Ok(value) => self
                    .tracker
                    .read_back(&node, Held::from_reply(value.as_deref())),
                Err(e) => {
                    self.failed("cannot read the canary key", Some(&e));
                    return None;
                }
            }
        }
        let written = self.tracker.next_write(unix_ms(SystemTime::now()));
        let started = Instant::now();
        let answer = client
            .set::<Option<String>, _, _>(key.as_str(), written.encode(), None, None, true)
            .await;
        match answer {
            Ok(previous) => {
                self.backoff = Backoff::default();
                self.latencies.push(started.elapsed().as_secs_f64());
                if self.logged_up == Some(false) {
                    tracing::info!(deployment = %self.name, shard = %self.shard, node = %node, "canary: writes acknowledged");
                }
                self.logged_up = Some(true);
                let at = unix(SystemTime::now());
                let episode = self.tracker.write_acked(
                    written,
                    &node,
                    at,
                    Held::from_reply(previous.as_deref()),
                );
                // Named like the pollers' connections (not an application
                // left behind on an old master), after a write that was
                // acknowledged: out of its latency, and never queued behind
                // a server that stopped answering.
                if let Some(conn) = &mut self.conn {
                    conn.naming.name(&client).await;
                }
                episode
            }
            Err(e) => {
                self.failed("write failed", Some(&e));
                None
            }
        }
    }

    /// Records a failed write and decides where the next one goes.
    fn failed(&mut self, what: &str, error: Option<&Error>) {
        self.tracker.write_failed();
        self.resolve = true;
        match (
            error.map_or(Refusal::Other, |e| Refusal::of(e.details())),
            self.deployment.kind,
        ) {
            (Refusal::Moved(addr), Kind::Cluster) => self.redirect = Some(addr),
            (Refusal::Lasting, _) => self
                .backoff
                .fail(self.deployment.canary.interval, LASTING_BACKOFF),
            _ => {}
        }
        if self.logged_up != Some(false) {
            let node = self
                .conn
                .as_ref()
                .map(|c| c.addr.to_string())
                .unwrap_or_default();
            let error = error.map(ToString::to_string).unwrap_or_default();
            tracing::warn!(deployment = %self.name, shard = %self.shard, node, error, "canary: {what}");
        }
        self.logged_up = Some(false);
    }

    /// Finds the shard's master and moves there if it is another node.
    async fn find_master(&mut self, view: &DeploymentView, slot: Option<u16>) {
        let timeout = self.settings.timeout;
        let found = match slot {
            None => {
                self.asker
                    .ask(view, &self.deployment, &self.shard, timeout)
                    .await
            }
            Some(slot) => self.redirect.take().or_else(|| slot_owner(view, slot)),
        };
        let Some(addr) = found else { return };
        self.resolve = false;
        if self.conn.as_ref().is_some_and(|c| *c.addr == *addr) {
            return;
        }
        if let Some(old) = self.conn.take() {
            old.close(timeout);
        }
        match Conn::open(
            &addr,
            &self.deployment.auth,
            self.deployment.tls.as_ref(),
            timeout,
        ) {
            Ok(conn) => {
                self.tracker.moved_to(&addr);
                self.conn = Some(conn);
            }
            Err(e) => {
                // Said once per outage, like a failed write.
                if self.logged_up != Some(false) {
                    tracing::warn!(deployment = %self.name, shard = %self.shard, node = %addr, error = %e, "canary: cannot connect");
                }
                self.resolve = true;
            }
        }
    }
}
