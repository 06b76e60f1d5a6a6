//! The incremental monitor against the full derivation: random sequences
//! of polls of a simulated cluster (failures, suspicions, failovers, nodes
//! joining and being forgotten, writes, slot migrations, views going stale)
//! and of a simulated sentinel deployment (failovers, sentinels down and
//! back, events), in random batches. After every batch the published view
//! must equal [`Monitor::reference`], the view derived from scratch, and
//! the alerts firing must equal what a full evaluation of every rule on the
//! same snapshots fires.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use redis_ha_exporter::config;
use redis_ha_exporter::model::snapshot::Snapshot;
use redis_ha_exporter::model::{
    ClusterReading, EventMessage, Input, MasterView, NodeReading, Observation, PollError, Reading,
    SentinelReading, TargetId, TargetKind,
};
use redis_ha_exporter::monitor::alerts::{Changed, Engine};
use redis_ha_exporter::monitor::Monitor;
use redis_ha_exporter::parse::cluster::{ClusterInfo, ClusterNode, NodeFlags};
use redis_ha_exporter::parse::info::{
    ConnectedReplica, ReplicationInfo, Role, SentinelInfo, UpstreamLink,
};
use redis_ha_exporter::parse::sentinel::{Flags, MasterEntry, ReplicaEntry, SentinelEntry};

const SLOTS: u16 = 16384;

/// Cases per property: 96 in the suite, more with `PROPTEST_CASES` set.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(96)
}

/// What the monitor publishes equals what it derives from scratch, and the
/// alerts equal a full evaluation; `now` is the batch's time.
struct Check {
    monitor: Monitor,
    full: Engine,
    now: f64,
}

impl Check {
    fn new(yaml: &str) -> Check {
        let config = config::parse(yaml, "test").expect("valid");
        Check {
            monitor: Monitor::new(&config, Vec::new(), Vec::new()),
            full: Engine::new(&config.alerts, &[], Vec::new()),
            now: 0.0,
        }
    }

    /// Applies a batch whose latest input carries time `now` (the monitor's
    /// time for it); a batch with no timed input waits for one, since the
    /// monitor would take the clock's time.
    fn batch(&mut self, inputs: &mut Vec<Input>, now: &mut Option<f64>) {
        let Some(now) = now.take() else {
            return;
        };
        self.now = self.now.max(now);
        let inputs = std::mem::take(inputs);
        self.monitor.apply_all(inputs);
        let s: Arc<Snapshot> = self.monitor.snapshot();
        let reference = self.monitor.reference();
        for (published, derived) in s.deployments.iter().zip(&reference) {
            assert_eq!(
                **published, *derived,
                "the incremental view differs from the full derivation"
            );
        }
        let all: Vec<Changed> = s
            .deployments
            .iter()
            .map(|_| Changed {
                all: true,
                ..Changed::default()
            })
            .collect();
        self.full
            .evaluate(&s.deployments, &all, &s.failovers, true, s.ready, self.now);
        let firing = |alerts: Vec<redis_ha_exporter::model::alert::Alert>| {
            let mut v: Vec<(String, f64)> = alerts
                .into_iter()
                .map(|a| (a.fingerprint, a.since))
                .collect();
            v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
            v
        };
        assert_eq!(
            firing(s.alerts.firing.clone()),
            firing(self.full.firing()),
            "the incremental alerts differ from a full evaluation"
        );
    }
}

fn at(secs: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs_f64(secs)
}

fn poll(
    deployment: &str,
    kind: TargetKind,
    addr: &str,
    now: f64,
    result: Result<Reading, PollError>,
) -> Input {
    Input::Poll(Observation {
        target: TargetId {
            deployment: deployment.into(),
            kind,
            addr: addr.to_string(),
        },
        at: at(now),
        seen: Instant::now(),
        duration: Duration::from_millis(1),
        result,
    })
}

// ---------------------------------------------------------------- cluster

#[derive(Debug, Clone, PartialEq)]
enum ClusterRole {
    Master(Vec<(u16, u16)>),
    Replica(usize),
}

#[derive(Debug, Clone)]
struct Node {
    role: ClusterRole,
    epoch: u64,
    alive: bool,
    member: bool,
    offset: u64,
    migrating: Option<(u16, usize)>,
}

