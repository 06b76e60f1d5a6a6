//! Follows one sentinel-managed master through failovers, from the events
//! of every sentinel (and the polls, when events were missed). The leader's
//! progress is kept as Sentinel names it ([`FailoverState`]).

use std::collections::BTreeSet;

use super::{Context, Step};
use crate::config::Kind;
use crate::model::timeline::{FailoverState, MarkName, Outcome, Serial, Timeline, POLL};
use crate::parse::event::{Detail, Event, EventKind, InstanceKind};

/// How long a timeline that is only a suspicion (`sdown`, nothing more)
/// lives once no sentinel reports the master down.
const SUSPICION_LIMIT: f64 = 30.0;

/// How long after a failover ended a `+switch-master` to the same new
/// master is that failover's (the leader publishes its own after
/// `+failover-end`), not a new one.
const LATE_SWITCH: f64 = 60.0;

/// The failover machine of one sentinel shard.
#[derive(Debug, Default, Clone)]
pub struct SentinelShard {
    /// The failover in progress.
    pub open: Option<Timeline>,
    /// Sentinels that currently see the master subjectively down.
    pub sdown: BTreeSet<String>,
    /// Same for objectively down.
    pub odown: BTreeSet<String>,
    /// The last ended failover's new master and end time, to recognise the
    /// leader's own `+switch-master`, which comes after `+failover-end`.
    last_switch: Option<(String, f64)>,
    /// A candidate lost the election: the reason, should the failover go nowhere.
    not_elected: bool,
    /// Names the next failover.
    pub serial: Serial,
}

impl SentinelShard {
    fn timeline(&mut self, ctx: &Context, old_master: Option<&str>) -> &mut Timeline {
        self.open.get_or_insert_with(|| {
            self.not_elected = false;
            let mut t = Timeline::open(&self.serial, ctx.deployment, ctx.shard, Kind::Sentinel);
            t.old_master = old_master.map(String::from);
            t
        })
    }

    /// Marks `name` on the open timeline; only the events that can begin a
    /// failover (`opens`) start a new one, so a late event of an ended
    /// failover opens nothing.
    fn mark(
        &mut self,
        ctx: &Context,
        name: MarkName,
        old_master: Option<&str>,
        opens: bool,
    ) -> Step {
        if self.open.is_none() && !opens {
            return Step::Unchanged;
        }
        let t = self.timeline(ctx, old_master);
        if t.old_master.is_none() {
            t.old_master = old_master.map(String::from);
        }
        Step::changed_if(t.mark(name, ctx.at, ctx.reporter))
    }

    /// Moves the open failover's state on (never back: a second candidate's
    /// `+try-failover` does not undo the leader's progress).
    fn advance(&mut self, state: FailoverState) -> Step {
        match &mut self.open {
            Some(t) if t.state < Some(state) => {
                t.state = Some(state);
                Step::Changed
            }
            _ => Step::Unchanged,
        }
    }

