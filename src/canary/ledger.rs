//! The canary's bookkeeping: which writes each node acknowledged, and the
//! episodes in which clients could not write or lost acknowledged writes.
//! Pure: the probe feeds it what the servers answered, with the times.

use std::collections::VecDeque;
use std::sync::Arc;

use super::reply::{Held, Written};
use crate::model::canary::{Ack, AckRun, Episode, ReadBack};

/// Acknowledged writes remembered: about 7 minutes at the default 100 ms.
/// A new master that lacks more than that is reported as lacking these.
const ACKS_KEPT: usize = 4096;

/// Lost writes listed one by one in an episode; beyond it only counted.
const LOST_LISTED: usize = 1024;

/// The acknowledged writes, in sequence order (a probe writes one at a time,
/// so acknowledgements arrive in the order of their numbers).
#[derive(Debug, Default)]
struct Ledger {
    acks: VecDeque<Ack>,
}

impl Ledger {
    fn acked(&mut self, ack: Ack) {
        self.acks.push_back(ack);
        if self.acks.len() > ACKS_KEPT {
            self.acks.pop_front();
        }
    }

    /// A node holds `held`: the writes acknowledged after it are not there.
    /// They are forgotten, so that the same loss is counted once.
    fn missing_above(&mut self, held: Option<u64>) -> Vec<Ack> {
        let keep = match held {
            Some(seq) => self.acks.partition_point(|a| a.seq <= seq),
            None => 0,
        };
        self.acks.split_off(keep).into()
    }

    /// The last `n` runs of consecutive numbers acknowledged by one node.
    fn runs(&self, n: usize) -> Vec<AckRun> {
        let mut runs: Vec<AckRun> = Vec::new();
        for a in &self.acks {
            match runs.last_mut() {
                Some(r) if r.last + 1 == a.seq && r.node == a.node => r.last = a.seq,
                _ => runs.push(AckRun {
                    first: a.seq,
                    last: a.seq,
                    node: a.node.clone(),
                }),
            }
        }
        runs.split_off(runs.len().saturating_sub(n))
    }
}

/// An episode in progress.
#[derive(Debug)]
struct Open {
    from: Ack,
    read_back: Option<ReadBack>,
    lost: Vec<Ack>,
}

/// The probe's state between two answers: next sequence number, ack
/// records, and the episode in progress.
#[derive(Debug)]
pub struct Tracker {
    next_seq: u64,
    ledger: Ledger,
    last_ack: Option<Ack>,
    /// Whether the last write was acknowledged.
    up: bool,
    /// The node the key must be read from before writing again.
    read_back_pending: bool,
    open: Option<Open>,
}

impl Tracker {
    /// Starts numbering at `first_seq`.
    pub fn new(first_seq: u64) -> Self {
        Tracker {
            next_seq: first_seq,
            ledger: Ledger::default(),
            last_ack: None,
            up: false,
            // What the node holds before the first write is unknown.
            read_back_pending: true,
            open: None,
        }
    }

    /// The next write to send, at `now_ms`. Every write takes a new number,
    /// acknowledged or not, so that a number names one write.
    pub fn next_write(&mut self, now_ms: u64) -> Written {
        let w = Written {
            seq: self.next_seq,
            at_ms: now_ms,
        };
        self.next_seq += 1;
        w
    }

    /// Whether the last write was acknowledged.
    pub fn up(&self) -> bool {
        self.up
    }

    /// The last acknowledged write.
    pub fn last_ack(&self) -> Option<&Ack> {
        self.last_ack.as_ref()
    }

    /// The last `n` runs of acknowledged numbers.
    pub fn runs(&self, n: usize) -> Vec<AckRun> {
        self.ledger.runs(n)
    }

    /// Whether the key must be read before the next write: after a failed
    /// write or a move, what the node holds is unknown, and a write would
    /// hide it.
    pub fn needs_read_back(&self) -> bool {
        self.read_back_pending
    }

    /// Opens an episode at the last acknowledged write, if none is open.
    fn begin(&mut self) {
        if self.open.is_none() {
            if let Some(from) = self.last_ack.clone() {
                self.open = Some(Open {
                    from,
                    read_back: None,
                    lost: Vec::new(),
                });
            }
        }
    }

    /// A write failed (refused, timed out, no connection).
    pub fn write_failed(&mut self) {
        self.up = false;
        self.read_back_pending = true;
        self.begin();
    }

