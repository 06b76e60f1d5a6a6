//! Clusters: who is in one, its shards and their names, what the answering
//! nodes agree on, and how each node's view flags each node.
//!
//! A 1000-node cluster is 1000 views of 1000 lines. Views that say the same
//! (equal [`ClusterReading::digest`], whichever line is their own) are read
//! once per group: a steady cluster is one group, a failover a handful, so
//! a derivation costs about the lines of one view per distinct view, not
//! the square of the cluster.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{Claim, ClusterResult, MasterChoice, ShardPlan, Topology};
use crate::config::Deployment;
use crate::model::snapshot::{ClusterView, FailingView, OpenState};
use crate::model::{ClusterReading, NodeReading, Reading, TargetKind};
use crate::monitor::intake::Intake;
use crate::parse::cluster::{ClusterInfo, ClusterNode};
use crate::util::hash::{FastMap, FastSet};

/// What a cluster derivation remembers for the next one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterMemory {
    /// The shard label of each node id: a shard keeps its name through
    /// failovers.
    pub labels: FastMap<String, String>,
    /// When each open slot was first seen, by (node, slot, state).
    pub open_since: HashMap<(String, u16, OpenState), f64>,
}

/// How the answering views flag each node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Health {
    /// Views that answered their last poll.
    pub views: usize,
    /// By node id: how many views flag it `fail?`, and whether any flags it `fail`.
    pub by_id: FastMap<String, (u32, bool)>,
    /// The same by address (for a master known by its address only).
    pub by_addr: FastMap<String, (u32, bool)>,
}

/// A node as a failover machine knows it: by id once a view named it,
/// by address alone when read back from disk.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRef {
    /// The node id, when known.
    pub id: Option<String>,
    /// `host:port`.
    pub addr: String,
}

/// Who serves a cluster shard's slots in the answering views.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterShardPlan {
    /// Per owner of the shard's first slot: the views that name it, and
    /// the highest config epoch they give it. Only a node of the shard can
    /// take its slots over: the slot moving to another shard is
    /// resharding, not a failover.
    pub owners: BTreeMap<(String, String), (usize, u64)>,
}

/// One derivation's view of a cluster shard, for the failover machine.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterShardView {
    /// When the views were taken (unix seconds).
    pub at: f64,
    /// The node the shard's slots belong to in most views, if any.
    pub owner: Option<NodeRef>,
    /// Answering views that flag the settled master `fail?`.
    pub pfail: u32,
    /// Some answering view flags the settled master `fail`.
    pub fail: bool,
    /// Every answering view names the same owner.
    pub converged: bool,
    /// That owner's config epoch.
    pub epoch: u64,
}

impl ClusterShardPlan {
    /// The machine's input: who owns the shard's slots now, and how the
    /// views flag `settled`, the master before any failover.
    pub fn view(&self, settled: Option<&NodeRef>, health: &Health, at: f64) -> ClusterShardView {
        // Most views, then the newest config.
        let top = self
            .owners
            .iter()
            .max_by_key(|(_, (n, epoch))| (*n, *epoch));
        let (pfail, fail) = settled
            .and_then(|s| match &s.id {
                Some(id) => health.by_id.get(id),
                None => health.by_addr.get(&s.addr),
            })
            .copied()
            .unwrap_or_default();
        ClusterShardView {
            at,
            owner: top.map(|((id, addr), _)| NodeRef {
                id: Some(id.clone()),
                addr: addr.clone(),
            }),
            pfail,
            fail,
            converged: self.owners.len() == 1 && top.is_some_and(|(_, (n, _))| *n == health.views),
            epoch: top.map_or(0, |(_, (_, e))| *e),
        }
    }
}

/// One node's view as a derivation reads it: whose, what, and whether it
/// answered its last poll.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// The node's address (the target).
    pub addr: &'a str,
    /// What it said.
    pub reading: &'a ClusterReading,
    /// It answered its last poll.
    pub fresh: bool,
}

