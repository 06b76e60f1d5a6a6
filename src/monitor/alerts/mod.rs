//! The built-in alert rules and their lifecycle, evaluated once per batch
//! on the snapshot about to be published.
//!
//! Each rule reads one part of a snapshot ([`Scope`]: a target, a shard, a
//! cluster as a whole). The engine keeps what holds per scope and looks
//! again only at the scopes the batch changed, so an unchanged poll costs
//! no evaluation; conditions that depend on time alone (`for`, open slots
//! growing old, event alerts' `hold`) are checked every batch on the few
//! alerts pending, firing or waiting. [`Engine::evaluate`] with every scope
//! changed is the full evaluation the incremental one must equal.

pub mod rules;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Alerts, RuleConfig, RuleName, Severity};
use crate::model::alert::{failover_page, Alert, Transition};
use crate::model::snapshot::{DeploymentView, FailoverView};
use crate::model::timeline::{Outcome, Timeline};
use crate::model::TargetKind;
use crate::util::hash::Fnv;
use rules::{Condition, Thresholds, DEFAULTS};

const DEFAULT_HOLD: Duration = Duration::from_secs(300);

/// How long a completed failover's alert waits for the canary's figures.
/// The probe reports within an interval or two of writes resuming after the
/// switch; a canary that cannot write does not hold the alert back longer.
const CANARY_WAIT: f64 = 10.0;

/// The part of a snapshot a condition reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// A target of a deployment.
    Target(Arc<str>, TargetKind, String),
    /// A shard of a deployment.
    Shard(Arc<str>, String),
    /// A cluster as a whole.
    Cluster(Arc<str>),
    /// A deployment's findings.
    Findings(Arc<str>),
}

/// What a batch changed in one deployment's view.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changed {
    /// Everything (the first batch, or targets or shards came or went).
    pub all: bool,
    /// Indexes in the view's targets of the targets whose view changed.
    pub targets: Vec<usize>,
    /// Indexes in the view's shards of the shards whose view changed.
    pub shards: Vec<usize>,
    /// The cluster-wide view changed (every shard's scope reads it too).
    pub cluster: bool,
    /// The findings changed.
    pub findings: bool,
}

/// One rule with its effective settings.
#[derive(Debug, Clone)]
struct Rule {
    severity: Severity,
    for_: f64,
    config: RuleConfig,
}

/// Evaluates the rules and remembers what fires.
#[derive(Debug, Clone)]
pub struct Engine {
    rules: BTreeMap<RuleName, Rule>,
    thresholds: Thresholds,
    /// What holds, by scope, as of the last look at it.
    holding: HashMap<Scope, Vec<Alert>>,
    /// Conditions waiting out their `for`: fingerprint -> (first seen,
    /// its rule's `for`). Kept with its time to fire, so that every batch's
    /// look at what is due costs one comparison each, not a search of
    /// what holds (hundreds of findings can wait out ConfigurationRisk's
    /// ten minutes at once).
    pending: HashMap<String, (f64, f64)>,
    firing: BTreeMap<String, Alert>,
    /// Event alerts (a failover ended): fingerprint -> (alert, until).
    events: BTreeMap<String, (Alert, f64)>,
    /// Ended failovers already turned into events (or ended before start).
    seen_ended: HashSet<String>,
    /// Failovers whose switch was already an event (or before start).
    seen_switched: HashSet<String>,
    /// `alerts.external_url`: alerts about a failover link to its page.
    external_url: Option<String>,
    /// Ended failovers whose alert waits for the canary.
    awaiting: bool,
    /// Alerts that were firing when the agent stopped: they stay firing,
    /// without a new notification, until the first complete picture says
    /// whether they still hold.
    restored: HashSet<String>,
    /// Transitions not yet taken by [`Engine::take_transitions`].
    transitions: Vec<Transition>,
}

