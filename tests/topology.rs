//! Adaptive `CLUSTER NODES` reads against real clusters, with a
//! `topology_interval` far longer than the polls (docs/architecture.md,
//! "Cluster topology"): a master's failure still reaches the timeline within
//! two polls of a node flagging it, an opened slot within the documented
//! bound, and the nodes are asked for `CLUSTER NODES` a few times, not at
//! every poll.

mod support;

use std::time::{Duration, Instant};

use redis_ha_lab::{Cluster, ClusterOpts, Node};
use support::{cluster_deployment, mark_at, unix_now, Agent, POLL};

const LONG: Duration = Duration::from_secs(60);

/// Thirty poll rounds: each node's own turn comes every 15 s.
const TOPOLOGY_INTERVAL: Duration = Duration::from_secs(15);

fn start(cluster: &Cluster) -> Agent {
    let agent = Agent::start_full(
        &cluster_deployment("c", &[cluster.nodes[1].addr()]),
        &format!("topology_interval: {}s\n", TOPOLOGY_INTERVAL.as_secs()),
        &[],
    );
    agent.wait_metrics("six nodes up", LONG, |m| {
        m.find("redis_ha_target_up", &[("deployment", "c")])
            .filter(|s| s.value == 1.0)
            .count()
            == 6
    });
    agent
}

/// `CLUSTER NODES` calls the node has served, where the server counts
/// subcommands (Redis 7.0+, Valkey); `None` on Redis 6.2, which counts only
/// `CLUSTER` as a whole.
fn nodes_calls(node: &Node) -> Option<u64> {
    let stats = node.cmd(&["INFO", "commandstats"]).ok()?;
    let text = stats.as_str()?.to_string();
    text.lines()
        .find_map(|l| l.strip_prefix("cmdstat_cluster|nodes:calls="))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
}

/// Must show: with reads of `CLUSTER NODES` spread over 15 s, a frozen
/// master's `pfail` mark comes within two polls of the first node flagging
/// it, and the failover is followed to the end as before. In a quiet window
/// the six nodes are asked for `CLUSTER NODES` a few times, not at every
/// poll (twelve times each).
#[test]
fn a_long_topology_interval_still_sees_a_failure_within_two_polls() {
    let cluster = Cluster::start(ClusterOpts::default());
    let agent = start(&cluster);
    let window = Duration::from_secs(6);
    let before: Vec<Option<u64>> = cluster.nodes.iter().map(nodes_calls).collect();
    std::thread::sleep(window);
    let after: Vec<Option<u64>> = cluster.nodes.iter().map(nodes_calls).collect();
    if let (Some(b), Some(a)) = (
        before.iter().copied().sum::<Option<u64>>(),
        after.iter().copied().sum::<Option<u64>>(),
    ) {
        // Every poll would be 6 x 12 = 72; turns every 15 s give about 3;
        // the two counting calls themselves are not CLUSTER NODES.
        let calls = a - b;
        eprintln!("CLUSTER NODES calls in {window:?}: {calls}");
        assert!(calls <= 12, "{calls} CLUSTER NODES calls in {window:?}");
    }

    let (old, replica) = (&cluster.nodes[0], &cluster.nodes[3]);
    let old_id = cluster.node_id(old.port());
    old.freeze();
    // When a node's own view first flags the master, as fast as the test
    // can look (the agent reads CLUSTER NODES far less often).
    let others: Vec<&Node> = cluster
        .nodes
        .iter()
        .filter(|n| n.port() != old.port())
        .collect();
    let deadline = Instant::now() + LONG;
    let flagged = loop {
        let seen = others.iter().any(|n| {
            n.cmd(&["CLUSTER", "NODES"])
                .ok()
                .and_then(|r| r.as_str().map(String::from))
                .is_some_and(|text| {
                    text.lines().any(|l| {
                        l.starts_with(&old_id)
                            && l.split_whitespace()
                                .nth(2)
                                .is_some_and(|f| f.contains("fail"))
                    })
                })
        });
        if seen {
            break unix_now();
        }
        assert!(
            Instant::now() < deadline,
            "no node flagged the frozen master"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let t = agent.ended_failover("c", "the cluster failover's timeline", LONG, |t| {
        t["old_master"] == old.addr().as_str()
    });
    old.resume();
    assert_eq!(t["outcome"], "completed", "{t}");
    assert_eq!(t["new_master"], replica.addr().as_str());
    let pfail = mark_at(&t, "pfail").unwrap_or_else(|| panic!("no pfail mark: {t}"));
    let late = pfail - flagged;
    eprintln!("pfail marked {late:.3}s after a node flagged the master");
    // The test's own look takes up to a few tens of ms per round.
    assert!(
        late <= 2.0 * POLL.as_secs_f64() + 0.1,
        "pfail marked {late:.3}s after the first node flagged the master: {t}"
    );
    for m in ["fail", "promoted", "converged"] {
        assert!(mark_at(&t, m).is_some(), "mark {m} missing: {t}");
    }
}

/// Must show: a slot opened for migration shows only in the own lines of
/// the two nodes, which the agent reads on their turns: it is seen within
/// `topology_interval` (the turn period for six nodes) and a poll.
#[test]
fn an_opened_slot_is_seen_within_the_turn_period() {
    let cluster = Cluster::start(ClusterOpts::default());
    let agent = start(&cluster);
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let (a_id, b_id) = (cluster.node_id(a.port()), cluster.node_id(b.port()));
    // Slot 100 belongs to the first master.
    let opened = Instant::now();
    a.cmd(&["CLUSTER", "SETSLOT", "100", "MIGRATING", &b_id])
        .unwrap();
    b.cmd(&["CLUSTER", "SETSLOT", "100", "IMPORTING", &a_id])
        .unwrap();
    agent.wait_metrics("the open slot", LONG, |m| {
        ["migrating", "importing"].iter().all(|state| {
            m.value(
                "redis_ha_cluster_open_slots",
                &[("deployment", "c"), ("state", state)],
            ) == Some(1.0)
        })
    });
    let took = opened.elapsed();
    eprintln!("open slot seen after {took:?}");
    assert!(
        took <= TOPOLOGY_INTERVAL + 2 * POLL,
        "open slot seen after {took:?}, beyond the turn period"
    );
    a.cmd(&["CLUSTER", "SETSLOT", "100", "NODE", &a_id])
        .unwrap();
    b.cmd(&["CLUSTER", "SETSLOT", "100", "NODE", &a_id])
        .unwrap();
}
