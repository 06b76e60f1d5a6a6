//! Replies of `CLUSTER INFO` and `CLUSTER NODES`.

use super::{info::fields, items, num, ParseError};
use crate::util::hash::digest;

/// The fields of `CLUSTER INFO` the agent relies on: one node's own view.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterInfo {
    /// `cluster_state:ok`
    pub state_ok: bool,
    /// Slots bound to some node.
    pub slots_assigned: u32,
    /// Slots whose owner this node sees healthy.
    pub slots_ok: u32,
    /// Slots whose owner this node suspects (`fail?`).
    pub slots_pfail: u32,
    /// Slots whose owner the cluster agreed has failed.
    pub slots_fail: u32,
    /// Nodes in this node's table, handshaking ones included.
    pub known_nodes: u32,
    /// The highest epoch this node knows.
    pub current_epoch: u64,
}

impl ClusterInfo {
    /// Parses the reply of `CLUSTER INFO`.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut state = None;
        let mut values = [None::<&str>; 6];
        const NAMES: [&str; 6] = [
            "cluster_slots_assigned",
            "cluster_slots_ok",
            "cluster_slots_pfail",
            "cluster_slots_fail",
            "cluster_known_nodes",
            "cluster_current_epoch",
        ];
        for (k, v) in fields(text) {
            if k == "cluster_state" {
                state = Some(v);
            } else if let Some(i) = NAMES.iter().position(|n| *n == k) {
                values[i] = Some(v);
            }
        }
        let state_ok = match state.ok_or(ParseError::Missing("cluster_state"))? {
            "ok" => true,
            "fail" => false,
            other => return Err(ParseError::invalid("cluster_state", other)),
        };
        let get = |i: usize| values[i].ok_or(ParseError::Missing(NAMES[i]));
        Ok(ClusterInfo {
            state_ok,
            slots_assigned: num(NAMES[0], get(0)?)?,
            slots_ok: num(NAMES[1], get(1)?)?,
            slots_pfail: num(NAMES[2], get(2)?)?,
            slots_fail: num(NAMES[3], get(3)?)?,
            known_nodes: num(NAMES[4], get(4)?)?,
            current_epoch: num(NAMES[5], get(5)?)?,
        })
    }
}

/// The fields of `CLUSTER INFO` that move when the cluster's topology does:
/// its state, the slots' health, epochs, members, and (where the server
/// has them) the count of nodes in `fail?` and `fail`.
const TOPOLOGY_FIELDS: [&str; 11] = [
    "cluster_state",
    "cluster_slots_assigned",
    "cluster_slots_ok",
    "cluster_slots_pfail",
    "cluster_slots_fail",
    "cluster_known_nodes",
    "cluster_size",
    "cluster_current_epoch",
    "cluster_my_epoch",
    "cluster_nodes_pfail",
    "cluster_nodes_fail",
];

/// A digest of a `CLUSTER INFO` reply's topology fields
/// ([`TOPOLOGY_FIELDS`]): when it changes, `CLUSTER NODES` has something
/// new to say; the message counters that move every time are left out.
pub fn info_signals(text: &str) -> u64 {
    let mut values: [&str; TOPOLOGY_FIELDS.len()] = [""; TOPOLOGY_FIELDS.len()];
    for (k, v) in fields(text) {
        if let Some(i) = TOPOLOGY_FIELDS.iter().position(|f| *f == k) {
            values[i] = v;
        }
    }
    digest(&values)
}

/// The flags of one `CLUSTER NODES` line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct NodeFlags {
    /// The line describes the node that answered.
    pub myself: bool,
    /// The node is a master.
    pub master: bool,
    /// The node is a replica.
    pub replica: bool,
    /// `fail?`: the answering node cannot reach it (PFAIL).
    pub pfail: bool,
    /// `fail`: a majority of masters agreed it failed.
    pub fail: bool,
    /// The first handshake has not completed: not yet a member.
    pub handshake: bool,
    /// The answering node has no address for it.
    pub noaddr: bool,
    /// `nofailover`: a replica set with `cluster-replica-no-failover yes`
    /// (Redis 7.0+ and Valkey show it): it never starts a failover of its
    /// master by itself.
    pub nofailover: bool,
}

