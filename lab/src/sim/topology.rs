//! The cluster as one node believes it is: a [`View`] per knowledge state,
//! moved on by [`Change`]s that reach each node at its own time.
//!
//! Views are immutable and shared: every node that learnt the same changes in
//! the same order holds the same `Arc<View>`, so a 1000-node cluster in a
//! steady state has one view, rendered once (see `replies`), not 1000.

use std::sync::{Arc, OnceLock};

use super::replies::NodesText;

/// Total number of hash slots.
pub(crate) const SLOTS: usize = 16_384;

/// An inclusive range of slots.
pub(crate) type SlotRange = (u16, u16);

/// How a node sees a peer's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Health {
    Ok,
    /// `fail?`: no pong for longer than the node timeout.
    Pfail,
    /// `fail`: the cluster agreed the peer failed.
    Fail,
}

/// A node's role as a view records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Master,
    Replica { of: usize },
}

/// What a view says about one node: one `CLUSTER NODES` line.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub role: Role,
    /// The node's own config epoch; a replica's line shows its master's.
    pub epoch: u64,
    pub slots: Arc<[SlotRange]>,
    pub health: Health,
}

/// One step of what a node learns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// A peer's health as this node now sees it.
    Health { node: usize, health: Health },
    /// A replica took its master's slots over with a new config epoch. The old
    /// master keeps its line (still `fail`) without slots, and its other
    /// replicas follow the new master, as Redis shows a finished failover.
    Promote { replica: usize, epoch: u64 },
    /// A failed master that lost its slots is back, as a replica of the
    /// shard's master: its failure is cleared.
    Rejoin { node: usize, master: usize },
}

/// The slot counts `CLUSTER INFO` prints, computed once per view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    pub assigned: u32,
    pub ok: u32,
    pub pfail: u32,
    pub fail: u32,
    /// Masters serving at least one slot (`cluster_size`).
    pub size: u32,
}

impl Summary {
    /// `cluster_state:ok`: every slot assigned and none served by a failed
    /// master (Redis's default `cluster-require-full-coverage yes`).
    pub fn state_ok(&self) -> bool {
        self.fail == 0 && self.assigned as usize == SLOTS
    }

    fn of(lines: &[Line]) -> Summary {
        let mut s = Summary::default();
        for line in lines.iter().filter(|l| !l.slots.is_empty()) {
            let count: u32 = line
                .slots
                .iter()
                .map(|&(a, b)| u32::from(b) - u32::from(a) + 1)
                .sum();
            s.assigned += count;
            s.size += 1;
            match line.health {
                Health::Ok => s.ok += count,
                Health::Pfail => s.pfail += count,
                Health::Fail => s.fail += count,
            }
        }
        s
    }
}

/// One knowledge state of the cluster.
#[derive(Debug)]
pub(crate) struct View {
    /// Unique per view: keys the shared transitions between views.
    pub id: u64,
    /// By node index.
    pub lines: Vec<Line>,
    pub current_epoch: u64,
    pub summary: Summary,
    /// The `CLUSTER NODES` lines of this view, rendered on first use.
    pub nodes_text: OnceLock<NodesText>,
}

impl View {
    fn new(id: u64, lines: Vec<Line>, current_epoch: u64) -> View {
        View {
            id,
            summary: Summary::of(&lines),
            lines,
            current_epoch,
            nodes_text: OnceLock::new(),
        }
    }

    /// A freshly built cluster: slots split over the masters exactly as the
    /// lab's `Cluster::start` splits them, config epochs 1..=masters in slot
    /// order, replica `i` of master `m` at `masters + m * replicas + i`.
    ///
    /// The current epoch is what a real lab cluster reaches: its nodes all
    /// start at epoch 0 and the collision resolution bumps all but one, to
    /// `nodes - 1` (never below the highest master epoch here).
    pub fn initial(id: u64, masters: usize, replicas: usize) -> View {
        let total = masters * (1 + replicas);
        let lines = (0..total)
            .map(|i| {
                if i < masters {
                    let first = i * SLOTS / masters;
                    let end = (i + 1) * SLOTS / masters;
                    // Slot numbers are below SLOTS (16384), so they fit in u16.
                    let slots: Arc<[SlotRange]> = if end > first {
                        Arc::new([(first as u16, (end - 1) as u16)])
                    } else {
                        Arc::new([])
                    };
                    Line {
                        role: Role::Master,
                        epoch: i as u64 + 1,
                        slots,
                        health: Health::Ok,
                    }
                } else {
                    Line {
                        role: Role::Replica {
                            of: (i - masters) / replicas,
                        },
                        epoch: 0,
                        slots: Arc::new([]),
                        health: Health::Ok,
                    }
                }
            })
            .collect();
        let current = (masters as u64).max(total as u64 - 1);
        View::new(id, lines, current)
    }

