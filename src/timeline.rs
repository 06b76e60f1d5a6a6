//! Failover timelines: what happened to one shard in one failover, mark by
//! mark, and the state machines that build them. Pure: the monitor feeds
//! events and views in, with their times, and gets timelines out.
//!
//! See docs/timelines.md for the marks, the phases and the outcomes.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::config::Kind;
use crate::parse::event::{Detail, Event, InstanceKind};

/// One mark: the first time the agent saw a step of the failover, and who told it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    /// `sdown`, `odown`, `try_failover`, `elected`, `selected`, `promoted`,
    /// `switched`, `ended`, `last_ok`; for clusters `pfail`, `fail`,
    /// `promoted`, `converged`, `last_ok`.
    pub name: String,
    /// Unix time in seconds.
    pub at: f64,
    /// The sentinel (`host:port`) or node that reported it, or `poll`.
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
    /// The `outcome` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Aborted => "aborted",
            Outcome::TimedOut => "timed_out",
        }
    }
}

/// A time window, e.g. when two nodes of a shard both reported role master.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Unix seconds.
    pub start: f64,
    /// Unix seconds; `None` while it lasts.
    pub end: Option<f64>,
    /// The nodes involved.
    pub nodes: Vec<String>,
}

/// One failover of one shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// `deployment:shard:start-ms`: unique, stable across restarts, and usable in a URL path.
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
    pub canary: Option<crate::canary::impact::Impact>,
}

/// Phase names and the marks that bound them, for sentinel shards:
/// (phase, from (first present), to).
const SENTINEL_PHASES: &[(&str, &[&str], &str)] = &[
    ("detection", &["sdown"], "odown"),
    ("election", &["odown", "try_failover"], "elected"),
    ("promotion", &["elected"], "promoted"),
    ("switch", &["sdown", "try_failover"], "switched"),
    ("reconfiguration", &["promoted"], "ended"),
    ("total", &["sdown", "try_failover"], "ended"),
    ("outage", &["last_ok"], "switched"),
];

/// The same for cluster shards.
const CLUSTER_PHASES: &[(&str, &[&str], &str)] = &[
    ("detection", &["pfail"], "fail"),
    ("promotion", &["fail"], "promoted"),
    ("convergence", &["promoted"], "converged"),
    ("total", &["pfail", "promoted"], "converged"),
    ("outage", &["last_ok"], "promoted"),
];

fn phase_table(kind: Kind) -> &'static [(&'static str, &'static [&'static str], &'static str)] {
    match kind {
        Kind::Sentinel => SENTINEL_PHASES,
        Kind::Cluster => CLUSTER_PHASES,
    }
}

/// The phases a failover of this kind has, in order.
pub fn phase_names(kind: Kind) -> impl Iterator<Item = &'static str> {
    phase_table(kind).iter().map(|(name, _, _)| *name)
}

impl Timeline {
    /// A new timeline opened at `at`.
    pub fn open(deployment: &str, shard: &str, kind: Kind, at: f64) -> Timeline {
        Timeline {
            id: format!("{deployment}:{shard}:{}", (at * 1000.0) as u64),
            deployment: deployment.to_string(),
            shard: shard.to_string(),
            kind,
            marks: Vec::new(),
            outcome: None,
            abort_reason: None,
            old_master: None,
            new_master: None,
            epochs: Vec::new(),
            unreplicated_bytes: None,
            two_masters: None,
            poll_resolution_seconds: None,
            canary: None,
        }
    }

    /// Records `name` unless already seen: the first sighting wins.
    pub fn mark(&mut self, name: &str, at: f64, reporter: &str) -> bool {
        if self.at(name).is_some() {
            return false;
        }
        // Kept in time order: `last_ok` is learnt after the fact.
        let i = self.marks.partition_point(|m| m.at <= at);
        self.marks.insert(
            i,
            Mark {
                name: name.to_string(),
                at,
                reporter: reporter.to_string(),
            },
        );
        true
    }

    /// When `name` was first seen.
    pub fn at(&self, name: &str) -> Option<f64> {
        self.marks.iter().find(|m| m.name == name).map(|m| m.at)
    }

