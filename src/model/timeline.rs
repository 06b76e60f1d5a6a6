//! Failover timelines: what happened to one shard in one failover, mark by
//! mark. Plain data: the failover machines (`monitor::failover`) build
//! them; the API, metrics, alerts and the timeline file read them.
//!
//! See docs/timelines.md for the marks, the phases and the outcomes.

use serde::{Deserialize, Serialize};

use super::canary::Impact;
use super::clients::ClientsLeftBehind;
use crate::config::Kind;

/// A step of a failover, as the agent first saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkName {
    /// A sentinel sees the master subjectively down (`+sdown`).
    Sdown,
    /// A sentinel sees it objectively down (`+odown`).
    Odown,
    /// A sentinel starts a failover (`+try-failover`).
    TryFailover,
    /// A sentinel won the election (`+elected-leader`).
    Elected,
    /// The leader chose the replica to promote (`+selected-slave`).
    Selected,
    /// The chosen replica reports role master (`+promoted-slave`); for
    /// clusters, the views name another owner of the shard's slots.
    Promoted,
    /// A sentinel switched to the new master (`+switch-master`).
    Switched,
    /// The leader ended the failover (`+failover-end`, an abort).
    Ended,
    /// The leader stopped waiting for the replicas to follow the new master
    /// (`+failover-end-for-timeout`); `+failover-end` still follows.
    ReconfTimeout,
    /// When the old master last answered a poll.
    LastOk,
    /// Cluster: some view flags the master `fail?`.
    Pfail,
    /// Cluster: some view flags the master `fail`.
    Fail,
    /// Cluster: every answering view names the new owner.
    Converged,
}

impl MarkName {
    /// The mark's name as the API and the timeline file write it.
    pub fn as_str(self) -> &'static str {
        match self {
            MarkName::Sdown => "sdown",
            MarkName::Odown => "odown",
            MarkName::TryFailover => "try_failover",
            MarkName::Elected => "elected",
            MarkName::Selected => "selected",
            MarkName::Promoted => "promoted",
            MarkName::Switched => "switched",
            MarkName::Ended => "ended",
            MarkName::ReconfTimeout => "reconf_timeout",
            MarkName::LastOk => "last_ok",
            MarkName::Pfail => "pfail",
            MarkName::Fail => "fail",
            MarkName::Converged => "converged",
        }
    }
}

/// Who reported a mark that came from the polls rather than an event.
pub const POLL: &str = "poll";

/// One mark: the first time the agent saw a step of the failover, and who told it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    /// Which step.
    pub name: MarkName,
    /// Unix time in seconds.
    pub at: f64,
    /// The sentinel (`host:port`) or node that reported it, or [`POLL`].
    pub reporter: String,
}

/// How a failover ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A new master took over.
    Completed,
    /// It stopped without a new master (the reason says why).
    Aborted,
    /// No end was seen in time.
    TimedOut,
}

impl Outcome {
    /// Every outcome, for counters that start at 0.
    pub const ALL: [Outcome; 3] = [Outcome::Completed, Outcome::Aborted, Outcome::TimedOut];

    /// The `outcome` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Aborted => "aborted",
            Outcome::TimedOut => "timed_out",
        }
    }
}

/// Where a sentinel failover stands, named as Redis's `sentinel.c` names
/// the leader's states (`SENTINEL_FAILOVER_STATE_*`), as far as the
/// leader's events tell: each state begins with the event in parentheses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailoverState {
    /// `NONE`: no sentinel has started a failover (the master may be
    /// down: `sdown`, `odown`).
    None,
    /// `WAIT_START`: a sentinel asks for votes (`+try-failover`).
    WaitStart,
    /// `SELECT_SLAVE`: the leader picks a replica (`+elected-leader`,
    /// `+failover-state-select-slave`).
    SelectSlave,
    /// `SEND_SLAVEOF_NOONE`: it turns the replica into a master
    /// (`+selected-slave`, `+failover-state-send-slaveof-noone`).
    SendSlaveofNoone,
    /// `WAIT_PROMOTION`: it waits for the replica to report role master
    /// (`+failover-state-wait-promotion`).
    WaitPromotion,
    /// `RECONF_SLAVES`: it points the other replicas at the new master
    /// (`+promoted-slave`, `+failover-state-reconf-slaves`).
    ReconfSlaves,
    /// `UPDATE_CONFIG`: done; the sentinels switch to the new master
    /// (`+failover-end`, `+switch-master`).
    UpdateConfig,
}

