//! `cargo bench --bench parse`: what the agent spends per node on the replies it
//! parses and on the /metrics body it renders, at 10, 100 and 1000 nodes.
//!
//! - `info_replication/N`: `ReplicationInfo::parse` of the `INFO replication`
//!   replies of an N-node cluster (half masters with one `slave0:` line, half
//!   replicas), as one poll round parses them.
//! - `cluster_nodes/N`: `parse_nodes` of one N-line `CLUSTER NODES` reply.
//! - `render_metrics/N`: `metrics::render` of the snapshot of an N-node cluster
//!   (N/2 masters, one replica each), built through the public monitor API
//!   from generated replies, as the agent builds it from real ones.
//! - `monitor_poll/N`: `Monitor::apply` of one node's poll in that cluster
//!   (the CLUSTER NODES reply already parsed) that says what its last poll
//!   said but for offsets: the monitor's work per steady poll, snapshot and
//!   alert evaluation included.
//! - `monitor_failover/N`: `Monitor::apply` of a poll whose view changed,
//!   in a cluster in the middle of a failover (the first master `fail` in a
//!   third of the views, `fail?` in another third, its replica promoted with
//!   a new epoch in the rest): the cluster-wide derivation runs.
//! - `monitor_full/N`: `Monitor::reference` of that cluster: every view
//!   derived from scratch, the reference the incremental result is tested
//!   against.
//! - `cluster_findings/N`: the cluster checks of that cluster
//!   (`views::cluster_findings`, from its derivation and who answers), as
//!   the monitor runs them after each derivation; every generated node is
//!   on 127.0.0.1, so every shard is a `shard_shares_host` finding: the
//!   most findings there can be.
//!
//! Every group reports throughput in nodes (elements), so criterion prints time
//! per node too; scripts/bench reads the samples into BENCHMARKS.md. The lines
//! imitate Redis 7.0 (`tests/fixtures/cluster-nodes-ok.txt`).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use redis_ha_exporter::config;
use redis_ha_exporter::metrics;
use redis_ha_exporter::model::{
    ClusterReading, Input, NodeReading, Observation, PollError, Reading, TargetId, TargetKind,
};
use redis_ha_exporter::monitor::derive::cluster::{topology, ClusterMemory};
use redis_ha_exporter::monitor::intake::Intake;
use redis_ha_exporter::monitor::{views, Monitor};
use redis_ha_exporter::parse::cluster::{parse_nodes, ClusterInfo};
use redis_ha_exporter::parse::info::ReplicationInfo;

const SIZES: [usize; 3] = [10, 100, 1000];
const SLOTS: usize = 16_384;
const BASE_PORT: usize = 30_000;

/// A 40-hex-digit node id, distinct per index.
fn node_id(i: usize) -> String {
    let x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!("{:016x}{:016x}{:08x}", x, x.rotate_left(17), i as u32)
}

/// Masters are nodes `0..n/2`, node `n/2 + m` replicates master `m`.
fn masters(n: usize) -> usize {
    n.div_ceil(2)
}

fn port(i: usize) -> usize {
    BASE_PORT + i
}

/// The master that fails in the failover benches (not the seed), and how
/// far along each node's view of its failover is.
const FAILED: usize = 1;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    /// No failover.
    Settled,
    /// The failed master is `fail?` in this view.
    Pfail,
    /// It is `fail`.
    Fail,
    /// Its replica took its slots with a new epoch.
    Promoted,
}

