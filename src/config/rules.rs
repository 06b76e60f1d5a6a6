//! The built-in alert rules by name, their severities, and what a
//! configuration may change in each (`alerts.rules.<Rule>`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::yaml::opt_duration;

/// The built-in rules; the name is the `alertname` label.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[allow(missing_docs)] // the names are the documentation: docs/alerts.md
pub enum RuleName {
    FailoverStarted,
    FailoverSwitched,
    FailoverCompleted,
    FailoverAborted,
    MultipleMasters,
    MultipleMastersWriting,
    NoMaster,
    SentinelQuorumLost,
    SentinelsDisagree,
    SentinelTilt,
    SlotCoverageLost,
    ClusterStateFail,
    ClusterConfigDiverged,
    OpenSlotsStuck,
    ReplicaLagHigh,
    ReplicaLinkDown,
    ShardWithoutReplica,
    TargetDown,
    ConfigurationRisk,
}

impl RuleName {
    /// Event alerts: raised by one moment of a failover (the switch, the
    /// end), they resolve by themselves after `hold` rather than when a
    /// condition stops holding.
    pub fn is_event(self) -> bool {
        Self::EVENTS.contains(&self)
    }

    /// The event alerts.
    pub const EVENTS: [RuleName; 3] = [
        RuleName::FailoverSwitched,
        RuleName::FailoverCompleted,
        RuleName::FailoverAborted,
    ];
}

impl fmt::Display for RuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// How urgent an alert is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Page someone.
    Critical,
    /// Look at it soon.
    Warning,
    /// For the record.
    Info,
}

impl Severity {
    /// The `severity` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// What a configuration changes in one rule; unset fields keep the default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// `false` turns the rule off.
    pub enabled: Option<bool>,
    /// The severity label.
    pub severity: Option<Severity>,
    /// How long the condition must hold before the alert fires.
    #[serde(default, rename = "for", deserialize_with = "opt_duration")]
    pub for_: Option<Duration>,
    /// ReplicaLagHigh: fire above this many bytes behind.
    pub lag_bytes: Option<u64>,
    /// ReplicaLagHigh: fire above this many seconds behind.
    #[serde(default, deserialize_with = "opt_duration")]
    pub lag_time: Option<Duration>,
    /// OpenSlotsStuck: fire when a slot stays open longer than this.
    #[serde(default, deserialize_with = "opt_duration")]
    pub open_for: Option<Duration>,
    /// Event alerts (FailoverSwitched, FailoverCompleted, FailoverAborted):
    /// how long the event stays firing.
    #[serde(default, deserialize_with = "opt_duration")]
    pub hold: Option<Duration>,
    /// Extra labels on every alert of the rule.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations, e.g. `runbook_url`.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}