/// A phase of a failover: the time between two marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Down to agreed down: `sdown` → `odown` (cluster: `pfail` → `fail`).
    Detection,
    /// Agreed down to a leader: `odown` → `elected`.
    Election,
    /// Leader to new master: `elected` → `promoted` (cluster: `fail` → `promoted`).
    Promotion,
    /// First sign to the switch: `sdown` → `switched`.
    Switch,
    /// New master to the end: `promoted` → `ended`.
    Reconfiguration,
    /// Cluster: new owner to every view agreeing: `promoted` → `converged`.
    Convergence,
    /// First sign to the end.
    Total,
    /// Last answer of the old master to the new one taking over.
    Outage,
}

impl Phase {
    /// The `phase` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Detection => "detection",
            Phase::Election => "election",
            Phase::Promotion => "promotion",
            Phase::Switch => "switch",
            Phase::Reconfiguration => "reconfiguration",
            Phase::Convergence => "convergence",
            Phase::Total => "total",
            Phase::Outage => "outage",
        }
    }
}

/// A phase and the marks that bound it: (phase, from (first present), to).
type PhaseBounds = (Phase, &'static [MarkName], MarkName);

use MarkName as M;

/// The phases of a sentinel failover.
const SENTINEL_PHASES: &[PhaseBounds] = &[
    (Phase::Detection, &[M::Sdown], M::Odown),
    (Phase::Election, &[M::Odown, M::TryFailover], M::Elected),
    (Phase::Promotion, &[M::Elected], M::Promoted),
    (Phase::Switch, &[M::Sdown, M::TryFailover], M::Switched),
    (Phase::Reconfiguration, &[M::Promoted], M::Ended),
    (Phase::Total, &[M::Sdown, M::TryFailover], M::Ended),
    (Phase::Outage, &[M::LastOk], M::Switched),
];

/// The phases of a cluster failover.
const CLUSTER_PHASES: &[PhaseBounds] = &[
    (Phase::Detection, &[M::Pfail], M::Fail),
    (Phase::Promotion, &[M::Fail], M::Promoted),
    (Phase::Convergence, &[M::Promoted], M::Converged),
    (Phase::Total, &[M::Pfail, M::Promoted], M::Converged),
    (Phase::Outage, &[M::LastOk], M::Promoted),
];

fn phase_table(kind: Kind) -> &'static [PhaseBounds] {
    match kind {
        Kind::Sentinel => SENTINEL_PHASES,
        Kind::Cluster => CLUSTER_PHASES,
    }
}

/// The phases a failover of this kind has, in order.
pub fn phase_names(kind: Kind) -> impl Iterator<Item = Phase> {
    phase_table(kind).iter().map(|(phase, _, _)| *phase)
}

/// The marks that say a failover really began: a suspicion that clears by
/// itself has none of them.
const BEGUN: [MarkName; 5] = [M::Odown, M::TryFailover, M::Fail, M::Promoted, M::Switched];

/// A time window, e.g. when two nodes of a shard both reported role master.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Unix seconds.
    pub start: f64,
    /// Unix seconds; `None` while it lasts.
    pub end: Option<f64>,
    /// The nodes involved.
    pub nodes: Vec<String>,
    /// Write commands the nodes other than the shard's master took while
    /// it lasted (their `rdb_changes_since_last_save` moving): writes that
    /// are lost when those nodes are turned into replicas. `None` until
    /// read (docs/timelines.md, "Two masters").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writes: Option<u64>,
    /// Bytes the replication offsets of those nodes moved since the switch
    /// (or since they were first seen as masters): the writes above, plus
    /// the hello messages sentinels publish to every instance every 2 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_bytes: Option<u64>,
}

/// One failover of one shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// `deployment:shard:e<epoch>`, `.<n>` added for the n-th failover
    /// from one epoch ([`Serial`]): unique, stable across restarts, the
    /// same in every agent watching the shard, and usable in a URL path.
    pub id: String,
    /// The deployment.
    pub deployment: String,
    /// The shard.
    pub shard: String,
    /// Sentinel or cluster.
    pub kind: Kind,
    /// Marks in time order.
    pub marks: Vec<Mark>,
    /// `None` while the failover is in progress.
    pub outcome: Option<Outcome>,
    /// For aborted failovers: the event or condition that ended it.
    pub abort_reason: Option<String>,
    /// Sentinel failovers: the last state the leader's events showed.
    #[serde(default)]
    pub state: Option<FailoverState>,
    /// The master that failed.
    pub old_master: Option<String>,
    /// The master that took over.
    pub new_master: Option<String>,
    /// Epochs seen during the failover (sentinel `+new-epoch`, cluster config epoch).
    pub epochs: Vec<u64>,
    /// Bytes the promoted replica lacked at promotion, from the last polled offsets.
    pub unreplicated_bytes: Option<u64>,
    /// When the old master came back still claiming role master.
    pub two_masters: Option<Window>,
    /// Cluster timelines come from polls: marks are exact to this many seconds.
    pub poll_resolution_seconds: Option<f64>,
    /// What the canary probe saw of the failover, when it runs.
    pub canary: Option<Impact>,
    /// The applications still connected to the old master some seconds
    /// after the switch; `None` until read.
    #[serde(default)]
    pub clients_left_behind: Option<ClientsLeftBehind>,
}

