//! The lab's simulated cluster against a real one of the same shape: the
//! agent's parsers must read every reply of both, and its monitor must
//! derive the same views from both (after naming nodes by role instead of
//! by id and port), healthy, with a slot migrating, after a master fails
//! over, and after the old master comes back. Benchmarks at 1000 nodes run
//! on the simulator; this is what makes their numbers mean something.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime};

use redis_ha_exporter::config;
use redis_ha_exporter::model::settings::Param;
use redis_ha_exporter::model::snapshot::{DeploymentView, OpenState, SlotState};
use redis_ha_exporter::model::{
    ClusterReading, Input, NodeReading, Observation, PollError, Reading, TargetId, TargetKind,
};
use redis_ha_exporter::monitor::Monitor;
use redis_ha_exporter::parse::cluster::{parse_nodes, ClusterInfo};
use redis_ha_exporter::parse::info::{ReplicationInfo, Role};
use redis_ha_lab::{Cluster, ClusterOpts, LabError, Reply, SimCluster, SimOpts};

const MASTERS: usize = 3;
const REPLICAS: usize = 1;

/// The shard that fails over, and the slot that migrates.
const FAILING_SHARD: usize = 1;
const MIGRATING_SLOT: u16 = 100;

/// How long a failover or a rejoin may take to settle in every view.
const SETTLE: Duration = Duration::from_secs(20);

/// A cluster the test polls, real or simulated, numbered alike: masters
/// `0..MASTERS` in slot order, then their replicas.
trait Nodes {
    fn count(&self) -> usize;
    fn port(&self, i: usize) -> u16;
    fn id(&self, i: usize) -> String;
    fn cmd(&self, i: usize, args: &[&str]) -> Result<Reply, LabError>;
    fn frozen(&self, i: usize) -> bool;
    fn open_migration(&self, slot: u16, from: usize, to: usize);
    fn close_migration(&self, slot: u16, from: usize, to: usize);
}

impl Nodes for Cluster {
    fn count(&self) -> usize {
        self.nodes.len()
    }
    fn port(&self, i: usize) -> u16 {
        self.nodes[i].port()
    }
    fn id(&self, i: usize) -> String {
        self.node_id(self.port(i))
    }
    fn cmd(&self, i: usize, args: &[&str]) -> Result<Reply, LabError> {
        self.nodes[i].cmd(args)
    }
    fn frozen(&self, i: usize) -> bool {
        self.nodes[i].is_frozen()
    }
    fn open_migration(&self, slot: u16, from: usize, to: usize) {
        let slot = slot.to_string();
        let (from_id, to_id) = (self.id(from), self.id(to));
        ok(self.cmd(to, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]));
        ok(self.cmd(from, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]));
    }
    fn close_migration(&self, slot: u16, from: usize, to: usize) {
        for node in [from, to] {
            ok(self.cmd(node, &["CLUSTER", "SETSLOT", &slot.to_string(), "STABLE"]));
        }
    }
}

impl Nodes for SimCluster {
    fn count(&self) -> usize {
        self.node_addrs().len()
    }
    fn port(&self, i: usize) -> u16 {
        port_of(&self.node_addrs()[i])
    }
    fn id(&self, i: usize) -> String {
        self.nodes()[i].id.clone()
    }
    fn cmd(&self, i: usize, args: &[&str]) -> Result<Reply, LabError> {
        SimCluster::cmd(self, i, args)
    }
    fn frozen(&self, i: usize) -> bool {
        self.is_frozen(i).expect("a node of the cluster")
    }
    fn open_migration(&self, slot: u16, from: usize, to: usize) {
        SimCluster::open_migration(self, slot, from, to).expect("migration opens");
    }
    fn close_migration(&self, slot: u16, _: usize, _: usize) {
        SimCluster::close_migration(self, slot).expect("migration closes");
    }
}

fn ok(reply: Result<Reply, LabError>) {
    if let Err(e) = reply {
        panic!("{e}");
    }
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .expect("host:port")
}

fn text(reply: Result<Reply, LabError>, what: &str) -> String {
    match reply {
        Ok(Reply::Str(text)) => text,
        other => panic!("{what}: {other:?}"),
    }
}

