//! `redis-ha-bench`: the benchmark harness behind `scripts/bench`.
//!
//! Starts lab topologies (real redis-server and sentinel processes on
//! 127.0.0.1), the agent's release build, and the peer pipeline users run
//! today (prometheus-redis-exporter 1.45 and Prometheus), runs every scenario
//! of BENCHMARKS.md and writes the figures there, between the
//! `<!-- bench:results:begin/end -->` markers. Timings are compared within one
//! run on one machine; nothing here is a test.

mod agent;
mod criterion;
mod failover;
mod peer;
mod procs;
mod receiver;
mod report;
mod scale;
mod scrape;
mod stats;
mod traffic;
mod watch;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use redis_ha_lab::{Cluster, ClusterOpts, SentinelGroup, SentinelOpts};

use crate::agent::{deployment, webhook, Agent};
use crate::peer::{start_exporter, start_prometheus, AlertWatch, ScrapePool};
use crate::procs::{get_text, http_client};
use crate::report::{Report, ScrapeSet};

const USAGE: &str = "\
usage: redis-ha-bench [options]        (scripts/bench builds and runs it)

  --agent PATH            agent binary (target/release/redis-ha-exporter)
  --out PATH              where the results go (BENCHMARKS.md)
  --criterion DIR         criterion's output of `cargo bench --bench parse` (target/criterion)
  --raw PATH              also write every series behind the tables as JSON (none)
  --command TEXT          the command line to record in the report (scripts/bench)
  --failovers N           scenario 1: failovers (20)
  --scrapes N             scenario 2: scrapes of the agent, per setup and state (1000)
  --peer-scrapes N        scenario 2: multi-target scrapes of the peer (1000)
  --peer-frozen-rounds N  scenario 2: the same with a frozen node, 0.5 s each (60)
  --peer-seconds N        scenario 2: at most this long for the peer's scrapes of a
                          setup, half of it with the node frozen (150)
    --large-masters N       the large cluster: masters (60)
  --large-replicas N      the large cluster: replicas per master (1)
    --cost-seconds N        scenario 3: seconds of polling per topology (60)
  --traffic-seconds N     scenario 5: seconds of each window (20)
  --sim-sizes LIST        scenario 6: simulated cluster sizes in nodes (100,300,1000)
  --sim-seconds N         scenario 6: seconds of polling per size (30)
  --only LIST             run only these of failover,scrape,large,scale (all)";

