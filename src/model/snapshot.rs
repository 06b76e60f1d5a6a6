//! The immutable picture the monitor publishes after every batch of
//! inputs. Outputs (/metrics, the API, readiness, alert delivery) and the
//! supervisor of pollers read only this. Plain data: no live counters, no
//! types of any output.
//!
//! Successive snapshots share what did not change: the views of targets
//! and shards are [`Shared`] vectors, the rest sits behind `Arc`s replaced
//! only when their content changes, so publishing a snapshot costs what
//! changed, not the size of the deployments.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::alert::Alert;
use super::canary::Status;
use super::finding::{Finding, Unknown};
use super::histogram::Histogram;
use super::timeline::{Outcome, Phase, Timeline, Window};
use super::{HotSlots, TargetId};
use crate::config::{Kind, RuleName, Severity};
use crate::parse::cluster::ClusterInfo;
use crate::parse::info::Role;
use crate::util::shared::Shared;

/// Everything the agent knows at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Grows with every snapshot published: outputs key what they derive
    /// from a snapshot (the /metrics body) by it.
    pub generation: u64,
    /// Grows whenever a deployment's set of targets or shards changes: the
    /// supervisor reconciles pollers and probes only then.
    pub topology: u64,
    /// True once every target known so far has been polled at least once.
    pub ready: bool,
    /// One view per configured deployment, in config order.
    pub deployments: Vec<Arc<DeploymentView>>,
    /// Failovers and events; shared between snapshots until they change.
    pub failovers: Arc<FailoverView>,
    /// Alerts firing now; shared between snapshots until they change.
    pub alerts: Arc<AlertsView>,
}

impl Snapshot {
    /// Every target that should have a poller now.
    pub fn targets(&self) -> impl Iterator<Item = &TargetId> {
        self.deployments
            .iter()
            .flat_map(|d| d.targets.iter().map(|t| &t.id))
    }

    /// The deployment called `name`.
    pub fn deployment(&self, name: &str) -> Option<&DeploymentView> {
        self.deployments
            .iter()
            .find(|d| *d.name == *name)
            .map(|d| &**d)
    }
}

/// One deployment's derived state.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentView {
    /// The configured name.
    pub name: Arc<str>,
    /// Sentinel set or cluster.
    pub kind: Kind,
    /// Every polled target, sorted by kind and address.
    pub targets: Shared<TargetView>,
    /// Shards: sentinel masters, or cluster shards, sorted by name.
    pub shards: Shared<ShardView>,
    /// Cluster-wide state, for clusters.
    pub cluster: Option<Arc<ClusterView>>,
    /// Sentinels and whether their event subscription is live.
    pub subscriptions: Arc<Vec<(String, bool)>>,
    /// Sentinel events counted once each: (shard, event, count). Events
    /// about no master (`+new-epoch`, `+tilt`) have an empty shard.
    pub events_total: Arc<Vec<(String, String, u64)>>,
    /// The canary of each probed shard that reported, by shard.
    pub canaries: Arc<Vec<CanaryView>>,
    /// What is wrong with the setup (docs/findings.md), by shard.
    pub findings: Arc<Vec<Finding>>,
    /// Nodes where checks cannot tell: the settings they need were refused.
    pub findings_unknown: Arc<Vec<Unknown>>,
    /// A cluster's slots with the most keys, where its masters report them.
    pub hot_slots: Arc<HotSlots>,
}

impl DeploymentView {
    /// The shard called `name`.
    pub fn shard(&self, name: &str) -> Option<&ShardView> {
        let i = self.shards.iter().position(|s| s.name.as_str() == name)?;
        self.shards.get(i)
    }

    /// The slot map, for clusters where some node answers.
    pub fn slots(&self) -> Option<&SlotsView> {
        self.cluster.as_ref()?.slots.as_ref()
    }

    /// The role `node` reported in its last poll, as a node of any shard.
    pub fn role_of(&self, node: &str) -> Option<Role> {
        self.shards
            .iter()
            .flat_map(|s| &s.nodes)
            .find(|n| n.addr == node)?
            .role
    }

    /// Whether `shard` serves slots; true for sentinel shards, and while
    /// the slot map is unknown (no node answers).
    pub fn owns_slots(&self, shard: &str) -> bool {
        self.slots()
            .is_none_or(|s| s.shard_slots.iter().any(|(n, c)| n == shard && *c > 0))
    }
}

/// What the canary probe of one shard reports.
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryView {
    /// The shard.
    pub shard: String,
    /// Its latest status (no latencies: they are in `latency`).
    pub status: Status,
    /// Round trips of acknowledged writes.
    pub latency: Histogram,
    /// Every episode's time without an acknowledged write.
    pub unavailable: Histogram,
    /// Acknowledged writes found missing since the agent started.
    pub lost_writes: u64,
}

