//! Sentinel events and failover timelines against real servers.

mod support;

use std::time::{Duration, Instant};

use redis_ha_lab::{Cluster, ClusterOpts, SentinelGroup, SentinelOpts};
use serde_json::Value;
use support::{
    check_docs_match, cluster_deployment, has_slot_stats, mark_at, marks, sentinel_deployment,
    Agent, Metrics, CANARY, SLOT_STATS_FAMILIES,
};

const LONG: Duration = Duration::from_secs(40);

/// Mark names in time order, without `last_ok` (the old master's last
/// answer, which may come before or after the first event).
fn events_marks(t: &Value) -> Vec<String> {
    marks(t)
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n != "last_ok")
        .collect()
}

/// The shard a node belongs to, from /api/v1/topology.
fn shard_of(agent: &Agent, node: &str) -> String {
    let topo = agent.json("/api/v1/topology");
    for d in topo["deployments"].as_array().unwrap() {
        for s in d["shards"].as_array().unwrap() {
            if s["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["node"] == node)
            {
                return s["shard"].as_str().unwrap().to_string();
            }
        }
    }
    String::new()
}

fn all_subscribed(m: &Metrics, deployment: &str, n: usize) -> bool {
    let want = [("deployment", deployment)];
    let up: Vec<f64> = m
        .find("redis_ha_sentinel_subscription_up", &want)
        .map(|s| s.value)
        .collect();
    up.len() == n && up.iter().all(|v| *v == 1.0)
}

/// Must show 1 and 5: an automatic failover is one complete timeline; the
/// old master coming back as master is the two-masters window. Also checks
/// docs/metrics.md against /metrics with every family present.
#[test]
fn automatic_sentinel_failover_timeline() {
    let mut group = SentinelGroup::start(SentinelOpts::default());
    let cluster = Cluster::start(ClusterOpts {
        masters: 3,
        replicas_per_master: 0,
        ..ClusterOpts::default()
    });
    // One node refuses the settings read: the "cannot tell" family is
    // served too; the hot-slot ones where the server keeps slot statistics.
    cluster.nodes[2]
        .cmd(&["ACL", "SETUSER", "default", "-config"])
        .unwrap();
    let absent: &[&str] = if has_slot_stats(&cluster.nodes[0]) {
        &[]
    } else {
        &SLOT_STATS_FAMILIES
    };
    // A receiver, so that the delivery families are served too.
    let hook = support::receiver::Receiver::start();
    // The canary on, so that its families are served too.
    let agent = Agent::start_full(
        &format!(
            "{}{CANARY}{}{CANARY}",
            sentinel_deployment("s", &[group.sentinels[0].addr()]),
            cluster_deployment("c", &[cluster.nodes[0].addr()])
        ),
        &format!(
            "timelines:\n  clients_after: 1s\nfindings:\n  settings_interval: 1s\nalerts:\n  state_dir: \"$DIR/state\"\n  receivers:\n    - {{ name: hook, type: webhook, url: \"{}\" }}\n",
            hook.url("/")
        ),
        &[],
    );
    agent.wait_metrics("all subscriptions up and replicas linked", LONG, |m| {
        all_subscribed(m, "s", 3)
            && m.find("redis_ha_replica_link_up", &[("deployment", "s")])
                .count()
                == 2
    });
    let shard = [("deployment", "s"), ("shard", "mymaster")];
    let old_port = group.nodes[0].port();
    let old = group.nodes[0].addr();
    // Writes the replicas have, so the offsets are known before the failure.
    group.nodes[0].cmd(&["SET", "k", "v"]).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    group.nodes[0].freeze();
    agent.wait_metrics("failover in progress", LONG, |m| {
        m.value("redis_ha_failover_in_progress", &shard) == Some(1.0)
    });
    let new_port = group.wait_for_new_master(old_port, LONG);
    let t = agent.ended_failover("s", "the failover's timeline to end", LONG, |t| {
        t["shard"] == "mymaster"
    });
    eprintln!("sentinel timeline: {t:#}");
    assert_eq!(agent.failovers("s").len(), 1, "exactly one timeline");
    assert_eq!(t["outcome"], "completed");
    assert_eq!(t["kind"], "sentinel");
    assert_eq!(t["old_master"], old.as_str());
    let by_name = group.sentinels[1]
        .cmd(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"])
        .unwrap();
    let redis_ha_lab::Reply::Array(parts) = by_name else {
        panic!("{by_name:?}")
    };
    let named = format!(
        "{}:{}",
        parts[0].as_str().unwrap(),
        parts[1].as_str().unwrap()
    );
    let new = group.node(new_port).addr();
    assert_eq!(named, new);
    assert_eq!(
        t["new_master"],
        new.as_str(),
        "the new master is the one Sentinel names"
    );
    let order = [
        "sdown",
        "odown",
        "try_failover",
        "elected",
        "selected",
        "promoted",
        "switched",
        "ended",
    ];
    let times: Vec<f64> = order
        .iter()
        .map(|m| mark_at(&t, m).unwrap_or_else(|| panic!("mark {m} missing: {t}")))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "marks out of order: {:?}",
        marks(&t)
    );
    assert!(
        mark_at(&t, "last_ok").unwrap() <= times[6],
        "the old master answered last before the switch"
    );
    let phase = |p: &str| {
        t["phases"][p]
            .as_f64()
            .unwrap_or_else(|| panic!("phase {p} missing: {t}"))
    };
    for p in [
        "detection",
        "election",
        "promotion",
        "switch",
        "reconfiguration",
        "total",
        "outage",
    ] {
        assert!(phase(p) >= 0.0, "{p}");
    }
    assert!(phase("total") >= phase("switch") && phase("switch") >= phase("detection"));
    assert!((phase("total") - (times[7] - times[0])).abs() < 1e-6);
    assert!(
        phase("total") < 30.0,
        "a failover on loopback takes seconds"
    );
    assert!(!t["epochs"].as_array().unwrap().is_empty());
    assert!(
        t["unreplicated_bytes"].as_u64().is_some(),
        "writes at risk are estimated: {t}"
    );

    let m = agent.wait_metrics("failover metrics", LONG, |m| {
        m.value(
            "redis_ha_failovers_total",
            &[shard[0], shard[1], ("outcome", "completed")],
        ) == Some(1.0)
    });
    assert_eq!(m.value("redis_ha_failover_in_progress", &shard), Some(0.0));
    assert_eq!(
        m.value(
            "redis_ha_failover_phase_seconds_count",
            &[("deployment", "s"), ("phase", "total")]
        ),
        Some(1.0)
    );
    let sum = m
        .value(
            "redis_ha_failover_phase_seconds_sum",
            &[("deployment", "s"), ("phase", "total")],
        )
        .unwrap();
    assert!((sum - phase("total")).abs() < 1e-3);
    assert!(
        m.value("redis_ha_failover_last_duration_seconds", &shard)
            .unwrap()
            > 0.0
    );
    assert!(
        m.value("redis_ha_failover_last_end_timestamp_seconds", &shard)
            .unwrap()
            > 1.7e9
    );
    let switches = m.value(
        "redis_ha_sentinel_events_total",
        &[shard[0], shard[1], ("event", "+switch-master")],
    );
    assert_eq!(
        switches,
        Some(1.0),
        "three sentinels publish it; it is one event"
    );

    // The old master comes back still claiming role master until a sentinel
    // converts it: two masters, measured.
    let started = Instant::now();
    group.node_mut(old_port).resume();
    // Every documented family is served while it lasts (the two-masters
    // ones only then), as documented.
    let mut during = None;
    while started.elapsed() < LONG && during.is_none() {
        let m = agent.metrics();
        let two = m.value("redis_ha_shard_masters", &shard) == Some(2.0)
            && m.value("redis_ha_shard_two_masters_writes", &shard)
                .is_some();
        during = two.then_some(m);
        std::thread::sleep(Duration::from_millis(50));
    }
    let during = during.expect("shard_masters was never 2 while the old master came back");
    assert_eq!(
        during.value("redis_ha_shard_two_masters_writes", &shard),
        Some(0.0),
        "nothing writes to the returning master"
    );
    let t = {
        let mut found = None;
        agent.wait_until("the two-masters window to close", LONG, |a| {
            found = a
                .failovers("s")
                .into_iter()
                .find(|t| !t["two_masters"]["end"].is_null());
            found.is_some()
        });
        found.unwrap()
    };
    let window = &t["two_masters"];
    assert!(window["end"].as_f64().unwrap() > window["start"].as_f64().unwrap());
    let nodes: Vec<&str> = window["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        nodes.contains(&old.as_str()) && nodes.contains(&new.as_str()),
        "{nodes:?}"
    );
    let m = agent.wait_metrics("one master again", LONG, |m| {
        m.value("redis_ha_shard_masters", &shard) == Some(1.0)
    });
    assert_eq!(
        agent.failovers("s").len(),
        1,
        "the returning master opens no second timeline"
    );

    assert!(
        m.value("redis_ha_shard_two_masters_writes", &shard)
            .is_none(),
        "served only while two masters last"
    );
    // Every documented family was served, as documented: the two-masters
    // ones while the old master came back, the clients left behind on it
    // once it is a replica.
    let after = agent.wait_metrics("the old master's clients read", LONG, |m| {
        m.value("redis_ha_failover_clients_left_behind", &shard)
            .is_some()
    });
    check_docs_match(&[&during, &after], absent);
}

/// Must show 2 and 7: a restarted sentinel subscribes again; a manual
/// failover starts at try_failover; its events are counted once.
#[test]
fn manual_failover_and_a_restarted_sentinel() {
    let mut group = SentinelGroup::start(SentinelOpts::default());
    let agent = Agent::start(&sentinel_deployment("s", &[group.sentinels[0].addr()]));
    agent.wait_metrics("all subscriptions up", LONG, |m| all_subscribed(m, "s", 3));
    let restarted = group.sentinels[2].addr();
    group.sentinels[2].kill();
    agent.wait_metrics("the killed sentinel's subscription down", LONG, |m| {
        m.value(
            "redis_ha_sentinel_subscription_up",
            &[("sentinel", &restarted)],
        ) == Some(0.0)
    });
    group.sentinels[2].restart();
    agent.wait_metrics("the restarted sentinel's subscription up", LONG, |m| {
        all_subscribed(m, "s", 3)
    });
    // Wait until the restarted sentinel knows the group again, or it takes no part.
    std::thread::sleep(Duration::from_secs(2));

    let old = group.master_port().unwrap();
    group.sentinels[0]
        .cmd(&["SENTINEL", "FAILOVER", "mymaster"])
        .unwrap();
    let new_port = group.wait_for_new_master(old, LONG);
    let t = agent.ended_failover("s", "the manual failover's timeline", LONG, |_| true);
    assert_eq!(t["outcome"], "completed");
    let names = events_marks(&t);
    assert_eq!(names[0], "try_failover", "{names:?}");
    assert!(
        !names.contains(&"sdown".to_string()) && !names.contains(&"odown".to_string()),
        "{names:?}"
    );
    assert_eq!(t["new_master"], group.node(new_port).addr().as_str());
    assert!(t["phases"]["total"].as_f64().is_some() && t["phases"].get("detection").is_none());

    // All three sentinels, the restarted one included, publish +switch-master
    // (it is in the event log from each), and it counts once.
    agent.wait_until("+switch-master from all three sentinels", LONG, |a| {
        let events = a.json("/api/v1/events?deployment=s");
        let from: std::collections::BTreeSet<&str> = events["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["channel"] == "+switch-master")
            .map(|e| e["sentinel"].as_str().unwrap())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|s| if s == restarted { "restarted" } else { "other" })
            .collect();
        from.contains("restarted") && from.len() == 2
    });
    std::thread::sleep(Duration::from_secs(1));
    let m = agent.metrics();
    let shard = [("deployment", "s"), ("shard", "mymaster")];
    assert_eq!(
        m.value(
            "redis_ha_sentinel_events_total",
            &[shard[0], shard[1], ("event", "+switch-master")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value(
            "redis_ha_sentinel_events_total",
            &[shard[0], shard[1], ("event", "+try-failover")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value(
            "redis_ha_failovers_total",
            &[shard[0], shard[1], ("outcome", "completed")]
        ),
        Some(1.0)
    );
    let since = agent.json("/api/v1/events?since=4102444800")["events"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(since, 0, "no event after the year 2100");
}

/// Must show 3: every replica down, then the master: the failover aborts
/// with Sentinel's reason.
#[test]
fn aborted_sentinel_failover() {
    let group = SentinelGroup::start(SentinelOpts::default());
    let agent = Agent::start(&sentinel_deployment("s", &[group.sentinels[0].addr()]));
    agent.wait_metrics("all subscriptions up", LONG, |m| all_subscribed(m, "s", 3));
    for replica in &group.nodes[1..] {
        replica.freeze();
    }
    // Let the sentinels see the replicas down, so none is a good candidate.
    std::thread::sleep(Duration::from_millis(2500));
    group.nodes[0].freeze();
    let t = agent.ended_failover("s", "an aborted timeline", LONG, |t| {
        t["outcome"] == "aborted"
    });
    assert_eq!(t["abort_reason"], "failover-abort-no-good-slave", "{t}");
    assert!(mark_at(&t, "odown").is_some() && mark_at(&t, "elected").is_some());
    assert!(mark_at(&t, "switched").is_none());
    let shard = [("deployment", "s"), ("shard", "mymaster")];
    agent.wait_metrics("the aborted failover counted", LONG, |m| {
        m.value(
            "redis_ha_failovers_total",
            &[shard[0], shard[1], ("outcome", "aborted")],
        )
        .is_some_and(|v| v >= 1.0)
    });
    for n in &group.nodes {
        n.resume();
    }
}

/// Must show 4: a cluster failover from the views (pfail, fail, promoted,
/// converged), and a manual CLUSTER FAILOVER (no pfail, no fail).
#[test]
fn cluster_failover_timelines() {
    let cluster = Cluster::start(ClusterOpts::default());
    let agent = Agent::start(&cluster_deployment("c", &[cluster.nodes[1].addr()]));
    agent.wait_metrics("six nodes up", LONG, |m| {
        m.find("redis_ha_target_up", &[("deployment", "c")])
            .filter(|s| s.value == 1.0)
            .count()
            == 6
    });
    // Replica i of master m is nodes[masters + m * replicas + i].
    let (old, replica) = (&cluster.nodes[0], &cluster.nodes[3]);
    let shard_before = shard_of(&agent, &old.addr());
    assert_eq!(shard_of(&agent, &replica.addr()), shard_before);
    old.freeze();
    let t = agent.ended_failover("c", "the cluster failover's timeline", LONG, |t| {
        t["old_master"] == old.addr().as_str()
    });
    old.resume();
    eprintln!("cluster timeline: {t:#}");
    assert_eq!(t["outcome"], "completed", "{t}");
    assert_eq!(t["kind"], "cluster");
    assert_eq!(t["new_master"], replica.addr().as_str());
    let order = ["pfail", "fail", "promoted", "converged"];
    let times: Vec<f64> = order
        .iter()
        .map(|m| mark_at(&t, m).unwrap_or_else(|| panic!("mark {m} missing: {t}")))
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{:?}", marks(&t));
    assert!(t["poll_resolution_seconds"].as_f64().unwrap() > 0.0);
    for p in ["detection", "promotion", "convergence", "total", "outage"] {
        assert!(
            t["phases"][p].as_f64().is_some_and(|v| v >= 0.0),
            "{p}: {t}"
        );
    }
    let shard_name = t["shard"].as_str().unwrap().to_string();
    // Must show 5 of the slots issue: the shard keeps its name.
    assert_eq!(shard_name, shard_before);
    agent.wait_until("the old master back in the topology", LONG, |a| {
        shard_of(a, &old.addr()) == shard_before
    });
    assert_eq!(shard_of(&agent, &replica.addr()), shard_before);
    let detail = agent.json(&format!("/api/v1/failovers/{}", t["id"].as_str().unwrap()));
    assert_eq!(detail["id"], t["id"]);
    // The page at the promotion, naming the replica that took over.
    let switched: Vec<Value> = agent.json("/api/v1/alerts")["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["alertname"] == "FailoverSwitched" && a["labels"]["failover"] == t["id"])
        .cloned()
        .collect();
    assert_eq!(switched.len(), 1, "{switched:?}");
    assert_eq!(
        switched[0]["annotations"]["new_master"],
        replica.addr().as_str()
    );
    assert_eq!(switched[0]["severity"], "critical");
    assert_eq!(
        switched[0]["since"].as_f64(),
        mark_at(&t, "promoted"),
        "raised at the promotion"
    );
    assert_eq!(agent.get("/api/v1/failovers/nope").0, 404);

    // A planned failover on another shard's replica.
    let (master2, replica2) = (&cluster.nodes[1], &cluster.nodes[4]);
    agent.wait_metrics("the frozen node back", LONG, |m| {
        m.value("redis_ha_target_up", &[("node", &old.addr())]) == Some(1.0)
    });
    replica2.cmd(&["CLUSTER", "FAILOVER"]).unwrap();
    let t = agent.ended_failover("c", "the manual cluster failover", LONG, |t| {
        t["old_master"] == master2.addr().as_str()
    });
    assert_eq!(t["outcome"], "completed");
    assert_eq!(t["new_master"], replica2.addr().as_str());
    let names = events_marks(&t);
    assert_eq!(names[0], "promoted", "{names:?}");
    assert!(
        !names.iter().any(|n| n == "pfail" || n == "fail"),
        "{names:?}"
    );
    let m = agent.metrics();
    assert_eq!(
        m.value(
            "redis_ha_failovers_total",
            &[
                ("deployment", "c"),
                ("shard", &shard_name),
                ("outcome", "completed")
            ]
        ),
        Some(1.0)
    );
}

/// Must show 6: the agent killed between +odown and the end of the failover
/// comes back with one complete timeline, not two.
#[test]
fn agent_restarted_mid_failover_keeps_one_timeline() {
    let group = SentinelGroup::start(SentinelOpts::default());
    let mut agent = Agent::start_full(
        &sentinel_deployment("s", &[group.sentinels[0].addr()]),
        "timelines:\n  path: $DIR/timelines.jsonl\n  keep_per_shard: 10\n",
        &[],
    );
    agent.wait_metrics("all subscriptions up", LONG, |m| all_subscribed(m, "s", 3));
    let old = group.nodes[0].port();
    group.nodes[0].freeze();
    agent.wait_until("an open timeline with odown", LONG, |a| {
        a.failovers("s")
            .iter()
            .any(|t| t["outcome"].is_null() && mark_at(t, "odown").is_some())
    });
    // Let the change reach the file; then no graceful anything.
    std::thread::sleep(Duration::from_millis(300));
    agent.restart();
    group.wait_for_new_master(old, LONG);
    let t = agent.ended_failover("s", "the resumed timeline to end", LONG, |_| true);
    let all = agent.failovers("s");
    assert_eq!(all.len(), 1, "one timeline, not two: {all:?}");
    assert_eq!(t["outcome"], "completed");
    assert!(
        mark_at(&t, "sdown").is_some() && mark_at(&t, "odown").is_some(),
        "marks from before the restart: {t}"
    );
    assert!(
        mark_at(&t, "switched").is_some() && mark_at(&t, "ended").is_some(),
        "marks from after: {t}"
    );
    // And once more: a restart after the end reads it back, still one.
    agent.restart();
    let all = agent.failovers("s");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["id"], t["id"]);
    assert_eq!(all[0]["outcome"], "completed");
    group.nodes[0].resume();
}
