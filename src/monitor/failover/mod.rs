//! The failover machines of a deployment, fed by sentinel events as they
//! arrive and by the derived views when they change, producing timeline
//! steps: [`sentinel::SentinelShard`] per sentinel master,
//! [`cluster::ClusterShard`] per cluster shard. [`history`] keeps the
//! ended timelines. docs/timelines.md has the rules.

pub mod cluster;
pub mod history;
pub mod sentinel;
pub mod two_masters;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::config::Kind;
use crate::model::canary::{Episode, Impact};
use crate::model::clients::ClientsLeftBehind;
use crate::model::timeline::{MarkName, Serial, Timeline, Window, POLL};
use crate::model::{SentinelReading, TargetKind};
use crate::monitor::derive::cluster::{ClusterShardView, NodeRef};
use crate::monitor::derive::ShardPlan;
use crate::monitor::intake::Intake;
use crate::parse::event::{Detail, Event};
use crate::parse::info::Role;
use crate::parse::sentinel::Flag;
use crate::util::time::unix;
use cluster::ClusterShard;
use sentinel::SentinelShard;
use two_masters::{MasterSeen, TwoMasters};

/// A cluster failover with no end after this long is closed as timed out.
/// (Clusters publish no failover timeout; ten minutes is far beyond any
/// `cluster-node-timeout` in use.)
const CLUSTER_FAILOVER_LIMIT: f64 = 600.0;

/// A sentinel failover with no end after this long is closed as timed out
/// when the sentinels have not said their failover-timeout yet.
const DEFAULT_SENTINEL_LIMIT: f64 = 360.0;

/// What a machine did with an input.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Nothing changed.
    Unchanged,
    /// The open timeline changed.
    Changed,
    /// The timeline ended (returned, no longer open in the machine).
    Closed(Box<Timeline>),
    /// A suspected failure cleared before any failover began: the timeline is dropped.
    Dropped,
}

impl Step {
    fn changed_if(changed: bool) -> Step {
        if changed {
            Step::Changed
        } else {
            Step::Unchanged
        }
    }

    /// Two changes of the same open timeline as one step.
    fn and(self, other: Step) -> Step {
        Step::changed_if(self == Step::Changed || other == Step::Changed)
    }
}

/// What the monitor knows besides the input.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The deployment name.
    pub deployment: &'a str,
    /// The shard name.
    pub shard: &'a str,
    /// When the input arrived (unix seconds).
    pub at: f64,
    /// Who sent it: a sentinel, or [`POLL`].
    pub reporter: &'a str,
}

/// What the machines produced, for the history to record.
#[derive(Debug, Clone)]
pub enum Effect {
    /// An open timeline changed.
    Changed(Timeline),
    /// A timeline ended.
    Closed(Timeline),
    /// An open timeline was dropped (a suspicion that came to nothing):
    /// nothing to keep, but snapshots must stop listing it.
    Dropped,
    /// For the shard's latest ended timeline: no timeline of it is open.
    Amend {
        /// The shard.
        shard: String,
        /// What to add.
        amendment: Amendment,
    },
}

/// What is learnt about a failover from outside its machine, possibly
/// after it ended.
#[derive(Debug, Clone)]
pub enum Amendment {
    /// The old master came back still claiming role master.
    TwoMasters(Window),
    /// The canary's writes failed or were lost during it.
    Canary(Box<Episode>),
    /// The clients still on its old master after the switch, for the
    /// timeline of this id.
    Clients(String, Box<ClientsLeftBehind>),
}

impl Amendment {
    /// Records it on `t`; false when it does not belong there (a canary
    /// episode outside the failover).
    pub fn apply(&self, t: &mut Timeline) -> bool {
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
            Amendment::Clients(id, left) => {
                let belongs = t.id == *id;
                if belongs {
                    t.clients_left_behind = Some((**left).clone());
                }
                belongs
            }
        }
    }
}

