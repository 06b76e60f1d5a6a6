//! Findings: what is wrong with a setup before it fails, why it matters and
//! what to do. Plain data: the monitor's findings engine
//! (`monitor::findings`) makes them from the readings it already has; the
//! API and metrics show them. docs/findings.md has every check.

use serde::Serialize;

use crate::config::Severity;

/// What a finding is about: a stable name, the `check` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// The quorum is larger than the sentinels that exist: no failover can
    /// ever be authorised.
    QuorumUnreachable,
    /// The quorum is below a majority of the sentinels: a minority can
    /// declare the master down (a failover still needs a majority).
    QuorumBelowMajority,
    /// An even number of sentinels: a partition into halves leaves no
    /// majority on either side.
    EvenSentinels,
    /// Sentinels of one master on one host: losing it loses them all.
    SentinelsShareHost,
    /// Sentinels hold different settings for the same master.
    SentinelSettingsDiffer,
    /// A sentinel remembers another sentinel that has been down for long.
    StaleSentinel,
    /// A sentinel remembers a replica that has been down for long.
    StaleReplica,
    /// No replica Sentinel would promote.
    NoPromotableReplica,
    /// A master acknowledges writes no replica has (`min-replicas-to-write
    /// 0`): what a failover loses has no bound.
    WritesAtRiskUnbounded,
    /// Cluster nodes stop serving every key when any slot is uncovered.
    FullCoverageRequired,
    /// A master has no replica, replicas elsewhere could move to it, and
    /// replica migration is off on them.
    ReplicaMigrationDisabled,
    /// A master and all its replicas in one availability zone.
    SameZone,
    /// A replica still follows another master than the sentinels' past
    /// `failover-timeout`.
    ReplicaFollowsOtherMaster,
    /// An address the sentinels see up and the agent cannot poll.
    UnreachableFromAgent,
    /// A cluster replica too stale to start a failover.
    ReplicaTooStale,
    /// A cluster node answers while the cluster has marked it `fail`.
    AnsweringWhileFailed,
    /// A cluster master serving slots has no replica that could take over.
    NoFailoverCandidate,
    /// A cluster shard's master and every replica share one host.
    ShardSharesHost,
    /// Cluster masters serve very different numbers of slots.
    SlotsImbalanced,
    /// One hash slot holds a large share of its shard's keys.
    HotSlots,
}

impl Check {
    /// The `check` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::QuorumUnreachable => "quorum_unreachable",
            Check::QuorumBelowMajority => "quorum_below_majority",
            Check::EvenSentinels => "even_sentinels",
            Check::SentinelsShareHost => "sentinels_share_host",
            Check::SentinelSettingsDiffer => "sentinel_settings_differ",
            Check::StaleSentinel => "stale_sentinel",
            Check::StaleReplica => "stale_replica",
            Check::NoPromotableReplica => "no_promotable_replica",
            Check::WritesAtRiskUnbounded => "writes_at_risk_unbounded",
            Check::FullCoverageRequired => "full_coverage_required",
            Check::ReplicaMigrationDisabled => "replica_migration_disabled",
            Check::SameZone => "same_zone",
            Check::ReplicaFollowsOtherMaster => "replica_follows_other_master",
            Check::UnreachableFromAgent => "unreachable_from_agent",
            Check::ReplicaTooStale => "replica_too_stale",
            Check::AnsweringWhileFailed => "answering_while_failed",
            Check::NoFailoverCandidate => "no_failover_candidate",
            Check::ShardSharesHost => "shard_shares_host",
            Check::SlotsImbalanced => "slots_imbalanced",
            Check::HotSlots => "hot_slots",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// What it is about.
    pub check: Check,
    /// How much it matters.
    pub severity: Severity,
    /// The deployment.
    pub deployment: String,
    /// The shard, when it is about one.
    pub shard: Option<String>,
    /// The node or sentinel (`host:port`), when it is about one.
    pub node: Option<String>,
    /// One line: what is wrong and why it matters.
    pub why: String,
    /// What to do.
    pub action: String,
}

/// Checks that cannot tell on a node: the reading they need was refused
/// (the agent's user lacks a permission). Listed, so that no finding's
/// absence reads as "fine" when it was never checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unknown {
    /// The deployment.
    pub deployment: String,
    /// The node (`host:port`).
    pub node: String,
    /// The checks that could not be made there.
    pub checks: Vec<Check>,
    /// What the server said.
    pub reason: String,
}
