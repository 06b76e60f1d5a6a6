//! One deployment through the stages: its inputs go to the intake and the
//! failover machines as they arrive; once per batch [`DeploymentState::step`]
//! derives what changed, moves the machines on with the changed views, and
//! updates the deployment's published view in place.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::alerts::Changed;
use super::derive::{self, cluster::ClusterMemory, Topology};
use super::failover::two_masters::MasterSeen;
use super::failover::{Amendment, Machines};
use super::intake::{Intake, TargetKey, TargetState};
use super::views;
use crate::config::{Deployment, Findings, Kind};
use crate::model::canary::{Report, ReportKind, Status, LATENCY_BUCKETS};
use crate::model::finding::Check;
use crate::model::histogram::Histogram;
use crate::model::snapshot::{CanaryView, ClusterView, DeploymentView, ShardView};
use crate::model::timeline::Timeline;
use crate::model::{EventMessage, Observation, Reading, TargetId, TargetKind};
use crate::parse::event::Event;
use crate::parse::info::Role;
use crate::util::shared::Shared;

/// What changed since the last step.
#[derive(Debug, Clone, Default)]
struct Dirty {
    /// A reading the topology derivation uses changed.
    topology: bool,
    /// Targets whose view changed.
    targets: BTreeSet<TargetKey>,
    /// Shards one of whose nodes polled.
    shards: BTreeSet<String>,
    subscriptions: bool,
    events: bool,
    canaries: bool,
    /// A target's poll went from failing to answering or back.
    answering: bool,
    /// A node's settings changed.
    settings: bool,
}

/// One deployment's state, from its inputs to its published view.
#[derive(Debug, Clone)]
pub struct DeploymentState {
    /// Its configuration.
    pub config: Deployment,
    /// Its name, as views and targets carry it.
    pub name: Arc<str>,
    /// When an entry a sentinel remembers is stale (`findings.stale_after`).
    stale_after: Duration,
    /// How many hot slots the view keeps (`findings.hot_slots`).
    hot_slots: usize,
    /// Since when each replica (by shard) has followed another master than
    /// the sentinels' (`replica_follows_other_master`).
    misfollowing: BTreeMap<(String, String), f64>,
    intake: Intake,
    /// The failover machines.
    pub machines: Machines,
    /// The last topology derivation.
    topology: Topology,
    /// Each shard's view as derived from the polls.
    derived: BTreeMap<String, ShardView>,
    /// The shards each node belongs to.
    shards_of: HashMap<String, Vec<String>>,
    /// Event subscription state per sentinel.
    subscriptions: BTreeMap<String, bool>,
    /// Sentinel events counted once each, by (shard, event).
    events_total: BTreeMap<(String, String), u64>,
    /// The canary's view of each probed shard, by shard.
    canaries: BTreeMap<String, CanaryView>,
    dirty: Dirty,
    /// Shards serving slots with no replica whose link is up.
    without_replica: BTreeSet<String>,
    /// The published view, changed in place.
    view: DeploymentView,
    target_index: HashMap<TargetKey, usize>,
    shard_index: HashMap<String, usize>,
    /// Stepped at least once: the view holds every part.
    stepped: bool,
}

impl DeploymentState {
    /// Starts from the seeds.
    pub fn new(config: &Deployment, poll_interval: f64, findings: &Findings) -> Self {
        let kind = match config.kind {
            Kind::Sentinel => TargetKind::Sentinel,
            Kind::Cluster => TargetKind::Node,
        };
        let name: Arc<str> = config.name.as_str().into();
        DeploymentState {
            intake: Intake::new(config.seeds.iter().map(|s| (kind, s.clone()))),
            machines: Machines::new(name.clone(), config.kind, poll_interval),
            topology: Topology::default(),
            derived: BTreeMap::new(),
            shards_of: HashMap::new(),
            subscriptions: BTreeMap::new(),
            events_total: BTreeMap::new(),
            canaries: BTreeMap::new(),
            dirty: Dirty::default(),
            without_replica: BTreeSet::new(),
            view: DeploymentView {
                name: name.clone(),
                kind: config.kind,
                targets: Shared::default(),
                shards: Shared::default(),
                cluster: None,
                subscriptions: Arc::default(),
                events_total: Arc::default(),
                canaries: Arc::default(),
                findings: Arc::default(),
                findings_unknown: Arc::default(),
                hot_slots: Arc::default(),
            },
            target_index: HashMap::new(),
            shard_index: HashMap::new(),
            stepped: false,
            config: config.clone(),
            stale_after: findings.stale_after,
            hot_slots: findings.hot_slots,
            misfollowing: BTreeMap::new(),
            name,
        }
    }