/// Views that say the same, read once through the first of them.
#[derive(Debug)]
pub struct Group {
    /// Index of the first view in the group: the one read.
    pub first: usize,
    /// Every view of the group, in order.
    pub views: Vec<usize>,
    /// How many of them answered their last poll.
    pub fresh: usize,
}

/// Groups views by digest, in the order of each group's first view.
pub fn groups(views: &[View]) -> Vec<Group> {
    let mut index: FastMap<u64, usize> = FastMap::default();
    let mut out: Vec<Group> = Vec::new();
    for (i, v) in views.iter().enumerate() {
        let g = *index.entry(v.reading.digest()).or_insert_with(|| {
            out.push(Group {
                first: i,
                views: Vec::new(),
                fresh: 0,
            });
            out.len() - 1
        });
        out[g].views.push(i);
        out[g].fresh += usize::from(v.fresh);
    }
    out
}

/// The cluster's topology from its nodes' views.
pub fn topology(
    intake: &Intake,
    config: &Deployment,
    memory: &ClusterMemory,
    now: f64,
) -> Topology {
    let all: Vec<View> = intake
        .readings(|r| match r {
            Reading::Node(NodeReading {
                cluster: Some(c), ..
            }) => Some(c),
            _ => None,
        })
        .into_iter()
        .map(|(addr, reading, fresh)| View {
            addr,
            reading,
            fresh,
        })
        .collect();
    let member_addrs = membership(&all, &config.seeds);
    let views: Vec<View> = all
        .into_iter()
        .filter(|v| member_addrs.contains(v.addr))
        .collect();
    let groups = groups(&views);
    let table = table(&views, &groups, &member_addrs);
    let labels = shard_labels(&table, &memory.labels);
    let health = health(&views, &groups);
    let fresh: Vec<View> = views.iter().filter(|v| v.fresh).copied().collect();
    let mut view = consensus(&fresh, &table, &health);
    let mut open_since = memory.open_since.clone();
    let setups = setups(&table, &labels, &health);
    if !fresh.is_empty() {
        let mut slots = super::slots::view(
            &views,
            &groups,
            &table,
            &labels,
            &health,
            &mut open_since,
            now,
        );
        slots.shards_same_host = setups.iter().filter(|s| s.shared_host.is_some()).count() as u32;
        view.slots = Some(slots);
    }
    let shards = shards(&views, &groups, &table, &labels);
    Topology {
        members: member_addrs
            .into_iter()
            .map(|a| (TargetKind::Node, a))
            .collect(),
        shards,
        cluster: Some(ClusterResult {
            view,
            memory: ClusterMemory { labels, open_since },
            health,
            setups,
        }),
    }
}

/// One line per node id, in id order, and found by id.
#[derive(Debug, Default)]
pub struct Table<'a> {
    lines: Vec<&'a ClusterNode>,
    index: FastMap<&'a str, usize>,
}

impl<'a> Table<'a> {
    fn new(by_id: FastMap<&'a str, &'a ClusterNode>) -> Self {
        let mut lines: Vec<&ClusterNode> = by_id.into_values().collect();
        lines.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        let index = lines
            .iter()
            .enumerate()
            .map(|(i, l)| (l.id.as_str(), i))
            .collect();
        Table { lines, index }
    }

    /// The line of node `id`.
    pub fn get(&self, id: &str) -> Option<&'a ClusterNode> {
        self.index.get(id).map(|i| self.lines[*i])
    }

    /// Every line, by id.
    pub fn lines(&self) -> &[&'a ClusterNode] {
        &self.lines
    }
}

