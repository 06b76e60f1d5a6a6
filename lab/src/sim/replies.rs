//! Reply texts, in Redis 7.0.15's shapes: `CLUSTER NODES`, `CLUSTER INFO`
//! and the `INFO` sections (recorded references: `tests/fixtures/*.txt`).
//!
//! `CLUSTER NODES` is the big one (about 110 bytes a node, so 110 KB at 1000
//! nodes, on every poll of every node): each view's lines are rendered once
//! into [`NodesText`], without the ping and pong times, and a reply copies
//! them, writing only the times (which differ per viewer and move) and the
//! answering node's own line.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::server::NodeIo;
use super::topology::{Health, Line, Role, SlotRange, View};
use super::world::{mix, Message, World, REPLICA_DELAY, REPL_TIMEOUT};
use super::Identity;

/// The version the replies imitate.
const REDIS_VERSION: &str = "7.0.15";

/// `master_replid2` of a master that continues no other stream.
const NO_REPLID: &str = "0000000000000000000000000000000000000000";

/// Redis's default `repl-backlog-size`.
const BACKLOG: u64 = 1_048_576;

/// Cluster bus ports are the client port + 10000.
const BUS_OFFSET: u32 = 10_000;

/// Replicas acknowledge their offset to the master once a second.
const ACK_PERIOD_MS: u64 = 1000;

/// Masters ping their replicas every 10 s (`repl-ping-replica-period`):
/// without writes, that is all a replica hears.
const MASTER_PING_PERIOD_S: u64 = 10;

/// Wall-clock milliseconds for an `Instant`, without the world's lock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WallClock {
    start: Instant,
    start_ms: u64,
}

impl WallClock {
    pub(crate) fn new(start: Instant, start_ms: u64) -> WallClock {
        WallClock { start, start_ms }
    }

    pub(crate) fn ms(&self, t: Instant) -> u64 {
        let since = t.saturating_duration_since(self.start).as_millis();
        self.start_ms
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
    }
}

/// One view's `CLUSTER NODES` lines without their times: for line `i`,
/// `text[heads[i]..tails[i]]` is everything before the ping time (ending in
/// a space) and `text[tails[i]..heads[i + 1]]` everything after the pong
/// time (starting with a space, ending with the newline).
#[derive(Debug)]
pub(crate) struct NodesText {
    text: Vec<u8>,
    heads: Vec<usize>,
    tails: Vec<usize>,
}

impl NodesText {
    fn build(view: &View, ident: &Identity) -> NodesText {
        let mut text = String::with_capacity(view.lines.len() * 120);
        let mut heads = Vec::with_capacity(view.lines.len() + 1);
        let mut tails = Vec::with_capacity(view.lines.len());
        for node in 0..view.lines.len() {
            heads.push(text.len());
            line_head(&mut text, view, node, ident, false);
            tails.push(text.len());
            line_tail(&mut text, view, node);
            text.push('\n');
        }
        heads.push(text.len());
        NodesText {
            text: text.into_bytes(),
            heads,
            tails,
        }
    }
}

/// `<id> <ip:port@cport> <flags> <master|-> `
fn line_head(out: &mut String, view: &View, node: usize, ident: &Identity, myself: bool) {
    let line: &Line = &view.lines[node];
    let port = ident.ports[node];
    let _ = write!(
        out,
        "{} 127.0.0.1:{port}@{} ",
        ident.ids[node],
        u32::from(port) + BUS_OFFSET
    );
    if myself {
        out.push_str("myself,");
    }
    out.push_str(match line.role {
        Role::Master => "master",
        Role::Replica { .. } => "slave",
    });
    // A node never flags itself.
    match (line.health, myself) {
        (Health::Pfail, false) => out.push_str(",fail?"),
        (Health::Fail, false) => out.push_str(",fail"),
        _ => {}
    }
    match line.role {
        Role::Master => out.push_str(" - "),
        Role::Replica { of } => {
            out.push(' ');
            out.push_str(&ident.ids[of]);
            out.push(' ');
        }
    }
}

/// ` <config-epoch> connected[ <slots>...]`, without the newline.
fn line_tail(out: &mut String, view: &View, node: usize) {
    let _ = write!(out, " {} connected", view.shown_epoch(node));
    for &(a, b) in view.lines[node].slots.iter() {
        push_range(out, (a, b));
    }
}

fn push_range(out: &mut String, (a, b): SlotRange) {
    let _ = if a == b {
        write!(out, " {a}")
    } else {
        write!(out, " {a}-{b}")
    };
}