impl Engine {
    /// The rules with the configured changes applied. `restored` are the
    /// timelines read back at start: their switches and ends are not news,
    /// and raise no event alert. `firing` is what was firing when the agent
    /// stopped (as the delivery side recorded it).
    pub fn new(config: &Alerts, restored: &[Timeline], firing: Vec<Transition>) -> Self {
        let rules: BTreeMap<RuleName, Rule> = DEFAULTS
            .iter()
            .filter_map(|(name, severity, for_)| {
                let c = config.rules.get(name).cloned().unwrap_or_default();
                (c.enabled != Some(false)).then(|| {
                    let rule = Rule {
                        severity: c.severity.unwrap_or(*severity),
                        for_: c.for_.map_or(*for_ as f64, |d| d.as_secs_f64()),
                        config: c,
                    };
                    (*name, rule)
                })
            })
            .collect();
        let thresholds = Thresholds::new(|name| rules.get(&name).map(|r| r.config.clone()));
        let mut engine = Engine {
            rules,
            thresholds,
            holding: HashMap::new(),
            pending: HashMap::new(),
            firing: BTreeMap::new(),
            events: BTreeMap::new(),
            seen_ended: ids(restored, |t| !t.is_open()),
            seen_switched: ids(restored, |t| t.switch_seen().is_some()),
            external_url: config.external_url.clone(),
            awaiting: false,
            restored: HashSet::new(),
            transitions: Vec::new(),
        };
        for t in firing.into_iter().filter(|t| t.resolved_at.is_none()) {
            let fp = t.alert.fingerprint.clone();
            match t.until {
                Some(until) => {
                    engine.events.insert(fp, (t.alert, until));
                }
                None => {
                    engine.restored.insert(fp.clone());
                    engine.firing.insert(fp, t.alert);
                }
            }
        }
        engine
    }

    /// The transitions since the last call, in the order they happened.
    pub fn take_transitions(&mut self) -> Vec<Transition> {
        std::mem::take(&mut self.transitions)
    }

    /// The enabled rules and their severities, for the firing gauge.
    pub fn rules(&self) -> Vec<(RuleName, Severity)> {
        self.rules.iter().map(|(n, r)| (*n, r.severity)).collect()
    }

    /// Alerts firing now, by fingerprint order.
    pub fn firing(&self) -> Vec<Alert> {
        self.firing
            .values()
            .chain(self.events.values().map(|(a, _)| a))
            .cloned()
            .collect()
    }

    /// Moves every alert on: looks again at the scopes `changed` names
    /// (one entry per deployment, in order), fires what held for its
    /// `for`, resolves what stopped, turns failovers that ended into event
    /// alerts when `failovers_changed`. `ready`: every target has answered
    /// once, so alerts restored from disk that no longer hold resolve.
    /// Returns whether the firing set changed.
    pub fn evaluate(
        &mut self,
        deployments: &[Arc<DeploymentView>],
        changed: &[Changed],
        failovers: &FailoverView,
        failovers_changed: bool,
        ready: bool,
        now: f64,
    ) -> bool {
        let mut news = false;
        if failovers_changed || self.awaiting {
            news |= self.failover_events(deployments, failovers, now);
        }
        for (d, c) in deployments.iter().zip(changed) {
            news |= self.look(d, c, failovers, now);
        }
        news |= self.promote(now);
        news |= self.expire(now);
        if ready && !self.restored.is_empty() {
            let stale: Vec<String> = self
                .restored
                .drain()
                .filter(|fp| {
                    !self
                        .holding
                        .values()
                        .flatten()
                        .any(|a| a.fingerprint == *fp)
                })
                .collect();
            for fp in stale {
                if let Some(alert) = self.firing.remove(&fp) {
                    self.resolve(alert, now, None);
                    news = true;
                }
            }
        }
        news
    }

