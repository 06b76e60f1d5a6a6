//! Sentinel events: the messages a sentinel publishes on its own pub/sub,
//! one channel per event type (see docs/events.md for the full list).
//!
//! Every message parses into an [`Event`]; a channel the agent does not know,
//! or a payload of an unexpected shape, still parses (as [`Detail::Text`]
//! with no instance), so nothing a sentinel says is dropped.

use super::join_addr;

/// The instance an event is about: the `<type> <name> <ip> <port> [@ <master-name> <master-ip> <master-port>]`
/// prefix of most payloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// `master`, `slave` or `sentinel`.
    pub kind: InstanceKind,
    /// The master name for a master; `ip:port` for a replica; the run id for a sentinel.
    pub name: String,
    /// `ip:port` (ip may be a hostname with `announce-hostnames yes`).
    pub addr: String,
    /// For replicas and sentinels: the master name and address they belong to.
    pub master: Option<(String, String)>,
}

/// What an event's instance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceKind {
    /// A monitored master.
    Master,
    /// A replica of a monitored master.
    Replica,
    /// Another sentinel.
    Sentinel,
}

/// The rest of the payload, for the events that carry more than an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    /// Nothing after the instance.
    None,
    /// `+odown ... #quorum <count>/<quorum>`.
    Quorum {
        /// Sentinels that agree the master is down.
        count: u32,
        /// Sentinels needed.
        quorum: u32,
    },
    /// `+new-epoch <epoch>`.
    Epoch(u64),
    /// `+vote-for-leader <leader-runid> <epoch>`.
    Vote {
        /// Run id of the sentinel voted for.
        leader: String,
        /// The epoch of the vote.
        epoch: u64,
    },
    /// `+switch-master <name> <old-ip> <old-port> <new-ip> <new-port>`.
    Switch {
        /// The master name.
        master: String,
        /// `ip:port` of the old master.
        old: String,
        /// `ip:port` of the new master.
        new: String,
    },
    /// `+role-change` / `-role-change`: the role the instance now reports.
    Role {
        /// True for `new reported role is master`.
        master: bool,
    },
    /// `+tilt` / `-tilt`.
    Tilt,
    /// Anything else after the instance, or a whole payload of unknown shape.
    Text(String),
}

/// The events the agent acts on, named after their channels; every other
/// channel is [`EventKind::Other`] (still counted and listed by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `+sdown`
    Sdown,
    /// `-sdown`
    SdownCleared,
    /// `+odown`
    Odown,
    /// `-odown`
    OdownCleared,
    /// `+new-epoch`
    NewEpoch,
    /// `+try-failover`
    TryFailover,
    /// `+elected-leader`
    ElectedLeader,
    /// `+failover-state-select-slave`
    StateSelectSlave,
    /// `+selected-slave`
    SelectedSlave,
    /// `+failover-state-send-slaveof-noone`
    StateSendSlaveofNoone,
    /// `+failover-state-wait-promotion`
    StateWaitPromotion,
    /// `+promoted-slave`
    PromotedSlave,
    /// `+failover-state-reconf-slaves`
    StateReconfSlaves,
    /// `+failover-end-for-timeout`
    FailoverEndForTimeout,
    /// `+failover-end`
    FailoverEnd,
    /// `+switch-master`
    SwitchMaster,
    /// `-failover-abort-not-elected`
    AbortNotElected,
    /// `-failover-abort-no-good-slave`
    AbortNoGoodSlave,
    /// `-failover-abort-slave-timeout`
    AbortSlaveTimeout,
    /// Any other channel.
    Other,
}

impl EventKind {
    const CHANNELS: [(EventKind, &'static str); 19] = [
        (EventKind::Sdown, "+sdown"),
        (EventKind::SdownCleared, "-sdown"),
        (EventKind::Odown, "+odown"),
        (EventKind::OdownCleared, "-odown"),
        (EventKind::NewEpoch, "+new-epoch"),
        (EventKind::TryFailover, "+try-failover"),
        (EventKind::ElectedLeader, "+elected-leader"),
        (EventKind::StateSelectSlave, "+failover-state-select-slave"),
        (EventKind::SelectedSlave, "+selected-slave"),
        (
            EventKind::StateSendSlaveofNoone,
            "+failover-state-send-slaveof-noone",
        ),
        (
            EventKind::StateWaitPromotion,
            "+failover-state-wait-promotion",
        ),
        (EventKind::PromotedSlave, "+promoted-slave"),
        (
            EventKind::StateReconfSlaves,
            "+failover-state-reconf-slaves",
        ),
        (
            EventKind::FailoverEndForTimeout,
            "+failover-end-for-timeout",
        ),
        (EventKind::FailoverEnd, "+failover-end"),
        (EventKind::SwitchMaster, "+switch-master"),
        (EventKind::AbortNotElected, "-failover-abort-not-elected"),
        (EventKind::AbortNoGoodSlave, "-failover-abort-no-good-slave"),
        (
            EventKind::AbortSlaveTimeout,
            "-failover-abort-slave-timeout",
        ),
    ];

    /// The kind of the event published on `channel`.
    pub fn of(channel: &str) -> EventKind {
        Self::CHANNELS
            .iter()
            .find(|(_, c)| *c == channel)
            .map_or(EventKind::Other, |(k, _)| *k)
    }
}

/// One sentinel event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What the channel says the event is.
    pub kind: EventKind,
    /// The channel, which names the event: `+sdown`, `+switch-master`, ...
    pub channel: String,
    /// The instance it is about, when the payload starts with one.
    pub instance: Option<Instance>,
    /// The rest.
    pub detail: Detail,
}