/// What every answering node said in one round, as text.
#[derive(Debug, Default)]
struct Round {
    cluster_info: Vec<String>,
    /// (role, reply)
    replication: Vec<(Role, String)>,
}

/// One side of the comparison: a cluster, the agent's monitor fed with its
/// polls, and the names that make its views comparable.
struct Side<'a> {
    name: &'static str,
    nodes: &'a dyn Nodes,
    monitor: Monitor,
    /// `127.0.0.1:<port>` → `m<shard>` / `r<shard>.<i>`, and a shard's name
    /// in the views (the smallest id of its members, cut to 12) → `s<shard>`.
    names: HashMap<String, String>,
}

impl<'a> Side<'a> {
    fn new(name: &'static str, nodes: &'a dyn Nodes) -> Side<'a> {
        assert_eq!(nodes.count(), MASTERS * (1 + REPLICAS), "{name}: shape");
        let mut names = HashMap::new();
        for i in 0..nodes.count() {
            let label = if i < MASTERS {
                let members = MASTERS + i * REPLICAS..MASTERS + (i + 1) * REPLICAS;
                let id = members.map(|r| nodes.id(r)).fold(nodes.id(i), Ord::min);
                names.insert(id[..12].to_string(), format!("s{i}"));
                format!("m{i}")
            } else {
                let shard = (i - MASTERS) / REPLICAS;
                let k = i - MASTERS - shard * REPLICAS;
                format!("r{shard}.{k}")
            };
            names.insert(format!("127.0.0.1:{}", nodes.port(i)), label);
        }
        let yaml = format!(
            "deployments:\n  - name: c\n    kind: cluster\n    seeds: [\"127.0.0.1:{}\"]\n",
            nodes.port(0)
        );
        let config = config::parse(&yaml, "test").expect("valid config");
        Side {
            name,
            nodes,
            monitor: Monitor::new(&config, Vec::new(), Vec::new()),
            names,
        }
    }

    /// Polls every node once, as the agent does (a frozen node as a poll
    /// that timed out), feeds the monitor one batch, and returns the texts.
    fn poll(&mut self) -> Round {
        let mut round = Round::default();
        let mut inputs = Vec::new();
        for i in 0..self.nodes.count() {
            let started = Instant::now();
            let result = if self.nodes.frozen(i) {
                Err(PollError::Timeout)
            } else {
                Ok(self.read(i, &mut round))
            };
            inputs.push(Input::Poll(Observation {
                target: TargetId {
                    deployment: "c".into(),
                    kind: TargetKind::Node,
                    addr: format!("127.0.0.1:{}", self.nodes.port(i)),
                },
                at: SystemTime::now(),
                seen: Instant::now(),
                duration: started.elapsed(),
                result,
            }));
        }
        self.monitor.apply_all(inputs);
        round
    }

    /// One node's poll; every reply must parse with the agent's parsers.
    fn read(&self, i: usize, round: &mut Round) -> Reading {
        let what = |cmd: &str| format!("{} node {i}: {cmd}", self.name);
        let repl_text = text(self.nodes.cmd(i, &["INFO", "replication"]), &what("INFO"));
        let info_text = text(
            self.nodes.cmd(i, &["CLUSTER", "INFO"]),
            &what("CLUSTER INFO"),
        );
        let nodes_text = text(
            self.nodes.cmd(i, &["CLUSTER", "NODES"]),
            &what("CLUSTER NODES"),
        );
        let replication = ReplicationInfo::parse(&repl_text)
            .unwrap_or_else(|e| panic!("{}: {e}\n{repl_text}", what("INFO replication")));
        let info = ClusterInfo::parse(&info_text)
            .unwrap_or_else(|e| panic!("{}: {e}\n{info_text}", what("CLUSTER INFO")));
        let lines = parse_nodes(&nodes_text)
            .unwrap_or_else(|e| panic!("{}: {e}\n{nodes_text}", what("CLUSTER NODES")));
        round.replication.push((replication.role, repl_text));
        round.cluster_info.push(info_text);
        Reading::Node(NodeReading {
            replication,
            cluster: Some(ClusterReading::from_lines(info, lines)),
            changes: None,
            settings: None,
            slot_stats: None,
        })
    }

    fn view(&self) -> DeploymentView {
        (*self.monitor.snapshot().deployments[0]).clone()
    }

    /// Polls until `done` holds for the normalised view; panics with the
    /// last one after `timeout`.
    fn poll_until(&mut self, what: &str, timeout: Duration, done: impl Fn(&Norm) -> bool) -> Round {
        let start = Instant::now();
        loop {
            let round = self.poll();
            let norm = self.norm();
            if done(&norm) {
                return round;
            }
            assert!(
                start.elapsed() < timeout,
                "{}: no {what} within {timeout:?}; last view:\n{norm:#?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn name_of(&self, raw: &str) -> String {
        self.names
            .get(raw)
            .cloned()
            .unwrap_or_else(|| format!("unknown {raw}"))
    }

    fn norm(&self) -> Norm {
        normalise(&self.view(), &|raw| self.name_of(raw))
    }
}

/// The parts of a deployment view that must match, with nodes and shards
/// named by role. Left out: offsets, lags and times (the simulator writes
/// at its own rate), the current epoch (a real cluster's depends on how
/// its nodes resolved their initial epoch collisions; its bump through a
/// failover is compared instead) and whether a failover machine is still
/// open (it follows the moments the polls happened to see).
#[derive(Debug, Clone, PartialEq)]
struct Norm {
    /// (node, polled, up)
    targets: Vec<(String, bool, bool)>,
    shards: Vec<NormShard>,
    state_ok: bool,
    majority: Option<ClusterInfo>,
    /// (node, views flagging it `fail?`, some view flags it `fail`)
    failing: Vec<(String, u32, bool)>,
    ranges: Vec<NormRange>,
    uncovered: u32,
    shard_slots: Vec<(String, u32)>,
    config_views: u32,
    divergences: Vec<NormDivergence>,
    /// (node, slot, state, peer), on masters
    open: Vec<(String, u16, OpenState, String)>,
    shards_without_replica: u32,
    shards_same_host: u32,
}

/// (first, last, state, shard, master)
type NormRange = (u16, u16, SlotState, Option<String>, Option<String>);

/// (node, first, last, the master it says, the master most say)
type NormDivergence = (String, u16, u16, Option<String>, Option<String>);

#[derive(Debug, Clone, PartialEq)]
struct NormShard {
    name: String,
    master: Option<String>,
    masters: u32,
    replicas_healthy: u32,
    /// (node, role, link up)
    nodes: Vec<(String, Option<Role>, Option<bool>)>,
}

fn normalise(view: &DeploymentView, name: &dyn Fn(&str) -> String) -> Norm {
    let opt = |s: &Option<String>| s.as_deref().map(name);
    let mut targets: Vec<_> = view
        .targets
        .iter()
        .map(|t| (name(&t.id.addr), t.polled, t.up))
        .collect();
    targets.sort_by(|a, b| a.0.cmp(&b.0));
    let mut shards: Vec<NormShard> = view
        .shards
        .iter()
        .map(|s| {
            let mut nodes: Vec<_> = s
                .nodes
                .iter()
                .map(|n| {
                    let link = n
                        .replica
                        .as_ref()
                        .and_then(|r| r.link.as_ref())
                        .map(|l| l.up);
                    (name(&n.addr), n.role, link)
                })
                .collect();
            nodes.sort_by(|a, b| a.0.cmp(&b.0));
            NormShard {
                name: name(&s.name),
                master: opt(&s.master),
                masters: s.masters,
                replicas_healthy: s.replicas_healthy,
                nodes,
            }
        })
        .collect();
    shards.sort_by(|a, b| a.name.cmp(&b.name));
    let cluster = view.cluster.as_ref().expect("a cluster view");
    let mut failing: Vec<_> = cluster
        .failing
        .iter()
        .map(|f| (name(&f.node), f.pfail, f.fail))
        .collect();
    failing.sort_by(|a, b| a.0.cmp(&b.0));
    let slots = cluster.slots.clone().unwrap_or_default();
    let mut shard_slots: Vec<_> = slots
        .shard_slots
        .iter()
        .map(|(s, n)| (name(s), *n))
        .collect();
    shard_slots.sort();
    let mut divergences: Vec<_> = slots
        .divergences
        .iter()
        .map(|d| {
            (
                name(&d.node),
                d.start,
                d.end,
                opt(&d.says),
                opt(&d.majority),
            )
        })
        .collect();
    divergences.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    // Valkey 8 shows a migration on the replicas of the two masters as
    // well; Redis 7.0, which the simulator follows, only on the masters.
    let replicas: BTreeSet<&str> = view
        .shards
        .iter()
        .flat_map(|s| &s.nodes)
        .filter(|n| n.role == Some(Role::Replica))
        .map(|n| n.addr.as_str())
        .collect();
    let mut open: Vec<_> = slots
        .open
        .iter()
        .filter(|o| !replicas.contains(o.node.as_str()))
        .map(|o| (name(&o.node), o.slot, o.state, name(&o.peer)))
        .collect();
    open.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    Norm {
        targets,
        shards,
        state_ok: cluster.state_ok,
        majority: cluster.majority.clone().map(|m| ClusterInfo {
            current_epoch: 0,
            ..m
        }),
        failing,
        ranges: slots
            .ranges
            .iter()
            .map(|r| (r.start, r.end, r.state, opt(&r.shard), opt(&r.master)))
            .collect(),
        uncovered: slots.uncovered,
        shard_slots,
        config_views: slots.config_views,
        divergences,
        open,
        shards_without_replica: slots.shards_without_replica,
        shards_same_host: slots.shards_same_host,
    }
}

fn current_epoch(side: &Side<'_>) -> u64 {
    side.view().cluster.expect("a cluster view").current_epoch
}

/// The field names the answering nodes printed, over every reply.
fn field_names<'t>(replies: impl Iterator<Item = &'t String>) -> BTreeSet<String> {
    replies
        .flat_map(|t| t.lines())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, _)| k.to_string())
        .collect()
}

