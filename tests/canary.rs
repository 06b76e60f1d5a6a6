//! The canary probe against real servers: what clients lose in a sentinel
//! and a cluster failover, measured by the agent and checked against what
//! the test sees itself; and no write at all while the canary is off.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use redis_ha_lab::{Cluster, ClusterOpts, Node, SentinelGroup, SentinelOpts};
use serde_json::Value;
use support::{cluster_deployment, mark_at, sentinel_deployment, unix_now, Agent, CANARY};

const LONG: Duration = Duration::from_secs(60);

/// The shard whose master is `master`, and its canary.
fn shard_of(agent: &Agent, deployment: &str, master: &str) -> Option<(String, Value)> {
    agent
        .shards(deployment)
        .into_iter()
        .find(|s| s["master"] == master)
        .map(|s| {
            (
                s["shard"].as_str().unwrap().to_string(),
                s["canary"].clone(),
            )
        })
}

/// The canary of one shard, as /api/v1/topology shows it.
fn canary(agent: &Agent, deployment: &str, shard: &str) -> Value {
    agent
        .shards(deployment)
        .into_iter()
        .find(|s| s["shard"] == shard)
        .map(|s| s["canary"].clone())
        .unwrap_or_default()
}

/// Waits until the canary of every shard of `deployment` writes to its
/// master; returns the shards' names.
fn canaries_up(agent: &Agent, deployment: &str, count: usize) -> Vec<String> {
    agent.wait_until("every shard's canary writing to its master", LONG, |a| {
        let s = a.shards(deployment);
        s.len() == count
            && s.iter()
                .all(|s| s["canary"]["up"] == true && s["canary"]["node"] == s["master"])
    });
    agent
        .shards(deployment)
        .iter()
        .map(|s| s["shard"].as_str().unwrap().to_string())
        .collect()
}

/// The sequence number of a canary value `<seq>:<unix_ms>`.
fn seq_of(value: &str) -> u64 {
    value.split(':').next().unwrap().parse().unwrap()
}

/// Reads one RESP2 reply from `r`: a bulk string's text, a simple
/// string's, or `None` for nil and errors.
fn reply(r: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let line = line.trim_end();
    match line.as_bytes().first() {
        Some(b'$') if line != "$-1" => {
            let mut body = String::new();
            r.read_line(&mut body).unwrap();
            Some(body.trim_end().to_string())
        }
        Some(b'+') => Some(line[1..].to_string()),
        _ => None,
    }
}

/// `GET key` on the node at `addr` as the test's own client; on a cluster
/// replica after `READONLY`, which replicas need to answer reads.
fn get(addr: &str, key: &str, cluster_replica: bool) -> Option<String> {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut request = String::new();
    if cluster_replica {
        request += "*1\r\n$8\r\nREADONLY\r\n";
    }
    request += &format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len());
    conn.write_all(request.as_bytes()).unwrap();
    let mut r = BufReader::new(conn);
    if cluster_replica {
        assert_eq!(reply(&mut r).as_deref(), Some("OK"), "READONLY");
    }
    reply(&mut r)
}

/// The commands (lower case) every client sent `addr` during `window`, from `MONITOR`.
fn monitor(addr: &str, window: Duration) -> Vec<String> {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    conn.write_all(b"MONITOR\r\n").unwrap();
    let mut r = BufReader::new(conn);
    let mut seen = Vec::new();
    let until = Instant::now() + window;
    while Instant::now() < until {
        let mut line = String::new();
        if r.read_line(&mut line).is_err() {
            continue;
        }
        // +1795611704.123456 [0 127.0.0.1:51234] "INFO" "replication"
        if let Some(command) = line.split("] \"").nth(1).and_then(|c| c.split('"').next()) {
            seen.push(command.to_lowercase());
        }
    }
    seen
}

/// Stops `replica` from replicating `master` for good (until promoted):
/// its next connection fails authentication, and the master drops the
/// current one. Writes the master acknowledges from now on never reach it,
/// the way a partitioned or lagging replica misses them.
fn cut_replication(master: &Node, replica: &Node) {
    replica
        .cmd(&["CONFIG", "SET", "masteruser", "canary-test-nobody"])
        .unwrap();
    replica
        .cmd(&["CONFIG", "SET", "masterauth", "canary-test-wrong"])
        .unwrap();
    master.cmd(&["CLIENT", "KILL", "TYPE", "replica"]).unwrap();
}

/// Acknowledged sequence numbers above `held` in the canary's records
/// (the `acked` runs of /api/v1/topology) that `node` acknowledged.
fn acked_above(canary: &Value, node: &str, held: u64) -> u64 {
    canary["acked"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["node"] == node)
        .map(|r| {
            let (first, last) = (r["first"].as_u64().unwrap(), r["last"].as_u64().unwrap());
            (last + 1).saturating_sub(first.max(held + 1))
        })
        .sum()
}

