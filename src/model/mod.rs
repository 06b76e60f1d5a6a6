//! The agent's data, below everything that moves it: what collectors hand
//! to the monitor (typed, timestamped observations), what the monitor
//! publishes (snapshots, timelines, alerts), and what the canary reports.
//! Plain data and the rules that belong to it; no I/O, no state machines.

pub mod alert;
pub mod canary;
pub mod clients;
pub mod finding;
pub mod histogram;
pub mod settings;
pub mod snapshot;
pub mod timeline;
pub mod write_errors;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::parse::cluster::{view_digest, ClusterInfo, ClusterNode};
use crate::parse::info::{ReplicationInfo, SentinelInfo};
use crate::parse::sentinel::{MasterEntry, ReplicaEntry, SentinelEntry};
use crate::parse::slot_stats::SlotStats;

/// Whether a target is a data node or a sentinel: they are polled
/// differently and labelled `node` or `sentinel`. (What a data node says it
/// is, master or replica, is [`crate::parse::info::Role`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TargetKind {
    /// A redis-server holding data.
    Node,
    /// A sentinel.
    Sentinel,
}

impl TargetKind {
    /// The label name that identifies this kind of target in metrics.
    pub fn label(self) -> &'static str {
        match self {
            TargetKind::Node => "node",
            TargetKind::Sentinel => "sentinel",
        }
    }
}

/// One process the agent polls: unique within the agent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetId {
    /// The deployment it belongs to (a process in two deployments is two targets).
    pub deployment: Arc<str>,
    /// Node or sentinel.
    pub kind: TargetKind,
    /// `host:port` as announced.
    pub addr: String,
}

/// Everything collectors send to the monitor, in one channel so that the
/// monitor sees events and polls in the order they arrived.
#[derive(Debug, Clone)]
pub enum Input {
    /// A poll finished.
    Poll(Observation),
    /// A sentinel published an event.
    Event(EventMessage),
    /// A sentinel's event subscription came up or went down.
    Subscription {
        /// The sentinel.
        target: TargetId,
        /// Whether events are flowing.
        up: bool,
    },
    /// A canary probe's status or episode.
    Canary(canary::Report),
    /// A read of a failover's old master: the clients left behind.
    Clients(clients::Report),
}

/// One message from a sentinel's event stream, as received.
#[derive(Debug, Clone)]
pub struct EventMessage {
    /// The sentinel that published it.
    pub target: TargetId,
    /// When the agent received it.
    pub at: SystemTime,
    /// The channel: the event's name.
    pub channel: String,
    /// The payload.
    pub payload: String,
}

/// The result of one poll of one target.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Who was polled.
    pub target: TargetId,
    /// When the poll finished, for people.
    pub at: SystemTime,
    /// When the poll finished, for arithmetic on durations.
    pub seen: Instant,
    /// How long the poll took.
    pub duration: Duration,
    /// What it returned.
    pub result: Result<Reading, PollError>,
}

/// Why a poll failed. The message comes from the client or a parser and
/// never holds a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PollError {
    /// No reply within the configured timeout.
    #[error("no reply within the timeout")]
    Timeout,
    /// No connection: the last error the client met while connecting.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The command failed.
    #[error("{0}")]
    Command(String),
    /// The reply could not be understood.
    #[error("unexpected reply to {command}: {error}")]
    Parse {
        /// The command whose reply was bad.
        command: &'static str,
        /// What was wrong with it.
        error: crate::parse::ParseError,
    },
}

/// A successful poll's content.
#[derive(Debug, Clone)]
pub enum Reading {
    /// A data node.
    Node(NodeReading),
    /// A sentinel.
    Sentinel(SentinelReading),
}

/// What a data node said.
#[derive(Debug, Clone)]
pub struct NodeReading {
    /// `INFO replication`.
    pub replication: ReplicationInfo,
    /// `CLUSTER INFO` and `CLUSTER NODES`, for cluster nodes.
    pub cluster: Option<ClusterReading>,
    /// `rdb_changes_since_last_save`, read only from a master with no
    /// replica connected (a returning old master is one): whether clients
    /// write there. `None` elsewhere, or when the read failed.
    pub changes: Option<u64>,
    /// The node's settings, on the polls they were due and answered
    /// (the monitor keeps the last apart from the reading).
    /// Boxed, as the next: rare, and a reading without them stays small.
    pub settings: Option<Box<settings::SettingsRead>>,
    /// A cluster master's slots with the most keys, on the polls of the
    /// slow cadence, where the server has `CLUSTER SLOT-STATS` (kept apart
    /// like the settings).
    pub slot_stats: Option<Box<SlotStatsRead>>,
}

/// What a cluster master's slot statistics read said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotStatsRead {
    /// Its slots with the most keys.
    Read(SlotStatsReading),
    /// The server refused it (`NOPERM`: the agent's user lacks
    /// `+cluster|slot-stats` or `+dbsize`): the hot-slot check cannot tell.
    Refused(String),
}

