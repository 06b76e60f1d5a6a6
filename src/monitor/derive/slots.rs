//! The merged slot map of a cluster, how the nodes' own maps compare with
//! it, and the slots in migration.

use std::collections::{BTreeMap, HashMap};

use super::cluster::{Group, Health, Table, View};
use crate::model::snapshot::{
    Divergence, OpenSlot, OpenState, SlotRangeView, SlotState, SlotsView,
};
use crate::parse::cluster::ClusterNode;
use crate::slots::{self, Difference, SLOTS};
use crate::util::hash::FastMap;

/// The merged owner of every slot (one line per node id, higher config
/// epoch wins a double claim), its state from the answering views' flags,
/// where an answering node's map differs from the most common one, and each
/// answering node's migrating and importing slots. `open_since` remembers
/// when each open slot was first seen.
pub fn view(
    views: &[View],
    groups: &[Group],
    table: &Table,
    labels: &FastMap<String, String>,
    health: &Health,
    open_since: &mut HashMap<(String, u16, OpenState), f64>,
    now: f64,
) -> SlotsView {
    let lines = table.lines();
    let addr_of = |id: &str| {
        table
            .get(id)
            .map_or_else(|| id.to_string(), |l| l.addr.clone())
    };
    let state_of: Vec<SlotState> = lines
        .iter()
        .map(
            |l| match health.by_id.get(&l.id).copied().unwrap_or_default() {
                (_, true) => SlotState::Fail,
                (pfail, false) if pfail > 0 => SlotState::Pfail,
                _ => SlotState::Ok,
            },
        )
        .collect();
    let owner = owners(lines);
    let per_slot: Vec<(SlotState, Option<usize>)> = owner
        .iter()
        .map(|o| match o {
            None => (SlotState::Uncovered, None),
            Some(i) => (state_of[*i], Some(*i)),
        })
        .collect();
    let lost: Vec<bool> = per_slot.iter().map(|(s, _)| s.lost()).collect();
    let mut owned = vec![0u32; lines.len()];
    for i in owner.iter().flatten() {
        owned[*i] += 1;
    }
    let mut shard_slots: BTreeMap<String, u32> = BTreeMap::new();
    for (line, n) in lines.iter().zip(&owned).filter(|(_, n)| **n > 0) {
        if let Some(label) = labels.get(&line.id) {
            *shard_slots.entry(label.clone()).or_default() += n;
        }
    }
    let ranges = slots::runs(&per_slot)
        .into_iter()
        .map(|(start, end, (state, owner))| SlotRangeView {
            start,
            end,
            state,
            shard: owner.and_then(|i| labels.get(&lines[i].id).cloned()),
            master: owner.map(|i| lines[i].addr.clone()),
        })
        .collect();
    let (config_views, divergences) = agreement(views, groups, &addr_of);
    SlotsView {
        ranges,
        uncovered: lost.iter().filter(|u| **u).count() as u32,
        uncovered_ranges: slots::runs(&lost).iter().filter(|(_, _, u)| *u).count() as u32,
        shard_slots: shard_slots.into_iter().collect(),
        config_views,
        divergences,
        open: open_slots(views, &addr_of, open_since, now),
        shards_without_replica: 0,
        shards_same_host: 0,
    }
}

/// The index in `lines` of the master serving each slot; when two lines
/// claim a slot, the higher config epoch wins (the first of equals).
fn owners(lines: &[&ClusterNode]) -> Vec<Option<usize>> {
    let mut owner: Vec<Option<usize>> = vec![None; SLOTS];
    for (i, line) in lines.iter().enumerate().filter(|(_, l)| l.flags.master) {
        for &(start, end) in &line.slots {
            for slot in &mut owner[usize::from(start)..=usize::from(end)] {
                if slot.is_none_or(|o| line.config_epoch > lines[o].config_epoch) {
                    *slot = Some(i);
                }
            }
        }
    }
    owner
}

/// How many distinct slot maps the answering nodes hold (the `redis-cli
/// --cluster check` signature), and where each node's map differs from
/// the one most nodes hold (ties: the map of the first node). Each group of
/// equal views is compared once.
fn agreement(
    views: &[View],
    groups: &[Group],
    addr_of: &impl Fn(&str) -> String,
) -> (u32, Vec<Divergence>) {
    let group_of: FastMap<usize, usize> = groups
        .iter()
        .enumerate()
        .flat_map(|(g, group)| group.views.iter().map(move |i| (*i, g)))
        .collect();
    let signatures: Vec<u64> = groups
        .iter()
        .map(|g| slots::signature(views[g.first].reading.nodes()))
        .collect();
    // By signature: the first answering view, and every answering view.
    let mut maps: FastMap<u64, (usize, Vec<usize>)> = FastMap::default();
    for (i, _) in views.iter().enumerate().filter(|(_, v)| v.fresh) {
        let sig = signatures[group_of[&i]];
        maps.entry(sig).or_insert_with(|| (i, Vec::new())).1.push(i);
    }
    let mut maps: Vec<(usize, Vec<usize>)> = maps.into_values().collect();
    maps.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    let mut divergences = Vec::new();
    let Some((first, _)) = maps.first() else {
        return (0, divergences);
    };
    let reference = slots::owners(views[*first].reading.nodes());
    let mut by_group: FastMap<usize, Vec<Difference>> = FastMap::default();
    for (_, members) in maps.iter().skip(1) {
        for i in members {
            let g = group_of[i];
            let differences = by_group.entry(g).or_insert_with(|| {
                let own = slots::owners(views[groups[g].first].reading.nodes());
                slots::differences(&own, &reference)
            });
            for (start, end, says, majority) in differences.iter() {
                divergences.push(Divergence {
                    node: views[*i].addr.to_string(),
                    start: *start,
                    end: *end,
                    says: says.map(addr_of),
                    majority: majority.map(addr_of),
                });
            }
        }
    }
    (maps.len() as u32, divergences)
}

/// Slots each answering node migrates or imports, per its own line, with
/// when each was first seen. Only what an answering node no longer
/// reports is forgotten: a node that missed a poll keeps its slots' clocks.
fn open_slots(
    views: &[View],
    addr_of: &impl Fn(&str) -> String,
    open_since: &mut HashMap<(String, u16, OpenState), f64>,
    now: f64,
) -> Vec<OpenSlot> {
    let mut open = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for v in views.iter().filter(|v| v.fresh) {
        let Some(line) = v.reading.own_line() else {
            continue;
        };
        let migrating = line
            .migrating
            .iter()
            .map(|(s, p)| (*s, p, OpenState::Migrating));
        let importing = line
            .importing
            .iter()
            .map(|(s, p)| (*s, p, OpenState::Importing));
        for (slot, peer, state) in migrating.chain(importing) {
            let key = (v.addr.to_string(), slot, state);
            let since = *open_since.entry(key.clone()).or_insert(now);
            seen.insert(key);
            open.push(OpenSlot {
                node: v.addr.to_string(),
                slot,
                state,
                peer: addr_of(peer),
                since,
            });
        }
    }
    let answered: std::collections::HashSet<&str> =
        views.iter().filter(|v| v.fresh).map(|v| v.addr).collect();
    open_since.retain(|k, _| seen.contains(k) || !answered.contains(k.0.as_str()));
    open
}