/// A node is a member when another node lists it, or when it answers and
/// every node it lists that answers lists it back: a node removed from the
/// cluster may still list the others, but they deny it. Nothing answered
/// yet: the seeds are all there is.
pub fn membership(views: &[View], seeds: &[String]) -> BTreeSet<String> {
    if views.is_empty() {
        return seeds.iter().cloned().collect();
    }
    let groups = groups(views);
    let listed: Vec<FastSet<&str>> = groups
        .iter()
        .map(|g| {
            views[g.first]
                .reading
                .nodes()
                .filter(|l| l.is_member())
                .map(|l| l.addr.as_str())
                .collect()
        })
        .collect();
    // Every address a view lists, but its own.
    let mut members: FastSet<&str> = FastSet::default();
    for (g, set) in groups.iter().zip(&listed) {
        let own = (g.views.len() == 1).then(|| views[g.first].addr);
        members.extend(set.iter().filter(|a| Some(**a) != own));
    }
    // A node no other view lists is denied by every view that answers (none
    // lists it): it is a member only if it lists none of them.
    let owners: FastSet<&str> = views.iter().map(|v| v.addr).collect();
    let mut unlisted = Vec::new();
    for (g, set) in groups.iter().zip(&listed) {
        for &i in &g.views {
            let owner = views[i].addr;
            if !members.contains(owner) && !set.iter().any(|a| *a != owner && owners.contains(a)) {
                unlisted.push(owner);
            }
        }
    }
    members.extend(unlisted);
    members.into_iter().map(String::from).collect()
}

/// One line per node id, from the members' views: a node's own line where
/// it answered (the last view to claim it, in address order), else the
/// line with the newest config (the first of equals).
pub fn table<'a>(views: &[View<'a>], groups: &[Group], members: &BTreeSet<String>) -> Table<'a> {
    let members: FastSet<&str> = members.iter().map(String::as_str).collect();
    let kept = |l: &ClusterNode| l.is_member() && members.contains(l.addr.as_str());
    let mut own: FastMap<&str, &ClusterNode> = FastMap::default();
    for v in views {
        if let Some(l) = v.reading.own_line().filter(|l| kept(l)) {
            own.insert(&l.id, l);
        }
    }
    let mut table: FastMap<&str, &ClusterNode> = FastMap::default();
    for g in groups {
        for line in views[g.first].reading.nodes() {
            if !kept(line) || own.contains_key(line.id.as_str()) {
                continue;
            }
            let slot = table.entry(line.id.as_str()).or_insert(line);
            if line.config_epoch > slot.config_epoch {
                *slot = line;
            }
        }
    }
    table.extend(own);
    Table::new(table)
}

/// Flags over the views that answered: each group counts as many times as
/// it has such views.
fn health(views: &[View], groups: &[Group]) -> Health {
    let mut health = Health {
        views: groups.iter().map(|g| g.fresh).sum(),
        ..Default::default()
    };
    for g in groups.iter().filter(|g| g.fresh > 0) {
        let n = g.fresh as u32;
        let mut by_addr: FastMap<&str, (bool, bool)> = FastMap::default();
        for line in views[g.first].reading.nodes() {
            let e = health.by_id.entry(line.id.clone()).or_default();
            e.0 += if line.flags.pfail { n } else { 0 };
            e.1 |= line.flags.fail;
            let a = by_addr.entry(&line.addr).or_default();
            a.0 |= line.flags.pfail;
            a.1 |= line.flags.fail;
        }
        for (addr, (pfail, fail)) in by_addr {
            let e = health.by_addr.entry(addr.to_string()).or_default();
            e.0 += if pfail { n } else { 0 };
            e.1 |= fail;
        }
    }
    health
}

