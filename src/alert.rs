//! The built-in alert rules and their lifecycle, evaluated on every
//! snapshot (so within one batch of polls or events of a change). Pure: the
//! monitor calls [`Engine::evaluate`] and shares [`Engine::firing`].
//!
//! docs/alerts.md says what fires each rule and what to do.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Alerts, RuleConfig, RuleName, Severity};
use crate::model::Role as TargetRole;
use crate::parse::info::Role;
use crate::snapshot::{DeploymentView, Snapshot};
use crate::timeline::{worth_keeping, Outcome, Timeline};

/// One rule with its effective settings.
#[derive(Debug, Clone)]
struct Rule {
    severity: Severity,
    for_: f64,
    config: RuleConfig,
}

/// Defaults: (rule, severity, for in seconds). Public so that the
/// Prometheus rules of `alerts/` can be checked against them.
pub const DEFAULTS: &[(RuleName, Severity, u64)] = &[
    (RuleName::FailoverStarted, Severity::Critical, 0),
    (RuleName::FailoverCompleted, Severity::Warning, 0),
    (RuleName::FailoverAborted, Severity::Critical, 0),
    (RuleName::MultipleMasters, Severity::Critical, 0),
    (RuleName::NoMaster, Severity::Critical, 10),
    (RuleName::SentinelQuorumLost, Severity::Critical, 10),
    (RuleName::SentinelsDisagree, Severity::Warning, 30),
    (RuleName::SentinelTilt, Severity::Warning, 0),
    (RuleName::SlotCoverageLost, Severity::Critical, 0),
    (RuleName::ClusterStateFail, Severity::Critical, 0),
    (RuleName::ClusterConfigDiverged, Severity::Warning, 60),
    (RuleName::OpenSlotsStuck, Severity::Warning, 0),
    (RuleName::ReplicaLagHigh, Severity::Warning, 30),
    (RuleName::ReplicaLinkDown, Severity::Warning, 30),
    (RuleName::ShardWithoutReplica, Severity::Warning, 60),
    (RuleName::TargetDown, Severity::Warning, 30),
];

const DEFAULT_LAG_BYTES: u64 = 100 * 1024 * 1024;
const DEFAULT_LAG_TIME: Duration = Duration::from_secs(30);
const DEFAULT_OPEN_FOR: Duration = Duration::from_secs(600);
const DEFAULT_HOLD: Duration = Duration::from_secs(300);

/// How long a completed failover's alert waits for the canary's figures.
/// The probe reports within an interval or two of writes resuming after the
/// switch; a canary that cannot write does not hold the alert back longer.
const CANARY_WAIT: f64 = 10.0;

/// An alert firing now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The rule.
    #[serde(rename = "alertname")]
    pub rule: RuleName,
    /// `critical`, `warning` or `info`.
    pub severity: Severity,
    /// Identifying labels (alertname and severity included).
    pub labels: BTreeMap<String, String>,
    /// Summary and description, plus configured extras.
    pub annotations: BTreeMap<String, String>,
    /// When it started firing (unix seconds).
    pub since: f64,
    /// Stable id from the labels: the same condition is the same alert.
    pub fingerprint: String,
}

/// An alert that started firing, or stopped: one notification each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// The alert as it was at the transition.
    pub alert: Alert,
    /// When it resolved (unix seconds); `None` when it started firing.
    pub resolved_at: Option<f64>,
    /// Event alerts: when they resolve by themselves.
    pub until: Option<f64>,
}

/// Evaluates the rules and remembers what fires.
#[derive(Debug)]
pub struct Engine {
    rules: BTreeMap<RuleName, Rule>,
    /// Conditions waiting out their `for`: fingerprint -> first seen.
    pending: HashMap<String, f64>,
    firing: BTreeMap<String, Alert>,
    /// Event alerts (a failover ended): fingerprint -> (alert, until).
    events: BTreeMap<String, (Alert, f64)>,
    /// Ended failovers already turned into events (or ended before start).
    seen_ended: HashSet<String>,
    /// Alerts that were firing when the agent stopped: they stay firing,
    /// without a new notification, until the first complete picture says
    /// whether they still hold.
    restored: HashSet<String>,
    /// Transitions not yet taken by [`Engine::take_transitions`].
    transitions: Vec<Transition>,
}