/// The alert rules and what fires.
#[derive(Debug, Default, PartialEq)]
pub struct AlertsView {
    /// Alerts firing now.
    pub firing: Vec<Alert>,
    /// Every enabled rule and its severity.
    pub rules: Vec<(RuleName, Severity)>,
}

/// One sentinel event as received, for the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedEvent {
    /// Unix seconds when the agent received it.
    pub at: f64,
    /// The deployment of the sentinel.
    pub deployment: String,
    /// The sentinel that published it.
    pub sentinel: String,
    /// The channel (event name).
    pub channel: String,
    /// The payload, as published.
    pub payload: String,
    /// Another sentinel published the same event shortly before: not counted again.
    pub duplicate: bool,
}

/// Failover timelines and sentinel events, for the API and metrics.
#[derive(Debug, Default, PartialEq)]
pub struct FailoverView {
    /// Open timelines (newest first), then ended ones (newest first).
    pub timelines: Vec<Timeline>,
    /// Failovers ended since the agent started.
    pub totals: BTreeMap<(String, String, Outcome), u64>,
    /// Phase durations of completed failovers.
    pub phases: BTreeMap<(String, Kind, Phase), Histogram>,
    /// The last sentinel events received, oldest first.
    pub events: Vec<RecordedEvent>,
    /// Index in `timelines` of each shard's latest ended failover, by
    /// (deployment, shard), so a scrape finds it without a search.
    pub last_ended: HashMap<(String, String), usize>,
}

/// One polled process.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetView {
    /// Which target.
    pub id: TargetId,
    /// Part of the topology, so its series are exported. A cluster seed that
    /// no member lists is still polled (it may rejoin) but not exported.
    pub exported: bool,
    /// At least one poll has finished.
    pub polled: bool,
    /// The last poll succeeded.
    pub up: bool,
    /// How long the last poll took.
    pub last_duration: Option<Duration>,
    /// When the last poll finished.
    pub last_poll: Option<SystemTime>,
    /// Failed polls since the agent started.
    pub failures: u64,
    /// For sentinels: whether it is in TILT (from the last successful poll).
    pub tilt: Option<bool>,
}

/// One shard: a sentinel master name, or a cluster shard.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardView {
    /// The `shard` label.
    pub name: String,
    /// The node the shard's replicas are measured against.
    pub master: Option<String>,
    /// That master's replication offset.
    pub master_offset: Option<u64>,
    /// Reachable nodes of the shard that report `role:master`.
    pub masters: u32,
    /// Replicas whose link to their master is up.
    pub replicas_healthy: u32,
    /// The shard's nodes, sorted by address.
    pub nodes: Vec<NodeView>,
    /// What the sentinels say, for sentinel shards.
    pub sentinel: Option<SentinelShardView>,
    /// A failover of this shard is under way.
    pub failover_in_progress: bool,
    /// While more than one node reports role master: since when, and what
    /// the ones the shard's master is not took meanwhile.
    pub two_masters: Option<Window>,
}

/// One data node within its shard.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    /// `host:port`.
    pub addr: String,
    /// The role it reported in its last poll; `None` while unreachable.
    pub role: Option<Role>,
    /// Replication state, for nodes last seen as replicas.
    pub replica: Option<ReplicaView>,
}

/// How far a replica is behind its master.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplicaView {
    /// Master offset minus the replica's best known offset.
    pub lag_bytes: Option<u64>,
    /// How old the oldest write the replica lacks is.
    pub lag_seconds: Option<f64>,
    /// The master's `lag=` for it: seconds since its last ACK.
    pub ack_age_seconds: Option<u64>,
    /// Link state, from the replica's own last poll (`None` while unreachable).
    pub link: Option<LinkView>,
}

/// A replica's own report about its link.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkView {
    /// `master_link_status:up`.
    pub up: bool,
    /// Seconds the link has been down (0 while up).
    pub down_seconds: u64,
    /// A full sync is running.
    pub sync_in_progress: bool,
}

/// What the reachable sentinels say about one master.
#[derive(Debug, Clone, PartialEq)]
pub struct SentinelShardView {
    /// The master address the sentinels agree on (highest config epoch, then most sentinels).
    pub master_addr: Option<String>,
    /// Configured quorum.
    pub quorum: u32,
    /// Reachable sentinels that watch this master.
    pub reachable: u32,
    /// Every reachable sentinel could authorise a failover.
    pub quorum_ok: bool,
    /// Every reachable sentinel names the same master and config epoch.
    pub agreement: bool,
    /// The highest config epoch seen.
    pub config_epoch: u64,
    /// Reachable sentinels that see the master subjectively down.
    pub sdown: u32,
    /// Some sentinel sees it objectively down.
    pub odown: bool,
}

