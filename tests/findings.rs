//! Findings against real servers: each provoked, then cleared.

mod support;

use std::time::Duration;

use redis_ha_lab::{Cluster, ClusterOpts, SentinelGroup, SentinelOpts};
use serde_json::Value;
use support::{cluster_deployment, sentinel_deployment, Agent};

const LONG: Duration = Duration::from_secs(40);

fn findings(agent: &Agent) -> Vec<Value> {
    agent.json("/api/v1/findings")["findings"]
        .as_array()
        .unwrap()
        .clone()
}

/// The checks found now, with their severity.
fn checks(agent: &Agent) -> Vec<(String, String)> {
    findings(agent)
        .iter()
        .map(|f| {
            (
                f["check"].as_str().unwrap().to_string(),
                f["severity"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `SENTINEL SET mymaster <setting> <value>` on `sentinel`.
fn set(sentinel: &redis_ha_lab::Node, setting: &str, value: &str) {
    sentinel
        .cmd(&["SENTINEL", "SET", "mymaster", setting, value])
        .unwrap();
}

/// The finding of `check` now.
fn finding(agent: &Agent, check: &str) -> Value {
    findings(agent)
        .into_iter()
        .find(|f| f["check"] == check)
        .unwrap()
}

fn wait_for_check(agent: &Agent, check: &str, present: bool) {
    agent.wait_until(&format!("finding {check} present: {present}"), LONG, |a| {
        checks(a).iter().any(|(c, _)| c == check) == present
    });
}

/// The lab's healthy group has nothing of warning or worse but that its
/// sentinels share a host (every lab server is on 127.0.0.1). A quorum of
/// 4 with 3 sentinels is critical until set back; sentinels that disagree
/// on down-after are named until they agree; every replica at priority 0
/// leaves none to promote, until one is put back.
#[test]
fn sentinel_setups_are_checked_and_cleared() {
    let group = SentinelGroup::start(SentinelOpts::default());
    let agent = Agent::start(&sentinel_deployment("s", &[group.sentinels[0].addr()]));
    agent.wait_metrics("every target up", LONG, |m| {
        m.find("redis_ha_target_up", &[])
            .filter(|s| s.value == 1.0)
            .count()
            == 6
    });
    wait_for_check(&agent, "sentinels_share_host", true);
    let healthy = checks(&agent);
    assert_eq!(
        healthy,
        [("sentinels_share_host".into(), "warning".into())],
        "a healthy group: only the lab's one host"
    );
    let m = agent.metrics();
    assert_eq!(
        m.value(
            "redis_ha_finding",
            &[("check", "sentinels_share_host"), ("node", "127.0.0.1")]
        ),
        Some(1.0)
    );

    // A quorum no failover can reach.
    for s in &group.sentinels {
        set(s, "quorum", "4");
    }
    wait_for_check(&agent, "quorum_unreachable", true);
    let f = findings(&agent);
    assert_eq!(f[0]["check"], "quorum_unreachable", "the most severe first");
    assert_eq!(f[0]["severity"], "critical");
    assert_eq!(f[0]["shard"], "mymaster");
    assert_eq!(
        f[0]["action"],
        "SENTINEL SET mymaster quorum 2 on every sentinel, or add sentinels"
    );
    for s in &group.sentinels {
        set(s, "quorum", "2");
    }
    wait_for_check(&agent, "quorum_unreachable", false);

    // One sentinel with another down-after.
    let odd = group.sentinels[1].addr();
    set(&group.sentinels[1], "down-after-milliseconds", "7000");
    wait_for_check(&agent, "sentinel_settings_differ", true);
    let f = finding(&agent, "sentinel_settings_differ");
    let why = f["why"].as_str().unwrap();
    assert!(
        why.contains("down-after-milliseconds") && why.contains(&format!("7000 on {odd}")),
        "{why}"
    );
    set(&group.sentinels[1], "down-after-milliseconds", "1000");
    wait_for_check(&agent, "sentinel_settings_differ", false);

    // No replica Sentinel would promote.
    let replicas: Vec<_> = group.nodes.iter().skip(1).collect();
    for r in &replicas {
        r.cmd(&["CONFIG", "SET", "replica-priority", "0"]).unwrap();
    }
    wait_for_check(&agent, "no_promotable_replica", true);
    let f = finding(&agent, "no_promotable_replica");
    assert_eq!(f["severity"], "critical");
    let why = f["why"].as_str().unwrap();
    for r in &replicas {
        assert!(
            why.contains(&format!("{}: replica-priority 0", r.addr())),
            "{why}"
        );
    }
    replicas[0]
        .cmd(&["CONFIG", "SET", "replica-priority", "100"])
        .unwrap();
    wait_for_check(&agent, "no_promotable_replica", false);
}

/// `redis-cli --cluster reshard`: moves `count` slots from the node `from`
/// to the node `to` (no keys: each slot moves at once).
fn reshard(cluster: &Cluster, from: &redis_ha_lab::Node, to: &redis_ha_lab::Node, count: u32) {
    let out = std::process::Command::new("redis-cli")
        .args(["--cluster", "reshard", &to.addr()])
        .args(["--cluster-from", &cluster.node_id(from.port())])
        .args(["--cluster-to", &cluster.node_id(to.port())])
        .args(["--cluster-slots", &count.to_string(), "--cluster-yes"])
        .output()
        .expect("redis-cli (from the redis-tools package) in PATH");
    assert!(
        out.status.success(),
        "redis-cli --cluster reshard: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The lab's healthy cluster has nothing of warning or worse but that each
/// shard's master and replica share a host (every lab server is on
/// 127.0.0.1). The only replica of a master set not to fail over leaves
/// that master without a candidate, until set back; slots moved from one
/// master to another are imbalanced, until moved back.
#[test]
fn cluster_setups_are_checked_and_cleared() {
    let cluster = Cluster::start(ClusterOpts::default());
    let agent = Agent::start_full(
        &cluster_deployment("c", &[cluster.nodes[0].addr()]),
        "topology_interval: 1s\n",
        &[],
    );
    agent.wait_until("a finding per shard on one host", LONG, |a| {
        checks(a)
            .iter()
            .filter(|(c, _)| c == "shard_shares_host")
            .count()
            == 3
    });
    let healthy: Vec<(String, String)> = checks(&agent)
        .into_iter()
        .filter(|(_, severity)| severity != "info")
        .collect();
    assert_eq!(
        healthy,
        vec![("shard_shares_host".to_string(), "warning".to_string()); 3],
        "a healthy cluster: only the lab's one host"
    );
    let m = agent.metrics();
    assert_eq!(
        m.find(
            "redis_ha_finding",
            &[("check", "shard_shares_host"), ("node", "127.0.0.1")]
        )
        .count(),
        3
    );

    // The only replica of the first master will not fail over.
    let (master, replica) = (&cluster.nodes[0], &cluster.nodes[3]);
    let no_failover = |value: &str| {
        replica
            .cmd(&["CONFIG", "SET", "cluster-replica-no-failover", value])
            .unwrap();
    };
    no_failover("yes");
    wait_for_check(&agent, "no_failover_candidate", true);
    let f = finding(&agent, "no_failover_candidate");
    assert_eq!(f["severity"], "warning");
    assert_eq!(f["node"], master.addr().as_str());
    let why = f["why"].as_str().unwrap();
    assert!(
        why.contains(&format!("{}: nofailover", replica.addr())),
        "{why}"
    );
    no_failover("no");
    wait_for_check(&agent, "no_failover_candidate", false);

    // 2000 of the third master's 5462 slots to the first: 7461 against
    // 3462 once moved (the finding shows up on the way).
    let (first, third) = (&cluster.nodes[0], &cluster.nodes[2]);
    reshard(&cluster, third, first, 2000);
    agent.wait_until("the slots moved", LONG, |a| {
        findings(a).iter().any(|f| {
            f["check"] == "slots_imbalanced" && f["why"].as_str().unwrap().contains("7461")
        })
    });
    let f = finding(&agent, "slots_imbalanced");
    assert_eq!(f["severity"], "info");
    let why = f["why"].as_str().unwrap();
    assert!(
        why.contains("serves 7461 slots") && why.contains("3462 (2.2x)"),
        "{why}"
    );
    reshard(&cluster, first, third, 2000);
    wait_for_check(&agent, "slots_imbalanced", false);
}