/// The `CLUSTER NODES` reply of node `me` in an n-node cluster, its view of
/// the failover of [`FAILED`] at `stage`.
fn cluster_nodes(n: usize, me: usize, stage: Stage) -> String {
    let m = masters(n);
    let promoted = m + FAILED;
    let mut out = String::with_capacity(n * 120);
    for i in 0..n {
        let myself = if i == me { "myself," } else { "" };
        let pong = if i == me {
            0
        } else {
            1_795_315_033_000 + i * 7
        };
        let p = port(i);
        let slots = |owner: usize| {
            let (first, end) = (owner * SLOTS / m, (owner + 1) * SLOTS / m - 1);
            format!("{first}-{end}")
        };
        let line = if i == FAILED && stage != Stage::Settled {
            let (flag, slots) = match stage {
                Stage::Pfail => ("fail?", slots(i)),
                Stage::Fail => ("fail", slots(i)),
                _ => ("fail", String::new()),
            };
            format!(
                "{myself}master,{flag} - 0 {pong} {} disconnected {slots}",
                i + 1
            )
        } else if i == promoted && stage == Stage::Promoted {
            format!(
                "{myself}master - 0 {pong} {} connected {}",
                m + 1,
                slots(FAILED)
            )
        } else if i < m {
            format!("{myself}master - 0 {pong} {} connected {}", i + 1, slots(i))
        } else {
            let master = i - m;
            format!(
                "{myself}slave {} 0 {pong} {} connected",
                node_id(master),
                master + 1
            )
        };
        out.push_str(&format!(
            "{} 127.0.0.1:{p}@{} {line}\n",
            node_id(i),
            p + 10_000
        ));
    }
    out
}

fn cluster_info(n: usize) -> String {
    format!(
        "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\n\
         cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:{n}\r\n\
         cluster_size:{}\r\ncluster_current_epoch:{}\r\ncluster_my_epoch:1\r\n\
         cluster_stats_messages_ping_sent:1300\r\ncluster_stats_messages_pong_sent:1302\r\n\
         cluster_stats_messages_sent:2602\r\ncluster_stats_messages_ping_received:1297\r\n\
         cluster_stats_messages_pong_received:1300\r\ncluster_stats_messages_meet_received:5\r\n\
         cluster_stats_messages_received:2602\r\ntotal_cluster_links_buffer_limit_exceeded:0\r\n",
        masters(n),
        masters(n)
    )
}

/// The `INFO replication` reply of node `i` of an n-node cluster, after
/// `writes` more bytes of writes.
fn info_replication(n: usize, i: usize, writes: usize) -> String {
    let m = masters(n);
    let offset = 51_115 + i + writes;
    if i < m {
        let replica = if m + i < n {
            format!(
                "connected_slaves:1\r\nslave0:ip=127.0.0.1,port={},state=online,offset={offset},lag=0\r\n",
                port(m + i)
            )
        } else {
            "connected_slaves:0\r\n".to_string()
        };
        format!(
            "# Replication\r\nrole:master\r\n{replica}master_failover_state:no-failover\r\n\
             master_replid:3c678a615d3c7dfea3d802359c45bda56d481325\r\n\
             master_replid2:0000000000000000000000000000000000000000\r\n\
             master_repl_offset:{offset}\r\nsecond_repl_offset:-1\r\nrepl_backlog_active:1\r\n\
             repl_backlog_size:1048576\r\nrepl_backlog_first_byte_offset:1\r\n\
             repl_backlog_histlen:{offset}\r\n"
        )
    } else {
        format!(
            "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:{}\r\n\
             master_link_status:up\r\nmaster_last_io_seconds_ago:0\r\nmaster_sync_in_progress:0\r\n\
             slave_read_repl_offset:{offset}\r\nslave_repl_offset:{offset}\r\nslave_priority:100\r\n\
             slave_read_only:1\r\nreplica_announced:1\r\nconnected_slaves:0\r\n\
             master_failover_state:no-failover\r\n\
             master_replid:eddf3952b94d17b85b35585a414b8a45ca363ef9\r\n\
             master_replid2:f28ab142c7aaaeea77a057d1c092f3a4911a6e1d\r\n\
             master_repl_offset:{offset}\r\nsecond_repl_offset:6872\r\nrepl_backlog_active:1\r\n\
             repl_backlog_size:1048576\r\nrepl_backlog_first_byte_offset:822\r\n\
             repl_backlog_histlen:50294\r\n",
            port(i - m)
        )
    }
}