/// Every failover machine of one deployment.
#[derive(Debug, Clone)]
pub struct Machines {
    name: Arc<str>,
    kind: Kind,
    /// The poll interval in seconds: the resolution of cluster timelines.
    poll_interval: f64,
    sentinel: BTreeMap<String, SentinelShard>,
    cluster: BTreeMap<String, ClusterShard>,
    /// Failover timeout x 2 of each sentinel shard, in seconds, as the sentinels report it.
    limits: HashMap<String, f64>,
    /// Shards where more than one node reports role master, since when.
    two_masters: HashMap<String, TwoMasters>,
    /// Per shard, the latest failover that switched: (its id, the old
    /// master, the old master's offset when last polled before the switch),
    /// the base of what a returning old master takes.
    switched_from: HashMap<String, (String, String, u64)>,
    effects: Vec<Effect>,
    /// Shards whose failover state shown in their view changed.
    touched: BTreeSet<String>,
    /// Cluster shards whose settled master changed, or whose failover timed
    /// out: their view is fed again.
    resettled: BTreeSet<String>,
    /// Shards with a failover open: the ones ticks look at, so a quiet
    /// deployment of many shards costs nothing per step.
    open: BTreeSet<String>,
    /// Sentinels in TILT now (their polls, `+tilt` and `-tilt`): a failover
    /// one of them started waits for the TILT's end.
    tilted: BTreeSet<String>,
}

impl Machines {
    /// No failover known.
    pub fn new(name: Arc<str>, kind: Kind, poll_interval: f64) -> Self {
        Machines {
            name,
            kind,
            poll_interval,
            sentinel: BTreeMap::new(),
            cluster: BTreeMap::new(),
            limits: HashMap::new(),
            two_masters: HashMap::new(),
            switched_from: HashMap::new(),
            effects: Vec::new(),
            touched: BTreeSet::new(),
            resettled: BTreeSet::new(),
            tilted: BTreeSet::new(),
            open: BTreeSet::new(),
        }
    }

    /// Puts a timeline read back from disk into its shard's machine.
    pub fn resume(&mut self, t: Timeline) {
        self.recall(&t);
        let shard = t.shard.clone();
        self.open.insert(shard.clone());
        match self.kind {
            Kind::Sentinel => self.sentinel.entry(shard).or_default().open = Some(t),
            Kind::Cluster => self.cluster.entry(shard).or_default().resume(t),
        }
    }

    /// A failover read back from disk: the next one of its shard is named
    /// after it, as in the agents that saw it all along.
    pub fn recall(&mut self, t: &Timeline) {
        self.serial_mut(&t.shard).kept(t);
    }

    /// The failovers in progress.
    pub fn open_timelines(&self) -> impl Iterator<Item = &Timeline> {
        let sentinel = self.sentinel.values().filter_map(|m| m.open.as_ref());
        let cluster = self.cluster.values().filter_map(|m| m.open.as_ref());
        sentinel.chain(cluster)
    }

    /// Whether a failover of `shard` is under way.
    pub fn in_progress(&self, shard: &str) -> bool {
        self.sentinel.get(shard).is_some_and(|m| m.open.is_some())
            || self.cluster.get(shard).is_some_and(|m| m.open.is_some())
    }

    /// For sentinel shards: the sentinels that see the master subjectively
    /// down, and whether one sees it objectively down. Events move these
    /// between polls; polls resync them.
    pub fn down(&self, shard: &str) -> Option<(u32, bool)> {
        let m = self.sentinel.get(shard)?;
        Some((m.sdown.len() as u32, !m.odown.is_empty()))
    }

    /// The master of a cluster shard before any failover in progress.
    pub fn settled(&self, shard: &str) -> Option<&NodeRef> {
        self.cluster.get(shard)?.master.as_ref()
    }