/// Which server the real side runs, from its `INFO server`.
fn real_server(real: &Cluster) -> String {
    let server = real.nodes[0].info("server").expect("INFO server");
    let name = server.get("server_name").map_or("redis", String::as_str);
    let version = server.get("redis_version").map_or("?", String::as_str);
    match server.get("valkey_version") {
        Some(v) => format!("{name} {v}"),
        None => format!("{name} {version}"),
    }
}

/// Fields the simulator prints as Redis 7.0 does that other versions leave
/// out, and fields other versions add; on Redis 7.0 the sets must be equal.
const ONLY_7_0: [&str; 1] = ["total_cluster_links_buffer_limit_exceeded"];
const NOT_IN_7_0: [&str; 3] = [
    "replicas_waiting_psync",
    "replicas_repl_buffer_size",
    "replicas_repl_buffer_peak",
];

/// Each setting the agent reads (`CONFIG GET <name>`) gets the same answer
/// from both sides' first node, a default-configured cluster node; on
/// other versions than Redis 7.0, the names the simulator knows.
fn same_settings(server: &str, real: &Cluster, sim: &SimCluster) {
    let exact = server.starts_with("redis 7.0.");
    for param in Param::ALL {
        let args = ["CONFIG", "GET", param.name()];
        let sim_reply = sim.cmd(0, &args).unwrap();
        if exact || sim_reply != Reply::Array(Vec::new()) {
            assert_eq!(real.cmd(0, &args).unwrap(), sim_reply, "{server}: {args:?}");
        }
    }
}