    /// The probe now writes to `node`: when it is another node than the one
    /// that acknowledged last, the master changed under the clients.
    pub fn moved_to(&mut self, node: &str) {
        if self.last_ack.as_ref().is_some_and(|a| *a.node != *node) {
            self.read_back_pending = true;
            self.begin();
        }
    }

    /// Writes acknowledged above what the node holds are lost.
    fn holds(&mut self, held: Held) {
        let seq = match held {
            Held::Missing => None,
            Held::Written(w) => Some(w.seq),
            // Someone else's value: nothing can be concluded.
            Held::Foreign => return,
        };
        let lost = self.ledger.missing_above(seq);
        if !lost.is_empty() {
            self.begin();
        }
        if let Some(open) = &mut self.open {
            open.lost.extend(lost);
        }
    }

    /// The key was read from `node` after a failure or a move.
    pub fn read_back(&mut self, node: &Arc<str>, held: Held) {
        self.read_back_pending = false;
        if let Some(open) = &mut self.open {
            if open.read_back.is_none() && held != Held::Foreign {
                let w = match held {
                    Held::Written(w) => Some(w),
                    _ => None,
                };
                open.read_back = Some(ReadBack {
                    node: node.clone(),
                    seq: w.map(|w| w.seq),
                    written_at: w.map(|w| w.at_ms as f64 / 1000.0),
                });
            }
        }
        self.holds(held);
    }