/// How one node sees another.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Seen {
    Ok,
    Pfail,
    Fail,
}

/// The cluster, and what each node last learnt of it.
#[derive(Debug, Clone)]
struct World {
    nodes: Vec<Node>,
    /// What each node knows: the nodes as it last saw them, and its flags.
    known: Vec<(Vec<Node>, Vec<Seen>)>,
}

fn id(i: usize) -> String {
    format!("{:040x}", i + 1)
}

fn addr(i: usize) -> String {
    format!("127.0.0.1:{}", 7000 + i)
}

impl World {
    fn new(masters: usize, replicas: usize) -> World {
        let mut nodes = Vec::new();
        let share = SLOTS as usize / masters;
        for m in 0..masters {
            let end = if m + 1 == masters {
                SLOTS as usize
            } else {
                (m + 1) * share
            };
            nodes.push(Node {
                role: ClusterRole::Master(vec![((m * share) as u16, (end - 1) as u16)]),
                epoch: m as u64 + 1,
                alive: true,
                member: true,
                offset: 1000,
                migrating: None,
            });
        }
        for r in 0..masters * replicas {
            nodes.push(Node {
                role: ClusterRole::Replica(r % masters),
                epoch: (r % masters) as u64 + 1,
                alive: true,
                member: true,
                offset: 1000,
                migrating: None,
            });
        }
        let known = (0..nodes.len())
            .map(|_| (nodes.clone(), vec![Seen::Ok; nodes.len()]))
            .collect();
        World { nodes, known }
    }

    fn refresh(&mut self, i: usize) {
        let mut flags = self.known[i].1.clone();
        flags.resize(self.nodes.len(), Seen::Ok);
        self.known[i] = (self.nodes.clone(), flags);
        // Replicas whose master answers catch up.
        if let ClusterRole::Replica(m) = self.nodes[i].role {
            if self.nodes[m].alive {
                self.nodes[i].offset = self.nodes[m].offset;
            }
        }
    }

    fn lines(&self, me: usize) -> Vec<ClusterNode> {
        let (known, seen) = &self.known[me];
        known
            .iter()
            .enumerate()
            .filter(|(j, n)| n.member || *j == me)
            .map(|(j, n)| {
                let flag = seen.get(j).copied().unwrap_or(Seen::Ok);
                let (master, replica, master_id, slots) = match &n.role {
                    ClusterRole::Master(s) => (true, false, None, s.clone()),
                    ClusterRole::Replica(m) => (false, true, Some(id(*m)), Vec::new()),
                };
                let own = j == me;
                ClusterNode {
                    id: id(j),
                    addr: addr(j),
                    hostname: None,
                    flags: NodeFlags {
                        myself: own,
                        master,
                        replica,
                        pfail: !own && flag == Seen::Pfail,
                        fail: !own && flag == Seen::Fail,
                        handshake: false,
                        noaddr: false,
                        nofailover: false,
                    },
                    master_id,
                    config_epoch: n.epoch,
                    connected: true,
                    slots,
                    shard_id: None,
                    migrating: n
                        .migrating
                        .filter(|_| own)
                        .map(|(slot, to)| vec![(slot, id(to))])
                        .unwrap_or_default(),
                    importing: Vec::new(),
                }
            })
            .collect()
    }

