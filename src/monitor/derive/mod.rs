//! Derivation: pure functions from the readings to the views. Nothing here
//! keeps state between calls; what a derivation must remember (cluster
//! shard names, when a slot was first seen open) goes in and comes out.
//!
//! - [`sentinel`]: who is in a sentinel deployment, and what its sentinels
//!   agree on per master.
//! - [`cluster`]: who is in a cluster, its shards, what the nodes agree on,
//!   and the merged slot map ([`slots`]).
//! - [`shard`]: one shard's replication figures.
//!
//! The monitor calls the topology derivations only when a reading they use
//! changed, and [`shard::view`] only for the shards whose nodes polled; a
//! full run of all of them is the reference the incremental result is
//! tested against.

pub mod cluster;
pub mod sentinel;
pub mod shard;
pub mod slots;

use std::collections::{BTreeMap, BTreeSet};

use super::intake::TargetKey;
use crate::model::snapshot::{ClusterView, SentinelShardView};
use cluster::{ClusterMemory, ClusterShardPlan, Health, ShardSetup};

/// What the topology of a deployment is, as one derivation found it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Topology {
    /// The targets that are part of the deployment (besides the seeds).
    pub members: BTreeSet<TargetKey>,
    /// The shards, by name.
    pub shards: BTreeMap<String, ShardPlan>,
    /// Cluster-wide results, for clusters.
    pub cluster: Option<ClusterResult>,
}

/// What a cluster derivation found besides its shards.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterResult {
    /// Cluster-wide state, slot map included (`shards_without_replica` is
    /// filled in from the shard views).
    pub view: ClusterView,
    /// What the next derivation must know.
    pub memory: ClusterMemory,
    /// How the answering views flag each node.
    pub health: Health,
    /// Each shard's setup, by label, for the findings.
    pub setups: Vec<ShardSetup>,
}

/// One shard: its nodes, and how to tell its master.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardPlan {
    /// The shard's nodes, `host:port`.
    pub nodes: BTreeSet<String>,
    /// Whom its replicas are measured against.
    pub master: MasterChoice,
    /// Sentinel shards: what the sentinels say.
    pub sentinel: Option<SentinelPlan>,
    /// Cluster shards: who serves the shard's slots in the views.
    pub cluster: Option<ClusterShardPlan>,
}

/// How a shard's master is chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum MasterChoice {
    /// Sentinel shards: the master the sentinels name.
    Named(Option<String>),
    /// Cluster shards: the nodes the cluster lists as masters of the shard;
    /// the one that reports role master, then the newest config, then one
    /// not flagged `fail` (see [`shard::master`]).
    Claimed(Vec<Claim>),
}

/// A node the cluster lists as a master of a shard.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// `host:port`.
    pub addr: String,
    /// Its config epoch.
    pub epoch: u64,
    /// Flagged `fail` in the line the cluster keeps for it.
    pub fail: bool,
}

/// What the reachable sentinels say about one master.
#[derive(Debug, Clone, PartialEq)]
pub struct SentinelPlan {
    /// Their consensus.
    pub view: SentinelShardView,
    /// Some reachable sentinel flags a failover of it in progress.
    pub failover_flagged: bool,
}
