//! Scenario 2 (scrape latency) and 3 (cost per node).

use std::time::{Duration, Instant};

use crate::peer::ScrapePool;
use crate::procs::{cpu_seconds, http_client, memory, timed_get};
use crate::stats::{summarize, Summary};

/// Latencies (seconds) of `count` scrapes of the agent's /metrics, one every
/// `gap` (the agent renders a new body for the first scrape after each
/// change, so spacing them out makes the series include renders, as
/// Prometheus's scrapes do), and the size of the last body. Each scrape is
/// followed by two controls on the same connection: the same `GET /metrics`
/// again (the body is cached by then, unless a snapshot came in between:
/// the transfer without the render), then `GET /-/healthy` (nothing
/// rendered or sent: what the machine and the HTTP stack alone cost).
pub struct Ours {
    pub metrics: Vec<f64>,
    pub cached: Vec<f64>,
    pub healthy: Vec<f64>,
    pub bytes: usize,
}

pub fn ours(base: &str, count: usize, gap: Duration) -> Ours {
    let http = http_client(Duration::from_secs(10));
    let url = format!("{base}/metrics");
    let control = format!("{base}/-/healthy");
    let mut o = Ours {
        metrics: Vec::with_capacity(count),
        cached: Vec::with_capacity(count),
        healthy: Vec::with_capacity(count),
        bytes: 0,
    };
    for _ in 0..count {
        let start = Instant::now();
        let (b, took) = timed_get(&http, &url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
        o.metrics.push(took.as_secs_f64());
        o.bytes = b;
        let (_, took) = timed_get(&http, &url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
        o.cached.push(took.as_secs_f64());
        let (_, took) = timed_get(&http, &control).unwrap_or_else(|e| panic!("GET {control}: {e}"));
        o.healthy.push(took.as_secs_f64());
        std::thread::sleep((start + gap).saturating_duration_since(Instant::now()));
    }
    o
}

/// Latencies (seconds) of `rounds` multi-target scrapes of the peer, back to
/// back, stopping early once `budget` has passed (a round of a large cluster
/// on a busy machine takes a quarter of a second or more); the bytes of the
/// last round and the failed target scrapes in all.
pub fn peer(pool: &ScrapePool, rounds: usize, budget: Duration) -> (Vec<f64>, usize, usize) {
    let start = Instant::now();
    let mut latencies = Vec::with_capacity(rounds);
    let (mut bytes, mut errors) = (0, 0);
    while latencies.len() < rounds && start.elapsed() < budget {
        let r = pool.round();
        latencies.push(r.latency.as_secs_f64());
        bytes = r.bytes;
        errors += r.errors;
    }
    (latencies, bytes, errors)
}

/// What one process cost over a window.
#[derive(Debug, Clone)]
pub struct Cost {
    /// CPU seconds per operation (node poll, or node scrape) over the whole
    /// window.
    pub per_op: f64,
    /// The same over each 10 s part of the window.
    pub per_op_windows: Summary,
    pub rss: u64,
    pub peak_rss: u64,
}

#[derive(Debug, Clone)]
pub struct CostPair {
    pub seconds: f64,
    /// CPU the topology's own servers used over the window, in cores.
    pub redis_cores: f64,
    pub targets: usize,
    pub agent: Cost,
    pub peer: Cost,
}

/// Over `seconds`: the agent polls its `agent_targets` every second (its
/// own schedule) while the peer is scraped at the same rate (one round of
/// every target per second). CPU from /proc/<pid>/stat; `servers` are the
/// topology's processes, measured for context.
pub fn cost(
    agent_pid: u32,
    agent_targets: usize,
    peer_pid: u32,
    pool: &ScrapePool,
    servers: &[u32],
    seconds: u64,
) -> CostPair {
    const WINDOW: u64 = 10;
    let windows = (seconds / WINDOW).max(1);
    let mut agent_cpu = vec![cpu_seconds(agent_pid)];
    let mut peer_cpu = vec![cpu_seconds(peer_pid)];
    let servers_cpu = || servers.iter().map(|&p| cpu_seconds(p)).sum::<f64>();
    let servers_before = servers_cpu();
    let start = Instant::now();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for tick in 0..windows * WINDOW {
                let at = start + Duration::from_secs(tick);
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                pool.round();
            }
        });
        for w in 1..=windows {
            let at = start + Duration::from_secs(w * WINDOW);
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            agent_cpu.push(cpu_seconds(agent_pid));
            peer_cpu.push(cpu_seconds(peer_pid));
        }
    });
    let elapsed = (windows * WINDOW) as f64;
    let redis_cores = (servers_cpu() - servers_before) / elapsed;
    let build = |cpu: &[f64], targets: usize, pid: u32| {
        let per_window: Vec<f64> = cpu
            .windows(2)
            .map(|w| (w[1] - w[0]) / (targets as f64 * WINDOW as f64))
            .collect();
        let ops = targets as f64 * elapsed;
        let (rss, peak_rss) = memory(pid);
        Cost {
            per_op: (cpu[cpu.len() - 1] - cpu[0]) / ops,
            per_op_windows: summarize(&per_window).expect("at least one window"),
            rss,
            peak_rss,
        }
    };
    CostPair {
        seconds: elapsed,
        redis_cores,
        targets: agent_targets,
        agent: build(&agent_cpu, agent_targets, agent_pid),
        peer: build(&peer_cpu, pool.targets(), peer_pid),
    }
}
