//! Intake: every poll's reading replaces its target's last one and says
//! whether anything a view reads changed, so an unchanged poll costs a
//! comparison. Also the masters' offset histories, which date lag.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use crate::model::settings::SettingsRead;
use crate::model::{NodeReading, Observation, Reading, SlotStatsRead, TargetKind};
use crate::parse::info::Role;

/// A target within its deployment: node or sentinel, and its address.
pub type TargetKey = (TargetKind, String);

/// How many distinct master offsets are remembered per master to date a
/// replica's lag: 1024 polls cover 17 minutes of constant writes at 1 s.
const OFFSET_HISTORY: usize = 1024;

/// What the agent knows of one target from its polls.
#[derive(Debug, Default, Clone)]
pub struct TargetState {
    /// Configured as a seed: polled even when no member lists it.
    pub seed: bool,
    /// At least one poll finished.
    pub polled: bool,
    /// The last poll succeeded.
    pub up: bool,
    /// Failed polls since the agent started.
    pub failures: u64,
    /// How long the last poll took.
    pub last_duration: Option<Duration>,
    /// When the last poll finished.
    pub last_poll: Option<SystemTime>,
    /// When the last successful poll finished.
    pub last_success: Option<SystemTime>,
    /// When the polls started failing, while they fail.
    pub down_since: Option<SystemTime>,
    /// The last successful reading; stale while `up` is false.
    pub reading: Option<Reading>,
    /// A data node's last settings read, kept between the polls that
    /// read them.
    pub settings: Option<SettingsRead>,
    /// A cluster master's last slot statistics, kept likewise.
    pub slot_stats: Option<SlotStatsRead>,
}

impl TargetState {
    /// The reading, if the last poll succeeded.
    pub fn fresh(&self) -> Option<&Reading> {
        self.reading.as_ref().filter(|_| self.up)
    }
}

/// A master's replication offset over time, to tell how old the oldest
/// write a replica lacks is.
#[derive(Debug, Clone)]
pub struct OffsetHistory {
    samples: VecDeque<(Instant, u64)>,
    latest: Instant,
}

impl OffsetHistory {
    fn new(at: Instant) -> Self {
        OffsetHistory {
            samples: VecDeque::new(),
            latest: at,
        }
    }

    fn record(&mut self, at: Instant, offset: u64) {
        self.latest = at;
        match self.samples.back() {
            Some(&(_, last)) if last == offset => return,
            // A restarted master starts a new stream: the old one says nothing.
            Some(&(_, last)) if offset < last => self.samples.clear(),
            _ => {}
        }
        self.samples.push_back((at, offset));
        if self.samples.len() > OFFSET_HISTORY {
            self.samples.pop_front();
        }
    }

    /// Seconds since the master first reported an offset beyond `offset`
    /// (a lower bound, exact to one poll interval); 0 when caught up.
    pub fn age_of(&self, offset: u64) -> f64 {
        self.samples
            .iter()
            .find(|&&(_, o)| o > offset)
            .map_or(0.0, |&(t, _)| {
                self.latest.saturating_duration_since(t).as_secs_f64()
            })
    }
}

/// What one recorded poll may have changed.
#[derive(Debug, Clone, Copy)]
pub struct Recorded {
    /// The topology: a target came up or went down, or its cluster view or
    /// sentinel view says something new.
    pub topology: bool,
    /// The node's settings or slot statistics.
    pub settings: bool,
}

/// Every followed target of one deployment and what its polls said.
#[derive(Debug, Clone, Default)]
pub struct Intake {
    /// Data nodes by address.
    nodes: BTreeMap<String, TargetState>,
    /// Sentinels by address.
    sentinels: BTreeMap<String, TargetState>,
    /// Offset histories of the nodes last seen as masters, by address.
    pub histories: HashMap<String, OffsetHistory>,
}

impl Intake {
    /// Starts from the seeds.
    pub fn new(seeds: impl IntoIterator<Item = TargetKey>) -> Self {
        let mut intake = Intake::default();
        for (kind, addr) in seeds {
            let state = TargetState {
                seed: true,
                ..Default::default()
            };
            intake.of_mut(kind).insert(addr, state);
        }
        intake
    }

    fn of(&self, kind: TargetKind) -> &BTreeMap<String, TargetState> {
        match kind {
            TargetKind::Node => &self.nodes,
            TargetKind::Sentinel => &self.sentinels,
        }
    }

    fn of_mut(&mut self, kind: TargetKind) -> &mut BTreeMap<String, TargetState> {
        match kind {
            TargetKind::Node => &mut self.nodes,
            TargetKind::Sentinel => &mut self.sentinels,
        }
    }

    /// One target's state.
    pub fn get(&self, kind: TargetKind, addr: &str) -> Option<&TargetState> {
        self.of(kind).get(addr)
    }

    /// Whether the target is followed.
    pub fn contains(&self, kind: TargetKind, addr: &str) -> bool {
        self.of(kind).contains_key(addr)
    }

    /// Every target, nodes then sentinels, each by address: the order
    /// views list them in.
    pub fn iter(&self) -> impl Iterator<Item = (TargetKind, &String, &TargetState)> {
        let nodes = self.nodes.iter().map(|(a, s)| (TargetKind::Node, a, s));
        let sentinels = self
            .sentinels
            .iter()
            .map(|(a, s)| (TargetKind::Sentinel, a, s));
        nodes.chain(sentinels)
    }

