//! What the node pollers of one cluster share: whose turn it is to read
//! `CLUSTER NODES` ([`Rotation`]), and the lines read, interned
//! ([`Lines`]).
//!
//! `CLUSTER NODES` is the one reply whose size grows with the cluster: N
//! lines from each of N nodes is N² a round. So a poll reads it only when
//! `CLUSTER INFO` or the node's own role says the topology moved, when the
//! node is new or back, and on the node's turn: at most
//! [`READS_PER_ROUND`] turns a poll round for the whole cluster, each node
//! at least every `topology_interval` while that budget allows
//! (docs/architecture.md, "Polling", says how soon each kind of change is
//! seen). Each read runs on a connection of its own, at most
//! [`READS_AT_ONCE`] at a time ([`Topology::reads`]).

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::parse::cluster::ClusterNode;
use crate::util::hash::{digest, FastMap};

/// Turns a poll round may give a cluster: `CLUSTER NODES` costs the
/// cluster and the agent about twice its size a round, however large.
pub const READS_PER_ROUND: u64 = 2;

/// The order in which a cluster's nodes read their `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rotation {
    /// The cluster's nodes, sorted: a node's place gives its turn.
    nodes: Vec<String>,
    /// Poll rounds between two turns of one node.
    period: u64,
}

impl Rotation {
    /// Turns for `nodes`: each every `topology_interval`, or less often
    /// when that would take more than [`READS_PER_ROUND`] a round.
    pub fn new(
        mut nodes: Vec<String>,
        poll_interval: Duration,
        topology_interval: Duration,
    ) -> Self {
        nodes.sort_unstable();
        nodes.dedup();
        let wanted = topology_interval.as_secs_f64() / poll_interval.as_secs_f64().max(1e-3);
        let budget = (nodes.len() as u64).div_ceil(READS_PER_ROUND);
        Rotation {
            period: (wanted.ceil() as u64).max(budget).max(1),
            nodes,
        }
    }

    /// Poll rounds between two turns of one node.
    pub fn period(&self) -> u64 {
        self.period
    }

    /// Whether the node at `addr` reads `CLUSTER NODES` in `round`, having
    /// last read it in `last`: on its turn, or when it missed its turn (a
    /// late poll, a node not yet in the rotation), once a period is over.
    pub fn due(&self, addr: &str, round: u64, last: Option<u64>) -> bool {
        let Some(last) = last else {
            return true;
        };
        if round <= last {
            return false;
        }
        if round - last >= self.period {
            return true;
        }
        self.nodes
            .binary_search_by(|n| n.as_str().cmp(addr))
            .is_ok_and(|i| {
                // Spread evenly over the period: at most READS_PER_ROUND a round.
                let turn = i as u64 * self.period / self.nodes.len() as u64;
                round % self.period == turn
            })
    }
}

/// `CLUSTER NODES` reads of one cluster running at once. A read holds a
/// connection and a buffer the size of the reply (about 130 kB at 1000
/// nodes) for a few milliseconds; when the whole cluster reads at once (a
/// new epoch, the agent starting) the others wait their turn instead of
/// all holding theirs together.
pub const READS_AT_ONCE: usize = 8;

/// What the node pollers of one cluster share.
#[derive(Debug)]
pub struct Topology {
    rotation: Mutex<Arc<Rotation>>,
    /// The lines its nodes' views hold.
    pub lines: Lines,
    /// Permits to read `CLUSTER NODES`: [`READS_AT_ONCE`].
    pub reads: Semaphore,
}

impl Topology {
    /// Starts with `rotation`.
    pub fn new(rotation: Rotation) -> Self {
        Topology {
            rotation: Mutex::new(Arc::new(rotation)),
            lines: Lines::default(),
            reads: Semaphore::new(READS_AT_ONCE),
        }
    }

