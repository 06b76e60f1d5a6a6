//! Deployments that announce hostnames are followed by hostname: the agent
//! connects to, and names, `localhost:<port>` rather than an IP address.

mod support;

use std::time::Duration;

use redis_ha_lab::{server_major_version, Cluster, ClusterOpts, SentinelGroup, SentinelOpts};
use support::{cluster_deployment, sentinel_deployment, Agent};

const LONG: Duration = Duration::from_secs(60);

/// Sentinels with `announce-hostnames yes` (replicas announcing a hostname)
/// and, on Redis 7.0+ (`cluster-announce-hostname` does not exist before),
/// a cluster announcing one: every target is polled under its hostname, and
/// a failover's timeline names the hosts.
#[test]
fn announced_hostnames_are_followed() {
    let host = Some("localhost".to_string());
    let group = SentinelGroup::start(SentinelOpts {
        hostname: host.clone(),
        ..SentinelOpts::default()
    });
    let with_cluster = server_major_version().is_some_and(|v| v >= 7);
    let cluster = with_cluster.then(|| {
        Cluster::start(ClusterOpts {
            hostname: host,
            ..ClusterOpts::default()
        })
    });
    let mut deployments =
        sentinel_deployment("s", &[format!("localhost:{}", group.sentinels[0].port())]);
    if let Some(c) = &cluster {
        deployments += &cluster_deployment("c", &[format!("localhost:{}", c.nodes[0].port())]);
    }
    let agent = Agent::start(&deployments);
    let expected = if with_cluster { 12 } else { 6 };
    let m = agent.wait_metrics("every target up by hostname", LONG, |m| {
        m.find("redis_ha_target_up", &[])
            .filter(|s| s.value == 1.0)
            .count()
            == expected
    });
    for s in m.find("redis_ha_target_up", &[]) {
        let addr = s.labels.get("node").or(s.labels.get("sentinel")).unwrap();
        assert!(addr.starts_with("localhost:"), "{addr}");
    }
    if cluster.is_some() {
        assert_eq!(
            m.value("redis_ha_cluster_slot_coverage_ratio", &[]),
            Some(1.0)
        );
        // Replicas are matched to their masters' INFO (which lists IPs).
        let lags: Vec<f64> = m
            .find("redis_ha_replica_lag_bytes", &[("deployment", "c")])
            .map(|s| s.value)
            .collect();
        assert_eq!(lags.len(), 3, "{lags:?}");
        assert_eq!(
            m.value("redis_ha_cluster_shards_without_replica", &[]),
            Some(0.0)
        );
    }
    assert_eq!(
        m.value(
            "redis_ha_shard_replicas_healthy",
            &[("deployment", "s"), ("shard", "mymaster")]
        ),
        Some(2.0)
    );

    let old = group.master_port().unwrap();
    group.node(old).freeze();
    let new = group.wait_for_new_master(old, LONG);
    group.node(old).resume();
    agent.wait_until("the failover's timeline, by hostname", LONG, |a| {
        a.failovers("s").iter().any(|f| {
            f["outcome"] == "completed"
                && f["old_master"].as_str() == Some(&format!("localhost:{old}"))
                && f["new_master"].as_str() == Some(&format!("localhost:{new}"))
        })
    });
}