impl NodeFlags {
    fn parse(value: &str) -> Self {
        let mut f = NodeFlags::default();
        for token in value.split(',') {
            match token {
                "myself" => f.myself = true,
                "master" => f.master = true,
                "slave" => f.replica = true,
                "fail?" => f.pfail = true,
                "fail" => f.fail = true,
                "handshake" => f.handshake = true,
                "noaddr" => f.noaddr = true,
                "nofailover" => f.nofailover = true,
                // `noflags` and flags of future versions carry nothing the
                // agent uses.
                _ => {}
            }
        }
        f
    }
}

/// An inclusive range of hash slots, `start..=end`.
pub type SlotRange = (u16, u16);

/// The highest hash slot number.
pub const MAX_SLOT: u16 = 16383;

/// One line of `CLUSTER NODES`: what the answering node believes about one node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterNode {
    /// The 40-character node id.
    pub id: String,
    /// `ip:port` (the client port), as announced; `:0` when unknown;
    /// `hostname:port` when the node announces a hostname.
    pub addr: String,
    /// The announced hostname, when the cluster is configured with one.
    pub hostname: Option<String>,
    /// Flags.
    pub flags: NodeFlags,
    /// For a replica: the id of its master.
    pub master_id: Option<String>,
    /// The node's config epoch.
    pub config_epoch: u64,
    /// Whether the cluster bus link to it is up.
    pub connected: bool,
    /// Slots the node serves.
    pub slots: Vec<SlotRange>,
    /// The shard id (Redis 7.2+, in the address's auxiliary fields): stable
    /// across failovers, the best shard identity when present.
    pub shard_id: Option<String>,
    /// On the answering node's own line: slots it is migrating, with the
    /// target node id.
    pub migrating: Vec<(u16, String)>,
    /// On the answering node's own line: slots it is importing, with the
    /// source node id.
    pub importing: Vec<(u16, String)>,
}

impl ClusterNode {
    /// Whether the line describes a settled member: not mid-handshake and with an address.
    pub fn is_member(&self) -> bool {
        !self.flags.handshake && !self.flags.noaddr && !self.addr.starts_with(':')
    }
}

/// A digest of what a `CLUSTER NODES` reply says, whichever line is the
/// answering node's own (`myself` is left out) and in whatever order the
/// lines come (each node lists its table in its own hash order): two nodes
/// that see the cluster alike have views with the same digest. Ping and
/// pong times are not parsed and the link state is left out (no view uses
/// it, and each node's links flap on their own), so a steady cluster's
/// views keep theirs.
pub fn view_digest<'a>(lines: impl IntoIterator<Item = &'a ClusterNode>) -> u64 {
    let mut count = 0usize;
    let sum = lines.into_iter().fold(0u64, |sum, l| {
        count += 1;
        let flags = NodeFlags {
            myself: false,
            ..l.flags
        };
        let line = (
            (&l.id, &l.addr, &l.hostname, flags, &l.master_id),
            (l.config_epoch, &l.slots, &l.shard_id),
            (&l.migrating, &l.importing),
        );
        sum.wrapping_add(digest(&line))
    });
    digest(&(sum, count))
}

/// A digest of a `CLUSTER NODES` reply as text, before parsing: every
/// token but the ping and pong times and the link state, line by line in
/// any order. Equal for two replies that parse to the same lines, so a
/// poller that got the same digest last time keeps what it parsed then
/// instead of parsing (and allocating) the same lines again.
pub fn reply_digest(text: &str) -> u64 {
    let mut lines = 0usize;
    let sum = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .fold(0u64, |sum, line| {
            lines += 1;
            let tokens: Vec<&str> = line
                .split_ascii_whitespace()
                .enumerate()
                .filter(|(i, _)| !matches!(i, 4 | 5 | 7))
                .map(|(_, t)| t)
                .collect();
            sum.wrapping_add(digest(&tokens))
        });
    digest(&(sum, lines))
}

