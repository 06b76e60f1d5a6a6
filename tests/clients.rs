//! Clients left behind, against real servers: an application given the
//! master's address is still on the old master after a failover and is
//! named on the failover's timeline; a Sentinel-aware one that followed is
//! not.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use redis_ha_lab::{Cluster, ClusterOpts, SentinelGroup, SentinelOpts};
use serde_json::Value;
use support::{cluster_deployment, sentinel_deployment, Agent};

const LONG: Duration = Duration::from_secs(40);

/// One command in RESP on `stream`, and its reply: a simple string, a bulk
/// string's value, or the values of an array of bulk strings.
fn request(stream: &mut TcpStream, args: &[&str]) -> std::io::Result<Vec<String>> {
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    stream.write_all(out.as_bytes())?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end().to_string();
    if let Some(len) = line.strip_prefix('$').and_then(|l| l.parse::<usize>().ok()) {
        let mut value = vec![0u8; len + 2];
        reader.read_exact(&mut value)?;
        return Ok(vec![String::from_utf8_lossy(&value[..len]).into_owned()]);
    }
    let Some(n) = line.strip_prefix('*') else {
        return Ok(vec![line]);
    };
    let mut values = Vec::new();
    for _ in 0..n.parse::<usize>().unwrap_or(0) {
        let (mut header, mut value) = (String::new(), String::new());
        reader.read_line(&mut header)?;
        reader.read_line(&mut value)?;
        values.push(value.trim_end().to_string());
    }
    Ok(values)
}

/// Whether the server closed the connection (Sentinel kills the clients
/// of an instance it turns into a replica).
fn closed(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let mut byte = [0u8; 1];
    let gone = matches!(stream.read(&mut byte), Ok(0));
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    gone
}