/// Everything a `CLUSTER NODES` reply needs, taken under the world's lock
/// and rendered after it is released.
#[derive(Debug)]
pub(crate) struct NodesJob {
    view: Arc<View>,
    frozen: Arc<[Option<Instant>]>,
    own: usize,
    own_line: String,
    now_ms: u64,
    period_ms: u64,
    clock: WallClock,
}

impl NodesJob {
    pub(crate) fn new(
        world: &World,
        view: Arc<View>,
        node: usize,
        now: Instant,
        ident: &Identity,
    ) -> NodesJob {
        let clock = world.wall_clock();
        let now_ms = clock.ms(now);
        let mut own_line = String::with_capacity(160);
        line_head(&mut own_line, &view, node, ident, true);
        let _ = write!(own_line, "0 {}", now_ms / 1000 * 1000);
        line_tail(&mut own_line, &view, node);
        // Open slots show only on the nodes doing the migration.
        for m in world.migrations().iter().filter(|m| m.from == node) {
            let _ = write!(own_line, " [{}->-{}]", m.slot, ident.ids[m.to]);
        }
        for m in world.migrations().iter().filter(|m| m.to == node) {
            let _ = write!(own_line, " [{}-<-{}]", m.slot, ident.ids[m.from]);
        }
        own_line.push('\n');
        NodesJob {
            view,
            frozen: world.frozen().clone(),
            own: node,
            own_line,
            now_ms,
            period_ms: ping_period_ms(world.shape.node_timeout),
            clock,
        }
    }

    /// Appends the reply's text (the bulk string's content) to `out`.
    pub(crate) fn render(&self, ident: &Identity, out: &mut Vec<u8>) {
        let t = self
            .view
            .nodes_text
            .get_or_init(|| NodesText::build(&self.view, ident));
        out.reserve(t.text.len() + self.own_line.len() + 28 * t.tails.len());
        for node in 0..t.tails.len() {
            if node == self.own {
                out.extend_from_slice(self.own_line.as_bytes());
                continue;
            }
            out.extend_from_slice(&t.text[t.heads[node]..t.tails[node]]);
            let (ping, pong) = self.times(node);
            push_u64(out, ping);
            out.push(b' ');
            push_u64(out, pong);
            out.extend_from_slice(&t.text[t.tails[node]..t.heads[node + 1]]);
        }
    }

    /// The ping-sent and pong-received times the answering node shows for
    /// a peer: a pong at most one ping period old, at a moment of its own
    /// for each pair; for a frozen peer, the last pong before it froze and
    /// the unanswered ping sent after it.
    fn times(&self, peer: usize) -> (u64, u64) {
        let period = self.period_ms;
        let phase = mix(((self.own as u64) << 32) ^ peer as u64) % period;
        let last_pong = |t: u64| t - (t + phase) % period;
        match self.frozen.get(peer).copied().flatten() {
            None => (0, last_pong(self.now_ms)),
            Some(since) => {
                let pong = last_pong(self.clock.ms(since));
                let ping = pong + period;
                (if ping <= self.now_ms { ping } else { 0 }, pong)
            }
        }
    }
}

/// Redis pings every peer whose last pong is older than half the node
/// timeout, so that is how old a healthy peer's pong gets.
fn ping_period_ms(node_timeout: Duration) -> u64 {
    u64::try_from(node_timeout.as_millis() / 2)
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Appends a number's decimal digits.
pub(crate) fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// The `INFO` sections served, in the order Redis prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Server,
    Clients,
    Stats,
    Replication,
    Cluster,
    Keyspace,
}

const SECTIONS: [(Section, &str); 6] = [
    (Section::Server, "server"),
    (Section::Clients, "clients"),
    (Section::Stats, "stats"),
    (Section::Replication, "replication"),
    (Section::Cluster, "cluster"),
    (Section::Keyspace, "keyspace"),
];

/// One node's small replies, rendered under the world's lock (they are a
/// few hundred bytes).
pub(crate) struct NodeReplies<'a> {
    pub world: &'a World,
    pub view: &'a View,
    pub node: usize,
    pub now: Instant,
    pub ident: &'a Identity,
    pub io: &'a NodeIo,
}