fn target(i: usize) -> TargetId {
    TargetId {
        deployment: Arc::from("bench"),
        kind: TargetKind::Node,
        addr: format!("127.0.0.1:{}", port(i)),
    }
}

/// What node `i` answers, replies parsed as the poller parses them.
fn reading(n: usize, i: usize, stage: Stage, writes: usize) -> NodeReading {
    let nodes = parse_nodes(&cluster_nodes(n, i, stage)).expect("generated CLUSTER NODES parses");
    NodeReading {
        replication: ReplicationInfo::parse(&info_replication(n, i, writes))
            .expect("generated INFO parses"),
        cluster: Some(ClusterReading::from_lines(
            ClusterInfo::parse(&cluster_info(n)).expect("generated CLUSTER INFO parses"),
            nodes,
        )),
        changes: None,
        settings: None,
        slot_stats: None,
    }
}

/// A poll of node `i`: its answer, or a timeout.
fn poll(i: usize, answer: Option<&NodeReading>) -> Input {
    Input::Poll(Observation {
        target: target(i),
        at: SystemTime::now(),
        seen: Instant::now(),
        duration: Duration::from_micros(300),
        result: answer
            .map(|r| Reading::Node(r.clone()))
            .ok_or(PollError::Timeout),
    })
}

/// One cluster deployment, `bench`, seeded at node 0.
fn monitor_config() -> config::Config {
    let yaml = format!(
        "listen: \"127.0.0.1:0\"\ndeployments:\n  - name: bench\n    kind: cluster\n    seeds: [\"127.0.0.1:{}\"]\n",
        port(0)
    );
    config::parse(&yaml, "bench").expect("bench config is valid")
}

/// A monitor watching an n-node cluster seeded at node 0, after every node
/// answered once as `stage_of` says (`None`: it did not answer); with what
/// each node answered. A node's later polls share its lines, as a poller's
/// do while its view says the same.
fn monitor_at(n: usize, stage_of: impl Fn(usize) -> Option<Stage>) -> (Monitor, Vec<NodeReading>) {
    let mut monitor = Monitor::new(&monitor_config(), Vec::new(), Vec::new());
    let answers: Vec<NodeReading> = (0..n)
        .map(|i| reading(n, i, stage_of(i).unwrap_or(Stage::Settled), 0))
        .collect();
    // The seed's view makes every other node a target; then all of them answer.
    monitor.apply(poll(0, Some(&answers[0])));
    monitor.apply_all((0..n).map(|i| poll(i, stage_of(i).map(|_| &answers[i]))));
    let snapshot = monitor.snapshot();
    let polled = snapshot.deployments[0]
        .targets
        .iter()
        .filter(|t| t.polled && t.exported)
        .count();
    assert_eq!(polled, n, "every generated node is a polled member");
    (monitor, answers)
}

/// A cluster without a failover.
fn settled_monitor(n: usize) -> Monitor {
    monitor_at(n, |_| Some(Stage::Settled)).0
}

/// A cluster in the middle of the failover of [`FAILED`]: it does not
/// answer, and the views of the others are a third each at `fail?`,
/// `fail` and promoted.
fn failing_monitor(n: usize) -> (Monitor, Vec<NodeReading>) {
    monitor_at(n, |i| {
        (i != FAILED).then_some([Stage::Pfail, Stage::Fail, Stage::Promoted][i % 3])
    })
}

fn info_replication_bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("info_replication");
    for n in SIZES {
        let replies: Vec<String> = (0..n).map(|i| info_replication(n, i, 0)).collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &replies, |b, replies| {
            b.iter(|| {
                for r in replies {
                    black_box(ReplicationInfo::parse(black_box(r)).unwrap());
                }
            })
        });
    }
    group.finish();
}