    /// Records one poll. `None` when its target is no longer followed (a
    /// poller's last result after its target left); else what may have
    /// changed.
    pub fn record(&mut self, mut obs: Observation) -> Option<Recorded> {
        let (kind, addr) = (obs.target.kind, obs.target.addr);
        let map = match kind {
            TargetKind::Node => &mut self.nodes,
            TargetKind::Sentinel => &mut self.sentinels,
        };
        let state = map.get_mut(&addr)?;
        let (settings, slot_stats) = match &mut obs.result {
            Ok(Reading::Node(n)) => (
                n.settings.take().map(|b| *b),
                n.slot_stats.take().map(|b| *b),
            ),
            _ => (None, None),
        };
        let settings =
            keep(&mut state.settings, settings) | keep(&mut state.slot_stats, slot_stats);
        state.polled = true;
        state.last_duration = Some(obs.duration);
        state.last_poll = Some(obs.at);
        let was_up = state.up;
        match obs.result {
            Ok(reading) => {
                let news = !was_up || says_more(state.reading.as_ref(), &reading);
                state.up = true;
                state.last_success = Some(obs.at);
                state.down_since = None;
                if let Reading::Node(n) = &reading {
                    if n.replication.role == Role::Master {
                        self.histories
                            .entry(addr)
                            .or_insert_with(|| OffsetHistory::new(obs.seen))
                            .record(obs.seen, n.replication.master_repl_offset);
                    }
                }
                state.reading = Some(reading);
                Some(Recorded {
                    topology: news,
                    settings,
                })
            }
            Err(_) => {
                state.up = false;
                state.failures += 1;
                state.down_since.get_or_insert(obs.at);
                Some(Recorded {
                    topology: was_up,
                    settings,
                })
            }
        }
    }

    /// Makes the target set equal to `members` plus the seeds; returns the
    /// targets that left, whose state went with them, and whether any came.
    pub fn follow(&mut self, members: &BTreeSet<TargetKey>) -> (Vec<TargetKey>, bool) {
        let mut gone = Vec::new();
        for kind in [TargetKind::Node, TargetKind::Sentinel] {
            let map = self.of_mut(kind);
            map.retain(|addr, s| {
                let keep = s.seed || members.contains(&(kind, addr.clone()));
                if !keep {
                    gone.push((kind, addr.clone()));
                }
                keep
            });
        }
        for (_, addr) in &gone {
            self.histories.remove(addr);
        }
        let mut added = false;
        for (kind, addr) in members {
            let map = self.of_mut(*kind);
            if !map.contains_key(addr) {
                map.insert(addr.clone(), TargetState::default());
                added = true;
            }
        }
        (gone, added)
    }

    /// A data node's last reading, and whether its last poll succeeded.
    pub fn node(&self, addr: &str) -> (Option<&NodeReading>, bool) {
        match self.nodes.get(addr) {
            Some(TargetState {
                reading: Some(Reading::Node(r)),
                up,
                ..
            }) => (Some(r), *up),
            _ => (None, false),
        }
    }

    /// Whether the node at `addr` answered its last poll claiming `role`.
    pub fn reports_role(&self, addr: &str, role: Role) -> bool {
        matches!(self.node(addr), (Some(r), true) if r.replication.role == role)
    }

    /// Readings of one kind: the fresh ones, or if no target of that kind
    /// answered its last poll, the last known ones, so that a moment in
    /// which nothing answers does not erase the topology. With whether each
    /// is fresh, in target order.
    pub fn readings<'a, T>(
        &'a self,
        pick: impl Fn(&'a Reading) -> Option<&'a T>,
    ) -> Vec<(&'a str, &'a T, bool)> {
        let all: Vec<(&'a str, &'a T, bool)> = self
            .iter()
            .filter_map(|(_, addr, s)| Some((addr.as_str(), pick(s.reading.as_ref()?)?, s.up)))
            .collect();
        if all.iter().any(|(_, _, up)| *up) {
            all.into_iter().filter(|(_, _, up)| *up).collect()
        } else {
            all
        }
    }
}

/// Keeps a reading of the slow cadence when there is one; whether it
/// changed.
fn keep<T: PartialEq>(kept: &mut Option<T>, new: Option<T>) -> bool {
    let Some(new) = new else { return false };
    let changed = kept.as_ref() != Some(&new);
    *kept = Some(new);
    changed
}

/// Whether `new` says something the topology reads that `old` did not:
/// the cluster view (by digest) or CLUSTER INFO, a sentinel's masters, or
/// a change of kind. Offsets and other replication figures move every poll
/// and only touch the node's own shard, which is re-derived anyway.
fn says_more(old: Option<&Reading>, new: &Reading) -> bool {
    match (old, new) {
        (Some(Reading::Node(old)), Reading::Node(new)) => match (&old.cluster, &new.cluster) {
            (Some(old), Some(new)) => old.differs(new),
            (None, None) => false,
            _ => true,
        },
        (Some(Reading::Sentinel(old)), Reading::Sentinel(new)) => old.masters != new.masters,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_history_ages() {
        let t0 = Instant::now();
        let mut h = OffsetHistory::new(t0);
        h.record(t0, 100);
        h.record(t0 + Duration::from_secs(1), 200);
        h.record(t0 + Duration::from_secs(5), 200);
        assert_eq!(h.age_of(200), 0.0);
        assert_eq!(h.age_of(150), 4.0);
        assert_eq!(h.age_of(50), 5.0);
        // A restarted master: the old stream is forgotten.
        h.record(t0 + Duration::from_secs(6), 10);
        assert_eq!(h.age_of(5), 0.0);
        for i in 0..(OFFSET_HISTORY as u64 + 10) {
            h.record(t0 + Duration::from_secs(7 + i), 100 + i);
        }
        assert_eq!(h.samples.len(), OFFSET_HISTORY);
    }
}
