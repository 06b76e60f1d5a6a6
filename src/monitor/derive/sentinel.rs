//! Sentinel deployments: who is in one, and what its sentinels agree on.

use std::collections::{BTreeMap, BTreeSet};

use super::{MasterChoice, SentinelPlan, ShardPlan, Topology};
use crate::config::Deployment;
use crate::model::snapshot::SentinelShardView;
use crate::model::{MasterView, Reading, SentinelReading, TargetKind};
use crate::monitor::intake::Intake;
use crate::parse::sentinel::Flag;

/// Members are the configured sentinels, every sentinel any sentinel
/// lists, and the master and replicas of every watched master. The shards
/// and their nodes come from the sentinels that answered (or, when none
/// did, the last readings); the consensus from those that answered.
pub fn topology(intake: &Intake, config: &Deployment) -> Topology {
    let readings = intake.readings(|r| match r {
        Reading::Sentinel(s) => Some(s),
        Reading::Node(_) => None,
    });
    let mut members: BTreeSet<(TargetKind, String)> = config
        .seeds
        .iter()
        .map(|s| (TargetKind::Sentinel, s.clone()))
        .collect();
    let mut nodes: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (_, reading, _) in &readings {
        for (name, view) in reading
            .masters
            .iter()
            .filter(|(n, _)| config.watches_master(n))
        {
            let shard = nodes.entry(name.as_str()).or_default();
            shard.insert(view.master.addr.clone());
            shard.extend(view.replicas.iter().map(|r| r.addr.clone()));
            members.extend(
                view.sentinels
                    .iter()
                    .map(|s| (TargetKind::Sentinel, s.addr.clone())),
            );
        }
    }
    for shard in nodes.values() {
        members.extend(shard.iter().map(|n| (TargetKind::Node, n.clone())));
    }
    let fresh: Vec<&SentinelReading> = intake
        .iter()
        .filter(|(kind, _, _)| *kind == TargetKind::Sentinel)
        .filter_map(|(_, _, s)| match s.fresh() {
            Some(Reading::Sentinel(r)) => Some(r),
            _ => None,
        })
        .collect();
    let shards = nodes
        .into_iter()
        .map(|(name, nodes)| {
            let views = || fresh.iter().filter_map(|r| r.masters.get(name));
            let view = consensus(views());
            let failover_flagged = views().any(|v| v.master.flags.has(Flag::FailoverInProgress));
            let plan = ShardPlan {
                nodes,
                master: MasterChoice::Named(view.master_addr.clone()),
                sentinel: Some(SentinelPlan {
                    view,
                    failover_flagged,
                }),
                cluster: None,
            };
            (name.to_string(), plan)
        })
        .collect();
    Topology {
        members,
        shards,
        cluster: None,
    }
}

/// What the reachable sentinels say together about one master. The master
/// they name is the one with the highest config epoch (a newer configuration
/// wins in Sentinel too), then the one most of them name.
pub fn consensus<'a>(views: impl Iterator<Item = &'a MasterView>) -> SentinelShardView {
    let views: Vec<_> = views.collect();
    let mut votes: BTreeMap<(u64, &str), (u32, u32)> = BTreeMap::new();
    for v in &views {
        let e = votes
            .entry((v.master.config_epoch, v.master.addr.as_str()))
            .or_default();
        e.0 += 1;
        e.1 = e.1.max(v.master.quorum);
    }
    let chosen = votes
        .iter()
        .max_by_key(|((epoch, addr), (count, _))| (*epoch, *count, std::cmp::Reverse(*addr)));
    SentinelShardView {
        master_addr: chosen.map(|((_, a), _)| a.to_string()),
        quorum: chosen.map_or(0, |(_, (_, q))| *q),
        reachable: views.len() as u32,
        quorum_ok: !views.is_empty() && views.iter().all(|v| v.quorum_ok),
        agreement: votes.len() == 1,
        config_epoch: views
            .iter()
            .map(|v| v.master.config_epoch)
            .max()
            .unwrap_or(0),
        sdown: views
            .iter()
            .filter(|v| v.master.flags.has(Flag::SDown))
            .count() as u32,
        odown: views.iter().any(|v| v.master.flags.has(Flag::ODown)),
    }
}