    fn finish(&mut self, outcome: Outcome, reason: Option<&str>) -> Step {
        match self.open.take() {
            Some(mut t) => {
                t.close(outcome, reason);
                // A failover that switched, whatever its outcome, announces
                // it from every sentinel, some after its end; one that
                // completed does too, though its leader publishes its own
                // `+switch-master` only after `+failover-end`.
                let switched = t.at(MarkName::Switched).is_some() || outcome == Outcome::Completed;
                if let (true, Some(new)) = (switched, &t.new_master) {
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
        use EventKind as E;
        use FailoverState as S;
        match (event.kind, &event.detail) {
            (E::Sdown, _) if about_master => {
                self.sdown.insert(ctx.reporter.to_string());
                self.mark(ctx, MarkName::Sdown, master_addr, true)
            }
            (E::SdownCleared, _) if about_master => {
                self.sdown.remove(ctx.reporter);
                self.recovered()
            }
            (E::Odown, _) if about_master => {
                self.odown.insert(ctx.reporter.to_string());
                self.mark(ctx, MarkName::Odown, master_addr, true)
            }
            (E::OdownCleared, _) if about_master => {
                self.odown.remove(ctx.reporter);
                self.recovered()
            }
            (E::TryFailover, _) => self
                .mark(ctx, MarkName::TryFailover, master_addr, true)
                .and(self.advance(S::WaitStart)),
            (E::ElectedLeader, _) => self
                .mark(ctx, MarkName::Elected, master_addr, false)
                .and(self.advance(S::SelectSlave)),
            (E::StateSelectSlave, _) => self.advance(S::SelectSlave),
            (E::SelectedSlave, _) => {
                let selected = event.instance.as_ref().map(|i| i.addr.clone());
                let step = self.mark(ctx, MarkName::Selected, master_addr, false);
                if let Some(t) = &mut self.open {
                    if t.new_master.is_none() {
                        t.new_master = selected;
                    }
                }
                step.and(self.advance(S::SendSlaveofNoone))
            }
            (E::StateSendSlaveofNoone, _) => self.advance(S::SendSlaveofNoone),
            (E::StateWaitPromotion, _) => self.advance(S::WaitPromotion),
            (E::PromotedSlave, _) => self
                .mark(ctx, MarkName::Promoted, master_addr, false)
                .and(self.advance(S::ReconfSlaves)),
            (E::StateReconfSlaves, _) => self.advance(S::ReconfSlaves),
            (E::NewEpoch, Detail::Epoch(e)) => match &mut self.open {
                Some(t) if !t.epochs.contains(e) => {
                    self.serial.saw_epoch(*e);
                    t.epochs.push(*e);
                    Step::Changed
                }
                _ => Step::Unchanged,
            },
            (E::SwitchMaster, Detail::Switch { old, new, .. }) => {
                let repeat = self
                    .last_switch
                    .as_ref()
                    .is_some_and(|(n, t)| n == new && ctx.at - t < LATE_SWITCH);
                if self.open.is_none() && repeat {
                    return Step::Unchanged;
                }
                // No -sdown follows for the old master: its flags are reset.
                self.sdown.clear();
                self.odown.clear();
                let step = self.mark(ctx, MarkName::Switched, Some(old), true);
                let t = self.timeline(ctx, Some(old));
                t.new_master = Some(new.clone());
                step.and(self.advance(S::UpdateConfig))
            }
            (E::FailoverEnd, _) => {
                // The leader switches its configuration to the new master
                // at `+failover-end` and publishes its `+switch-master` just
                // after. Where no sentinel's `+switch-master` came first (no
                // replica left to reconfigure, so the end follows the
                // promotion at once), the end is the switch: it is what
                // pages, and the leader's own `+switch-master` then opens
                // nothing.
                if let Some(t) = &mut self.open {
                    if t.new_master.is_some() && t.at(MarkName::Promoted).is_some() {
                        t.mark(MarkName::Switched, ctx.at, ctx.reporter);
                    }
                }
                self.mark(ctx, MarkName::Ended, master_addr, false);
                self.advance(S::UpdateConfig);
                self.finish(Outcome::Completed, None)
            }
            (E::AbortNoGoodSlave | E::AbortSlaveTimeout, _) => {
                self.mark(ctx, MarkName::Ended, master_addr, false);
                self.finish(Outcome::Aborted, Some(&event.channel[1..]))
            }
            // A losing candidate: another sentinel may still win, so this
            // only names the reason should the failover go nowhere.
            (E::AbortNotElected, _) if self.open.is_some() => {
                self.not_elected = true;
                Step::Unchanged
            }
            (E::FailoverEndForTimeout, _) => {
                self.mark(ctx, MarkName::ReconfTimeout, master_addr, false)
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
        if !self.sdown.is_empty() || !self.odown.is_empty() || t.at(MarkName::TryFailover).is_some()
        {
            return Step::Unchanged;
        }
        if t.at(MarkName::Odown).is_some() {
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
        t.mark(MarkName::Switched, at, POLL);
        t.mark(MarkName::Ended, at, POLL);
        self.advance(FailoverState::UpdateConfig);
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

    /// Closes a failover with no news for `limit` seconds (twice the
    /// failover timeout), unless the sentinel that started it is in TILT
    /// (`tilted`): it goes on once the TILT ends, up to 30 s later.
    pub fn on_tick(&mut self, now: f64, limit: f64, tilted: &BTreeSet<String>) -> Step {
        let Some(t) = &self.open else {
            return Step::Unchanged;
        };
        let started = t.started().unwrap_or(now);
        if !t.worth_keeping() {
            // Only a suspicion: it lasts while some sentinel sees the master
            // down, and is dropped (never counted) once the polls show none
            // does, even if the `-sdown` events were missed.
            if now - started > SUSPICION_LIMIT && self.sdown.is_empty() && self.odown.is_empty() {
                self.open = None;
                return Step::Dropped;
            }
            return Step::Unchanged;
        }
        // Counted from its last news, not its start: a detection held up
        // (the sentinels seeing the master down without agreeing yet), or a
        // switch at the end of a long election, leaves it its time.
        let news = t.marks.iter().map(|m| m.at).fold(started, f64::max);
        let held = t
            .marks
            .iter()
            .find(|m| m.name == MarkName::TryFailover)
            .is_some_and(|m| tilted.contains(&m.reporter));
        if now - news <= limit || held {
            return Step::Unchanged;
        }
        if self.not_elected && t.at(MarkName::Switched).is_none() {
            self.finish(Outcome::Aborted, Some("failover-abort-not-elected"))
        } else {
            self.finish(Outcome::TimedOut, None)
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

    /// Feeds the recorded failover through the machine: (machine, closed timelines).
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

    fn names(t: &Timeline) -> Vec<(&'static str, &str)> {
        t.marks
            .iter()
            .map(|m| (m.name.as_str(), m.reporter.as_str()))
            .collect()
    }

    /// A second agent receives every event a few milliseconds later: the
    /// failover has the same id in both.
    #[test]
    fn the_id_does_not_depend_on_when_the_events_arrived() {
        let events = recorded();
        let later: Vec<_> = events
            .iter()
            .map(|(at, port, c, p)| (at + 0.0037, *port, c.clone(), p.clone()))
            .collect();
        let (_, one) = replay(&events);
        let (_, two) = replay(&later);
        assert_ne!(one[0].marks, two[0].marks);
        assert_eq!(one[0].id, "d:mymaster:e0");
        assert_eq!(two[0].id, one[0].id);
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
        assert_eq!(t.state, Some(FailoverState::UpdateConfig));
        assert_eq!(t.old_master.as_deref(), Some("127.0.0.1:7100"));
        assert_eq!(t.new_master.as_deref(), Some("127.0.0.1:7101"));
        assert_eq!(t.epochs, [1]);
        let phases: std::collections::HashMap<&str, f64> = t
            .phases()
            .into_iter()
            .map(|(p, s)| (p.as_str(), s))
            .collect();
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
    fn the_leaders_states_follow_sentinel_c() {
        let events = recorded();
        let mut shard = SentinelShard::default();
        let mut states = Vec::new();
        for (at, port, channel, payload) in &events {
            let reporter = format!("127.0.0.1:{port}");
            shard.on_event(&Event::parse(channel, payload), &ctx(*at, &reporter));
            let state = shard.open.as_ref().and_then(|t| t.state);
            if states.last() != Some(&state) {
                states.push(state);
            }
        }
        use FailoverState as S;
        assert_eq!(
            states,
            [
                Some(S::None),
                Some(S::WaitStart),
                Some(S::SelectSlave),
                Some(S::SendSlaveofNoone),
                Some(S::WaitPromotion),
                Some(S::ReconfSlaves),
                Some(S::UpdateConfig),
                None
            ]
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
            // The sentinel on 7111 led both failovers.
            assert_eq!(
                names(t),
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

    /// Redis 7.0 in a chaos run: the only other replica was down, so the
    /// leader ended right after the promotion and every `+switch-master`
    /// came after `+failover-end`. The end is the switch, and the leader's
    /// own `+switch-master` that follows opens nothing.
    #[test]
    fn an_end_before_any_switch_is_the_switch() {
        const MASTER: &str = "master mymaster 10.213.0.4 28680";
        const REPLICA: &str = "slave 10.213.0.2:26669 10.213.0.2 26669 @ mymaster 10.213.0.4 28680";
        let mut s = SentinelShard::default();
        for (at, channel, payload) in [
            (1014.74, "+sdown", MASTER),
            (1014.74, "+odown", MASTER),
            (1014.74, "+try-failover", MASTER),
            (1014.80, "+elected-leader", MASTER),
            (1014.86, "+selected-slave", REPLICA),
            (1015.81, "+promoted-slave", REPLICA),
        ] {
            s.on_event(&Event::parse(channel, payload), &ctx(at, "leader"));
        }
        let Step::Closed(t) = s.on_event(
            &Event::parse("+failover-end", MASTER),
            &ctx(1015.88, "leader"),
        ) else {
            panic!("the end closes the failover")
        };
        assert_eq!(t.outcome, Some(Outcome::Completed));
        assert_eq!(t.switch_seen(), Some(1015.88));
        assert_eq!(t.new_master.as_deref(), Some("10.213.0.2:26669"));
        let switch = Event::parse(
            "+switch-master",
            "mymaster 10.213.0.4 28680 10.213.0.2 26669",
        );
        for who in ["leader", "other"] {
            assert_eq!(s.on_event(&switch, &ctx(1015.89, who)), Step::Unchanged);
        }
        assert!(s.open.is_none());
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
        let none = BTreeSet::new();
        let mut s = SentinelShard::default();
        s.on_event(
            &Event::parse("+sdown", "master mymaster 127.0.0.1 7100"),
            &ctx(1.0, "a"),
        );
        assert_eq!(
            s.on_tick(20.0, 360.0, &none),
            Step::Unchanged,
            "a still sees it down"
        );
        s.seen_by("a", false, false);
        assert_eq!(
            s.on_tick(20.0, 360.0, &none),
            Step::Unchanged,
            "too early to tell"
        );
        assert_eq!(s.on_tick(40.0, 360.0, &none), Step::Dropped);
    }

    #[test]
    fn manual_failover_abort_and_timeout() {
        let none = BTreeSet::new();
        let mut s = SentinelShard::default();
        s.on_event(
            &Event::parse("+try-failover", "master mymaster 127.0.0.1 7100"),
            &ctx(5.0, "a"),
        );
        let t = s.open.clone().unwrap();
        assert_eq!(t.marks[0].name, MarkName::TryFailover);
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
        assert_eq!(s.on_tick(15.0, 20.0, &none), Step::Unchanged);
        let Step::Closed(t) = s.on_tick(31.0, 20.0, &none) else {
            panic!("times out")
        };
        assert_eq!(
            t.abort_reason.as_deref(),
            Some("failover-abort-not-elected")
        );
    }

    /// The leader publishes `+failover-end` before its own
    /// `+switch-master`: when it is the first to tell, the switch that
    /// follows belongs to the ended failover and opens nothing.
    #[test]
    fn a_switch_told_after_the_end_opens_nothing() {
        let mut s = SentinelShard::default();
        let steps = feed(
            &mut s,
            &[
                (0.0, "a", "+try-failover", MASTER),
                (0.1, "a", "+selected-slave", PROMOTED),
                (0.2, "a", "+promoted-slave", PROMOTED),
                (5.0, "a", "+failover-end", MASTER),
                (5.1, "a", "+switch-master", SWITCH),
                (5.2, "b", "+switch-master", SWITCH),
            ],
        );
        assert!(matches!(steps[3], Step::Closed(_)), "{steps:?}");
        assert_eq!(steps[4..], [Step::Unchanged, Step::Unchanged]);
        assert!(s.open.is_none());
    }

    /// Feeds `(time, sentinel, channel, payload)` events to `s`.
    fn feed(s: &mut SentinelShard, events: &[(f64, &str, &str, &str)]) -> Vec<Step> {
        events
            .iter()
            .map(|(at, who, channel, payload)| {
                s.on_event(&Event::parse(channel, payload), &ctx(*at, who))
            })
            .collect()
    }

    const MASTER: &str = "master mymaster 127.0.0.1 7100";
    const PROMOTED: &str = "slave 127.0.0.1:7101 127.0.0.1 7101 @ mymaster 127.0.0.1 7100";
    const SWITCH: &str = "mymaster 127.0.0.1 7100 127.0.0.1 7101";

    /// Three failovers of a chaos run that the time limit (twice the
    /// failover timeout, 8 s) cut short, each paging `FailoverAborted`
    /// for a failover that went on to switch, whose switch then opened a
    /// timeline of its own (paged again): a `SENTINEL FAILOVER` sent to a
    /// sentinel in TILT, which starts it only when the TILT ends (28 s
    /// later); sentinels that saw the master down 7 s before agreeing it
    /// was; a failover that switched just before the limit.
    #[test]
    fn a_failover_held_up_is_not_timed_out_nor_recorded_twice() {
        let limit = 8.0;
        let mut tilted = BTreeSet::from(["a".to_string()]);
        let mut s = SentinelShard::default();
        feed(&mut s, &[(0.0, "a", "+try-failover", MASTER)]);
        assert_eq!(
            s.on_tick(20.0, limit, &tilted),
            Step::Unchanged,
            "a in TILT"
        );
        tilted.clear();
        feed(
            &mut s,
            &[
                (28.1, "a", "+elected-leader", MASTER),
                (28.3, "a", "+promoted-slave", PROMOTED),
                (28.4, "b", "+switch-master", SWITCH),
            ],
        );
        assert_eq!(s.on_tick(30.0, limit, &tilted), Step::Unchanged);
        let steps = feed(&mut s, &[(30.5, "a", "+failover-end", MASTER)]);
        assert!(
            matches!(&steps[0], Step::Closed(t) if t.outcome == Some(Outcome::Completed)),
            "{steps:?}"
        );

        feed(
            &mut s,
            &[
                (100.0, "a", "+sdown", MASTER),
                (
                    106.9,
                    "b",
                    "+odown",
                    "master mymaster 127.0.0.1 7100 #quorum 2/2",
                ),
                (106.9, "b", "+try-failover", MASTER),
                (107.9, "b", "+promoted-slave", PROMOTED),
            ],
        );
        assert_eq!(
            s.on_tick(108.5, limit, &tilted),
            Step::Unchanged,
            "detection took 7 s"
        );

        let mut s = SentinelShard::default();
        feed(
            &mut s,
            &[
                (200.0, "a", "+try-failover", MASTER),
                (207.3, "b", "+switch-master", SWITCH),
            ],
        );
        assert_eq!(
            s.on_tick(208.1, limit, &tilted),
            Step::Unchanged,
            "switched at 207.3"
        );
        let Step::Closed(t) = s.on_tick(216.0, limit, &tilted) else {
            panic!("no end within the limit of the switch")
        };
        assert_eq!(t.outcome, Some(Outcome::TimedOut));
        assert_eq!(
            feed(&mut s, &[(217.0, "c", "+switch-master", SWITCH)]),
            [Step::Unchanged],
            "a late switch of the timed-out failover opens no second one"
        );
        assert!(s.open.is_none());
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
        assert_eq!(t.marks.last().unwrap().reporter, POLL);
    }
}