    /// When the failover started: its earliest mark.
    pub fn started(&self) -> Option<f64> {
        self.marks
            .iter()
            .filter(|m| m.name != "last_ok")
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

    /// Phase durations in seconds, for the phases whose marks are both present.
    pub fn phases(&self) -> Vec<(&'static str, f64)> {
        phase_table(self.kind)
            .iter()
            .filter_map(|(phase, from, to)| {
                let start = from.iter().find_map(|m| self.at(m))?;
                let end = self.at(to)?;
                Some((*phase, (end - start).max(0.0)))
            })
            .collect()
    }

    /// Seconds from start to end.
    pub fn duration(&self) -> Option<f64> {
        Some(self.ended()? - self.started()?)
    }

    fn close(&mut self, outcome: Outcome, reason: Option<&str>) {
        self.outcome = Some(outcome);
        self.abort_reason = reason.map(String::from);
    }
}

/// How long a timeline that is only a suspicion (`sdown`, nothing more)
/// lives once no sentinel reports the master down.
const SUSPICION_LIMIT: f64 = 30.0;

/// A timeline is worth writing down, and counting, once a failover really
/// began: a suspicion that clears by itself is not a failover.
pub fn worth_keeping(t: &Timeline) -> bool {
    ["odown", "try_failover", "fail", "promoted", "switched"]
        .iter()
        .any(|m| t.at(m).is_some())
}

/// What a state machine did with an input.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Nothing changed.
    Unchanged,
    /// The open timeline changed.
    Changed,
    /// The timeline ended (returned, no longer open in the machine).
    Closed(Box<Timeline>),
    /// A suspected failure cleared before any failover began: the timeline is dropped.
    Dropped,
}

/// Follows one sentinel-managed master through failovers, from events.
#[derive(Debug, Default)]
pub struct SentinelShard {
    /// The failover in progress.
    pub open: Option<Timeline>,
    /// Sentinels that currently see the master subjectively / objectively down.
    pub sdown: BTreeSet<String>,
    /// Same for objectively down.
    pub odown: BTreeSet<String>,
    /// The last ended failover's new master and end time, to recognise the
    /// leader's own `+switch-master`, which comes after `+failover-end`.
    last_switch: Option<(String, f64)>,
    not_elected: bool,
}

/// What the monitor knows besides the event.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The deployment name.
    pub deployment: &'a str,
    /// The shard name.
    pub shard: &'a str,
    /// When the event arrived (unix seconds).
    pub at: f64,
    /// Who sent it.
    pub reporter: &'a str,
}

impl SentinelShard {
    fn timeline(&mut self, ctx: &Context, old_master: Option<&str>) -> &mut Timeline {
        self.open.get_or_insert_with(|| {
            self.not_elected = false;
            let mut t = Timeline::open(ctx.deployment, ctx.shard, Kind::Sentinel, ctx.at);
            t.old_master = old_master.map(String::from);
            t
        })
    }

    /// Marks `name` on the open timeline; only the events that can begin a
    /// failover (`opens`) start a new one, so a late event of an ended
    /// failover opens nothing.
    fn mark(&mut self, ctx: &Context, name: &str, old_master: Option<&str>, opens: bool) -> Step {
        if self.open.is_none() && !opens {
            return Step::Unchanged;
        }
        let t = self.timeline(ctx, old_master);
        if t.old_master.is_none() {
            t.old_master = old_master.map(String::from);
        }
        if t.mark(name, ctx.at, ctx.reporter) {
            Step::Changed
        } else {
            Step::Unchanged
        }
    }

    fn finish(&mut self, outcome: Outcome, reason: Option<&str>) -> Step {
        match self.open.take() {
            Some(mut t) => {
                t.close(outcome, reason);
                if let (Outcome::Completed, Some(new)) = (outcome, &t.new_master) {
                    self.last_switch = Some((new.clone(), t.ended().unwrap_or(0.0)));
                }
                Step::Closed(Box::new(t))
            }
            None => Step::Unchanged,
        }
    }

