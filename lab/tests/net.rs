//! Lab networks: servers on their own hosts, and partitions between them
//! that drop packets silently (as a dead link does) until healed. They need
//! root, iproute2 and nftables, and fail, never skip, without them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use redis_ha_lab::{Host, Net, Reply, SentinelGroup, SentinelOpts};

/// A TCP connect from inside `from` to `to`: `Ok` if accepted, the error
/// kind otherwise (a 1 s timeout is `TimedOut`).
fn connect(from: &Host, to: SocketAddr) -> Result<(), std::io::ErrorKind> {
    let from = from.clone();
    std::thread::spawn(move || {
        from.enter();
        TcpStream::connect_timeout(&to, Duration::from_secs(1))
            .map(drop)
            .map_err(|e| e.kind())
    })
    .join()
    .unwrap()
}

/// A listener inside `host`, accepting forever on a thread of its own.
fn listen(host: &Host) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    let host = host.clone();
    std::thread::spawn(move || {
        host.enter();
        let listener = TcpListener::bind((host.ip(), 0)).unwrap();
        tx.send(listener.local_addr().unwrap()).unwrap();
        for conn in listener.incoming() {
            drop(conn);
        }
    });
    rx.recv().unwrap()
}

#[test]
fn a_cut_drops_packets_between_two_sides_only_until_healed() {
    let net = Net::start();
    let (a, b, c) = (net.host("a"), net.host("b"), net.host("c"));
    assert_ne!(a.ip(), b.ip());
    let (at_b, at_c) = (listen(&b), listen(&c));
    assert_eq!(connect(&a, at_b), Ok(()));

    net.cut(&[&a], &[&b]);
    // Dropped, not refused: the connect hangs until its timeout.
    assert_eq!(connect(&a, at_b), Err(std::io::ErrorKind::TimedOut));
    assert_eq!(connect(&b, listen(&a)), Err(std::io::ErrorKind::TimedOut));
    // Beside the cut, and from the root namespace, everything still works.
    assert_eq!(connect(&a, at_c), Ok(()));
    assert_eq!(connect(&c, at_b), Ok(()));
    assert!(TcpStream::connect_timeout(&at_b, Duration::from_secs(1)).is_ok());

    net.heal();
    assert_eq!(connect(&a, at_b), Ok(()));
}

#[test]
fn loss_drops_about_that_share_of_packets() {
    let net = Net::start();
    let (a, b) = (net.host("a"), net.host("b"));
    let at_b = listen(&b);
    net.loss(&b, 50);
    // A SYN (and every retransmission within 1 s) lost fails the connect:
    // with half the packets each way lost, some connects fail and some
    // succeed (all 30 failing by chance: 0.75^30, under 0.02%).
    let results: Vec<bool> = (0..30).map(|_| connect(&a, at_b).is_ok()).collect();
    let ok = results.iter().filter(|r| **r).count();
    assert!(ok > 0 && ok < 30, "{ok} of 30 connects through 50% loss");
    net.heal();
    assert!((0..10).all(|_| connect(&a, at_b).is_ok()));
}

#[test]
fn a_delay_holds_a_host_s_packets_until_healed() {
    let net = Net::start();
    let (a, b) = (net.host("a"), net.host("b"));
    let at_b = listen(&b);
    let took = || {
        let start = Instant::now();
        assert_eq!(connect(&a, at_b), Ok(()));
        start.elapsed()
    };
    assert!(took() < Duration::from_millis(100));
    net.delay(&b, Duration::from_millis(200));
    // b's SYN-ACK leaves 200 ms late.
    let slow = took();
    assert!(slow >= Duration::from_millis(200), "{slow:?}");
    assert!(slow < Duration::from_millis(1000), "{slow:?}");
    net.heal();
    assert!(took() < Duration::from_millis(100));
}

/// A sentinel group with every server on its own host: the master cut off
/// from everyone else keeps taking writes from a client beside it while the
/// majority promotes a replica; after the heal Sentinel converts it and its
/// writes are gone. This is the partition that loses acknowledged writes.
#[test]
fn an_isolated_master_takes_writes_the_majority_then_discards() {
    let net = Net::start();
    let group = SentinelGroup::start(SentinelOpts {
        net: Some(net.clone()),
        ..SentinelOpts::default()
    });
    let master = &group.nodes[0];
    let ip = master.ip();
    assert!(!ip.is_loopback(), "{ip}");
    assert_eq!(master.addr(), format!("{ip}:{}", master.port()));
    assert!(group
        .nodes
        .iter()
        .all(|n| n.ip() != group.sentinels[0].ip()));

    let client = net.host("client");
    let side: Vec<&Host> = vec![master.host().unwrap(), &client];
    let others: Vec<&Host> = group.nodes[1..]
        .iter()
        .chain(&group.sentinels)
        .map(|n| n.host().unwrap())
        .collect();
    net.cut(&side, &others);
    let new = group.wait_for_new_master(master.port(), Duration::from_secs(30));

    // Seen from the root namespace (never cut), both are masters now.
    for port in [master.port(), new] {
        let role = group.node(port).info("replication").unwrap()["role"].clone();
        assert_eq!(role, "master", "{port}");
    }
    // The client beside the old master still writes there.
    let addr = SocketAddr::from((ip, master.port()));
    let acked = std::thread::spawn({
        let client = client.clone();
        move || {
            client.enter();
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).unwrap();
            s.write_all(b"SET isolated 1\r\n").unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).unwrap();
            buf == *b"+OK\r\n"
        }
    })
    .join()
    .unwrap();
    assert!(acked, "the isolated master acknowledges the write");

    net.heal();
    let deadline = Instant::now() + Duration::from_secs(30);
    while master.info("replication").unwrap()["role"] != "slave" {
        assert!(Instant::now() < deadline, "Sentinel never converted it");
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while master.cmd(&["GET", "isolated"]).unwrap() != Reply::Nil {
        assert!(Instant::now() < deadline, "the write survived");
        std::thread::sleep(Duration::from_millis(100));
    }
}
