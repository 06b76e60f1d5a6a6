//! What the canary probe reports to the monitor, and what a failover's
//! timeline records of it: acknowledged writes, episodes in which clients
//! could not write or lost acknowledged writes, and a failover's figures.
//! The probe (src/canary/) produces them; the monitor adds each episode to
//! the failover it overlaps (docs/timelines.md, "Canary").

use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::timeline::Timeline;

/// Upper bounds of the write latency histogram, in seconds: from a write on
/// loopback to the longest interval.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// What a probe tells the monitor.
#[derive(Debug, Clone)]
pub struct Report {
    /// The deployment.
    pub deployment: Arc<str>,
    /// The shard probed.
    pub shard: String,
    /// When it was sent.
    pub at: SystemTime,
    /// What happened.
    pub kind: ReportKind,
}

/// A probe's news.
#[derive(Debug, Clone)]
pub enum ReportKind {
    /// Where the probe stands (every poll interval, and when writes start
    /// or stop failing).
    Status(Status),
    /// Writes resumed after an episode.
    Episode(Box<Episode>),
}

/// Where a probe stands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    /// The last write was acknowledged.
    pub up: bool,
    /// The node it writes to.
    pub node: Option<Arc<str>>,
    /// The key it writes.
    pub key: Option<String>,
    /// The last acknowledged write.
    pub last_ack: Option<Ack>,
    /// The latest runs of acknowledged sequence numbers.
    pub acked: Vec<AckRun>,
    /// Round trips of the writes acknowledged since the last status, seconds.
    pub latencies: Vec<f64>,
}

/// One write a node acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    /// The write's sequence number.
    pub seq: u64,
    /// When the acknowledgement arrived (unix seconds).
    pub at: f64,
    /// The node that acknowledged it, `host:port`.
    pub node: Arc<str>,
}

/// Consecutive sequence numbers one node acknowledged, for the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AckRun {
    /// The first sequence number.
    pub first: u64,
    /// The last (inclusive).
    pub last: u64,
    /// The node.
    pub node: Arc<str>,
}

/// What a node held when the canary first read its key after an outage or
/// a move: the last of the canary's writes it has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadBack {
    /// The node read, `host:port`.
    pub node: Arc<str>,
    /// The sequence number it held; `None` when it held no canary write.
    pub seq: Option<u64>,
    /// When that write was sent (unix seconds).
    pub written_at: Option<f64>,
}

/// A stretch between two acknowledged writes in which something went wrong
/// for clients: writes failed, the master changed, or acknowledged writes
/// turned out to be missing.
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    /// The last acknowledged write before it.
    pub from: Ack,
    /// The first acknowledged write after it.
    pub to: Ack,
    /// What the node read after a failure or a move held, if it was read.
    pub read_back: Option<ReadBack>,
    /// Acknowledged writes the nodes written to since do not hold, newest
    /// last (at most 1024, the newest).
    pub lost: Vec<Ack>,
    /// How many there are in all.
    pub lost_total: u64,
}

impl Episode {
    /// Seconds during which no write was acknowledged.
    pub fn unavailable_seconds(&self) -> f64 {
        (self.to.at - self.from.at).max(0.0)
    }
}

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
        let switched = t.switched();
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
    use crate::model::timeline::{MarkName, Outcome, Serial};

    fn ack(seq: u64, at: f64, node: &str) -> Ack {
        Ack {
            seq,
            at,
            node: Arc::from(node),
        }
    }

    fn failover() -> Timeline {
        let mut t = Timeline::open(&Serial::default(), "d", "m", Kind::Sentinel);
        t.old_master = Some("a:1".into());
        t.mark(MarkName::Sdown, 10.0, "s");
        t.mark(MarkName::Switched, 12.0, "s");
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
        t.mark(MarkName::Ended, 13.0, "s");
        t.outcome = Some(Outcome::Completed);
        let after = episode(ack(3, 14.0, "b:1"), ack(4, 15.0, "b:1"), Vec::new());
        assert!(!Impact::overlaps(&after, &t));
        let during = episode(ack(3, 9.5, "a:1"), ack(4, 13.5, "b:1"), Vec::new());
        assert!(
            Impact::overlaps(&during, &t),
            "ends after the end: still this one"
        );
    }
}
