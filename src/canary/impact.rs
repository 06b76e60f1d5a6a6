//! What the canary saw of one failover, as its timeline records it: how
//! long writes failed, which acknowledged writes the new master never had,
//! and how many reads the old master answered after the switch. Pure: the
//! monitor adds each episode the probe reports to the failover it overlaps.

use serde::{Deserialize, Serialize};

use super::ledger::{Ack, Episode, ReadBack};
use crate::timeline::Timeline;

/// Ranges of lost sequence numbers kept on a timeline.
const LOST_RANGES_KEPT: usize = 64;

/// The canary's figures for one failover (docs/timelines.md, "Canary").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Impact {
    /// Seconds without an acknowledged write: from the last acknowledged
    /// write before the failure to the first one after (summed over the
    /// episodes of this failover). Exact to the canary interval.
    pub write_unavailable_seconds: f64,
    /// The last write acknowledged before writes failed.
    pub last_ack_before: Ack,
    /// The first write acknowledged after.
    pub first_ack_after: Ack,
    /// What the node the canary wrote to next held when first read.
    pub read_back: Option<ReadBack>,
    /// Acknowledged writes the nodes written to afterwards never had.
    pub lost_writes: u64,
    /// Their sequence numbers, as inclusive ranges (the newest 64 ranges).
    pub lost_seqs: Vec<[u64; 2]>,
    /// Lost writes the old master acknowledged after the switch: each was
    /// also a read (`SET ... GET`) answered by a node no longer master.
    pub stale_reads: u64,
}

impl Impact {
    /// Whether an episode belongs to this failover: it ends after the
    /// failover began and starts before it ended.
    pub fn overlaps(e: &Episode, t: &Timeline) -> bool {
        let began = t.started().unwrap_or(f64::NEG_INFINITY);
        let ended = t.ended().unwrap_or(f64::INFINITY);
        e.to.at >= began && e.from.at <= ended
    }

    /// Adds an episode to the failover's figures (`t.canary`).
    pub fn add(t: &mut Timeline, e: &Episode) {
        // When the new master took over: reads the old one answered later were stale.
        let switched = t.at("switched").or_else(|| t.at("promoted"));
        let stale = e
            .lost
            .iter()
            .filter(|a| switched.is_some_and(|s| a.at > s))
            .filter(|a| t.old_master.as_deref().is_none_or(|m| *a.node == *m))
            .count() as u64;
        let impact = t.canary.get_or_insert_with(|| Impact {
            write_unavailable_seconds: 0.0,
            last_ack_before: e.from.clone(),
            first_ack_after: e.to.clone(),
            read_back: None,
            lost_writes: 0,
            lost_seqs: Vec::new(),
            stale_reads: 0,
        });
        impact.write_unavailable_seconds += e.unavailable_seconds();
        impact.first_ack_after = e.to.clone();
        if impact.read_back.is_none() {
            impact.read_back = e.read_back.clone();
        }
        impact.lost_writes += e.lost_total;
        impact.stale_reads += stale;
        for a in &e.lost {
            match impact.lost_seqs.last_mut() {
                Some(r) if r[1] + 1 == a.seq => r[1] = a.seq,
                _ => impact.lost_seqs.push([a.seq, a.seq]),
            }
        }
        let excess = impact.lost_seqs.len().saturating_sub(LOST_RANGES_KEPT);
        impact.lost_seqs.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::Kind;

    fn ack(seq: u64, at: f64, node: &str) -> Ack {
        Ack {
            seq,
            at,
            node: Arc::from(node),
        }
    }

    fn failover() -> Timeline {
        let mut t = Timeline::open("d", "m", Kind::Sentinel, 10.0);
        t.old_master = Some("a:1".into());
        t.mark("sdown", 10.0, "s");
        t.mark("switched", 12.0, "s");
        t
    }

    fn episode(from: Ack, to: Ack, lost: Vec<Ack>) -> Episode {
        Episode {
            from,
            to,
            read_back: None,
            lost_total: lost.len() as u64,
            lost,
        }
    }

    #[test]
    fn episodes_add_up_and_stale_reads_are_the_old_masters_after_the_switch() {
        let mut t = failover();
        // The old master kept answering the probe (a partition) until 12.5.
        let lost = vec![
            ack(7, 11.5, "a:1"),
            ack(8, 12.2, "a:1"),
            ack(9, 12.5, "a:1"),
        ];
        let e = episode(ack(9, 12.5, "a:1"), ack(11, 13.0, "b:1"), lost);
        assert!(Impact::overlaps(&e, &t));
        Impact::add(&mut t, &e);
        let i = t.canary.clone().unwrap();
        assert_eq!((i.lost_writes, i.stale_reads), (3, 2));
        assert_eq!(i.lost_seqs, [[7, 9]]);
        assert!((i.write_unavailable_seconds - 0.5).abs() < 1e-9);
        // A second blip during the same failover.
        let e = episode(
            ack(12, 13.1, "b:1"),
            ack(14, 13.4, "b:1"),
            vec![ack(12, 13.1, "b:1")],
        );
        Impact::add(&mut t, &e);
        let i = t.canary.unwrap();
        assert_eq!(
            (i.lost_writes, i.stale_reads),
            (4, 2),
            "b is not the old master"
        );
        assert_eq!(i.lost_seqs, [[7, 9], [12, 12]]);
        assert!((i.write_unavailable_seconds - 0.8).abs() < 1e-9);
        assert_eq!((i.last_ack_before.seq, i.first_ack_after.seq), (9, 14));
    }

    #[test]
    fn only_episodes_during_the_failover_belong_to_it() {
        let mut t = failover();
        let before = episode(ack(1, 5.0, "a:1"), ack(2, 9.0, "a:1"), Vec::new());
        assert!(!Impact::overlaps(&before, &t));
        t.mark("ended", 13.0, "s");
        t.outcome = Some(crate::timeline::Outcome::Completed);
        let after = episode(ack(3, 14.0, "b:1"), ack(4, 15.0, "b:1"), Vec::new());
        assert!(!Impact::overlaps(&after, &t));
        let during = episode(ack(3, 9.5, "a:1"), ack(4, 13.5, "b:1"), Vec::new());
        assert!(
            Impact::overlaps(&during, &t),
            "ends after the end: still this one"
        );
    }
}
