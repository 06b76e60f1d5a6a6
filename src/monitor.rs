//! The monitor: the single owner of state. It applies inputs (polls,
//! sentinel events, subscription changes) in the order they arrive, follows
//! the topology (which targets exist), drives the failover timelines,
//! derives every figure the outputs show, and publishes an immutable snapshot.
//!
//! Everything here is synchronous and free of I/O, so it is tested by
//! feeding it inputs built from recorded replies.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};

use crate::alert::{Engine, Transition};
use crate::canary::impact::Impact;
use crate::canary::ledger::Episode;
use crate::canary::{Report, ReportKind, Status, LATENCY_BUCKETS};
use crate::config::{Config, Deployment, Kind};
use crate::failovers::{EventLog, Failovers, Histogram};
use crate::model::{
    ClusterReading, EventMessage, Input, NodeReading, Observation, Reading, Role as TargetRole,
    SentinelReading, TargetId,
};
use crate::notify::Deliveries;
use crate::parse::cluster::ClusterNode;
use crate::parse::event::Event;
use crate::parse::info::Role;
use crate::slots;
use crate::snapshot::{
    AlertsView, CanaryView, ClusterView, DeploymentView, Divergence, FailingView, FailoverView,
    LinkView, NodeView, OpenSlot, ReplicaView, SentinelShardView, ShardView, SlotRangeView,
    SlotsView, Snapshot, TargetView,
};
use crate::timeline::{
    ClusterShard, ClusterShardView, Context, SentinelShard, Step, Timeline, Window,
};

/// How many distinct master offsets are remembered per master to date a
/// replica's lag: 1024 polls cover 17 minutes of constant writes at 1 s.
const OFFSET_HISTORY: usize = 1024;

/// Raw sentinel events kept for the API.
const RECENT_EVENTS: usize = 1000;

/// A cluster failover with no end after this long is closed as timed out.
/// (Clusters publish no failover timeout; ten minutes is far beyond any
/// `cluster-node-timeout` in use.)
const CLUSTER_FAILOVER_LIMIT: f64 = 600.0;

/// A sentinel failover with no end after this long is closed as timed out
/// when the sentinels have not said their failover-timeout yet.
const DEFAULT_SENTINEL_LIMIT: f64 = 360.0;

/// Unix seconds, as timelines and the API show time.
pub fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Owns the state of every deployment.
pub struct Monitor {
    deployments: Vec<DeploymentState>,
    views: Vec<Arc<DeploymentView>>,
    failovers: Failovers,
    events: EventLog,
    /// What the last snapshot shared; rebuilt only when failovers or events change.
    shared_failovers: Arc<FailoverView>,
    failovers_dirty: bool,
    /// The alert rules.
    alerts: Engine,
    /// The latest time any batch carried: time never moves backwards.
    last_now: f64,
    /// What the last snapshot shared about alerts.
    shared_alerts: Arc<AlertsView>,
    /// Delivery counters, shared with every snapshot.
    deliveries: Arc<Deliveries>,
    /// Every target known at some moment had been polled. Latched: a newly
    /// discovered target does not make a serving agent unready.
    ready: bool,
}

impl Monitor {
    /// A monitor with nothing restored, for tests.
    #[cfg(test)]
    fn new_for_test(config: &Config) -> Self {
        Self::new(config, Vec::new(), Vec::new(), Arc::default())
    }

    /// Starts from the configured seeds and the timelines read back from
    /// disk: ended ones are listed, open ones resume where they were.
    /// `firing` is what alerts were firing when the agent stopped.
    pub fn new(
        config: &Config,
        restored: Vec<Timeline>,
        firing: Vec<Transition>,
        deliveries: Arc<Deliveries>,
    ) -> Self {
        let poll_interval = config.poll_interval.as_secs_f64();
        let mut deployments: Vec<DeploymentState> = config
            .deployments
            .iter()
            .map(|d| DeploymentState::new(d, poll_interval))
            .collect();
        let mut failovers = Failovers::new(config.timelines.keep_per_shard);
        let (open, ended): (Vec<Timeline>, Vec<Timeline>) =
            restored.into_iter().partition(Timeline::is_open);
        let restored_ended = ended.iter().map(|t| t.id.clone()).collect();
        failovers.restore(ended);
        for t in open {
            if let Some(d) = deployments
                .iter_mut()
                .find(|d| *d.name == *t.deployment && d.config.kind == t.kind)
            {
                d.resume(t);
            }
        }
        let views = deployments
            .iter_mut()
            .map(|d| Arc::new(d.derive(0.0)))
            .collect();
        let mut monitor = Monitor {
            deployments,
            views,
            failovers,
            events: EventLog::new(RECENT_EVENTS),
            shared_failovers: Arc::default(),
            failovers_dirty: true,
            alerts: Engine::new(&config.alerts, restored_ended, firing),
            last_now: 0.0,
            shared_alerts: Arc::default(),
            deliveries,
            ready: false,
        };
        monitor.share();
        monitor
    }

    /// Applies one input and derives what it changed.
    pub fn apply(&mut self, input: Input) {
        self.apply_all([input]);
    }

    /// Applies a batch of inputs in order, then derives each changed
    /// deployment once: a burst of polls costs one derivation, not one each.
    /// Inputs for targets that left the topology (a poller finishing its
    /// last poll) are ignored.
    pub fn apply_all(&mut self, inputs: impl IntoIterator<Item = Input>) {
        let mut latest = 0.0_f64;
        for input in inputs {
            let deployment = match &input {
                Input::Poll(o) => &o.target.deployment,
                Input::Event(e) => &e.target.deployment,
                Input::Subscription { target, .. } => &target.deployment,
                Input::Canary(report) => &report.deployment,
            };
            let Some(i) = self
                .deployments
                .iter()
                .position(|d| *d.name == **deployment)
            else {
                continue;
            };
            let d = &mut self.deployments[i];
            let changed = match input {
                Input::Poll(obs) => {
                    latest = latest.max(unix(obs.at));
                    d.apply(obs)
                }
                Input::Event(msg) => {
                    let now = unix(msg.at);
                    latest = latest.max(now);
                    match d.relevant(&msg) {
                        Some(event) => {
                            let first = self.events.record(
                                &d.name,
                                &msg.target.addr,
                                &msg.channel,
                                &msg.payload,
                                now,
                            );
                            self.failovers_dirty = true;
                            d.on_event(&event, &msg.target.addr, first, now);
                            true
                        }
                        None => false,
                    }
                }
                Input::Subscription { target, up } => d.on_subscription(&target, up),
                Input::Canary(report) => {
                    latest = latest.max(unix(report.at));
                    d.on_canary(report)
                }
            };
            d.dirty |= changed;
        }
        let now = if latest > 0.0 {
            latest
        } else {
            unix(SystemTime::now())
        };
        // A batch holding only a slow poll must not move time backwards.
        let now = now.max(self.last_now);
        self.last_now = now;
        for (i, d) in self.deployments.iter_mut().enumerate() {
            let canaries = std::mem::take(&mut d.canaries_changed);
            if std::mem::take(&mut d.dirty) {
                self.views[i] = Arc::new(d.derive(now));
            } else if canaries {
                // Canary reports arrive per shard, spread over the interval:
                // they replace the canary part of the view, nothing else.
                let mut view = (*self.views[i]).clone();
                view.canaries = d.canary_views(&view.shards);
                self.views[i] = Arc::new(view);
            } else {
                continue;
            }
            for effect in d.effects.drain(..) {
                self.failovers_dirty = true;
                match effect {
                    Effect::Changed(t) => self.failovers.changed(&t),
                    Effect::Closed(t) => self.failovers.closed(t),
                    Effect::Amend { shard, amendment } => {
                        self.failovers
                            .amend_latest(&d.name, &shard, |t| amendment.apply(t))
                    }
                }
            }
        }
        self.ready |= self
            .views
            .iter()
            .all(|d| d.targets.iter().all(|t| t.polled));
        self.share();
        let snapshot = self.snapshot();
        if self.alerts.evaluate(&snapshot, now) || self.shared_alerts.rules.is_empty() {
            self.shared_alerts = Arc::new(AlertsView {
                firing: self.alerts.firing(),
                rules: self.alerts.rules().collect(),
            });
        }
    }

    /// Alert transitions since the last call, to notify.
    pub fn take_transitions(&mut self) -> Vec<Transition> {
        self.alerts.take_transitions()
    }

    /// Timelines to append to the store since the last call.
    pub fn take_changed_timelines(&mut self) -> Vec<Timeline> {
        self.failovers.take_changed()
    }

    /// Rebuilds what snapshots share about failovers and events, if they changed.
    fn share(&mut self) {
        if !self.failovers_dirty {
            return;
        }
        self.failovers_dirty = false;
        let mut timelines: Vec<Timeline> = self
            .deployments
            .iter()
            .flat_map(|d| d.open_timelines())
            .cloned()
            .collect();
        timelines.sort_by(|a, b| {
            b.started()
                .partial_cmp(&a.started())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        timelines.extend(self.failovers.ended().cloned());
        let mut last_ended = HashMap::new();
        for (i, t) in timelines.iter().enumerate().filter(|(_, t)| !t.is_open()) {
            last_ended
                .entry((t.deployment.clone(), t.shard.clone()))
                .or_insert(i);
        }
        self.shared_failovers = Arc::new(FailoverView {
            last_ended,
            timelines,
            totals: self.failovers.totals.clone(),
            phases: self.failovers.phases.clone(),
            events: self.events.recent().cloned().collect(),
        });
    }

    /// The current picture.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            ready: self.ready,
            deployments: self.views.clone(),
            failovers: self.shared_failovers.clone(),
            alerts: self.shared_alerts.clone(),
            deliveries: self.deliveries.clone(),
            rendered: Default::default(),
        }
    }
}

/// Where the monitor hands what must outlive it.
#[derive(Debug, Default)]
pub struct Outputs {
    /// Changed timelines, for the timeline file.
    pub timelines: Option<mpsc::UnboundedSender<Vec<Timeline>>>,
    /// Alert transitions, for the receivers.
    pub transitions: Option<mpsc::UnboundedSender<Vec<Transition>>>,
}

/// Runs the monitor until every sender is gone: applies every input
/// waiting, then hands alert transitions on (first: they are what pages
/// someone), publishes one snapshot for the batch and hands changed
/// timelines on.
pub async fn run(
    mut monitor: Monitor,
    mut rx: mpsc::Receiver<Input>,
    tx: watch::Sender<Arc<Snapshot>>,
    outputs: Outputs,
) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 256).await > 0 {
        monitor.apply_all(batch.drain(..));
        let transitions = monitor.take_transitions();
        if let (Some(n), false) = (&outputs.transitions, transitions.is_empty()) {
            let _ = n.send(transitions);
        }
        tx.send_replace(Arc::new(monitor.snapshot()));
        let changed = monitor.take_changed_timelines();
        if let (Some(p), false) = (&outputs.timelines, changed.is_empty()) {
            let _ = p.send(changed);
        }
    }
}

