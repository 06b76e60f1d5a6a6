//! Cluster slot coverage, agreement, open slots and key slots, against real
//! clusters.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use redis_ha_lab::{Cluster, ClusterOpts};
use serde_json::Value;
use support::{cluster_deployment, Agent, Metrics, POLL};

const LONG: Duration = Duration::from_secs(40);

fn slots_api(agent: &Agent) -> Value {
    agent.json("/api/v1/clusters/c/slots")
}

fn gauge(m: &Metrics, name: &str) -> Option<f64> {
    m.value(name, &[("deployment", "c")])
}

/// `redis-ha-exporter slots --cluster ADDR`: its exit code and output.
fn slots_cli(seed: &str) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_redis-ha-exporter"))
        .args(["slots", "--cluster", seed, "--wait", "10s"])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Must show 1 and 2: a healthy 3x1 cluster is fully covered by three
/// shards; with a master and its only replica frozen, exactly that shard's
/// range is uncovered, then covered again after they resume.
#[test]
fn coverage_of_a_healthy_cluster_and_of_a_lost_shard() {
    let cluster = Cluster::start(ClusterOpts::default());
    let agent = Agent::start(&cluster_deployment("c", &[cluster.nodes[0].addr()]));
    let m = agent.wait_metrics("the whole cluster polled", LONG, |m| {
        m.find("redis_ha_target_up", &[])
            .filter(|s| s.value == 1.0)
            .count()
            == 6
            && gauge(m, "redis_ha_cluster_shards_without_replica") == Some(0.0)
    });
    assert_eq!(gauge(&m, "redis_ha_cluster_slot_coverage_ratio"), Some(1.0));
    assert_eq!(gauge(&m, "redis_ha_cluster_uncovered_ranges"), Some(0.0));
    assert_eq!(
        m.value(
            "redis_ha_cluster_slots",
            &[("deployment", "c"), ("state", "uncovered")]
        ),
        Some(0.0)
    );
    assert_eq!(gauge(&m, "redis_ha_cluster_config_consistent"), Some(1.0));
    assert_eq!(gauge(&m, "redis_ha_cluster_config_views"), Some(1.0));
    for state in ["migrating", "importing"] {
        assert_eq!(
            m.value(
                "redis_ha_cluster_open_slots",
                &[("deployment", "c"), ("state", state)]
            ),
            Some(0.0)
        );
    }
    assert_eq!(
        gauge(&m, "redis_ha_cluster_shards_same_host"),
        Some(3.0),
        "every shard is on 127.0.0.1"
    );
    let shard_slots: Vec<f64> = m
        .find("redis_ha_cluster_shard_slots", &[])
        .map(|s| s.value)
        .collect();
    assert_eq!(shard_slots.len(), 3);
    assert_eq!(shard_slots.iter().sum::<f64>(), 16384.0);

    let api = slots_api(&agent);
    let ranges = api["ranges"].as_array().unwrap();
    assert_eq!(ranges.len(), 3, "{api}");
    let shards: std::collections::BTreeSet<&str> = ranges
        .iter()
        .map(|r| r["shard"].as_str().unwrap())
        .collect();
    assert_eq!(shards.len(), 3);
    assert!(ranges.iter().all(|r| r["state"] == "ok"));
    assert_eq!(ranges[0]["start"], 0);
    assert_eq!(ranges[2]["end"], 16383);
    assert_eq!(api["config_consistent"], true);
    assert_eq!(api["divergences"].as_array().unwrap().len(), 0);
    let (code, out) = slots_cli(&cluster.nodes[1].addr());
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("16384/16384 slots covered"), "{out}");

    // Topology: every node with its role.
    let topo = agent.json("/api/v1/topology");
    let nodes: usize = topo["deployments"][0]["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["nodes"].as_array().unwrap().len())
        .sum();
    assert_eq!(nodes, 6);

    // Master 1 and its only replica (nodes[4]) frozen.
    let (master, replica) = (&cluster.nodes[1], &cluster.nodes[4]);
    let lost = ranges
        .iter()
        .find(|r| r["master"] == master.addr().as_str())
        .unwrap()
        .clone();
    let lost_slots = lost["slots"].as_f64().unwrap();
    master.freeze();
    replica.freeze();
    let froze = Instant::now();
    let m = agent.wait_metrics("the shard's slots uncovered", LONG, |m| {
        m.value(
            "redis_ha_cluster_slots",
            &[("deployment", "c"), ("state", "uncovered")],
        ) == Some(lost_slots)
    });
    let took = froze.elapsed();
    // node-timeout (1 s) for the other masters to agree on `fail`, plus two
    // poll intervals; the agreement travels by gossip and this machine runs
    // other tests meanwhile, so allow two more node-timeouts for that.
    assert!(
        took < Duration::from_millis(3000) + 2 * POLL,
        "uncovered after {took:?}"
    );
    assert_eq!(gauge(&m, "redis_ha_cluster_uncovered_ranges"), Some(1.0));
    assert_eq!(
        gauge(&m, "redis_ha_cluster_slot_coverage_ratio"),
        Some((16384.0 - lost_slots) / 16384.0)
    );
    assert!(gauge(&m, "redis_ha_cluster_shards_without_replica").unwrap() >= 1.0);
    let api = slots_api(&agent);
    // (A live master can be briefly `fail?` on a loaded machine: only `fail` counts.)
    let failed: Vec<&Value> = api["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "fail")
        .collect();
    assert_eq!(failed.len(), 1, "{api}");
    assert_eq!(
        (failed[0]["start"].clone(), failed[0]["end"].clone()),
        (lost["start"].clone(), lost["end"].clone())
    );
    assert_eq!(failed[0]["state"], "fail");
    agent.wait_metrics("cluster_state_ok 0", LONG, |m| {
        gauge(m, "redis_ha_cluster_state_ok") == Some(0.0)
    });
    let (code, out) = slots_cli(&cluster.nodes[0].addr());
    assert_eq!(code, Some(1), "uncovered slots make the check fail: {out}");
    assert!(out.contains(" fail "), "{out}");

    master.resume();
    replica.resume();
    agent.wait_metrics("full coverage again", LONG, |m| {
        gauge(m, "redis_ha_cluster_slot_coverage_ratio") == Some(1.0)
            && gauge(m, "redis_ha_cluster_state_ok") == Some(1.0)
            && gauge(m, "redis_ha_cluster_shards_without_replica") == Some(0.0)
    });
}

/// Must show 3 and 4: a slot mid-migration is an open slot with source and
/// target; a slot reassigned on one node only makes the maps diverge.
#[test]
fn open_slots_and_divergent_views() {
    let cluster = Cluster::start(ClusterOpts {
        masters: 3,
        replicas_per_master: 0,
        ..ClusterOpts::default()
    });
    let agent = Agent::start(&cluster_deployment("c", &[cluster.nodes[0].addr()]));
    agent.wait_metrics("three nodes, one map", LONG, |m| {
        m.find("redis_ha_target_up", &[])
            .filter(|s| s.value == 1.0)
            .count()
            == 3
            && gauge(m, "redis_ha_cluster_config_consistent") == Some(1.0)
    });
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let (a_id, b_id) = (cluster.node_id(a.port()), cluster.node_id(b.port()));
    // Slot 100 belongs to nodes[0] (slots are split evenly from 0).
    a.cmd(&["CLUSTER", "SETSLOT", "100", "MIGRATING", &b_id])
        .unwrap();
    b.cmd(&["CLUSTER", "SETSLOT", "100", "IMPORTING", &a_id])
        .unwrap();
    let m = agent.wait_metrics("the open slot", LONG, |m| {
        m.value(
            "redis_ha_cluster_open_slots",
            &[("deployment", "c"), ("state", "migrating")],
        ) == Some(1.0)
            && m.value(
                "redis_ha_cluster_open_slots",
                &[("deployment", "c"), ("state", "importing")],
            ) == Some(1.0)
    });
    assert_eq!(
        gauge(&m, "redis_ha_cluster_slot_coverage_ratio"),
        Some(1.0),
        "an open slot is still served"
    );
    let open = slots_api(&agent)["open_slots"].as_array().unwrap().clone();
    assert_eq!(open.len(), 2, "{open:?}");
    for o in &open {
        assert_eq!(o["slot"], 100);
        assert_eq!(o["source"], a.addr().as_str());
        assert_eq!(o["target"], b.addr().as_str());
    }
    let states: std::collections::BTreeSet<&str> =
        open.iter().map(|o| o["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["importing", "migrating"].into());
    // Finishing the migration (the target first, as redis-cli does) closes
    // both sides, and the slot has a new owner.
    b.cmd(&["CLUSTER", "SETSLOT", "100", "NODE", &b_id])
        .unwrap();
    a.cmd(&["CLUSTER", "SETSLOT", "100", "NODE", &b_id])
        .unwrap();
    agent.wait_metrics("no open slot", LONG, |m| {
        m.find("redis_ha_cluster_open_slots", &[])
            .all(|s| s.value == 0.0)
    });
    agent.wait_metrics("every node knows the new owner", LONG, |m| {
        gauge(m, "redis_ha_cluster_config_consistent") == Some(1.0)
    });
    let api = slots_api(&agent);
    let owner_of_100 = api["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["start"].as_u64() <= Some(100) && r["end"].as_u64() >= Some(100))
        .unwrap()
        .clone();
    assert_eq!(
        (owner_of_100["start"].as_u64(), owner_of_100["end"].as_u64()),
        (Some(100), Some(100)),
        "{api}"
    );
    assert_eq!(owner_of_100["master"], b.addr().as_str());

    // Node a gives slot 200 to b in its own map only: b and c still say a
    // (no epoch was bumped, so nothing propagates).
    a.cmd(&["CLUSTER", "SETSLOT", "200", "NODE", &b_id])
        .unwrap();
    let m = agent.wait_metrics("diverging maps", LONG, |m| {
        gauge(m, "redis_ha_cluster_config_consistent") == Some(0.0)
    });
    assert_eq!(gauge(&m, "redis_ha_cluster_config_views"), Some(2.0));
    let api = slots_api(&agent);
    let div = api["divergences"].as_array().unwrap();
    assert_eq!(div.len(), 1, "{api}");
    assert_eq!(div[0]["node"], a.addr().as_str());
    assert_eq!(
        (div[0]["start"].as_u64(), div[0]["end"].as_u64()),
        (Some(200), Some(200))
    );
    assert_eq!(div[0]["says"], b.addr().as_str());
    assert_eq!(div[0]["majority"], a.addr().as_str());
    // Put it back; views agree again.
    a.cmd(&["CLUSTER", "SETSLOT", "200", "NODE", &a_id])
        .unwrap();
    agent.wait_metrics("one map again", LONG, |m| {
        gauge(m, "redis_ha_cluster_config_consistent") == Some(1.0)
    });
}

/// Must show 6: the reference key slot vectors through the API, and
/// agreement with CLUSTER KEYSLOT of a real server on random keys.
#[test]
fn key_slots_agree_with_the_server() {
    let cluster = Cluster::start(ClusterOpts {
        masters: 3,
        replicas_per_master: 0,
        ..ClusterOpts::default()
    });
    let node = &cluster.nodes[0];
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789:{}._-";
    for i in 0..3000 {
        let len = 1 + (next() % 24) as usize;
        let mut key: String = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize] as char)
            .collect();
        if i % 3 == 0 {
            key = format!("user:{{{}}}:{key}", next() % 1000);
        }
        let server = node
            .cmd(&["CLUSTER", "KEYSLOT", &key])
            .unwrap()
            .as_int()
            .unwrap();
        assert_eq!(
            i64::from(redis_ha_exporter::slots::key_slot(key.as_bytes())),
            server,
            "key {key:?}"
        );
    }

    let agent = Agent::start(&cluster_deployment("c", &[node.addr()]));
    agent.wait_metrics("the slot map", LONG, |m| {
        gauge(m, "redis_ha_cluster_slot_coverage_ratio") == Some(1.0)
    });
    for (key, slot) in [
        ("123456789", 12739),
        ("{user1000}.following", 3443),
        ("foo{}bar", 14292),
    ] {
        let encoded: String = key.bytes().map(|b| format!("%{b:02X}")).collect();
        let v = agent.json(&format!("/api/v1/clusters/c/keyslot?key={encoded}"));
        assert_eq!(v["slot"], slot, "{key}");
        assert_eq!(v["key"], key);
        assert_eq!(v["state"], "ok");
        let owner = cluster
            .nodes
            .iter()
            .find(|n| n.addr() == v["master"].as_str().unwrap())
            .expect("a master");
        let server = owner.cmd(&["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()]);
        assert!(server.is_ok(), "the named master serves slot {slot}");
    }
    assert_eq!(agent.get("/api/v1/clusters/c/keyslot").0, 400);
    assert_eq!(agent.get("/api/v1/clusters/nope/keyslot?key=a").0, 404);
}