/// The shards, grouped by label, with who claims their mastership and who
/// serves their first slot in each answering view.
fn shards(
    views: &[View],
    groups: &[Group],
    table: &Table,
    labels: &FastMap<String, String>,
) -> BTreeMap<String, ShardPlan> {
    let mut lines_of: FastMap<&str, Vec<&ClusterNode>> = FastMap::default();
    for line in table.lines() {
        lines_of
            .entry(labels[&line.id].as_str())
            .or_default()
            .push(line);
    }
    // Each answering group's lines by id, built once for every shard.
    let indexed: Vec<(usize, FastMap<&str, &ClusterNode>)> = groups
        .iter()
        .filter(|g| g.fresh > 0)
        .map(|g| {
            let lines = views[g.first].reading.nodes();
            (g.fresh, lines.map(|l| (l.id.as_str(), l)).collect())
        })
        .collect();
    lines_of
        .into_iter()
        .map(|(name, lines)| {
            let mut owners: BTreeMap<(String, String), (usize, u64)> = BTreeMap::new();
            let first = lines.iter().flat_map(|l| l.slots.iter().map(|r| r.0)).min();
            for (n, view) in indexed.iter().filter(|_| first.is_some()) {
                let slot = first.unwrap_or_default();
                let owner = lines
                    .iter()
                    .filter_map(|m| view.get(m.id.as_str()))
                    .find(|l| l.flags.master && l.slots.iter().any(|r| r.0 <= slot && slot <= r.1));
                if let Some(o) = owner {
                    let e = owners.entry((o.id.clone(), o.addr.clone())).or_default();
                    e.0 += n;
                    e.1 = e.1.max(o.config_epoch);
                }
            }
            let claims = lines
                .iter()
                .filter(|l| l.flags.master)
                .map(|l| Claim {
                    addr: l.addr.clone(),
                    epoch: l.config_epoch,
                    fail: l.flags.fail,
                })
                .collect();
            let plan = ShardPlan {
                nodes: lines.iter().map(|l| l.addr.clone()).collect(),
                master: MasterChoice::Claimed(claims),
                sentinel: None,
                cluster: Some(ClusterShardPlan { owners }),
            };
            (name.to_string(), plan)
        })
        .collect()
}

/// Cluster-wide figures from the views of the answering members.
fn consensus(fresh: &[View], table: &Table, health: &Health) -> ClusterView {
    if fresh.is_empty() {
        // Nobody answered: no view says anything, healthy or not.
        return ClusterView {
            state_ok: false,
            majority: None,
            current_epoch: 0,
            failing: Vec::new(),
            slots: None,
        };
    }
    let ok = fresh.iter().filter(|v| v.reading.info().state_ok).count();
    let same = |i: &ClusterInfo| ClusterInfo {
        current_epoch: 0,
        ..i.clone()
    };
    let mut counts: Vec<(ClusterInfo, &ClusterInfo, usize)> = Vec::new();
    for v in fresh {
        let info = v.reading.info();
        let key = same(info);
        match counts.iter_mut().find(|(k, _, _)| *k == key) {
            Some((_, _, n)) => *n += 1,
            None => counts.push((key, info, 1)),
        }
    }
    // The first of the most common wins ties: views are in address order,
    // so the choice is stable from one snapshot to the next.
    let majority = counts
        .iter()
        .rev()
        .max_by_key(|(_, _, n)| *n)
        .map(|(_, i, _)| (*i).clone());
    let failing = table
        .lines()
        .iter()
        .map(|line| {
            let (pfail, fail) = health.by_id.get(&line.id).copied().unwrap_or_default();
            FailingView {
                node: line.addr.clone(),
                pfail,
                fail,
            }
        })
        .collect();
    ClusterView {
        state_ok: ok * 2 > fresh.len(),
        majority,
        current_epoch: fresh
            .iter()
            .map(|v| v.reading.info().current_epoch)
            .max()
            .unwrap_or(0),
        failing,
        slots: None,
    }
}