/// A cluster node's slots with the most keys (`CLUSTER SLOT-STATS ORDERBY
/// key-count LIMIT n`, Valkey 8.0+ and Redis 8.2+), and its keys in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotStatsReading {
    /// The slots with the most keys, most first.
    pub top: Vec<SlotStats>,
    /// Keys in every slot of the node (`DBSIZE`).
    pub keys: u64,
}

/// A slot and its keys.
#[derive(Debug, Clone, PartialEq)]
pub struct HotSlot {
    /// The shard serving it.
    pub shard: String,
    /// The hash slot.
    pub slot: u16,
    /// Keys in it.
    pub keys: u64,
}

/// How a shard's slot with the most keys compares with the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct Skew {
    /// The slot.
    pub slot: u16,
    /// Keys in it.
    pub keys: u64,
    /// Keys in the whole shard.
    pub shard_keys: u64,
    /// `keys / shard_keys`.
    pub share: f64,
    /// `share x slots`: how many times an average slot of the shard it
    /// holds (1 when keys spread evenly).
    pub skew: f64,
}

/// A cluster's hot slots as the view shows them: the slots with the most
/// keys over every master (at most `findings.hot_slots`), and each shard's
/// skew.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HotSlots {
    /// Most keys first.
    pub top: Vec<HotSlot>,
    /// By shard.
    pub skews: Vec<(String, Skew)>,
}

/// One cluster node's view of the cluster, with what the monitor needs to
/// compare it cheaply: a 1000-node view is 1000 lines, compared by digest
/// and shared (not copied) while it says the same.
#[derive(Debug, Clone)]
pub struct ClusterReading {
    info: ClusterInfo,
    nodes: Arc<[Arc<ClusterNode>]>,
    digest: u64,
    myself: Option<usize>,
}

impl ClusterReading {
    /// `CLUSTER INFO` and `CLUSTER NODES` of one node, its lines shared
    /// (a cluster's views repeat each other's lines: the pollers intern them).
    pub fn new(info: ClusterInfo, nodes: Vec<Arc<ClusterNode>>) -> Self {
        ClusterReading {
            digest: view_digest(nodes.iter().map(|l| &**l)),
            myself: nodes.iter().position(|l| l.flags.myself),
            info,
            nodes: nodes.into(),
        }
    }

    /// The same from lines of its own, as parsed.
    pub fn from_lines(info: ClusterInfo, nodes: Vec<ClusterNode>) -> Self {
        ClusterReading::new(info, nodes.into_iter().map(Arc::new).collect())
    }

    /// This reading with the lines of `last` (the same node's previous
    /// reading) when they say the same: the poller sends it so, and an
    /// unchanged view then costs the monitor neither a copy nor a free of
    /// its lines.
    pub fn reusing(self, last: Option<&ClusterReading>) -> Self {
        match last {
            Some(last) if last.digest == self.digest && last.own_id() == self.own_id() => {
                ClusterReading {
                    nodes: last.nodes.clone(),
                    myself: last.myself,
                    ..self
                }
            }
            _ => self,
        }
    }

    /// The same lines with another `CLUSTER INFO`: a poll whose `CLUSTER
    /// NODES` reply said what the last one said.
    pub fn with_info(&self, info: ClusterInfo) -> Self {
        ClusterReading {
            info,
            ..self.clone()
        }
    }

    /// `CLUSTER INFO`.
    pub fn info(&self) -> &ClusterInfo {
        &self.info
    }

    /// `CLUSTER NODES`, in the order the node listed them.
    pub fn nodes(&self) -> impl ExactSizeIterator<Item = &ClusterNode> + Clone {
        self.nodes.iter().map(|l| &**l)
    }

    /// [`view_digest`] of the lines: equal for two views that say the same
    /// (whichever node is `myself` in each), so views are grouped by it.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// The answering node's own line.
    pub fn own_line(&self) -> Option<&ClusterNode> {
        self.nodes.get(self.myself?).map(|l| &**l)
    }

    fn own_id(&self) -> Option<&str> {
        self.own_line().map(|l| l.id.as_str())
    }

    /// Whether another reading of the same node says something else: the
    /// lines (by digest and own line) or CLUSTER INFO.
    pub fn differs(&self, other: &ClusterReading) -> bool {
        self.digest != other.digest || self.own_id() != other.own_id() || self.info != other.info
    }
}

/// What a sentinel said.
#[derive(Debug, Clone)]
pub struct SentinelReading {
    /// `INFO sentinel`.
    pub info: SentinelInfo,
    /// Every watched master, by name.
    pub masters: BTreeMap<String, MasterView>,
}

/// One sentinel's view of one master.
#[derive(Debug, Clone, PartialEq)]
pub struct MasterView {
    /// From `SENTINEL MASTERS`.
    pub master: MasterEntry,
    /// `SENTINEL REPLICAS <name>`.
    pub replicas: Vec<ReplicaEntry>,
    /// `SENTINEL SENTINELS <name>`.
    pub sentinels: Vec<SentinelEntry>,
    /// `SENTINEL CKQUORUM <name>`: whether this sentinel could authorise a failover.
    pub quorum_ok: bool,
}
