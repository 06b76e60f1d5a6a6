//! Scenario 6: the agent on simulated clusters of growing size (`redis-ha-lab`'s
//! `SimCluster`, in this process): what one node poll costs, memory, the
//! `/metrics` body and its latency, and how soon a master failure shows.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis_ha_lab::{FailureTiming, SimCluster, SimOpts};

use crate::agent::{deployment, webhook, Agent};
use crate::procs::{cpu_seconds, get_text, http_client, memory};
use crate::receiver::Receiver;
use crate::scrape;
use crate::stats::{summarize, Summary};

/// The failed master's replica is promoted this long after the failure is
/// declared: long enough that slot coverage is visibly lost for a few
/// polls (the simulator's default, 0.7 s, is what a 3-node lab shows).
pub const PROMOTE_AFTER: Duration = Duration::from_secs(3);

/// One simulated size.
#[derive(Debug, Clone)]
pub struct Scale {
    pub nodes: usize,
    pub seconds: u64,
    /// Agent CPU seconds per node poll over the window.
    pub per_poll: f64,
    pub rss: u64,
    pub peak_rss: u64,
    pub body_bytes: usize,
    pub series: usize,
    /// `/metrics` latency, the first scrape after a new snapshot (with its render).
    pub metrics: Summary,
    /// The same scrape again at once (the body cached).
    pub cached: Summary,
    /// `/-/healthy` right after: the control.
    pub healthy: Summary,
    /// From the simulated failure being declared (the first node flags
    /// the master `fail`) to the `fail` mark of the agent's timeline,
    /// by the mark's own time.
    pub to_fail_mark: f64,
    /// From the failure being declared to `SlotCoverageLost` at the receiver.
    pub to_coverage_lost: f64,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Runs the agent on a cluster of `nodes` (half masters, one replica each)
/// for `seconds`, then fails a master.
pub fn run(binary: &Path, work: &Path, nodes: usize, seconds: u64, scrapes: usize) -> Scale {
    let masters = (nodes / 2).max(1);
    let node_timeout = Duration::from_secs(1);
    let timing = FailureTiming {
        promote_after: PROMOTE_AFTER,
        ..FailureTiming::default()
    };
    let fail_after = node_timeout + timing.fail_after;
    let sim = SimCluster::start(SimOpts {
        masters,
        replicas_per_master: 1,
        node_timeout,
        timing,
        ..SimOpts::default()
    });
    let addrs = sim.node_addrs();
    let n = addrs.len();
    let receiver = Receiver::start();
    let mut agent = Agent::start(
        binary,
        work,
        &format!("agent-sim-{n}"),
        &deployment("sim", "cluster", &addrs[..1]),
        &webhook(&receiver.url()),
    );
    agent.wait_targets(n, n, Duration::from_secs(120));
    // Past the first reads of every node's CLUSTER NODES.
    std::thread::sleep(Duration::from_secs(5));

    let pid = agent.proc.pid();
    let before = cpu_seconds(pid);
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let per_poll = (cpu_seconds(pid) - before) / (n as f64 * start.elapsed().as_secs_f64());
    let (rss, peak_rss) = memory(pid);

    let ours = scrape::ours(&agent.base, scrapes, Duration::from_millis(20));
    let http = http_client(Duration::from_secs(10));
    let body = get_text(&http, &format!("{}/metrics", agent.base)).unwrap_or_default();
    let series = body
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();

    let failed_at = Instant::now();
    let failed_unix = unix_now();
    let failed = sim.fail_master(0).expect("fail a master of the simulator");
    let old = addrs[failed].clone();
    let declared_unix = failed_unix + fail_after.as_secs_f64();
    let declared = failed_at + fail_after;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut fail_mark = None;
    while fail_mark.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        fail_mark = fail_mark_of(&http, &agent.base, &old);
    }
    let coverage = loop {
        if let Some(at) = receiver.first_firing("SlotCoverageLost", failed_at) {
            break Some(at);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    agent.proc.check_running();
    // Not a figure that missed a target: a failure the agent never showed.
    let (Some(mark), Some(coverage)) = (fail_mark, coverage) else {
        panic!(
        "{n} nodes: 30 s after the failure of {old}: fail mark {fail_mark:?}, SlotCoverageLost {coverage:?}; log {}",
                agent.proc.log.display()
        );
    };
    Scale {
        nodes: n,
        seconds,
        per_poll,
        rss,
        peak_rss,
        body_bytes: ours.bytes,
        series,
        metrics: summarize(&ours.metrics).expect("scrapes"),
        cached: summarize(&ours.cached).expect("scrapes"),
        healthy: summarize(&ours.healthy).expect("scrapes"),
        to_fail_mark: mark - declared_unix,
        to_coverage_lost: coverage.checked_duration_since(declared).map_or_else(
            || -declared.duration_since(coverage).as_secs_f64(),
            |d| d.as_secs_f64(),
        ),
    }
}

/// When the timeline of the failover of `old` marked `fail`, if it has.
fn fail_mark_of(http: &ureq::Agent, base: &str, old: &str) -> Option<f64> {
    let text = get_text(http, &format!("{base}/api/v1/failovers?deployment=sim")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["failovers"]
        .as_array()?
        .iter()
        .filter(|t| t["old_master"] == old)
        .flat_map(|t| t["marks"].as_array().cloned().unwrap_or_default())
        .find(|m| m["name"] == "fail")
        .and_then(|m| m["at"].as_f64())
}