/// What a deployment's failover machines produced, for the monitor to record.
#[derive(Debug)]
enum Effect {
    Changed(Timeline),
    Closed(Timeline),
    /// For the shard's latest ended timeline: no timeline of it is open.
    Amend {
        shard: String,
        amendment: Amendment,
    },
}

/// What is learnt about a failover from outside its state machine, possibly
/// after it ended.
#[derive(Debug)]
enum Amendment {
    /// The old master came back still claiming role master.
    TwoMasters(Window),
    /// The canary's writes failed or were lost during it.
    Canary(Box<Episode>),
}

impl Amendment {
    /// Records it on `t`; false when it does not belong there (a canary
    /// episode outside the failover).
    fn apply(&self, t: &mut Timeline) -> bool {
        match self {
            Amendment::TwoMasters(window) => {
                t.two_masters = Some(window.clone());
                true
            }
            Amendment::Canary(episode) => {
                let belongs = Impact::overlaps(episode, t);
                if belongs {
                    Impact::add(t, episode);
                }
                belongs
            }
        }
    }
}

#[derive(Debug, Default)]
struct TargetState {
    seed: bool,
    polled: bool,
    up: bool,
    failures: u64,
    last_duration: Option<std::time::Duration>,
    last_poll: Option<std::time::SystemTime>,
    /// When the last successful poll finished.
    last_success: Option<SystemTime>,
    /// The last successful reading; stale while `up` is false.
    reading: Option<Reading>,
}

impl TargetState {
    fn fresh(&self) -> Option<&Reading> {
        self.reading.as_ref().filter(|_| self.up)
    }
}

/// A master's replication offset over time, to tell how old the oldest
/// write a replica lacks is.
#[derive(Debug)]
struct OffsetHistory {
    samples: VecDeque<(Instant, u64)>,
    latest: Instant,
}

impl OffsetHistory {
    fn new(at: Instant) -> Self {
        OffsetHistory {
            samples: VecDeque::new(),
            latest: at,
        }
    }

    fn record(&mut self, at: Instant, offset: u64) {
        self.latest = at;
        match self.samples.back() {
            Some(&(_, last)) if last == offset => return,
            // A restarted master starts a new stream: the old one says nothing.
            Some(&(_, last)) if offset < last => self.samples.clear(),
            _ => {}
        }
        self.samples.push_back((at, offset));
        if self.samples.len() > OFFSET_HISTORY {
            self.samples.pop_front();
        }
    }

    /// Seconds since the master first reported an offset beyond `offset`
    /// (a lower bound, exact to one poll interval); 0 when caught up.
    fn age_of(&self, offset: u64) -> f64 {
        self.samples
            .iter()
            .find(|&&(_, o)| o > offset)
            .map_or(0.0, |&(t, _)| {
                self.latest.saturating_duration_since(t).as_secs_f64()
            })
    }
}

struct DeploymentState {
    config: Deployment,
    name: Arc<str>,
    targets: BTreeMap<(TargetRole, String), TargetState>,
    histories: HashMap<String, OffsetHistory>,
    /// Cluster shard label of each node id: kept across derivations so a
    /// shard keeps its name through failovers.
    shard_labels: HashMap<String, String>,
    /// Failover machines of sentinel shards, by master name.
    sentinel_shards: BTreeMap<String, SentinelShard>,
    /// Failover machines of cluster shards, by shard name.
    cluster_shards: BTreeMap<String, ClusterShard>,
    /// Failover timeout x 2 of each sentinel shard, in seconds, as the sentinels report it.
    failover_limits: HashMap<String, f64>,
    /// Event subscription state per sentinel.
    subscriptions: BTreeMap<String, bool>,
    /// Sentinel events counted once each, by (shard, event).
    events_total: BTreeMap<(String, String), u64>,
    /// Shards where more than one node reports role master, since when.
    two_masters: HashMap<String, Window>,
    /// What the failover machines produced since the monitor last looked.
    effects: Vec<Effect>,
    /// The poll interval in seconds: the resolution of cluster timelines.
    poll_interval: f64,
    /// Changed since the last derivation.
    dirty: bool,
    /// The canary's view of each probed shard, by shard.
    canaries: BTreeMap<String, CanaryView>,
    /// A canary report arrived since the last snapshot.
    canaries_changed: bool,
    /// When each open (migrating/importing) slot was first seen, by (node,
    /// slot, state). A cell: it is updated while the readings are borrowed.
    open_since: std::cell::RefCell<HashMap<(String, u16, &'static str), f64>>,
}

/// The nodes of one shard and whom to measure them against.
struct ShardMembers {
    name: String,
    master: Option<String>,
    nodes: BTreeSet<String>,
    sentinel: Option<SentinelShardView>,
    /// For cluster shards: what the views say about who serves its slots.
    cluster: Option<ClusterShardView>,
}

impl DeploymentState {
    fn new(config: &Deployment, poll_interval: f64) -> Self {
        let role = match config.kind {
            Kind::Sentinel => TargetRole::Sentinel,
            Kind::Cluster => TargetRole::Node,
        };
        let targets = config
            .seeds
            .iter()
            .map(|s| {
                let state = TargetState {
                    seed: true,
                    ..Default::default()
                };
                ((role, s.clone()), state)
            })
            .collect();
        DeploymentState {
            config: config.clone(),
            name: config.name.as_str().into(),
            targets,
            histories: HashMap::new(),
            shard_labels: HashMap::new(),
            sentinel_shards: BTreeMap::new(),
            cluster_shards: BTreeMap::new(),
            failover_limits: HashMap::new(),
            subscriptions: BTreeMap::new(),
            events_total: BTreeMap::new(),
            two_masters: HashMap::new(),
            effects: Vec::new(),
            poll_interval,
            dirty: false,
            canaries: BTreeMap::new(),
            canaries_changed: false,
            open_since: Default::default(),
        }
    }

    /// Puts a timeline read back from disk into its shard's machine.
    fn resume(&mut self, t: Timeline) {
        match self.config.kind {
            Kind::Sentinel => {
                let shard = t.shard.clone();
                self.sentinel_shards.entry(shard).or_default().open = Some(t);
            }
            Kind::Cluster => {
                let machine = self.cluster_shards.entry(t.shard.clone()).or_default();
                // The old master is known by address only; its id is
                // learnt again from the views.
                machine.resume(t);
            }
        }
    }

    fn open_timelines(&self) -> impl Iterator<Item = &Timeline> {
        let sentinel = self
            .sentinel_shards
            .values()
            .filter_map(|m| m.open.as_ref());
        let cluster = self.cluster_shards.values().filter_map(|m| m.open.as_ref());
        sentinel.chain(cluster)
    }

    fn on_subscription(&mut self, target: &TargetId, up: bool) -> bool {
        if !self
            .targets
            .contains_key(&(target.role, target.addr.clone()))
        {
            return false;
        }
        self.subscriptions.insert(target.addr.clone(), up);
        true
    }

    /// The parsed event, if it comes from a followed sentinel and concerns
    /// a watched master (or no master at all).
    fn relevant(&self, msg: &EventMessage) -> Option<Event> {
        if !self
            .targets
            .contains_key(&(TargetRole::Sentinel, msg.target.addr.clone()))
        {
            return None;
        }
        let event = Event::parse(&msg.channel, &msg.payload);
        match event.master_name() {
            Some(m) if !self.config.watches_master(m) => None,
            _ => Some(event),
        }
    }

    /// The canary views of the shards that exist now.
    fn canary_views(&self, shards: &[ShardView]) -> Vec<CanaryView> {
        self.canaries
            .values()
            .filter(|c| shards.iter().any(|s| s.name == c.shard))
            .cloned()
            .collect()
    }

    /// Applies a canary probe's report: its status to the shard's canary
    /// view, an episode to the histograms and to the failover it overlaps.
    /// Returns false: only the canary part of the view changed
    /// (`canaries_changed`), no derivation is needed.
    fn on_canary(&mut self, report: Report) -> bool {
        self.canaries_changed = true;
        let canary = self
            .canaries
            .entry(report.shard.clone())
            .or_insert_with(|| CanaryView {
                shard: report.shard.clone(),
                status: Status::default(),
                latency: Histogram::new(LATENCY_BUCKETS),
                unavailable: Histogram::default(),
                lost_writes: 0,
            });
        match report.kind {
            ReportKind::Status(mut status) => {
                for l in std::mem::take(&mut status.latencies) {
                    canary.latency.observe(l);
                }
                canary.status = status;
            }
            ReportKind::Episode(episode) => {
                canary.unavailable.observe(episode.unavailable_seconds());
                canary.lost_writes += episode.lost_total;
                self.amend(&report.shard, Amendment::Canary(episode));
            }
        }
        false
    }

    /// Applies one sentinel event: counted if `first` (no other sentinel
    /// published it just before), then fed to its shard's failover machine.
    fn on_event(&mut self, event: &Event, reporter: &str, first: bool, now: f64) {
        let shard = event.master_name().map(String::from);
        if first {
            let key = (shard.clone().unwrap_or_default(), event.channel.clone());
            *self.events_total.entry(key).or_default() += 1;
        }
        // Events without a master (+new-epoch, +vote-for-leader) belong to
        // whichever failovers are open.
        let shards: Vec<String> = match shard {
            Some(s) => vec![s],
            None => self
                .sentinel_shards
                .iter()
                .filter(|(_, m)| m.open.is_some())
                .map(|(s, _)| s.clone())
                .collect(),
        };
        for shard in shards {
            let ctx = Context {
                deployment: &self.name,
                shard: &shard,
                at: now,
                reporter,
            };
            let step = self
                .sentinel_shards
                .entry(shard.clone())
                .or_default()
                .on_event(event, &ctx);
            self.record_step(&shard, step);
        }
    }

    /// The open timeline of a shard, of whichever kind this deployment is.
    fn open_mut(&mut self, shard: &str) -> Option<&mut Timeline> {
        match self.config.kind {
            Kind::Sentinel => self.sentinel_shards.get_mut(shard)?.open.as_mut(),
            Kind::Cluster => self.cluster_shards.get_mut(shard)?.open.as_mut(),
        }
    }

    /// Completes what a machine step produced with what the polls know
    /// (last_ok, writes at risk) and queues it for the monitor.
    fn record_step(&mut self, shard: &str, step: Step) {
        match step {
            Step::Unchanged | Step::Dropped => {}
            Step::Changed => {
                let Some(mut t) = self.open_mut(shard).map(|t| t.clone()) else {
                    return;
                };
                self.enrich(&mut t);
                self.effects.push(Effect::Changed(t.clone()));
                if let Some(open) = self.open_mut(shard) {
                    *open = t;
                }
            }
            Step::Closed(mut t) => {
                self.enrich(&mut t);
                self.effects.push(Effect::Closed(*t));
            }
        }
    }