/// What the test saw of a provoked loss, to compare with the agent's.
struct Seen {
    /// The sequence number the replica held when its master was frozen.
    held: u64,
    /// The last write the old master acknowledged, as the API showed it.
    last_acked: u64,
    /// Acknowledged writes above `held`, counted from the API's ack records.
    lost: u64,
}

/// Cuts the replica off, lets the canary write to the master alone for a
/// second, freezes the master, and reads what the replica holds and what
/// the master acknowledged.
fn provoke_loss(
    agent: &Agent,
    deployment: &str,
    shard: &str,
    master: &Node,
    replica: &Node,
    cluster: bool,
) -> Seen {
    let key = canary(agent, deployment, shard)["key"]
        .as_str()
        .unwrap()
        .to_string();
    cut_replication(master, replica);
    std::thread::sleep(Duration::from_secs(1));
    master.freeze();
    let held =
        seq_of(&get(&replica.addr(), &key, cluster).expect("the replica holds canary writes"));
    let mut seen = Value::Null;
    agent.wait_until("the canary's writes to fail", LONG, |a| {
        seen = canary(a, deployment, shard);
        seen["up"] == false
    });
    assert_eq!(seen["last_ack"]["node"], master.addr().as_str());
    let last_acked = seen["last_ack"]["seq"].as_u64().unwrap();
    let lost = acked_above(&seen, &master.addr(), held);
    eprintln!(
        "replica held {held}, master acknowledged up to {last_acked}; acked records: {}",
        seen["acked"]
    );
    assert!(lost >= 5, "a second of writes the replica missed: {lost}");
    Seen {
        held,
        last_acked,
        lost,
    }
}

/// Checks the agent's figures for a provoked loss against the test's.
fn check_loss(t: &Value, seen: &Seen, new_master: &str) {
    let c = &t["canary"];
    assert_eq!(c["lost_writes"].as_u64(), Some(seen.lost), "{c:#}");
    assert_eq!(c["read_back"]["seq"].as_u64(), Some(seen.held), "{c:#}");
    assert_eq!(c["read_back"]["node"], new_master);
    assert_eq!(c["last_ack_before"]["seq"].as_u64(), Some(seen.last_acked));
    let ranges = c["lost_seqs"].as_array().unwrap();
    let mut listed = 0;
    for r in ranges {
        let (a, b) = (r[0].as_u64().unwrap(), r[1].as_u64().unwrap());
        assert!(
            seen.held < a && a <= b && b <= seen.last_acked,
            "{r} outside ({}, {}]",
            seen.held,
            seen.last_acked
        );
        listed += b - a + 1;
    }
    assert_eq!(listed, seen.lost);
    assert_eq!(
        c["stale_reads"], 0,
        "the old master was frozen after the switch"
    );
}

/// Checks the figures of a failover whose new master was in sync: no
/// acknowledged write lost, writes unavailable from about the freeze to
/// about the switch.
fn check_in_sync(t: &Value, old: &str, new: &str, frozen_at: f64, switched: &str) {
    let c = &t["canary"];
    assert_eq!(c["lost_writes"], 0, "{c:#}");
    assert_eq!(c["stale_reads"], 0);
    let (before, after) = (&c["last_ack_before"], &c["first_ack_after"]);
    assert_eq!(
        (&before["node"], &after["node"]),
        (&Value::from(old), &Value::from(new))
    );
    let (b, a) = (
        before["at"].as_f64().unwrap(),
        after["at"].as_f64().unwrap(),
    );
    assert!(
        frozen_at - 1.0 <= b && b <= frozen_at + 0.05,
        "the last acknowledged write ({b}) comes just before the freeze ({frozen_at})"
    );
    // The probe learns of the new master from the agent's own events and
    // views, or from a sentinel, which names it once it is promoted.
    let took_over = mark_at(t, "promoted").unwrap();
    let switch = mark_at(t, switched).unwrap();
    assert!(
        took_over - 0.5 <= a && a <= switch + 3.0,
        "the first acknowledged write ({a}) comes after the promotion ({took_over}) and soon after {switched} ({switch})"
    );
    let unavailable = c["write_unavailable_seconds"].as_f64().unwrap();
    assert!((unavailable - (a - b)).abs() < 1e-6, "{c:#}");
    let read_back = c["read_back"]["seq"].as_u64().unwrap();
    assert!(
        read_back >= before["seq"].as_u64().unwrap(),
        "the new master held the last acknowledged write: {c:#}"
    );
    assert_eq!(c["read_back"]["node"], new);
}