struct Args {
    agent: PathBuf,
    out: PathBuf,
    criterion: PathBuf,
    raw: Option<PathBuf>,
    command: String,
    failovers: usize,
    scrapes: usize,
    peer_scrapes: usize,
    peer_frozen_rounds: usize,
    peer_seconds: u64,
    large_masters: usize,
    large_replicas: usize,
    cost_seconds: u64,
    traffic_seconds: u64,
    sim_sizes: Vec<usize>,
    sim_seconds: u64,
    only: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        agent: PathBuf::from("target/release/redis-ha-exporter"),
        out: PathBuf::from("BENCHMARKS.md"),
        criterion: PathBuf::from("target/criterion"),
        raw: None,
        command: "scripts/bench".to_string(),
        failovers: 20,
        scrapes: 1000,
        peer_scrapes: 1000,
        peer_frozen_rounds: 60,
        peer_seconds: 150,
        large_masters: 60,
        large_replicas: 1,
        cost_seconds: 60,
        traffic_seconds: 20,
        sim_sizes: vec![100, 300, 1000],
        sim_seconds: 30,
        only: ["failover", "scrape", "large", "scale"]
            .map(String::from)
            .to_vec(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<usize>()
                .map_err(|_| format!("{flag}: not a number: {value}"))
        };
        match flag.as_str() {
            "--agent" => a.agent = value.clone().into(),
            "--out" => a.out = value.clone().into(),
            "--criterion" => a.criterion = value.clone().into(),
            "--raw" => a.raw = Some(value.clone().into()),
            "--command" => a.command = value.clone(),
            "--failovers" => a.failovers = number()?,
            "--scrapes" => a.scrapes = number()?,
            "--peer-scrapes" => a.peer_scrapes = number()?,
            "--peer-frozen-rounds" => a.peer_frozen_rounds = number()?,
            "--peer-seconds" => a.peer_seconds = number()? as u64,
            "--large-masters" => a.large_masters = number()?,
            "--large-replicas" => a.large_replicas = number()?,
            "--cost-seconds" => a.cost_seconds = number()? as u64,
            "--traffic-seconds" => a.traffic_seconds = number()? as u64,
            "--sim-seconds" => a.sim_seconds = number()? as u64,
            "--sim-sizes" => {
                a.sim_sizes = value
                    .split(',')
                    .map(|s| s.parse().map_err(|_| format!("{flag}: not a number: {s}")))
                    .collect::<Result<_, _>>()?
            }
            "--only" => a.only = value.split(',').map(str::to_string).collect(),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if !a.agent.is_file() {
        return Err(format!(
            "agent binary {} not found (cargo build --release)",
            a.agent.display()
        ));
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("redis-ha-bench: {e}\n");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let work = std::env::temp_dir().join(format!("redis-ha-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");
    let started = Instant::now();
    let mut report = Report::new(&args.command, &args.agent);
    report.peer_rounds = (args.peer_scrapes, args.peer_frozen_rounds);
    report.peer_seconds = args.peer_seconds;
    let wants = |s: &str| args.only.iter().any(|o| o == s);

    // Everything lab-related is created and dropped on this thread (the lab's
    // servers die with the thread that started them).
    if wants("failover") || wants("scrape") {
        small_topologies(
            &args,
            &work,
            &mut report,
            wants("failover"),
            wants("scrape"),
        );
    }
    if wants("large") {
        large_cluster(&args, &work, &mut report);
    }
    if wants("scale") {
        for &nodes in &args.sim_sizes {
            eprintln!("bench: scenario 6: a simulated cluster of {nodes} nodes");
            report.scales.push(scale::run(
                &args.agent,
                &work,
                nodes,
                args.sim_seconds,
                args.scrapes.min(300),
            ));
        }
    }
    report.parsing = criterion::read(&args.criterion);
    report.finish(started.elapsed());
    report
        .write(&args.out)
        .unwrap_or_else(|e| panic!("write {}: {e}", args.out.display()));
    if let Some(raw) = &args.raw {
        let text = serde_json::to_string_pretty(&report.raw()).expect("raw series as JSON");
        std::fs::write(raw, text).unwrap_or_else(|e| panic!("write {}: {e}", raw.display()));
    }
    eprintln!(
        "bench: done in {:.1} min; results in {}",
        started.elapsed().as_secs_f64() / 60.0,
        args.out.display()
    );
    let _ = std::fs::remove_dir_all(&work);
}

/// Scenario 1 on a sentinel group; scenarios 2 and 3 on that group and a
/// 3x1 cluster.
fn small_topologies(
    args: &Args,
    work: &std::path::Path,
    report: &mut Report,
    failovers: bool,
    scrapes: bool,
) {
    eprintln!("bench: starting a sentinel group (1 master, 2 replicas, 3 sentinels)");
    let group = SentinelGroup::start(SentinelOpts::default());
    let sentinels: Vec<String> = group.sentinels.iter().map(|s| s.addr()).collect();
    let group_targets: Vec<String> = sentinels
        .iter()
        .cloned()
        .chain(group.nodes.iter().map(|n| n.addr()))
        .collect();
    let receiver = receiver::Receiver::start();
    let mut agent_sentinel = Agent::start(
        &args.agent,
        work,
        "agent-sentinel",
        &deployment("sentinel", "sentinel", &sentinels[..1]),
        &webhook(&receiver.url()),
    );
    agent_sentinel.wait_targets(6, 6, Duration::from_secs(30));

    if failovers {
        eprintln!("bench: scenario 1: {} failovers", args.failovers);
        let ports: Vec<u16> = group.sentinels.iter().map(|s| s.port()).collect();
        let events = watch::EventLog::subscribe(&ports);
        let exporters: Vec<(procs::Proc, String)> = sentinels
            .iter()
            .enumerate()
            .map(|(i, s)| start_exporter(work, &format!("exporter-sentinel-{i}"), Some(s)))
            .collect();
        let scrape_targets: Vec<String> = exporters
            .iter()
            .map(|(_, base)| base.trim_start_matches("http://").to_string())
            .collect();
        let (prometheus, prom) = start_prometheus(work, &scrape_targets, failover::PEER_RULES);
        wait_prometheus_series(
            &prom,
            "count(count by (instance) (redis_sentinel_master_status))",
            exporters.len(),
        );
        let alert = AlertWatch::start(&prom, failover::PEER_ALERT);
        report.failovers = failover::run(&group, &receiver, &events, &alert, args.failovers);
        drop(alert);
        drop(prometheus);
        drop(exporters);
    }

    let (mut multi, multi_base) = start_exporter(work, "exporter-multi", None);
    if scrapes {
        eprintln!("bench: scenario 2: starting a 3x1 cluster");
        let cluster = Cluster::start(ClusterOpts {
            node_timeout_ms: 5000,
            ..ClusterOpts::default()
        });
        let cluster_targets: Vec<String> = cluster.nodes.iter().map(|n| n.addr()).collect();
        let both = format!(
            "{}{}",
            deployment("sentinel", "sentinel", &sentinels[..1]),
            deployment("cluster", "cluster", &cluster_targets[..1])
        );
        let all: Vec<String> = group_targets
            .iter()
            .chain(&cluster_targets)
            .cloned()
            .collect();
        let mut agent_both = Agent::start(&args.agent, work, "agent-small", &both, "");
        agent_both.wait_targets(all.len(), all.len(), Duration::from_secs(30));
        // A replica of the cluster freezes: no failover, one silent node.
        let frozen = cluster.nodes[3].port();
        report.scrapes.push(scrape_set(
            args,
            &format!("sentinel group + 3x1 cluster ({} targets)", all.len()),
            &agent_both,
            &multi_base,
            &all,
            || cluster.node(frozen).freeze(),
        ));
        cluster.node(frozen).resume();
        cluster.wait_ok(Duration::from_secs(60));
        drop(agent_both);
        multi.check_running();

        eprintln!("bench: scenario 3: cost, sentinel group");
        let pool = ScrapePool::new(&multi_base, &group_targets);
        report.costs.push((
            "sentinel group (3 sentinels, 3 nodes)".into(),
            scrape::cost(
                agent_sentinel.proc.pid(),
                group_targets.len(),
                multi.pid(),
                &pool,
                &pids(group.nodes.iter().chain(&group.sentinels)),
                args.cost_seconds,
            ),
        ));
        eprintln!("bench: scenario 3: cost, 3x1 cluster");
        let mut agent_cluster = Agent::start(
            &args.agent,
            work,
            "agent-cluster-3x1",
            &deployment("cluster", "cluster", &cluster_targets[..1]),
            "",
        );
        agent_cluster.wait_targets(6, 6, Duration::from_secs(30));
        let pool = ScrapePool::new(&multi_base, &cluster_targets);
        report.costs.push((
            "cluster 3x1 (6 nodes)".into(),
            scrape::cost(
                agent_cluster.proc.pid(),
                cluster_targets.len(),
                multi.pid(),
                &pool,
                &pids(cluster.nodes.iter()),
                args.cost_seconds,
            ),
        ));
    }
}

/// Scenarios 2 and 3 on a cluster of `large_masters * (1 + large_replicas)`
/// nodes.
fn large_cluster(args: &Args, work: &std::path::Path, report: &mut Report) {
    let masters = args.large_masters;
    let replicas = args.large_replicas;
    let n = masters * (1 + replicas);
    eprintln!("bench: starting a {masters}x{replicas} cluster ({n} nodes)");
    // Long enough that 2 cores busy with the peer's scrapes do not make
    // nodes flag each other, short enough that the new replicas' roles
    // reach every node (each pair talks every node_timeout / 2) within the
    // lab's 30 s.
    let cluster = Cluster::start(ClusterOpts {
        masters,
        replicas_per_master: replicas,
        node_timeout_ms: 5_000,
        ..ClusterOpts::default()
    });
    let targets: Vec<String> = cluster.nodes.iter().map(|node| node.addr()).collect();
    let (mut multi, multi_base) = start_exporter(work, "exporter-multi-large", None);
    let mut agent = Agent::start(
        &args.agent,
        work,
        "agent-large",
        &deployment("cluster", "cluster", &targets[..1]),
        "",
    );
    agent.wait_targets(n, n, Duration::from_secs(120));
    // A replica if there are any, else the last master.
    let frozen = cluster.nodes[if replicas > 0 { masters } else { n - 1 }].port();
    report.scrapes.push(scrape_set(
        args,
        &format!("cluster {masters}x{replicas} ({n} nodes)"),
        &agent,
        &multi_base,
        &targets,
        || cluster.node(frozen).freeze(),
    ));
    cluster.node(frozen).resume();
    cluster.wait_ok(Duration::from_secs(60));
    agent.wait_targets(n, n, Duration::from_secs(60));
    multi.check_running();

    eprintln!("bench: scenario 3: cost, {n}-node cluster");
    let pool = ScrapePool::new(&multi_base, &targets);
    report.costs.push((
        format!("cluster {masters}x{replicas} ({n} nodes)"),
        scrape::cost(
            agent.proc.pid(),
            n,
            multi.pid(),
            &pool,
            &pids(cluster.nodes.iter()),
            args.cost_seconds,
        ),
    ));

    eprintln!("bench: scenario 5: bytes from Redis, {n}-node cluster");
    let nodes: Vec<&redis_ha_lab::Node> = cluster.nodes.iter().collect();
    report.traffic = Some(traffic::measure(
        &nodes,
        agent.proc.pid(),
        &pool,
        args.traffic_seconds,
    ));
    agent.proc.check_running();
}

/// Scenario 2 on one setup: our /metrics and the peer's multi-target
/// scrape, then the same with one node frozen (by `freeze`).
fn scrape_set(
    args: &Args,
    setup: &str,
    agent: &Agent,
    exporter: &str,
    targets: &[String],
    freeze: impl FnOnce(),
) -> ScrapeSet {
    const GAP: Duration = Duration::from_millis(10);
    eprintln!(
        "bench: scenario 2: {setup}: {} scrapes of the agent",
        args.scrapes
    );
    let ours = scrape::ours(&agent.base, args.scrapes, GAP);
    let pool = ScrapePool::new(exporter, targets);
    eprintln!(
        "bench: scenario 2: {setup}: {} peer scrapes",
        args.peer_scrapes
    );
    let budget = Duration::from_secs(args.peer_seconds);
    let (peer, peer_bytes, peer_errors) = scrape::peer(&pool, args.peer_scrapes, budget);
    freeze();
    // Let the agent's poll of the frozen node time out at least once.
    std::thread::sleep(Duration::from_secs(3));
    eprintln!("bench: scenario 2: {setup}, frozen node: agent");
    let ours_frozen = scrape::ours(&agent.base, args.scrapes, GAP);
    eprintln!(
        "bench: scenario 2: {setup}, frozen node: {} peer scrapes",
        args.peer_frozen_rounds
    );
    let (peer_frozen, _, peer_frozen_errors) =
        scrape::peer(&pool, args.peer_frozen_rounds, budget / 2);
    ScrapeSet {
        setup: setup.to_string(),
        targets: targets.len(),
        ours_bytes: ours.bytes,
        ours: ours.metrics,
        ours_healthy: ours.healthy,
        ours_cached: ours.cached,
        peer,
        peer_bytes,
        peer_errors,
        ours_frozen: ours_frozen.metrics,
        ours_frozen_healthy: ours_frozen.healthy,
        ours_frozen_cached: ours_frozen.cached,
        peer_frozen,
        peer_frozen_errors,
    }
}

fn pids<'a>(nodes: impl Iterator<Item = &'a redis_ha_lab::Node>) -> Vec<u32> {
    nodes.filter_map(redis_ha_lab::Node::pid).collect()
}

/// Waits until an instant query returns `want`.
fn wait_prometheus_series(prometheus: &str, query: &str, want: usize) {
    let http = http_client(Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(60);
    let url = format!(
        "{prometheus}/api/v1/query?query={}",
        query
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    );
    loop {
        let got = get_text(&http, &url)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| {
                v["data"]["result"][0]["value"][1]
                    .as_str()
                    .map(String::from)
            });
        if got.as_deref() == Some(want.to_string().as_str()) {
            return;
        }
        if Instant::now() > deadline {
            panic!("Prometheus: {query} is {got:?}, want {want}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
