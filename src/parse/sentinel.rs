//! Replies of `SENTINEL MASTERS`, `SENTINEL REPLICAS`, `SENTINEL SENTINELS`
//! and `SENTINEL CKQUORUM`.
//!
//! Sentinel answers the first three with one key/value map per instance and
//! every value as a string; the collector hands each map over as a
//! `HashMap<String, String>` whatever the protocol version.

use std::collections::HashMap;

use super::{join_addr, num, ParseError};

/// One token of a `flags` field, as `sentinel.c` writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// `s_down`: this sentinel sees the instance subjectively down.
    SDown,
    /// `o_down`: it sees the master objectively down (quorum reached).
    ODown,
    /// `master`
    Master,
    /// `slave`
    Slave,
    /// `sentinel`
    Sentinel,
    /// `disconnected`: no link to the instance.
    Disconnected,
    /// `master_down`: another sentinel says the master is down.
    MasterDown,
    /// `failover_in_progress`: a failover of this master is under way.
    FailoverInProgress,
    /// `promoted`: the replica chosen in a failover.
    Promoted,
    /// `reconf_sent`, `reconf_inprog`, `reconf_done`: a replica being
    /// pointed at the new master.
    ReconfSent,
    /// See [`Flag::ReconfSent`].
    ReconfInprog,
    /// See [`Flag::ReconfSent`].
    ReconfDone,
    /// `force_failover`: a `SENTINEL FAILOVER` was asked for.
    ForceFailover,
    /// `script_kill_sent`
    ScriptKillSent,
    /// `master_reboot`: the master restarted during `master-reboot-down-after-period`.
    MasterReboot,
}

