//! The simulated cluster over RESP: what it answers, how it takes bad
//! input, how a failure spreads through its views in time, and its process
//! form. (How its replies compare with a real cluster's is the root crate's
//! `tests/simulator.rs`.)

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis_ha_lab::{FailureTiming, LabError, Reply, SimCluster, SimError, SimOpts};

/// Spreads of zero: every node moves at the same instant.
fn exact(masters: usize, replicas: usize) -> SimOpts {
    SimOpts {
        masters,
        replicas_per_master: replicas,
        timing: FailureTiming {
            pfail_spread: Duration::ZERO,
            fail_after: Duration::from_millis(300),
            fail_spread: Duration::ZERO,
            promote_after: Duration::from_millis(300),
            gossip_spread: Duration::ZERO,
        },
        ..SimOpts::default()
    }
}

fn text(sim: &SimCluster, node: usize, args: &[&str]) -> String {
    match sim.cmd(node, args) {
        Ok(Reply::Str(text)) => text,
        other => panic!("{args:?} on node {node}: {other:?}"),
    }
}

fn fields(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// (flags, master, slots and markers) of each `CLUSTER NODES` line, by id.
fn lines(sim: &SimCluster, node: usize) -> HashMap<String, (String, String, Vec<String>)> {
    text(sim, node, &["CLUSTER", "NODES"])
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert!(f.len() >= 8, "short line {l:?}");
            assert_eq!(f[7], "connected", "{l}");
            let rest = f[8..].iter().map(|s| s.to_string()).collect();
            (f[0].to_string(), (f[2].to_string(), f[3].to_string(), rest))
        })
        .collect()
}

/// A raw connection, for what the lab's client does not send.
struct Raw(TcpStream);

impl Raw {
    fn connect(sim: &SimCluster, node: usize) -> Raw {
        let stream = TcpStream::connect(&sim.node_addrs()[node]).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        Raw(stream)
    }

    fn send(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).unwrap();
    }

    /// Reads until `want` bytes arrived, or the connection closed.
    fn read(&mut self, want: usize) -> Vec<u8> {
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while got.len() < want {
            match self.0.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("read: {e} after {:?}", String::from_utf8_lossy(&got)),
            }
        }
        got
    }

    fn closed(&mut self) -> bool {
        matches!(self.0.read(&mut [0u8; 1]), Ok(0))
    }
}