impl Timeline {
    /// A new timeline, named by the shard's `serial`.
    pub fn open(serial: &Serial, deployment: &str, shard: &str, kind: Kind) -> Timeline {
        Timeline {
            id: serial.next_id(deployment, shard),
            deployment: deployment.to_string(),
            shard: shard.to_string(),
            kind,
            marks: Vec::new(),
            outcome: None,
            abort_reason: None,
            state: match kind {
                Kind::Sentinel => Some(FailoverState::None),
                Kind::Cluster => None,
            },
            old_master: None,
            new_master: None,
            epochs: Vec::new(),
            unreplicated_bytes: None,
            two_masters: None,
            poll_resolution_seconds: None,
            canary: None,
            clients_left_behind: None,
        }
    }

    /// Records `name` unless already seen: the first sighting wins.
    pub fn mark(&mut self, name: MarkName, at: f64, reporter: &str) -> bool {
        if self.at(name).is_some() {
            return false;
        }
        // Kept in time order: `last_ok` is learnt after the fact.
        let i = self.marks.partition_point(|m| m.at <= at);
        self.marks.insert(
            i,
            Mark {
                name,
                at,
                reporter: reporter.to_string(),
            },
        );
        true
    }

    /// When `name` was first seen.
    pub fn at(&self, name: MarkName) -> Option<f64> {
        self.marks.iter().find(|m| m.name == name).map(|m| m.at)
    }

    /// When the new master took over: the switch, or for clusters the promotion.
    pub fn switched(&self) -> Option<f64> {
        self.at(M::Switched).or_else(|| self.at(M::Promoted))
    }

    /// When clients could learn the new master: a sentinel failover's first
    /// `+switch-master` (before it, Sentinel-aware clients still get the
    /// old master), a cluster's promotion (as the polls saw it).
    pub fn switch_seen(&self) -> Option<f64> {
        match self.kind {
            Kind::Sentinel => self.at(M::Switched),
            Kind::Cluster => self.at(M::Promoted),
        }
    }

    /// When the failover started: its earliest mark.
    pub fn started(&self) -> Option<f64> {
        self.marks
            .iter()
            .filter(|m| m.name != M::LastOk)
            .map(|m| m.at)
            .reduce(f64::min)
    }

    /// When it ended (its last mark), if it has.
    pub fn ended(&self) -> Option<f64> {
        self.outcome?;
        self.marks.iter().map(|m| m.at).reduce(f64::max)
    }

    /// Whether it is still in progress.
    pub fn is_open(&self) -> bool {
        self.outcome.is_none()
    }

    /// Whether a failover really began (a suspicion that clears by itself
    /// is not one): only those are written down and counted.
    pub fn worth_keeping(&self) -> bool {
        BEGUN.iter().any(|m| self.at(*m).is_some())
    }

    /// Phase durations in seconds, for the phases whose marks are both present.
    pub fn phases(&self) -> Vec<(Phase, f64)> {
        phase_table(self.kind)
            .iter()
            .filter_map(|(phase, from, to)| {
                let start = from.iter().find_map(|m| self.at(*m))?;
                let end = self.at(*to)?;
                Some((*phase, (end - start).max(0.0)))
            })
            .collect()
    }

    /// Seconds from start to end.
    pub fn duration(&self) -> Option<f64> {
        Some(self.ended()? - self.started()?)
    }

    /// Ends it with `outcome`; `reason` says why an aborted one stopped.
    pub fn close(&mut self, outcome: Outcome, reason: Option<&str>) {
        self.outcome = Some(outcome);
        self.abort_reason = reason.map(String::from);
    }
}

/// Names a shard's failovers from what every agent watching the shard
/// sees alike, so that two agents side by side give the same failover the
/// same id, and its alerts the same `failover` label (an id from the
/// agent's clock differs between agents, and Alertmanager would show, and
/// notify, each failover twice). The name is the highest epoch seen for
/// the shard before the failover began (sentinel: the master's config
/// epoch and `+new-epoch`; cluster: its master's config epoch), which every
/// completed failover and every sentinel attempt raises; failovers that
/// raised none (the master came back) are told apart by a count.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Serial {
    /// The highest epoch seen.
    epoch: u64,
    /// The epoch and count of the latest failover kept.
    last: Option<(u64, u32)>,
}

impl Serial {
    /// An epoch read or announced for the shard.
    pub fn saw_epoch(&mut self, epoch: u64) {
        self.epoch = self.epoch.max(epoch);
    }

