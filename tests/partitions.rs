//! Real network partitions (lab networks: every server in its own
//! namespace), end to end. A master isolated together with a client that
//! keeps writing to it, as Jepsen showed Sentinel losing acknowledged
//! writes: the majority fails over, the old master acknowledges writes no
//! one will keep, and the heal throws them away. The test counts what the
//! client lost from its own acknowledgements and what survives, and
//! compares the agent's figures with it: seen from both sides (the root
//! namespace), and seen from the majority only. The same for a cluster
//! master isolated with a minority. And links that are only degraded
//! (packet loss) raise nothing false.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis_ha_lab::{Cluster, ClusterOpts, Host, Net, Node, Reply, SentinelGroup, SentinelOpts};
use serde_json::Value;
use support::{cluster_deployment, mark_at, sentinel_deployment, unix_now, Agent, CANARY};

const LONG: Duration = Duration::from_secs(60);

/// A client that does not follow failovers (it has the master's address
/// and keeps it), writing `RPUSH <key> <seq>` every 50 ms from its own host
/// until stopped. It records each write the server acknowledged, with when.
struct Writer {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<(u64, f64)>>,
}

impl Writer {
    fn start(host: &Host, to: SocketAddr, key: &str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let (host, key, done) = (host.clone(), key.to_string(), stop.clone());
        let thread = std::thread::spawn(move || {
            host.enter();
            let mut acked = Vec::new();
            let mut conn: Option<BufReader<TcpStream>> = None;
            let mut seq = 0u64;
            while !done.load(Ordering::SeqCst) {
                seq += 1;
                let command = format!(
                    "*3\r\n$5\r\nRPUSH\r\n${}\r\n{key}\r\n${}\r\n{seq}\r\n",
                    key.len(),
                    seq.to_string().len()
                );
                let ok = (|| {
                    if conn.is_none() {
                        let s = TcpStream::connect_timeout(&to, Duration::from_millis(500)).ok()?;
                        s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
                        conn = Some(BufReader::new(s));
                    }
                    let c = conn.as_mut()?;
                    c.get_mut().write_all(command.as_bytes()).ok()?;
                    let mut line = String::new();
                    c.read_line(&mut line).ok()?;
                    line.starts_with(':').then_some(())
                })();
                match ok {
                    Some(()) => acked.push((seq, unix_now())),
                    // A timed-out reply may still come: a new connection
                    // keeps replies and requests paired.
                    None => conn = None,
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            acked
        });
        Writer { stop, thread }
    }

    /// Stops the client: the writes it saw acknowledged.
    fn stop(self) -> Vec<(u64, f64)> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

/// The sequence numbers `node` holds under `key`.
fn held(node: &Node, key: &str) -> BTreeSet<u64> {
    match node.cmd(&["LRANGE", key, "0", "-1"]).unwrap() {
        Reply::Array(items) => items
            .iter()
            .map(|i| i.as_str().unwrap().parse().unwrap())
            .collect(),
        other => panic!("LRANGE: {other:?}"),
    }
}

/// What the isolated client lost: the writes acknowledged to it that the
/// surviving master does not hold, and when the last surviving one was
/// acknowledged.
struct Loss {
    acked: Vec<(u64, f64)>,
    lost: Vec<(u64, f64)>,
    last_kept_at: f64,
}

fn loss(acked: Vec<(u64, f64)>, survivors: &BTreeSet<u64>) -> Loss {
    let lost: Vec<(u64, f64)> = acked
        .iter()
        .filter(|(seq, _)| !survivors.contains(seq))
        .copied()
        .collect();
    let last_kept_at = acked
        .iter()
        .filter(|(seq, _)| survivors.contains(seq))
        .map(|(_, at)| *at)
        .fold(0.0, f64::max);
    eprintln!(
        "the client had {} writes acknowledged; {} lost, the last kept one acknowledged at {last_kept_at:.3}",
        acked.len(),
        lost.len()
    );
    Loss {
        acked,
        lost,
        last_kept_at,
    }
}

fn role(node: &Node) -> String {
    node.info("replication")
        .map(|i| i["role"].clone())
        .unwrap_or_default()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LONG;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The canary of a deployment's first shard, as /api/v1/topology shows it.
fn canary(agent: &Agent, deployment: &str) -> Value {
    let shards = agent.shards(deployment);
    shards
        .first()
        .map(|s| s["canary"].clone())
        .unwrap_or_default()
}

/// The sequence number of a canary value `<seq>:<unix_ms>`, and when it
/// was written.
fn canary_value(node: &Node, key: &str) -> (u64, f64) {
    let value = node.cmd(&["GET", key]).unwrap();
    let value = value.as_str().expect("a canary value").to_string();
    let (seq, ms) = value.split_once(':').unwrap();
    (seq.parse().unwrap(), ms.parse::<f64>().unwrap() / 1000.0)
}

/// The one timeline of the failover from `old`, once ended with its canary
/// figures and two-masters window read.
fn the_failover(agent: &Agent, old: &str) -> Value {
    let mut found = Value::Null;
    agent.wait_until("the failover's timeline with its figures", LONG, |a| {
        let all: Vec<Value> = a.failovers("s");
        assert!(all.len() <= 1, "one failover, one timeline: {all:#?}");
        found = all.into_iter().next().unwrap_or_default();
        found["old_master"] == old
            && !found["ended"].is_null()
            && !found["canary"].is_null()
            && !found["two_masters"]["end"].is_null()
    });
    found
}

/// A sentinel group on a lab network, and a host for a client.
struct SentinelLab {
    group: SentinelGroup,
    net: Net,
    client: Host,
}

impl SentinelLab {
    fn start() -> SentinelLab {
        let net = Net::start();
        let group = SentinelGroup::start(SentinelOpts {
            net: Some(net.clone()),
            ..SentinelOpts::default()
        });
        let client = net.host("client");
        SentinelLab { group, net, client }
    }

    fn deployment(&self) -> String {
        let sentinels: Vec<String> = self.group.sentinels.iter().map(Node::addr).collect();
        format!("{}{CANARY}", sentinel_deployment("s", &sentinels))
    }

    /// Once `agent` watches every server and its canary writes, starts the
    /// client writing to the master, and lets a second of its writes
    /// replicate.
    fn writing(&self, agent: &Agent) -> Writer {
        agent.wait_targets_up(6, LONG);
        agent.wait_until("the canary writing", LONG, |a| canary(a, "s")["up"] == true);
        let master = &self.group.nodes[0];
        let at = SocketAddr::from((master.ip(), master.port()));
        let writer = Writer::start(&self.client, at, "client");
        std::thread::sleep(Duration::from_secs(1));
        writer
    }

    /// Everything but the old master and the client.
    fn majority(&self) -> Vec<&Host> {
        self.group.nodes[1..]
            .iter()
            .chain(&self.group.sentinels)
            .map(|n| n.host().unwrap())
            .collect()
    }
}

/// Must show 2 on Sentinel, with the agent where it sees both sides: the
/// two-masters window with the client's writes counted, the writes at risk,
/// and the canary losing what the client lost, from the same moment (the
/// cut), checked against the values the test read on the servers.
#[test]
fn sentinel_split_brain_seen_from_both_sides() {
    let lab = SentinelLab::start();
    let group = &lab.group;
    let agent = Agent::start_full(&lab.deployment(), "", &[]);
    let writer = lab.writing(&agent);
    let key = canary(&agent, "s")["key"].as_str().unwrap().to_string();
    let old = &group.nodes[0];

    lab.net
        .cut(&[old.host().unwrap(), &lab.client], &lab.majority());
    let cut_at = unix_now();
    // What each replica holds is fixed from the cut on, until one is promoted.
    std::thread::sleep(Duration::from_millis(300));
    let replica_canary: Vec<(u16, (u64, f64))> = group.nodes[1..]
        .iter()
        .map(|n| (n.port(), canary_value(n, &key)))
        .collect();
    let new = group.wait_for_new_master(old.port(), LONG);
    let new_node = group.node(new);
    let (held_seq, held_at) = replica_canary.iter().find(|(p, _)| *p == new).unwrap().1;
    agent.wait_until("the agent to see the switch", LONG, |a| {
        a.failovers("s")
            .first()
            .is_some_and(|t| mark_at(t, "switched").is_some())
    });
    // Both sides go on for a while: two masters, both taking writes.
    std::thread::sleep(Duration::from_secs(3));
    let (old_last_seq, _) = canary_value(old, &key);
    let stopped_at = unix_now();
    let acked = writer.stop();
    lab.net.heal();
    wait_until("Sentinel to convert the old master", || {
        role(old) == "slave"
    });
    let loss = loss(acked, &held(new_node, "client"));
    assert!(loss.lost.len() >= 20, "the isolated master took writes");
    assert!(
        (loss.last_kept_at - cut_at).abs() < 0.5,
        "the client's writes were kept until the cut ({cut_at:.3})"
    );

    let t = the_failover(&agent, &old.addr());
    eprintln!("{t:#}");
    assert_eq!(t["new_master"], new_node.addr().as_str());
    assert_eq!(t["outcome"], "completed");
    // Writes at risk: the old master's offset ran on past the promoted
    // replica's before the switch.
    assert!(t["unreplicated_bytes"].as_u64().unwrap() > 0, "{t:#}");
    // The window: both nodes, and a count of writes that holds the client's.
    // The agent reads a stray master's write count from the poll after it
    // opened the window (the first reading is the base), and last read it
    // up to a poll before the client stopped: the client's writes
    // acknowledged in between are among the count. At most the client's
    // writes and the canary's (one per 100 ms) of the whole window are.
    let window = &t["two_masters"];
    let nodes: BTreeSet<&str> = window["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(nodes.contains(old.addr().as_str()), "{window}");
    let (start, poll) = (
        window["start"].as_f64().unwrap(),
        support::POLL.as_secs_f64(),
    );
    let client_between = |from: f64, to: f64| {
        loss.acked
            .iter()
            .filter(|(_, at)| from < *at && *at < to)
            .count() as u64
    };
    let counted = client_between(start + 2.0 * poll, stopped_at - poll);
    let at_most =
        client_between(start - poll, stopped_at) + ((stopped_at - start + poll) * 10.0) as u64 + 1;
    let writes = window["writes"].as_u64().unwrap();
    assert!(
        counted > 0 && (counted..=at_most).contains(&writes),
        "the agent counted {writes} writes; the client had {counted} acknowledged while the agent counted, the client and the canary at most {at_most}"
    );
    // The canary lost exactly what it wrote to the old master after the
    // replica's copy stopped: the test read both ends on the servers.
    let c = &t["canary"];
    assert_eq!(c["read_back"]["node"], new_node.addr().as_str(), "{c:#}");
    assert_eq!(c["read_back"]["seq"].as_u64(), Some(held_seq), "{c:#}");
    let mut listed = 0;
    let mut highest = 0;
    for r in c["lost_seqs"].as_array().unwrap() {
        let (a, b) = (r[0].as_u64().unwrap(), r[1].as_u64().unwrap());
        assert!(held_seq < a && a <= b && b <= old_last_seq, "{r}");
        listed += b - a + 1;
        highest = highest.max(b);
    }
    let lost = c["lost_writes"].as_u64().unwrap();
    assert_eq!(listed, lost);
    // Every write between the two was acknowledged (the old master stayed
    // reachable from the agent) unless one timed out in flight.
    assert!(
        lost + 1 >= old_last_seq - held_seq && highest + 1 >= old_last_seq,
        "lost {lost} of ({held_seq}, {old_last_seq}]"
    );
    // The same moment as the client's: its last kept write was at the cut.
    assert!(
        (held_at - loss.last_kept_at).abs() < 0.5,
        "the canary's last kept write ({held_at:.3}) and the client's ({:.3})",
        loss.last_kept_at
    );
    // Stale reads: what the old master acknowledged after the switch, which
    // the client did too.
    let switched = mark_at(&t, "switched").unwrap();
    let stale = c["stale_reads"].as_u64().unwrap();
    let client_stale = loss.lost.iter().filter(|(_, at)| *at > switched).count();
    eprintln!("canary: {lost} lost, {stale} stale reads; client: {} lost, {client_stale} after the switch", loss.lost.len());
    assert!(stale <= lost && client_stale > 0);
}

/// Must show 2 on Sentinel, with the agent on the majority's side: it
/// cannot reach the old master, so its canary's writes there fail instead
/// of being acknowledged (nothing of its own lost), and it cannot count the
/// writes the isolated client lost as they happen. It records the one
/// failover with the right new master, says the old master is down, and
/// once healed, sees the old master back as a second master whose offset
/// ran on since the switch: the bytes the isolated side wrote.
#[test]
fn sentinel_split_brain_seen_from_the_majority() {
    let lab = SentinelLab::start();
    let group = &lab.group;
    let place = lab.net.host("agent");
    let agent = Agent::start_on(&place, &lab.deployment(), "");
    let writer = lab.writing(&agent);
    let old = &group.nodes[0];
    let mut majority = lab.majority();
    majority.push(&place);
    lab.net.cut(&[old.host().unwrap(), &lab.client], &majority);
    let new = group.wait_for_new_master(old.port(), LONG);
    let down = [("deployment", "s"), ("node", &*old.addr())];
    agent.wait_metrics("the old master down", LONG, |m| {
        m.value("redis_ha_target_up", &down) == Some(0.0)
    });
    std::thread::sleep(Duration::from_secs(3));
    let acked = writer.stop();
    lab.net.heal();
    wait_until("Sentinel to convert the old master", || {
        role(old) == "slave"
    });
    let loss = loss(acked, &held(group.node(new), "client"));
    assert!(loss.lost.len() >= 20, "the isolated master took writes");

    let t = the_failover(&agent, &old.addr());
    eprintln!("{t:#}");
    assert_eq!(t["new_master"], group.node(new).addr().as_str());
    // Nothing polled from the old master after the cut: no estimate.
    assert_eq!(t["unreplicated_bytes"], 0, "{t:#}");
    let window = &t["two_masters"];
    assert!(window["written_bytes"].as_u64().unwrap() > 0, "{window}");
    let c = &t["canary"];
    assert_eq!(c["lost_writes"], 0, "{c:#}");
    assert_eq!(c["stale_reads"], 0, "{c:#}");
    assert!(
        c["write_unavailable_seconds"].as_f64().unwrap() > 1.0,
        "{c:#}"
    );
}

/// Must show 2 on a cluster, the agent seeing both sides: it records one
/// failover to the replica, and its canary lost writes from the cut, as
/// the client did.
#[test]
fn cluster_master_isolated_with_a_minority_seen_from_both_sides() {
    let c = cluster_minority(false);
    assert!(c["lost_writes"].as_u64().unwrap() > 0, "{c:#}");
}

/// Must show 2 on a cluster, the agent on the majority's side: the same one
/// failover; its canary's writes to the old master failed rather than
/// being acknowledged, so it lost none.
#[test]
fn cluster_master_isolated_with_a_minority_seen_from_the_majority() {
    let c = cluster_minority(true);
    assert_eq!(c["lost_writes"], 0, "{c:#}");
    assert!(
        c["write_unavailable_seconds"].as_f64().unwrap() > 0.5,
        "{c:#}"
    );
}

/// A cluster master isolated with a client on its side. It acknowledges
/// writes until it notices it lost the majority (a node timeout), the
/// majority promotes its replica, the heal makes it a replica and its
/// writes are gone. The agent (on the majority's side if `from_majority`,
/// else in the root namespace) records one failover to that replica; the
/// canary's figures of it.
fn cluster_minority(from_majority: bool) -> Value {
    let net = Net::start();
    let cluster = Cluster::start(ClusterOpts {
        net: Some(net.clone()),
        ..ClusterOpts::default()
    });
    let seeds: Vec<String> = cluster.nodes.iter().map(Node::addr).collect();
    let deployment = format!("{}{CANARY}", cluster_deployment("c", &seeds));
    let place = net.host("agent");
    let agent = if from_majority {
        Agent::start_on(&place, &deployment, "")
    } else {
        Agent::start_full(&deployment, "", &[])
    };
    agent.wait_targets_up(6, LONG);
    let old = &cluster.nodes[0];
    let replica = &cluster.nodes[3];
    // A key in the old master's slots.
    let key = (0..)
        .map(|i| format!("client{i}"))
        .find(|k| {
            let slot = old
                .cmd(&["CLUSTER", "KEYSLOT", k])
                .unwrap()
                .as_int()
                .unwrap();
            slot < 5461
        })
        .unwrap();
    let client = net.host("client");
    let writer = Writer::start(&client, SocketAddr::from((old.ip(), old.port())), &key);
    std::thread::sleep(Duration::from_secs(1));
    let mut others: Vec<&Host> = cluster.nodes[1..]
        .iter()
        .map(|n| n.host().unwrap())
        .collect();
    others.push(&place);
    net.cut(&[old.host().unwrap(), &client], &others);
    let cut_at = unix_now();
    wait_until("the replica promoted", || role(replica) == "master");
    std::thread::sleep(Duration::from_secs(3));
    let acked = writer.stop();
    net.heal();
    wait_until("the old master to follow", || role(old) == "slave");
    let loss = loss(acked, &held(replica, &key));
    assert!(!loss.lost.is_empty(), "the isolated master took writes");
    assert!((loss.last_kept_at - cut_at).abs() < 0.5);
    // Until the node timeout (1 s) it acknowledged, then refused.
    let last_lost = loss.lost.last().unwrap().1;
    assert!(
        last_lost < cut_at + 3.0,
        "{last_lost} vs the cut at {cut_at}"
    );

    // While cut off, the old master suspected the others (`fail?`): those
    // suspicions are dropped once they clear, leaving one failover.
    let mut all = Vec::new();
    agent.wait_until("one cluster failover, with its canary", LONG, |a| {
        all = a.failovers("c");
        all.len() == 1 && !all[0]["ended"].is_null() && !all[0]["canary"].is_null()
    });
    let t = &all[0];
    eprintln!("{t:#}");
    assert_eq!(t["old_master"], old.addr().as_str());
    assert_eq!(t["new_master"], replica.addr().as_str());
    let c = t["canary"].clone();
    // What the new master held of the canary's writes was written when the
    // client's last kept write was: at the cut.
    let held_at = c["read_back"]["written_at"].as_f64().unwrap();
    assert!(
        (held_at - loss.last_kept_at).abs() < 0.5,
        "the canary's last kept write ({held_at:.3}) and the client's ({:.3})",
        loss.last_kept_at
    );
    c
}

/// The master's `lag` for the replica on `port` (seconds since it last
/// acknowledged its offset), as `INFO replication` lists it.
fn ack_silence(master: &Node, port: u16) -> f64 {
    let info = master.info("replication").unwrap();
    info.iter()
        .filter(|(k, _)| k.starts_with("slave"))
        .filter(|(_, v)| v.contains(&format!("port={port},")))
        .find_map(|(_, v)| v.split(',').find_map(|f| f.strip_prefix("lag=")))
        .and_then(|lag| lag.parse().ok())
        .unwrap_or(0.0)
}

/// Must show 3: 20% of the packets of one replica's and one sentinel's
/// links lost, for 30 s.
#[test]
fn lossy_links_raise_nothing_false() {
    degraded("20% loss", |net, host| net.loss(host, 20));
}

/// Must show 3: every packet one replica and one sentinel send held 200 ms,
/// for 30 s.
#[test]
fn slow_links_raise_nothing_false() {
    degraded("200 ms delay", |net, host| {
        net.delay(host, Duration::from_millis(200))
    });
}

/// Degrades the links of one replica and one sentinel with `impair` for
/// 30 s while a client writes, the agent polling as it does by default
/// (every second, 500 ms timeout): no failover timeline, no alert, the two
/// targets up, and the replica's lag as the agent reports it within what
/// the master itself shows.
fn degraded(what: &str, impair: impl Fn(&Net, &Host)) {
    let SentinelLab { group, net, client } = SentinelLab::start();
    let sentinels: Vec<String> = group.sentinels.iter().map(Node::addr).collect();
    let poll = 1.0;
    let agent = Agent::start_full(
        &sentinel_deployment("s", &sentinels),
        "poll_interval: 1s\ntimeout: 500ms\n",
        &[],
    );
    agent.wait_targets_up(6, LONG);
    let master = &group.nodes[0];
    let writer = Writer::start(
        &client,
        SocketAddr::from((master.ip(), master.port())),
        "client",
    );
    let (replica, sentinel) = (&group.nodes[1], &group.sentinels[1]);
    impair(&net, replica.host().unwrap());
    impair(&net, sentinel.host().unwrap());
    let lag = [("deployment", "s"), ("node", &*replica.addr())];
    let up = |m: &support::Metrics, node: &Node| {
        m.find("redis_ha_target_up", &[("deployment", "s")])
            .any(|s| s.value == 1.0 && s.labels.values().any(|v| *v == node.addr()))
    };
    let until = Instant::now() + Duration::from_secs(30);
    let (mut worst, mut acks_silent, mut looks, mut down) = (0.0f64, 0.0f64, 0, 0);
    let mut suspicions = 0;
    // Consecutive looks each degraded target was down at, and the longest.
    let (mut streaks, mut longest) = ([0u32; 2], 0u32);
    while Instant::now() < until {
        acks_silent = acks_silent.max(ack_silence(master, replica.port()));
        let m = agent.metrics();
        let alerts = agent.json("/api/v1/alerts");
        let names: Vec<&Value> = alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| &a["alertname"])
            .collect();
        assert!(names.is_empty(), "{what}: {names:?}");
        // The impaired sentinel may itself lose the master's replies for
        // its `down-after-milliseconds` (1 s in the lab) and say `+sdown`:
        // that suspicion is Sentinel's own and is shown while it lasts,
        // but nothing beyond it (no other sentinel agrees, no `odown`).
        for t in agent.failovers("s") {
            suspicions += 1;
            assert!(
                t["marks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|m| m["name"] == "sdown" && m["reporter"] == sentinel.addr().as_str()),
                "{what}: more than the impaired sentinel's suspicion: {t:#}"
            );
        }
        if let Some(seconds) = m.value("redis_ha_replica_lag_seconds", &lag) {
            worst = worst.max(seconds);
        }
        looks += 1;
        for (streak, node) in streaks.iter_mut().zip([replica, sentinel]) {
            *streak = if up(&m, node) { 0 } else { *streak + 1 };
            down += usize::from(*streak > 0);
            longest = longest.max(*streak);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let acked = writer.stop();
    net.heal();
    assert!(
        acked.len() > 300,
        "the client kept writing: {}",
        acked.len()
    );
    // A suspicion is dropped once the sentinel sees the master again: no
    // failover is left, none counted.
    agent.wait_until("no failover timeline", LONG, |a| {
        a.failovers("s").is_empty()
    });
    agent.wait_metrics("no failover counted", LONG, |m| {
        m.find("redis_ha_failovers_total", &[("deployment", "s")])
            .all(|s| s.value == 0.0)
    });
    // A replica acknowledges its offset every second; through a degraded
    // link an acknowledgement can come late, which the master shows as its
    // `lag` (seconds since the last one). The agent dates the acknowledged
    // offset in the master's offsets it polled: at most that silence, the
    // second between acknowledgements, and two polls (its history's
    // resolution and a reading's age) more.
    let bound = acks_silent + 1.0 + 2.0 * poll;
    eprintln!(
        "{what}: worst lag the agent reported {worst:.3} s, longest acknowledgement silence the master showed {acks_silent} s; a degraded target down at {down} of {} looks, at most {longest} on end; a sentinel's own suspicion shown at {suspicions} looks",
        2 * looks
    );
    assert!(worst <= bound, "{what}: {worst} > {bound}");
    // A poll that times out says so, for that poll. A lossy link also
    // stalls TCP now and then (a segment lost again waits twice as long
    // for its next retransmission), for seconds. Up most of the time, and
    // never down half of `TargetDown`'s 30 s on end: costing polls, never
    // a page.
    assert!(
        2 * down < 2 * looks,
        "{what}: down at {down} of {} looks",
        2 * looks
    );
    assert!(longest < 60, "{what}: down at {longest} looks on end");
    let offset = |n: &Node, field: &str| n.info("replication").unwrap()[field].clone();
    agent.wait_metrics("the replica caught up", LONG, |m| {
        m.value("redis_ha_replica_lag_bytes", &lag) == Some(0.0)
            && offset(master, "master_repl_offset") == offset(replica, "slave_repl_offset")
    });
}

/// A cluster replica cut off from every other node while the agent still
/// reaches it: the others flag it `fail`, it answers the agent, and
/// `answering_while_failed` names it until the heal.
#[test]
fn a_node_cut_from_its_cluster_answers_while_failed() {
    let net = Net::start();
    let cluster = Cluster::start(ClusterOpts {
        net: Some(net.clone()),
        ..ClusterOpts::default()
    });
    let seeds: Vec<String> = cluster.nodes.iter().map(Node::addr).collect();
    let agent = Agent::start(&cluster_deployment("c", &seeds));
    agent.wait_targets_up(6, LONG);
    let check = "answering_while_failed";
    assert_eq!(agent.named(check), Vec::<String>::new());
    let replica = &cluster.nodes[3];
    let others: Vec<&Host> = cluster
        .nodes
        .iter()
        .filter(|n| n.port() != replica.port())
        .map(|n| n.host().unwrap())
        .collect();
    net.cut(&[replica.host().unwrap()], &others);
    agent.wait_until("the cut replica named", LONG, |a| {
        a.named(check) == [replica.addr()]
    });
    net.heal();
    agent.wait_until("no node named", LONG, |a| a.named(check).is_empty());
}

/// The agent on a host of its own, cut off from one replica that the
/// sentinels still reach (as an announced address that routes from the
/// sentinels' network and not from the agent's): `unreachable_from_agent`
/// names it past down-after plus 5 s, until the heal.
#[test]
fn an_address_only_the_agent_cannot_reach_is_named() {
    let SentinelLab { group, net, .. } = SentinelLab::start();
    let place = net.host("agent");
    let sentinels: Vec<String> = group.sentinels.iter().map(Node::addr).collect();
    let agent = Agent::start_on(&place, &sentinel_deployment("s", &sentinels), "");
    agent.wait_targets_up(6, LONG);
    let check = "unreachable_from_agent";
    assert_eq!(agent.named(check), Vec::<String>::new());
    let replica = &group.nodes[1];
    net.cut(&[&place], &[replica.host().unwrap()]);
    agent.wait_until("the replica named", LONG, |a| {
        a.named(check) == [replica.addr()]
    });
    net.heal();
    agent.wait_until("no node named", LONG, |a| a.named(check).is_empty());
}