#[test]
fn serves_the_agents_commands_in_redis_shapes() {
    let sim = SimCluster::start(SimOpts::default());
    let nodes = sim.nodes();
    assert_eq!(nodes.len(), 6);
    assert!(nodes
        .iter()
        .all(|n| n.id.len() == 40 && n.id.bytes().all(|b| b.is_ascii_hexdigit())));
    assert_eq!(
        nodes.iter().map(|n| n.shard).collect::<Vec<_>>(),
        [0, 1, 2, 0, 1, 2]
    );

    let view = lines(&sim, 0);
    assert_eq!(view.len(), 6);
    assert_eq!(view[&nodes[0].id].0, "myself,master");
    assert_eq!(view[&nodes[1].id].2, ["5461-10921"]);
    assert_eq!(
        view[&nodes[4].id],
        ("slave".into(), nodes[1].id.clone(), vec![])
    );
    let own = lines(&sim, 4);
    assert_eq!(own[&nodes[4].id].0, "myself,slave");

    let info = fields(&text(&sim, 3, &["CLUSTER", "INFO"]));
    assert_eq!(info["cluster_state"], "ok");
    assert_eq!(info["cluster_known_nodes"], "6");
    assert_eq!(info["cluster_size"], "3");
    assert_eq!(info["cluster_current_epoch"], "5");
    assert_eq!(
        info["cluster_my_epoch"], "1",
        "a replica shows its master's"
    );

    let master = sim.info(1, "replication").unwrap();
    assert_eq!(master["role"], "master");
    assert_eq!(master["connected_slaves"], "1");
    let port4 = nodes[4].addr.rsplit_once(':').unwrap().1;
    assert!(master["slave0"].starts_with(&format!("ip=127.0.0.1,port={port4},state=online,")));
    let replica = sim.info(4, "replication").unwrap();
    assert_eq!(replica["role"], "slave");
    assert_eq!(replica["master_link_status"], "up");
    assert_eq!(
        replica["master_port"],
        nodes[1].addr.rsplit_once(':').unwrap().1
    );
    // Offsets advance at the write rate; the replica follows closely.
    std::thread::sleep(Duration::from_millis(300));
    let later = sim.info(1, "replication").unwrap();
    let offset = |m: &HashMap<String, String>, k: &str| m[k].parse::<u64>().unwrap();
    assert!(offset(&later, "master_repl_offset") > offset(&master, "master_repl_offset"));

    let all = text(&sim, 0, &["INFO"]);
    for section in [
        "# Server",
        "# Clients",
        "# Stats",
        "# Replication",
        "# Cluster",
    ] {
        assert!(all.contains(section), "{section} missing from INFO");
    }
    let two = text(&sim, 0, &["INFO", "replication", "stats"]);
    assert!(two.starts_with("# Stats\r\n") && two.contains("\r\n\r\n# Replication\r\n"));
    assert_eq!(text(&sim, 0, &["INFO", "nosuchsection"]), "");

    assert_eq!(sim.cmd(0, &["PING"]).unwrap(), Reply::Str("PONG".into()));
    assert_eq!(
        sim.cmd(0, &["ECHO", "hi"]).unwrap(),
        Reply::Str("hi".into())
    );
    for ok in [
        &["AUTH", "anything"][..],
        &["AUTH", "user", "password"],
        &["CLIENT", "SETNAME", "agent"],
        &["CLIENT", "SETINFO", "lib-name", "fred"],
        &["SELECT", "0"],
    ] {
        assert_eq!(sim.cmd(0, ok).unwrap(), Reply::Str("OK".into()), "{ok:?}");
    }
    assert!(matches!(sim.cmd(0, &["CLIENT", "ID"]), Ok(Reply::Int(_))));
    assert_eq!(text(&sim, 2, &["CLUSTER", "MYID"]), nodes[2].id);
}

#[test]
fn bad_input_gets_error_replies_and_never_stops_the_server() {
    let sim = SimCluster::start(SimOpts::default());
    let err = sim.cmd(0, &["FLUSHALL", "ASYNC"]).unwrap_err();
    let LabError::Server { message, .. } = err else {
        panic!("{err:?}");
    };
    assert_eq!(
        message,
        "ERR unknown command 'FLUSHALL', with args beginning with: 'ASYNC' "
    );
    for (args, wanted) in [
        (
            &["CLUSTER", "RESET"][..],
            "ERR unknown subcommand 'RESET'. Try CLUSTER HELP.",
        ),
        (
            &["SELECT", "1"],
            "ERR SELECT is not allowed in cluster mode",
        ),
        (
            &["ECHO"],
            "ERR wrong number of arguments for 'echo' command",
        ),
        (
            &["CLUSTER", "NODES", "x"],
            "ERR wrong number of arguments for 'cluster|nodes' command",
        ),
    ] {
        match sim.cmd(0, args) {
            Err(LabError::Server { message, .. }) => assert_eq!(message, wanted),
            other => panic!("{args:?}: {other:?}"),
        }
    }

    // An unknown command leaves the connection open; pipelined and inline
    // requests are answered in order.
    let mut raw = Raw::connect(&sim, 1);
    raw.send(b"*1\r\n$3\r\nFOO\r\n*1\r\n$4\r\nPING\r\nECHO  x\r\n*0\r\n");
    let wanted = b"-ERR unknown command 'FOO', with args beginning with: \r\n+PONG\r\n$1\r\nx\r\n";
    assert_eq!(raw.read(wanted.len()), wanted);
    raw.send(b"QUIT\r\n");
    assert_eq!(raw.read(5), b"+OK\r\n");
    assert!(raw.closed());

    // A protocol error is answered, then the connection is closed.
    for garbage in [
        &b"*1\r\n:5\r\n"[..],
        b"*-x\r\n",
        b"*1\r\n$99999999999999999999999\r\n",
        b"*2\r\n$4\r\nPING\r\n$-3\r\n",
    ] {
        let mut raw = Raw::connect(&sim, 1);
        raw.send(garbage);
        let reply = raw.read(usize::MAX);
        assert!(reply.starts_with(b"-ERR Protocol error: "), "{reply:?}");
    }
    // Binary junk, half requests and a vanished client change nothing.
    let mut raw = Raw::connect(&sim, 1);
    raw.send(&[0xff, 0x00, 0xfe, b'\n', b'*', b'3', b'\r']);
    drop(raw);
    assert_eq!(sim.cmd(1, &["PING"]).unwrap(), Reply::Str("PONG".into()));
}