fn cluster_nodes_bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("cluster_nodes");
    for n in SIZES {
        let text = cluster_nodes(n, 0, Stage::Settled);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &text, |b, text| {
            b.iter(|| black_box(parse_nodes(black_box(text)).unwrap()))
        });
    }
    group.finish();
}

fn render_bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("render_metrics");
    group.sample_size(20);
    for n in SIZES {
        let snapshot = settled_monitor(n).snapshot();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &snapshot, |b, snapshot| {
            b.iter(|| black_box(metrics::render(black_box(snapshot))))
        });
    }
    group.finish();
}

/// Times `Monitor::apply` of `inputs` taken in turn (each differs from the
/// last, as successive polls of one node do).
fn bench_polls(
    group: &mut criterion::BenchmarkGroup<criterion::measurement::WallTime>,
    n: usize,
    monitor: &mut Monitor,
    inputs: [Input; 2],
) {
    let mut turn = 0;
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::from_parameter(n), |b| {
        b.iter_batched(
            || {
                turn += 1;
                inputs[turn % 2].clone()
            },
            |input| monitor.apply(input),
            criterion::BatchSize::SmallInput,
        )
    });
}

fn monitor_poll_bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("monitor_poll");
    for n in SIZES {
        let (mut monitor, answers) = monitor_at(n, |_| Some(Stage::Settled));
        // A steady poll: the same view (its lines shared, as the poller
        // sends them), offsets moving on.
        let k = n / 2;
        let mut moved = answers[k].clone();
        moved.replication = ReplicationInfo::parse(&info_replication(n, k, 100)).expect("parses");
        let inputs = [poll(k, Some(&moved)), poll(k, Some(&answers[k]))];
        bench_polls(&mut group, n, &mut monitor, inputs);
    }
    group.finish();
}

fn monitor_failover_bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("monitor_failover");
    group.sample_size(10);
    for n in SIZES {
        let (mut monitor, answers) = failing_monitor(n);
        // A node whose view moves between `fail` and promoted: every poll
        // changes the topology.
        let k = (0..n)
            .find(|i| *i != FAILED && i % 3 == 2)
            .expect("a promoted view");
        let other = reading(n, k, Stage::Fail, 0);
        let inputs = [poll(k, Some(&other)), poll(k, Some(&answers[k]))];
        bench_polls(&mut group, n, &mut monitor, inputs);
    }
    group.finish();
}

fn monitor_full_bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("monitor_full");
    group.sample_size(10);
    for n in SIZES {
        let (monitor, _) = failing_monitor(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| black_box(monitor.reference()))
        });
    }
    group.finish();
}

fn cluster_findings_bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("cluster_findings");
    for n in SIZES {
        let (_, answers) = failing_monitor(n);
        let config = &monitor_config().deployments[0];
        // The monitor's intake, rebuilt from the same polls: the seed's
        // view names the members, then every node answers (but FAILED).
        let mut intake = Intake::new([(TargetKind::Node, target(0).addr)]);
        let record = |intake: &mut Intake, i: usize| {
            if let Input::Poll(obs) = poll(i, (i != FAILED).then(|| &answers[i])) {
                intake.record(obs);
            }
        };
        record(&mut intake, 0);
        let members = topology(&intake, config, &ClusterMemory::default(), 0.0).members;
        intake.follow(&members);
        (0..n).for_each(|i| record(&mut intake, i));
        let derived = topology(&intake, config, &ClusterMemory::default(), 0.0);
        let found = views::cluster_findings("bench", derived.cluster.as_ref(), &intake);
        assert_eq!(found.len(), n / 2, "a shard_shares_host finding per shard");
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                black_box(views::cluster_findings(
                    "bench",
                    derived.cluster.as_ref(),
                    &intake,
                ))
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    info_replication_bench,
    cluster_nodes_bench,
    render_bench,
    monitor_poll_bench,
    monitor_failover_bench,
    monitor_full_bench,
    cluster_findings_bench
);
criterion_main!(benches);