    fn answer(&self, i: usize) -> Result<Reading, PollError> {
        if !self.nodes[i].alive {
            return Err(PollError::Timeout);
        }
        let lines = self.lines(i);
        let assigned: u32 = lines
            .iter()
            .flat_map(|l| &l.slots)
            .map(|(a, b)| u32::from(b - a) + 1)
            .sum();
        let lost = |pred: fn(&ClusterNode) -> bool| -> u32 {
            lines
                .iter()
                .filter(|l| pred(l))
                .flat_map(|l| &l.slots)
                .map(|(a, b)| u32::from(b - a) + 1)
                .sum()
        };
        let (pfail, fail) = (lost(|l| l.flags.pfail), lost(|l| l.flags.fail));
        let info = ClusterInfo {
            state_ok: fail == 0 && assigned == u32::from(SLOTS),
            slots_assigned: assigned,
            slots_ok: assigned - pfail - fail,
            slots_pfail: pfail,
            slots_fail: fail,
            known_nodes: lines.len() as u32,
            current_epoch: lines.iter().map(|l| l.config_epoch).max().unwrap_or(0),
        };
        let node = &self.nodes[i];
        let replication = match node.role {
            ClusterRole::Master(_) => ReplicationInfo {
                role: Role::Master,
                master_repl_offset: node.offset,
                replicas: self
                    .nodes
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.alive && r.member && r.role == ClusterRole::Replica(i))
                    .map(|(j, r)| ConnectedReplica {
                        addr: addr(j),
                        state: "online".into(),
                        offset: r.offset,
                        ack_age_seconds: Some(0),
                    })
                    .collect(),
                upstream: None,
            },
            ClusterRole::Replica(m) => ReplicationInfo {
                role: Role::Replica,
                master_repl_offset: node.offset,
                replicas: Vec::new(),
                upstream: Some(UpstreamLink {
                    master: addr(m),
                    link_up: self.nodes[m].alive,
                    link_down_seconds: (!self.nodes[m].alive).then_some(5),
                    sync_in_progress: false,
                    offset: node.offset,
                }),
            },
        };
        Ok(Reading::Node(NodeReading {
            replication,
            cluster: Some(ClusterReading::from_lines(info, lines)),
            changes: None,
            settings: None,
            slot_stats: None,
        }))
    }

    /// `j`'s master is dead: `j` takes its slots with a new epoch, and the
    /// old master and its other replicas follow `j`.
    fn promote(&mut self, j: usize) {
        let ClusterRole::Replica(m) = self.nodes[j].role else {
            return;
        };
        if self.nodes[m].alive {
            return;
        }
        let ClusterRole::Master(slots) = self.nodes[m].role.clone() else {
            return;
        };
        let epoch = self.nodes.iter().map(|n| n.epoch).max().unwrap_or(0) + 1;
        self.nodes[j].role = ClusterRole::Master(slots);
        self.nodes[j].epoch = epoch;
        for (k, n) in self.nodes.iter_mut().enumerate() {
            if k == m || n.role == ClusterRole::Replica(m) && k != j {
                n.role = ClusterRole::Replica(j);
                n.epoch = epoch;
            }
        }
    }
}

#[derive(Debug, Clone)]
enum ClusterOp {
    Poll(usize),
    Refresh(usize),
    Write(u64),
    Suspect(usize, usize, u8),
    Kill(usize),
    Revive(usize),
    Promote(usize),
    Join(usize),
    Forget(usize),
    Migrate(usize, u16),
    Batch,
}

fn cluster_op() -> impl Strategy<Value = ClusterOp> {
    let i = 0..12usize;
    prop_oneof![
        8 => i.clone().prop_map(ClusterOp::Poll),
        3 => i.clone().prop_map(ClusterOp::Refresh),
        2 => (1..5000u64).prop_map(ClusterOp::Write),
        3 => (i.clone(), i.clone(), 0..3u8).prop_map(|(a, b, l)| ClusterOp::Suspect(a, b, l)),
        1 => i.clone().prop_map(ClusterOp::Kill),
        1 => i.clone().prop_map(ClusterOp::Revive),
        1 => i.clone().prop_map(ClusterOp::Promote),
        1 => i.clone().prop_map(ClusterOp::Join),
        1 => i.clone().prop_map(ClusterOp::Forget),
        1 => (i, 0..SLOTS).prop_map(|(n, s)| ClusterOp::Migrate(n, s)),
        4 => Just(ClusterOp::Batch),
    ]
}