    /// The view after learning `change`, with id `id`. A change that does not
    /// fit this view (a promotion of a node it does not see as a replica)
    /// leaves the lines as they are.
    pub fn apply(&self, change: &Change, id: u64) -> View {
        let mut lines = self.lines.clone();
        let mut current = self.current_epoch;
        match *change {
            Change::Health { node, health } => {
                if let Some(line) = lines.get_mut(node) {
                    line.health = health;
                }
            }
            Change::Promote { replica, epoch } => {
                if let Some(&Line {
                    role: Role::Replica { of: old },
                    ..
                }) = lines.get(replica)
                {
                    let slots = std::mem::replace(&mut lines[old].slots, Arc::new([]));
                    for line in lines.iter_mut() {
                        if line.role == (Role::Replica { of: old }) {
                            line.role = Role::Replica { of: replica };
                        }
                    }
                    lines[replica] = Line {
                        role: Role::Master,
                        epoch,
                        slots,
                        health: Health::Ok,
                    };
                    current = current.max(epoch);
                }
            }
            Change::Rejoin { node, master } => {
                if let Some(line) = lines.get_mut(node) {
                    line.role = Role::Replica { of: master };
                    line.health = Health::Ok;
                    line.slots = Arc::new([]);
                }
            }
        }
        View::new(id, lines, current)
    }

    /// The config epoch a node's line shows: its own for a master, its
    /// master's for a replica (as `CLUSTER NODES` and `cluster_my_epoch` do).
    pub fn shown_epoch(&self, node: usize) -> u64 {
        match self.lines.get(node).map(|l| l.role) {
            Some(Role::Replica { of }) => self.lines.get(of).map_or(0, |m| m.epoch),
            Some(Role::Master) => self.lines[node].epoch,
            None => 0,
        }
    }

    /// The nodes this view lists as replicas of `master`, in index order.
    pub fn replicas_of(&self, master: usize) -> impl Iterator<Item = usize> + '_ {
        self.lines
            .iter()
            .enumerate()
            .filter(move |(_, l)| l.role == Role::Replica { of: master })
            .map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_split_matches_the_lab() {
        let v = View::initial(0, 3, 1);
        let slots: Vec<Vec<SlotRange>> = v.lines.iter().map(|l| l.slots.to_vec()).collect();
        assert_eq!(
            slots,
            [
                vec![(0, 5460)],
                vec![(5461, 10921)],
                vec![(10922, 16383)],
                vec![],
                vec![],
                vec![]
            ]
        );
        assert_eq!(v.lines[4].role, Role::Replica { of: 1 });
        assert_eq!(v.shown_epoch(4), 2);
        assert_eq!(v.current_epoch, 5);
        assert_eq!(
            v.summary,
            Summary {
                assigned: 16384,
                ok: 16384,
                pfail: 0,
                fail: 0,
                size: 3
            }
        );
        assert!(v.summary.state_ok());
        assert_eq!(View::initial(0, 3, 0).current_epoch, 3);
    }

    #[test]
    fn failure_then_promotion_then_rejoin() {
        let v = View::initial(0, 2, 2);
        // Replicas of master 1: nodes 4 and 5.
        let pfail = v.apply(
            &Change::Health {
                node: 1,
                health: Health::Pfail,
            },
            1,
        );
        assert_eq!(
            (pfail.summary.pfail, pfail.summary.state_ok()),
            (8192, true)
        );
        let fail = pfail.apply(
            &Change::Health {
                node: 1,
                health: Health::Fail,
            },
            2,
        );
        assert_eq!((fail.summary.fail, fail.summary.state_ok()), (8192, false));
        let promoted = fail.apply(
            &Change::Promote {
                replica: 4,
                epoch: 6,
            },
            3,
        );
        assert!(promoted.summary.state_ok());
        assert_eq!(promoted.current_epoch, 6);
        assert_eq!(promoted.lines[4].role, Role::Master);
        assert_eq!(promoted.lines[4].slots.to_vec(), [(8192, 16383)]);
        assert!(promoted.lines[1].slots.is_empty());
        assert_eq!(promoted.lines[1].health, Health::Fail);
        assert_eq!(promoted.lines[5].role, Role::Replica { of: 4 });
        assert_eq!(promoted.replicas_of(4).collect::<Vec<_>>(), [5]);
        let back = promoted.apply(&Change::Rejoin { node: 1, master: 4 }, 4);
        assert_eq!(back.lines[1].role, Role::Replica { of: 4 });
        assert_eq!(back.lines[1].health, Health::Ok);
        assert_eq!(back.shown_epoch(1), 6);
        assert_eq!(back.replicas_of(4).collect::<Vec<_>>(), [1, 5]);
    }

    #[test]
    fn a_promotion_that_does_not_fit_changes_nothing() {
        let v = View::initial(0, 2, 1);
        let same = v.apply(
            &Change::Promote {
                replica: 0,
                epoch: 9,
            },
            1,
        );
        assert_eq!(same.current_epoch, v.current_epoch);
        assert_eq!(same.lines[0].slots.to_vec(), v.lines[0].slots.to_vec());
        let out_of_range = v.apply(
            &Change::Health {
                node: 99,
                health: Health::Fail,
            },
            2,
        );
        assert_eq!(out_of_range.summary, v.summary);
    }
}
