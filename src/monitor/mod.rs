//! The monitor: the single owner of state, as stages with one owner each.
//!
//! ```text
//! inputs ─► intake ─► derive ─► failover machines ─► views ─► alerts ─► snapshot
//!           (per target,  (pure; only what  (events as they   (in place,  (changed
//!            compares)     changed)          come; views when  shared)     scopes)
//!                                            they change)
//! ```
//!
//! - [`intake`]: each poll replaces its target's reading and says whether
//!   anything a view reads changed.
//! - [`derive`]: pure functions from readings to views; the topology only
//!   when a reading it uses changed, a shard when one of its nodes polled.
//! - [`failover`]: the failover machines and the history of ended ones.
//! - [`deployment`]: one deployment through those stages, its view
//!   updated in place ([`views`]).
//! - [`alerts`]: the rules, once per batch on the snapshot about to be
//!   published, looking only at what changed.
//!
//! Everything here is synchronous and free of I/O ([`run`] is the loop
//! that feeds it), so it is tested by feeding it inputs built from
//! recorded replies.

pub mod alerts;
mod changes;
pub mod deployment;
pub mod derive;
pub mod failover;
pub mod findings;
pub mod intake;
mod run;
pub mod views;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use crate::config::Config;
use crate::model::alert::Transition;
use crate::model::snapshot::{AlertsView, DeploymentView, FailoverView, Snapshot};
use crate::model::timeline::Timeline;
use crate::model::Input;
use crate::util::time::unix;
use alerts::{Changed, Engine};
use deployment::DeploymentState;
use failover::history::{EventLog, History};
use failover::{Amendment, Effect};
pub use run::{run, Outputs};

/// Raw sentinel events kept for the API.
const RECENT_EVENTS: usize = 1000;

/// Owns the state of every deployment.
pub struct Monitor {
    deployments: Vec<DeploymentState>,
    history: History,
    events: EventLog,
    failovers: Arc<FailoverView>,
    failovers_dirty: bool,
    engine: Engine,
    alerts: Arc<AlertsView>,
    /// The latest time any batch carried: time never moves backwards.
    last_now: f64,
    /// Every target known at some moment had been polled. Latched: a newly
    /// discovered target does not make a serving agent unready.
    ready: bool,
    generation: u64,
    topology: u64,
    current: Arc<Snapshot>,
}

impl Monitor {
    /// Starts from the configured seeds and the timelines read back from
    /// disk: ended ones are listed, open ones resume where they were.
    /// `firing` is what alerts were firing when the agent stopped.
    pub fn new(config: &Config, restored: Vec<Timeline>, firing: Vec<Transition>) -> Self {
        let poll_interval = config.poll_interval.as_secs_f64();
        let mut deployments: Vec<DeploymentState> = config
            .deployments
            .iter()
            .map(|d| DeploymentState::new(d, poll_interval, &config.findings))
            .collect();
        let mut history = History::new(config.timelines.keep_per_shard);
        let engine = Engine::new(&config.alerts, &restored, firing);
        let (open, ended): (Vec<Timeline>, Vec<Timeline>) =
            restored.into_iter().partition(Timeline::is_open);
        let owner = |deployments: &[DeploymentState], t: &Timeline| -> Option<usize> {
            deployments
                .iter()
                .position(|d| *d.name == *t.deployment && d.config.kind == t.kind)
        };
        for t in &ended {
            if let Some(i) = owner(&deployments, t) {
                deployments[i].recall(t);
            }
        }
        history.restore(ended);
        for t in open {
            if let Some(i) = owner(&deployments, &t) {
                deployments[i].resume(t);
            }
        }
        let mut monitor = Monitor {
            deployments,
            history,
            events: EventLog::new(RECENT_EVENTS),
            failovers: Arc::default(),
            failovers_dirty: true,
            engine,
            alerts: Arc::default(),
            last_now: 0.0,
            ready: false,
            generation: 0,
            topology: 0,
            current: Arc::default(),
        };
        monitor.publish(0.0);
        monitor
    }

    /// Applies one input.
    pub fn apply(&mut self, input: Input) {
        self.apply_all([input]);
    }

