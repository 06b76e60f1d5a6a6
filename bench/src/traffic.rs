//! Scenario 5: bytes each side reads from Redis, per node per second.
//!
//! The servers count what they send to clients (`INFO stats`
//! `total_net_output_bytes`; replication and the cluster bus are counted
//! elsewhere on 7.0), not per client, so each side gets a window of its own:
//! the agent polling alone, then the agent stopped (SIGSTOP: its
//! connections stay open, nothing is sent) while the peer is scraped once a
//! second for every node. A third window with neither gives what remains
//! (the harness's own reads of the counter, replicas' acks on 6.2); it is
//! subtracted from both.

use std::time::{Duration, Instant};

use redis_ha_lab::Node;

use crate::peer::ScrapePool;

/// Bytes per node per second, each side's window less the idle one.
#[derive(Debug, Clone)]
pub struct Traffic {
    pub nodes: usize,
    pub seconds: u64,
    pub agent: f64,
    pub peer: f64,
    /// What the servers sent with neither side at work.
    pub idle: f64,
}

/// Sum of `total_net_output_bytes` over `nodes`.
fn sent(nodes: &[&Node]) -> u64 {
    nodes
        .iter()
        .map(|n| {
            n.info("stats")
                .ok()
                .and_then(|s| s.get("total_net_output_bytes")?.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("INFO stats of {}", n.addr()))
        })
        .sum()
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a child process the harness started.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

/// Bytes per node per second the servers sent during `seconds`, while
/// `during` runs once a second.
fn window(nodes: &[&Node], seconds: u64, mut during: impl FnMut()) -> f64 {
    let before = sent(nodes);
    let start = Instant::now();
    for tick in 0..seconds {
        std::thread::sleep(
            (start + Duration::from_secs(tick)).saturating_duration_since(Instant::now()),
        );
        during();
    }
    std::thread::sleep(
        (start + Duration::from_secs(seconds)).saturating_duration_since(Instant::now()),
    );
    let after = sent(nodes);
    after.saturating_sub(before) as f64 / (nodes.len() as f64 * seconds as f64)
}

/// The three windows of `seconds` each, the agent (`agent_pid`) running
/// when this starts and when it returns.
pub fn measure(nodes: &[&Node], agent_pid: u32, pool: &ScrapePool, seconds: u64) -> Traffic {
    let agent = window(nodes, seconds, || {});
    signal(agent_pid, libc::SIGSTOP);
    let peer = window(nodes, seconds, || {
        pool.round();
    });
    let idle = window(nodes, seconds, || {});
    signal(agent_pid, libc::SIGCONT);
    Traffic {
        nodes: nodes.len(),
        seconds,
        agent: (agent - idle).max(0.0),
        peer: (peer - idle).max(0.0),
        idle,
    }
}