    /// Applies one event about this shard's master.
    pub fn on_event(&mut self, event: &Event, ctx: &Context) -> Step {
        let master_addr = event
            .instance
            .as_ref()
            .map(|i| {
                if i.kind == InstanceKind::Master {
                    i.addr.as_str()
                } else {
                    i.master.as_ref().map_or("", |m| m.1.as_str())
                }
            })
            .filter(|a| !a.is_empty());
        let about_master = event.is_about_master();
        match (event.channel.as_str(), &event.detail) {
            ("+sdown", _) if about_master => {
                self.sdown.insert(ctx.reporter.to_string());
                self.mark(ctx, "sdown", master_addr, true)
            }
            ("-sdown", _) if about_master => {
                self.sdown.remove(ctx.reporter);
                self.recovered()
            }
            ("+odown", _) if about_master => {
                self.odown.insert(ctx.reporter.to_string());
                self.mark(ctx, "odown", master_addr, true)
            }
            ("-odown", _) if about_master => {
                self.odown.remove(ctx.reporter);
                self.recovered()
            }
            ("+try-failover", _) => self.mark(ctx, "try_failover", master_addr, true),
            ("+elected-leader", _) => self.mark(ctx, "elected", master_addr, false),
            ("+selected-slave", _) => {
                let selected = event.instance.as_ref().map(|i| i.addr.clone());
                let step = self.mark(ctx, "selected", master_addr, false);
                if let Some(t) = &mut self.open {
                    if t.new_master.is_none() {
                        t.new_master = selected;
                    }
                }
                step
            }
            ("+promoted-slave", _) => self.mark(ctx, "promoted", master_addr, false),
            ("+new-epoch", Detail::Epoch(e)) => match &mut self.open {
                Some(t) if !t.epochs.contains(e) => {
                    t.epochs.push(*e);
                    Step::Changed
                }
                _ => Step::Unchanged,
            },
            ("+switch-master", Detail::Switch { old, new, .. }) => {
                let repeat = self
                    .last_switch
                    .as_ref()
                    .is_some_and(|(n, t)| n == new && ctx.at - t < 60.0);
                if self.open.is_none() && repeat {
                    return Step::Unchanged;
                }
                // No -sdown follows for the old master: its flags are reset.
                self.sdown.clear();
                self.odown.clear();
                let step = self.mark(ctx, "switched", Some(old), true);
                let t = self.timeline(ctx, Some(old));
                t.new_master = Some(new.clone());
                step
            }
            ("+failover-end", _) => {
                self.mark(ctx, "ended", master_addr, false);
                self.finish(Outcome::Completed, None)
            }
            ("-failover-abort-no-good-slave" | "-failover-abort-slave-timeout", _) => {
                self.mark(ctx, "ended", master_addr, false);
                self.finish(Outcome::Aborted, Some(&event.channel[1..]))
            }
            // A losing candidate: another sentinel may still win, so this
            // only names the reason should the failover go nowhere.
            ("-failover-abort-not-elected", _) if self.open.is_some() => {
                self.not_elected = true;
                Step::Unchanged
            }
            ("+failover-end-for-timeout", _) => {
                self.mark(ctx, "reconf_timeout", master_addr, false)
            }
            _ => Step::Unchanged,
        }
    }

    /// The master answers again: a suspicion that never became a failover
    /// is dropped; one that reached odown without a failover is aborted.
    fn recovered(&mut self) -> Step {
        let Some(t) = &self.open else {
            return Step::Unchanged;
        };
        if !self.sdown.is_empty() || !self.odown.is_empty() || t.at("try_failover").is_some() {
            return Step::Unchanged;
        }
        if t.at("odown").is_some() {
            self.finish(Outcome::Aborted, Some("master-recovered"))
        } else {
            self.open = None;
            Step::Dropped
        }
    }

    /// The polls show the failover over: the sentinels agree on `master`,
    /// a node other than the one that failed, and none reports a failover
    /// in progress. Closes a timeline whose end events were missed (agent
    /// restarted, subscription lost).
    pub fn on_settled(&mut self, master: &str, at: f64) -> Step {
        let Some(t) = &mut self.open else {
            return Step::Unchanged;
        };
        if t.old_master.as_deref().is_none_or(|old| old == master) {
            return Step::Unchanged;
        }
        t.new_master.get_or_insert_with(|| master.to_string());
        t.mark("switched", at, "poll");
        t.mark("ended", at, "poll");
        self.finish(Outcome::Completed, None)
    }