    /// Adds what only polls can tell: when the old master last answered
    /// (`last_ok`), and the bytes the new master lacked when promoted.
    fn enrich(&self, t: &mut Timeline) {
        let switched = t.at("switched").or_else(|| t.at("promoted"));
        let (Some(_), Some(old)) = (switched, t.old_master.clone()) else {
            return;
        };
        if t.at("last_ok").is_none() {
            if let Some(ok) = self
                .targets
                .get(&(TargetRole::Node, old.clone()))
                .and_then(|s| s.last_success)
            {
                t.mark("last_ok", unix(ok), "poll");
            }
        }
        if t.unreplicated_bytes.is_none() {
            if let Some(new) = t.new_master.clone() {
                t.unreplicated_bytes = self.unreplicated(&old, &new);
            }
        }
    }

    /// The old master's last seen offset minus the promoted replica's last
    /// seen offset (as a replica, or as its master last listed it).
    fn unreplicated(&self, old: &str, new: &str) -> Option<u64> {
        let (old_reading, _) = self.node_reading(old);
        let old_reading = old_reading?;
        let master_offset = old_reading.replication.master_repl_offset;
        let listed = old_reading
            .replication
            .replicas
            .iter()
            .find(|r| r.addr == new)
            .map(|r| r.offset);
        let own = match self.node_reading(new).0.map(|r| &r.replication) {
            Some(r) if r.role == Role::Replica => r.upstream.as_ref().map(|u| u.offset),
            Some(r) => Some(r.master_repl_offset),
            None => None,
        };
        let best = own.max(listed)?;
        Some(master_offset.saturating_sub(best))
    }

    /// Records one observation; false if its target is no longer followed.
    fn apply(&mut self, obs: Observation) -> bool {
        let key = (obs.target.role, obs.target.addr);
        let Some(state) = self.targets.get_mut(&key) else {
            return false;
        };
        state.polled = true;
        state.last_duration = Some(obs.duration);
        state.last_poll = Some(obs.at);
        match obs.result {
            Ok(reading) => {
                if let Reading::Node(n) = &reading {
                    if n.replication.role == Role::Master {
                        self.histories
                            .entry(key.1.clone())
                            .or_insert_with(|| OffsetHistory::new(obs.seen))
                            .record(obs.seen, n.replication.master_repl_offset);
                    }
                }
                if let Reading::Sentinel(r) = &reading {
                    for (name, view) in &r.masters {
                        let flags = &view.master.flags;
                        let m = self.sentinel_shards.entry(name.clone()).or_default();
                        m.seen_by(&key.1, flags.has("s_down"), flags.has("o_down"));
                        let limit = 2.0 * view.master.failover_timeout_ms as f64 / 1000.0;
                        self.failover_limits.insert(name.clone(), limit);
                    }
                }
                state.up = true;
                state.last_success = Some(obs.at);
                state.reading = Some(reading);
            }
            Err(_) => {
                state.up = false;
                state.failures += 1;
                if key.0 == TargetRole::Sentinel {
                    // Its view is unknown now: it no longer counts as seeing anything.
                    for m in self.sentinel_shards.values_mut() {
                        m.seen_by(&key.1, false, false);
                    }
                }
            }
        }
        true
    }

    /// Derives the view, and follows the topology: targets that appeared are
    /// added (unpolled), targets that left are dropped with their state.
    fn derive(&mut self, now: f64) -> DeploymentView {
        let (members_by_shard, mut cluster, members) = match self.config.kind {
            Kind::Sentinel => self.derive_sentinel(),
            Kind::Cluster => self.derive_cluster(now),
        };
        self.follow(&members);
        if !members_by_shard.is_empty() {
            // Nothing known (no reading yet) is no evidence that a shard is gone.
            self.forget_shards(&members_by_shard.iter().map(|m| m.name.clone()).collect());
        }
        let cluster_views: Vec<(String, ClusterShardView)> = members_by_shard
            .iter()
            .filter_map(|m| Some((m.name.clone(), m.cluster.clone()?)))
            .collect();
        let mut shards: Vec<ShardView> = members_by_shard
            .into_iter()
            .map(|m| self.shard_view(m))
            .collect();
        if now > 0.0 {
            self.advance(now, &shards, cluster_views);
        }
        if let Some(sv) = cluster.as_mut().and_then(|c| c.slots.as_mut()) {
            let owns_slots = |name: &str| sv.shard_slots.iter().any(|(n, c)| n == name && *c > 0);
            sv.shards_without_replica = shards
                .iter()
                .filter(|sh| owns_slots(&sh.name) && sh.replicas_healthy == 0)
                .count() as u32;
        }
        for shard in &mut shards {
            if let (Some(sv), Some(m)) =
                (&mut shard.sentinel, self.sentinel_shards.get(&shard.name))
            {
                // Events move these between polls; polls resync them.
                sv.sdown = m.sdown.len() as u32;
                sv.odown = !m.odown.is_empty();
            }
            shard.failover_in_progress = self
                .sentinel_shards
                .get(&shard.name)
                .is_some_and(|m| m.open.is_some())
                || self
                    .cluster_shards
                    .get(&shard.name)
                    .is_some_and(|m| m.open.is_some());
        }
        let targets = self
            .targets
            .iter()
            .map(|((role, addr), s)| TargetView {
                id: TargetId {
                    deployment: self.name.clone(),
                    role: *role,
                    addr: addr.clone(),
                },
                exported: members.contains(&(*role, addr.clone())),
                polled: s.polled,
                up: s.up,
                last_duration: s.last_duration,
                last_poll: s.last_poll,
                failures: s.failures,
                tilt: match &s.reading {
                    Some(Reading::Sentinel(r)) => Some(r.info.tilt),
                    _ => None,
                },
            })
            .collect();
        let subscriptions = self
            .subscriptions
            .iter()
            .filter(|(addr, _)| {
                self.targets
                    .contains_key(&(TargetRole::Sentinel, (*addr).clone()))
            })
            .map(|(a, up)| (a.clone(), *up))
            .collect();
        let canaries = self.canary_views(&shards);
        DeploymentView {
            name: self.name.clone(),
            kind: self.config.kind,
            targets,
            shards,
            cluster,
            subscriptions,
            events_total: self
                .events_total
                .iter()
                .map(|((s, e), n)| (s.clone(), e.clone(), *n))
                .collect(),
            canaries,
        }
    }

    /// Moves the failover machines on with what the polls show: settled
    /// sentinel masters, cluster views, timeouts, and two-master windows.
    fn advance(
        &mut self,
        now: f64,
        shards: &[ShardView],
        cluster_views: Vec<(String, ClusterShardView)>,
    ) {
        let kind = self.config.kind;
        match kind {
            Kind::Sentinel => {
                for shard in shards {
                    let name = &shard.name;
                    let limit = self
                        .failover_limits
                        .get(name)
                        .copied()
                        .unwrap_or(DEFAULT_SENTINEL_LIMIT);
                    let settled = shard
                        .sentinel
                        .as_ref()
                        .filter(|sv| sv.agreement && !self.failover_flagged(name))
                        .and_then(|sv| sv.master_addr.clone());
                    let Some(machine) = self.sentinel_shards.get_mut(name) else {
                        continue;
                    };
                    let mut steps = vec![machine.on_tick(now, limit)];
                    if let Some(master) = settled {
                        steps.push(machine.on_settled(&master, now));
                    }
                    for step in steps {
                        self.record_step(name, step);
                    }
                }
            }
            Kind::Cluster => {
                let current: BTreeSet<String> =
                    cluster_views.iter().map(|(n, _)| n.clone()).collect();
                self.cluster_shards
                    .retain(|name, m| current.contains(name) || m.open.is_some());
                for (name, view) in cluster_views {
                    let machine = self.cluster_shards.entry(name.clone()).or_default();
                    let ctx = Context {
                        deployment: &self.name,
                        shard: &name,
                        at: now,
                        reporter: "poll",
                    };
                    let steps = [
                        machine.on_view(&view, &ctx, self.poll_interval),
                        machine.on_tick(now, CLUSTER_FAILOVER_LIMIT),
                    ];
                    for step in steps {
                        self.record_step(&name, step);
                    }
                }
            }
        }
        for shard in shards {
            let masters: Vec<String> = shard
                .nodes
                .iter()
                .filter(|n| n.role == Some(Role::Master))
                .map(|n| n.addr.clone())
                .collect();
            let window = if masters.len() > 1 && !self.two_masters.contains_key(&shard.name) {
                let w = Window {
                    start: now,
                    end: None,
                    nodes: masters,
                };
                self.two_masters.insert(shard.name.clone(), w.clone());
                w
            } else if masters.len() <= 1 && self.two_masters.contains_key(&shard.name) {
                let mut w = self.two_masters.remove(&shard.name).expect("present");
                w.end = Some(now);
                w
            } else {
                continue;
            };
            self.amend(&shard.name, Amendment::TwoMasters(window));
        }
    }

    /// Records an amendment on the shard's open timeline, or else on its
    /// latest ended one.
    fn amend(&mut self, shard: &str, amendment: Amendment) {
        match self.open_mut(shard) {
            Some(t) => {
                if amendment.apply(t) {
                    let t = t.clone();
                    self.effects.push(Effect::Changed(t));
                }
            }
            None => self.effects.push(Effect::Amend {
                shard: shard.to_string(),
                amendment,
            }),
        }
    }

    /// Whether a reachable sentinel flags a failover of this master in progress.
    fn failover_flagged(&self, shard: &str) -> bool {
        self.targets.values().any(|s| match s.fresh() {
            Some(Reading::Sentinel(r)) => r
                .masters
                .get(shard)
                .is_some_and(|v| v.master.flags.has("failover_in_progress")),
            _ => false,
        })
    }

    /// Makes the target set equal to the members plus the seeds.
    /// Everything kept about a target that left goes with it: its offset
    /// history, its subscription, its part in the shards' down counts.
    fn follow(&mut self, members: &BTreeSet<(TargetRole, String)>) {
        let gone: Vec<(TargetRole, String)> = self
            .targets
            .iter()
            .filter(|(key, s)| !s.seed && !members.contains(*key))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &gone {
            self.targets.remove(key);
            match key.0 {
                TargetRole::Node => {
                    self.histories.remove(&key.1);
                }
                TargetRole::Sentinel => {
                    self.subscriptions.remove(&key.1);
                    for m in self.sentinel_shards.values_mut() {
                        m.seen_by(&key.1, false, false);
                    }
                }
            }
        }
        for key in members {
            self.targets.entry(key.clone()).or_default();
        }
    }