/// The sets of field names of both sides must be equal, but for what the
/// real server's version does differently from 7.0.
fn same_fields(what: &str, server: &str, real: BTreeSet<String>, sim: BTreeSet<String>) {
    let exact = server.starts_with("redis 7.0.");
    let only_real: Vec<_> = real
        .difference(&sim)
        .filter(|f| exact || !NOT_IN_7_0.contains(&f.as_str()))
        .collect();
    let only_sim: Vec<_> = sim
        .difference(&real)
        .filter(|f| exact || !ONLY_7_0.contains(&f.as_str()))
        .collect();
    assert!(
        only_real.is_empty() && only_sim.is_empty(),
        "{what} on {server}: only the real cluster prints {only_real:?}, only the simulator {only_sim:?}"
    );
}

/// `CLUSTER INFO` fields, leaving out the per-type bus message counts that
/// only real timing decides (which node sent the FAIL, whether an UPDATE
/// was needed): their totals are compared with the rest.
fn cluster_info_fields(round: &Round) -> BTreeSet<String> {
    field_names(round.cluster_info.iter())
        .into_iter()
        .filter(|f| {
            !(f.starts_with("cluster_stats_messages_") && f.matches('_').count() == 4)
                || ["ping", "pong", "meet"]
                    .iter()
                    .any(|t| f.contains(&format!("_{t}_")))
        })
        .collect()
}

