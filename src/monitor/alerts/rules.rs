//! The built-in rules' conditions, each read from one part of a snapshot:
//! a target, a shard, or a cluster as a whole. docs/alerts.md says what
//! fires each rule and what to do.

use std::time::Duration;

use crate::config::{RuleConfig, RuleName, Severity};
use crate::model::finding::Check;
use crate::model::snapshot::{ClusterView, DeploymentView, FailoverView, ShardView, TargetView};
use crate::model::timeline::{Outcome, Timeline};
use crate::model::TargetKind;
use crate::parse::info::Role;

/// Defaults: (rule, severity, for in seconds). Public so that the
/// Prometheus rules of `alerts/` can be checked against them.
pub const DEFAULTS: &[(RuleName, Severity, u64)] = &[
    (RuleName::FailoverStarted, Severity::Warning, 0),
    (RuleName::FailoverSwitched, Severity::Critical, 0),
    (RuleName::FailoverCompleted, Severity::Warning, 0),
    (RuleName::FailoverAborted, Severity::Critical, 0),
    (
        RuleName::MultipleMasters,
        Severity::Critical,
        TWO_MASTERS_BOUND,
    ),
    (RuleName::MultipleMastersWriting, Severity::Critical, 0),
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
    (RuleName::ConfigurationRisk, Severity::Warning, 600),
];

/// How long a returning old master may report role master before
/// `MultipleMasters` fires. Sentinel converts one once it has reported
/// master for 8 s (4 x its 2 s publish period) and been up as long, seen
/// at its INFO refresh (every 1 s while the shard fails over, else 10 s):
/// about 8 to 20 s; a cluster node converts itself at the first message
/// naming a newer owner of its slots, within a second or two. Past 30 s it
/// is stuck (docs/alerts.md, "Two masters").
const TWO_MASTERS_BOUND: u64 = 30;

const DEFAULT_LAG_BYTES: u64 = 100 * 1024 * 1024;
const DEFAULT_LAG_TIME: Duration = Duration::from_secs(30);
const DEFAULT_OPEN_FOR: Duration = Duration::from_secs(600);

/// One condition that holds now.
#[derive(Debug)]
pub struct Condition {
    /// The rule.
    pub rule: RuleName,
    /// Its identifying labels (deployment first).
    pub labels: Vec<(&'static str, String)>,
    /// What it says.
    pub summary: String,
}

/// The thresholds the rules read from their settings.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// ReplicaLagHigh: bytes and seconds; `None` when the rule is off.
    pub lag: Option<(u64, f64)>,
    /// OpenSlotsStuck: seconds.
    pub open_for: f64,
}

impl Thresholds {
    /// From the rules' settings (`config` of each enabled rule).
    pub fn new(config: impl Fn(RuleName) -> Option<RuleConfig>) -> Self {
        Thresholds {
            lag: config(RuleName::ReplicaLagHigh).map(|c| {
                (
                    c.lag_bytes.unwrap_or(DEFAULT_LAG_BYTES),
                    c.lag_time.unwrap_or(DEFAULT_LAG_TIME).as_secs_f64(),
                )
            }),
            open_for: config(RuleName::OpenSlotsStuck)
                .and_then(|c| c.open_for)
                .unwrap_or(DEFAULT_OPEN_FOR)
                .as_secs_f64(),
        }
    }
}

/// What holds about a deployment's setup: its findings of warning or
/// worse (information is for the record, not for a notification).
pub fn findings(d: &DeploymentView) -> Vec<Condition> {
    d.findings
        .iter()
        .filter(|f| f.severity <= Severity::Warning)
        .map(|f| {
            let mut labels = vec![("deployment", d.name.to_string())];
            labels.extend(f.shard.clone().map(|s| ("shard", s)));
            labels.extend(f.node.clone().map(|n| ("node", n)));
            labels.push(("check", f.check.as_str().to_string()));
            Condition {
                rule: RuleName::ConfigurationRisk,
                labels,
                summary: format!("{}. What to do: {}", f.why, f.action),
            }
        })
        .collect()
}

/// What slots without a master mean for the other keys: nodes with
/// `cluster-require-full-coverage yes` (the `full_coverage_required`
/// finding) refuse them all. Nothing is said where the settings are not
/// known to say so.
fn whole_outage(d: &DeploymentView) -> &'static str {
    if d.findings
        .iter()
        .any(|f| f.check == Check::FullCoverageRequired)
    {
        "; nodes with cluster-require-full-coverage yes refuse every other key too (finding full_coverage_required): a total outage there"
    } else {
        ""
    }
}

