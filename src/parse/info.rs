//! `INFO replication`, `INFO persistence` (one field) and `INFO sentinel`.

use super::{join_addr, num, ParseError};

/// The role a server reports for itself in `INFO replication`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// `role:master`
    Master,
    /// `role:slave` (the agent says replica everywhere it speaks).
    Replica,
}

impl Role {
    /// The label value used in metrics and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Replica => "replica",
        }
    }
}

/// One `slaveN:ip=..,port=..,state=..,offset=..,lag=..` line of a master: the
/// master's own view of a replica, taken at the same instant as its offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectedReplica {
    /// `ip:port` as the replica announced it.
    pub addr: String,
    /// `online`, `wait_bgsave`, `send_bulk`, ...
    pub state: String,
    /// The replication offset the replica last acknowledged.
    pub offset: u64,
    /// Seconds since the replica's last ACK (absent on very old servers).
    pub ack_age_seconds: Option<u64>,
}

/// What a replica says about its link to its master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamLink {
    /// The master it replicates from, `host:port`.
    pub master: String,
    /// `master_link_status:up`
    pub link_up: bool,
    /// `master_link_down_since_seconds` while the link is down, if the server knows.
    pub link_down_seconds: Option<u64>,
    /// `master_sync_in_progress:1`: a full resynchronisation is running.
    pub sync_in_progress: bool,
    /// `slave_repl_offset`: how much of the master's stream it has processed.
    pub offset: u64,
}

/// The fields of `INFO replication` the agent relies on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationInfo {
    /// What the server says it is.
    pub role: Role,
    /// `master_repl_offset`: on a master, the write stream position.
    pub master_repl_offset: u64,
    /// On a master: its connected replicas.
    pub replicas: Vec<ConnectedReplica>,
    /// On a replica: its link to the master.
    pub upstream: Option<UpstreamLink>,
}

/// Iterates the `key:value` lines of an INFO reply, skipping `# Section`
/// headers and blank lines.
pub fn fields(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
}

fn field<'a>(text: &'a str, name: &'static str) -> Result<&'a str, ParseError> {
    fields(text)
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .ok_or(ParseError::Missing(name))
}

impl ReplicationInfo {
    /// Parses the reply of `INFO replication` (or of a full `INFO`).
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let role = match field(text, "role")? {
            "master" => Role::Master,
            "slave" | "replica" => Role::Replica,
            other => return Err(ParseError::invalid("role", other)),
        };
        let master_repl_offset = num("master_repl_offset", field(text, "master_repl_offset")?)?;
        let replicas = fields(text)
            .filter(|(k, _)| {
                k.strip_prefix("slave")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .filter_map(|(_, v)| ConnectedReplica::parse(v).transpose())
            .collect::<Result<Vec<_>, _>>()?;
        let upstream = match role {
            Role::Master => None,
            Role::Replica => Some(UpstreamLink::parse(text)?),
        };
        Ok(ReplicationInfo {
            role,
            master_repl_offset,
            replicas,
            upstream,
        })
    }
}

/// `rdb_changes_since_last_save` of `INFO persistence`: the write commands
/// the server executed since its last save. Reads, `PUBLISH` (which
/// sentinels send every instance every 2 s) and key expiry do not count,
/// so on a master with no replica it says whether clients still write
/// there; a save restarts it from 0.
pub fn changes_since_save(text: &str) -> Result<u64, ParseError> {
    num(
        "rdb_changes_since_last_save",
        field(text, "rdb_changes_since_last_save")?,
    )
}

impl UpstreamLink {
    fn parse(text: &str) -> Result<Self, ParseError> {
        let host = field(text, "master_host")?;
        let port: u16 = num("master_port", field(text, "master_port")?)?;
        let link_up = field(text, "master_link_status")? == "up";
        // Only present while the link is down; -1 means "never connected".
        let link_down_seconds = match field(text, "master_link_down_since_seconds") {
            Ok(v) => num::<i64>("master_link_down_since_seconds", v)?
                .try_into()
                .ok(),
            Err(_) => None,
        };
        let sync_in_progress = field(text, "master_sync_in_progress").is_ok_and(|v| v == "1");
        let offset = num("slave_repl_offset", field(text, "slave_repl_offset")?)?;
        Ok(UpstreamLink {
            master: join_addr(host, port),
            link_up,
            link_down_seconds,
            sync_in_progress,
            offset,
        })
    }
}

impl ConnectedReplica {
    /// Parses the value of a `slaveN:` line: `ip=..,port=..,state=..,offset=..,lag=..`
    /// (Valkey 8 adds `type=..`). `None` for a line that is not a replica of its own.
    fn parse(value: &str) -> Result<Option<Self>, ParseError> {
        let get = |name: &'static str| {
            value
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v)
                .ok_or(ParseError::Missing(name))
        };
        // Valkey 8's dual-channel replication lists a replica twice during a full
        // sync: its main connection (`type=main-channel`) and the connection the
        // snapshot streams on (`type=rdb-channel`, same ip:port, offset 0). The
        // latter is the same replica, not another one.
        if get("type") == Ok("rdb-channel") {
            return Ok(None);
        }
        let port: u16 = num("port", get("port")?)?;
        Ok(Some(ConnectedReplica {
            addr: join_addr(get("ip")?, port),
            state: get("state")?.to_string(),
            offset: num("offset", get("offset")?)?,
            ack_age_seconds: get("lag").ok().map(|v| num("lag", v)).transpose()?,
        }))
    }
}