    /// A failover of the shard worth keeping (seen, or read back from
    /// disk): the next one is named after it.
    pub fn kept(&mut self, t: &Timeline) {
        let named =
            t.id.rsplit(':')
                .next()
                .and_then(|tail| tail.strip_prefix('e'))
                .and_then(|tail| {
                    let (epoch, n) = tail.split_once('.').unwrap_or((tail, "1"));
                    Some((epoch.parse().ok()?, n.parse().ok()?))
                });
        self.last = self.last.max(named);
        if let Some(&epoch) = t.epochs.iter().max() {
            self.saw_epoch(epoch);
        }
    }

    /// The id of a failover beginning now.
    pub fn next_id(&self, deployment: &str, shard: &str) -> String {
        match self.last {
            Some((epoch, n)) if epoch == self.epoch => {
                format!("{deployment}:{shard}:e{}.{}", self.epoch, n + 1)
            }
            _ => format!("{deployment}:{shard}:e{}", self.epoch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_keep_time_order_and_the_first_sighting() {
        let mut t = Timeline::open(&Serial::default(), "d", "s", Kind::Sentinel);
        assert!(t.mark(M::Sdown, 10.0, "a"));
        assert!(t.mark(M::Switched, 12.0, "a"));
        assert!(!t.mark(M::Sdown, 11.0, "b"), "the first sighting wins");
        assert!(t.mark(M::LastOk, 9.5, POLL), "learnt later, placed in time");
        let names: Vec<&str> = t.marks.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["last_ok", "sdown", "switched"]);
        assert_eq!(t.started(), Some(10.0), "last_ok is not the start");
        assert!(t.worth_keeping());
        assert_eq!(t.ended(), None);
        t.mark(M::Ended, 13.0, "a");
        t.close(Outcome::Completed, None);
        assert_eq!((t.ended(), t.duration()), (Some(13.0), Some(3.0)));
        let phases: Vec<(&str, f64)> = t.phases().iter().map(|(p, s)| (p.as_str(), *s)).collect();
        assert_eq!(phases, [("switch", 2.0), ("total", 3.0), ("outage", 2.5)]);
    }

    /// Two agents name a shard's failovers alike from the epochs they both
    /// see, whenever each saw the failover begin; a failover that raised no
    /// epoch is told apart by a count; a restarted agent, from the
    /// failovers it reads back.
    #[test]
    fn failovers_are_named_by_epoch_alike_in_every_agent() {
        let opened = |serial: &Serial, at: f64| {
            let mut t = Timeline::open(serial, "d", "s", Kind::Sentinel);
            t.mark(M::Odown, at, "a");
            t
        };
        let (mut one, mut two) = (Serial::default(), Serial::default());
        one.saw_epoch(3);
        two.saw_epoch(2);
        two.saw_epoch(3);
        let (a, b) = (opened(&one, 100.0004), opened(&two, 100.0021));
        assert_eq!((a.id.as_str(), b.id.as_str()), ("d:s:e3", "d:s:e3"));
        // The master came back: no new epoch; the next failover is the
        // second from epoch 3, then the third.
        one.kept(&a);
        let second = opened(&one, 200.0);
        assert_eq!(second.id, "d:s:e3.2");
        one.kept(&second);
        assert_eq!(one.next_id("d", "s"), "d:s:e3.3");
        // A failover that raised the epoch starts a new count.
        let mut third = opened(&one, 300.0);
        third.epochs.push(4);
        one.kept(&third);
        assert_eq!(one.next_id("d", "s"), "d:s:e4");
        // Read back from disk, in any order, as a restarted agent does.
        let mut restarted = Serial::default();
        for t in [&third, &a, &second] {
            restarted.kept(t);
        }
        assert_eq!(restarted, one);
        // Ids of the earlier form (start in ms) name nothing.
        let mut old = a.clone();
        old.id = "d:s:1700000000000".into();
        let mut fresh = Serial::default();
        fresh.kept(&old);
        assert_eq!(fresh.next_id("d", "s"), "d:s:e0");
    }

    #[test]
    fn names_are_written_as_before() {
        let mut t = Timeline::open(&Serial::default(), "d", "s", Kind::Cluster);
        t.mark(M::TryFailover, 1.0, "x");
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["marks"][0]["name"], "try_failover");
        assert_eq!(json["state"], serde_json::Value::Null);
        let back: Timeline = serde_json::from_value(json).unwrap();
        assert_eq!(back, t);
        // A line written before `state` existed still reads.
        let mut old = serde_json::to_value(&t).unwrap();
        old.as_object_mut().unwrap().remove("state");
        assert!(serde_json::from_value::<Timeline>(old).is_ok());
        assert_eq!(
            serde_json::to_value(FailoverState::SendSlaveofNoone).unwrap(),
            "send_slaveof_noone"
        );
    }
}