    /// Follows one sentinel's poll: whether it sees the master down. The
    /// poll is the resync after events were missed.
    pub fn seen_by(&mut self, sentinel: &str, sdown: bool, odown: bool) {
        for (set, down) in [(&mut self.sdown, sdown), (&mut self.odown, odown)] {
            if down {
                set.insert(sentinel.to_string());
            } else {
                set.remove(sentinel);
            }
        }
    }

    /// Closes a failover that has gone on longer than `limit` seconds.
    pub fn on_tick(&mut self, now: f64, limit: f64) -> Step {
        let Some(t) = &self.open else {
            return Step::Unchanged;
        };
        let age = now - t.started().unwrap_or(now);
        if !worth_keeping(t) {
            // Only a suspicion: it lasts while some sentinel sees the master
            // down, and is dropped (never counted) once the polls show none
            // does, even if the `-sdown` events were missed.
            if age > SUSPICION_LIMIT && self.sdown.is_empty() && self.odown.is_empty() {
                self.open = None;
                return Step::Dropped;
            }
            return Step::Unchanged;
        }
        if age <= limit {
            return Step::Unchanged;
        }
        if self.not_elected && t.at("switched").is_none() {
            self.finish(Outcome::Aborted, Some("failover-abort-not-elected"))
        } else {
            self.finish(Outcome::TimedOut, None)
        }
    }
}

/// One derivation's view of a cluster shard, for [`ClusterShard::on_view`].
#[derive(Debug, Clone)]
pub struct ClusterShardView {
    /// When the views were taken (unix seconds).
    pub at: f64,
    /// The node id and address the shard's slots belong to in most views, if any.
    pub owner: Option<(String, String)>,
    /// Answering views that flag the settled master `fail?`.
    pub pfail: u32,
    /// Some answering view flags the settled master `fail`.
    pub fail: bool,
    /// Every answering view names the same owner.
    pub converged: bool,
    /// That owner's config epoch.
    pub epoch: u64,
}

/// Follows one cluster shard through failovers, from successive views.
#[derive(Debug, Default)]
pub struct ClusterShard {
    /// The failover in progress.
    pub open: Option<Timeline>,
    /// The master before the failover: id and address.
    pub master: Option<(String, String)>,
}

impl ClusterShard {
    /// Resumes a failover read back from disk. The settled master is known
    /// again from the next view that names an owner; a failover already
    /// over by then closes as the views show it.
    pub fn resume(&mut self, t: Timeline) {
        // The node id was not stored: the address stands in until then.
        self.master = t.old_master.clone().map(|addr| (String::new(), addr));
        self.open = Some(t);
    }

    /// Applies one derivation's view; `resolution` is the poll interval in seconds.
    pub fn on_view(&mut self, v: &ClusterShardView, ctx: &Context, resolution: f64) -> Step {
        let Some(owner) = &v.owner else {
            return Step::Unchanged;
        };
        let Some(settled) = self.master.clone() else {
            if v.converged {
                self.master = Some(owner.clone());
            }
            return Step::Unchanged;
        };
        let moved = if settled.0.is_empty() {
            owner.1 != settled.1
        } else {
            owner.0 != settled.0
        };
        let suspect = v.pfail > 0 || v.fail;
        if self.open.is_none() && !suspect && !moved {
            return Step::Unchanged;
        }
        let t = self.open.get_or_insert_with(|| {
            let mut t = Timeline::open(ctx.deployment, ctx.shard, Kind::Cluster, v.at);
            t.old_master = Some(settled.1.clone());
            t.poll_resolution_seconds = Some(resolution);
            t
        });
        let mut changed = false;
        if v.pfail > 0 {
            changed |= t.mark("pfail", v.at, ctx.reporter);
        }
        if v.fail {
            // A node flags `fail` only after flagging `fail?`: when both
            // happened between two polls, the first sign the agent saw of
            // either is this view.
            changed |= t.mark("pfail", v.at, ctx.reporter);
            changed |= t.mark("fail", v.at, ctx.reporter);
        }
        if moved {
            changed |= t.mark("promoted", v.at, ctx.reporter);
            t.new_master = Some(owner.1.clone());
            if !t.epochs.contains(&v.epoch) {
                t.epochs.push(v.epoch);
            }
            if v.converged {
                t.mark("converged", v.at, ctx.reporter);
                let mut t = self.open.take().expect("open");
                t.close(Outcome::Completed, None);
                self.master = Some(owner.clone());
                return Step::Closed(Box::new(t));
            }
        } else if !suspect && t.at("promoted").is_none() {
            // The master is back and still owns its slots. (Once a promotion
            // was seen, views that still name the old master are only late:
            // the failover ends at convergence or times out.)
            let mut t = self.open.take().expect("open");
            if t.at("fail").is_some() {
                t.close(Outcome::Aborted, Some("master-recovered"));
                return Step::Closed(Box::new(t));
            }
            return Step::Dropped;
        }
        if changed {
            Step::Changed
        } else {
            Step::Unchanged
        }
    }

