//! Ended failovers, their counts and phase histograms, and the recent
//! sentinel events: what /metrics and the API show about failovers.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use crate::config::Kind;
use crate::model::histogram::Histogram;
use crate::model::snapshot::RecordedEvent;
use crate::model::timeline::{Outcome, Phase, Timeline};

/// Ended failovers and what they add up to.
#[derive(Debug)]
pub struct History {
    keep_per_shard: usize,
    /// Ended timelines, oldest first, at most `keep_per_shard` per shard.
    closed: VecDeque<Timeline>,
    /// Failovers ended since the agent started, by (deployment, shard, outcome).
    pub totals: BTreeMap<(String, String, Outcome), u64>,
    /// Phase durations of completed failovers, by (deployment, kind, phase).
    pub phases: BTreeMap<(String, Kind, Phase), Histogram>,
    /// Timelines changed since the last [`History::take_changed`], to persist.
    changed: Vec<Timeline>,
}

impl History {
    /// An empty store keeping `keep_per_shard` ended timelines per shard.
    pub fn new(keep_per_shard: usize) -> Self {
        History {
            keep_per_shard: keep_per_shard.max(1),
            closed: VecDeque::new(),
            totals: BTreeMap::new(),
            phases: BTreeMap::new(),
            changed: Vec::new(),
        }
    }

    /// Takes back ended timelines read from disk (they count in no total:
    /// the counters start with the process, as counters do).
    pub fn restore(&mut self, ended: impl IntoIterator<Item = Timeline>) {
        self.closed.extend(ended);
        self.trim();
    }

    /// An open timeline changed: persist it once it is a real failover
    /// (a suspicion that clears by itself is never written).
    pub fn changed(&mut self, t: &Timeline) {
        if t.worth_keeping() {
            self.changed.push(t.clone());
        }
    }

    /// A timeline ended.
    pub fn closed(&mut self, t: Timeline) {
        let outcome = t.outcome.expect("closed timelines have an outcome");
        *self
            .totals
            .entry((t.deployment.clone(), t.shard.clone(), outcome))
            .or_default() += 1;
        if outcome == Outcome::Completed {
            for (phase, secs) in t.phases() {
                self.phases
                    .entry((t.deployment.clone(), t.kind, phase))
                    .or_default()
                    .observe(secs);
            }
        }
        self.changed.push(t.clone());
        self.closed.push_back(t);
        self.trim();
    }

    /// Amends the shard's latest ended timeline with what was learnt after
    /// its end (a two-masters window, the canary's figures); `amend` says
    /// whether it changed it.
    pub fn amend_latest(
        &mut self,
        deployment: &str,
        shard: &str,
        amend: impl FnOnce(&mut Timeline) -> bool,
    ) {
        if let Some(t) = self
            .closed
            .iter_mut()
            .rev()
            .find(|t| t.deployment == deployment && t.shard == shard)
        {
            if amend(t) {
                self.changed.push(t.clone());
            }
        }
    }

    /// The timelines to append to the store since the last call.
    pub fn take_changed(&mut self) -> Vec<Timeline> {
        std::mem::take(&mut self.changed)
    }

    /// Ended timelines, newest first.
    pub fn ended(&self) -> impl Iterator<Item = &Timeline> {
        self.closed.iter().rev()
    }

    fn trim(&mut self) {
        let mut seen: HashMap<(String, String), usize> = HashMap::new();
        let keep = self.keep_per_shard;
        let mut kept: Vec<Timeline> = Vec::with_capacity(self.closed.len());
        for t in self.closed.drain(..).rev() {
            let n = seen
                .entry((t.deployment.clone(), t.shard.clone()))
                .or_default();
            *n += 1;
            if *n <= keep {
                kept.push(t);
            }
        }
        kept.reverse();
        self.closed = kept.into();
    }
}

/// How long the same event from another sentinel counts as the same event.
const SAME_EVENT_WINDOW: f64 = 10.0;

/// The last events received, and which ones were already counted.
#[derive(Debug)]
pub struct EventLog {
    capacity: usize,
    recent: VecDeque<RecordedEvent>,
    /// (deployment, channel, payload) -> (first seen, sentinels that published it).
    seen: HashMap<(String, String, String), (f64, BTreeSet<String>)>,
}