    /// Forgets shards that are gone (a master no sentinel lists any more, a
    /// cluster shard without nodes) unless a failover of theirs is open.
    fn forget_shards(&mut self, current: &BTreeSet<String>) {
        self.sentinel_shards
            .retain(|name, m| current.contains(name) || m.open.is_some());
        self.cluster_shards
            .retain(|name, m| current.contains(name) || m.open.is_some());
        self.failover_limits
            .retain(|name, _| current.contains(name));
        self.two_masters.retain(|name, _| current.contains(name));
        self.canaries.retain(|name, _| current.contains(name));
    }

    /// Readings of one kind: the fresh ones, or if no target of that kind
    /// answered its last poll, the last known ones, so that a moment in
    /// which nothing answers does not erase the topology.
    fn readings<'a, T>(
        &'a self,
        pick: impl Fn(&'a Reading) -> Option<&'a T>,
    ) -> Vec<(&'a str, &'a T)> {
        let all = |fresh_only: bool| -> Vec<(&'a str, &'a T)> {
            self.targets
                .iter()
                .filter(|(_, s)| s.up || !fresh_only)
                .filter_map(|((_, addr), s)| Some((addr.as_str(), pick(s.reading.as_ref()?)?)))
                .collect()
        };
        let fresh = all(true);
        if fresh.is_empty() {
            all(false)
        } else {
            fresh
        }
    }

    fn derive_sentinel(
        &self,
    ) -> (
        Vec<ShardMembers>,
        Option<ClusterView>,
        BTreeSet<(TargetRole, String)>,
    ) {
        let readings: Vec<(&str, &SentinelReading)> = self.readings(|r| match r {
            Reading::Sentinel(s) => Some(s),
            Reading::Node(_) => None,
        });
        let mut members: BTreeSet<(TargetRole, String)> = self
            .config
            .seeds
            .iter()
            .map(|s| (TargetRole::Sentinel, s.clone()))
            .collect();
        let mut shards: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for (_, reading) in &readings {
            for (name, view) in reading
                .masters
                .iter()
                .filter(|(n, _)| self.config.watches_master(n))
            {
                let nodes = shards.entry(name.as_str()).or_default();
                nodes.insert(view.master.addr.clone());
                nodes.extend(view.replicas.iter().map(|r| r.addr.clone()));
                members.extend(
                    view.sentinels
                        .iter()
                        .map(|s| (TargetRole::Sentinel, s.addr.clone())),
                );
            }
        }
        for nodes in shards.values() {
            members.extend(nodes.iter().map(|n| (TargetRole::Node, n.clone())));
        }
        let fresh: Vec<&SentinelReading> = self
            .targets
            .iter()
            .filter(|((role, _), _)| *role == TargetRole::Sentinel)
            .filter_map(|(_, s)| match s.fresh() {
                Some(Reading::Sentinel(r)) => Some(r),
                _ => None,
            })
            .collect();
        let shards = shards
            .into_iter()
            .map(|(name, nodes)| {
                let sentinel = sentinel_consensus(fresh.iter().filter_map(|r| r.masters.get(name)));
                ShardMembers {
                    name: name.to_string(),
                    master: sentinel.master_addr.clone(),
                    nodes,
                    sentinel: Some(sentinel),
                    cluster: None,
                }
            })
            .collect();
        (shards, None, members)
    }

    fn derive_cluster(
        &mut self,
        now: f64,
    ) -> (
        Vec<ShardMembers>,
        Option<ClusterView>,
        BTreeSet<(TargetRole, String)>,
    ) {
        let views: Vec<(&str, &ClusterReading)> = self.readings(|r| match r {
            Reading::Node(NodeReading {
                cluster: Some(c), ..
            }) => Some(c),
            _ => None,
        });
        // A node is a member when another node lists it, or when it answers
        // and every node it lists that answers lists it back: a node removed
        // from the cluster may still list the others, but they deny it.
        let listed: Vec<BTreeSet<&str>> = views
            .iter()
            .map(|(_, v)| {
                v.nodes
                    .iter()
                    .filter(|l| l.is_member())
                    .map(|l| l.addr.as_str())
                    .collect()
            })
            .collect();
        let mut member_addrs = BTreeSet::new();
        for (i, (owner, _)) in views.iter().enumerate() {
            member_addrs.extend(
                listed[i]
                    .iter()
                    .filter(|a| *a != owner)
                    .map(|a| a.to_string()),
            );
            let denied = views.iter().enumerate().any(|(j, (other, _))| {
                other != owner && listed[i].contains(other) && !listed[j].contains(owner)
            });
            if !denied {
                member_addrs.insert(owner.to_string());
            }
        }
        if views.is_empty() {
            // Nothing answered yet: the seeds are all the agent knows.
            member_addrs.extend(self.config.seeds.iter().cloned());
        }
        let member_views: Vec<(&str, &ClusterReading)> = views
            .into_iter()
            .filter(|(a, _)| member_addrs.contains(*a))
            .collect();

        // One line per node id: its own `myself` line where it answered,
        // else what the first member that lists it says.
        let mut table: BTreeMap<&str, &ClusterNode> = BTreeMap::new();
        for (_, view) in &member_views {
            for line in view
                .nodes
                .iter()
                .filter(|l| l.is_member() && member_addrs.contains(&l.addr))
            {
                let slot = table.entry(line.id.as_str()).or_insert(line);
                // A node's own line wins; for a node that did not answer, the
                // line with the newest config (highest epoch) wins over stale ones.
                if line.flags.myself
                    || (!slot.flags.myself && line.config_epoch > slot.config_epoch)
                {
                    *slot = line;
                }
            }
        }

        let labels = shard_labels(&table, &self.shard_labels);
        let mut groups: BTreeMap<String, Vec<&ClusterNode>> = BTreeMap::new();
        for (id, line) in &table {
            groups.entry(labels[*id].clone()).or_default().push(line);
        }
        let fresh_named: Vec<(&str, &ClusterReading)> = member_views
            .iter()
            .filter(|(a, _)| {
                self.targets
                    .get(&(TargetRole::Node, a.to_string()))
                    .is_some_and(|s| s.up)
            })
            .copied()
            .collect();
        let fresh: Vec<&ClusterReading> = fresh_named.iter().map(|(_, v)| *v).collect();
        // Each answering view by node id, built once for every shard's lookups.
        let indexed: Vec<HashMap<&str, &ClusterNode>> = fresh
            .iter()
            .map(|v| v.nodes.iter().map(|l| (l.id.as_str(), l)).collect())
            .collect();
        let shards = groups
            .into_iter()
            .map(|(name, lines)| {
                let master = lines
                    .iter()
                    .filter(|l| l.flags.master)
                    .max_by_key(|l| {
                        (
                            self.reports_role(&l.addr, Role::Master),
                            l.config_epoch,
                            !l.flags.fail,
                        )
                    })
                    .map(|l| l.addr.clone());
                let settled = self
                    .cluster_shards
                    .get(&name)
                    .and_then(|m| m.master.as_ref());
                let cluster = cluster_shard_view(&indexed, &lines, settled, now);
                ShardMembers {
                    name,
                    master,
                    nodes: lines.iter().map(|l| l.addr.clone()).collect(),
                    sentinel: None,
                    cluster: Some(cluster),
                }
            })
            .collect();

        let mut cluster = cluster_consensus(&fresh, &table);
        if !fresh.is_empty() {
            let mut slots = slot_view(
                &fresh_named,
                &table,
                &labels,
                &mut self.open_since.borrow_mut(),
                now,
            );
            slots.shards_same_host = same_host_shards(&table, &labels);
            cluster.slots = Some(slots);
        }
        self.shard_labels = labels;
        let members = member_addrs
            .into_iter()
            .map(|a| (TargetRole::Node, a))
            .collect();
        (shards, Some(cluster), members)
    }

    fn node_reading(&self, addr: &str) -> (Option<&NodeReading>, bool) {
        match self.targets.get(&(TargetRole::Node, addr.to_string())) {
            Some(TargetState {
                reading: Some(Reading::Node(r)),
                up,
                ..
            }) => (Some(r), *up),
            _ => (None, false),
        }
    }

    fn reports_role(&self, addr: &str, role: Role) -> bool {
        matches!(self.node_reading(addr), (Some(r), true) if r.replication.role == role)
    }

    /// Replication figures of one shard, measured against `members.master`.
    fn shard_view(&self, members: ShardMembers) -> ShardView {
        let master = members
            .master
            .as_deref()
            .and_then(|m| match self.node_reading(m) {
                (Some(r), true) if r.replication.role == Role::Master => Some((m, r)),
                _ => None,
            });
        let master_offset = master.map(|(_, r)| r.replication.master_repl_offset);
        let nodes: Vec<NodeView> = members
            .nodes
            .iter()
            .map(|addr| {
                let (reading, up) = self.node_reading(addr);
                let role = reading.filter(|_| up).map(|r| r.replication.role);
                let listed = master
                    .and_then(|(_, m)| m.replication.replicas.iter().find(|r| r.addr == *addr));
                let last_role = reading.map(|r| r.replication.role);
                let is_replica = Some(addr.as_str()) != master.map(|(m, _)| m)
                    && (last_role == Some(Role::Replica)
                        || (last_role.is_none() && listed.is_some()));
                let replica = is_replica.then(|| {
                    let own = reading.and_then(|r| r.replication.upstream.as_ref());
                    let best = own.map(|u| u.offset).max(listed.map(|l| l.offset));
                    let lag_bytes = master_offset.zip(best).map(|(m, b)| m.saturating_sub(b));
                    let lag_seconds = master
                        .zip(best)
                        .and_then(|((m, _), b)| Some(self.histories.get(m)?.age_of(b)));
                    ReplicaView {
                        lag_bytes,
                        lag_seconds,
                        ack_age_seconds: listed.and_then(|l| l.ack_age_seconds),
                        link: own.filter(|_| up).map(|u| LinkView {
                            up: u.link_up,
                            down_seconds: if u.link_up {
                                0
                            } else {
                                u.link_down_seconds.unwrap_or(0)
                            },
                            sync_in_progress: u.sync_in_progress,
                        }),
                    }
                });
                NodeView {
                    addr: addr.clone(),
                    role,
                    replica,
                }
            })
            .collect();
        let masters = nodes
            .iter()
            .filter(|n| n.role == Some(Role::Master))
            .count() as u32;
        let replicas_healthy = nodes
            .iter()
            .filter(|n| n.role == Some(Role::Replica))
            .filter(|n| {
                n.replica
                    .as_ref()
                    .and_then(|r| r.link.as_ref())
                    .is_some_and(|l| l.up)
            })
            .count() as u32;
        ShardView {
            name: members.name,
            master: members.master,
            master_offset,
            masters,
            replicas_healthy,
            nodes,
            sentinel: members.sentinel,
            failover_in_progress: false,
        }
    }
}

/// What the reachable sentinels say together about one master. The master
/// they name is the one with the highest config epoch (a newer configuration
/// wins in Sentinel too), then the one most of them name.
fn sentinel_consensus<'a>(
    views: impl Iterator<Item = &'a crate::model::MasterView>,
) -> SentinelShardView {
    let views: Vec<_> = views.collect();
    let mut votes: BTreeMap<(u64, &str), (u32, u32)> = BTreeMap::new();
    for v in &views {
        let e = votes
            .entry((v.master.config_epoch, v.master.addr.as_str()))
            .or_default();
        e.0 += 1;
        e.1 = e.1.max(v.master.quorum);
    }
    let chosen = votes
        .iter()
        .max_by_key(|((epoch, addr), (count, _))| (*epoch, *count, std::cmp::Reverse(*addr)));
    SentinelShardView {
        master_addr: chosen.map(|((_, a), _)| a.to_string()),
        quorum: chosen.map_or(0, |(_, (_, q))| *q),
        reachable: views.len() as u32,
        quorum_ok: !views.is_empty() && views.iter().all(|v| v.quorum_ok),
        agreement: votes.len() == 1,
        config_epoch: views
            .iter()
            .map(|v| v.master.config_epoch)
            .max()
            .unwrap_or(0),
        sdown: views
            .iter()
            .filter(|v| v.master.flags.has("s_down"))
            .count() as u32,
        odown: views.iter().any(|v| v.master.flags.has("o_down")),
    }
}