/// Cluster-wide state from the views of the reachable members.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterView {
    /// A majority of reachable nodes report `cluster_state:ok`.
    pub state_ok: bool,
    /// The CLUSTER INFO most reachable nodes report.
    pub majority: Option<ClusterInfo>,
    /// The highest current epoch reported.
    pub current_epoch: u64,
    /// Per member node: how many views flag it `fail?`, and whether any flags it `fail`.
    pub failing: Vec<FailingView>,
    /// The slot map; `None` while no member answers.
    pub slots: Option<SlotsView>,
}

/// The agent's merged slot map, and how the nodes' own maps compare.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SlotsView {
    /// Contiguous ranges with the same state, shard and master.
    pub ranges: Vec<SlotRangeView>,
    /// Slots with no master, or whose master is in `fail`.
    pub uncovered: u32,
    /// Contiguous runs of uncovered slots.
    pub uncovered_ranges: u32,
    /// Slots each shard owns.
    pub shard_slots: Vec<(String, u32)>,
    /// Distinct slot maps among the answering nodes.
    pub config_views: u32,
    /// Where a node's map differs from the map most nodes hold.
    pub divergences: Vec<Divergence>,
    /// Slots a node is migrating or importing.
    pub open: Vec<OpenSlot>,
    /// Shards (owning slots) without a replica whose link is up.
    pub shards_without_replica: u32,
    /// Shards whose master and every replica share one host.
    pub shards_same_host: u32,
}

impl SlotsView {
    /// The slots `shard` serves in the merged map (`shard_slots` is sorted
    /// by shard).
    pub fn served(&self, shard: &str) -> Option<u32> {
        self.shard_slots
            .binary_search_by(|(n, _)| n.as_str().cmp(shard))
            .ok()
            .map(|i| self.shard_slots[i].1)
    }
}

/// One range of the merged slot map.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotRangeView {
    /// First slot.
    pub start: u16,
    /// Last slot (inclusive).
    pub end: u16,
    /// Whether the slots are served.
    pub state: SlotState,
    /// The owning shard.
    pub shard: Option<String>,
    /// The owning master, `host:port`.
    pub master: Option<String>,
}

/// A node whose slot map differs from the majority's on a range.
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    /// The node, `host:port`.
    pub node: String,
    /// First slot.
    pub start: u16,
    /// Last slot (inclusive).
    pub end: u16,
    /// The master this node names for the range.
    pub says: Option<String>,
    /// The master the majority names.
    pub majority: Option<String>,
}

/// A slot in migration, as the node doing it reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenSlot {
    /// The node reporting it.
    pub node: String,
    /// The slot.
    pub slot: u16,
    /// Migrating to `peer`, or importing from it.
    pub state: OpenState,
    /// The other node, `host:port` (or its id if unknown).
    pub peer: String,
    /// When the agent first saw it open (unix seconds).
    pub since: f64,
}

/// How the cluster sees one node's health.
#[derive(Debug, Clone, PartialEq)]
pub struct FailingView {
    /// `host:port`.
    pub node: String,
    /// Reachable nodes that flag it `fail?`.
    pub pfail: u32,
    /// Some reachable node flags it `fail`.
    pub fail: bool,
}

/// How a slot of the merged map is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotState {
    /// Its master is healthy in every answering view.
    Ok,
    /// Some answering view flags its master `fail?`.
    Pfail,
    /// Some answering view flags its master `fail`: not served.
    Fail,
    /// No master claims it: not served.
    Uncovered,
}

impl SlotState {
    /// The `state` value in the API and the `slots` command.
    pub fn as_str(self) -> &'static str {
        match self {
            SlotState::Ok => "ok",
            SlotState::Pfail => "pfail",
            SlotState::Fail => "fail",
            SlotState::Uncovered => "uncovered",
        }
    }

    /// Whether clients cannot use the slot: nobody serves it.
    pub fn lost(self) -> bool {
        matches!(self, SlotState::Fail | SlotState::Uncovered)
    }
}

/// Which side of a slot migration a node is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpenState {
    /// `[slot->-target]` on the source's own line.
    Migrating,
    /// `[slot-<-source]` on the target's own line.
    Importing,
}

impl OpenState {
    /// The `state` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            OpenState::Migrating => "migrating",
            OpenState::Importing => "importing",
        }
    }
}