impl NodeReplies<'_> {
    /// `INFO [section ...]`: no argument, `default`, `all` and `everything`
    /// give every section served; unknown sections give nothing, as in Redis.
    pub(crate) fn info(&self, args: &[&[u8]]) -> String {
        let wanted = |name: &str| {
            args.is_empty()
                || args.iter().any(|a| {
                    a.eq_ignore_ascii_case(name.as_bytes())
                        || [&b"default"[..], b"all", b"everything"]
                            .iter()
                            .any(|w| a.eq_ignore_ascii_case(w))
                })
        };
        let mut out = String::with_capacity(1024);
        for (section, name) in SECTIONS {
            if !wanted(name) {
                continue;
            }
            if !out.is_empty() {
                out.push_str("\r\n");
            }
            match section {
                Section::Server => self.server(&mut out),
                Section::Clients => self.clients(&mut out),
                Section::Stats => self.stats(&mut out),
                Section::Replication => self.replication(&mut out),
                Section::Cluster => out.push_str("# Cluster\r\ncluster_enabled:1\r\n"),
                Section::Keyspace => out.push_str("# Keyspace\r\n"),
            }
        }
        out
    }

    fn server(&self, out: &mut String) {
        let uptime = self.world.uptime(self.now).as_secs();
        let now_ms = self.world.wall_clock().ms(self.now);
        let executable = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let _ = write!(
            out,
            "# Server\r\n\
             redis_version:{REDIS_VERSION}\r\n\
             redis_git_sha1:00000000\r\n\
             redis_git_dirty:0\r\n\
             redis_build_id:0\r\n\
             redis_mode:cluster\r\n\
             os:Linux {arch}\r\n\
             arch_bits:64\r\n\
             monotonic_clock:POSIX clock_gettime\r\n\
             multiplexing_api:epoll\r\n\
             atomicvar_api:c11-builtin\r\n\
             gcc_version:0.0.0\r\n\
             process_id:{pid}\r\n\
             process_supervised:no\r\n\
             run_id:{run_id}\r\n\
             tcp_port:{port}\r\n\
             server_time_usec:{usec}\r\n\
             uptime_in_seconds:{uptime}\r\n\
             uptime_in_days:{days}\r\n\
             hz:10\r\n\
             configured_hz:10\r\n\
             lru_clock:{lru}\r\n\
             executable:{executable}\r\n\
             config_file:\r\n\
             io_threads_active:0\r\n",
            arch = std::env::consts::ARCH,
            pid = std::process::id(),
            run_id = self.ident.run_ids[self.node],
            port = self.ident.ports[self.node],
            usec = now_ms.saturating_mul(1000),
            days = uptime / 86_400,
            lru = (now_ms / 1000) & ((1 << 24) - 1),
        );
    }

    fn clients(&self, out: &mut String) {
        let _ = write!(
            out,
            "# Clients\r\n\
             connected_clients:{}\r\n\
             cluster_connections:{}\r\n\
             maxclients:10000\r\n\
             client_recent_max_input_buffer:0\r\n\
             client_recent_max_output_buffer:0\r\n\
             blocked_clients:0\r\n\
             tracking_clients:0\r\n\
             clients_in_timeout_table:0\r\n",
            self.io.open.load(Ordering::Relaxed),
            2 * (self.world.len() - 1),
        );
    }

    fn stats(&self, out: &mut String) {
        let io = self.io;
        let _ = write!(
            out,
            "# Stats\r\n\
             total_connections_received:{}\r\n\
             total_commands_processed:{}\r\n\
             instantaneous_ops_per_sec:0\r\n\
             total_net_input_bytes:{}\r\n\
             total_net_output_bytes:{}\r\n",
            io.connections.load(Ordering::Relaxed),
            io.commands.load(Ordering::Relaxed),
            io.net_in.load(Ordering::Relaxed),
            io.net_out.load(Ordering::Relaxed),
        );
        out.push_str(
            "total_net_repl_input_bytes:0\r\n\
             total_net_repl_output_bytes:0\r\n\
             instantaneous_input_kbps:0.00\r\n\
             instantaneous_output_kbps:0.00\r\n\
             instantaneous_input_repl_kbps:0.00\r\n\
             instantaneous_output_repl_kbps:0.00\r\n\
             rejected_connections:0\r\n\
             sync_full:0\r\n\
             sync_partial_ok:0\r\n\
             sync_partial_err:0\r\n\
             expired_keys:0\r\n\
             expired_stale_perc:0.00\r\n\
             expired_time_cap_reached_count:0\r\n\
             expire_cycle_cpu_milliseconds:0\r\n\
             evicted_keys:0\r\n\
             evicted_clients:0\r\n\
             total_eviction_exceeded_time:0\r\n\
             current_eviction_exceeded_time:0\r\n\
             keyspace_hits:0\r\n\
             keyspace_misses:0\r\n\
             pubsub_channels:0\r\n\
             pubsub_patterns:0\r\n\
             pubsubshard_channels:0\r\n\
             latest_fork_usec:0\r\n\
             total_forks:0\r\n\
             migrate_cached_sockets:0\r\n\
             slave_expires_tracked_keys:0\r\n\
             active_defrag_hits:0\r\n\
             active_defrag_misses:0\r\n\
             active_defrag_key_hits:0\r\n\
             active_defrag_key_misses:0\r\n\
             total_active_defrag_time:0\r\n\
             current_active_defrag_time:0\r\n\
             tracking_total_keys:0\r\n\
             tracking_total_items:0\r\n\
             tracking_total_prefixes:0\r\n\
             unexpected_error_replies:0\r\n\
             total_error_replies:0\r\n\
             dump_payload_sanitizations:0\r\n\
             total_reads_processed:0\r\n\
             total_writes_processed:0\r\n\
             io_threaded_reads_processed:0\r\n\
             io_threaded_writes_processed:0\r\n\
             reply_buffer_shrinks:0\r\n\
             reply_buffer_expands:0\r\n",
        );
    }

    /// `INFO replication`, from the node's own view of its role: a master
    /// lists the replicas its view attaches to it (a frozen one with its
    /// offset stopped and its ack ageing), a replica follows its master's
    /// stream closely and reports the link down once the master has been
    /// silent for `repl-timeout`.
    fn replication(&self, out: &mut String) {
        let world = self.world;
        let rate = world.shape.write_rate;
        let clock = world.wall_clock();
        let now_ms = clock.ms(self.now);
        out.push_str("# Replication\r\n");
        let offset = match self.view.lines[self.node].role {
            Role::Master => {
                let offset = world.clock(self.node).at(self.now, rate);
                let replicas: Vec<usize> = self.view.replicas_of(self.node).collect();
                let _ = write!(
                    out,
                    "role:master\r\nconnected_slaves:{}\r\n",
                    replicas.len()
                );
                for (i, &r) in replicas.iter().enumerate() {
                    let (acked, lag) = match world.frozen()[r] {
                        Some(since) => (
                            world.clock(self.node).at(since, rate),
                            now_ms.saturating_sub(clock.ms(since)) / 1000,
                        ),
                        None => {
                            let age = (now_ms + mix(r as u64)) % ACK_PERIOD_MS;
                            let at = self
                                .now
                                .checked_sub(Duration::from_millis(age))
                                .unwrap_or(self.now);
                            let lag = now_ms / 1000 - (now_ms - age) / 1000;
                            (world.clock(self.node).at(at, rate), lag)
                        }
                    };
                    let _ = write!(
                        out,
                        "slave{i}:ip=127.0.0.1,port={},state=online,offset={acked},lag={lag}\r\n",
                        self.ident.ports[r]
                    );
                }
                let ids = world.replids(self.node);
                let (id2, second) = match &ids.previous {
                    Some((id, at)) => (id.as_str(), at.to_string()),
                    None => (NO_REPLID, "-1".to_string()),
                };
                let _ = write!(
                    out,
                    "master_failover_state:no-failover\r\n\
                     master_replid:{}\r\n\
                     master_replid2:{id2}\r\n\
                     master_repl_offset:{offset}\r\n\
                     second_repl_offset:{second}\r\n",
                    ids.id
                );
                offset
            }
            Role::Replica { of } => {
                let offset = world.clock(of).at(
                    self.now.checked_sub(REPLICA_DELAY).unwrap_or(self.now),
                    rate,
                );
                let silent =
                    world.frozen()[of].map(|since| self.now.saturating_duration_since(since));
                let down = silent.filter(|s| *s > REPL_TIMEOUT);
                let last_io = match (silent, down) {
                    (_, Some(_)) => -1,
                    (Some(s), None) => s.as_secs() as i64,
                    (None, None) if rate > 0 => 0,
                    (None, None) => ((now_ms / 1000) % MASTER_PING_PERIOD_S) as i64,
                };
                let _ = write!(
                    out,
                    "role:slave\r\n\
                     master_host:127.0.0.1\r\n\
                     master_port:{}\r\n\
                     master_link_status:{}\r\n\
                     master_last_io_seconds_ago:{last_io}\r\n\
                     master_sync_in_progress:0\r\n\
                     slave_read_repl_offset:{offset}\r\n\
                     slave_repl_offset:{offset}\r\n",
                    self.ident.ports[of],
                    if down.is_some() { "down" } else { "up" },
                );
                if let Some(down) = down {
                    let _ = write!(
                        out,
                        "master_link_down_since_seconds:{}\r\n",
                        (down - REPL_TIMEOUT).as_secs()
                    );
                }
                let _ = write!(
                    out,
                    "slave_priority:100\r\n\
                     slave_read_only:1\r\n\
                     replica_announced:1\r\n\
                     connected_slaves:0\r\n\
                     master_failover_state:no-failover\r\n\
                     master_replid:{}\r\n\
                     master_replid2:{NO_REPLID}\r\n\
                     master_repl_offset:{offset}\r\n\
                     second_repl_offset:-1\r\n",
                    world.replids(of).id
                );
                offset
            }
        };
        let histlen = offset.min(BACKLOG);
        let _ = write!(
            out,
            "repl_backlog_active:1\r\n\
             repl_backlog_size:{BACKLOG}\r\n\
             repl_backlog_first_byte_offset:{}\r\n\
             repl_backlog_histlen:{histlen}\r\n",
            offset - histlen + 1
        );
    }

    /// `CLUSTER INFO`: the view's slot counts and epochs, and bus message
    /// counts: pings and pongs at the pace Redis sends them (every peer
    /// about every half node timeout), one MEET from each node to the
    /// seed, and what failures and rejoins sent.
    pub(crate) fn cluster_info(&self) -> String {
        let world = self.world;
        let s = self.view.summary;
        let mut out = String::with_capacity(1024);
        let _ = write!(
            out,
            "cluster_state:{}\r\n\
             cluster_slots_assigned:{}\r\n\
             cluster_slots_ok:{}\r\n\
             cluster_slots_pfail:{}\r\n\
             cluster_slots_fail:{}\r\n\
             cluster_known_nodes:{}\r\n\
             cluster_size:{}\r\n\
             cluster_current_epoch:{}\r\n\
             cluster_my_epoch:{}\r\n",
            if s.state_ok() { "ok" } else { "fail" },
            s.assigned,
            s.ok,
            s.pfail,
            s.fail,
            world.len(),
            s.size,
            self.view.current_epoch,
            self.view.shown_epoch(self.node),
        );
        let peers = world.len() as u64 - 1;
        let uptime_ms = u64::try_from(world.uptime(self.now).as_millis()).unwrap_or(u64::MAX);
        let pings = uptime_ms.saturating_mul(peers) / ping_period_ms(world.shape.node_timeout);
        let salt = mix(self.node as u64);
        let ping_sent = pings + salt % 7;
        let ping_received = pings + (salt >> 8) % 7;
        let (meet_sent, meet_received) = match (self.node, peers) {
            (_, 0) => (0, 0),
            (0, _) => (0, peers),
            _ => (1, 0),
        };
        let m = world.messages(self.node);
        let sent = [
            ("ping", ping_sent),
            ("pong", ping_received),
            ("meet", meet_sent),
        ];
        let received = [
            ("ping", ping_received),
            ("pong", ping_sent.saturating_sub((salt >> 16) % 3)),
            ("meet", meet_received),
        ];
        for (direction, counts, bus) in [("sent", sent, m.sent), ("received", received, m.received)]
        {
            let bus = Message::ALL.iter().map(|&t| (t.name(), bus[t as usize]));
            let mut total = 0;
            for (name, n) in counts.into_iter().chain(bus).filter(|(_, n)| *n > 0) {
                total += n;
                let _ = write!(out, "cluster_stats_messages_{name}_{direction}:{n}\r\n");
            }
            let _ = write!(out, "cluster_stats_messages_{direction}:{total}\r\n");
        }
        out.push_str("total_cluster_links_buffer_limit_exceeded:0\r\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_render_as_decimal() {
        for n in [0, 7, 10, 1_795_315_033_618, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }

    #[test]
    fn ping_period_is_half_the_node_timeout() {
        assert_eq!(ping_period_ms(Duration::from_secs(1)), 500);
        assert_eq!(ping_period_ms(Duration::from_secs(15)), 7500);
        assert_eq!(ping_period_ms(Duration::ZERO), 1);
    }
}