    /// Looks again at the changed scopes of one deployment.
    fn look(
        &mut self,
        d: &DeploymentView,
        c: &Changed,
        failovers: &FailoverView,
        now: f64,
    ) -> bool {
        let name = &d.name;
        let mut fresh: Vec<(Scope, Vec<Condition>)> = Vec::new();
        let targets: Box<dyn Iterator<Item = usize>> = if c.all {
            Box::new(0..d.targets.len())
        } else {
            Box::new(c.targets.iter().copied())
        };
        for i in targets {
            let t = &d.targets[i];
            let scope = Scope::Target(name.clone(), t.id.kind, t.id.addr.clone());
            fresh.push((scope, rules::target(d, t)));
        }
        let shards: Box<dyn Iterator<Item = usize>> = if c.all || c.cluster {
            Box::new(0..d.shards.len())
        } else {
            Box::new(c.shards.iter().copied())
        };
        for i in shards {
            let s = &d.shards[i];
            let scope = Scope::Shard(name.clone(), s.name.clone());
            fresh.push((scope, rules::shard(d, s, failovers, &self.thresholds)));
        }
        if c.all || c.findings {
            let scope = Scope::Findings(name.clone());
            fresh.push((scope, rules::findings(d)));
        }
        let mut news = false;
        // Open slots grow old without any change: a cluster with some is
        // looked at every time.
        let open_slots = d.slots().is_some_and(|s| !s.open.is_empty());
        if let (true, Some(cv)) = (c.all || c.cluster || open_slots, &d.cluster) {
            let scope = Scope::Cluster(name.clone());
            match rules::cluster(d, cv, &self.thresholds, now) {
                Some(conditions) => fresh.push((scope, conditions)),
                // Unknown, not healthy: what fires keeps firing, what was
                // waiting out its `for` starts again once it is known.
                None => {
                    let kept: Vec<Alert> = self
                        .holding
                        .get(&scope)
                        .into_iter()
                        .flatten()
                        .filter(|a| self.firing.contains_key(&a.fingerprint))
                        .cloned()
                        .collect();
                    news |= self.replace(scope, kept, now);
                }
            }
        }
        if c.all {
            // Scopes of targets and shards that left hold nothing now.
            let gone: Vec<Scope> = self
                .holding
                .keys()
                .filter(|s| deployment_of(s) == &**name)
                .filter(|s| !fresh.iter().any(|(f, _)| f == *s) && !matches!(s, Scope::Cluster(_)))
                .cloned()
                .collect();
            for scope in gone {
                news |= self.replace(scope, Vec::new(), now);
            }
        }
        for (scope, conditions) in fresh {
            let alerts = conditions
                .into_iter()
                .filter_map(|c| Some(self.alert(self.rules.get(&c.rule)?, c, now)))
                .collect();
            news |= self.replace(scope, alerts, now);
        }
        news
    }

    /// Records what holds in `scope` now: new conditions start waiting out
    /// their `for`, firing ones get their current figures, those that
    /// stopped are resolved (or stop waiting).
    fn replace(&mut self, scope: Scope, alerts: Vec<Alert>, now: f64) -> bool {
        let mut news = false;
        let before = self.holding.remove(&scope).unwrap_or_default();
        for alert in &alerts {
            if let Some(firing) = self.firing.get_mut(&alert.fingerprint) {
                self.restored.remove(&alert.fingerprint);
                if firing.annotations != alert.annotations {
                    firing.annotations = alert.annotations.clone();
                    news = true;
                }
            } else {
                let wait = self.rules.get(&alert.rule).map_or(0.0, |r| r.for_);
                self.pending
                    .entry(alert.fingerprint.clone())
                    .or_insert((now, wait));
            }
        }
        for old in before {
            if alerts.iter().any(|a| a.fingerprint == old.fingerprint) {
                continue;
            }
            self.pending.remove(&old.fingerprint);
            if self.restored.contains(&old.fingerprint) {
                continue;
            }
            if let Some(alert) = self.firing.remove(&old.fingerprint) {
                self.resolve(alert, now, None);
                news = true;
            }
        }
        if !alerts.is_empty() {
            self.holding.insert(scope, alerts);
        }
        news
    }

    /// Fires the pending conditions that held for their `for`.
    fn promote(&mut self, now: f64) -> bool {
        let due: Vec<(String, f64)> = self
            .pending
            .iter()
            .filter(|(_, (first, wait))| now - first >= *wait)
            .map(|(fp, (first, _))| (fp.clone(), *first))
            .collect();
        for (fp, first) in &due {
            self.pending.remove(fp);
            let Some(mut alert) = self.holding_alert(fp).cloned() else {
                continue;
            };
            alert.since = *first;
            self.firing.insert(fp.clone(), alert.clone());
            self.transitions.push(Transition {
                alert,
                resolved_at: None,
                until: None,
            });
        }
        !due.is_empty()
    }

    fn holding_alert(&self, fp: &str) -> Option<&Alert> {
        self.holding
            .values()
            .flatten()
            .find(|a| a.fingerprint == fp)
    }

    /// Resolves the event alerts whose `hold` is over.
    fn expire(&mut self, now: f64) -> bool {
        let (keep, expired): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(&mut self.events)
            .into_iter()
            .partition(|(_, (_, until))| now < *until);
        self.events = keep;
        let news = !expired.is_empty();
        for (_, (alert, until)) in expired {
            self.resolve(alert, now, Some(until));
        }
        news
    }