/// What the answering views say about one cluster shard: who serves its
/// first slot, and whether they suspect the settled master.
fn cluster_shard_view(
    fresh: &[HashMap<&str, &ClusterNode>],
    lines: &[&ClusterNode],
    settled: Option<&(String, String)>,
    at: f64,
) -> ClusterShardView {
    let slot = lines.iter().flat_map(|l| l.slots.iter().map(|r| r.0)).min();
    let mut owners: BTreeMap<(&str, &str), (usize, u64)> = BTreeMap::new();
    let (mut pfail, mut fail) = (0, false);
    for view in fresh {
        if let Some(slot) = slot {
            // Only a node of this shard can take it over: the slot moving to
            // another shard is resharding, not a failover.
            let owner = lines
                .iter()
                .filter_map(|m| view.get(m.id.as_str()))
                .find(|l| l.flags.master && l.slots.iter().any(|r| r.0 <= slot && slot <= r.1));
            if let Some(o) = owner {
                let e = owners.entry((o.id.as_str(), o.addr.as_str())).or_default();
                e.0 += 1;
                e.1 = e.1.max(o.config_epoch);
            }
        }
        if let Some((id, addr)) = settled {
            let line = if id.is_empty() {
                view.values().find(|l| l.addr == *addr).copied()
            } else {
                view.get(id.as_str()).copied()
            };
            if let Some(l) = line {
                pfail += u32::from(l.flags.pfail);
                fail |= l.flags.fail;
            }
        }
    }
    // Most views, then the newest config.
    let top = owners.iter().max_by_key(|(_, (n, epoch))| (*n, *epoch));
    ClusterShardView {
        at,
        owner: top.map(|((id, addr), _)| (id.to_string(), addr.to_string())),
        pfail,
        fail,
        converged: owners.len() == 1 && top.is_some_and(|(_, (n, _))| *n == fresh.len()),
        epoch: top.map_or(0, |(_, (_, e))| *e),
    }
}

