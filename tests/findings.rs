//! Findings against real servers: each provoked, then cleared.

mod support;

use std::time::Duration;

use redis_ha_lab::{SentinelGroup, SentinelOpts};
use serde_json::Value;
use support::{sentinel_deployment, Agent};

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