/// Parses the reply of `CLUSTER NODES`, one node a line.
pub fn parse_nodes(text: &str) -> Result<Vec<ClusterNode>, ParseError> {
    items(text).map(parse_node_line).collect()
}

fn parse_node_line(line: &str) -> Result<ClusterNode, ParseError> {
    let mut parts = line.split_ascii_whitespace();
    let mut next = |name: &'static str| parts.next().ok_or(ParseError::Missing(name));
    let id = next("id")?;
    if id.len() != 40 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ParseError::invalid("id", id));
    }
    let address = next("address")?;
    // `ip:port@cport[,hostname[,key=value...]]`; Redis 3.x lines have no
    // `@cport`, 7.2+ add auxiliary fields such as `shard-id=...`.
    let mut address_parts = address.split(',');
    let endpoint = address_parts.next().unwrap_or_default();
    let hostname = address_parts
        .next()
        .filter(|h| !h.is_empty() && !h.contains('='))
        .map(String::from);
    let shard_id = address
        .split(',')
        .filter_map(|kv| kv.strip_prefix("shard-id="))
        .find(|v| !v.is_empty())
        .map(String::from);
    let ip_addr = endpoint.split_once('@').map_or(endpoint, |(a, _)| a);
    let (_, port) = ip_addr
        .rsplit_once(':')
        .ok_or(ParseError::invalid("address", address))?;
    num::<u16>("address", port)?;
    // A node announcing a hostname (`cluster-announce-hostname`) is reached
    // and named by it: its IP may change, and its TLS certificate names
    // the host.
    let addr = hostname
        .as_ref()
        .map_or_else(|| ip_addr.to_string(), |h| format!("{h}:{port}"));
    let flags = NodeFlags::parse(next("flags")?);
    let master_id = match next("master")? {
        "-" => None,
        m => Some(m.to_string()),
    };
    num::<u64>("ping-sent", next("ping-sent")?)?;
    num::<u64>("pong-recv", next("pong-recv")?)?;
    let config_epoch = num("config-epoch", next("config-epoch")?)?;
    let connected = match next("link-state")? {
        "connected" => true,
        "disconnected" => false,
        other => return Err(ParseError::invalid("link-state", other)),
    };
    let mut slots = Vec::new();
    let (mut migrating, mut importing) = (Vec::new(), Vec::new());
    for token in parts {
        // `[slot->-id]` / `[slot-<-id]`: migrating / importing, not owned.
        if let Some(entry) = token.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            if let Some((slot, target)) = entry.split_once("->-") {
                migrating.push((open_slot(slot)?, target.to_string()));
            } else if let Some((slot, source)) = entry.split_once("-<-") {
                importing.push((open_slot(slot)?, source.to_string()));
            } else {
                return Err(ParseError::invalid("slot", token));
            }
            continue;
        }
        let range = match token.split_once('-') {
            Some((a, b)) => (num::<u16>("slot", a)?, num::<u16>("slot", b)?),
            None => {
                let s = num::<u16>("slot", token)?;
                (s, s)
            }
        };
        if range.0 > range.1 || range.1 > MAX_SLOT {
            return Err(ParseError::invalid("slot", token));
        }
        slots.push(range);
    }
    Ok(ClusterNode {
        id: id.to_string(),
        addr,
        hostname,
        flags,
        master_id,
        config_epoch,
        connected,
        slots,
        shard_id,
        migrating,
        importing,
    })
}