/// The merged slot map, agreement between the nodes' maps, and open slots.
/// `open_since` remembers when each open slot was first seen.
fn slot_view(
    views: &[(&str, &ClusterReading)],
    table: &BTreeMap<&str, &ClusterNode>,
    labels: &HashMap<String, String>,
    open_since: &mut HashMap<(String, u16, &'static str), f64>,
    now: f64,
) -> SlotsView {
    let addr_of = |id: &str| {
        table
            .get(id)
            .map_or_else(|| id.to_string(), |l| l.addr.clone())
    };
    // Health of each node id across the answering views.
    let mut health: HashMap<&str, (bool, bool)> = HashMap::new();
    for line in views.iter().flat_map(|(_, v)| &v.nodes) {
        let h = health.entry(line.id.as_str()).or_default();
        h.0 |= line.flags.pfail;
        h.1 |= line.flags.fail;
    }
    let merged = slots::owners(table.values().copied());
    let per_slot: Vec<(&'static str, Option<&str>)> = merged
        .iter()
        .map(|owner| match owner {
            None => ("uncovered", None),
            Some(id) => match health.get(id).copied().unwrap_or_default() {
                (_, true) => ("fail", Some(*id)),
                (true, false) => ("pfail", Some(*id)),
                _ => ("ok", Some(*id)),
            },
        })
        .collect();
    let uncovered_per_slot: Vec<bool> = per_slot
        .iter()
        .map(|(state, _)| matches!(*state, "uncovered" | "fail"))
        .collect();
    let mut shard_slots: BTreeMap<String, u32> = BTreeMap::new();
    for id in merged.iter().flatten() {
        if let Some(label) = labels.get(*id) {
            *shard_slots.entry(label.clone()).or_default() += 1;
        }
    }
    let ranges = slots::runs(&per_slot)
        .into_iter()
        .map(|(start, end, (state, owner))| SlotRangeView {
            start,
            end,
            state,
            shard: owner.and_then(|id| labels.get(id).cloned()),
            master: owner.map(addr_of),
        })
        .collect();

    let slices: Vec<(&str, &[ClusterNode])> = views
        .iter()
        .map(|(a, v)| (*a, v.nodes.as_slice()))
        .collect();
    let groups = slots::by_signature(&slices);
    let mut divergences = Vec::new();
    if let Some((_, majority)) = groups.first() {
        let reference = slices
            .iter()
            .find(|(a, _)| *a == majority[0])
            .map(|(_, v)| slots::owners(v.iter()))
            .unwrap_or_default();
        for (_, members) in groups.iter().skip(1) {
            for node in members {
                let view = slices
                    .iter()
                    .find(|(a, _)| a == node)
                    .map(|(_, v)| *v)
                    .unwrap_or_default();
                for (start, end, says, majority) in
                    slots::differences(&slots::owners(view.iter()), &reference)
                {
                    divergences.push(Divergence {
                        node: node.to_string(),
                        start,
                        end,
                        says: says.map(addr_of),
                        majority: majority.map(addr_of),
                    });
                }
            }
        }
    }

    let mut open = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (addr, view) in views {
        for line in view.nodes.iter().filter(|l| l.flags.myself) {
            let entries = line.migrating.iter().map(|(s, p)| (*s, p, "migrating"));
            let entries = entries.chain(line.importing.iter().map(|(s, p)| (*s, p, "importing")));
            for (slot, peer, state) in entries {
                let key = (addr.to_string(), slot, state);
                let since = *open_since.entry(key.clone()).or_insert(now);
                seen.insert(key);
                open.push(OpenSlot {
                    node: addr.to_string(),
                    slot,
                    state,
                    peer: addr_of(peer),
                    since,
                });
            }
        }
    }
    // Forget only what an answering node no longer reports: a node that
    // missed a poll keeps its slots' clocks.
    let answered: std::collections::HashSet<&str> = views.iter().map(|(a, _)| *a).collect();
    open_since.retain(|k, _| seen.contains(k) || !answered.contains(k.0.as_str()));

    SlotsView {
        ranges,
        uncovered: uncovered_per_slot.iter().filter(|u| **u).count() as u32,
        uncovered_ranges: slots::runs(&uncovered_per_slot)
            .iter()
            .filter(|(_, _, u)| *u)
            .count() as u32,
        shard_slots: shard_slots.into_iter().collect(),
        config_views: groups.len() as u32,
        divergences,
        open,
        shards_without_replica: 0,
        shards_same_host: 0,
    }
}

/// Shards with at least one replica whose master and replicas all share
/// one host (announced hostname, else IP): one machine failing loses them.
fn same_host_shards(table: &BTreeMap<&str, &ClusterNode>, labels: &HashMap<String, String>) -> u32 {
    let host = |l: &ClusterNode| {
        l.hostname.clone().unwrap_or_else(|| {
            crate::parse::split_addr(&l.addr).map_or_else(|| l.addr.clone(), |(h, _)| h.to_string())
        })
    };
    let mut hosts: BTreeMap<&str, (BTreeSet<String>, usize)> = BTreeMap::new();
    for line in table.values() {
        let Some(label) = labels.get(&line.id) else {
            continue;
        };
        let e = hosts.entry(label.as_str()).or_default();
        e.0.insert(host(line));
        e.1 += 1;
    }
    hosts
        .values()
        .filter(|(h, n)| *n > 1 && h.len() == 1)
        .count() as u32
}

/// Cluster-wide figures from the views of the reachable members.
fn cluster_consensus(
    views: &[&ClusterReading],
    table: &BTreeMap<&str, &ClusterNode>,
) -> ClusterView {
    if views.is_empty() {
        // Nobody answered: no view says anything, healthy or not.
        return ClusterView {
            state_ok: false,
            majority: None,
            current_epoch: 0,
            failing: Vec::new(),
            slots: None,
        };
    }
    let ok = views.iter().filter(|v| v.info.state_ok).count();
    let mut counts: Vec<(&crate::parse::cluster::ClusterInfo, usize)> = Vec::new();
    for v in views {
        let same = |i: &crate::parse::cluster::ClusterInfo| crate::parse::cluster::ClusterInfo {
            current_epoch: 0,
            ..i.clone()
        };
        match counts.iter_mut().find(|(i, _)| same(i) == same(&v.info)) {
            Some((_, n)) => *n += 1,
            None => counts.push((&v.info, 1)),
        }
    }
    // The first of the most common wins ties: views are in address order,
    // so the choice is stable from one snapshot to the next.
    let majority = counts
        .iter()
        .rev()
        .max_by_key(|(_, n)| *n)
        .map(|(i, _)| (*i).clone());
    // How many views flag each node id `fail?`, and whether any flags it `fail`.
    let mut flags: HashMap<&str, (u32, bool)> = HashMap::new();
    for line in views.iter().flat_map(|v| &v.nodes) {
        let e = flags.entry(line.id.as_str()).or_default();
        e.0 += u32::from(line.flags.pfail);
        e.1 |= line.flags.fail;
    }
    let failing = table
        .values()
        .map(|line| {
            let (pfail, fail) = flags.get(line.id.as_str()).copied().unwrap_or_default();
            FailingView {
                node: line.addr.clone(),
                pfail,
                fail,
            }
        })
        .collect();
    ClusterView {
        state_ok: ok * 2 > views.len(),
        majority,
        current_epoch: views
            .iter()
            .map(|v| v.info.current_epoch)
            .max()
            .unwrap_or(0),
        failing,
        slots: None,
    }
}

/// Names each node's shard so that the name survives failovers: a replica
/// takes its master's name, a master keeps the name it had (as a promoted
/// replica it had its old master's), and a new master is named after its id.
fn shard_labels(
    table: &BTreeMap<&str, &ClusterNode>,
    previous: &HashMap<String, String>,
) -> HashMap<String, String> {
    // The server's own shard id (Redis 7.2+) wins; else the name the shard
    // had, else the node's id.
    let own = |id: &str| {
        let shard_id = table.get(id).and_then(|l| l.shard_id.as_deref());
        match shard_id {
            Some(sid) => sid.chars().take(12).collect(),
            None => previous
                .get(id)
                .cloned()
                .unwrap_or_else(|| id.chars().take(12).collect()),
        }
    };
    let mut labels: HashMap<String, String> = table
        .values()
        .filter(|l| l.flags.master || l.master_id.is_none())
        .map(|l| (l.id.clone(), own(&l.id)))
        .collect();
    for line in table
        .values()
        .filter(|l| !(l.flags.master || l.master_id.is_none()))
    {
        let label = match line.shard_id {
            Some(_) => own(&line.id),
            None => line
                .master_id
                .as_deref()
                .and_then(|m| labels.get(m).cloned())
                .unwrap_or_else(|| own(&line.id)),
        };
        labels.insert(line.id.clone(), label);
    }
    labels
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::model::{MasterView, PollError};
    use crate::parse::cluster::{parse_nodes, ClusterInfo};
    use crate::parse::fixture;
    use crate::parse::info::{ReplicationInfo, SentinelInfo};
    use crate::parse::sentinel::tests::recorded_maps;
    use crate::parse::sentinel::{MasterEntry, ReplicaEntry, SentinelEntry};

    fn config(kind: &str, seed: &str) -> Config {
        let key = if kind == "sentinel" {
            "sentinels"
        } else {
            "seeds"
        };
        crate::config::parse(
            &format!("deployments:\n  - name: d\n    kind: {kind}\n    {key}: [\"{seed}\"]\n"),
            "t",
        )
        .unwrap()
    }

    fn obs(
        role: TargetRole,
        addr: &str,
        seen: Instant,
        result: Result<Reading, PollError>,
    ) -> Input {
        Input::Poll(Observation {
            target: TargetId {
                deployment: "d".into(),
                role,
                addr: addr.into(),
            },
            at: SystemTime::now(),
            seen,
            duration: Duration::from_millis(1),
            result,
        })
    }

    fn node(text: &str) -> Result<Reading, PollError> {
        Ok(Reading::Node(NodeReading {
            replication: ReplicationInfo::parse(text).unwrap(),
            cluster: None,
        }))
    }

    pub(super) fn recorded_sentinel() -> Reading {
        let master = MasterEntry::parse(&recorded_maps("sentinel masters")[0]).unwrap();
        let view = MasterView {
            replicas: recorded_maps("sentinel replicas")
                .iter()
                .map(|m| ReplicaEntry::parse(m).unwrap())
                .collect(),
            sentinels: recorded_maps("sentinel sentinels")
                .iter()
                .map(|m| SentinelEntry::parse(m).unwrap())
                .collect(),
            quorum_ok: true,
            master,
        };
        Reading::Sentinel(SentinelReading {
            info: SentinelInfo { tilt: false },
            masters: [("mymaster".to_string(), view)].into(),
        })
    }

    /// A monitor of one sentinel deployment that has seen the recorded
    /// SENTINEL replies from sentinel 27100.
    fn after_recorded_sentinel(at: Instant) -> Monitor {
        let mut m = Monitor::new_for_test(&config("sentinel", "127.0.0.1:27100"));
        m.apply(obs(
            TargetRole::Sentinel,
            "127.0.0.1:27100",
            at,
            Ok(recorded_sentinel()),
        ));
        m
    }

    fn targets(s: &Snapshot) -> Vec<String> {
        s.targets()
            .map(|t| format!("{}:{}", t.role.label(), t.addr))
            .collect()
    }

    #[test]
    fn one_sentinel_leads_to_every_sentinel_and_node() {
        let mut m = Monitor::new_for_test(&config("sentinel", "127.0.0.1:27100"));
        assert_eq!(targets(&m.snapshot()), ["sentinel:127.0.0.1:27100"]);
        assert!(!m.snapshot().ready);
        m = after_recorded_sentinel(Instant::now());
        let s = m.snapshot();
        assert_eq!(
            targets(&s),
            [
                "node:127.0.0.1:7100",
                "node:127.0.0.1:7101",
                "node:127.0.0.1:7102",
                "sentinel:127.0.0.1:27100",
                "sentinel:127.0.0.1:27101",
                "sentinel:127.0.0.1:27102"
            ]
        );
        assert!(!s.ready, "discovered targets are not polled yet");
        let shard = &s.deployments[0].shards[0];
        let sv = shard.sentinel.as_ref().unwrap();
        assert_eq!(sv.master_addr.as_deref(), Some("127.0.0.1:7101"));
        assert!(sv.agreement && sv.quorum_ok);
        assert_eq!(
            (sv.quorum, sv.reachable, sv.config_epoch, sv.sdown, sv.odown),
            (2, 1, 1, 0, false)
        );
    }

    #[test]
    fn sentinel_master_down_follows_events_between_polls() {
        let t0 = Instant::now();
        let mut m = after_recorded_sentinel(t0);
        let event = |m: &mut Monitor, port: u16, channel: &str, payload: &str| {
            m.apply(Input::Event(EventMessage {
                target: TargetId {
                    deployment: "d".into(),
                    role: TargetRole::Sentinel,
                    addr: format!("127.0.0.1:{port}"),
                },
                at: SystemTime::now(),
                channel: channel.into(),
                payload: payload.into(),
            }));
        };
        let down = |m: &Monitor| {
            let sv = m.snapshot().deployments[0].shards[0]
                .sentinel
                .clone()
                .unwrap();
            (
                sv.sdown,
                sv.odown,
                m.snapshot().deployments[0].shards[0].failover_in_progress,
            )
        };
        assert_eq!(down(&m), (0, false, false));
        event(&mut m, 27101, "+sdown", "master mymaster 127.0.0.1 7101");
        event(&mut m, 27100, "+sdown", "master mymaster 127.0.0.1 7101");
        assert_eq!(down(&m), (2, false, true));
        event(
            &mut m,
            27100,
            "+odown",
            "master mymaster 127.0.0.1 7101 #quorum 2/2",
        );
        assert_eq!(down(&m), (2, true, true));
        // A poll of 27100 taken after it saw the master back resyncs its part.
        m.apply(obs(
            TargetRole::Sentinel,
            "127.0.0.1:27100",
            t0,
            Ok(recorded_sentinel()),
        ));
        assert_eq!(down(&m), (1, false, true));
        event(&mut m, 27101, "-sdown", "master mymaster 127.0.0.1 7101");
        assert_eq!(
            down(&m),
            (0, false, false),
            "back before any failover: aborted"
        );
        let s = m.snapshot();
        let t = &s.failovers.timelines[0];
        assert_eq!(t.abort_reason.as_deref(), Some("master-recovered"));
    }

    #[test]
    fn replica_lag_in_bytes_and_seconds() {
        let t0 = Instant::now();
        let mut m = after_recorded_sentinel(t0);
        let master = fixture("sentinel-master-info-replication.txt");
        let replica = fixture("sentinel-replica-info-replication.txt");
        m.apply(obs(TargetRole::Node, "127.0.0.1:7101", t0, node(&master)));
        m.apply(obs(TargetRole::Node, "127.0.0.1:7102", t0, node(&replica)));
        let lag = |m: &Monitor, addr: &str| {
            let s = m.snapshot();
            let n = s.deployments[0].shards[0]
                .nodes
                .iter()
                .find(|n| n.addr == addr)
                .unwrap()
                .clone();
            n.replica.unwrap()
        };
        let r = lag(&m, "127.0.0.1:7102");
        assert_eq!(
            (r.lag_bytes, r.lag_seconds, r.ack_age_seconds),
            (Some(0), Some(0.0), Some(1))
        );
        assert!(r.link.unwrap().up);

        // Writes go on while the replica stops answering: lag grows, and its
        // age counts from the first poll that saw the master move past it.
        m.apply(obs(
            TargetRole::Node,
            "127.0.0.1:7102",
            t0,
            Err(PollError::Timeout),
        ));
        let moved = master.replace("master_repl_offset:51115", "master_repl_offset:61115");
        m.apply(obs(
            TargetRole::Node,
            "127.0.0.1:7101",
            t0 + Duration::from_secs(1),
            node(&moved),
        ));
        m.apply(obs(
            TargetRole::Node,
            "127.0.0.1:7101",
            t0 + Duration::from_secs(4),
            node(&moved),
        ));
        let r = lag(&m, "127.0.0.1:7102");
        assert_eq!(r.lag_bytes, Some(10000));
        assert_eq!(r.lag_seconds, Some(3.0));
        assert_eq!(
            r.link, None,
            "no link state from a replica that does not answer"
        );
        let s = m.snapshot();
        let shard = &s.deployments[0].shards[0];
        assert_eq!(
            (shard.masters, shard.replicas_healthy, shard.master_offset),
            (1, 0, Some(61115))
        );
        let n = shard
            .nodes
            .iter()
            .find(|n| n.addr == "127.0.0.1:7102")
            .unwrap();
        assert_eq!(n.role, None);
    }

    #[test]
    fn sentinels_that_disagree() {
        let now = Instant::now();
        let mut m = after_recorded_sentinel(now);
        let Reading::Sentinel(mut other) = recorded_sentinel() else {
            unreachable!()
        };
        let v = other.masters.get_mut("mymaster").unwrap();
        v.master.addr = "127.0.0.1:7102".into();
        v.master.config_epoch = 2;
        v.master.flags = crate::parse::sentinel::Flags::parse("master,s_down,o_down");
        v.quorum_ok = false;
        m.apply(obs(
            TargetRole::Sentinel,
            "127.0.0.1:27101",
            now,
            Ok(Reading::Sentinel(other)),
        ));
        let s = m.snapshot();
        let sv = s.deployments[0].shards[0].sentinel.clone().unwrap();
        assert_eq!(
            sv.master_addr.as_deref(),
            Some("127.0.0.1:7102"),
            "the newer epoch wins"
        );
        assert!(!sv.agreement && !sv.quorum_ok);
        assert_eq!(
            (sv.reachable, sv.config_epoch, sv.sdown, sv.odown),
            (2, 2, 1, true)
        );
    }

    fn cluster_reading(nodes: &str, info: &str) -> Result<Reading, PollError> {
        Ok(Reading::Node(NodeReading {
            replication: ReplicationInfo::parse(&fixture("cluster-master-info-replication.txt"))
                .unwrap(),
            cluster: Some(ClusterReading {
                info: ClusterInfo::parse(info).unwrap(),
                nodes: parse_nodes(nodes).unwrap(),
            }),
        }))
    }

    /// The recorded failover as a list of CLUSTER NODES views of node 7200.
    fn failover_views() -> Vec<(String, String)> {
        fixture("cluster-failover-sequence.txt")
            .split("### ")
            .skip(1)
            .map(|v| {
                let (nodes, info): (Vec<&str>, Vec<&str>) =
                    v.lines().skip(1).partition(|l| !l.starts_with("cluster_"));
                let info = format!("{}\ncluster_known_nodes:6\n", info.join("\n"));
                (nodes.join("\n"), info)
            })
            .collect()
    }

    /// The slot view of a cluster whose nodes' views are given, by node.
    fn slots_of(views: &[(&str, &str, &str)]) -> SlotsView {
        let mut m = Monitor::new_for_test(&config("cluster", views[0].0));
        for (addr, nodes, info) in views {
            m.apply(obs(
                TargetRole::Node,
                addr,
                Instant::now(),
                cluster_reading(&fixture(nodes), &fixture(info)),
            ));
        }
        m.snapshot().deployments[0]
            .cluster
            .clone()
            .unwrap()
            .slots
            .unwrap()
    }

    #[test]
    fn slot_map_of_a_lost_shard_and_of_diverging_views() {
        let sv = slots_of(&[(
            "127.0.0.1:7200",
            "cluster-nodes-shard-down.txt",
            "cluster-info-shard-down.txt",
        )]);
        let ranges: Vec<(u16, u16, &str, Option<&str>)> = sv
            .ranges
            .iter()
            .map(|r| (r.start, r.end, r.state, r.master.as_deref()))
            .collect();
        assert_eq!(
            ranges,
            [
                (0, 5460, "ok", Some("127.0.0.1:7200")),
                (5461, 10922, "ok", Some("127.0.0.1:7204")),
                (10923, 16383, "fail", Some("127.0.0.1:7202")),
            ]
        );
        assert_eq!(
            (sv.uncovered, sv.uncovered_ranges, sv.config_views),
            (5461, 1, 1)
        );
        assert_eq!(sv.shard_slots.iter().map(|(_, n)| n).sum::<u32>(), 16384);
        assert!(sv.divergences.is_empty() && sv.open.is_empty());

        // 7203 still holds the map from before the failover; 7200 and 7201 the new one.
        let ok = "cluster-info-ok.txt";
        let sv = slots_of(&[
            ("127.0.0.1:7200", "cluster-nodes-after-failover.txt", ok),
            ("127.0.0.1:7201", "cluster-nodes-after-failover.txt", ok),
            ("127.0.0.1:7203", "cluster-nodes-ok.txt", ok),
        ]);
        assert_eq!(sv.config_views, 2);
        assert_eq!(
            sv.divergences,
            [Divergence {
                node: "127.0.0.1:7203".into(),
                start: 5461,
                end: 10922,
                says: Some("127.0.0.1:7201".into()),
                majority: Some("127.0.0.1:7204".into()),
            }]
        );
    }

    #[test]
    fn cluster_discovery_views_and_stable_shard_names() {
        let mut m = Monitor::new_for_test(&config("cluster", "127.0.0.1:7200"));
        let now = Instant::now();
        let ok_info = fixture("cluster-info-ok.txt");
        m.apply(obs(
            TargetRole::Node,
            "127.0.0.1:7200",
            now,
            cluster_reading(&fixture("cluster-nodes-ok.txt"), &ok_info),
        ));
        let s = m.snapshot();
        assert_eq!(s.targets().count(), 6);
        let d = &s.deployments[0];
        let c = d.cluster.as_ref().unwrap();
        assert!(c.state_ok);
        assert_eq!(c.majority.as_ref().unwrap().slots_ok, 16384);
        assert_eq!(d.shards.len(), 3);
        let shard_of = |s: &Snapshot, addr: &str| {
            s.deployments[0]
                .shards
                .iter()
                .find(|sh| sh.nodes.iter().any(|n| n.addr == addr))
                .unwrap()
                .name
                .clone()
        };
        let before = shard_of(&s, "127.0.0.1:7201");
        assert_eq!(before, "d22b8dd83133");
        assert_eq!(shard_of(&s, "127.0.0.1:7204"), before);

        let mut saw_pfail = false;
        for (nodes, info) in failover_views() {
            m.apply(obs(
                TargetRole::Node,
                "127.0.0.1:7200",
                now,
                cluster_reading(&nodes, &info),
            ));
            let s = m.snapshot();
            let c = s.deployments[0].cluster.clone().unwrap();
            saw_pfail |= c
                .failing
                .iter()
                .any(|f| f.node == "127.0.0.1:7201" && f.pfail == 1);
            assert_eq!(
                shard_of(&s, "127.0.0.1:7201"),
                before,
                "shard name survives the failover"
            );
            assert_eq!(shard_of(&s, "127.0.0.1:7204"), before);
        }
        assert!(saw_pfail);
        let s = m.snapshot();
        let shard = s.deployments[0]
            .shards
            .iter()
            .find(|sh| sh.name == before)
            .unwrap();
        assert_eq!(
            shard.master.as_deref(),
            Some("127.0.0.1:7204"),
            "the promoted replica is the master"
        );

        // A shard down: fail flags and a majority view in state fail.
        let down_nodes = fixture("cluster-nodes-shard-down.txt");
        m.apply(obs(
            TargetRole::Node,
            "127.0.0.1:7200",
            now,
            cluster_reading(&down_nodes, &fixture("cluster-info-shard-down.txt")),
        ));
        let c = m.snapshot().deployments[0].cluster.clone().unwrap();
        assert!(!c.state_ok);
        assert_eq!(c.majority.unwrap().slots_fail, 5461);
        assert!(c
            .failing
            .iter()
            .any(|f| f.node == "127.0.0.1:7202" && f.fail));
    }

    /// Feeds `nodes` as the CLUSTER NODES view of the node at `addr`.
    fn cluster_view(m: &mut Monitor, addr: &str, nodes: &str) {
        let info = fixture("cluster-info-ok.txt");
        m.apply(obs(
            TargetRole::Node,
            addr,
            Instant::now(),
            cluster_reading(nodes, &info),
        ));
    }

    /// The healthy view, as node 7203 sees it (no `myself` elsewhere) and as
    /// the others see it once they forgot 7203.
    fn views_around_7203() -> (String, String) {
        let all = fixture("cluster-nodes-ok.txt");
        let forgotten = all
            .lines()
            .filter(|l| !l.contains(":7203@"))
            .map(|l| format!("{l}\n"))
            .collect();
        (all.replace("myself,", ""), forgotten)
    }

    #[test]
    fn a_node_nobody_lists_leaves_with_its_state() {
        let mut m = Monitor::new_for_test(&config("cluster", "127.0.0.1:7200"));
        let (own, forgotten) = views_around_7203();
        cluster_view(&mut m, "127.0.0.1:7200", &fixture("cluster-nodes-ok.txt"));
        cluster_view(&mut m, "127.0.0.1:7203", &own);
        assert_eq!(m.snapshot().targets().count(), 6);
        // 7203 is forgotten by the others but still lists them itself.
        cluster_view(&mut m, "127.0.0.1:7200", &forgotten);
        let s = m.snapshot();
        assert_eq!(s.targets().count(), 5);
        assert!(!s.targets().any(|t| t.addr == "127.0.0.1:7203"));
        let shard_nodes = s.deployments[0].shards.iter().flat_map(|sh| &sh.nodes);
        assert!(!shard_nodes.clone().any(|n| n.addr == "127.0.0.1:7203"));
        // Its poller's last result arrives after it left: ignored.
        cluster_view(&mut m, "127.0.0.1:7203", &own);
        assert_eq!(m.snapshot().targets().count(), 5);
    }

    #[test]
    fn a_seed_that_left_the_cluster_is_polled_but_not_exported() {
        let mut m = Monitor::new_for_test(&config("cluster", "127.0.0.1:7203"));
        let (own, forgotten) = views_around_7203();
        cluster_view(&mut m, "127.0.0.1:7203", &own);
        cluster_view(&mut m, "127.0.0.1:7200", &forgotten);
        let s = m.snapshot();
        let (seed, others): (Vec<_>, Vec<_>) = s.deployments[0]
            .targets
            .iter()
            .partition(|t| t.id.addr == "127.0.0.1:7203");
        assert!(
            !seed[0].exported,
            "polled, in case it rejoins, but not exported"
        );
        assert!(others.iter().all(|t| t.exported));
    }

    #[test]
    fn offset_history_ages() {
        let t0 = Instant::now();
        let mut h = OffsetHistory::new(t0);
        h.record(t0, 100);
        h.record(t0 + Duration::from_secs(1), 200);
        h.record(t0 + Duration::from_secs(5), 200);
        assert_eq!(h.age_of(200), 0.0);
        assert_eq!(h.age_of(150), 4.0);
        assert_eq!(h.age_of(50), 5.0);
        // A restarted master: the old stream is forgotten.
        h.record(t0 + Duration::from_secs(6), 10);
        assert_eq!(h.age_of(5), 0.0);
        for i in 0..(OFFSET_HISTORY as u64 + 10) {
            h.record(t0 + Duration::from_secs(7 + i), 100 + i);
        }
        assert_eq!(h.samples.len(), OFFSET_HISTORY);
    }
}

#[cfg(test)]
mod event_tests {
    use super::*;
    use crate::parse::event::tests::recorded;

    #[test]
    fn the_recorded_event_stream_makes_one_timeline_and_counts_each_event_once() {
        let config = crate::config::parse(
            "deployments:\n  - name: d\n    kind: sentinel\n    sentinels: [\"127.0.0.1:27100\", \"127.0.0.1:27101\", \"127.0.0.1:27102\"]\n",
            "t",
        )
        .unwrap();
        let mut m = Monitor::new_for_test(&config);
        for (at, port, channel, payload) in recorded() {
            m.apply(Input::Event(EventMessage {
                target: TargetId {
                    deployment: "d".into(),
                    role: TargetRole::Sentinel,
                    addr: format!("127.0.0.1:{port}"),
                },
                at: UNIX_EPOCH + std::time::Duration::from_secs_f64(at),
                channel,
                payload,
            }));
        }
        let s = m.snapshot();
        let timelines = &s.failovers.timelines;
        assert_eq!(timelines.len(), 1);
        assert_eq!(
            timelines[0].outcome,
            Some(crate::timeline::Outcome::Completed)
        );
        let d = &s.deployments[0];
        let count = |event: &str| {
            d.events_total
                .iter()
                .find(|(sh, e, _)| sh == "mymaster" && e == event)
                .map(|x| x.2)
        };
        // Three sentinels publish +switch-master: counted once.
        assert_eq!(count("+switch-master"), Some(1));
        // +sdown of the master from three sentinels, and of the old master
        // as a replica: two distinct events.
        assert_eq!(count("+sdown"), Some(2));
        assert_eq!(count("+odown"), Some(1));
        assert_eq!(s.failovers.events.len(), 50);
        assert_eq!(
            m.take_changed_timelines().last().unwrap().outcome,
            Some(crate::timeline::Outcome::Completed)
        );
    }
}

#[cfg(test)]
mod alert_tests {
    use std::time::Duration;

    use super::tests::recorded_sentinel;
    use super::*;
    use crate::model::PollError;
    use crate::parse::event::tests::recorded;

    const SENTINELS: &str = "deployments:\n  - name: d\n    kind: sentinel\n    sentinels: [\"127.0.0.1:27100\", \"127.0.0.1:27101\", \"127.0.0.1:27102\"]\n";

    fn at(secs: f64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs_f64(secs)
    }

    /// Feeds recorded sentinel events (time, sentinel port, channel,
    /// payload) to the monitor of deployment `d`.
    fn replay(m: &mut Monitor, events: impl IntoIterator<Item = (f64, u16, String, String)>) {
        for (secs, port, channel, payload) in events {
            m.apply(Input::Event(EventMessage {
                target: TargetId {
                    deployment: "d".into(),
                    role: TargetRole::Sentinel,
                    addr: format!("127.0.0.1:{port}"),
                },
                at: at(secs),
                channel,
                payload,
            }));
        }
    }

    fn poll(m: &mut Monitor, secs: f64, result: Result<Reading, PollError>) {
        m.apply(Input::Poll(Observation {
            target: TargetId {
                deployment: "d".into(),
                role: TargetRole::Sentinel,
                addr: "127.0.0.1:27100".into(),
            },
            at: at(secs),
            seen: Instant::now(),
            duration: Duration::from_millis(1),
            result,
        }));
    }

    fn firing(m: &Monitor) -> Vec<String> {
        m.snapshot()
            .alerts
            .firing
            .iter()
            .map(|a| a.rule.to_string())
            .collect()
    }

    fn transitions(m: &mut Monitor) -> Vec<(String, bool)> {
        m.take_transitions()
            .into_iter()
            .map(|t| (t.alert.rule.to_string(), t.resolved_at.is_some()))
            .collect()
    }

    #[test]
    fn a_condition_fires_after_its_for_and_resolves_when_it_stops() {
        let config = crate::config::parse(
            &format!("alerts:\n  rules:\n    TargetDown: {{ for: 2s }}\n{SENTINELS}"),
            "t",
        )
        .unwrap();
        let mut m = Monitor::new_for_test(&config);
        poll(&mut m, 100.0, Err(PollError::Timeout));
        assert!(firing(&m).is_empty(), "not before its `for`");
        poll(&mut m, 101.0, Err(PollError::Timeout));
        assert!(firing(&m).is_empty());
        assert!(transitions(&mut m).is_empty());
        poll(&mut m, 102.5, Err(PollError::Timeout));
        assert_eq!(firing(&m), ["TargetDown"]);
        assert_eq!(transitions(&mut m), [("TargetDown".into(), false)]);
        let alert = m.snapshot().alerts.firing[0].clone();
        assert_eq!(alert.since, 100.0, "firing since the condition began");
        assert_eq!(
            (alert.severity.as_str(), alert.labels["sentinel"].as_str()),
            ("warning", "127.0.0.1:27100")
        );
        assert_eq!(m.snapshot().alerts.rules.len(), 16);
        poll(&mut m, 102.8, Err(PollError::Timeout));
        assert!(
            transitions(&mut m).is_empty(),
            "one notification per transition"
        );
        poll(&mut m, 103.0, Ok(recorded_sentinel()));
        assert!(firing(&m).is_empty(), "resolved once it answers");
        assert_eq!(transitions(&mut m), [("TargetDown".into(), true)]);
        // Down again: the same alert (same fingerprint), a new `since`.
        poll(&mut m, 110.0, Err(PollError::Timeout));
        poll(&mut m, 113.0, Err(PollError::Timeout));
        let again = m.snapshot().alerts.firing[0].clone();
        assert_eq!((again.fingerprint, again.since), (alert.fingerprint, 110.0));
    }

    #[test]
    fn an_ended_failover_is_an_event_alert_that_resolves_itself() {
        let config = crate::config::parse(
            &format!("alerts:\n  rules:\n    FailoverCompleted: {{ hold: 60s, annotations: {{ runbook_url: \"https://runbooks/failover\" }} }}\n    FailoverStarted: {{ enabled: false }}\n{SENTINELS}"),
            "t",
        )
        .unwrap();
        let mut m = Monitor::new_for_test(&config);
        let events = recorded();
        let end = events.last().unwrap().0;
        replay(&mut m, events);
        let s = m.snapshot();
        let alerts = &s.alerts.firing;
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        let a = &alerts[0];
        assert_eq!(a.rule, crate::config::RuleName::FailoverCompleted);
        assert_eq!(a.labels["shard"], "mymaster");
        assert!(
            a.annotations["summary"].contains("127.0.0.1:7100 -> 127.0.0.1:7101"),
            "{:?}",
            a.annotations
        );
        assert_eq!(a.annotations["runbook_url"], "https://runbooks/failover");
        assert!(a.annotations.contains_key("phase_total_seconds"));
        assert!(
            !s.alerts.rules.iter().any(|(n, _)| n == "FailoverStarted"),
            "disabled"
        );
        poll(&mut m, end + 30.0, Ok(recorded_sentinel()));
        assert!(
            firing(&m).contains(&"FailoverCompleted".to_string()),
            "held for 60 s"
        );
        poll(&mut m, end + 61.0, Ok(recorded_sentinel()));
        assert!(
            !firing(&m).contains(&"FailoverCompleted".to_string()),
            "then resolved by itself"
        );
    }

    fn canary(m: &mut Monitor, secs: f64, kind: crate::canary::ReportKind) {
        m.apply(Input::Canary(crate::canary::Report {
            deployment: "d".into(),
            shard: "mymaster".into(),
            at: at(secs),
            kind,
        }));
    }

    fn ack(seq: u64, at: f64, node: &str) -> crate::canary::ledger::Ack {
        crate::canary::ledger::Ack {
            seq,
            at,
            node: node.into(),
        }
    }

    /// The canary's episode lands on the failover it overlaps, with the
    /// lost writes the old master acknowledged after the switch counted as
    /// stale reads; FailoverCompleted waits for it and carries its figures.
    #[test]
    fn a_canary_episode_goes_onto_its_failover_and_into_the_alert() {
        let config = crate::config::parse(SENTINELS, "t").unwrap();
        let mut m = Monitor::new_for_test(&config);
        let events = recorded();
        let first = events[0].0;
        // The recorded replies are from after the failover: as before it.
        let mut before = recorded_sentinel();
        if let Reading::Sentinel(r) = &mut before {
            for view in r.masters.values_mut() {
                view.master.addr = "127.0.0.1:7100".into();
            }
        }
        poll(&mut m, first - 1.0, Ok(before));
        canary(
            &mut m,
            first - 0.5,
            crate::canary::ReportKind::Status(crate::canary::Status {
                up: true,
                latencies: vec![0.0003, 0.002],
                ..Default::default()
            }),
        );
        let end = events
            .iter()
            .position(|(_, _, channel, _)| channel == "+failover-end")
            .unwrap();
        replay(&mut m, events.into_iter().take(end + 1));
        let s = m.snapshot();
        let t = s.failovers.timelines[0].clone();
        assert!(!t.is_open() && t.canary.is_none());
        assert!(
            !firing(&m).contains(&"FailoverCompleted".to_string()),
            "waits for the canary"
        );
        let switched = t.at("switched").unwrap();
        let old = "127.0.0.1:7100";
        let episode = crate::canary::ledger::Episode {
            from: ack(12, switched + 0.01, old),
            to: ack(14, switched + 0.3, "127.0.0.1:7101"),
            read_back: None,
            lost: vec![ack(11, switched - 1.0, old), ack(12, switched + 0.01, old)],
            lost_total: 2,
        };
        canary(
            &mut m,
            switched + 0.3,
            crate::canary::ReportKind::Episode(Box::new(episode)),
        );
        let s = m.snapshot();
        let impact = s.failovers.timelines[0]
            .canary
            .clone()
            .expect("on the timeline");
        assert_eq!((impact.lost_writes, impact.stale_reads), (2, 1));
        assert_eq!(impact.lost_seqs, [[11, 12]]);
        let alert = s
            .alerts
            .firing
            .iter()
            .find(|a| a.rule == crate::config::RuleName::FailoverCompleted)
            .expect("fires once the canary reported");
        assert_eq!(alert.annotations["canary_lost_writes"], "2");
        assert_eq!(alert.annotations["canary_stale_reads"], "1");
        assert_eq!(
            alert.annotations["canary_write_unavailable_seconds"],
            "0.290"
        );
        assert!(alert.annotations["summary"].contains("2 acknowledged writes lost"));
        let c = &s.deployments[0].canaries[0];
        assert_eq!(
            (c.lost_writes, c.latency.count, c.unavailable.count),
            (2, 2, 1)
        );
        assert!(
            m.take_changed_timelines()
                .iter()
                .any(|t| t.canary.is_some()),
            "persisted"
        );
    }

    /// What was firing when the agent stopped stays firing without a new
    /// notification while the condition holds; once every target has
    /// answered, what no longer holds resolves.
    #[test]
    fn restored_alerts_are_not_notified_twice_and_resolve_once_ready() {
        let config = crate::config::parse(
            &format!("alerts:\n  rules:\n    TargetDown: {{ for: 2s }}\n{SENTINELS}"),
            "t",
        )
        .unwrap();
        let mut before = Monitor::new_for_test(&config);
        poll(&mut before, 100.0, Err(PollError::Timeout));
        poll(&mut before, 103.0, Err(PollError::Timeout));
        let was_firing = before.take_transitions();
        assert_eq!(was_firing.len(), 1);

        let mut still = Monitor::new(&config, Vec::new(), was_firing.clone(), Arc::default());
        poll(&mut still, 200.0, Err(PollError::Timeout));
        assert_eq!(firing(&still), ["TargetDown"], "no new `for` wait");
        assert!(transitions(&mut still).is_empty(), "not notified again");
        assert_eq!(still.snapshot().alerts.firing[0].since, 100.0);

        let mut healed = Monitor::new(&config, Vec::new(), was_firing, Arc::default());
        poll(&mut healed, 200.0, Ok(recorded_sentinel()));
        assert_eq!(
            firing(&healed),
            ["TargetDown"],
            "kept until every target has answered"
        );
        // Every other target answers too (or fails: a poll all the same).
        let others: Vec<TargetId> = healed
            .snapshot()
            .targets()
            .filter(|t| t.addr != "127.0.0.1:27100")
            .cloned()
            .collect();
        for target in others {
            healed.apply(Input::Poll(Observation {
                target,
                at: at(200.5),
                seen: Instant::now(),
                duration: Duration::from_millis(1),
                result: Err(PollError::Timeout),
            }));
        }
        assert!(healed.snapshot().ready);
        assert!(firing(&healed).is_empty());
        assert_eq!(transitions(&mut healed), [("TargetDown".into(), true)]);
    }
}