    /// The view as of the last step.
    pub fn view(&self) -> &DeploymentView {
        &self.view
    }

    /// Records one poll; false if its target is no longer followed.
    pub fn on_poll(&mut self, obs: Observation) -> bool {
        let key = (obs.target.kind, obs.target.addr.clone());
        let answered = |intake: &Intake| intake.get(key.0, &key.1).map(|s| (s.polled, s.up));
        let before = answered(&self.intake);
        let Some(news) = self.intake.record(obs) else {
            return false;
        };
        self.dirty.topology |= news.topology;
        self.dirty.settings |= news.settings;
        self.dirty.answering |= answered(&self.intake) != before;
        if let Some(shards) = self
            .shards_of
            .get(&key.1)
            .filter(|_| key.0 == TargetKind::Node)
        {
            self.dirty.shards.extend(shards.iter().cloned());
        }
        if key.0 == TargetKind::Sentinel {
            let reading = match self.intake.get(key.0, &key.1).and_then(TargetState::fresh) {
                Some(Reading::Sentinel(r)) => Some(r),
                _ => None,
            };
            self.machines.on_sentinel_poll(&key.1, reading);
        }
        self.dirty.targets.insert(key);
        true
    }

    /// The parsed event, if it comes from a followed sentinel and is one a
    /// sentinel publishes: about a watched master the sentinels list, or
    /// one of the few events about no master.
    ///
    /// A real sentinel accepts `PUBLISH` only on its hello channel, but
    /// what answers on a sentinel's address (a Redis server configured as a
    /// sentinel by mistake, where any client may publish on any channel; a
    /// compromised sentinel; a man in the middle of plain TCP) can say
    /// anything on the subscription. A `+switch-master` for a master no
    /// sentinel monitors would otherwise open a failover timeline and page
    /// someone, and each
    /// made-up master or channel name would add series to /metrics without
    /// bound. A master the sentinels start to monitor is known from their
    /// next poll on; what happened to it before, polls resynchronise.
    pub fn relevant(&self, msg: &EventMessage) -> Option<Event> {
        if !self.intake.contains(TargetKind::Sentinel, &msg.target.addr) {
            return None;
        }
        let event = Event::parse(&msg.channel, &msg.payload);
        let known = match event.master_name() {
            Some(m) => self.config.watches_master(m) && self.sentinels_list(m),
            None => event.names_no_master(),
        };
        known.then_some(event)
    }

    /// Whether the sentinels list master `name` in their last readings.
    /// Before any sentinel answered nothing tells which masters exist, and
    /// every master counts as listed: the events of the agent's first
    /// second are not lost.
    fn sentinels_list(&self, name: &str) -> bool {
        let readings = self.intake.readings(|r| match r {
            Reading::Sentinel(s) => Some(s),
            _ => None,
        });
        readings.is_empty()
            || readings
                .iter()
                .any(|(_, r, _)| r.masters.contains_key(name))
    }

    /// Applies one sentinel event: counted if `first` (no other sentinel
    /// published it just before), then fed to its shard's failover machine.
    pub fn on_event(&mut self, event: &Event, reporter: &str, first: bool, now: f64) {
        if first {
            let shard = event.master_name().unwrap_or_default().to_string();
            *self
                .events_total
                .entry((shard, event.channel.clone()))
                .or_default() += 1;
            self.dirty.events = true;
        }
        self.machines.on_event(event, reporter, now, &self.intake);
    }

    /// A sentinel's event subscription came up or went down.
    pub fn on_subscription(&mut self, target: &TargetId, up: bool) {
        if self.intake.contains(target.kind, &target.addr) {
            self.subscriptions.insert(target.addr.clone(), up);
            self.dirty.subscriptions = true;
        }
    }