impl EventLog {
    /// Keeps the last `capacity` events.
    pub fn new(capacity: usize) -> Self {
        EventLog {
            capacity: capacity.max(1),
            recent: VecDeque::new(),
            seen: HashMap::new(),
        }
    }

    /// Records an event; returns false if another sentinel published the
    /// same one within the window (so it is not counted twice). The same
    /// sentinel publishing it again is a new event.
    pub fn record(
        &mut self,
        deployment: &str,
        sentinel: &str,
        channel: &str,
        payload: &str,
        at: f64,
    ) -> bool {
        self.seen
            .retain(|_, (first, _)| at - *first <= SAME_EVENT_WINDOW);
        // `+odown` carries each sentinel's own vote count: the same event
        // whatever the count.
        let same = payload.split(" #quorum").next().unwrap_or(payload);
        let key = (
            deployment.to_string(),
            channel.to_string(),
            same.to_string(),
        );
        let duplicate = match self.seen.get_mut(&key) {
            Some((_, from)) if !from.contains(sentinel) => {
                from.insert(sentinel.to_string());
                true
            }
            _ => {
                self.seen
                    .insert(key, (at, BTreeSet::from([sentinel.to_string()])));
                false
            }
        };
        self.recent.push_back(RecordedEvent {
            at,
            deployment: deployment.to_string(),
            sentinel: sentinel.to_string(),
            channel: channel.to_string(),
            payload: payload.to_string(),
            duplicate,
        });
        if self.recent.len() > self.capacity {
            self.recent.pop_front();
        }
        !duplicate
    }

    /// The recorded events, oldest first.
    pub fn recent(&self) -> impl Iterator<Item = &RecordedEvent> {
        self.recent.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::timeline::{MarkName, Serial};

    #[test]
    fn the_same_event_from_three_sentinels_counts_once() {
        let mut log = EventLog::new(10);
        let p = "mymaster 127.0.0.1 7100 127.0.0.1 7101";
        assert!(log.record("d", "s1", "+switch-master", p, 1.0));
        assert!(!log.record("d", "s2", "+switch-master", p, 1.1));
        assert!(!log.record("d", "s3", "+switch-master", p, 2.2));
        // The same sentinel again, or after the window: a new event.
        assert!(log.record("d", "s1", "+switch-master", p, 3.0));
        assert!(log.record("d", "s2", "+switch-master", p, 30.0));
        assert!(log.record("other", "s1", "+switch-master", p, 30.0));
        assert_eq!(log.recent().filter(|e| e.duplicate).count(), 2);
        for i in 0..20 {
            log.record("d", "s1", "+x", &i.to_string(), 40.0);
        }
        assert_eq!(log.recent().count(), 10);
    }

    fn ended(shard: &str, start: f64) -> Timeline {
        // Told apart by their start, as failovers of a shard are by epoch.
        let mut serial = Serial::default();
        serial.saw_epoch(start as u64);
        let mut t = Timeline::open(&serial, "d", shard, Kind::Sentinel);
        t.mark(MarkName::Sdown, start, "s");
        t.mark(MarkName::Odown, start + 1.0, "s");
        t.mark(MarkName::Switched, start + 2.0, "s");
        t.mark(MarkName::Ended, start + 3.0, "s");
        t.outcome = Some(Outcome::Completed);
        t
    }

    #[test]
    fn ended_failovers_count_and_are_bounded_per_shard() {
        let mut f = History::new(2);
        for i in 0..3 {
            f.closed(ended("a", f64::from(i) * 10.0));
        }
        f.closed(ended("b", 100.0));
        assert_eq!(f.totals[&("d".into(), "a".into(), Outcome::Completed)], 3);
        assert_eq!(f.ended().filter(|t| t.shard == "a").count(), 2);
        let newest_a = f.ended().find(|t| t.shard == "a").unwrap();
        assert_eq!(newest_a.marks[0].at, 20.0);
        assert_eq!(
            f.phases[&("d".into(), Kind::Sentinel, Phase::Total)].count,
            4
        );
        assert_eq!(f.take_changed().len(), 4);
        assert!(f.take_changed().is_empty());
    }
}