/// An application with one connection, named `name`, to the address
/// `locate` gives: checked every 100 ms, and reconnected whenever the
/// connection drops or the address changes. Its local address is what
/// the server lists as the client's.
struct App {
    local: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl App {
    fn start(name: &'static str, locate: impl Fn() -> Option<String> + Send + 'static) -> App {
        let local = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (local.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut conn: Option<(String, TcpStream)> = None;
            while !s.load(Ordering::Relaxed) {
                let target = locate();
                let stale = match &mut conn {
                    Some((addr, stream)) => Some(&*addr) != target.as_ref() || closed(stream),
                    None => true,
                };
                if let (true, Some(target)) = (stale, target) {
                    conn = TcpStream::connect(&target).ok().and_then(|mut stream| {
                        let named = request(&mut stream, &["CLIENT", "SETNAME", name]).ok()?;
                        assert_eq!(named, ["+OK"], "{name}");
                        *l.lock().unwrap() = Some(stream.local_addr().ok()?.to_string());
                        Some((target, stream))
                    });
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        App {
            local,
            stop,
            thread: Some(thread),
        }
    }

    /// The client's address as the server lists it, once connected.
    fn local(&self) -> String {
        for _ in 0..50 {
            if let Some(l) = self.local.lock().unwrap().clone() {
                return l;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the application never connected");
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The master's address as a sentinel gives it, as Sentinel-aware clients ask.
fn ask(sentinel: &str) -> Option<String> {
    let mut s = TcpStream::connect(sentinel).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let reply = request(&mut s, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"]).ok()?;
    match reply.as_slice() {
        [host, port] => Some(format!("{host}:{port}")),
        _ => None,
    }
}

/// The clients left behind on the failover's timeline, once read.
fn left_behind(t: &Value) -> &Value {
    &t["clients_left_behind"]
}

/// A failover by `SENTINEL FAILOVER`: the old master, turned into a
/// replica, has its clients killed by Sentinel; `direct-app` reconnects to
/// the address it was given (the old master), `aware-app` asks a sentinel
/// again and goes to the new master. Read `clients_after` (3 s) after the
/// old master turned replica, the timeline lists `direct-app` at its current address, and
/// nothing else: no replication link, no sentinel, nothing of the agent's
/// (its poller of the old master is connected all along), not `aware-app`.
#[test]
fn a_client_given_the_masters_address_is_left_behind() {
    let group = SentinelGroup::start(SentinelOpts::default());
    let sentinel = group.sentinels[0].addr();
    let agent = Agent::start_full(
        &sentinel_deployment("s", std::slice::from_ref(&sentinel)),
        "timelines:\n  clients_after: 3s\n",
        &[],
    );
    agent.wait_targets_up(6, LONG);
    let old_master = group.nodes[0].addr();
    let fixed = old_master.clone();
    let direct = App::start("direct-app", move || Some(fixed.clone()));
    let asked = sentinel.clone();
    let aware = App::start("aware-app", move || ask(&asked));
    aware.local();
    let before = direct.local();

    group.sentinels[0]
        .cmd(&["SENTINEL", "FAILOVER", "mymaster"])
        .unwrap();
    let t = agent.ended_failover("s", "the failover's clients read", LONG, |t| {
        !left_behind(t).is_null()
    });
    assert_eq!(t["old_master"], old_master.as_str());
    let left = left_behind(&t);
    assert!(left["error"].is_null(), "{left}");
    assert_eq!(left["node"], old_master.as_str());
    let switched = t["marks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "switched")
        .and_then(|m| m["at"].as_f64())
        .unwrap();
    let read_at = left["read_at"].as_f64().unwrap();
    // Sentinel turns the old master into a replica 8 to 10 s after the
    // switch; the read is 3 s after the agent saw that.
    assert!(
        read_at - switched >= 3.0 + 8.0 && read_at - switched < 3.0 + 15.0,
        "read {:.1} s after the switch",
        read_at - switched
    );
    let clients = left["clients"].as_array().unwrap();
    let now = direct.local();
    assert_ne!(now, before, "Sentinel killed its first connection");
    assert_eq!(left["count"], 1, "direct-app only: {left}");
    assert_eq!(clients.len(), 1, "{left}");
    assert_eq!(clients[0]["name"], "direct-app");
    assert_eq!(clients[0]["addr"], now.as_str());
    let cmd = clients[0]["cmd"].as_str().unwrap();
    assert!(
        cmd.starts_with("client"),
        "its last command, SETNAME: {left}"
    );

    // The old master's list itself: everything the read left out is there.
    let list = group.nodes[0].cmd(&["CLIENT", "LIST"]).unwrap();
    let list = list.as_str().unwrap();
    for name in [
        "name=redis-ha-exporter ",
        "name=sentinel-",
        "flags=M ",
        "name=direct-app ",
    ] {
        assert!(list.contains(name), "{name} in {list}");
    }
    assert!(!list.contains("name=aware-app "), "{list}");

    let m = agent.metrics();
    assert_eq!(
        m.value(
            "redis_ha_failover_clients_left_behind",
            &[("deployment", "s"), ("shard", "mymaster")]
        ),
        Some(1.0)
    );
}

/// Which of `nodes` reports role master, as a cluster client learns it
/// (from a `MOVED`, or the slot map).
fn owner(nodes: &[String]) -> Option<String> {
    nodes.iter().find_map(|n| {
        let mut s = TcpStream::connect(n).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let info = request(&mut s, &["INFO", "replication"]).ok()?;
        info.first()?.contains("role:master").then(|| n.clone())
    })
}

/// A manual cluster failover (`CLUSTER FAILOVER` on the replica): the old
/// master turns replica at once and keeps its clients. `direct-app`, given
/// its address, stays; `aware-app` follows the shard's master to the
/// promoted replica. Read `clients_after` (1 s) after the old master is a
/// replica, the timeline lists `direct-app` only: not the agent's pollers
/// nor its `CLUSTER NODES` reads, not the replication link.
#[test]
fn a_client_of_a_cluster_node_by_address_is_left_behind() {
    let cluster = Cluster::start(ClusterOpts::default());
    let agent = Agent::start_full(
        &cluster_deployment("c", &[cluster.nodes[1].addr()]),
        "timelines:\n  clients_after: 1s\n",
        &[],
    );
    agent.wait_targets_up(6, LONG);
    // Replica i of master m is nodes[masters + m * replicas + i].
    let (old, replica) = (cluster.nodes[0].addr(), cluster.nodes[3].addr());
    let fixed = old.clone();
    let direct = App::start("direct-app", move || Some(fixed.clone()));
    let shard = [old.clone(), replica.clone()];
    let aware = App::start("aware-app", move || owner(&shard));
    aware.local();
    let at = direct.local();

    cluster.nodes[3].cmd(&["CLUSTER", "FAILOVER"]).unwrap();
    let t = agent.ended_failover("c", "the cluster failover's clients read", LONG, |t| {
        t["old_master"] == old.as_str() && !left_behind(t).is_null()
    });
    assert_eq!(t["new_master"], replica.as_str());
    let left = left_behind(&t);
    assert!(left["error"].is_null(), "{left}");
    assert_eq!(left["count"], 1, "direct-app only: {left}");
    let clients = left["clients"].as_array().unwrap();
    assert_eq!(clients[0]["name"], "direct-app");
    assert_eq!(clients[0]["addr"], at.as_str(), "never disconnected");
    let list = cluster.nodes[0].cmd(&["CLIENT", "LIST"]).unwrap();
    let list = list.as_str().unwrap().to_string();
    assert!(
        list.contains("name=redis-ha-exporter ") && list.contains("flags=M "),
        "{list}"
    );
    assert!(!list.contains("name=aware-app "), "{list}");

    let shard = t["shard"].as_str().unwrap();
    assert_eq!(
        agent.metrics().value(
            "redis_ha_failover_clients_left_behind",
            &[("deployment", "c"), ("shard", shard)]
        ),
        Some(1.0)
    );
}