/// `INFO sentinel`: the fields about the sentinel process itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelInfo {
    /// `sentinel_tilt:1`: the sentinel stopped acting because its clock or
    /// event loop misbehaved; it will not take part in failovers meanwhile.
    pub tilt: bool,
}

impl SentinelInfo {
    /// Parses the reply of `INFO sentinel`.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let tilt = match field(text, "sentinel_tilt")? {
            "0" => false,
            "1" => true,
            other => return Err(ParseError::invalid("sentinel_tilt", other)),
        };
        Ok(SentinelInfo { tilt })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{fixture, RECORDED_VERSIONS};

    #[test]
    fn persistence_reply_counts_the_writes_since_the_save() {
        // Recorded after two SETs on a server started without saving.
        assert_eq!(changes_since_save(&fixture("info-persistence.txt")), Ok(2));
        for version in RECORDED_VERSIONS {
            let text = fixture(&format!("{version}/info-persistence.txt"));
            assert_eq!(changes_since_save(&text), Ok(2), "{version}");
        }
        assert_eq!(
            changes_since_save("# Persistence\r\nloading:0\r\n"),
            Err(ParseError::Missing("rdb_changes_since_last_save"))
        );
        assert!(changes_since_save("rdb_changes_since_last_save:x").is_err());
    }

    #[test]
    fn master_reply_lists_replicas_with_offsets_and_ack_age() {
        let info =
            ReplicationInfo::parse(&fixture("sentinel-master-info-replication.txt")).unwrap();
        assert_eq!(info.role, Role::Master);
        assert_eq!(info.master_repl_offset, 51115);
        assert_eq!(info.upstream, None);
        assert_eq!(
            info.replicas,
            vec![
                ConnectedReplica {
                    addr: "127.0.0.1:7102".into(),
                    state: "online".into(),
                    offset: 51115,
                    ack_age_seconds: Some(1)
                },
                ConnectedReplica {
                    addr: "127.0.0.1:7100".into(),
                    state: "online".into(),
                    offset: 51115,
                    ack_age_seconds: Some(1)
                },
            ]
        );
    }

    #[test]
    fn replica_reply_describes_its_link() {
        let info =
            ReplicationInfo::parse(&fixture("sentinel-replica-info-replication.txt")).unwrap();
        assert_eq!(info.role, Role::Replica);
        assert!(info.replicas.is_empty());
        assert_eq!(
            info.upstream,
            Some(UpstreamLink {
                master: "127.0.0.1:7101".into(),
                link_up: true,
                link_down_seconds: None,
                sync_in_progress: false,
                offset: 51115,
            })
        );
    }

    #[test]
    fn replication_replies_of_redis_6_2_and_valkey_8_1() {
        for version in RECORDED_VERSIONS {
            let text = fixture(&format!("{version}/sentinel-master-info-replication.txt"));
            let master = ReplicationInfo::parse(&text).unwrap();
            assert_eq!(
                (master.role, master.master_repl_offset, &master.upstream),
                (Role::Master, 8399, &None),
                "{version}"
            );
            let listed: Vec<_> = master
                .replicas
                .iter()
                .map(|r| (r.addr.as_str(), r.state.as_str(), r.offset))
                .collect();
            assert_eq!(
                listed,
                [
                    ("127.0.0.1:7101", "online", 8003),
                    ("127.0.0.1:7102", "online", 8003)
                ],
                "{version}"
            );
            assert!(
                master
                    .replicas
                    .iter()
                    .all(|r| matches!(r.ack_age_seconds, Some(0 | 1))),
                "{version}: {:?}",
                master.replicas
            );

            let text = fixture(&format!("{version}/sentinel-replica-info-replication.txt"));
            let replica = ReplicationInfo::parse(&text).unwrap();
            assert_eq!(replica.role, Role::Replica, "{version}");
            assert_eq!(
                replica.upstream,
                Some(UpstreamLink {
                    master: "127.0.0.1:7100".into(),
                    link_up: true,
                    link_down_seconds: None,
                    sync_in_progress: false,
                    offset: 8399,
                }),
                "{version}"
            );
        }
    }

    #[test]
    fn valkey_dual_channel_sync_lists_the_syncing_replica_once() {
        // Valkey 8.1 with `dual-channel-replication-enabled yes`: 7302 is in a full
        // sync and the master lists it twice, as `type=main-channel` and as
        // `type=rdb-channel`; 7301 is online (`type=replica`).
        let master = ReplicationInfo::parse(&fixture(
            "valkey-8.1/dual-channel-master-info-replication.txt",
        ))
        .unwrap();
        assert_eq!(
            master.replicas,
            vec![
                ConnectedReplica {
                    addr: "127.0.0.1:7301".into(),
                    state: "online".into(),
                    offset: 1464,
                    ack_age_seconds: Some(0)
                },
                ConnectedReplica {
                    addr: "127.0.0.1:7302".into(),
                    state: "bg_transfer".into(),
                    offset: 0,
                    ack_age_seconds: Some(0)
                },
            ]
        );
        let replica = ReplicationInfo::parse(&fixture(
            "valkey-8.1/dual-channel-replica-info-replication.txt",
        ))
        .unwrap();
        assert_eq!(
            replica.upstream,
            Some(UpstreamLink {
                master: "127.0.0.1:7300".into(),
                link_up: false,
                link_down_seconds: None,
                sync_in_progress: true,
                offset: 0,
            })
        );
    }

    #[test]
    fn a_down_link_reports_how_long() {
        let text = "role:slave\r\nmaster_host:10.0.0.1\r\nmaster_port:6379\r\nmaster_link_status:down\r\n\
                    master_link_down_since_seconds:42\r\nmaster_sync_in_progress:1\r\nslave_repl_offset:7\r\n\
                    master_repl_offset:7\r\n";
        let link = ReplicationInfo::parse(text).unwrap().upstream.unwrap();
        assert!(!link.link_up);
        assert_eq!(link.link_down_seconds, Some(42));
        assert!(link.sync_in_progress);
        let never = text.replace("since_seconds:42", "since_seconds:-1");
        assert_eq!(
            ReplicationInfo::parse(&never)
                .unwrap()
                .upstream
                .unwrap()
                .link_down_seconds,
            None
        );
    }

    #[test]
    fn garbage_is_an_error_naming_the_field() {
        assert_eq!(
            ReplicationInfo::parse("hello"),
            Err(ParseError::Missing("role"))
        );
        assert!(matches!(
            ReplicationInfo::parse("role:master\nmaster_repl_offset:abc"),
            Err(ParseError::Invalid {
                field: "master_repl_offset",
                ..
            })
        ));
        assert!(ReplicationInfo::parse("role:leader\nmaster_repl_offset:1").is_err());
    }

    #[test]
    fn sentinel_info_reads_tilt() {
        assert!(
            !SentinelInfo::parse(&fixture("sentinel-info.txt"))
                .unwrap()
                .tilt
        );
        assert!(
            SentinelInfo::parse("# Sentinel\nsentinel_tilt:1\n")
                .unwrap()
                .tilt
        );
        assert!(SentinelInfo::parse("").is_err());
        // Valkey's `# Server` section differs (`server_name:valkey`, `valkey_version`,
        // `server_mode` instead of `redis_mode`); `# Sentinel` does not.
        for version in RECORDED_VERSIONS {
            let info = SentinelInfo::parse(&fixture(&format!("{version}/sentinel-info.txt")));
            assert_eq!(info, Ok(SentinelInfo { tilt: false }), "{version}");
        }
    }
}
