//! The foundation against real servers: discovery, polling, /metrics.

mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis_ha_lab::{Cluster, ClusterOpts, SentinelGroup, SentinelOpts};
use support::{cluster_deployment, sentinel_deployment, Agent, Metrics, POLL, TIMEOUT};

const LONG: Duration = Duration::from_secs(30);
/// A seed address where nothing listens.
const DEAD_SEED: &str = "127.0.0.1:1";

fn node_role(m: &Metrics, dep: &str, node: &str, role: &str) -> Option<f64> {
    m.value(
        "redis_ha_node_role",
        &[("deployment", dep), ("node", node), ("role", role)],
    )
}

/// Must show 1 and 2: a sentinel group (master, 2 replicas, 3 sentinels) and
/// a 3x1 cluster, the sentinel set configured with one sentinel's address.
#[test]
fn sentinel_group_and_cluster_from_one_seed_each() {
    let group = SentinelGroup::start(SentinelOpts::default());
    let cluster = Cluster::start(ClusterOpts::default());
    let agent = Agent::start(&format!(
        "{}{}",
        sentinel_deployment("s", &[group.sentinels[0].addr()]),
        cluster_deployment("c", &[cluster.nodes[0].addr()])
    ));
    let all_sentinels: Vec<String> = group.sentinels.iter().map(|n| n.addr()).collect();
    let all_nodes: Vec<String> = group.nodes.iter().map(|n| n.addr()).collect();
    let m = agent.wait_metrics("every sentinel and node of the group polled", LONG, |m| {
        m.label_values("redis_ha_target_up", "sentinel", &[("deployment", "s")])
            .len()
            == 3
            && m.label_values("redis_ha_target_up", "node", &[("deployment", "s")])
                .len()
                == 3
            && m.find("redis_ha_target_up", &[]).all(|s| s.value == 1.0)
            && m.find("redis_ha_replica_link_up", &[("deployment", "s")])
                .count()
                == 2
    });
    // Must show 2: one sentinel address leads to all of them.
    let mut want = all_sentinels.clone();
    want.sort();
    assert_eq!(
        m.label_values("redis_ha_target_up", "sentinel", &[("deployment", "s")]),
        want
    );
    let mut want = all_nodes.clone();
    want.sort();
    assert_eq!(
        m.label_values("redis_ha_target_up", "node", &[("deployment", "s")]),
        want
    );

    // Roles.
    let master = group.nodes[0].addr();
    assert_eq!(node_role(&m, "s", &master, "master"), Some(1.0));
    for replica in &all_nodes[1..] {
        assert_eq!(node_role(&m, "s", replica, "replica"), Some(1.0));
        assert_eq!(node_role(&m, "s", replica, "master"), Some(0.0));
    }
    // Sentinel agreement and quorum.
    let shard = [("deployment", "s"), ("shard", "mymaster")];
    assert_eq!(m.value("redis_ha_sentinel_agreement", &shard), Some(1.0));
    assert_eq!(m.value("redis_ha_sentinel_quorum_ok", &shard), Some(1.0));
    assert_eq!(m.value("redis_ha_sentinel_quorum", &shard), Some(2.0));
    assert_eq!(
        m.value("redis_ha_sentinel_sentinels_reachable", &shard),
        Some(3.0)
    );
    assert_eq!(m.value("redis_ha_shard_masters", &shard), Some(1.0));
    assert_eq!(
        m.label_values("redis_ha_sentinel_master_info", "node", &shard),
        vec![master.clone()]
    );

    // Cluster.
    let m = agent.wait_metrics("every cluster node polled", LONG, |m| {
        m.find("redis_ha_target_up", &[("deployment", "c")])
            .filter(|s| s.value == 1.0)
            .count()
            == 6
            && m.value("redis_ha_cluster_state_ok", &[("deployment", "c")]) == Some(1.0)
    });
    assert_eq!(
        m.value(
            "redis_ha_cluster_slots",
            &[("deployment", "c"), ("state", "ok")]
        ),
        Some(16384.0)
    );
    assert_eq!(
        m.value(
            "redis_ha_cluster_slots",
            &[("deployment", "c"), ("state", "fail")]
        ),
        Some(0.0)
    );
    assert_eq!(
        m.value("redis_ha_cluster_known_nodes", &[("deployment", "c")]),
        Some(6.0)
    );
    assert_eq!(
        m.label_values("redis_ha_shard_masters", "shard", &[("deployment", "c")])
            .len(),
        3
    );
    assert!(m
        .find("redis_ha_shard_masters", &[("deployment", "c")])
        .all(|s| s.value == 1.0));
    assert_eq!(
        m.find(
            "redis_ha_node_role",
            &[("deployment", "c"), ("role", "master")]
        )
        .filter(|s| s.value == 1.0)
        .count(),
        3
    );
    assert_eq!(
        m.find(
            "redis_ha_node_role",
            &[("deployment", "c"), ("role", "replica")]
        )
        .filter(|s| s.value == 1.0)
        .count(),
        3
    );

    // Replica lag: non-zero while a replica is frozen and writes go to the
    // master, back to 0 after it resumes.
    let frozen = &group.nodes[1];
    let lag = |m: &Metrics| {
        m.value(
            "redis_ha_replica_lag_bytes",
            &[("deployment", "s"), ("node", &frozen.addr())],
        )
    };
    // Sentinel hellos move the master's offset all the time, and master and
    // replica are polled at different moments: wait for a caught-up reading.
    agent.wait_metrics("the replica caught up", LONG, |m| lag(m) == Some(0.0));
    frozen.freeze();
    let writer = std::thread::scope(|scope| {
        let handle = scope.spawn(|| {
            for i in 0..200 {
                group.nodes[0]
                    .cmd(&["SET", &format!("key{i}"), "some value to replicate"])
                    .unwrap();
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        // 200 writes of ~60 bytes each put the frozen replica well over
        // 1000 bytes behind.
        let m = agent.wait_metrics("lag of the frozen replica over 1000 bytes", LONG, |m| {
            lag(m).is_some_and(|v| v > 1000.0)
        });
        handle.join().unwrap();
        m
    });
    let behind = lag(&writer).unwrap();
    let other = writer.value(
        "redis_ha_replica_lag_bytes",
        &[("deployment", "s"), ("node", &group.nodes[2].addr())],
    );
    let seconds = agent.wait_metrics("lag in seconds", LONG, |m| {
        m.value(
            "redis_ha_replica_lag_seconds",
            &[("deployment", "s"), ("node", &frozen.addr())],
        )
        .is_some_and(|v| v > 0.0)
    });
    assert!(
        seconds
            .value(
                "redis_ha_replica_lag_seconds",
                &[("deployment", "s"), ("node", &frozen.addr())]
            )
            .unwrap()
            < 30.0
    );
    assert!(
        other.is_some_and(|v| v < behind),
        "the replica that was not frozen keeps up: {other:?}"
    );
    frozen.resume();
    agent.wait_metrics("lag back to 0 after resume", LONG, |m| lag(m) == Some(0.0));
    agent.wait_metrics("lag seconds back to 0", LONG, |m| {
        m.value(
            "redis_ha_replica_lag_seconds",
            &[("deployment", "s"), ("node", &frozen.addr())],
        ) == Some(0.0)
    });
}

/// Must show 3: a frozen node goes down within 2 poll intervals, every other
/// target keeps polling on time, and /metrics answers in under 100 ms.
#[test]
fn a_frozen_node_delays_nobody() {
    let group = SentinelGroup::start(SentinelOpts {
        // No failover during this test: only a replica freezes, and sentinels
        // should not be busy reconfiguring.
        down_after_ms: 5000,
        ..SentinelOpts::default()
    });
    let agent = Agent::start(&sentinel_deployment("s", &[group.sentinels[0].addr()]));
    agent.wait_metrics("all six targets up", LONG, |m| {
        m.find("redis_ha_target_up", &[])
            .filter(|s| s.value == 1.0)
            .count()
            == 6
    });
    let frozen = group.nodes[2].addr();
    group.nodes[2].freeze();
    let froze_at = SystemTime::now();
    let m = agent.wait_metrics("the frozen node down", LONG, |m| {
        m.value("redis_ha_target_up", &[("node", &frozen)]) == Some(0.0)
    });
    // By the agent's clock: the poll that found it down finished then (the
    // test's own scrapes, slow on a loaded machine, do not count).
    let failed_at = m
        .value(
            "redis_ha_target_last_poll_timestamp_seconds",
            &[("node", &frozen)],
        )
        .unwrap();
    let froze = froze_at.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    let down_after = Duration::from_secs_f64((failed_at - froze).max(0.0));
    assert!(
        down_after <= 2 * POLL,
        "target_up fell to 0 after {down_after:?}, more than 2 poll intervals"
    );

    // For 4 intervals: every other target keeps polling on schedule (a new
    // poll each interval, none failing, each far from the timeout), and
    // scrapes stay fast.
    let failures_of_others = |m: &Metrics| -> f64 {
        m.find("redis_ha_target_poll_failures_total", &[])
            .filter(|s| s.labels.get("node") != Some(&frozen))
            .map(|s| s.value)
            .sum()
    };
    let baseline = failures_of_others(&agent.metrics());
    let mut polls: std::collections::BTreeMap<String, std::collections::BTreeSet<u64>> =
        Default::default();
    let mut scrape_times = Vec::new();
    let watch_until = Instant::now() + 4 * POLL;
    while Instant::now() < watch_until {
        let t = Instant::now();
        let (status, body) = agent.get("/metrics");
        scrape_times.push(t.elapsed());
        assert_eq!(status, 200);
        let m = Metrics::parse(&body);
        for s in m.find("redis_ha_target_last_poll_timestamp_seconds", &[]) {
            let target = format!("{:?}", s.labels);
            if s.labels.get("node") != Some(&frozen) {
                polls
                    .entry(target)
                    .or_default()
                    .insert((s.value * 1000.0) as u64);
            }
        }
        for s in m.find("redis_ha_target_poll_duration_seconds", &[]) {
            if s.labels.get("node") != Some(&frozen) {
                assert!(
                    s.value < TIMEOUT.as_secs_f64() / 2.0,
                    "{:?} took {}s to poll",
                    s.labels,
                    s.value
                );
            }
        }
        assert_eq!(
            m.value("redis_ha_target_up", &[("node", &frozen)]),
            Some(0.0)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(polls.len(), 5, "five other targets");
    for (target, seen) in &polls {
        assert!(
            seen.len() >= 3,
            "{target} polled only {} times in 4 intervals",
            seen.len()
        );
    }
    assert_eq!(
        failures_of_others(&agent.metrics()),
        baseline,
        "another target failed a poll"
    );
    scrape_times.sort();
    let p95 = scrape_times[scrape_times.len() * 95 / 100];
    assert!(
        p95 < Duration::from_millis(100),
        "p95 scrape {p95:?} (all: {scrape_times:?})"
    );
    assert!(
        *scrape_times.last().unwrap() < Duration::from_millis(500),
        "{scrape_times:?}"
    );
    let failures = agent
        .metrics()
        .value("redis_ha_target_poll_failures_total", &[("node", &frozen)])
        .unwrap();
    assert!(failures >= 2.0, "failed polls are counted: {failures}");
    group.nodes[2].resume();
    agent.wait_metrics("the node back up", LONG, |m| {
        m.value("redis_ha_target_up", &[("node", &frozen)]) == Some(1.0)
    });
}

/// Must show 4: after a failover the metrics name the new master; the old
/// master, once back, is a replica.
#[test]
fn sentinel_failover_is_followed() {
    let mut group = SentinelGroup::start(SentinelOpts::default());
    // One of the two seeds is dead: discovery goes on from the other.
    let seeds = [DEAD_SEED.to_string(), group.sentinels[1].addr()];
    let agent = Agent::start(&sentinel_deployment("s", &seeds));
    let old = group.nodes[0].addr();
    let m = agent.wait_metrics("the first master, and all six targets up", LONG, |m| {
        node_role(m, "s", &old, "master") == Some(1.0)
            && m.find("redis_ha_target_up", &[])
                .filter(|s| s.value == 1.0)
                .count()
                == 6
    });
    assert_eq!(
        m.value("redis_ha_target_up", &[("sentinel", DEAD_SEED)]),
        Some(0.0)
    );
    group.nodes[0].freeze();
    let new_port = group.wait_for_new_master(group.nodes[0].port(), LONG);
    let new = group.node(new_port).addr();
    let shard = [("deployment", "s"), ("shard", "mymaster")];
    let m = agent.wait_metrics(
        "the new master in node_role and sentinel_master_info",
        LONG,
        |m| {
            node_role(m, "s", &new, "master") == Some(1.0)
                && m.label_values("redis_ha_sentinel_master_info", "node", &shard)
                    == vec![new.clone()]
        },
    );
    assert_eq!(m.value("redis_ha_target_up", &[("node", &old)]), Some(0.0));
    assert_eq!(
        node_role(&m, "s", &old, "master"),
        None,
        "a node that does not answer has no role"
    );
    assert!(m.value("redis_ha_sentinel_config_epoch", &shard).unwrap() >= 1.0);
    let port = group.nodes[0].port();
    group.node_mut(port).resume();
    let m = agent.wait_metrics("the old master back as a replica", LONG, |m| {
        node_role(m, "s", &old, "replica") == Some(1.0)
            && m.value("redis_ha_shard_masters", &shard) == Some(1.0)
    });
    assert_eq!(node_role(&m, "s", &new, "master"), Some(1.0));
    assert_eq!(m.value("redis_ha_sentinel_agreement", &shard), Some(1.0));
}

/// Must show 5: a node that joins the cluster appears; a node removed from
/// it disappears from /metrics entirely.
#[test]
fn cluster_nodes_join_and_leave() {
    let mut cluster = Cluster::start(ClusterOpts {
        masters: 3,
        replicas_per_master: 0,
        ..ClusterOpts::default()
    });
    let agent = Agent::start(&cluster_deployment(
        "c",
        &[DEAD_SEED.into(), cluster.nodes[0].addr()],
    ));
    agent.wait_metrics("three nodes", LONG, |m| {
        m.find("redis_ha_target_up", &[])
            .filter(|s| s.value == 1.0)
            .count()
            == 3
    });
    let port = cluster.add_node();
    let joined = cluster.node(port).addr();
    let m = agent.wait_metrics("the new node", LONG, |m| {
        m.value("redis_ha_target_up", &[("node", &joined)]) == Some(1.0)
            && node_role(m, "c", &joined, "master") == Some(1.0)
    });
    assert_eq!(m.label_values("redis_ha_target_up", "node", &[]).len(), 4);
    cluster.remove_node(port);
    let m = agent.wait_metrics("the removed node gone from every family", LONG, |m| {
        // As a label value, quoted: no other address can contain it.
        !m.text.contains(&format!("\"{joined}\""))
    });
    assert_eq!(m.label_values("redis_ha_target_up", "node", &[]).len(), 3);
    assert!(m.find("redis_ha_target_up", &[]).all(|s| s.value == 1.0));
}