#[test]
fn a_long_pipeline_is_answered_in_full() {
    let sim = SimCluster::start(SimOpts::default());
    let mut raw = Raw::connect(&sim, 0);
    let one = text(&sim, 0, &["CLUSTER", "NODES"]).len();
    // Several megabytes of replies: written out as they pile up.
    let count = 4 * (1 << 20) / one;
    raw.send("CLUSTER NODES\r\n".repeat(count).as_bytes());
    raw.send(b"PING\r\n");
    let mut got = Vec::new();
    while !got.ends_with(b"+PONG\r\n") {
        let more = raw.read(1);
        assert!(!more.is_empty(), "closed after {} bytes", got.len());
        got.extend(more);
    }
    let text = String::from_utf8(got).unwrap();
    assert_eq!(text.matches("myself,master").count(), count);
}

#[test]
fn byte_counters_count_what_was_sent_and_received() {
    let sim = SimCluster::start(SimOpts::default());
    let first = text(&sim, 2, &["INFO", "stats"]);
    let nodes_reply = text(&sim, 2, &["CLUSTER", "NODES"]);
    let (before, after) = (fields(&first), fields(&text(&sim, 2, &["INFO", "stats"])));
    let grew = |k: &str| after[k].parse::<u64>().unwrap() - before[k].parse::<u64>().unwrap();
    // Between the two reads: the first INFO's reply and CLUSTER NODES's
    // went out; CLUSTER NODES (28 bytes) and the second INFO (25) came in.
    let bulk = |t: &str| (t.len() + t.len().to_string().len() + 5) as u64;
    assert_eq!(
        grew("total_net_output_bytes"),
        bulk(&first) + bulk(&nodes_reply)
    );
    assert_eq!(grew("total_net_input_bytes"), 28 + 25);
    assert_eq!(grew("total_commands_processed"), 2);
    assert_eq!(grew("total_connections_received"), 2);
}

#[test]
fn a_frozen_node_accepts_but_answers_only_once_resumed() {
    let sim = SimCluster::start(SimOpts::default());
    sim.freeze(4).unwrap();
    assert!(sim.is_frozen(4).unwrap());
    let mut raw = Raw::connect(&sim, 4);
    raw.0
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    raw.send(b"PING\r\n");
    let mut buf = [0u8; 16];
    assert!(raw.0.read(&mut buf).is_err(), "no reply while frozen");
    assert!(matches!(
        sim.cmd(4, &["PING"]),
        Err(LabError::Timeout { .. })
    ));
    // The cluster does not react to a frozen node, but its peers see the
    // ping it leaves unanswered.
    let view = lines(&sim, 0);
    let id4 = &sim.nodes()[4].id;
    assert_eq!(view[id4].0, "slave");
    let nodes = text(&sim, 0, &["CLUSTER", "NODES"]);
    let line = nodes.lines().find(|l| l.starts_with(id4.as_str())).unwrap();
    let ping: u64 = line.split(' ').nth(4).unwrap().parse().unwrap();
    assert!(ping > 0, "ping sent and unanswered: {line}");

    sim.resume(4).unwrap();
    raw.0
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    assert_eq!(raw.read(7), b"+PONG\r\n", "the queued request is answered");
    assert!(!sim.is_frozen(4).unwrap());
    assert!(matches!(
        sim.freeze(6),
        Err(SimError::NoSuchNode { index: 6, nodes: 6 })
    ));
}