    /// Takes what the machines produced since the last call.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// Takes the shards whose failover state changed since the last call.
    pub fn take_touched(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.touched)
    }

    /// Takes the cluster shards whose settled master changed.
    pub fn take_resettled(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.resettled)
    }

    /// Applies one sentinel event to its shard's machine (events about no
    /// master, such as `+new-epoch`, to every shard with a failover open).
    pub fn on_event(&mut self, event: &Event, reporter: &str, now: f64, intake: &Intake) {
        if event.detail == Detail::Tilt {
            if event.channel.starts_with('+') {
                self.tilted.insert(reporter.to_string());
            } else {
                self.tilted.remove(reporter);
            }
        }
        let shards: Vec<String> = match event.master_name() {
            Some(s) => vec![s.to_string()],
            None => self.open.iter().cloned().collect(),
        };
        for shard in shards {
            let ctx = Context {
                deployment: &self.name,
                shard: &shard,
                at: now,
                reporter,
            };
            let step = self
                .sentinel
                .entry(shard.clone())
                .or_default()
                .on_event(event, &ctx);
            self.touched.insert(shard.clone());
            self.record(&shard, step, intake);
        }
    }

    /// Follows a sentinel's poll: which masters it sees down, their
    /// failover timeouts; `None` when it did not answer (it no longer
    /// counts as seeing anything).
    pub fn on_sentinel_poll(&mut self, sentinel: &str, reading: Option<&SentinelReading>) {
        let Some(reading) = reading else {
            self.forget_sentinel(sentinel);
            return;
        };
        if reading.info.tilt {
            self.tilted.insert(sentinel.to_string());
        } else {
            self.tilted.remove(sentinel);
        }
        for (name, view) in &reading.masters {
            let flags = view.master.flags;
            let m = self.sentinel.entry(name.clone()).or_default();
            let before = (m.sdown.contains(sentinel), m.odown.contains(sentinel));
            let now = (flags.has(Flag::SDown), flags.has(Flag::ODown));
            if before != now {
                m.seen_by(sentinel, now.0, now.1);
                self.touched.insert(name.clone());
            }
            m.serial.saw_epoch(view.master.config_epoch);
            let limit = 2.0 * view.master.failover_timeout_ms as f64 / 1000.0;
            self.limits.insert(name.clone(), limit);
        }
    }

    /// A sentinel left or stopped answering: it sees nothing down.
    pub fn forget_sentinel(&mut self, sentinel: &str) {
        self.tilted.remove(sentinel);
        for (name, m) in &mut self.sentinel {
            if m.sdown.contains(sentinel) || m.odown.contains(sentinel) {
                m.seen_by(sentinel, false, false);
                self.touched.insert(name.clone());
            }
        }
    }

    /// Forgets shards that are gone (a master no sentinel lists any more, a
    /// cluster shard without nodes) unless a failover of theirs is open.
    pub fn forget_shards(&mut self, current: &BTreeMap<String, ShardPlan>) {
        self.sentinel
            .retain(|name, m| current.contains_key(name) || m.open.is_some());
        self.cluster
            .retain(|name, m| current.contains_key(name) || m.open.is_some());
        self.limits.retain(|name, _| current.contains_key(name));
        self.two_masters
            .retain(|name, _| current.contains_key(name));
        self.switched_from
            .retain(|name, _| current.contains_key(name));
        self.open
            .retain(|name| self.sentinel.contains_key(name) || self.cluster.contains_key(name));
    }

    /// Moves the open sentinel failovers on: timeouts, and failovers the
    /// polls show over (the sentinels agree on another master and none
    /// flags a failover in progress).
    pub fn tick_sentinel(
        &mut self,
        now: f64,
        plans: &BTreeMap<String, ShardPlan>,
        intake: &Intake,
    ) {
        for name in self.open.clone() {
            let limit = self
                .limits
                .get(&name)
                .copied()
                .unwrap_or(DEFAULT_SENTINEL_LIMIT);
            let settled = plans
                .get(&name)
                .and_then(|p| p.sentinel.as_ref())
                .filter(|s| s.view.agreement && !s.failover_flagged)
                .and_then(|s| s.view.master_addr.clone());
            let machine = self.sentinel.get_mut(&name).expect("listed above");
            let mut steps = vec![machine.on_tick(now, limit, &self.tilted)];
            if let Some(master) = settled {
                steps.push(machine.on_settled(&master, now));
            }
            for step in steps {
                self.record(&name, step, intake);
            }
        }
    }

    /// Feeds cluster shards their new views, and times out the open
    /// failovers.
    pub fn on_cluster_views(
        &mut self,
        now: f64,
        views: Vec<(String, ClusterShardView)>,
        intake: &Intake,
    ) {
        for (name, view) in views {
            let machine = self.cluster.entry(name.clone()).or_default();
            let before = machine.master.clone();
            let ctx = Context {
                deployment: &self.name,
                shard: &name,
                at: now,
                reporter: POLL,
            };
            let step = machine.on_view(&view, &ctx, self.poll_interval);
            // After the view: a failover it opened is named by the epoch
            // before it.
            machine.serial.saw_epoch(view.epoch);
            if machine.master != before {
                self.resettled.insert(name.clone());
            }
            self.record(&name, step, intake);
        }
        for name in self.open.clone() {
            let step = self
                .cluster
                .get_mut(&name)
                .expect("listed above")
                .on_tick(now, CLUSTER_FAILOVER_LIMIT);
            // A failover that timed out while the views still suspect the
            // master opens again at the next view, as it would at the next poll.
            if matches!(step, Step::Closed(_)) {
                self.resettled.insert(name.clone());
            }
            self.record(&name, step, intake);
        }
    }

    /// Follows the nodes of a shard that report role master: more than one
    /// opens a two-masters window on the shard's failover, one or none
    /// closes it. While it lasts, what the nodes other than `master` (the
    /// shard's master as the sentinels or the slot map name it) take is
    /// counted: write commands since the window opened, replication bytes
    /// since the switch (for the failover's old master) or since the window
    /// opened.
    pub fn masters_seen(
        &mut self,
        shard: &str,
        masters: Vec<MasterSeen>,
        master: Option<&str>,
        now: f64,
    ) {
        if masters.len() <= 1 {
            let Some(mut two) = self.two_masters.remove(shard) else {
                return;
            };
            two.window.end = Some(now);
            self.amend(shard, Amendment::TwoMasters(two.window));
            return;
        }
        let switched_from = self
            .switched_from
            .get(shard)
            .map(|(_, addr, offset)| (addr.as_str(), *offset));
        let mut fresh = false;
        let two = self
            .two_masters
            .entry(shard.to_string())
            .or_insert_with(|| {
                fresh = true;
                TwoMasters::open(now)
            });
        if two.see(&masters, master, switched_from) || fresh {
            let window = two.window.clone();
            self.amend(shard, Amendment::TwoMasters(window));
        }
    }

    /// The shard's two-masters window while it lasts.
    pub fn two_masters(&self, shard: &str) -> Option<&Window> {
        self.two_masters.get(shard).map(|t| &t.window)
    }

    /// Records an amendment on the shard's open timeline, or else on its
    /// latest ended one (a read of clients left behind that is not about
    /// the open timeline is about an ended one).
    pub fn amend(&mut self, shard: &str, amendment: Amendment) {
        let applied = self
            .open_mut(shard)
            .map(|t| amendment.apply(t).then(|| t.clone()));
        match applied {
            Some(Some(t)) => self.effects.push(Effect::Changed(t)),
            Some(None) if !matches!(amendment, Amendment::Clients(..)) => {}
            _ => self.effects.push(Effect::Amend {
                shard: shard.to_string(),
                amendment,
            }),
        }
    }

    fn open_mut(&mut self, shard: &str) -> Option<&mut Timeline> {
        match self.kind {
            Kind::Sentinel => self.sentinel.get_mut(shard)?.open.as_mut(),
            Kind::Cluster => self.cluster.get_mut(shard)?.open.as_mut(),
        }
    }

    fn serial_mut(&mut self, shard: &str) -> &mut Serial {
        match self.kind {
            Kind::Sentinel => &mut self.sentinel.entry(shard.to_string()).or_default().serial,
            Kind::Cluster => &mut self.cluster.entry(shard.to_string()).or_default().serial,
        }
    }

    /// Completes what a step produced with what the polls know (last_ok,
    /// writes at risk) and queues it for the history.
    fn record(&mut self, shard: &str, step: Step, intake: &Intake) {
        let open = self.open_mut(shard).is_some();
        if open != self.open.contains(shard) {
            if open {
                self.open.insert(shard.to_string());
            } else {
                self.open.remove(shard);
            }
        }
        match step {
            Step::Unchanged => {}
            Step::Dropped => {
                self.touched.insert(shard.to_string());
                self.effects.push(Effect::Dropped);
            }
            Step::Changed => {
                self.touched.insert(shard.to_string());
                if let Some(t) = self.open_mut(shard) {
                    enrich(t, intake);
                    let t = t.clone();
                    self.keep(&t);
                    self.note_switch(&t, intake);
                    self.effects.push(Effect::Changed(t));
                }
            }
            Step::Closed(mut t) => {
                self.touched.insert(shard.to_string());
                enrich(&mut t, intake);
                self.keep(&t);
                self.note_switch(&t, intake);
                self.effects.push(Effect::Closed(*t));
            }
        }
    }
}

