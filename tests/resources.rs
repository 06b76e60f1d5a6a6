//! What targets that never answer cost the agent over time: nothing that
//! grows. (A node down for days must not cost memory by the second.)

mod support;

use std::time::Duration;

use support::{cluster_deployment, free_port, Agent};

/// Two hundred cluster seeds where nothing listens: every poll fails to
/// connect. fred queues the commands of a client that is reconnecting; a
/// queue without bound grew by every poll's commands for as long as the
/// targets stayed down (about 0.5 MB a second here). Bounded, the agent's
/// memory stays flat.
#[test]
fn targets_that_never_answer_do_not_grow_memory() {
    let seeds: Vec<String> = (0..200)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let agent = Agent::start(&cluster_deployment("c", &seeds));
    // Past the first polls and the first reconnection backoffs.
    std::thread::sleep(Duration::from_secs(5));
    let before = agent.rss();
    std::thread::sleep(Duration::from_secs(20));
    let after = agent.rss();
    let grown = after.saturating_sub(before);
    eprintln!("RSS {before} -> {after} bytes over 20 s");
    assert!(
        grown < 2 * 1024 * 1024,
        "memory grew by {grown} bytes in 20 s with 200 dead targets"
    );
}