    /// The rotation now.
    pub fn rotation(&self) -> Arc<Rotation> {
        self.rotation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the rotation: the cluster's nodes changed.
    pub fn set_rotation(&self, rotation: Rotation) {
        *self.rotation.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(rotation);
    }
}

/// Interned `CLUSTER NODES` lines. The views of one cluster repeat each
/// other: all but a node's own line and a few flags are the same in every
/// view, so a 1000-node cluster's 1000 views hold about 2000 distinct lines,
/// not a million.
#[derive(Debug, Default)]
pub struct Lines {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    lines: FastMap<u64, Weak<ClusterNode>>,
    /// Entries alive at the last sweep of dead ones.
    alive: usize,
}

impl Lines {
    /// The lines of one reply, each shared with the equal lines read before
    /// while any view still holds them.
    pub fn intern(&self, parsed: Vec<ClusterNode>) -> Vec<Arc<ClusterNode>> {
        // A poisoned lock holds a consistent map: lines are only added.
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let interned = parsed
            .into_iter()
            .map(|line| {
                let key = digest(&line);
                match table.lines.get(&key).and_then(Weak::upgrade) {
                    Some(known) if *known == line => known,
                    // New, gone, or (never seen) another line of one digest.
                    _ => {
                        let line = Arc::new(line);
                        table.lines.insert(key, Arc::downgrade(&line));
                        line
                    }
                }
            })
            .collect();
        // Views replaced drop their lines: sweep the dead entries once the
        // table has doubled since the last sweep.
        if table.lines.len() > 2 * table.alive + 1024 {
            table.lines.retain(|_, line| line.strong_count() > 0);
            table.alive = table.lines.len();
        }
        interned
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::cluster::parse_nodes;
    use crate::parse::fixture;

    fn addrs(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:6379")).collect()
    }

    /// Turns in `rounds` consecutive rounds, each node reading when due.
    fn reads(r: &Rotation, rounds: std::ops::Range<u64>) -> Vec<usize> {
        let mut last: Vec<Option<u64>> = vec![Some(0); r.nodes.len()];
        rounds
            .map(|round| {
                let mut n = 0;
                for (i, addr) in r.nodes.iter().enumerate() {
                    if r.due(addr, round, last[i]) {
                        last[i] = Some(round);
                        n += 1;
                    }
                }
                n
            })
            .collect()
    }

    #[test]
    fn small_clusters_read_every_interval_large_ones_two_a_round() {
        let second = Duration::from_secs(1);
        let small = Rotation::new(addrs(6), second, Duration::from_secs(10));
        assert_eq!(small.period(), 10);
        let per_round = reads(&small, 1..41);
        assert_eq!(per_round.iter().sum::<usize>(), 24, "each node 4 times");
        assert!(per_round.iter().all(|n| *n <= 2));

        let large = Rotation::new(addrs(1000), second, Duration::from_secs(10));
        assert_eq!(large.period(), 500, "the budget sets the pace");
        let per_round = reads(&large, 1..1001);
        assert!(per_round.iter().all(|n| *n <= 2), "{per_round:?}");
        assert_eq!(per_round.iter().sum::<usize>(), 2000, "each node twice");
    }

    #[test]
    fn first_reads_late_polls_and_strangers() {
        let r = Rotation::new(addrs(4), Duration::from_secs(1), Duration::from_secs(8));
        assert!(r.due("10.0.0.1:6379", 5, None), "a first poll reads");
        assert!(!r.due("10.0.0.1:6379", 5, Some(5)), "once a round");
        assert!(r.due("10.0.0.9:6379", 9, Some(1)), "a stranger each period");
        assert!(!r.due("10.0.0.9:6379", 8, Some(1)));
        // Whatever the turn, never more than a period apart.
        for last in 0..20 {
            assert!((last + 1..=last + 8).any(|round| r.due("10.0.0.2:6379", round, Some(last))));
        }
    }

    #[test]
    fn equal_lines_are_shared_and_unequal_ones_not() {
        let lines = Lines::default();
        let a = lines.intern(parse_nodes(&fixture("cluster-nodes-ok.txt")).unwrap());
        let b = lines.intern(parse_nodes(&fixture("cluster-nodes-ok.txt")).unwrap());
        assert!(a.iter().zip(&b).all(|(x, y)| Arc::ptr_eq(x, y)));
        let after =
            lines.intern(parse_nodes(&fixture("cluster-nodes-after-failover.txt")).unwrap());
        let shared = after
            .iter()
            .filter(|l| a.iter().any(|x| Arc::ptr_eq(x, l)))
            .count();
        assert!(shared > 0 && shared < after.len(), "{shared}");
        // Lines no view holds any more are not kept alive.
        drop((a, b, after));
        let fresh = lines.intern(parse_nodes(&fixture("cluster-nodes-ok.txt")).unwrap());
        assert_eq!(Arc::strong_count(&fresh[0]), 1);
    }
}