fn replication_fields(round: &Round, role: Role) -> BTreeSet<String> {
    field_names(
        round
            .replication
            .iter()
            .filter(|(r, _)| *r == role)
            .map(|(_, t)| t),
    )
    .into_iter()
    // `slaveN` lines: one per replica, compared through the views.
    .filter(|f| !(f.starts_with("slave") && f[5..].bytes().all(|b| b.is_ascii_digit())))
    .collect()
}

fn compare(
    what: &str,
    server: &str,
    real: &mut Side<'_>,
    sim: &mut Side<'_>,
    rounds: (Round, Round),
) {
    let (real_norm, sim_norm) = (real.norm(), sim.norm());
    assert_eq!(
        real_norm, sim_norm,
        "{what}: the views differ (left: {server}, right: simulator)"
    );
    same_fields(
        &format!("{what}: CLUSTER INFO"),
        server,
        cluster_info_fields(&rounds.0),
        cluster_info_fields(&rounds.1),
    );
    for role in [Role::Master, Role::Replica] {
        same_fields(
            &format!("{what}: INFO replication of a {}", role.as_str()),
            server,
            replication_fields(&rounds.0, role),
            replication_fields(&rounds.1, role),
        );
    }
}

/// How much a node's `total_net_output_bytes` and `total_net_input_bytes`
/// grow over an `INFO stats` and a `CLUSTER NODES`: at least the bytes of
/// the two requests and the reply to each.
fn net_growth(nodes: &dyn Nodes, i: usize) -> ((u64, u64), (u64, u64)) {
    let stats = |t: &str| -> BTreeMap<String, u64> {
        t.lines()
            .filter_map(|l| l.trim().split_once(':'))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect()
    };
    let bulk = |t: &str| (t.len() + t.len().to_string().len() + 5) as u64;
    let first_text = text(nodes.cmd(i, &["INFO", "stats"]), "INFO stats");
    let nodes_text = text(nodes.cmd(i, &["CLUSTER", "NODES"]), "CLUSTER NODES");
    let second = stats(&text(nodes.cmd(i, &["INFO", "stats"]), "INFO stats"));
    let first = stats(&first_text);
    let grew = |k: &str| second[k] - first[k];
    let out_min = bulk(&first_text) + bulk(&nodes_text);
    let request = |args: &[&str]| -> u64 {
        let header = args.len().to_string().len() + 3;
        args.iter().map(|a| bulk(a)).sum::<u64>() + header as u64
    };
    let in_min = request(&["CLUSTER", "NODES"]) + request(&["INFO", "stats"]);
    (
        (grew("total_net_output_bytes"), out_min),
        (grew("total_net_input_bytes"), in_min),
    )
}

