//! One shard's replication figures: who its master is, each replica's lag
//! in bytes and seconds, link states. Cheap: a shard is a few nodes, and
//! the monitor re-derives one whenever one of its nodes polled.

use super::{MasterChoice, ShardPlan};
use crate::model::snapshot::{LinkView, NodeView, ReplicaView, ShardView};
use crate::monitor::intake::Intake;
use crate::parse::info::Role;

/// The node the shard's replicas are measured against. Sentinel shards:
/// the master the sentinels name. Cluster shards: of the nodes the cluster
/// lists as masters, one that answered claiming role master, then the
/// newest config epoch, then one not flagged `fail` (the last of equals).
pub fn master(plan: &ShardPlan, intake: &Intake) -> Option<String> {
    match &plan.master {
        MasterChoice::Named(addr) => addr.clone(),
        MasterChoice::Claimed(claims) => claims
            .iter()
            .max_by_key(|c| (intake.reports_role(&c.addr, Role::Master), c.epoch, !c.fail))
            .map(|c| c.addr.clone()),
    }
}

/// The shard's view as the polls show it. `failover_in_progress` and the
/// sentinels' down counts are the failover machines' to set.
pub fn view(name: &str, plan: &ShardPlan, intake: &Intake) -> ShardView {
    let named = master(plan, intake);
    let master = named.as_deref().and_then(|m| match intake.node(m) {
        (Some(r), true) if r.replication.role == Role::Master => Some((m, r)),
        _ => None,
    });
    let master_offset = master.map(|(_, r)| r.replication.master_repl_offset);
    let nodes: Vec<NodeView> = plan
        .nodes
        .iter()
        .map(|addr| {
            let (reading, up) = intake.node(addr);
            let role = reading.filter(|_| up).map(|r| r.replication.role);
            let listed =
                master.and_then(|(_, m)| m.replication.replicas.iter().find(|r| r.addr == *addr));
            let last_role = reading.map(|r| r.replication.role);
            let is_replica = Some(addr.as_str()) != master.map(|(m, _)| m)
                && (last_role == Some(Role::Replica) || (last_role.is_none() && listed.is_some()));
            let replica = is_replica.then(|| {
                let own = reading.and_then(|r| r.replication.upstream.as_ref());
                let best = own.map(|u| u.offset).max(listed.map(|l| l.offset));
                let lag_bytes = master_offset.zip(best).map(|(m, b)| m.saturating_sub(b));
                let lag_seconds = master
                    .zip(best)
                    .and_then(|((m, _), b)| Some(intake.histories.get(m)?.age_of(b)));
                ReplicaView {
                    lag_bytes,
                    lag_seconds,
                    ack_age_seconds: listed.and_then(|l| l.ack_age_seconds),
                    link: own.filter(|_| up).map(|u| LinkView {
                        up: u.link_up,
                        down_seconds: if u.link_up {
                            0
                        } else {
                            u.link_down_seconds.unwrap_or(0)
                        },
                        sync_in_progress: u.sync_in_progress,
                    }),
                }
            });
            NodeView {
                addr: addr.clone(),
                role,
                replica,
            }
        })
        .collect();
    let masters = nodes
        .iter()
        .filter(|n| n.role == Some(Role::Master))
        .count() as u32;
    let replicas_healthy = nodes
        .iter()
        .filter(|n| n.role == Some(Role::Replica))
        .filter(|n| {
            n.replica
                .as_ref()
                .and_then(|r| r.link.as_ref())
                .is_some_and(|l| l.up)
        })
        .count() as u32;
    ShardView {
        name: name.to_string(),
        master: named,
        master_offset,
        masters,
        replicas_healthy,
        nodes,
        sentinel: plan.sentinel.as_ref().map(|s| s.view.clone()),
        failover_in_progress: false,
        two_masters: None,
    }
}