/// Must show 1 and 2 on Sentinel. A failover with the replicas in sync
/// (freeze the master): writes unavailable from the freeze to the switch
/// plus reconnection, nothing lost. Then a failover to a replica cut off
/// for a second: the lost writes are exactly those the API's ack records
/// show acknowledged above what the test read on the replica.
#[test]
fn sentinel_failovers_measured_by_the_canary() {
    let group = SentinelGroup::start(SentinelOpts::default());
    let agent = Agent::start(&format!(
        "{}{CANARY}",
        sentinel_deployment("s", &[group.sentinels[0].addr()])
    ));
    canaries_up(&agent, "s", 1);
    agent.wait_metrics("all subscriptions up", LONG, |m| {
        m.find("redis_ha_sentinel_subscription_up", &[])
            .filter(|s| s.value == 1.0)
            .count()
            == 3
    });
    let shard = [("deployment", "s"), ("shard", "mymaster")];
    agent.wait_metrics("a second of acknowledged writes", LONG, |m| {
        m.value("redis_ha_canary_write_latency_seconds_count", &shard) > Some(10.0)
    });
    let old = group.master_port().unwrap();
    let frozen_at = unix_now();
    group.node(old).freeze();
    let new = group.wait_for_new_master(old, LONG);
    let t = agent.ended_failover("s", "the failover with the canary's figures", LONG, |t| {
        !t["canary"].is_null()
    });
    eprintln!("sentinel failover: {t:#}");
    assert_eq!(t["outcome"], "completed");
    let (old_addr, new_addr) = (group.node(old).addr(), group.node(new).addr());
    check_in_sync(&t, &old_addr, &new_addr, frozen_at, "switched");
    let m = agent.wait_metrics("the canary writing again", LONG, |m| {
        m.value("redis_ha_canary_up", &shard) == Some(1.0)
    });
    assert_eq!(
        m.value("redis_ha_canary_lost_writes_total", &shard),
        Some(0.0)
    );
    assert!(m.value("redis_ha_canary_write_unavailable_seconds_count", &shard) >= Some(1.0));
    let under_10ms = m.value(
        "redis_ha_canary_write_latency_seconds_bucket",
        &[shard[0], shard[1], ("le", "0.01")],
    );
    let all = m.value("redis_ha_canary_write_latency_seconds_count", &shard);
    assert!(
        under_10ms > Some(0.0) && under_10ms <= all,
        "writes on loopback take well under 10 ms: {under_10ms:?} of {all:?}"
    );
    group.node(old).resume();

    // Lost writes, provoked: the only healthy replica is cut off.
    agent.wait_until("the old master back as a replica", LONG, |a| {
        canary(a, "s", "mymaster")["up"] == true && a.shards("s")[0]["replicas_healthy"] == 2
    });
    let replica = group
        .nodes
        .iter()
        .filter(|n| n.port() != new)
        .max_by_key(|n| n.port() == old)
        .unwrap();
    // Only the cut-off replica can be promoted: the other one is frozen.
    let other = group
        .nodes
        .iter()
        .find(|n| n.port() != new && n.port() != replica.port())
        .unwrap();
    other.freeze();
    let seen = provoke_loss(&agent, "s", "mymaster", group.node(new), replica, false);
    let newer = group.wait_for_new_master(new, LONG);
    assert_eq!(newer, replica.port(), "the cut-off replica was promoted");
    let t = agent.ended_failover(
        "s",
        "the lossy failover with the canary's figures",
        LONG,
        |t| t["old_master"] == new_addr.as_str() && !t["canary"].is_null(),
    );
    eprintln!("lossy sentinel failover: {t:#}");
    // Its leader tells `+failover-end` before its own `+switch-master`:
    // still one timeline per failover.
    assert_eq!(agent.failovers("s").len(), 2, "{:#?}", agent.failovers("s"));
    check_loss(&t, &seen, &replica.addr());
    let m = agent.wait_metrics("the lost writes counted", LONG, |m| {
        m.value("redis_ha_canary_lost_writes_total", &shard) == Some(seen.lost as f64)
    });
    assert!(m.value("redis_ha_canary_write_unavailable_seconds_count", &shard) >= Some(2.0));
    // FailoverCompleted carries the figures.
    let alerts = agent.json("/api/v1/alerts");
    let completed = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["failover"] == t["id"] && a["alertname"] == "FailoverCompleted")
        .unwrap_or_else(|| panic!("FailoverCompleted fires: {alerts:#}"));
    assert_eq!(
        completed["annotations"]["canary_lost_writes"],
        seen.lost.to_string()
    );
    other.resume();
    group.node(new).resume();
}