impl Event {
    /// The master (shard) the event concerns, if any.
    pub fn master_name(&self) -> Option<&str> {
        if let Detail::Switch { master, .. } = &self.detail {
            return Some(master);
        }
        let i = self.instance.as_ref()?;
        match (&i.master, i.kind) {
            (Some((name, _)), _) => Some(name),
            (None, InstanceKind::Master) => Some(&i.name),
            _ => None,
        }
    }

    /// Whether the event is one Sentinel publishes about no master in
    /// particular (epochs, votes, TILT, scripts): any other message that
    /// names no master is not Sentinel's.
    pub fn names_no_master(&self) -> bool {
        const CHANNELS: [&str; 8] = [
            "+new-epoch",
            "+vote-for-leader",
            "+tilt",
            "-tilt",
            "+script-child",
            "-script-child",
            "-script-error",
            "-script-timeout",
        ];
        self.master_name().is_none() && CHANNELS.contains(&self.channel.as_str())
    }

    /// Whether the event is about the master itself (not a replica or sentinel of it).
    pub fn is_about_master(&self) -> bool {
        self.instance
            .as_ref()
            .is_some_and(|i| i.kind == InstanceKind::Master)
    }

    /// Parses one message of `channel` with `payload`. Never fails: what
    /// cannot be understood is kept as text.
    pub fn parse(channel: &str, payload: &str) -> Event {
        let words: Vec<&str> = payload.split_ascii_whitespace().collect();
        let text = || Detail::Text(payload.to_string());
        let (instance, detail) = match channel {
            "+new-epoch" => (
                None,
                words
                    .first()
                    .and_then(|w| w.parse().ok())
                    .map_or_else(text, Detail::Epoch),
            ),
            "+vote-for-leader" => match words.as_slice() {
                [leader, epoch] => match epoch.parse() {
                    Ok(epoch) => (
                        None,
                        Detail::Vote {
                            leader: leader.to_string(),
                            epoch,
                        },
                    ),
                    Err(_) => (None, text()),
                },
                _ => (None, text()),
            },
            "+switch-master" => match words.as_slice() {
                [name, oip, oport, nip, nport] => match (oport.parse(), nport.parse()) {
                    (Ok(op), Ok(np)) => (
                        None,
                        Detail::Switch {
                            master: name.to_string(),
                            old: join_addr(oip, op),
                            new: join_addr(nip, np),
                        },
                    ),
                    _ => (None, text()),
                },
                _ => (None, text()),
            },
            "+tilt" | "-tilt" => (None, Detail::Tilt),
            "-script-error" | "-script-timeout" => (None, text()),
            _ => match parse_instance(&words) {
                Some((instance, rest)) => (Some(instance), instance_detail(channel, rest)),
                None => (None, text()),
            },
        };
        Event {
            kind: EventKind::of(channel),
            channel: channel.to_string(),
            instance,
            detail,
        }
    }
}