impl Flag {
    const ALL: [(Flag, &'static str); 15] = [
        (Flag::SDown, "s_down"),
        (Flag::ODown, "o_down"),
        (Flag::Master, "master"),
        (Flag::Slave, "slave"),
        (Flag::Sentinel, "sentinel"),
        (Flag::Disconnected, "disconnected"),
        (Flag::MasterDown, "master_down"),
        (Flag::FailoverInProgress, "failover_in_progress"),
        (Flag::Promoted, "promoted"),
        (Flag::ReconfSent, "reconf_sent"),
        (Flag::ReconfInprog, "reconf_inprog"),
        (Flag::ReconfDone, "reconf_done"),
        (Flag::ForceFailover, "force_failover"),
        (Flag::ScriptKillSent, "script_kill_sent"),
        (Flag::MasterReboot, "master_reboot"),
    ];

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// The `flags` field: comma-separated tokens such as `master,s_down,o_down`.
/// Tokens of later versions are ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags(u16);

impl Flags {
    /// Parses the comma-separated `flags` value.
    pub fn parse(value: &str) -> Self {
        Flags(
            value
                .split(',')
                .filter_map(|t| Flag::ALL.iter().find(|(_, name)| *name == t.trim()))
                .fold(0, |bits, (flag, _)| bits | flag.bit()),
        )
    }

    /// Whether the flag is set.
    pub fn has(self, flag: Flag) -> bool {
        self.0 & flag.bit() != 0
    }
}

type Map = HashMap<String, String>;

fn get<'a>(map: &'a Map, name: &'static str) -> Result<&'a str, ParseError> {
    map.get(name)
        .map(String::as_str)
        .ok_or(ParseError::Missing(name))
}

/// A numeric field that older or newer servers may leave out: absent is
/// `None`, present and not a number is an error.
fn opt_num<T: std::str::FromStr>(map: &Map, name: &'static str) -> Result<Option<T>, ParseError> {
    map.get(name).map(|v| num(name, v)).transpose()
}

fn addr(map: &Map) -> Result<String, ParseError> {
    Ok(join_addr(get(map, "ip")?, num("port", get(map, "port")?)?))
}

/// One monitored master, as one sentinel sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterEntry {
    /// The master name, which is the shard name for sentinel deployments.
    pub name: String,
    /// `ip:port` of the current master in this sentinel's configuration.
    pub addr: String,
    /// Flags such as `s_down`, `o_down`, `failover_in_progress`.
    pub flags: Flags,
    /// The epoch of the configuration this sentinel holds for the master:
    /// sentinels that agree on the master agree on this too.
    pub config_epoch: u64,
    /// Sentinels that must agree the master is down before a failover.
    pub quorum: u32,
    /// Replicas this sentinel knows.
    pub num_replicas: u32,
    /// Other sentinels this sentinel knows for this master.
    pub num_other_sentinels: u32,
    /// `failover-timeout` in milliseconds: a failover not ended within twice
    /// this is over, one way or another.
    pub failover_timeout_ms: u64,
    /// `down-after-milliseconds`: how long the master must not answer before
    /// this sentinel sees it down.
    pub down_after_ms: Option<u64>,
    /// `parallel-syncs`: replicas pointed at a new master at once.
    pub parallel_syncs: Option<u32>,
}

impl MasterEntry {
    /// Parses one map of `SENTINEL MASTERS`.
    pub fn parse(map: &Map) -> Result<Self, ParseError> {
        Ok(MasterEntry {
            name: get(map, "name")?.to_string(),
            addr: addr(map)?,
            flags: Flags::parse(get(map, "flags")?),
            config_epoch: num("config-epoch", get(map, "config-epoch")?)?,
            quorum: num("quorum", get(map, "quorum")?)?,
            num_replicas: num("num-slaves", get(map, "num-slaves")?)?,
            num_other_sentinels: num("num-other-sentinels", get(map, "num-other-sentinels")?)?,
            failover_timeout_ms: num("failover-timeout", get(map, "failover-timeout")?)?,
            down_after_ms: opt_num(map, "down-after-milliseconds")?,
            parallel_syncs: opt_num(map, "parallel-syncs")?,
        })
    }
}

/// One replica of a master, as one sentinel sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaEntry {
    /// `ip:port` as the replica announced itself.
    pub addr: String,
    /// Flags such as `slave`, `s_down`, `disconnected`.
    pub flags: Flags,
    /// `slave-priority` (`replica-priority` on some servers): 0 means
    /// Sentinel never promotes it.
    pub priority: Option<u32>,
    /// `master-link-down-time`: milliseconds its link to the master has
    /// been down, as its INFO last said (0 while up).
    pub link_down_ms: Option<u64>,
    /// `s-down-time`: milliseconds since this sentinel saw it down; only
    /// while it is.
    pub s_down_ms: Option<u64>,
    /// `master-host` and `master-port`: the master the replica's own INFO
    /// last named (`None` when it named none: `?`).
    pub follows: Option<String>,
}

impl ReplicaEntry {
    /// Parses one map of `SENTINEL REPLICAS <name>`.
    pub fn parse(map: &Map) -> Result<Self, ParseError> {
        let priority = match opt_num(map, "slave-priority")? {
            Some(p) => Some(p),
            None => opt_num(map, "replica-priority")?,
        };
        Ok(ReplicaEntry {
            addr: addr(map)?,
            flags: Flags::parse(get(map, "flags")?),
            priority,
            link_down_ms: opt_num(map, "master-link-down-time")?,
            s_down_ms: opt_num(map, "s-down-time")?,
            follows: match (map.get("master-host"), opt_num(map, "master-port")?) {
                (Some(host), Some(port)) if host != "?" => Some(join_addr(host, port)),
                _ => None,
            },
        })
    }
}

/// Another sentinel watching the same master, as one sentinel sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelEntry {
    /// `ip:port` the sentinel announces in its hello messages.
    pub addr: String,
    /// The sentinel's run id: stable across address changes, new after a restart.
    pub run_id: String,
    /// Flags such as `sentinel`, `s_down`, `disconnected`.
    pub flags: Flags,
    /// `s-down-time`: milliseconds since this sentinel saw it down; only
    /// while it is.
    pub s_down_ms: Option<u64>,
}