/// One condition that holds now.
struct Candidate {
    rule: RuleName,
    labels: Vec<(&'static str, String)>,
    summary: String,
}

impl Engine {
    /// The rules with the configured changes applied. `history` holds the
    /// ids of failovers that had ended before the agent started: they are
    /// not news, and raise no event alert. `firing` is what was firing when
    /// the agent stopped (as the delivery side recorded it).
    pub fn new(config: &Alerts, history: HashSet<String>, firing: Vec<Transition>) -> Self {
        let rules = DEFAULTS
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
        let mut engine = Engine {
            rules,
            pending: HashMap::new(),
            firing: BTreeMap::new(),
            events: BTreeMap::new(),
            seen_ended: history,
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
    pub fn rules(&self) -> impl Iterator<Item = (String, &'static str)> + '_ {
        self.rules
            .iter()
            .map(|(n, r)| (n.to_string(), r.severity.as_str()))
    }

    /// Alerts firing now, by fingerprint order.
    pub fn firing(&self) -> Vec<Alert> {
        self.firing
            .values()
            .chain(self.events.values().map(|(a, _)| a))
            .cloned()
            .collect()
    }

    /// Moves every alert on: conditions that held for their `for` fire, those
    /// that stopped resolve, failovers that ended become event alerts.
    /// Returns whether the firing set changed.
    pub fn evaluate(&mut self, snapshot: &Snapshot, now: f64) -> bool {
        let mut changed = self.failover_events(snapshot, now);
        let mut holding = HashSet::new();
        let candidates: Vec<Alert> = snapshot
            .deployments
            .iter()
            .flat_map(|d| self.candidates(d, snapshot, now))
            .filter_map(|c| {
                Some(self.alert(c.rule, self.rules.get(&c.rule)?, &c.labels, c.summary, now))
            })
            .collect();
        for alert in candidates {
            let for_ = self.rules.get(&alert.rule).map_or(0.0, |r| r.for_);
            holding.insert(alert.fingerprint.clone());
            if let Some(firing) = self.firing.get_mut(&alert.fingerprint) {
                self.restored.remove(&alert.fingerprint);
                // Same alert, current figures.
                if firing.annotations != alert.annotations {
                    firing.annotations = alert.annotations;
                    changed = true;
                }
                continue;
            }
            let first = *self.pending.entry(alert.fingerprint.clone()).or_insert(now);
            if now - first >= for_ {
                let mut alert = alert;
                alert.since = first;
                self.pending.remove(&alert.fingerprint);
                self.firing.insert(alert.fingerprint.clone(), alert.clone());
                self.transitions.push(Transition {
                    alert,
                    resolved_at: None,
                    until: None,
                });
                changed = true;
            }
        }
        // While no node of a cluster answers, its slot map is unknown, not
        // healthy: the cluster-wide alerts keep their state.
        let unknown: HashSet<&str> = snapshot
            .deployments
            .iter()
            .filter(|d| d.cluster.as_ref().is_some_and(|c| c.slots.is_none()))
            .map(|d| &*d.name)
            .collect();
        let held = |a: &Alert| {
            matches!(
                a.rule,
                RuleName::SlotCoverageLost
                    | RuleName::ClusterStateFail
                    | RuleName::ClusterConfigDiverged
                    | RuleName::OpenSlotsStuck
            ) && a
                .labels
                .get("deployment")
                .is_some_and(|d| unknown.contains(d.as_str()))
        };
        self.pending.retain(|fp, _| holding.contains(fp));
        // Restored alerts wait for every target to have answered once.
        let restored = (!snapshot.ready).then_some(&self.restored);
        let (keep, resolved): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(&mut self.firing)
            .into_iter()
            .partition(|(fp, a)| {
                holding.contains(fp) || held(a) || restored.is_some_and(|r| r.contains(fp))
            });
        self.firing = keep;
        for (fp, alert) in resolved {
            self.restored.remove(&fp);
            self.resolve(alert, now, None);
            changed = true;
        }
        let (keep, expired): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(&mut self.events)
            .into_iter()
            .partition(|(_, (_, until))| now < *until);
        self.events = keep;
        for (_, (alert, until)) in expired {
            self.resolve(alert, now, Some(until));
            changed = true;
        }
        changed
    }

    fn resolve(&mut self, alert: Alert, now: f64, until: Option<f64>) {
        self.transitions.push(Transition {
            alert,
            resolved_at: Some(now),
            until,
        });
    }

    fn alert(
        &self,
        name: RuleName,
        rule: &Rule,
        labels: &[(&'static str, String)],
        summary: String,
        now: f64,
    ) -> Alert {
        let mut all: BTreeMap<String, String> = rule.config.labels.clone();
        all.insert("alertname".into(), name.to_string());
        all.insert("severity".into(), rule.severity.as_str().into());
        for (k, v) in labels {
            all.insert(k.to_string(), v.clone());
        }
        let mut annotations = rule.config.annotations.clone();
        annotations.insert("summary".into(), summary);
        Alert {
            fingerprint: fingerprint(&all),
            rule: name,
            severity: rule.severity,
            labels: all,
            annotations,
            since: now,
        }
    }

    /// Turns failovers that ended since the last evaluation into event
    /// alerts that stay firing for their `hold`. Those already ended at the
    /// first evaluation (read back from disk) are history, not news.
    fn failover_events(&mut self, snapshot: &Snapshot, now: f64) -> bool {
        let mut changed = false;
        let ended: HashSet<&str> = snapshot
            .failovers
            .timelines
            .iter()
            .filter(|t| !t.is_open())
            .map(|t| t.id.as_str())
            .collect();
        // Bounded like the timelines themselves.
        self.seen_ended.retain(|id| ended.contains(id.as_str()));
        for t in snapshot.failovers.timelines.iter().filter(|t| !t.is_open()) {
            if self.seen_ended.contains(&t.id) || awaits_canary(snapshot, t, now) {
                continue;
            }
            self.seen_ended.insert(t.id.clone());
            let name = match t.outcome {
                Some(Outcome::Completed) => RuleName::FailoverCompleted,
                _ => RuleName::FailoverAborted,
            };
            let Some(rule) = self.rules.get(&name) else {
                continue;
            };
            let canary = t.canary.as_ref().map_or(String::new(), |c| {
                format!(
                    "; clients could not write for {:.1}s, {} acknowledged writes lost",
                    c.write_unavailable_seconds, c.lost_writes
                )
            });
            let summary = match t.outcome {
                Some(Outcome::Completed) => format!(
                    "failover of {} completed in {:.1}s: {} -> {}{canary}",
                    t.shard,
                    t.duration().unwrap_or(0.0),
                    t.old_master.as_deref().unwrap_or("?"),
                    t.new_master.as_deref().unwrap_or("?")
                ),
                _ => format!(
                    "failover of {} {}: {}",
                    t.shard,
                    t.outcome.map_or("ended", Outcome::as_str),
                    t.abort_reason.as_deref().unwrap_or("no end seen in time")
                ),
            };
            let labels = [
                ("deployment", t.deployment.clone()),
                ("shard", t.shard.clone()),
                ("failover", t.id.clone()),
            ];
            let mut alert = self.alert(name, rule, &labels, summary, now);
            for (phase, secs) in t.phases() {
                alert
                    .annotations
                    .insert(format!("phase_{phase}_seconds"), format!("{secs:.3}"));
            }
            if let Some(bytes) = t.unreplicated_bytes {
                alert
                    .annotations
                    .insert("unreplicated_bytes".into(), bytes.to_string());
            }
            if let Some(c) = &t.canary {
                for (name, value) in [
                    (
                        "canary_write_unavailable_seconds",
                        format!("{:.3}", c.write_unavailable_seconds),
                    ),
                    ("canary_lost_writes", c.lost_writes.to_string()),
                    ("canary_stale_reads", c.stale_reads.to_string()),
                ] {
                    alert.annotations.insert(name.into(), value);
                }
            }
            let until = now + rule.config.hold.unwrap_or(DEFAULT_HOLD).as_secs_f64();
            self.transitions.push(Transition {
                alert: alert.clone(),
                resolved_at: None,
                until: Some(until),
            });
            self.events
                .insert(alert.fingerprint.clone(), (alert, until));
            changed = true;
        }
        changed
    }

    /// The conditions that hold in one deployment now.
    fn candidates(&self, d: &DeploymentView, snapshot: &Snapshot, now: f64) -> Vec<Candidate> {
        let dep = d.name.to_string();
        let mut out = Vec::new();
        let mut add = |rule, labels: Vec<(&'static str, String)>, summary: String| {
            out.push(Candidate {
                rule,
                labels,
                summary,
            })
        };
        for t in d.targets.iter().filter(|t| t.exported && t.polled && !t.up) {
            add(
                RuleName::TargetDown,
                vec![
                    ("deployment", dep.clone()),
                    (t.id.role.label(), t.id.addr.clone()),
                ],
                format!("{} {} does not answer", t.id.role.label(), t.id.addr),
            );
        }
        for t in d
            .targets
            .iter()
            .filter(|t| t.id.role == TargetRole::Sentinel && t.tilt == Some(true) && t.up)
        {
            add(
                RuleName::SentinelTilt,
                vec![("deployment", dep.clone()), ("sentinel", t.id.addr.clone())],
                format!(
                    "sentinel {} is in TILT mode and takes no part in failovers",
                    t.id.addr
                ),
            );
        }
        let lag = self.rules.get(&RuleName::ReplicaLagHigh).map(|r| {
            (
                r.config.lag_bytes.unwrap_or(DEFAULT_LAG_BYTES),
                r.config.lag_time.unwrap_or(DEFAULT_LAG_TIME).as_secs_f64(),
            )
        });
        let owns_slots = |shard: &str| {
            d.cluster
                .as_ref()
                .and_then(|c| c.slots.as_ref())
                .is_none_or(|s| s.shard_slots.iter().any(|(n, c)| n == shard && *c > 0))
        };
        for s in &d.shards {
            let shard = vec![("deployment", dep.clone()), ("shard", s.name.clone())];
            let answered = s.nodes.iter().any(|n| n.role.is_some());
            if s.masters > 1 {
                let nodes: Vec<&str> = s
                    .nodes
                    .iter()
                    .filter(|n| n.role == Some(Role::Master))
                    .map(|n| n.addr.as_str())
                    .collect();
                add(
                    RuleName::MultipleMasters,
                    shard.clone(),
                    format!(
                        "{} nodes of {} report role master: {}",
                        s.masters,
                        s.name,
                        nodes.join(", ")
                    ),
                );
            }
            if s.masters == 0 && answered && owns_slots(&s.name) {
                add(
                    RuleName::NoMaster,
                    shard.clone(),
                    format!("no reachable node of {} reports role master", s.name),
                );
            }
            // Same predicate as `redis_ha_cluster_shards_without_replica`: a
            // shard whose nodes all stopped answering has no healthy replica either.
            if s.replicas_healthy == 0 && owns_slots(&s.name) {
                add(
                    RuleName::ShardWithoutReplica,
                    shard.clone(),
                    format!("{} has no replica with its link up", s.name),
                );
            }
            if let Some(sv) = &s.sentinel {
                if sv.reachable > 0 && (!sv.quorum_ok || sv.reachable < sv.quorum) {
                    add(
                        RuleName::SentinelQuorumLost,
                        shard.clone(),
                        format!("{} of the sentinels of {} are reachable; quorum {} cannot be reached by all", sv.reachable, s.name, sv.quorum),
                    );
                }
                if sv.reachable > 1 && !sv.agreement {
                    add(
                        RuleName::SentinelsDisagree,
                        shard.clone(),
                        format!(
                            "the sentinels of {} name different masters or epochs",
                            s.name
                        ),
                    );
                }
            }
            // Only shards with a failover in progress are looked up.
            let open = s
                .failover_in_progress
                .then(|| {
                    snapshot.failovers.timelines.iter().find(|t| {
                        t.is_open()
                            && *t.deployment == *d.name
                            && t.shard == s.name
                            && worth_keeping(t)
                    })
                })
                .flatten();
            if let Some(t) = open {
                add(
                    RuleName::FailoverStarted,
                    shard.clone(),
                    format!(
                        "failover of {} in progress (old master {})",
                        s.name,
                        t.old_master.as_deref().unwrap_or("?")
                    ),
                );
            }
            for n in &s.nodes {
                let Some(r) = &n.replica else { continue };
                let node = vec![
                    ("deployment", dep.clone()),
                    ("shard", s.name.clone()),
                    ("node", n.addr.clone()),
                ];
                if let (Some((bytes, secs)), true) =
                    (lag, n.role == Some(Role::Replica) || n.role.is_none())
                {
                    let over_bytes = r.lag_bytes.is_some_and(|b| b > bytes);
                    let over_time = r.lag_seconds.is_some_and(|t| t > secs);
                    if over_bytes || over_time {
                        add(
                            RuleName::ReplicaLagHigh,
                            node.clone(),
                            format!(
                                "replica {} is {} bytes / {:.1}s behind its master",
                                n.addr,
                                r.lag_bytes.unwrap_or(0),
                                r.lag_seconds.unwrap_or(0.0)
                            ),
                        );
                    }
                }
                if r.link.as_ref().is_some_and(|l| !l.up) {
                    add(
                        RuleName::ReplicaLinkDown,
                        node,
                        format!("replica {} reports its link to the master down", n.addr),
                    );
                }
            }
        }
        if let Some(c) = &d.cluster {
            let cluster = vec![("deployment", dep.clone())];
            if let Some(sv) = &c.slots {
                if sv.uncovered > 0 {
                    let ranges: Vec<String> = sv
                        .ranges
                        .iter()
                        .filter(|r| matches!(r.state, "fail" | "uncovered"))
                        .map(|r| format!("{}-{}", r.start, r.end))
                        .collect();
                    add(
                        RuleName::SlotCoverageLost,
                        cluster.clone(),
                        format!(
                            "{} slots have no serving master: {}",
                            sv.uncovered,
                            ranges.join(", ")
                        ),
                    );
                }
                if sv.config_views > 1 {
                    add(
                        RuleName::ClusterConfigDiverged,
                        cluster.clone(),
                        format!("the nodes hold {} different slot maps", sv.config_views),
                    );
                }
                let open_for = self
                    .rules
                    .get(&RuleName::OpenSlotsStuck)
                    .map_or(DEFAULT_OPEN_FOR.as_secs_f64(), |r| {
                        r.config.open_for.unwrap_or(DEFAULT_OPEN_FOR).as_secs_f64()
                    });
                let stuck: Vec<String> = sv
                    .open
                    .iter()
                    .filter(|o| now - o.since > open_for)
                    .map(|o| format!("{} {} on {}", o.slot, o.state, o.node))
                    .collect();
                if !stuck.is_empty() {
                    add(
                        RuleName::OpenSlotsStuck,
                        cluster.clone(),
                        format!("slots open for over {open_for:.0}s: {}", stuck.join(", ")),
                    );
                }
                if !c.state_ok {
                    add(
                        RuleName::ClusterStateFail,
                        cluster,
                        "most reachable nodes report cluster_state:fail".into(),
                    );
                }
            }
        }
        out
    }
}

/// Whether a completed failover's alert waits for the canary's figures:
/// the shard has a canary, it has not reported on this failover yet, and
/// the failover ended less than [`CANARY_WAIT`] ago.
fn awaits_canary(snapshot: &Snapshot, t: &Timeline, now: f64) -> bool {
    t.outcome == Some(Outcome::Completed)
        && t.canary.is_none()
        && t.ended().is_some_and(|end| now - end < CANARY_WAIT)
        && snapshot
            .deployments
            .iter()
            .any(|d| *d.name == *t.deployment && d.canaries.iter().any(|c| c.shard == t.shard))
}

/// A hash of the sorted labels: stable across restarts and versions.
fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h = crate::slots::Fnv::default();
    for (k, v) in labels {
        h.write(k.as_bytes());
        h.write(&[0xff]);
        h.write(v.as_bytes());
        h.write(&[0xfe]);
    }
    format!("{:016x}", h.0)
}