    /// Applies a batch of inputs in order, then moves each deployment on
    /// once and publishes one snapshot: a burst of polls costs one step,
    /// not one each. Inputs for targets that left the topology (a poller
    /// finishing its last poll) are ignored.
    pub fn apply_all(&mut self, inputs: impl IntoIterator<Item = Input>) {
        let mut latest = 0.0_f64;
        for input in inputs {
            let deployment = match &input {
                Input::Poll(o) => &o.target.deployment,
                Input::Event(e) => &e.target.deployment,
                Input::Subscription { target, .. } => &target.deployment,
                Input::Canary(report) => &report.deployment,
                Input::Clients(report) => &report.deployment,
            };
            let Some(d) = self
                .deployments
                .iter_mut()
                .find(|d| *d.name == **deployment)
            else {
                continue;
            };
            match input {
                Input::Poll(obs) => {
                    latest = latest.max(unix(obs.at));
                    d.on_poll(obs);
                }
                Input::Event(msg) => {
                    let now = unix(msg.at);
                    latest = latest.max(now);
                    if let Some(event) = d.relevant(&msg) {
                        let first = self.events.record(
                            &d.name,
                            &msg.target.addr,
                            &msg.channel,
                            &msg.payload,
                            now,
                        );
                        self.failovers_dirty = true;
                        d.on_event(&event, &msg.target.addr, first, now);
                    }
                }
                Input::Subscription { target, up } => d.on_subscription(&target, up),
                Input::Canary(report) => {
                    latest = latest.max(unix(report.at));
                    d.on_canary(report);
                }
                Input::Clients(report) => {
                    latest = latest.max(unix(report.at));
                    d.machines.amend(
                        &report.shard,
                        Amendment::Clients(report.timeline, Box::new(report.left)),
                    );
                }
            }
        }
        let now = if latest > 0.0 {
            latest
        } else {
            unix(SystemTime::now())
        };
        // A batch holding only a slow poll must not move time backwards.
        let now = now.max(self.last_now);
        self.last_now = now;
        self.publish(now);
    }

    /// Steps every deployment, records what the failover machines
    /// produced, evaluates the alert rules on what changed, and publishes
    /// the batch's one snapshot.
    fn publish(&mut self, now: f64) {
        let changed: Vec<Changed> = self.deployments.iter_mut().map(|d| d.step(now)).collect();
        for d in &mut self.deployments {
            for effect in d.machines.take_effects() {
                self.failovers_dirty = true;
                match effect {
                    Effect::Changed(t) => self.history.changed(&t),
                    Effect::Closed(t) => self.history.closed(t),
                    Effect::Dropped => {}
                    Effect::Amend { shard, amendment } => {
                        self.history
                            .amend_latest(&d.name, &shard, |t| amendment.apply(t))
                    }
                }
            }
        }
        let failovers_changed = std::mem::take(&mut self.failovers_dirty);
        if failovers_changed {
            self.failovers = Arc::new(self.failover_view());
        }
        self.ready = self.ready || self.deployments.iter().all(DeploymentState::polled);
        let views: Vec<Arc<DeploymentView>> = self
            .deployments
            .iter()
            .map(|d| Arc::new(d.view().clone()))
            .collect();
        let first = self.generation == 0;
        if self.engine.evaluate(
            &views,
            &changed,
            &self.failovers,
            failovers_changed,
            self.ready,
            now,
        ) || first
        {
            self.alerts = Arc::new(AlertsView {
                firing: self.engine.firing(),
                rules: self.engine.rules(),
            });
        }
        self.generation += 1;
        if changed.iter().any(|c| c.all) {
            self.topology += 1;
        }
        self.current = Arc::new(Snapshot {
            generation: self.generation,
            topology: self.topology,
            ready: self.ready,
            deployments: views,
            failovers: self.failovers.clone(),
            alerts: self.alerts.clone(),
        });
    }

    /// What snapshots show about failovers and events.
    fn failover_view(&self) -> FailoverView {
        let mut timelines: Vec<Timeline> = self
            .deployments
            .iter()
            .flat_map(|d| d.machines.open_timelines())
            .cloned()
            .collect();
        timelines.sort_by(|a, b| {
            b.started()
                .partial_cmp(&a.started())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        timelines.extend(self.history.ended().cloned());
        let mut last_ended = HashMap::new();
        for (i, t) in timelines.iter().enumerate().filter(|(_, t)| !t.is_open()) {
            last_ended
                .entry((t.deployment.clone(), t.shard.clone()))
                .or_insert(i);
        }
        FailoverView {
            last_ended,
            timelines,
            totals: self.history.totals.clone(),
            phases: self.history.phases.clone(),
            events: self.events.recent().cloned().collect(),
        }
    }

    /// The snapshot of the last batch.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.clone()
    }

    /// Alert transitions since the last call, to notify.
    pub fn take_transitions(&mut self) -> Vec<Transition> {
        self.engine.take_transitions()
    }

    /// Timelines to append to the store since the last call.
    pub fn take_changed_timelines(&mut self) -> Vec<Timeline> {
        self.history.take_changed()
    }

    /// Every deployment's view derived from scratch from the monitor's
    /// state: what the last snapshot must show. The reference the
    /// incremental derivation is tested against.
    pub fn reference(&self) -> Vec<DeploymentView> {
        self.deployments
            .iter()
            .map(|d| d.reference(self.last_now))
            .collect()
    }
}