/// Must show 3: the same two cases for cluster shards: a master frozen
/// with its replica in sync, then another shard's master frozen after its
/// replica was cut off.
#[test]
fn cluster_failovers_measured_by_the_canary() {
    let cluster = Cluster::start(ClusterOpts::default());
    let agent = Agent::start(&format!(
        "{}{CANARY}",
        cluster_deployment("c", &[cluster.nodes[0].addr()])
    ));
    canaries_up(&agent, "c", 3);
    // A second of writes, replicated.
    std::thread::sleep(Duration::from_secs(1));
    // Replica i of master m is nodes[masters + m * replicas + i].
    let (master, replica) = (&cluster.nodes[0], &cluster.nodes[3]);
    let (shard, _) = shard_of(&agent, "c", &master.addr()).unwrap();
    let frozen_at = unix_now();
    master.freeze();
    let t = agent.ended_failover(
        "c",
        "the cluster failover with the canary's figures",
        LONG,
        |t| t["old_master"] == master.addr().as_str() && !t["canary"].is_null(),
    );
    eprintln!("cluster failover: {t:#}");
    assert_eq!(t["outcome"], "completed");
    assert_eq!(t["shard"], shard.as_str());
    check_in_sync(&t, &master.addr(), &replica.addr(), frozen_at, "converged");
    master.resume();
    canaries_up(&agent, "c", 3);

    // Another shard, its replica cut off first.
    let (master, replica) = (&cluster.nodes[1], &cluster.nodes[4]);
    let (shard, _) = shard_of(&agent, "c", &master.addr()).unwrap();
    let seen = provoke_loss(&agent, "c", &shard, master, replica, true);
    let t = agent.ended_failover(
        "c",
        "the lossy cluster failover with the canary's figures",
        LONG,
        |t| t["old_master"] == master.addr().as_str() && !t["canary"].is_null(),
    );
    eprintln!("lossy cluster failover: {t:#}");
    assert_eq!(t["new_master"], replica.addr().as_str());
    check_loss(&t, &seen, &replica.addr());
    let m = agent.metrics();
    assert_eq!(
        m.value(
            "redis_ha_canary_lost_writes_total",
            &[("deployment", "c"), ("shard", &shard)]
        ),
        Some(seen.lost as f64)
    );
    master.resume();
}

/// Must show 4: with the canary off (the default) the agent sends no write
/// and no key command to any data node: MONITOR shows only the read-only
/// commands docs/security.md lists (and the servers' own traffic), and no
/// node holds a key. The same check with the canary on sees its writes.
#[test]
fn with_the_canary_off_nothing_is_written() {
    let group = SentinelGroup::start(SentinelOpts::default());
    let cluster = Cluster::start(ClusterOpts {
        replicas_per_master: 0,
        ..ClusterOpts::default()
    });
    let deployments = format!(
        "{}{}",
        sentinel_deployment("s", &[group.sentinels[0].addr()]),
        cluster_deployment("c", &[cluster.nodes[0].addr()])
    );
    let off = Agent::start(&deployments);
    // A few polls of every target, watched from their start.
    std::thread::sleep(Duration::from_secs(1));
    let master = group.nodes[0].addr();
    let watched = [master.clone(), cluster.nodes[0].addr()];
    let seen: Vec<(String, Vec<String>)> = std::thread::scope(|s| {
        let watchers: Vec<_> = watched
            .iter()
            .map(|addr| s.spawn(move || (addr.clone(), monitor(addr, Duration::from_secs(3)))))
            .collect();
        watchers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    // The agent's read-only commands, and what sentinels send a master
    // (hello messages, pings, INFO).
    let allowed = [
        "info",
        "cluster",
        "client",
        "ping",
        "auth",
        "quit",
        "publish",
        "subscribe",
    ];
    for (addr, commands) in &seen {
        assert!(
            commands.iter().any(|c| c == "info"),
            "{addr}: MONITOR saw the polls: {commands:?}"
        );
        let other: Vec<&String> = commands
            .iter()
            .filter(|c| !allowed.contains(&c.as_str()))
            .collect();
        assert!(other.is_empty(), "{addr} got {other:?}");
    }
    for node in group.nodes.iter().chain(&cluster.nodes) {
        assert_eq!(
            node.cmd(&["DBSIZE"]).unwrap().as_int(),
            Some(0),
            "{} holds no key",
            node.addr()
        );
    }
    drop(off);

    // The check sees writes when there are some.
    let on = Agent::start(&format!(
        "{}{CANARY}",
        sentinel_deployment("s", &[group.sentinels[0].addr()])
    ));
    canaries_up(&on, "s", 1);
    let commands = monitor(&master, Duration::from_secs(1));
    assert!(commands.iter().any(|c| c == "set"), "{commands:?}");
}
