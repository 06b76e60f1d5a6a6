//! `CLUSTER SLOT-STATS` read from real servers: a Valkey 8.1 cluster node
//! (from `scripts/servers`, whichever server `REDIS_HA_LAB_SERVER` names:
//! only Valkey 8.0+ and Redis 8.2+ have the command) through RESP2 and
//! RESP3 connections, and the Redis 7.0 of the OS packages, which does not
//! have it.
//!
//! One test in its own binary: it chooses the server binary by setting the
//! lab's variable, which no other test of this process may see.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fred::prelude::*;
use fred::types::RespVersion;
use redis_ha_exporter::client::{client, Purpose};
use redis_ha_exporter::collect::slot_stats::slot_stats;
use redis_ha_exporter::config::Auth;
use redis_ha_exporter::model::SlotStatsReading;
use redis_ha_lab::{Cluster, ClusterOpts, Node, SERVER_ENV};

const TIMEOUT: Duration = Duration::from_secs(2);

/// The Valkey 8.1 binary of `scripts/servers` (fetched once, then cached).
fn valkey() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/servers");
    let out = Command::new(script)
        .args(["path", "valkey-8.1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/servers path valkey-8.1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A one-node cluster of `binary`, every slot on its node.
fn one_node(binary: &str) -> Cluster {
    std::env::set_var(SERVER_ENV, binary);
    Cluster::start(ClusterOpts {
        masters: 1,
        replicas_per_master: 0,
        ..ClusterOpts::default()
    })
}

fn set(node: &Node, key: &str) {
    node.cmd(&["SET", key, "v"]).unwrap();
}

fn slot_of(node: &Node, key: &str) -> u16 {
    let slot = node.cmd(&["CLUSTER", "KEYSLOT", key]).unwrap();
    slot.as_int().unwrap().try_into().unwrap()
}

/// `slot_stats` on `node` through a connection speaking `version`.
async fn read(node: &Node, version: RespVersion, limit: usize) -> Option<SlotStatsReading> {
    let c = match version {
        RespVersion::RESP2 => {
            client(&node.addr(), &Auth::default(), None, TIMEOUT, Purpose::Once).unwrap()
        }
        RespVersion::RESP3 => {
            let mut config = Config::from_url(&format!("redis://{}", node.addr())).unwrap();
            config.version = RespVersion::RESP3;
            Builder::from_config(config).build().unwrap()
        }
    };
    c.init().await.unwrap();
    let stats = slot_stats(&c, limit).await.unwrap();
    c.quit().await.unwrap();
    stats
}

/// Five keys under one hash tag, two under another, one alone: the top two
/// slots are the tags' with 5 and 2 keys, of 8 in all, alike over RESP2 and
/// RESP3; per-slot CPU and bytes only once `cluster-slot-stats-enabled`.
/// Redis 7.0 answers that it has no such command: no statistics, no error.
#[test]
fn slot_stats_of_a_valkey_node_and_none_from_redis_7() {
    let cluster = one_node(&valkey());
    let node = &cluster.nodes[0];
    for i in 0..5 {
        set(node, &format!("{{hot}}{i}"));
    }
    for i in 0..2 {
        set(node, &format!("{{warm}}{i}"));
    }
    set(node, "alone");
    let (hot, warm) = (slot_of(node, "{hot}"), slot_of(node, "{warm}"));

    let redis = one_node("redis-server");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let resp2 = read(node, RespVersion::RESP2, 2).await.unwrap();
        let top: Vec<(u16, u64)> = resp2.top.iter().map(|s| (s.slot, s.keys)).collect();
        assert_eq!(top, [(hot, 5), (warm, 2)]);
        assert_eq!(resp2.keys, 8);
        assert!(resp2.top.iter().all(|s| s.cpu_usec.is_none()));
        assert_eq!(read(node, RespVersion::RESP3, 2).await, Some(resp2));

        node.cmd(&["CONFIG", "SET", "cluster-slot-stats-enabled", "yes"])
            .unwrap();
        node.cmd(&["GET", "{hot}0"]).unwrap();
        let enabled = read(node, RespVersion::RESP3, 1).await.unwrap();
        assert_eq!(enabled.top.len(), 1);
        let s = enabled.top[0];
        assert_eq!((s.slot, s.keys), (hot, 5));
        assert!(
            s.cpu_usec.is_some() && s.network_bytes_in.is_some_and(|b| b > 0),
            "{s:?}"
        );
        assert_eq!(
            read(node, RespVersion::RESP2, 1).await.unwrap().top[0].slot,
            hot
        );

        assert_eq!(read(&redis.nodes[0], RespVersion::RESP2, 2).await, None);
    });
}