    /// `written` was acknowledged by `node` at `at`, which held `previous`
    /// just before (`SET ... GET`). Ends the episode in progress, if any,
    /// and returns it.
    pub fn write_acked(
        &mut self,
        written: Written,
        node: &Arc<str>,
        at: f64,
        previous: Held,
    ) -> Option<Episode> {
        self.up = true;
        // The previous value is normally the last write sent; below the
        // last acknowledged one, the node lost writes without a failure
        // the probe saw (a restart without persistence, a failover behind a
        // proxy).
        self.holds(previous);
        let ack = Ack {
            seq: written.seq,
            at,
            node: node.clone(),
        };
        self.ledger.acked(ack.clone());
        self.last_ack = Some(ack.clone());
        let open = self.open.take()?;
        let lost_total = open.lost.len() as u64;
        let mut lost = open.lost;
        lost.drain(..lost.len().saturating_sub(LOST_LISTED));
        Some(Episode {
            from: open.from,
            to: ack,
            read_back: open.read_back,
            lost,
            lost_total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: &str) -> Arc<str> {
        n.into()
    }

    /// Writes `count` acknowledged by `n` from `t`, one a tenth of a second.
    fn acks(tr: &mut Tracker, n: &Arc<str>, count: u64, t: f64) -> Vec<Episode> {
        (0..count)
            .filter_map(|i| {
                let w = tr.next_write(0);
                let prev = Held::Written(Written {
                    seq: w.seq - 1,
                    at_ms: 0,
                });
                tr.write_acked(w, n, t + i as f64 / 10.0, prev)
            })
            .collect()
    }

    fn held(seq: u64) -> Held {
        Held::Written(Written { seq, at_ms: 5_000 })
    }

    #[test]
    fn a_failover_with_the_replica_in_sync_loses_nothing() {
        let (a, b) = (node("a:1"), node("b:1"));
        let mut tr = Tracker::new(100);
        assert!(tr.needs_read_back(), "unknown before the first read");
        tr.read_back(&a, Held::Missing);
        assert!(
            acks(&mut tr, &a, 10, 1.0).is_empty(),
            "nothing lost at start"
        );
        assert_eq!(tr.last_ack().unwrap().seq, 109);
        // The master stops answering: three writes fail.
        for _ in 0..3 {
            tr.next_write(0);
            tr.write_failed();
        }
        assert!(!tr.up() && tr.needs_read_back());
        tr.moved_to(&b);
        tr.read_back(&b, held(109));
        assert!(!tr.needs_read_back());
        let w = tr.next_write(0);
        let e = tr.write_acked(w, &b, 4.0, held(109)).expect("episode ends");
        assert_eq!((e.from.seq, &*e.from.node), (109, "a:1"));
        assert_eq!((e.to.seq, &*e.to.node), (113, "b:1"));
        assert!((e.unavailable_seconds() - (4.0 - 1.9)).abs() < 1e-9);
        assert_eq!(e.lost_total, 0);
        let rb = e.read_back.unwrap();
        assert_eq!((rb.seq, rb.written_at), (Some(109), Some(5.0)));
        assert!(tr.up());
        assert_eq!(
            tr.runs(5),
            [
                AckRun {
                    first: 100,
                    last: 109,
                    node: a.clone()
                },
                AckRun {
                    first: 113,
                    last: 113,
                    node: b.clone()
                },
            ]
        );
        assert_eq!(tr.runs(1).len(), 1);
    }

    #[test]
    fn writes_the_new_master_never_had_are_lost_once() {
        let (a, b) = (node("a:1"), node("b:1"));
        let mut tr = Tracker::new(1);
        tr.read_back(&a, Held::Missing);
        acks(&mut tr, &a, 20, 0.0);
        tr.next_write(0);
        tr.write_failed();
        tr.moved_to(&b);
        // The replica stopped at 12: 13..=20 were acknowledged, then lost.
        tr.read_back(&b, held(12));
        let w = tr.next_write(0);
        let e = tr.write_acked(w, &b, 9.0, held(12)).unwrap();
        assert_eq!(e.lost_total, 8);
        let seqs: Vec<u64> = e.lost.iter().map(|a| a.seq).collect();
        assert_eq!(seqs, (13..=20).collect::<Vec<_>>());
        // A later read of an even older value counts only what is left.
        tr.next_write(0);
        tr.write_failed();
        tr.read_back(&b, held(10));
        let w = tr.next_write(0);
        let e = tr.write_acked(w, &b, 10.0, held(10)).unwrap();
        assert_eq!(e.lost_total, 3, "11, 12 and the write acknowledged by b");
    }

    #[test]
    fn a_missing_key_loses_everything_and_a_foreign_value_nothing() {
        let a = node("a:1");
        let mut tr = Tracker::new(1);
        tr.read_back(&a, Held::Missing);
        acks(&mut tr, &a, 5, 0.0);
        // Same node, restarted without persistence: found by the next write.
        let w = tr.next_write(0);
        let e = tr
            .write_acked(w, &a, 1.0, Held::Missing)
            .expect("loss is an episode");
        assert_eq!((e.lost_total, e.from.seq, e.to.seq), (5, 5, 6));
        assert!(e.read_back.is_none());
        // Someone else wrote the key: no conclusion, no episode.
        let w = tr.next_write(0);
        assert!(tr.write_acked(w, &a, 1.1, Held::Foreign).is_none());
        tr.next_write(0);
        tr.write_failed();
        tr.read_back(&a, Held::Foreign);
        let w = tr.next_write(0);
        let e = tr.write_acked(w, &a, 2.0, Held::Foreign).unwrap();
        assert_eq!(e.lost_total, 0);
        assert!(e.read_back.is_none(), "a foreign value is no read-back");
    }

    #[test]
    fn a_move_without_a_failure_is_an_episode_and_a_first_write_is_not() {
        let (a, b) = (node("a:1"), node("b:1"));
        let mut tr = Tracker::new(1);
        tr.moved_to(&a);
        tr.read_back(&a, held(0));
        assert!(acks(&mut tr, &a, 3, 0.0).is_empty());
        tr.moved_to(&a);
        assert!(!tr.needs_read_back(), "same node");
        tr.moved_to(&b);
        assert!(tr.needs_read_back());
        tr.read_back(&b, held(3));
        let w = tr.next_write(0);
        let e = tr.write_acked(w, &b, 0.5, held(3)).unwrap();
        assert_eq!(
            (&*e.from.node, &*e.to.node, e.lost_total),
            ("a:1", "b:1", 0)
        );
    }

    #[test]
    fn memory_is_bounded() {
        let (a, b) = (node("a:1"), node("b:1"));
        let mut tr = Tracker::new(1);
        tr.read_back(&a, Held::Missing);
        acks(&mut tr, &a, ACKS_KEPT as u64 + 10, 0.0);
        assert_eq!(tr.ledger.acks.len(), ACKS_KEPT);
        tr.moved_to(&b);
        tr.read_back(&b, Held::Missing);
        let w = tr.next_write(0);
        let e = tr.write_acked(w, &b, 1e4, Held::Missing).unwrap();
        assert_eq!(e.lost_total, ACKS_KEPT as u64);
        assert_eq!(e.lost.len(), LOST_LISTED);
        assert_eq!(
            e.lost.last().unwrap().seq,
            ACKS_KEPT as u64 + 10,
            "the newest are listed"
        );
    }
}