    /// Closes a failover that has gone on longer than `limit` seconds.
    pub fn on_tick(&mut self, now: f64, limit: f64) -> Step {
        match &self.open {
            Some(t) if now - t.started().unwrap_or(now) > limit => {
                let mut t = self.open.take().expect("open");
                t.close(Outcome::TimedOut, None);
                Step::Closed(Box::new(t))
            }
            _ => Step::Unchanged,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::event::tests::{recorded, recorded_in};

    fn ctx<'a>(at: f64, reporter: &'a str) -> Context<'a> {
        Context {
            deployment: "d",
            shard: "mymaster",
            at,
            reporter,
        }
    }

    /// Feeds the recorded failover through the machine: (steps, closed timelines).
    fn replay(events: &[(f64, u16, String, String)]) -> (SentinelShard, Vec<Timeline>) {
        let mut shard = SentinelShard::default();
        let mut closed = Vec::new();
        for (at, port, channel, payload) in events {
            let reporter = format!("127.0.0.1:{port}");
            let event = Event::parse(channel, payload);
            if let Step::Closed(t) = shard.on_event(&event, &ctx(*at, &reporter)) {
                closed.push(*t);
            }
        }
        (shard, closed)
    }

    #[test]
    fn the_recorded_failover_is_one_complete_timeline() {
        let (shard, closed) = replay(&recorded());
        assert!(shard.open.is_none());
        assert_eq!(
            closed.len(),
            1,
            "the leader's late +switch-master opens nothing"
        );
        let t = &closed[0];
        let marks: Vec<(&str, f64, &str)> = t
            .marks
            .iter()
            .map(|m| (m.name.as_str(), m.at, m.reporter.as_str()))
            .collect();
        assert_eq!(
            marks,
            [
                ("sdown", 1795314809.800, "127.0.0.1:27101"),
                ("odown", 1795314809.897, "127.0.0.1:27100"),
                ("try_failover", 1795314809.907, "127.0.0.1:27100"),
                ("elected", 1795314809.987, "127.0.0.1:27100"),
                ("selected", 1795314810.043, "127.0.0.1:27100"),
                ("promoted", 1795314810.931, "127.0.0.1:27100"),
                ("switched", 1795314810.996, "127.0.0.1:27101"),
                ("ended", 1795314812.068, "127.0.0.1:27100"),
            ]
        );
        assert_eq!(t.outcome, Some(Outcome::Completed));
        assert_eq!(t.old_master.as_deref(), Some("127.0.0.1:7100"));
        assert_eq!(t.new_master.as_deref(), Some("127.0.0.1:7101"));
        assert_eq!(t.epochs, [1]);
        let phases: std::collections::HashMap<_, _> = t.phases().into_iter().collect();
        let close = |p: &str, want: f64| {
            assert!(
                (phases[p] - want).abs() < 1e-6,
                "{p}: {} vs {want}",
                phases[p]
            )
        };
        close("detection", 0.097);
        close("election", 0.090);
        close("promotion", 0.944);
        close("switch", 1.196);
        close("reconfiguration", 1.137);
        close("total", 2.268);
        assert!(
            !phases.contains_key("outage"),
            "no last_ok mark without polls"
        );
    }