/// What holds about one target.
pub fn target(d: &DeploymentView, t: &TargetView) -> Vec<Condition> {
    let mut out = Vec::new();
    let dep = || ("deployment", d.name.to_string());
    if t.exported && t.polled && !t.up {
        out.push(Condition {
            rule: RuleName::TargetDown,
            labels: vec![dep(), (t.id.kind.label(), t.id.addr.clone())],
            summary: format!("{} {} does not answer", t.id.kind.label(), t.id.addr),
        });
    }
    if t.id.kind == TargetKind::Sentinel && t.tilt == Some(true) && t.up {
        out.push(Condition {
            rule: RuleName::SentinelTilt,
            labels: vec![dep(), ("sentinel", t.id.addr.clone())],
            summary: format!(
                "sentinel {} is in TILT mode and takes no part in failovers",
                t.id.addr
            ),
        });
    }
    out
}

/// What holds about one shard.
pub fn shard(
    d: &DeploymentView,
    s: &ShardView,
    failovers: &FailoverView,
    limits: &Thresholds,
) -> Vec<Condition> {
    let mut out = Vec::new();
    let shard = || {
        vec![
            ("deployment", d.name.to_string()),
            ("shard", s.name.clone()),
        ]
    };
    let mut add = |rule, labels, summary| {
        out.push(Condition {
            rule,
            labels,
            summary,
        })
    };
    let owns_slots = d.owns_slots(&s.name);
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
            shard(),
            format!(
                "{} nodes of {} report role master: {}; the one that is not {} has not been turned into a replica",
                s.masters,
                s.name,
                nodes.join(", "),
                s.master.as_deref().unwrap_or("the master")
            ),
        );
    }
    if let Some(w) = s.two_masters.as_ref().filter(|w| w.writes > Some(0)) {
        let strays: Vec<&str> = w
            .nodes
            .iter()
            .map(String::as_str)
            .filter(|n| Some(*n) != s.master.as_deref())
            .collect();
        add(
            RuleName::MultipleMastersWriting,
            shard(),
            format!(
                "{} took {} writes ({} bytes) as a second master of {} beside {}: clients write there and lose it when it becomes a replica",
                strays.join(", "),
                w.writes.unwrap_or(0),
                w.written_bytes.unwrap_or(0),
                s.name,
                s.master.as_deref().unwrap_or("?")
            ),
        );
    }
    if s.masters == 0 && answered && owns_slots {
        add(
            RuleName::NoMaster,
            shard(),
            format!("no reachable node of {} reports role master", s.name),
        );
    }
    // Same predicate as `redis_ha_cluster_shards_without_replica`: a
    // shard whose nodes all stopped answering has no healthy replica either.
    if s.replicas_healthy == 0 && owns_slots {
        add(
            RuleName::ShardWithoutReplica,
            shard(),
            format!("{} has no replica with its link up", s.name),
        );
    }
    if let Some(sv) = &s.sentinel {
        if sv.reachable > 0 && (!sv.quorum_ok || sv.reachable < sv.quorum) {
            add(
                RuleName::SentinelQuorumLost,
                shard(),
                format!(
                    "{} of the sentinels of {} are reachable; quorum {} cannot be reached by all",
                    sv.reachable, s.name, sv.quorum
                ),
            );
        }
        if sv.reachable > 1 && !sv.agreement {
            add(
                RuleName::SentinelsDisagree,
                shard(),
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
            failovers.timelines.iter().find(|t| {
                t.is_open() && *t.deployment == *d.name && t.shard == s.name && t.worth_keeping()
            })
        })
        .flatten();
    if let Some(t) = open {
        let mut labels = shard();
        labels.push(("failover", t.id.clone()));
        add(
            RuleName::FailoverStarted,
            labels,
            format!(
                "failover of {} in progress (old master {}): writes fail until the switch",
                s.name,
                t.old_master.as_deref().unwrap_or("?")
            ),
        );
    }
    for n in &s.nodes {
        let Some(r) = &n.replica else { continue };
        let node = || {
            vec![
                ("deployment", d.name.to_string()),
                ("shard", s.name.clone()),
                ("node", n.addr.clone()),
            ]
        };
        if let (Some((bytes, secs)), true) = (
            limits.lag,
            n.role == Some(Role::Replica) || n.role.is_none(),
        ) {
            let over_bytes = r.lag_bytes.is_some_and(|b| b > bytes);
            let over_time = r.lag_seconds.is_some_and(|t| t > secs);
            if over_bytes || over_time {
                add(
                    RuleName::ReplicaLagHigh,
                    node(),
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
                node(),
                format!("replica {} reports its link to the master down", n.addr),
            );
        }
    }
    out
}

/// What holds about a cluster as a whole; `None` while its slot map is
/// unknown (no node answers).
pub fn cluster(
    d: &DeploymentView,
    c: &ClusterView,
    limits: &Thresholds,
    now: f64,
) -> Option<Vec<Condition>> {
    let sv = c.slots.as_ref()?;
    let mut out = Vec::new();
    let cluster = || vec![("deployment", d.name.to_string())];
    if sv.uncovered > 0 {
        let ranges: Vec<String> = sv
            .ranges
            .iter()
            .filter(|r| r.state.lost())
            .map(|r| format!("{}-{}", r.start, r.end))
            .collect();
        out.push(Condition {
            rule: RuleName::SlotCoverageLost,
            labels: cluster(),
            summary: format!(
                "{} slots have no serving master: {}{}",
                sv.uncovered,
                ranges.join(", "),
                whole_outage(d)
            ),
        });
    }
    if sv.config_views > 1 {
        out.push(Condition {
            rule: RuleName::ClusterConfigDiverged,
            labels: cluster(),
            summary: format!("the nodes hold {} different slot maps", sv.config_views),
        });
    }
    let stuck: Vec<String> = sv
        .open
        .iter()
        .filter(|o| now - o.since > limits.open_for)
        .map(|o| format!("{} {} on {}", o.slot, o.state.as_str(), o.node))
        .collect();
    if !stuck.is_empty() {
        out.push(Condition {
            rule: RuleName::OpenSlotsStuck,
            labels: cluster(),
            summary: format!(
                "slots open for over {:.0}s: {}",
                limits.open_for,
                stuck.join(", ")
            ),
        });
    }
    if !c.state_ok {
        out.push(Condition {
            rule: RuleName::ClusterStateFail,
            labels: cluster(),
            summary: "most reachable nodes report cluster_state:fail".into(),
        });
    }
    Some(out)
}

/// The event alert of a failover's switch, and its figures so far as
/// annotations: the moment clients can write again, to the new master it
/// names, before Sentinel has finished reconfiguring the replicas.
pub fn switched(t: &Timeline) -> (Condition, Vec<(String, String)>) {
    let new = t.new_master.as_deref().unwrap_or("?");
    let epoch = t
        .epochs
        .last()
        .map_or(String::new(), |e| format!(" at epoch {e}"));
    let after = t
        .switch_seen()
        .zip(t.started())
        .map_or(String::new(), |(s, b)| {
            format!(", {:.1}s after the first sign", (s - b).max(0.0))
        });
    let summary = format!(
        "{} switched to {new} (was {}){epoch}{after}: clients write to {new} now",
        t.shard,
        t.old_master.as_deref().unwrap_or("?"),
    );
    event(t, RuleName::FailoverSwitched, summary)
}

/// The event alert of an ended failover, and its figures as annotations.
pub fn ended(t: &Timeline) -> (Condition, Vec<(String, String)>) {
    let rule = match t.outcome {
        Some(Outcome::Completed) => RuleName::FailoverCompleted,
        _ => RuleName::FailoverAborted,
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
    event(t, rule, summary)
}

/// A failover's event alert: labelled with the failover, its figures so far
/// as annotations (the masters, the epoch, each phase's seconds, the bytes
/// at risk, the canary's figures).
fn event(t: &Timeline, rule: RuleName, summary: String) -> (Condition, Vec<(String, String)>) {
    let labels = vec![
        ("deployment", t.deployment.clone()),
        ("shard", t.shard.clone()),
        ("failover", t.id.clone()),
    ];
    let mut figures: Vec<(String, String)> = [
        ("old_master", t.old_master.clone()),
        ("new_master", t.new_master.clone()),
        ("epoch", t.epochs.last().map(u64::to_string)),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k.to_string(), v?)))
    .collect();
    figures.extend(t.phases().into_iter().map(|(phase, secs)| {
        (
            format!("phase_{}_seconds", phase.as_str()),
            format!("{secs:.3}"),
        )
    }));
    if let Some(bytes) = t.unreplicated_bytes {
        figures.push(("unreplicated_bytes".into(), bytes.to_string()));
    }
    if let Some(c) = &t.canary {
        figures.push((
            "canary_write_unavailable_seconds".into(),
            format!("{:.3}", c.write_unavailable_seconds),
        ));
        figures.push(("canary_lost_writes".into(), c.lost_writes.to_string()));
        figures.push(("canary_stale_reads".into(), c.stale_reads.to_string()));
    }
    let condition = Condition {
        rule,
        labels,
        summary,
    };
    (condition, figures)
}
