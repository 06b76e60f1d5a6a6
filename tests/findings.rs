//! Findings against real servers: each provoked, then cleared.

mod support;

use std::time::Duration;

use redis_ha_lab::{Cluster, ClusterOpts, SentinelGroup, SentinelOpts};
use serde_json::Value;
use support::{cluster_deployment, sentinel_deployment, Agent};

const LONG: Duration = Duration::from_secs(40);

/// Settings read every second and entries stale after 3 s, so that each
/// change shows within the test.
/// ConfigurationRisk fires after 1 s instead of 10 min.
const FAST: &str = "findings:\n  settings_interval: 1s\n  stale_after: 3s\nalerts:\n  rules:\n    ConfigurationRisk: { for: 1s }\n";

/// The checks ConfigurationRisk fires for now.
fn risks(agent: &Agent) -> Vec<String> {
    let mut checks: Vec<String> = agent.json("/api/v1/alerts")["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["alertname"] == "ConfigurationRisk")
        .map(|a| a["labels"]["check"].as_str().unwrap().to_string())
        .collect();
    checks.sort();
    checks
}

/// The agent on one deployment, with [`FAST`] findings.
fn agent(deployment: &str) -> Agent {
    Agent::start_full(deployment, FAST, &[])
}

/// The checks of warning or worse, and those of information, now.
fn by_severity(agent: &Agent) -> (Vec<String>, Vec<String>) {
    let (info, worse): (Vec<_>, Vec<_>) = checks(agent).into_iter().partition(|(_, s)| s == "info");
    let names = |v: Vec<(String, String)>| v.into_iter().map(|(c, _)| c).collect();
    (names(worse), names(info))
}

/// `CONFIG SET <setting> <value>` on each node.
fn config_set<'a>(
    nodes: impl IntoIterator<Item = &'a redis_ha_lab::Node>,
    setting: &str,
    value: &str,
) {
    for n in nodes {
        n.cmd(&["CONFIG", "SET", setting, value]).unwrap();
    }
}

/// The findings of `check` now, by the node they name.
fn nodes_of(agent: &Agent, check: &str) -> Vec<String> {
    let mut nodes: Vec<String> = findings(agent)
        .iter()
        .filter(|f| f["check"] == check)
        .map(|f| f["node"].as_str().unwrap_or_default().to_string())
        .collect();
    nodes.sort();
    nodes
}

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
    let agent = agent(&sentinel_deployment("s", &[group.sentinels[0].addr()]));
    agent.wait_metrics("every target up", LONG, |m| {
        m.find("redis_ha_target_up", &[])
            .filter(|s| s.value == 1.0)
            .count()
            == 6
    });
    wait_for_check(&agent, "sentinels_share_host", true);
    wait_for_check(&agent, "writes_at_risk_unbounded", true);
    let (worse, info) = by_severity(&agent);
    assert_eq!(
        worse,
        ["sentinels_share_host"],
        "a healthy group: nothing of warning or worse but the lab's one host"
    );
    assert_eq!(
        info,
        ["writes_at_risk_unbounded"],
        "Redis's default min-replicas-to-write 0"
    );
    let master = group.node(group.master_port().unwrap());
    assert_eq!(
        nodes_of(&agent, "writes_at_risk_unbounded"),
        [master.addr()]
    );
    assert_eq!(
        agent.json("/api/v1/findings")["unknown"],
        serde_json::json!([]),
        "every node's settings readable"
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
    agent.wait_until("ConfigurationRisk for the quorum", LONG, |a| {
        risks(a) == ["quorum_unreachable", "sentinels_share_host"]
    });
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
    agent.wait_until("ConfigurationRisk for the quorum resolved", LONG, |a| {
        risks(a) == ["sentinels_share_host"]
    });

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

    // Writes bounded on the master: nothing at risk without bound.
    config_set([master], "min-replicas-to-write", "1");
    wait_for_check(&agent, "writes_at_risk_unbounded", false);
}

/// A sentinel gone without `SENTINEL RESET` is named by the sentinels that
/// still count it, once it has been down for `stale_after`, and forgotten
/// once they are reset.
#[test]
fn a_sentinel_removed_without_reset_is_stale_until_reset() {
    let mut group = SentinelGroup::start(SentinelOpts::default());
    let agent = agent(&sentinel_deployment("s", &[group.sentinels[0].addr()]));
    wait_for_check(&agent, "sentinels_share_host", true);
    assert!(!checks(&agent).iter().any(|(c, _)| c == "stale_sentinel"));
    let gone = group.sentinels[2].addr();
    group.sentinels[2].kill();
    let mut holders = [group.sentinels[0].addr(), group.sentinels[1].addr()];
    holders.sort();
    let both = format!("SENTINEL RESET mymaster on {},", holders.join(", "));
    // Each sentinel's own clock passes the mark at its own poll.
    agent.wait_until("both sentinels name the gone one", LONG, |a| {
        findings(a).iter().any(|f| {
            f["check"] == "stale_sentinel" && f["action"].as_str().unwrap().contains(&both)
        })
    });
    let f = finding(&agent, "stale_sentinel");
    assert_eq!(f["severity"], "warning");
    assert_eq!(f["node"], gone.as_str());
    for s in &group.sentinels[..2] {
        s.cmd(&["SENTINEL", "RESET", "mymaster"]).unwrap();
    }
    wait_for_check(&agent, "stale_sentinel", false);
}