fn parse_instance<'a>(words: &'a [&'a str]) -> Option<(Instance, &'a [&'a str])> {
    let (kind, name, ip, port, rest) = match words {
        [kind, name, ip, port, rest @ ..] => (*kind, *name, *ip, port.parse::<u16>().ok()?, rest),
        _ => return None,
    };
    let kind = match kind {
        "master" => InstanceKind::Master,
        "slave" => InstanceKind::Replica,
        "sentinel" => InstanceKind::Sentinel,
        _ => return None,
    };
    let (master, rest) = match rest {
        ["@", mname, mip, mport, rest @ ..] => (
            Some((mname.to_string(), join_addr(mip, mport.parse().ok()?))),
            rest,
        ),
        _ => (None, rest),
    };
    Some((
        Instance {
            kind,
            name: name.to_string(),
            addr: join_addr(ip, port),
            master,
        },
        rest,
    ))
}

fn instance_detail(channel: &str, rest: &[&str]) -> Detail {
    match (channel, rest) {
        (_, []) => Detail::None,
        ("+odown", ["#quorum", q]) => match q.split_once('/') {
            Some((c, n)) => match (c.parse(), n.parse()) {
                (Ok(count), Ok(quorum)) => Detail::Quorum { count, quorum },
                _ => Detail::Text(rest.join(" ")),
            },
            None => Detail::Text(rest.join(" ")),
        },
        ("+role-change" | "-role-change", [.., "role", "is", role]) => Detail::Role {
            master: *role == "master",
        },
        _ => Detail::Text(rest.join(" ")),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::parse::{fixture, RECORDED_VERSIONS};

    /// The recorded failover: (receive time, sentinel port, channel, payload).
    pub(crate) fn recorded() -> Vec<(f64, u16, String, String)> {
        recorded_in("sentinel-failover-events.txt")
    }

    /// [`recorded`] of the fixture `file`.
    pub(crate) fn recorded_in(file: &str) -> Vec<(f64, u16, String, String)> {
        fixture(file)
            .lines()
            .filter(|l| l.contains("\"pmessage\""))
            .map(|l| {
                let mut parts = l.splitn(3, ' ');
                let at: f64 = parts.next().unwrap().parse().unwrap();
                let port: u16 = parts.next().unwrap().parse().unwrap();
                let fields: Vec<String> = parts
                    .next()
                    .unwrap()
                    .split("\",\"")
                    .map(|f| f.trim_matches('"').to_string())
                    .collect();
                (at, port, fields[2].clone(), fields[3].clone())
            })
            .collect()
    }

    #[test]
    fn every_recorded_event_parses_with_its_master() {
        let files = RECORDED_VERSIONS
            .map(|v| format!("{v}/sentinel-failover-events.txt"))
            .into_iter()
            .chain(["sentinel-failover-events.txt".to_string()]);
        for file in files {
            let events = recorded_in(&file);
            assert_eq!(events.len(), 50, "{file}");
            for (_, _, channel, payload) in &events {
                let e = Event::parse(channel, payload);
                assert!(
                    !matches!(e.detail, Detail::Text(_)),
                    "{file}: {channel} {payload} -> {e:?}"
                );
                if !matches!(channel.as_str(), "+new-epoch" | "+vote-for-leader") {
                    assert_eq!(
                        e.master_name(),
                        Some("mymaster"),
                        "{file}: {channel} {payload}"
                    );
                }
            }
        }
    }

    #[test]
    fn payload_shapes() {
        let e = Event::parse("+odown", "master mymaster 127.0.0.1 7100 #quorum 3/2");
        assert!(e.is_about_master());
        assert_eq!(
            e.detail,
            Detail::Quorum {
                count: 3,
                quorum: 2
            }
        );
        assert_eq!(e.instance.unwrap().addr, "127.0.0.1:7100");

        let e = Event::parse("+switch-master", "mymaster 127.0.0.1 7100 127.0.0.1 7101");
        assert_eq!(
            e.detail,
            Detail::Switch {
                master: "mymaster".into(),
                old: "127.0.0.1:7100".into(),
                new: "127.0.0.1:7101".into()
            }
        );

        let e = Event::parse(
            "+selected-slave",
            "slave 127.0.0.1:7101 127.0.0.1 7101 @ mymaster 127.0.0.1 7100",
        );
        let i = e.instance.clone().unwrap();
        assert_eq!(
            (i.kind, i.addr.as_str()),
            (InstanceKind::Replica, "127.0.0.1:7101")
        );
        assert_eq!(i.master, Some(("mymaster".into(), "127.0.0.1:7100".into())));
        assert!(!e.is_about_master());

        let e = Event::parse("-role-change", "slave 127.0.0.1:7101 127.0.0.1 7101 @ mymaster 127.0.0.1 7100 new reported role is master");
        assert_eq!(e.detail, Detail::Role { master: true });
        assert_eq!(Event::parse("+new-epoch", "7").detail, Detail::Epoch(7));
        assert_eq!(
            Event::parse("+vote-for-leader", "9a4b 1").detail,
            Detail::Vote {
                leader: "9a4b".into(),
                epoch: 1
            }
        );
        assert_eq!(
            Event::parse("+tilt", "#tilt mode entered").detail,
            Detail::Tilt
        );
        let host = Event::parse("+sdown", "master mymaster redis-0.example 6379");
        assert_eq!(host.instance.unwrap().addr, "redis-0.example:6379");
    }

    #[test]
    fn unknown_channels_and_shapes_are_kept() {
        let e = Event::parse("+brand-new-event", "whatever it says");
        assert_eq!(e.detail, Detail::Text("whatever it says".into()));
        assert_eq!(e.master_name(), None);
        let e = Event::parse("+switch-master", "mymaster 127.0.0.1 x 127.0.0.1 7101");
        assert!(matches!(e.detail, Detail::Text(_)));
        let e = Event::parse("+sdown", "master mymaster 127.0.0.1 99999");
        assert_eq!(e.instance, None);
    }
}
