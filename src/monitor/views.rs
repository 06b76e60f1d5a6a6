//! What a deployment's view shows of each part, from the intake, the
//! derivations and the failover machines.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::derive::ClusterResult;
use super::failover::Machines;
use super::findings::cluster::findings as cluster_checks;
use super::findings::hot_slots::{self as hot, ShardSlots};
use super::findings::reach;
use super::findings::sentinel::{findings as sentinel_findings, misfollowing, Seen};
use super::findings::settings::findings as settings_findings;
use super::intake::{Intake, TargetKey, TargetState};
use crate::model::finding::{Check, Finding, Unknown};
use crate::model::snapshot::{CanaryView, ShardView, SlotsView, TargetView};
use crate::model::{HotSlots, Reading, SlotStatsRead, TargetId, TargetKind};
use crate::util::time::unix;

/// One target as the view shows it.
pub fn target(
    deployment: &Arc<str>,
    key: &TargetKey,
    s: &TargetState,
    exported: bool,
) -> TargetView {
    TargetView {
        id: TargetId {
            deployment: deployment.clone(),
            kind: key.0,
            addr: key.1.clone(),
        },
        exported,
        polled: s.polled,
        up: s.up,
        last_duration: s.last_duration,
        last_poll: s.last_poll,
        failures: s.failures,
        tilt: match &s.reading {
            Some(Reading::Sentinel(r)) => Some(r.info.tilt),
            _ => None,
        },
    }
}

/// A shard as derived from the polls, with what its failover machine
/// says: whether a failover is under way, and (from the events between
/// polls) how many sentinels see the master down.
pub fn shard(derived: &ShardView, machines: &Machines) -> ShardView {
    let mut s = derived.clone();
    if let (Some(sv), Some((sdown, odown))) = (&mut s.sentinel, machines.down(&s.name)) {
        sv.sdown = sdown;
        sv.odown = odown;
    }
    s.failover_in_progress = machines.in_progress(&s.name);
    s.two_masters = machines.two_masters(&s.name).cloned();
    s
}

/// Whether a shard counts in `shards_without_replica`: it serves slots and
/// no replica's link is up.
pub fn without_replica(s: &ShardView, slots: &SlotsView) -> bool {
    // `shard_slots` is sorted by shard.
    s.replicas_healthy == 0
        && slots
            .shard_slots
            .binary_search_by(|(n, _)| n.as_str().cmp(&s.name))
            .is_ok_and(|i| slots.shard_slots[i].1 > 0)
}

/// The canary views of the shards that exist.
pub fn canaries(
    canaries: &BTreeMap<String, CanaryView>,
    exists: impl Fn(&str) -> bool,
) -> Arc<Vec<CanaryView>> {
    Arc::new(
        canaries
            .values()
            .filter(|c| exists(&c.shard))
            .cloned()
            .collect(),
    )
}

/// The findings of a deployment's shards, from what its reachable
/// sentinels say of each (`is_shard`: the masters it follows) and from its
/// nodes' settings over the derived shards; with the nodes whose settings
/// checks cannot tell. `misfollowing`: since when each replica (by shard)
/// has been seen following another master than the sentinels', kept
/// up to date here at `now`.
pub fn findings(
    name: &str,
    cluster: bool,
    intake: &Intake,
    derived: &BTreeMap<String, ShardView>,
    stale_after: Duration,
    since: &mut BTreeMap<(String, String), f64>,
    now: f64,
) -> (Vec<Finding>, Vec<Unknown>) {
    let mut seen: BTreeMap<&str, Vec<Seen>> = BTreeMap::new();
    for (kind, addr, s) in intake.iter() {
        let (TargetKind::Sentinel, true, Some(Reading::Sentinel(r))) = (kind, s.up, &s.reading)
        else {
            continue;
        };
        for (master, view) in r.masters.iter().filter(|(m, _)| derived.contains_key(*m)) {
            seen.entry(master).or_default().push((addr, view));
        }
    }
    // For how long the agent's polls of an address have failed.
    let failing = |addr: &str| {
        [TargetKind::Node, TargetKind::Sentinel]
            .into_iter()
            .find_map(|kind| intake.get(kind, addr)?.down_since)
            .map(|t| now - unix(t))
    };
    let mut still = BTreeMap::new();
    for (shard, views) in &seen {
        for replica in misfollowing(views).into_keys() {
            let key = (shard.to_string(), replica.to_string());
            let at = since.get(&key).copied().unwrap_or(now);
            still.insert(key, at);
        }
    }
    *since = still;
    let mut found: Vec<Finding> = seen
        .into_iter()
        .flat_map(|(shard, views)| {
            let held = |replica: &str| {
                since
                    .get(&(shard.to_string(), replica.to_string()))
                    .map_or(0.0, |at| now - at)
            };
            let mut found = sentinel_findings(name, shard, stale_after, &views, held);
            found.extend(reach::findings(name, shard, &views, &failing));
            found
        })
        .collect();
    let (from_settings, unknown) = settings_findings(name, cluster, derived, |addr| {
        intake
            .get(TargetKind::Node, addr)
            .and_then(|s| s.settings.as_ref())
    });
    found.extend(from_settings);
    (found, unknown)
}

/// The findings of a cluster, from its last derivation and which of its
/// nodes answer the agent.
pub fn cluster_findings(
    name: &str,
    cluster: Option<&ClusterResult>,
    intake: &Intake,
) -> Vec<Finding> {
    let Some(c) = cluster else {
        return Vec::new();
    };
    cluster_checks(name, &c.view, &c.setups, |addr| {
        intake
            .get(TargetKind::Node, addr)
            .is_some_and(|s| s.polled && s.up)
    })
}

/// A cluster's hot slots and `hot_slots` findings, from the slot statistics
/// of each shard's master (`keep`: how many slots the view keeps); with the
/// masters that refused them.
pub fn hot_slots(
    name: &str,
    derived: &BTreeMap<String, ShardView>,
    slots: Option<&SlotsView>,
    intake: &Intake,
    keep: usize,
) -> (HotSlots, Vec<Finding>, Vec<Unknown>) {
    fn read<'a>(intake: &'a Intake, s: &'a ShardView) -> Option<(&'a str, &'a SlotStatsRead)> {
        let node = s.master.as_deref()?;
        Some((
            node,
            intake.get(TargetKind::Node, node)?.slot_stats.as_ref()?,
        ))
    }
    let unknown = derived
        .values()
        .filter_map(|s| match read(intake, s)? {
            (node, SlotStatsRead::Refused(reason)) => Some(Unknown {
                deployment: name.to_string(),
                node: node.to_string(),
                checks: vec![Check::HotSlots],
                reason: reason.clone(),
            }),
            _ => None,
        })
        .collect();
    let shards: Vec<ShardSlots> = derived
        .values()
        .filter_map(|s| {
            let (node, SlotStatsRead::Read(stats)) = read(intake, s)? else {
                return None;
            };
            Some(ShardSlots {
                shard: &s.name,
                node,
                slots: slots?.served(&s.name)?,
                stats,
            })
        })
        .collect();
    let hot = HotSlots {
        top: hot::top(&shards, keep),
        skews: shards
            .iter()
            .filter_map(|s| Some((s.shard.to_string(), hot::skew(s)?)))
            .collect(),
    };
    (hot, hot::findings(name, &shards), unknown)
}