impl Machines {
    /// A failover that really began names the next one of its shard (a
    /// suspicion that cleared is kept nowhere, so it names nothing).
    fn keep(&mut self, t: &Timeline) {
        if t.worth_keeping() {
            self.serial_mut(&t.shard).kept(t);
        }
    }

    /// Remembers the old master's last polled offset when a failover first
    /// shows its switch.
    fn note_switch(&mut self, t: &Timeline, intake: &Intake) {
        let (Some(_), Some(old)) = (t.switched(), &t.old_master) else {
            return;
        };
        if self
            .switched_from
            .get(&t.shard)
            .is_some_and(|(id, _, _)| *id == t.id)
        {
            return;
        }
        if let Some(r) = intake.node(old).0 {
            let offset = r.replication.master_repl_offset;
            self.switched_from
                .insert(t.shard.clone(), (t.id.clone(), old.clone(), offset));
        }
    }
}

/// Adds what only polls can tell: when the old master last answered
/// (`last_ok`), and the bytes the new master lacked when promoted.
fn enrich(t: &mut Timeline, intake: &Intake) {
    let (Some(_), Some(old)) = (t.switched(), t.old_master.clone()) else {
        return;
    };
    if t.at(MarkName::LastOk).is_none() {
        if let Some(ok) = intake
            .get(TargetKind::Node, &old)
            .and_then(|s| s.last_success)
        {
            t.mark(MarkName::LastOk, unix(ok), POLL);
        }
    }
    if t.unreplicated_bytes.is_none() {
        if let Some(new) = &t.new_master {
            t.unreplicated_bytes = unreplicated(intake, &old, new);
        }
    }
}

/// The old master's last seen offset minus the promoted replica's last
/// seen offset (as a replica, or as its master last listed it).
fn unreplicated(intake: &Intake, old: &str, new: &str) -> Option<u64> {
    let old_reading = intake.node(old).0?;
    let master_offset = old_reading.replication.master_repl_offset;
    let listed = old_reading
        .replication
        .replicas
        .iter()
        .find(|r| r.addr == new)
        .map(|r| r.offset);
    let own = match intake.node(new).0.map(|r| &r.replication) {
        Some(r) if r.role == Role::Replica => r.upstream.as_ref().map(|u| u.offset),
        Some(r) => Some(r.master_repl_offset),
        None => None,
    };
    let best = own.max(listed)?;
    Some(master_offset.saturating_sub(best))
}