    fn resolve(&mut self, alert: Alert, now: f64, until: Option<f64>) {
        self.transitions.push(Transition {
            alert,
            resolved_at: Some(now),
            until,
        });
    }

    fn alert(&self, rule: &Rule, c: Condition, now: f64) -> Alert {
        let mut all: BTreeMap<String, String> = rule.config.labels.clone();
        all.insert("alertname".into(), c.rule.to_string());
        all.insert("severity".into(), rule.severity.as_str().into());
        for (k, v) in c.labels {
            all.insert(k.to_string(), v);
        }
        let mut annotations = rule.config.annotations.clone();
        annotations.insert("summary".into(), c.summary);
        if let (Some(url), Some(id)) = (&self.external_url, all.get("failover")) {
            if let Some(page) = failover_page(url, id) {
                annotations.insert("failover_url".into(), page);
            }
        }
        Alert {
            fingerprint: fingerprint(&all),
            rule: c.rule,
            severity: rule.severity,
            labels: all,
            annotations,
            since: now,
        }
    }

    /// Turns failovers that switched or ended since the last look into
    /// event alerts that stay firing for their `hold`: the switch at once,
    /// the end once the canary's figures are in. Those already switched or
    /// ended at the first evaluation (read back from disk) are history, not
    /// news.
    fn failover_events(
        &mut self,
        deployments: &[Arc<DeploymentView>],
        failovers: &FailoverView,
        now: f64,
    ) -> bool {
        // Bounded like the timelines themselves.
        let known: HashSet<&str> = failovers.timelines.iter().map(|t| t.id.as_str()).collect();
        self.seen_ended.retain(|id| known.contains(id.as_str()));
        self.seen_switched.retain(|id| known.contains(id.as_str()));
        self.awaiting = false;
        let mut events = Vec::new();
        for t in &failovers.timelines {
            if t.switch_seen().is_some() && self.seen_switched.insert(t.id.clone()) {
                events.push(rules::switched(t));
            }
            if t.is_open() || self.seen_ended.contains(&t.id) {
                continue;
            }
            if awaits_canary(deployments, t, now) {
                self.awaiting = true;
                continue;
            }
            self.seen_ended.insert(t.id.clone());
            events.push(rules::ended(t));
        }
        let news = !events.is_empty();
        for (condition, figures) in events {
            let Some(rule) = self.rules.get(&condition.rule) else {
                continue;
            };
            let until = now + rule.config.hold.unwrap_or(DEFAULT_HOLD).as_secs_f64();
            let mut alert = self.alert(rule, condition, now);
            alert.annotations.extend(figures);
            self.transitions.push(Transition {
                alert: alert.clone(),
                resolved_at: None,
                until: Some(until),
            });
            self.events
                .insert(alert.fingerprint.clone(), (alert, until));
        }
        news
    }
}

/// The ids of the timelines that `pick` picks.
fn ids(timelines: &[Timeline], pick: impl Fn(&Timeline) -> bool) -> HashSet<String> {
    timelines
        .iter()
        .filter(|t| pick(t))
        .map(|t| t.id.clone())
        .collect()
}

/// The deployment a scope belongs to.
fn deployment_of(scope: &Scope) -> &str {
    match scope {
        Scope::Target(d, _, _) | Scope::Shard(d, _) | Scope::Cluster(d) | Scope::Findings(d) => d,
    }
}

/// Whether a completed failover's alert waits for the canary's figures:
/// the shard has a canary, it has not reported on this failover yet, and
/// the failover ended less than [`CANARY_WAIT`] ago.
fn awaits_canary(deployments: &[Arc<DeploymentView>], t: &Timeline, now: f64) -> bool {
    t.outcome == Some(Outcome::Completed)
        && t.canary.is_none()
        && t.ended().is_some_and(|end| now - end < CANARY_WAIT)
        && deployments
            .iter()
            .any(|d| *d.name == *t.deployment && d.canaries.iter().any(|c| c.shard == t.shard))
}

/// A hash of the sorted labels: stable across restarts and versions.
fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h = Fnv::default();
    for (k, v) in labels {
        h.write(k.as_bytes());
        h.write(&[0xff]);
        h.write(v.as_bytes());
        h.write(&[0xfe]);
    }
    format!("{:016x}", h.0)
}