    #[test]
    fn the_failovers_recorded_on_redis_6_2_and_valkey_8_1_are_complete_timelines() {
        for version in crate::parse::RECORDED_VERSIONS {
            let (shard, closed) = replay(&recorded_in(&format!(
                "{version}/sentinel-failover-events.txt"
            )));
            assert!(shard.open.is_none(), "{version}");
            assert_eq!(closed.len(), 1, "{version}");
            let t = &closed[0];
            let marks: Vec<(&str, &str)> = t
                .marks
                .iter()
                .map(|m| (m.name.as_str(), m.reporter.as_str()))
                .collect();
            // The sentinel on 7111 led both failovers.
            assert_eq!(
                marks,
                [
                    ("sdown", "127.0.0.1:7110"),
                    ("odown", "127.0.0.1:7111"),
                    ("try_failover", "127.0.0.1:7111"),
                    ("elected", "127.0.0.1:7111"),
                    ("selected", "127.0.0.1:7111"),
                    ("promoted", "127.0.0.1:7111"),
                    ("switched", "127.0.0.1:7110"),
                    ("ended", "127.0.0.1:7111"),
                ],
                "{version}"
            );
            assert_eq!(t.outcome, Some(Outcome::Completed), "{version}");
            assert_eq!(
                (t.old_master.as_deref(), t.new_master.as_deref()),
                (Some("127.0.0.1:7100"), Some("127.0.0.1:7101")),
                "{version}"
            );
            assert_eq!(t.epochs, [1], "{version}");
        }
    }

    #[test]
    fn a_short_sdown_is_no_failover_and_odown_without_failover_aborts() {
        let sdown = Event::parse("+sdown", "master mymaster 127.0.0.1 7100 ");
        let back = Event::parse("-sdown", "master mymaster 127.0.0.1 7100");
        let mut s = SentinelShard::default();
        assert_eq!(s.on_event(&sdown, &ctx(1.0, "a")), Step::Changed);
        assert_eq!(s.on_event(&sdown, &ctx(1.1, "b")), Step::Unchanged);
        assert_eq!(
            s.on_event(&back, &ctx(1.2, "a")),
            Step::Unchanged,
            "b still sees it down"
        );
        assert_eq!(s.on_event(&back, &ctx(1.3, "b")), Step::Dropped);

        s.on_event(&sdown, &ctx(2.0, "a"));
        s.on_event(
            &Event::parse("+odown", "master mymaster 127.0.0.1 7100 #quorum 2/2"),
            &ctx(2.1, "a"),
        );
        s.on_event(&back, &ctx(2.5, "a"));
        let Step::Closed(t) = s.on_event(
            &Event::parse("-odown", "master mymaster 127.0.0.1 7100"),
            &ctx(2.6, "a"),
        ) else {
            panic!("odown then recovery closes the timeline")
        };
        assert_eq!(
            (t.outcome, t.abort_reason.as_deref()),
            (Some(Outcome::Aborted), Some("master-recovered"))
        );
    }

    #[test]
    fn a_suspicion_whose_end_was_missed_is_dropped() {
        let mut s = SentinelShard::default();
        s.on_event(
            &Event::parse("+sdown", "master mymaster 127.0.0.1 7100"),
            &ctx(1.0, "a"),
        );
        assert_eq!(
            s.on_tick(20.0, 360.0),
            Step::Unchanged,
            "a still sees it down"
        );
        s.seen_by("a", false, false);
        assert_eq!(s.on_tick(20.0, 360.0), Step::Unchanged, "too early to tell");
        assert_eq!(s.on_tick(40.0, 360.0), Step::Dropped);
    }