#[test]
fn the_agent_sees_the_simulator_as_a_real_cluster() {
    let real_cluster = Cluster::start(ClusterOpts::default());
    let sim_cluster = SimCluster::start(SimOpts::default());
    let server = real_server(&real_cluster);
    let mut real = Side::new("real", &real_cluster);
    let mut sim = Side::new("simulator", &sim_cluster);

    // Healthy: the first round finds the nodes, the second polls them all.
    let healthy = |n: &Norm| n.targets.iter().all(|t| t.1 && t.2) && n.targets.len() == 6;
    let rounds = (
        real.poll_until("healthy cluster", SETTLE, healthy),
        sim.poll_until("healthy cluster", SETTLE, healthy),
    );
    compare("healthy", &server, &mut real, &mut sim, rounds);
    same_settings(&server, &real_cluster, &sim_cluster);
    let epochs = (current_epoch(&real), current_epoch(&sim));

    // A slot migrating from shard 0 to shard 1, then stable again.
    for side in [&mut real, &mut sim] {
        side.nodes.open_migration(MIGRATING_SLOT, 0, 1);
    }
    let open = |n: &Norm| n.open.len() == 2;
    let rounds = (
        real.poll_until("open slot", SETTLE, open),
        sim.poll_until("open slot", SETTLE, open),
    );
    compare("slot migrating", &server, &mut real, &mut sim, rounds);
    for side in [&mut real, &mut sim] {
        side.nodes.close_migration(MIGRATING_SLOT, 0, 1);
    }

    // A master fails: frozen until its replica took its slots over.
    let promoted = format!("r{FAILING_SHARD}.0");
    let failed = format!("m{FAILING_SHARD}");
    real_cluster.nodes[FAILING_SHARD].freeze();
    assert_eq!(
        sim_cluster.fail_master(FAILING_SHARD).unwrap(),
        FAILING_SHARD
    );
    let failed_over = |n: &Norm| {
        n.state_ok
            && n.uncovered == 0
            && n.config_views == 1
            && n.shards
                .iter()
                .any(|s| s.master.as_deref() == Some(&*promoted))
            && n.failing.iter().any(|f| f.0 == failed && f.2)
    };
    let rounds = (
        real.poll_until("failover", SETTLE, failed_over),
        sim.poll_until("failover", SETTLE, failed_over),
    );
    compare("failed over", &server, &mut real, &mut sim, rounds);
    let shard = format!("s{FAILING_SHARD}");
    let after = sim.norm();
    let s = after
        .shards
        .iter()
        .find(|s| s.name == shard)
        .expect("the shard keeps its name");
    assert_eq!(s.master.as_deref(), Some(&*promoted));
    assert_eq!(
        (
            current_epoch(&real) - epochs.0,
            current_epoch(&sim) - epochs.1
        ),
        (1, 1),
        "a failover bumps the current epoch by one"
    );

    // The old master comes back, as a replica of the promoted one.
    real_cluster.nodes[FAILING_SHARD].resume();
    sim_cluster.resume(FAILING_SHARD).unwrap();
    let rejoined = |n: &Norm| {
        n.failing.iter().all(|f| !f.2 && f.1 == 0)
            && n.shards.iter().any(|s| {
                s.master.as_deref() == Some(&*promoted)
                    && s.replicas_healthy == 1
                    && s.nodes.iter().any(|(node, role, link)| {
                        *node == failed && *role == Some(Role::Replica) && *link == Some(true)
                    })
            })
    };
    let rounds = (
        real.poll_until("rejoin", SETTLE, rejoined),
        sim.poll_until("rejoin", SETTLE, rejoined),
    );
    compare("rejoined", &server, &mut real, &mut sim, rounds);

    // Byte counters count what a node really sent and received.
    for (name, nodes) in [
        ("real", &real_cluster as &dyn Nodes),
        ("simulator", &sim_cluster),
    ] {
        let ((out, out_min), (inp, in_min)) = net_growth(nodes, 0);
        assert!(
            out >= out_min && out < out_min + 512,
            "{name}: total_net_output_bytes grew by {out}, replies were {out_min} bytes"
        );
        assert!(
            inp >= in_min && inp < in_min + 512,
            "{name}: total_net_input_bytes grew by {inp}, requests were {in_min} bytes"
        );
    }
    let ((out, out_min), (inp, in_min)) = net_growth(&sim_cluster, 3);
    assert_eq!(
        (out, inp),
        (out_min, in_min),
        "the simulator counts exactly"
    );
}