    /// A canary probe's report: its status to the shard's canary view, an
    /// episode to the histograms and to the failover it overlaps.
    pub fn on_canary(&mut self, report: Report) {
        self.dirty.canaries = true;
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
                self.machines
                    .amend(&report.shard, Amendment::Canary(episode));
            }
        }
    }

    /// Puts a timeline read back from disk into its shard's machine.
    pub fn resume(&mut self, t: Timeline) {
        self.machines.resume(t);
    }

    /// An ended failover read back from disk: it names the next one.
    pub fn recall(&mut self, t: &Timeline) {
        self.machines.recall(t);
    }

    /// Derives what changed since the last step, moves the failover
    /// machines on, and updates the view in place. Returns what changed in
    /// the view, for the alert rules.
    pub fn step(&mut self, now: f64) -> Changed {
        let dirty = std::mem::take(&mut self.dirty);
        let mut all = !self.stepped;
        let retopologized = dirty.topology || !self.stepped;
        let mut shards = dirty.shards;
        let mut targets = dirty.targets;
        let mut canaries_changed = dirty.canaries;
        let mut subscriptions_changed = dirty.subscriptions;
        if retopologized {
            let (set_changed, subscriptions) = self.retopologize(now);
            all |= set_changed;
            subscriptions_changed |= subscriptions;
            canaries_changed = true;
            shards = self.topology.shards.keys().cloned().collect();
            // Whether a target is exported may have changed.
            targets = self
                .intake
                .iter()
                .map(|(kind, addr, _)| (kind, addr.clone()))
                .collect();
        }
        for name in &shards {
            if let Some(plan) = self.topology.shards.get(name) {
                let view = derive::shard::view(name, plan, &self.intake);
                self.derived.insert(name.clone(), view);
            }
        }
        self.advance(now, retopologized, &shards);
        let touched = self.machines.take_touched();
        let mut republish: BTreeSet<String> = touched.iter().cloned().collect();
        republish.extend(shards);
        republish.retain(|name| self.derived.contains_key(name));
        let mut changed = Changed {
            all,
            ..Changed::default()
        };
        if all {
            self.rebuild();
        } else {
            changed.targets = self.update_targets(&targets);
            changed.shards = self.update_shards(&republish);
            // A shard's failover changed: its rules look again even when its
            // view did not (a suspicion that became a failover).
            changed
                .shards
                .extend(touched.iter().filter_map(|n| self.shard_index.get(n)));
            changed.shards.sort_unstable();
            changed.shards.dedup();
        }
        changed.cluster = self.update_cluster(retopologized, &republish);
        // Findings are evaluated again only when what they read changed: a
        // sentinel's poll, a node's settings, the topology, or a cluster
        // node answering or not (not every poll: a 1000-node cluster polls
        // 1000 times a second).
        let sentinels_polled = targets.iter().any(|(k, _)| *k == TargetKind::Sentinel);
        // A replica whose link is down grows staler with each of its polls
        // (`replica_too_stale`), until it is named and then until it is
        // not; a healthy shard's polls cost nothing here.
        let links_down = self
            .view
            .findings
            .iter()
            .any(|f| f.check == Check::ReplicaTooStale)
            || republish.iter().any(|name| {
                self.derived.get(name).is_some_and(|s| {
                    s.nodes.iter().any(|n| {
                        n.replica
                            .as_ref()
                            .and_then(|r| r.link.as_ref())
                            .is_some_and(|l| !l.up)
                    })
                })
            });
        changed.findings = self.update_lists(
            subscriptions_changed || all,
            dirty.events || all,
            canaries_changed || all,
            // A sentinel deployment's findings also follow the clock (how
            // long a replica has followed another master, an address has
            // failed the agent's polls); it has few targets.
            sentinels_polled
                || self.config.kind == Kind::Sentinel
                || dirty.settings
                || retopologized
                || dirty.answering
                || links_down
                || all,
            now,
        );
        self.stepped = true;
        changed
    }

    /// Replaces the small lists of the view that changed; whether the
    /// findings did.
    fn update_lists(
        &mut self,
        subscriptions: bool,
        events: bool,
        canaries: bool,
        findings: bool,
        now: f64,
    ) -> bool {
        if subscriptions {
            let subs: Vec<(String, bool)> = self
                .subscriptions
                .iter()
                .filter(|(addr, _)| self.intake.contains(TargetKind::Sentinel, addr))
                .map(|(a, up)| (a.clone(), *up))
                .collect();
            self.view.subscriptions = Arc::new(subs);
        }
        if events {
            self.view.events_total = Arc::new(
                self.events_total
                    .iter()
                    .map(|((s, e), n)| (s.clone(), e.clone(), *n))
                    .collect(),
            );
        }
        if canaries {
            let derived = &self.derived;
            self.view.canaries = views::canaries(&self.canaries, |s| derived.contains_key(s));
        }
        if findings {
            let cluster = self.config.kind == Kind::Cluster;
            let (mut found, mut unknown) = views::findings(
                &self.name,
                cluster,
                &self.intake,
                &self.derived,
                self.stale_after,
                &mut self.misfollowing,
                now,
            );
            if cluster {
                found.extend(views::cluster_findings(
                    &self.name,
                    self.topology.cluster.as_ref(),
                    &self.intake,
                ));
                let (hot, from_slots, refused) = views::hot_slots(
                    &self.name,
                    &self.derived,
                    self.view.slots(),
                    &self.intake,
                    self.hot_slots,
                );
                found.extend(from_slots);
                unknown.extend(refused);
                if *self.view.hot_slots != hot {
                    self.view.hot_slots = Arc::new(hot);
                }
            }
            if *self.view.findings_unknown != unknown {
                self.view.findings_unknown = Arc::new(unknown);
            }
            if *self.view.findings != found {
                self.view.findings = Arc::new(found);
                return true;
            }
        }
        false
    }

    /// Every target known so far has been polled at least once.
    pub fn polled(&self) -> bool {
        self.intake.iter().all(|(_, _, t)| t.polled)
    }

    /// The view derived from scratch from the same state: what
    /// [`DeploymentState::step`] must have published. For tests of the
    /// incremental derivation.
    pub fn reference(&self, now: f64) -> DeploymentView {
        let mut full = self.clone();
        full.topology = full.derive_topology(now);
        full.derived = full
            .topology
            .shards
            .iter()
            .map(|(name, plan)| (name.clone(), derive::shard::view(name, plan, &full.intake)))
            .collect();
        full.view.cluster = None;
        full.rebuild();
        full.update_cluster(true, &BTreeSet::new());
        full.update_lists(true, true, true, true, now);
        full.view
    }

    /// Derives the topology and follows it: targets that appeared are added
    /// (unpolled), targets that left are dropped with their state. Dropping
    /// a target drops its reading, which the topology read: it is derived
    /// again until it holds (a few rounds at most; what is left then is
    /// taken up by the next step). Returns whether the sets of targets or
    /// shards changed, and whether the subscriptions did.
    fn retopologize(&mut self, now: f64) -> (bool, bool) {
        /// Rounds of deriving and following in one step.
        const ROUNDS: usize = 4;
        let shards_before: Vec<String> = self.topology.shards.keys().cloned().collect();
        let (mut targets_changed, mut subscriptions) = (false, false);
        for _ in 0..ROUNDS {
            let topology = self.derive_topology(now);
            let (gone, added) = self.intake.follow(&topology.members);
            for (kind, addr) in &gone {
                if *kind == TargetKind::Sentinel {
                    self.subscriptions.remove(addr);
                    self.machines.forget_sentinel(addr);
                    subscriptions = true;
                }
            }
            // Nothing known (no reading yet) is no evidence that a shard is gone.
            if !topology.shards.is_empty() {
                self.machines.forget_shards(&topology.shards);
                self.canaries
                    .retain(|name, _| topology.shards.contains_key(name));
            }
            self.topology = topology;
            targets_changed |= !gone.is_empty() || added;
            self.dirty.topology = !gone.is_empty();
            if gone.is_empty() {
                break;
            }
        }
        self.shards_of.clear();
        for (name, plan) in &self.topology.shards {
            for node in &plan.nodes {
                self.shards_of
                    .entry(node.clone())
                    .or_default()
                    .push(name.clone());
            }
        }
        let topology = &self.topology;
        self.derived
            .retain(|name, _| topology.shards.contains_key(name));
        let shards_changed = !topology.shards.keys().eq(shards_before.iter());
        (targets_changed || shards_changed, subscriptions)
    }

    fn derive_topology(&self, now: f64) -> Topology {
        match self.config.kind {
            Kind::Sentinel => derive::sentinel::topology(&self.intake, &self.config),
            Kind::Cluster => {
                let memory = self
                    .topology
                    .cluster
                    .as_ref()
                    .map(|c| &c.memory)
                    .cloned()
                    .unwrap_or_else(ClusterMemory::default);
                derive::cluster::topology(&self.intake, &self.config, &memory, now)
            }
        }
    }

    /// Moves the machines on: sentinel failovers in progress, cluster
    /// shards whose view changed, two-masters windows of the shards
    /// derived again.
    fn advance(&mut self, now: f64, retopologized: bool, shards: &BTreeSet<String>) {
        match self.config.kind {
            Kind::Sentinel => self
                .machines
                .tick_sentinel(now, &self.topology.shards, &self.intake),
            Kind::Cluster => {
                let again = self.machines.take_resettled();
                let health = self.topology.cluster.as_ref().map(|c| &c.health);
                let plans = &self.topology.shards;
                // Only the shards whose view is fed again, unless the
                // topology changed: a step costs what changed.
                let fed: Vec<&String> = if retopologized {
                    plans.keys().collect()
                } else {
                    again.iter().collect()
                };
                let views = fed
                    .into_iter()
                    .filter_map(|name| {
                        let plan = plans.get(name)?;
                        let v =
                            plan.cluster
                                .as_ref()?
                                .view(self.machines.settled(name), health?, now);
                        Some((name.clone(), v))
                    })
                    .collect();
                self.machines.on_cluster_views(now, views, &self.intake);
            }
        }
        for name in shards {
            let Some(view) = self.derived.get(name) else {
                continue;
            };
            let masters = view
                .nodes
                .iter()
                .filter(|n| n.role == Some(Role::Master))
                .filter_map(|n| {
                    let r = self.intake.node(&n.addr).0?;
                    Some(MasterSeen {
                        addr: n.addr.clone(),
                        offset: r.replication.master_repl_offset,
                        changes: r.changes,
                    })
                })
                .collect();
            self.machines
                .masters_seen(name, masters, view.master.as_deref(), now);
        }
    }

    /// Rebuilds the targets and shards of the view: they came or went.
    fn rebuild(&mut self) {
        let members = &self.topology.members;
        let (keys, targets): (Vec<TargetKey>, Vec<_>) = self
            .intake
            .iter()
            .map(|(kind, addr, s)| {
                let key = (kind, addr.clone());
                let view = views::target(&self.name, &key, s, members.contains(&key));
                (key, view)
            })
            .unzip();
        self.target_index = keys.into_iter().enumerate().map(|(i, k)| (k, i)).collect();
        self.view.targets = Shared::from_vec(targets);
        let shards: Vec<ShardView> = self
            .derived
            .values()
            .map(|d| views::shard(d, &self.machines))
            .collect();
        self.shard_index = shards
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        let slots = self
            .topology
            .cluster
            .as_ref()
            .and_then(|c| c.view.slots.as_ref());
        self.without_replica = shards
            .iter()
            .filter(|s| slots.is_some_and(|sv| views::without_replica(s, sv)))
            .map(|s| s.name.clone())
            .collect();
        self.view.shards = Shared::from_vec(shards);
    }

    /// Updates the views of `keys`; their indexes.
    fn update_targets(&mut self, keys: &BTreeSet<TargetKey>) -> Vec<usize> {
        let mut changed = Vec::new();
        for key in keys {
            let (Some(&i), Some(s)) = (self.target_index.get(key), self.intake.get(key.0, &key.1))
            else {
                continue;
            };
            let exported = self.topology.members.contains(key);
            let view = views::target(&self.name, key, s, exported);
            if self.view.targets[i] != view {
                self.view.targets.set(i, view);
                changed.push(i);
            }
        }
        changed
    }

    /// Updates the views of `names`; their indexes.
    fn update_shards(&mut self, names: &BTreeSet<String>) -> Vec<usize> {
        let slots = self
            .topology
            .cluster
            .as_ref()
            .and_then(|c| c.view.slots.as_ref());
        let mut changed = Vec::new();
        for name in names {
            let (Some(&i), Some(derived)) = (self.shard_index.get(name), self.derived.get(name))
            else {
                continue;
            };
            let view = views::shard(derived, &self.machines);
            if slots.is_some_and(|sv| views::without_replica(&view, sv)) {
                self.without_replica.insert(name.clone());
            } else {
                self.without_replica.remove(name);
            }
            if self.view.shards[i] != view {
                self.view.shards.set(i, view);
                changed.push(i);
            }
        }
        changed
    }

    /// Replaces the cluster-wide view when the topology was derived again
    /// or the shards without a replica changed; whether it changed.
    fn update_cluster(&mut self, retopologized: bool, republished: &BTreeSet<String>) -> bool {
        let Some(derived) = &self.topology.cluster else {
            return false;
        };
        let count = self.without_replica.len() as u32;
        let current = self.view.cluster.as_deref();
        let stale = retopologized
            || (!republished.is_empty()
                && current
                    .and_then(|c| c.slots.as_ref())
                    .is_some_and(|s| s.shards_without_replica != count));
        if !stale {
            return false;
        }
        let mut view: ClusterView = derived.view.clone();
        if let Some(sv) = &mut view.slots {
            sv.shards_without_replica = count;
        }
        if current == Some(&view) {
            return false;
        }
        self.view.cluster = Some(Arc::new(view));
        true
    }
}