fn open_slot(text: &str) -> Result<u16, ParseError> {
    let slot = num::<u16>("slot", text)?;
    if slot > MAX_SLOT {
        return Err(ParseError::invalid("slot", text));
    }
    Ok(slot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{fixture, RECORDED_VERSIONS};

    /// CLUSTER INFO of the recorded healthy 3x1 clusters, every version.
    fn healthy_info() -> ClusterInfo {
        ClusterInfo {
            state_ok: true,
            slots_assigned: 16384,
            slots_ok: 16384,
            slots_pfail: 0,
            slots_fail: 0,
            known_nodes: 6,
            current_epoch: 6,
        }
    }

    #[test]
    fn cluster_info_healthy_and_shard_down() {
        let ok = ClusterInfo::parse(&fixture("cluster-info-ok.txt")).unwrap();
        assert_eq!(ok, healthy_info());
        let down = ClusterInfo::parse(&fixture("cluster-info-shard-down.txt")).unwrap();
        assert!(!down.state_ok);
        assert_eq!(
            (down.slots_ok, down.slots_fail, down.current_epoch),
            (10923, 5461, 7)
        );
    }

    #[test]
    fn cluster_nodes_healthy() {
        let nodes = parse_nodes(&fixture("cluster-nodes-ok.txt")).unwrap();
        assert_eq!(nodes.len(), 6);
        let me = nodes.iter().find(|n| n.flags.myself).unwrap();
        assert_eq!(me.addr, "127.0.0.1:7200");
        assert!(me.flags.master);
        assert_eq!(me.slots, vec![(0, 5460)]);
        let replica = &nodes[0];
        assert!(replica.flags.replica && !replica.flags.master);
        assert_eq!(
            replica.master_id.as_deref(),
            Some("d22b8dd83133de16014746e49489684de34ef3c8")
        );
        let total: u32 = nodes
            .iter()
            .flat_map(|n| &n.slots)
            .map(|(a, b)| u32::from(b - a) + 1)
            .sum();
        assert_eq!(total, 16384);
    }

    #[test]
    fn cluster_nodes_with_a_failed_shard() {
        let nodes = parse_nodes(&fixture("cluster-nodes-shard-down.txt")).unwrap();
        let failed: Vec<_> = nodes
            .iter()
            .filter(|n| n.flags.fail)
            .map(|n| n.addr.as_str())
            .collect();
        assert_eq!(failed, ["127.0.0.1:7202", "127.0.0.1:7205"]);
        assert_eq!(nodes[0].config_epoch, 7);
    }

    #[test]
    fn every_view_of_the_recorded_failover_parses() {
        let text = fixture("cluster-failover-sequence.txt");
        let mut saw_pfail = false;
        for view in text.split("### ").skip(1) {
            let nodes_text: String = view
                .lines()
                .skip(1)
                .filter(|l| !l.starts_with("cluster_"))
                .map(|l| format!("{l}\n"))
                .collect();
            let nodes = parse_nodes(&nodes_text).unwrap();
            assert_eq!(nodes.len(), 6);
            saw_pfail |= nodes.iter().any(|n| n.flags.pfail);
        }
        assert!(saw_pfail);
    }

    #[test]
    fn cluster_replies_of_redis_6_2_and_valkey_8_1() {
        for version in RECORDED_VERSIONS {
            let read = |name: &str| fixture(&format!("{version}/{name}"));
            // Redis 6.2 has no `total_cluster_links_buffer_limit_exceeded`, which
            // the agent does not read.
            assert_eq!(
                ClusterInfo::parse(&read("cluster-info-ok.txt")),
                Ok(healthy_info()),
                "{version}"
            );
            let down = ClusterInfo::parse(&read("cluster-info-shard-down.txt")).unwrap();
            assert_eq!(
                (down.state_ok, down.slots_ok, down.slots_fail),
                (false, 10923, 5461),
                "{version}"
            );

            let nodes = parse_nodes(&read("cluster-nodes-ok.txt")).unwrap();
            let mut seen: Vec<_> = nodes
                .iter()
                .map(|n| (n.addr.as_str(), n.flags.master, n.slots.clone()))
                .collect();
            seen.sort();
            assert_eq!(
                seen,
                [
                    ("127.0.0.1:7200", true, vec![(0, 5460)]),
                    ("127.0.0.1:7201", true, vec![(5461, 10922)]),
                    ("127.0.0.1:7202", true, vec![(10923, 16383)]),
                    ("127.0.0.1:7203", false, vec![]),
                    ("127.0.0.1:7204", false, vec![]),
                    ("127.0.0.1:7205", false, vec![]),
                ],
                "{version}"
            );
            let me = nodes.iter().find(|n| n.flags.myself).unwrap();
            assert_eq!(me.addr, "127.0.0.1:7200", "{version}");
            for n in &nodes {
                assert!(n.is_member() && n.connected, "{version}: {n:?}");
                assert_eq!((&n.hostname, &n.shard_id), (&None, &None), "{version}");
                let master = nodes.iter().find(|m| Some(&m.id) == n.master_id.as_ref());
                assert_eq!(
                    n.flags.replica,
                    master.is_some_and(|m| m.flags.master),
                    "{version}: {n:?}"
                );
            }

            let down = parse_nodes(&read("cluster-nodes-shard-down.txt")).unwrap();
            let mut failed: Vec<_> = down
                .iter()
                .filter(|n| n.flags.fail)
                .map(|n| (n.addr.as_str(), n.connected))
                .collect();
            failed.sort();
            assert_eq!(
                failed,
                [("127.0.0.1:7202", false), ("127.0.0.1:7204", false)],
                "{version}"
            );
        }
    }

    #[test]
    fn valkey_announced_hostnames() {
        // `cluster-announce-hostname node-<port>.lab` on every node (Redis 6.2 has
        // no such option: its lines never carry a hostname).
        let nodes = parse_nodes(&fixture("valkey-8.1/cluster-nodes-ok-hostnames.txt")).unwrap();
        assert_eq!(nodes.len(), 6);
        for n in &nodes {
            // Followed by hostname: the address is `hostname:port`.
            let (host, port) = n.addr.split_once(':').unwrap();
            assert_eq!(host, format!("node-{port}.lab"), "{n:?}");
            assert_eq!(n.hostname.as_deref(), Some(host), "{n:?}");
            assert_eq!(n.shard_id, None);
        }
    }

    #[test]
    fn hostnames_single_slots_migrations_and_old_formats() {
        let line = "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 10.0.0.5:30001@40001,redis-1.example myself,master - 0 0 1 connected 0 2-3 [4->-292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f] [5-<-292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f]";
        let n = parse_nodes(line).unwrap().remove(0);
        assert_eq!(n.addr, "redis-1.example:30001", "followed by hostname");
        assert_eq!(n.hostname.as_deref(), Some("redis-1.example"));
        assert_eq!(n.slots, vec![(0, 0), (2, 3)]);
        assert_eq!(
            n.migrating,
            vec![(4, "292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f".to_string())]
        );
        assert_eq!(
            n.importing,
            vec![(5, "292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f".to_string())]
        );
        assert_eq!(n.shard_id, None);
        // Redis 7.2+: auxiliary fields after the hostname (which may be empty).
        let aux = "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@40001,,tls-port=0,shard-id=9d0c3e3b0a8f2b1c4e5d6f708192a3b4c5d6e7f8 master - 0 0 1 connected 0-5460";
        let n = parse_nodes(aux).unwrap().remove(0);
        assert_eq!(
            (n.addr.as_str(), n.hostname.as_deref()),
            ("127.0.0.1:30001", None)
        );
        assert_eq!(
            n.shard_id.as_deref(),
            Some("9d0c3e3b0a8f2b1c4e5d6f708192a3b4c5d6e7f8")
        );
        let old =
            "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001 master - 0 0 1 connected";
        assert_eq!(parse_nodes(old).unwrap()[0].addr, "127.0.0.1:30001");
        let noaddr =
            "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca :0@0 master,noaddr - 0 0 1 disconnected";
        assert!(!parse_nodes(noaddr).unwrap()[0].is_member());
        let handshake = "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30002@40002 handshake - 1795315037557 0 0 disconnected";
        let n = parse_nodes(handshake).unwrap().remove(0);
        assert!(n.flags.handshake && !n.is_member());
    }

    #[test]
    fn a_replica_set_not_to_fail_over_is_flagged_nofailover() {
        // Recorded after `CONFIG SET cluster-replica-no-failover yes` on
        // the replica: Redis 7.0 (its own line), Valkey 8.1 (its master's).
        let redis = "6bd9b36db8a643b3c60096c2a80eaee6bb7373e1 127.0.0.1:27012@37012 myself,slave,nofailover dcffcfdc860d0e3a211c36cbdf4323ee9b618b03 0 0 0 connected";
        let valkey = "27a2a9368f82c29475ed0128b958058eb069a9a7 127.0.0.1:27002@37002 slave,nofailover a55db39610907acb2f3259fa2011af508bda8458 0 1796032983643 0 connected";
        for line in [redis, valkey] {
            let n = parse_nodes(line).unwrap().remove(0);
            assert!(n.flags.nofailover && n.flags.replica, "{line}");
        }
        let back = "6bd9b36db8a643b3c60096c2a80eaee6bb7373e1 127.0.0.1:27012@37012 slave dcffcfdc860d0e3a211c36cbdf4323ee9b618b03 0 1796032990663 0 connected";
        assert!(!parse_nodes(back).unwrap()[0].flags.nofailover);
    }

    #[test]
    fn malformed_lines_are_errors() {
        for bad in [
            "short",
            "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001 master - 0 0 1",
            "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001 master - 0 0 1 connected 9-2",
            "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001 master - 0 0 1 connected 16384",
            "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001 myself,master - 0 0 1 connected [16384->-x]",
            "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001 myself,master - 0 0 1 connected [5=x]",
            "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:x master - 0 0 1 connected",
            "zzz 127.0.0.1:30001 master - 0 0 1 connected",
        ] {
            assert!(parse_nodes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn topology_signals_move_with_the_topology_only() {
        let ok = fixture("cluster-info-ok.txt");
        let chatter = ok.replace(
            "cluster_stats_messages_ping_sent:",
            "cluster_stats_messages_ping_sent:9",
        );
        assert_eq!(info_signals(&ok), info_signals(&chatter));
        let down = fixture("cluster-info-shard-down.txt");
        assert_ne!(info_signals(&ok), info_signals(&down));
        let epoch = ok.replace("cluster_my_epoch:", "cluster_my_epoch:9");
        assert_ne!(info_signals(&ok), info_signals(&epoch));
        let newer = format!("{ok}cluster_nodes_pfail:1\r\n");
        assert_ne!(info_signals(&ok), info_signals(&newer));
    }

    #[test]
    fn replies_that_parse_alike_have_one_digest() {
        let view = fixture("cluster-nodes-ok.txt");
        let later = view
            .replace(" 1795", " 1796")
            .replace("connected", "disconnected");
        assert_eq!(reply_digest(&view), reply_digest(&later));
        let flag = view.replacen("slave", "slave,fail?", 1);
        assert_ne!(reply_digest(&view), reply_digest(&flag));
        let epoch = view.replacen(" 2 connected", " 9 connected", 1);
        assert_ne!(reply_digest(&view), reply_digest(&epoch));
        let fewer: String = view.lines().skip(1).map(|l| format!("{l}\n")).collect();
        assert_ne!(reply_digest(&view), reply_digest(&fewer));
    }

    #[test]
    fn views_that_say_the_same_have_one_digest() {
        let view = fixture("cluster-nodes-ok.txt");
        let lines = parse_nodes(&view).unwrap();
        // Another node's view: its own line is `myself`, the order differs,
        // ping and pong times moved on.
        let other: Vec<&str> = view.lines().rev().collect();
        let other = other
            .join("\n")
            .replacen("myself,", "", 1)
            .replace(" 1795", " 1796");
        let mut other = parse_nodes(&other).unwrap();
        other[0].flags.myself = true;
        assert_eq!(view_digest(&lines), view_digest(&other));
        // A flag, an epoch, a slot or a lost line changes it.
        let mut changed = lines.clone();
        changed[1].flags.pfail = true;
        assert_ne!(view_digest(&lines), view_digest(&changed));
        let mut changed = lines.clone();
        changed[2].config_epoch += 1;
        assert_ne!(view_digest(&lines), view_digest(&changed));
        let mut changed = lines.clone();
        if let Some(r) = changed.iter_mut().find_map(|l| l.slots.first_mut()) {
            r.1 -= 1;
        }
        assert_ne!(view_digest(&lines), view_digest(&changed));
        assert_ne!(view_digest(&lines), view_digest(&lines[1..]));
    }
}