fn run_cluster(masters: usize, replicas: usize, ops: Vec<ClusterOp>) {
    let mut world = World::new(masters, replicas);
    let mut check = Check::new(&format!(
        "alerts:\n  rules:\n    TargetDown: {{ for: 2s }}\n    OpenSlotsStuck: {{ open_for: 3s }}\ndeployments:\n  - name: c\n    kind: cluster\n    seeds: [\"{}\"]\n",
        addr(0)
    ));
    let mut now = 1_000.0;
    let mut inputs = Vec::new();
    let mut latest = None;
    for op in ops {
        now += 0.5;
        let n = world.nodes.len();
        match op {
            ClusterOp::Poll(i) if i < n => {
                inputs.push(poll("c", TargetKind::Node, &addr(i), now, world.answer(i)));
                latest = Some(now);
            }
            ClusterOp::Refresh(i) if i < n => world.refresh(i),
            ClusterOp::Write(bytes) => {
                for node in world
                    .nodes
                    .iter_mut()
                    .filter(|n| matches!(n.role, ClusterRole::Master(_)))
                {
                    node.offset += bytes;
                }
            }
            ClusterOp::Suspect(i, j, level) if i < n && j < n && i != j => {
                world.known[i].1.resize(n, Seen::Ok);
                world.known[i].1[j] = [Seen::Ok, Seen::Pfail, Seen::Fail][level as usize];
            }
            ClusterOp::Kill(i) if i < n => world.nodes[i].alive = false,
            ClusterOp::Revive(i) if i < n => world.nodes[i].alive = true,
            ClusterOp::Promote(i) if i < n => world.promote(i),
            ClusterOp::Join(m) if n < 12 && m < n => {
                let master = match world.nodes[m].role {
                    ClusterRole::Master(_) => m,
                    ClusterRole::Replica(of) => of,
                };
                world.nodes.push(Node {
                    role: ClusterRole::Replica(master),
                    epoch: world.nodes[master].epoch,
                    alive: true,
                    member: true,
                    offset: 0,
                    migrating: None,
                });
                // It knows itself and whom it met; the others learn by gossip.
                let mut known = world.known[m].0.clone();
                known.push(world.nodes[n].clone());
                world.known.push((known, vec![Seen::Ok; n + 1]));
            }
            // CLUSTER FORGET of a replica: the others drop it as they learn;
            // it still lists them.
            ClusterOp::Forget(i)
                if i < n && i > 0 && matches!(world.nodes[i].role, ClusterRole::Replica(_)) =>
            {
                world.nodes[i].member = false;
            }
            ClusterOp::Migrate(i, slot) if i < n => {
                let to = (i + 1) % n;
                let owns = matches!(&world.nodes[i].role, ClusterRole::Master(s) if s.iter().any(|(a, b)| *a <= slot && slot <= *b));
                world.nodes[i].migrating = match world.nodes[i].migrating {
                    None if owns => Some((slot, to)),
                    _ => None,
                };
            }
            ClusterOp::Batch => check.batch(&mut inputs, &mut latest),
            _ => {}
        }
    }
    check.batch(&mut inputs, &mut latest);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn incremental_cluster_views_equal_the_full_derivation(
        masters in 1..4usize,
        replicas in 0..3usize,
        ops in prop::collection::vec(cluster_op(), 1..160),
    ) {
        run_cluster(masters, replicas, ops);
    }
}

// --------------------------------------------------------------- sentinel