/// Polls `node` every 20 ms until `done` holds for its (flags of the
/// failed master, CLUSTER INFO); returns when, since `start`.
fn until(
    sim: &SimCluster,
    node: usize,
    start: Instant,
    done: impl Fn(&str, &HashMap<String, String>) -> bool,
) -> Duration {
    let failed = sim.nodes()[1].id.clone();
    loop {
        let info = fields(&text(sim, node, &["CLUSTER", "INFO"]));
        let flags = lines(sim, node)[&failed].0.clone();
        if done(&flags, &info) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "stuck at {flags} {info:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_failed_master_is_flagged_then_replaced_as_redis_does_it() {
    let sim = SimCluster::start(exact(3, 1));
    let nodes = sim.nodes();
    let start = Instant::now();
    assert_eq!(sim.fail_master(1).unwrap(), 1);
    assert_eq!(
        sim.master_of(1).unwrap(),
        4,
        "the replica about to take over"
    );
    assert!(matches!(
        sim.fail_master(1),
        Err(SimError::FailoverInProgress { shard: 1, .. })
    ));
    assert!(matches!(
        sim.resume(1),
        Err(SimError::FailoverInProgress { .. })
    ));

    let pfail = until(&sim, 0, start, |flags, info| {
        flags == "master,fail?" && info["cluster_slots_pfail"] == "5461"
    });
    assert!(
        pfail >= Duration::from_secs(1),
        "not before the node timeout: {pfail:?}"
    );
    let fail = until(&sim, 2, start, |flags, info| {
        flags == "master,fail"
            && info["cluster_state"] == "fail"
            && info["cluster_slots_fail"] == "5461"
    });
    assert!(fail >= Duration::from_millis(1300), "{fail:?}");
    let promoted = until(&sim, 0, start, |_, info| info["cluster_state"] == "ok");
    assert!(promoted >= Duration::from_millis(1600), "{promoted:?}");

    let view = lines(&sim, 3);
    assert_eq!(
        view[&nodes[1].id],
        ("master,fail".into(), "-".into(), vec![])
    );
    assert_eq!(
        view[&nodes[4].id],
        ("master".into(), "-".into(), vec!["5461-10921".into()])
    );
    let info = fields(&text(&sim, 3, &["CLUSTER", "INFO"]));
    assert_eq!(info["cluster_current_epoch"], "6");
    let new_master = sim.info(4, "replication").unwrap();
    assert_eq!(new_master["role"], "master");
    assert_eq!(new_master["connected_slaves"], "0");
    assert_ne!(new_master["master_replid2"], "0".repeat(40));

    // Back, as a replica of the new master.
    sim.resume(1).unwrap();
    let back = lines(&sim, 1);
    assert_eq!(back[&nodes[1].id].0, "myself,slave");
    assert_eq!(back[&nodes[1].id].1, nodes[4].id);
    let replica = sim.info(1, "replication").unwrap();
    assert_eq!(replica["role"], "slave");
    assert_eq!(
        replica["master_port"],
        nodes[4].addr.rsplit_once(':').unwrap().1
    );
    assert_eq!(sim.info(4, "replication").unwrap()["connected_slaves"], "1");
    assert_eq!(lines(&sim, 0)[&nodes[1].id].0, "slave");

    // A shard without an answering replica stays down until its master is back.
    sim.freeze(5).unwrap();
    sim.fail_master(2).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let info = fields(&text(&sim, 0, &["CLUSTER", "INFO"]));
    assert_eq!(info["cluster_state"], "fail");
    assert_eq!(lines(&sim, 0)[&nodes[2].id].2, ["10922-16383"]);
    sim.resume(2).unwrap();
    let info = fields(&text(&sim, 0, &["CLUSTER", "INFO"]));
    assert_eq!(info["cluster_state"], "ok");
}

#[test]
fn open_slots_show_on_the_two_masters_own_lines_only() {
    let sim = SimCluster::start(SimOpts::default());
    let nodes = sim.nodes();
    sim.open_migration(100, 0, 1).unwrap();
    assert_eq!(
        lines(&sim, 0)[&nodes[0].id].2,
        ["0-5460".to_string(), format!("[100->-{}]", nodes[1].id)]
    );
    assert_eq!(
        lines(&sim, 1)[&nodes[1].id].2,
        ["5461-10921".to_string(), format!("[100-<-{}]", nodes[0].id)]
    );
    assert_eq!(lines(&sim, 2)[&nodes[0].id].2, ["0-5460"]);
    assert_eq!(lines(&sim, 1)[&nodes[0].id].2, ["0-5460"]);
    assert!(matches!(
        sim.open_migration(6000, 0, 1),
        Err(SimError::NotOwner {
            slot: 6000,
            shard: 0
        })
    ));
    sim.close_migration(100).unwrap();
    assert_eq!(lines(&sim, 0)[&nodes[0].id].2, ["0-5460"]);
}

#[test]
fn a_thousand_nodes_answer_from_one_topology() {
    let started = Instant::now();
    let sim = SimCluster::start(SimOpts {
        masters: 500,
        ..SimOpts::default()
    });
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let nodes = sim.nodes();
    assert_eq!(nodes.len(), 1000);
    for node in [0, 499, 500, 999] {
        let view = lines(&sim, node);
        assert_eq!(view.len(), 1000);
        assert_eq!(
            view.values().filter(|l| l.0.starts_with("myself,")).count(),
            1
        );
        let slots: usize = view
            .values()
            .flat_map(|l| &l.2)
            .map(|r| match r.split_once('-') {
                Some((a, b)) => b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1,
                None => 1,
            })
            .sum();
        assert_eq!(slots, 16384);
    }
    assert_eq!(lines(&sim, 999)[&nodes[999].id].1, nodes[499].id);
}

/// `redis-ha-lab sim ARGS` with piped stdin and stdout.
fn sim_process(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_redis-ha-lab"))
        .arg("sim")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn the_process_prints_its_nodes_and_takes_controls_on_stdin() {
    let mut child = sim_process(&["--masters", "2", "--replicas", "1"]);
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(
        line.starts_with(r#"{"nodes":[{"index":0,"addr":"127.0.0.1:"#),
        "{line}"
    );
    assert_eq!(line.matches(r#""id":""#).count(), 4, "{line}");
    let addr = line
        .split(r#""addr":""#)
        .nth(3)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();

    let mut ask = |command: &str| {
        writeln!(stdin, "{command}").unwrap();
        let mut answer = String::new();
        stdout.read_line(&mut answer).unwrap();
        answer.trim_end().to_string()
    };
    assert_eq!(ask("freeze 2"), "ok");
    let mut frozen = TcpStream::connect(&addr).unwrap();
    frozen
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    frozen.write_all(b"PING\r\n").unwrap();
    assert!(frozen.read(&mut [0u8; 8]).is_err(), "node 2 is frozen");
    assert_eq!(ask("resume 2"), "ok");
    assert_eq!(ask("migrate 100 0 1"), "ok");
    assert_eq!(ask("close-migration 100"), "ok");
    assert!(ask("close-migration 100").starts_with("error slot 100 is not migrating"));
    assert_eq!(ask("fail-master 1"), "ok 1");
    assert!(ask("master-of 1").starts_with("ok 3 127.0.0.1:"));
    assert!(ask("explode").starts_with("error unknown command `explode`"));
    assert!(ask("freeze 99").starts_with("error no node 99"));
    assert_eq!(ask("quit"), "ok");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");

    // Without `quit`, the end of stdin stops it too.
    let mut child = sim_process(&["--masters", "1", "--replicas", "0"]);
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "still running without stdin");
        std::thread::sleep(Duration::from_millis(20));
    }
}