    #[test]
    fn manual_failover_abort_and_timeout() {
        let mut s = SentinelShard::default();
        s.on_event(
            &Event::parse("+try-failover", "master mymaster 127.0.0.1 7100"),
            &ctx(5.0, "a"),
        );
        let t = s.open.clone().unwrap();
        assert_eq!(t.marks[0].name, "try_failover");
        assert!(t.phases().is_empty());
        let Step::Closed(t) = s.on_event(
            &Event::parse(
                "-failover-abort-no-good-slave",
                "master mymaster 127.0.0.1 7100",
            ),
            &ctx(5.5, "a"),
        ) else {
            panic!("abort closes")
        };
        assert_eq!(
            (t.outcome, t.abort_reason.as_deref()),
            (Some(Outcome::Aborted), Some("failover-abort-no-good-slave"))
        );

        s.on_event(
            &Event::parse("+odown", "master mymaster 127.0.0.1 7100 #quorum 2/2"),
            &ctx(10.0, "a"),
        );
        s.on_event(
            &Event::parse("+try-failover", "master mymaster 127.0.0.1 7100"),
            &ctx(10.1, "a"),
        );
        s.on_event(
            &Event::parse(
                "-failover-abort-not-elected",
                "master mymaster 127.0.0.1 7100",
            ),
            &ctx(10.2, "a"),
        );
        assert!(s.open.is_some(), "another sentinel may still win");
        assert_eq!(s.on_tick(15.0, 20.0), Step::Unchanged);
        let Step::Closed(t) = s.on_tick(31.0, 20.0) else {
            panic!("times out")
        };
        assert_eq!(
            t.abort_reason.as_deref(),
            Some("failover-abort-not-elected")
        );
    }

    #[test]
    fn polls_close_a_failover_whose_end_was_missed() {
        let events = recorded();
        // The agent stopped listening after +odown.
        let (mut s, closed) = replay(&events[..3]);
        assert!(closed.is_empty());
        let later = 1795314830.0;
        assert_eq!(
            s.on_settled("127.0.0.1:7100", later),
            Step::Unchanged,
            "still the old master"
        );
        let Step::Closed(t) = s.on_settled("127.0.0.1:7101", later) else {
            panic!("settled")
        };
        assert_eq!(t.outcome, Some(Outcome::Completed));
        assert_eq!(t.new_master.as_deref(), Some("127.0.0.1:7101"));
        assert_eq!(t.marks.last().unwrap().reporter, "poll");
    }

    fn view(at: f64, owner: &str, pfail: u32, fail: bool, converged: bool) -> ClusterShardView {
        ClusterShardView {
            at,
            owner: Some((owner.to_string(), format!("addr-{owner}"))),
            pfail,
            fail,
            converged,
            epoch: 7,
        }
    }

    #[test]
    fn cluster_failover_from_views() {
        let mut c = ClusterShard::default();
        let cx = ctx(0.0, "views");
        assert_eq!(
            c.on_view(&view(1.0, "a", 0, false, true), &cx, 0.5),
            Step::Unchanged
        );
        assert_eq!(
            c.on_view(&view(2.0, "a", 1, false, true), &cx, 0.5),
            Step::Changed
        );
        assert_eq!(
            c.on_view(&view(3.0, "a", 3, true, true), &cx, 0.5),
            Step::Changed
        );
        assert_eq!(
            c.on_view(&view(4.0, "b", 0, true, false), &cx, 0.5),
            Step::Changed
        );
        let Step::Closed(t) = c.on_view(&view(4.5, "b", 0, true, true), &cx, 0.5) else {
            panic!("converged")
        };
        let names: Vec<&str> = t.marks.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["pfail", "fail", "promoted", "converged"]);
        assert_eq!(
            (t.old_master.as_deref(), t.new_master.as_deref()),
            (Some("addr-a"), Some("addr-b"))
        );
        assert_eq!(t.poll_resolution_seconds, Some(0.5));
        let phases: std::collections::HashMap<_, _> = t.phases().into_iter().collect();
        assert_eq!(
            (
                phases["detection"],
                phases["promotion"],
                phases["convergence"],
                phases["total"]
            ),
            (1.0, 1.0, 0.5, 2.5)
        );

        // A manual failover: the owner changes with no pfail/fail.
        assert_eq!(
            c.on_view(&view(10.0, "a", 0, false, false), &cx, 0.5),
            Step::Changed
        );
        let Step::Closed(t) = c.on_view(&view(10.5, "a", 0, false, true), &cx, 0.5) else {
            panic!()
        };
        assert_eq!(t.marks[0].name, "promoted");
        // A blip that clears by itself.
        c.on_view(&view(20.0, "a", 1, false, true), &cx, 0.5);
        assert_eq!(
            c.on_view(&view(20.5, "a", 0, false, true), &cx, 0.5),
            Step::Dropped
        );
    }
}