/// Names each node's shard so that the name survives failovers: a replica
/// takes its master's name, a master keeps the name it had (as a promoted
/// replica it had its old master's), and a master first seen is named
/// after the smallest id among it and its replicas. A failover swaps roles
/// within that set, not its members, so an agent started after a failover
/// (a restart, the second agent of a pair) names the shard as one that
/// watched it happen, and their alerts about it are the same alerts.
pub fn shard_labels(table: &Table, previous: &FastMap<String, String>) -> FastMap<String, String> {
    // The server's own shard id (Redis 7.2+) wins; else the name the shard
    // had, else the smallest id of its members.
    let leads = |l: &ClusterNode| l.flags.master || l.master_id.is_none();
    // Each master's smallest replica id, in one pass, when some master is
    // new: at 1000 nodes a scan per master would be half a million steps.
    let mut smallest: FastMap<&str, &str> = FastMap::default();
    let new = |l: &ClusterNode| leads(l) && l.shard_id.is_none() && !previous.contains_key(&l.id);
    if table.lines().iter().any(|l| new(l)) {
        for l in table.lines() {
            if let Some(m) = l.master_id.as_deref() {
                let min = smallest.entry(m).or_insert(&l.id);
                *min = (*min).min(&l.id);
            }
        }
    }
    let first_seen = |id: &str| -> String {
        let min = smallest.get(id).map_or(id, |r| id.min(*r));
        min.chars().take(12).collect()
    };
    let own = |id: &str| {
        let shard_id = table.get(id).and_then(|l| l.shard_id.as_deref());
        match shard_id {
            Some(sid) => sid.chars().take(12).collect(),
            None => previous.get(id).cloned().unwrap_or_else(|| first_seen(id)),
        }
    };
    let mut labels: FastMap<String, String> = table
        .lines()
        .iter()
        .filter(|l| leads(l))
        .map(|l| (l.id.clone(), own(&l.id)))
        .collect();
    for line in table.lines().iter().filter(|l| !leads(l)) {
        let label = match line.shard_id {
            Some(_) => own(&line.id),
            None => line
                .master_id
                .as_deref()
                .and_then(|m| labels.get(m).cloned())
                .unwrap_or_else(|| own(&line.id)),
        };
        labels.insert(line.id.clone(), label);
    }
    labels
}

/// A shard's setup as the table shows it, for the findings: its master,
/// its replicas and whether each could take over, the host they share.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardSetup {
    /// The shard label.
    pub shard: String,
    /// Its master (`host:port`): of the lines flagged master, one serving
    /// slots and not `fail` first.
    pub master: Option<String>,
    /// Its replicas, in id order.
    pub replicas: Vec<ReplicaSetup>,
    /// The host (announced hostname, else IP) every node of the shard is
    /// on, when it has two nodes or more: one machine failing loses them.
    pub shared_host: Option<String>,
}

/// A replica as a failover would find it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaSetup {
    /// `host:port`.
    pub addr: String,
    /// Flagged `nofailover` (`cluster-replica-no-failover yes`).
    pub nofailover: bool,
    /// Flagged `fail` by some answering view, or `fail?` by most: its
    /// cluster bus links are down, it cannot win an election.
    pub failed: bool,
}

/// Each shard's setup, by label.
fn setups(table: &Table, labels: &FastMap<String, String>, health: &Health) -> Vec<ShardSetup> {
    let host = |l: &ClusterNode| {
        l.hostname.clone().unwrap_or_else(|| {
            crate::parse::split_addr(&l.addr).map_or_else(|| l.addr.clone(), |(h, _)| h.to_string())
        })
    };
    let mut by_shard: BTreeMap<&str, Vec<&ClusterNode>> = BTreeMap::new();
    for line in table.lines() {
        if let Some(label) = labels.get(&line.id) {
            by_shard.entry(label.as_str()).or_default().push(line);
        }
    }
    let flagged = |id: &str| health.by_id.get(id).copied().unwrap_or_default();
    by_shard
        .into_iter()
        .map(|(shard, lines)| {
            let master = lines
                .iter()
                .filter(|l| l.flags.master)
                .max_by_key(|l| (!l.slots.is_empty(), !flagged(&l.id).1))
                .map(|l| l.addr.clone());
            let replicas = lines
                .iter()
                .filter(|l| l.flags.replica)
                .map(|l| {
                    let (pfail, fail) = flagged(&l.id);
                    ReplicaSetup {
                        addr: l.addr.clone(),
                        nofailover: l.flags.nofailover,
                        failed: fail || pfail as usize * 2 > health.views,
                    }
                })
                .collect();
            let hosts: BTreeSet<String> = lines.iter().map(|l| host(l)).collect();
            let shared_host = match (lines.len() > 1, hosts.len()) {
                (true, 1) => hosts.into_iter().next(),
                _ => None,
            };
            ShardSetup {
                shard: shard.to_string(),
                master,
                replicas,
                shared_host,
            }
        })
        .collect()
}