impl SentinelEntry {
    /// Parses one map of `SENTINEL SENTINELS <name>`.
    pub fn parse(map: &Map) -> Result<Self, ParseError> {
        Ok(SentinelEntry {
            addr: addr(map)?,
            run_id: get(map, "runid")?.to_string(),
            flags: Flags::parse(get(map, "flags")?),
            s_down_ms: opt_num(map, "s-down-time")?,
        })
    }
}

/// Parses the success reply of `SENTINEL CKQUORUM <name>`
/// (`OK 3 usable Sentinels. Quorum and failover authorization can be reached`)
/// into the number of usable sentinels. A `NOQUORUM` answer arrives as an
/// error reply and never reaches this function.
pub fn parse_ckquorum(reply: &str) -> Result<u32, ParseError> {
    let mut words = reply.split_whitespace();
    match (words.next(), words.next()) {
        (Some("OK"), Some(n)) => num("usable", n),
        _ => Err(ParseError::invalid("ckquorum", reply)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::parse::{fixture, RECORDED_VERSIONS};

    /// Splits the recorded `redis-cli` output of sentinel-commands.txt into
    /// the maps of each command: one value a line, each instance starting at `name`.
    pub(crate) fn recorded_maps(section: &str) -> Vec<Map> {
        maps_in("sentinel-commands.txt", section)
    }

    /// [`recorded_maps`] of the fixture `file`.
    fn maps_in(file: &str, section: &str) -> Vec<Map> {
        let text = fixture(file);
        let body = text
            .split("### ")
            .find(|s| s.starts_with(section))
            .unwrap()
            .lines()
            .skip(1)
            .collect::<Vec<_>>();
        let mut maps: Vec<Map> = Vec::new();
        for pair in body.chunks(2) {
            if pair[0] == "name" {
                maps.push(Map::new());
            }
            maps.last_mut()
                .unwrap()
                .insert(pair[0].to_string(), pair[1].to_string());
        }
        maps
    }

    #[test]
    fn masters_reply() {
        let maps = recorded_maps("sentinel masters");
        let m = MasterEntry::parse(&maps[0]).unwrap();
        assert_eq!(m.name, "mymaster");
        assert_eq!(m.addr, "127.0.0.1:7101");
        assert!(m.flags.has(Flag::Master) && !m.flags.has(Flag::SDown));
        assert_eq!(
            (
                m.config_epoch,
                m.quorum,
                m.num_replicas,
                m.num_other_sentinels
            ),
            (1, 2, 2, 2)
        );
        assert_eq!(m.failover_timeout_ms, 10000);
        assert_eq!((m.down_after_ms, m.parallel_syncs), (Some(2000), Some(1)));
    }

    #[test]
    fn settings_of_later_or_earlier_servers_are_optional() {
        let mut map = recorded_maps("sentinel replicas").remove(0);
        map.remove("slave-priority");
        map.insert("replica-priority".into(), "0".into());
        map.insert("s-down-time".into(), "61000".into());
        let r = ReplicaEntry::parse(&map).unwrap();
        assert_eq!((r.priority, r.s_down_ms), (Some(0), Some(61000)));
        assert_eq!(r.follows.as_deref(), Some("127.0.0.1:7101"));
        map.insert("master-host".into(), "?".into());
        assert_eq!(
            ReplicaEntry::parse(&map).unwrap().follows,
            None,
            "names none"
        );
        map.remove("replica-priority");
        map.remove("master-link-down-time");
        let r = ReplicaEntry::parse(&map).unwrap();
        assert_eq!((r.priority, r.link_down_ms), (None, None));
        map.insert("s-down-time".into(), "soon".into());
        assert!(ReplicaEntry::parse(&map).is_err(), "present, not a number");
    }

    #[test]
    fn replicas_and_sentinels_replies() {
        let replicas: Vec<_> = recorded_maps("sentinel replicas")
            .iter()
            .map(|m| ReplicaEntry::parse(m).unwrap().addr)
            .collect();
        assert_eq!(replicas, ["127.0.0.1:7100", "127.0.0.1:7102"]);
        let sentinels: Vec<_> = recorded_maps("sentinel sentinels")
            .iter()
            .map(|m| SentinelEntry::parse(m).unwrap())
            .collect();
        assert_eq!(sentinels[0].addr, "127.0.0.1:27102");
        assert_eq!(
            sentinels[0].run_id,
            "8ea546db13ac34c3cccda71f73249c1e386e0588"
        );
        assert_eq!(sentinels[1].addr, "127.0.0.1:27101");
    }

    #[test]
    fn replies_of_redis_6_2_and_valkey_8_1() {
        for version in RECORDED_VERSIONS {
            let file = format!("{version}/sentinel-commands.txt");
            let maps = maps_in(&file, "sentinel masters");
            assert_eq!(
                MasterEntry::parse(&maps[0]),
                Ok(MasterEntry {
                    name: "mymaster".into(),
                    addr: "127.0.0.1:7100".into(),
                    flags: Flags::parse("master"),
                    config_epoch: 0,
                    quorum: 2,
                    num_replicas: 2,
                    num_other_sentinels: 2,
                    failover_timeout_ms: 10000,
                    down_after_ms: Some(2000),
                    parallel_syncs: Some(1),
                }),
                "{version}"
            );
            for r in maps_in(&file, "sentinel replicas") {
                let r = ReplicaEntry::parse(&r).unwrap();
                assert_eq!(
                    (r.priority, r.link_down_ms, r.s_down_ms),
                    (Some(100), Some(0), None),
                    "{version}"
                );
                assert!(r.follows.is_some(), "{version}");
            }
            let mut replicas: Vec<_> = maps_in(&file, "sentinel replicas")
                .iter()
                .map(|m| ReplicaEntry::parse(m).unwrap())
                .map(|r| (r.addr, r.flags))
                .collect();
            replicas.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(
                replicas,
                [
                    ("127.0.0.1:7101".to_string(), Flags::parse("slave")),
                    ("127.0.0.1:7102".to_string(), Flags::parse("slave"))
                ],
                "{version}"
            );
            let mut sentinels: Vec<_> = maps_in(&file, "sentinel sentinels")
                .iter()
                .map(|m| SentinelEntry::parse(m).unwrap())
                .collect();
            sentinels.sort_by(|a, b| a.addr.cmp(&b.addr));
            let addrs: Vec<_> = sentinels.iter().map(|s| s.addr.as_str()).collect();
            assert_eq!(addrs, ["127.0.0.1:7111", "127.0.0.1:7112"], "{version}");
            for s in &sentinels {
                assert_eq!(s.run_id.len(), 40, "{version}: {s:?}");
                assert!(s.flags.has(Flag::Sentinel), "{version}: {s:?}");
            }
            let text = fixture(&file);
            let ckquorum = text.split("### sentinel ckquorum mymaster").nth(1).unwrap();
            assert_eq!(parse_ckquorum(ckquorum.trim()), Ok(3), "{version}");
        }
    }

    #[test]
    fn ckquorum_reply() {
        assert_eq!(
            parse_ckquorum(
                "OK 3 usable Sentinels. Quorum and failover authorization can be reached"
            ),
            Ok(3)
        );
        assert!(parse_ckquorum("NOQUORUM 1 usable Sentinels").is_err());
        assert!(parse_ckquorum("").is_err());
    }

    #[test]
    fn a_map_missing_a_field_names_it() {
        let mut map = recorded_maps("sentinel masters").remove(0);
        map.remove("config-epoch");
        assert_eq!(
            MasterEntry::parse(&map),
            Err(ParseError::Missing("config-epoch"))
        );
        map.insert("config-epoch".into(), "-x".into());
        assert!(matches!(
            MasterEntry::parse(&map),
            Err(ParseError::Invalid {
                field: "config-epoch",
                ..
            })
        ));
    }
}