/// A replica whose ACL refuses `REPLICAOF` stays on the old master after a
/// failover: named once it has done so past failover-timeout (4 s in the
/// lab), naming the master it follows; cleared once Sentinel can move it.
#[test]
fn a_replica_sentinel_cannot_move_is_named() {
    let group = SentinelGroup::start(SentinelOpts::default());
    let agent = agent(&sentinel_deployment("s", &[group.sentinels[0].addr()]));
    wait_for_check(&agent, "sentinels_share_host", true);
    let old = group.master_port().unwrap();
    let stuck = group.nodes.iter().find(|n| n.port() != old).unwrap();
    config_set([stuck], "replica-priority", "0");
    stuck
        .cmd(&["ACL", "SETUSER", "default", "-replicaof", "-slaveof"])
        .unwrap();
    group.sentinels[0]
        .cmd(&["SENTINEL", "FAILOVER", "mymaster"])
        .unwrap();
    let new = group.wait_for_new_master(old, LONG);
    let expected = format!("still follows 127.0.0.1:{old}, not the master 127.0.0.1:{new}");
    // Named once past failover-timeout: the replica, the master it follows
    // and the one it should.
    agent.wait_until("the stuck replica named", LONG, |a| {
        findings(a).iter().any(|f| {
            f["check"] == "replica_follows_other_master"
                && f["node"] == stuck.addr().as_str()
                && f["why"].as_str().unwrap().contains(&expected)
        })
    });
    let all = findings(&agent);
    assert_eq!(
        nodes_of(&agent, "replica_follows_other_master"),
        [stuck.addr()],
        "only the stuck replica: {all:?}"
    );
    assert_eq!(
        finding(&agent, "replica_follows_other_master")["severity"],
        "warning"
    );
    stuck.cmd(&["ACL", "SETUSER", "default", "+@all"]).unwrap();
    wait_for_check(&agent, "replica_follows_other_master", false);
}

/// A healthy lab cluster: Redis's defaults said as information; each
/// setting changed makes or clears its finding.
#[test]
fn cluster_settings_are_checked_and_cleared() {
    let cluster = Cluster::start(ClusterOpts::default());
    let agent = agent(&cluster_deployment("c", &[cluster.nodes[0].addr()]));
    wait_for_check(&agent, "full_coverage_required", true);
    agent.wait_until("every master's settings read", LONG, |a| {
        nodes_of(a, "writes_at_risk_unbounded").len() == 3
    });
    let (worse, info) = by_severity(&agent);
    assert!(
        worse.iter().all(|c| SAME_HOST.contains(&c.as_str())),
        "a healthy cluster: nothing of warning or worse but the lab's one host: {worse:?}"
    );
    assert_eq!(
        info,
        [
            "writes_at_risk_unbounded",
            "writes_at_risk_unbounded",
            "writes_at_risk_unbounded",
            "full_coverage_required"
        ]
    );
    let mut masters: Vec<String> = cluster.nodes[..3].iter().map(|n| n.addr()).collect();
    masters.sort();
    assert_eq!(nodes_of(&agent, "writes_at_risk_unbounded"), masters);
    let why = finding(&agent, "full_coverage_required")["why"].clone();
    assert!(why.as_str().unwrap().starts_with("6 of 6 nodes"), "{why}");

    // Partial coverage allowed on some nodes: still said, with how many.
    config_set(&cluster.nodes[..5], "cluster-require-full-coverage", "no");
    agent.wait_until("one node left requiring full coverage", LONG, |a| {
        finding(a, "full_coverage_required")["why"]
            .as_str()
            .is_some_and(|w| w.starts_with("1 of 6 nodes"))
    });
    config_set(&cluster.nodes[5..], "cluster-require-full-coverage", "no");
    wait_for_check(&agent, "full_coverage_required", false);

    // Availability zones, where the server has them (Valkey 8+).
    let zones = cluster.nodes[0]
        .cmd(&["CONFIG", "GET", "availability-zone"])
        .unwrap();
    if matches!(&zones, redis_ha_lab::Reply::Array(a) if a.len() == 2) {
        // Master 0 and its replica (node 3) in one zone.
        config_set(
            [&cluster.nodes[0], &cluster.nodes[3]],
            "availability-zone",
            "az1",
        );
        wait_for_check(&agent, "same_zone", true);
        let f = finding(&agent, "same_zone");
        assert_eq!(f["severity"], "warning");
        assert_eq!(f["node"], cluster.nodes[0].addr().as_str());
        config_set([&cluster.nodes[3]], "availability-zone", "az2");
        wait_for_check(&agent, "same_zone", false);
    }

    // Master 1's replica moved to master 0, migration off everywhere:
    // master 1 is left alone while master 0 has a replica to spare.
    config_set(&cluster.nodes, "cluster-allow-replica-migration", "no");
    let master0 = cluster.node_id(cluster.nodes[0].port());
    cluster.nodes[4]
        .cmd(&["CLUSTER", "REPLICATE", &master0])
        .unwrap();
    wait_for_check(&agent, "replica_migration_disabled", true);
    let f = finding(&agent, "replica_migration_disabled");
    assert_eq!(f["severity"], "warning");
    assert_eq!(f["node"], cluster.nodes[1].addr().as_str());
    config_set(
        [&cluster.nodes[4]],
        "cluster-allow-replica-migration",
        "yes",
    );
    wait_for_check(&agent, "replica_migration_disabled", false);
}

