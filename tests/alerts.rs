//! The built-in alert rules against real servers (delivery to receivers is
//! not here yet): they fire and resolve as the lab breaks and heals.

mod support;

use std::time::Duration;

use redis_ha_lab::{Cluster, ClusterOpts, SentinelGroup, SentinelOpts};
use serde_json::Value;
use support::{cluster_deployment, sentinel_deployment, Agent};

const LONG: Duration = Duration::from_secs(40);

const RULES: &str = "alerts:\n  rules:\n    ReplicaLagHigh: { for: 1s, lag_bytes: 10000 }\n    SentinelQuorumLost: { for: 1s }\n    TargetDown: { for: 1s }\n    SlotCoverageLost: { annotations: { runbook_url: \"https://runbooks/coverage\" } }\n";

fn firing(agent: &Agent, name: &str) -> Vec<Value> {
    agent.json("/api/v1/alerts")["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["alertname"] == name)
        .cloned()
        .collect()
}

/// Must show 6, sentinel side: a frozen replica under writes fires
/// ReplicaLagHigh; two of three sentinels frozen fire SentinelQuorumLost;
/// both resolve when the servers resume.
#[test]
fn lag_and_quorum_rules_fire_and_resolve() {
    let group = SentinelGroup::start(SentinelOpts {
        down_after_ms: 5000,
        ..SentinelOpts::default()
    });
    let agent = Agent::start_full(
        &sentinel_deployment("s", &[group.sentinels[0].addr()]),
        RULES,
        &[],
    );
    agent.wait_metrics("all targets up", LONG, |m| {
        m.find("redis_ha_target_up", &[])
            .filter(|s| s.value == 1.0)
            .count()
            == 6
    });
    assert!(
        agent.json("/api/v1/alerts")["alerts"]
            .as_array()
            .unwrap()
            .is_empty(),
        "a healthy group fires nothing"
    );

    let replica = &group.nodes[1];
    replica.freeze();
    // ~300 writes of ~70 bytes each: well over the 10000-byte threshold,
    // far above the replication noise of sentinel hellos.
    for i in 0..300 {
        group.nodes[0]
            .cmd(&["SET", &format!("k{i}"), "a value that has to be replicated"])
            .unwrap();
    }
    agent.wait_until("ReplicaLagHigh for the frozen replica", LONG, |a| {
        firing(a, "ReplicaLagHigh")
            .iter()
            .any(|x| x["labels"]["node"] == replica.addr().as_str())
    });
    let alert = firing(&agent, "ReplicaLagHigh").remove(0);
    assert_eq!(alert["labels"]["shard"], "mymaster");
    assert_eq!(alert["severity"], "warning");
    assert!(alert["annotations"]["summary"]
        .as_str()
        .unwrap()
        .contains("bytes"));
    let m = agent.metrics();
    assert!(
        m.value("redis_ha_alerts_firing", &[("alertname", "ReplicaLagHigh")])
            .unwrap()
            >= 1.0
    );
    replica.resume();
    agent.wait_until("ReplicaLagHigh resolved", LONG, |a| {
        firing(a, "ReplicaLagHigh").is_empty()
    });

    group.sentinels[1].freeze();
    group.sentinels[2].freeze();
    agent.wait_until("SentinelQuorumLost", LONG, |a| {
        !firing(a, "SentinelQuorumLost").is_empty()
    });
    assert_eq!(
        firing(&agent, "SentinelQuorumLost")[0]["severity"],
        "critical"
    );
    group.sentinels[1].resume();
    group.sentinels[2].resume();
    agent.wait_until("SentinelQuorumLost resolved", LONG, |a| {
        firing(a, "SentinelQuorumLost").is_empty()
    });
    agent.wait_metrics("nothing firing", LONG, |m| {
        m.find("redis_ha_alerts_firing", &[])
            .all(|s| s.value == 0.0)
    });
}

/// Must show 6, cluster side: a frozen shard fires SlotCoverageLost (with
/// the configured runbook, and, since the lab's nodes keep Redis's
/// `cluster-require-full-coverage yes`, saying the outage is total), which
/// resolves when it resumes.
#[test]
fn coverage_rule_fires_and_resolves() {
    let cluster = Cluster::start(ClusterOpts {
        masters: 3,
        replicas_per_master: 0,
        ..ClusterOpts::default()
    });
    let agent = Agent::start_full(
        &cluster_deployment("c", &[cluster.nodes[0].addr()]),
        RULES,
        &[],
    );
    agent.wait_metrics("full coverage", LONG, |m| {
        m.value(
            "redis_ha_cluster_slot_coverage_ratio",
            &[("deployment", "c")],
        ) == Some(1.0)
    });
    agent.wait_until("the nodes' settings read", LONG, |a| {
        a.json("/api/v1/findings")["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["check"] == "full_coverage_required")
    });
    cluster.nodes[2].freeze();
    agent.wait_until("SlotCoverageLost", LONG, |a| {
        !firing(a, "SlotCoverageLost").is_empty()
    });
    let alert = firing(&agent, "SlotCoverageLost").remove(0);
    assert_eq!(alert["labels"]["deployment"], "c");
    assert_eq!(
        alert["annotations"]["runbook_url"],
        "https://runbooks/coverage"
    );
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("-16383"),
        "{alert}"
    );
    assert!(
        alert["annotations"]["summary"].as_str().unwrap().ends_with(
            "refuse every other key too (finding full_coverage_required): a total outage there"
        ),
        "{alert}"
    );
    cluster.nodes[2].resume();
    agent.wait_until("SlotCoverageLost resolved", LONG, |a| {
        firing(a, "SlotCoverageLost").is_empty()
    });
}
