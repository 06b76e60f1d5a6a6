//! These start real servers: they need `redis-server` (or `$REDIS_HA_LAB_SERVER`) and
//! fail, never skip, without it.

use std::time::{Duration, Instant};

use redis_ha_lab::{Cluster, ClusterOpts, LabError, Message, Reply, SentinelGroup, SentinelOpts};

#[test]
fn sentinel_group_starts_with_nodes0_as_master() {
    let group = SentinelGroup::start(SentinelOpts::default());
    assert_eq!(group.nodes.len(), 3);
    assert_eq!(group.sentinels.len(), 3);
    assert!(group.sentinels.iter().all(|s| s.is_sentinel()));
    assert!(group.nodes.iter().all(|n| !n.is_sentinel()));

    let master = &group.nodes[0];
    assert_eq!(group.master_port(), Some(master.port()));
    assert_eq!(master.info("replication").unwrap()["role"], "master");
    assert_eq!(master.info("replication").unwrap()["connected_slaves"], "2");
    assert_eq!(master.addr(), format!("127.0.0.1:{}", master.port()));

    // Writes reach the replicas.
    assert_eq!(
        master.cmd(&["SET", "lab-key", "v"]).unwrap(),
        Reply::Str("OK".into())
    );
    let replica = group.node(group.nodes[1].port());
    let deadline = Instant::now() + Duration::from_secs(5);
    while replica.cmd(&["GET", "lab-key"]).unwrap() != Reply::Str("v".into()) {
        assert!(Instant::now() < deadline, "replica never got the write");
        std::thread::sleep(Duration::from_millis(20));
    }

    // DEBUG works from loopback (Redis 7 needs `enable-debug-command local`), so tests
    // and demo users can make a master hang with DEBUG SLEEP.
    assert_eq!(
        master.cmd(&["DEBUG", "SLEEP", "0"]).unwrap(),
        Reply::Str("OK".into())
    );

    // Server errors come back as LabError::Server with a readable message.
    let err = master.cmd(&["NO-SUCH-COMMAND"]).unwrap_err();
    assert!(matches!(err, LabError::Server { .. }), "{err:?}");
    assert!(err.to_string().contains("NO-SUCH-COMMAND"), "{err}");
}

#[test]
fn freezing_the_master_fails_over_to_a_replica() {
    let mut group = SentinelGroup::start(SentinelOpts::default());
    let old = group.nodes[0].port();
    let replicas: Vec<u16> = group.nodes[1..].iter().map(|n| n.port()).collect();

    group.node(old).freeze();
    assert!(
        group.node(old).is_running(),
        "a frozen server is still running"
    );
    let err = group.node(old).cmd(&["PING"]).unwrap_err();
    assert!(matches!(err, LabError::Timeout { .. }), "{err:?}");

    let started = Instant::now();
    let new = group.wait_for_new_master(old, Duration::from_secs(30));
    println!("failover took {:?}", started.elapsed());
    assert!(replicas.contains(&new), "new master {new} is not a replica");
    assert_eq!(group.master_port(), Some(new));
    assert_eq!(
        group.node(new).info("replication").unwrap()["role"],
        "master"
    );

    // The old master comes back and is turned into a replica by the sentinels.
    group.node(old).resume();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // The sentinels' reconfiguration ends with `CLIENT KILL TYPE normal`, which
        // may close this very connection before it is answered: wait past that.
        let info = group.node(old).info("replication").unwrap_or_default();
        if info.get("role").map(String::as_str) == Some("slave")
            && info.get("master_port").map(String::as_str) == Some(&new.to_string())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "old master never rejoined: {info:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // kill is idempotent, restart brings the node back on the same port.
    let node = group.node_mut(old);
    node.kill();
    node.kill();
    assert!(!node.is_running());
    assert!(node.cmd(&["PING"]).is_err());
    node.restart();
    assert!(node.is_running());
    assert_eq!(node.port(), old);
    assert_eq!(node.cmd(&["PING"]).unwrap(), Reply::Str("PONG".into()));
}

/// A `Remote` reaches its server from another thread; its subscription
/// hears what is published there, says so when nothing came within its
/// timeout, and fails once the server is killed (to subscribe again).
#[test]
fn a_remote_polls_and_subscribes_from_another_thread() {
    let mut group = SentinelGroup::start(SentinelOpts {
        replicas: 0,
        sentinels: 1,
        quorum: 1,
        ..SentinelOpts::default()
    });
    let remote = group.nodes[0].remote();
    assert_eq!(remote.addr(), group.nodes[0].addr());
    let subscriber = remote.clone();
    let mut sub = std::thread::spawn(move || subscriber.psubscribe("news.*").unwrap())
        .join()
        .unwrap();
    group.nodes[0]
        .cmd(&["PUBLISH", "news.lab", "hello"])
        .unwrap();
    let heard = Message {
        channel: "news.lab".into(),
        payload: "hello".into(),
    };
    assert_eq!(sub.receive().unwrap(), Some(heard));
    assert_eq!(sub.receive().unwrap(), None, "nothing more within 2 s");
    let pong = std::thread::spawn(move || remote.cmd(&["PING"]))
        .join()
        .unwrap();
    assert_eq!(pong.unwrap(), Reply::Str("PONG".into()));
    group.nodes[0].kill();
    assert!(sub.receive().is_err(), "the server is gone");
}

#[test]
fn cluster_starts_and_nodes_can_be_added_and_removed() {
    let mut cluster = Cluster::start(ClusterOpts::default());
    assert_eq!(cluster.nodes.len(), 6);
    let info = cluster.nodes[0].cmd(&["CLUSTER", "INFO"]).unwrap();
    let info = info.as_str().unwrap();
    assert!(info.contains("cluster_state:ok"), "{info}");
    assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
    assert!(info.contains("cluster_known_nodes:6"), "{info}");
    for replica in &cluster.nodes[3..] {
        assert_eq!(replica.info("replication").unwrap()["role"], "slave");
    }

    let first = cluster.nodes[0].port();
    let id = cluster.node_id(first);
    assert_eq!(id.len(), 40, "{id}");

    let added = cluster.add_node();
    assert_eq!(cluster.nodes.len(), 7);
    let known = cluster.node(added).cmd(&["CLUSTER", "NODES"]).unwrap();
    assert_eq!(known.as_str().unwrap().lines().count(), 7);
    let added_id = cluster.node_id(added);
    assert!(cluster.nodes[0]
        .cmd(&["CLUSTER", "NODES"])
        .unwrap()
        .as_str()
        .unwrap()
        .contains(&added_id));

    cluster.remove_node(added);
    assert_eq!(cluster.nodes.len(), 6);
    for node in &cluster.nodes {
        let nodes = node.cmd(&["CLUSTER", "NODES"]).unwrap();
        assert!(!nodes.as_str().unwrap().contains(&added_id));
    }
    cluster.wait_ok(Duration::from_secs(10));
}

#[test]
fn a_panicking_test_leaves_no_servers_behind() {
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = std::panic::catch_unwind(move || {
        let cluster = Cluster::start(ClusterOpts {
            masters: 1,
            replicas_per_master: 0,
            ..ClusterOpts::default()
        });
        let node = &cluster.nodes[0];
        assert!(cluster.dir().join(format!("{}.log", node.port())).is_file());
        tx.send((
            node.pid().unwrap(),
            node.port(),
            cluster.dir().to_path_buf(),
        ))
        .unwrap();
        panic!("a test failing with a topology in scope");
    });
    assert!(outcome.is_err());
    let (pid, port, dir) = rx.recv().unwrap();
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "server {pid} survived"
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}