/// Keys piled into one slot of master 0: on servers with `CLUSTER
/// SLOT-STATS` (Valkey 8+) a `hot_slots` warning naming the slot and the
/// hot-slot metrics, cleared once the keys are gone; elsewhere neither.
#[test]
fn hot_slots_from_slot_stats() {
    let cluster = Cluster::start(ClusterOpts::default());
    let agent = agent(&cluster_deployment("c", &[cluster.nodes[0].addr()]));
    let master = &cluster.nodes[0];
    // A hash tag of a slot master 0 serves (0..=5460 in the lab).
    let (tag, slot) = (0..)
        .map(|i| format!("t{i}"))
        .map(|t| {
            let slot = master.cmd(&["CLUSTER", "KEYSLOT", &t]).unwrap();
            (t, slot.as_int().unwrap())
        })
        .find(|(_, slot)| *slot <= 5460)
        .unwrap();
    for batch in 0..12 {
        let mut mset = vec!["MSET".to_string()];
        for i in 0..100 {
            mset.push(format!("{{{tag}}}:{batch}:{i}"));
            mset.push("v".into());
        }
        let args: Vec<&str> = mset.iter().map(String::as_str).collect();
        master.cmd(&args).unwrap();
    }
    let has = master
        .cmd(&["CLUSTER", "SLOT-STATS", "SLOTSRANGE", "0", "0"])
        .is_ok();
    if has {
        wait_for_check(&agent, "hot_slots", true);
        let f = finding(&agent, "hot_slots");
        assert_eq!(f["severity"], "warning");
        assert_eq!(f["node"], master.addr().as_str());
        let why = f["why"].as_str().unwrap();
        assert!(why.contains(&format!("slot {slot}")), "{why}");
        let m = agent.metrics();
        assert_eq!(
            m.value(
                "redis_ha_cluster_hot_slot_keys",
                &[("slot", &slot.to_string())]
            ),
            Some(1200.0)
        );
        master.cmd(&["FLUSHALL"]).unwrap();
        wait_for_check(&agent, "hot_slots", false);
    } else {
        wait_for_check(&agent, "full_coverage_required", true);
        std::thread::sleep(Duration::from_secs(2));
        assert!(!checks(&agent).iter().any(|(c, _)| c == "hot_slots"));
        let m = agent.metrics();
        assert_eq!(m.find("redis_ha_cluster_hot_slot_keys", &[]).count(), 0);
    }
}

/// A cluster replica whose link stays down (its master's ACL refuses
/// `PSYNC`) past what its `cluster-replica-validity-factor` allows (set to
/// 1, with a 1 s ping period: 3 s with the lab's 1 s node timeout) is
/// named; once it syncs again it is not.
#[test]
fn a_cluster_replica_too_stale_to_take_over_is_named() {
    let cluster = Cluster::start(ClusterOpts::default());
    let agent = agent(&cluster_deployment("c", &[cluster.nodes[0].addr()]));
    let (master, replica) = (&cluster.nodes[0], &cluster.nodes[3]);
    config_set([replica], "cluster-replica-validity-factor", "1");
    config_set([replica], "repl-ping-replica-period", "1");
    wait_for_check(&agent, "full_coverage_required", true);
    assert!(nodes_of(&agent, "replica_too_stale").is_empty());
    master
        .cmd(&["ACL", "SETUSER", "default", "-psync", "-sync", "-replconf"])
        .unwrap();
    master.cmd(&["CLIENT", "KILL", "TYPE", "replica"]).unwrap();
    agent.wait_until("the stale replica named", LONG, |a| {
        nodes_of(a, "replica_too_stale") == [replica.addr()]
    });
    let f = finding(&agent, "replica_too_stale");
    assert_eq!(f["severity"], "warning");
    let why = f["why"].as_str().unwrap();
    assert!(
        why.contains("beyond the 3 s cluster-replica-validity-factor 1 allows"),
        "{why}"
    );
    master.cmd(&["ACL", "SETUSER", "default", "+@all"]).unwrap();
    wait_for_check(&agent, "replica_too_stale", false);
}

/// Findings the lab always has: every server listens on 127.0.0.1.
const SAME_HOST: [&str; 2] = ["sentinels_share_host", "shard_shares_host"];

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
    let (worse, _) = by_severity(&agent);
    assert_eq!(
        worse,
        vec!["shard_shares_host"; 3],
        "a healthy cluster: nothing of warning or worse but the lab's one host"
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