/// What a sentinel believes of a master: which of its nodes is the master,
/// the config epoch, and the flags it shows.
type Belief = (usize, u64, &'static str);

/// A sentinel deployment: masters with their nodes, sentinels with their
/// (possibly stale) idea of each master.
#[derive(Debug, Clone)]
struct Group {
    /// Per master name: its nodes, the current master's index among them, its epoch.
    masters: Vec<(Vec<usize>, usize, u64)>,
    /// Per sentinel: alive, and what it believes of each master.
    sentinels: Vec<(bool, Vec<Belief>)>,
    node_alive: Vec<bool>,
    offset: u64,
}

fn node_addr(i: usize) -> String {
    format!("127.0.0.1:{}", 6000 + i)
}

fn sentinel_addr(s: usize) -> String {
    format!("127.0.0.1:{}", 26000 + s)
}

impl Group {
    fn new(masters: usize, sentinels: usize) -> Group {
        let masters: Vec<(Vec<usize>, usize, u64)> = (0..masters)
            .map(|m| ((m * 3..m * 3 + 3).collect(), 0, 1))
            .collect();
        let beliefs = masters.iter().map(|_| (0, 1, "master")).collect::<Vec<_>>();
        Group {
            node_alive: vec![true; masters.len() * 3],
            sentinels: (0..sentinels).map(|_| (true, beliefs.clone())).collect(),
            masters,
            offset: 100,
        }
    }

    fn sentinel_answer(&self, s: usize) -> Result<Reading, PollError> {
        let (alive, beliefs) = &self.sentinels[s];
        if !alive {
            return Err(PollError::Timeout);
        }
        let masters: BTreeMap<String, MasterView> = self
            .masters
            .iter()
            .zip(beliefs)
            .enumerate()
            .map(|(m, ((nodes, _, _), (current, epoch, flags)))| {
                let name = format!("m{m}");
                let master = MasterEntry {
                    name: name.clone(),
                    addr: node_addr(nodes[*current]),
                    flags: Flags::parse(flags),
                    config_epoch: *epoch,
                    quorum: 2,
                    num_replicas: 2,
                    num_other_sentinels: self.sentinels.len() as u32 - 1,
                    failover_timeout_ms: 10_000,
                    down_after_ms: Some(2000),
                    parallel_syncs: Some(1),
                };
                let view = MasterView {
                    master,
                    replicas: nodes
                        .iter()
                        .filter(|n| **n != nodes[*current])
                        .map(|n| ReplicaEntry {
                            addr: node_addr(*n),
                            flags: Flags::parse("slave"),
                            priority: Some(100),
                            link_down_ms: Some(0),
                            s_down_ms: None,
                            follows: Some(node_addr(nodes[*current])),
                        })
                        .collect(),
                    sentinels: (0..self.sentinels.len())
                        .filter(|o| *o != s)
                        .map(|o| SentinelEntry {
                            addr: sentinel_addr(o),
                            run_id: format!("{o:040}"),
                            flags: Flags::parse("sentinel"),
                            s_down_ms: None,
                        })
                        .collect(),
                    quorum_ok: self.sentinels.iter().filter(|(a, _)| *a).count() >= 2,
                };
                (name, view)
            })
            .collect();
        Ok(Reading::Sentinel(SentinelReading {
            info: SentinelInfo { tilt: false },
            masters,
        }))
    }

    fn node_answer(&self, i: usize) -> Result<Reading, PollError> {
        if !self.node_alive[i] {
            return Err(PollError::Timeout);
        }
        let (nodes, current, _) = &self.masters[i / 3];
        let master = nodes[*current];
        let replication = if i == master {
            ReplicationInfo {
                role: Role::Master,
                master_repl_offset: self.offset,
                replicas: nodes
                    .iter()
                    .filter(|n| **n != i && self.node_alive[**n])
                    .map(|n| ConnectedReplica {
                        addr: node_addr(*n),
                        state: "online".into(),
                        offset: self.offset - (*n as u64 % 3) * 10,
                        ack_age_seconds: Some(1),
                    })
                    .collect(),
                upstream: None,
            }
        } else {
            ReplicationInfo {
                role: Role::Replica,
                master_repl_offset: self.offset,
                replicas: Vec::new(),
                upstream: Some(UpstreamLink {
                    master: node_addr(master),
                    link_up: self.node_alive[master],
                    link_down_seconds: None,
                    sync_in_progress: false,
                    offset: self.offset - (i as u64 % 3) * 10,
                }),
            }
        };
        Ok(Reading::Node(NodeReading {
            replication,
            cluster: None,
            changes: None,
            settings: None,
            slot_stats: None,
        }))
    }
}

#[derive(Debug, Clone)]
enum SentinelOp {
    PollSentinel(usize),
    PollNode(usize),
    /// A sentinel's belief about a master: down flags.
    Flags(usize, usize, u8),
    /// The master of a master name moves to another of its nodes.
    Failover(usize, usize),
    /// A sentinel learns the current configuration of a master.
    Learn(usize, usize),
    SentinelAlive(usize, bool),
    NodeAlive(usize, bool),
    Event(usize, usize, u8),
    Subscription(usize, bool),
    Write,
    Batch,
}

fn sentinel_op() -> impl Strategy<Value = SentinelOp> {
    prop_oneof![
        6 => (0..3usize).prop_map(SentinelOp::PollSentinel),
        6 => (0..6usize).prop_map(SentinelOp::PollNode),
        2 => (0..3usize, 0..2usize, 0..3u8).prop_map(|(s, m, f)| SentinelOp::Flags(s, m, f)),
        1 => (0..2usize, 0..3usize).prop_map(|(m, n)| SentinelOp::Failover(m, n)),
        2 => (0..3usize, 0..2usize).prop_map(|(s, m)| SentinelOp::Learn(s, m)),
        1 => (0..3usize, any::<bool>()).prop_map(|(s, a)| SentinelOp::SentinelAlive(s, a)),
        1 => (0..6usize, any::<bool>()).prop_map(|(n, a)| SentinelOp::NodeAlive(n, a)),
        3 => (0..3usize, 0..2usize, 0..6u8).prop_map(|(s, m, e)| SentinelOp::Event(s, m, e)),
        1 => (0..3usize, any::<bool>()).prop_map(|(s, u)| SentinelOp::Subscription(s, u)),
        2 => Just(SentinelOp::Write),
        4 => Just(SentinelOp::Batch),
    ]
}

fn run_sentinel(masters: usize, ops: Vec<SentinelOp>) {
    let mut group = Group::new(masters, 3);
    let mut check = Check::new(&format!(
        "alerts:\n  rules:\n    SentinelsDisagree: {{ for: 2s }}\ndeployments:\n  - name: s\n    kind: sentinel\n    sentinels: [\"{}\"]\n",
        sentinel_addr(0)
    ));
    let mut now = 1_000.0;
    let mut inputs = Vec::new();
    let mut latest = None;
    for op in ops {
        now += 0.5;
        match op {
            SentinelOp::PollSentinel(s) => {
                inputs.push(poll(
                    "s",
                    TargetKind::Sentinel,
                    &sentinel_addr(s),
                    now,
                    group.sentinel_answer(s),
                ));
                latest = Some(now);
            }
            SentinelOp::PollNode(i) if i < masters * 3 => {
                inputs.push(poll(
                    "s",
                    TargetKind::Node,
                    &node_addr(i),
                    now,
                    group.node_answer(i),
                ));
                latest = Some(now);
            }
            SentinelOp::Flags(s, m, f) if m < masters => {
                group.sentinels[s].1[m].2 = [
                    "master",
                    "master,s_down",
                    "master,s_down,o_down,failover_in_progress",
                ][f as usize];
            }
            SentinelOp::Failover(m, n) if m < masters => {
                let (_, current, epoch) = &mut group.masters[m];
                *current = n;
                *epoch += 1;
            }
            SentinelOp::Learn(s, m) if m < masters => {
                let (_, current, epoch) = group.masters[m];
                group.sentinels[s].1[m] = (current, epoch, "master");
            }
            SentinelOp::SentinelAlive(s, alive) => group.sentinels[s].0 = alive,
            SentinelOp::NodeAlive(i, alive) if i < masters * 3 => group.node_alive[i] = alive,
            SentinelOp::Event(s, m, e) if m < masters => {
                let (nodes, current, _) = &group.masters[m];
                let master = node_addr(nodes[*current]).replace(':', " ");
                let other = node_addr(nodes[(*current + 1) % 3]).replace(':', " ");
                let (channel, payload) = match e {
                    0 => ("+sdown", format!("master m{m} {master}")),
                    1 => ("-sdown", format!("master m{m} {master}")),
                    2 => ("+odown", format!("master m{m} {master} #quorum 2/2")),
                    3 => ("+try-failover", format!("master m{m} {master}")),
                    4 => ("+switch-master", format!("m{m} {master} {other}")),
                    _ => ("+failover-end", format!("master m{m} {master}")),
                };
                inputs.push(Input::Event(EventMessage {
                    target: TargetId {
                        deployment: "s".into(),
                        kind: TargetKind::Sentinel,
                        addr: sentinel_addr(s),
                    },
                    at: at(now),
                    channel: channel.into(),
                    payload,
                }));
                latest = Some(now);
            }
            SentinelOp::Subscription(s, up) => inputs.push(Input::Subscription {
                target: TargetId {
                    deployment: "s".into(),
                    kind: TargetKind::Sentinel,
                    addr: sentinel_addr(s),
                },
                up,
            }),
            SentinelOp::Write => group.offset += 100,
            SentinelOp::Batch => check.batch(&mut inputs, &mut latest),
            _ => {}
        }
    }
    check.batch(&mut inputs, &mut latest);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn incremental_sentinel_views_equal_the_full_derivation(
        masters in 1..3usize,
        ops in prop::collection::vec(sentinel_op(), 1..160),
    ) {
        run_sentinel(masters, ops);
    }
}
