//! What collectors hand to the monitor: typed, timestamped observations.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::parse::cluster::{ClusterInfo, ClusterNode};
use crate::parse::info::{ReplicationInfo, SentinelInfo};
use crate::parse::sentinel::{MasterEntry, ReplicaEntry, SentinelEntry};

/// Whether a target is a data node or a sentinel: they are polled
/// differently and labelled `node` or `sentinel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A redis-server holding data.
    Node,
    /// A sentinel.
    Sentinel,
}

impl Role {
    /// The label name that identifies this kind of target in metrics.
    pub fn label(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Sentinel => "sentinel",
        }
    }
}

/// One process the agent polls: unique within the agent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetId {
    /// The deployment it belongs to (a process in two deployments is two targets).
    pub deployment: Arc<str>,
    /// Node or sentinel.
    pub role: Role,
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
    Canary(crate::canary::Report),
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
}

/// One cluster node's view of the cluster.
#[derive(Debug, Clone)]
pub struct ClusterReading {
    /// `CLUSTER INFO`.
    pub info: ClusterInfo,
    /// `CLUSTER NODES`.
    pub nodes: Vec<ClusterNode>,
}

/// What a sentinel said.
#[derive(Debug, Clone)]
pub struct SentinelReading {
    /// `INFO sentinel`.
    pub info: SentinelInfo,
    /// Every watched master, by name.
    pub masters: HashMap<String, MasterView>,
}

/// One sentinel's view of one master.
#[derive(Debug, Clone)]
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
