//! The agent under abuse: clients that crowd or stall its HTTP port, a
//! sentinel flooding its event channels with garbage and forged events, a
//! full disk under its state files, and servers that answer garbage or
//! enormous replies. Through each, the agent keeps serving `/metrics` and
//! keeps polling, its memory stays bounded, and it invents nothing.

mod support;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_ha_lab::{SentinelGroup, SentinelOpts};
use support::receiver::Receiver;
use support::{sentinel_deployment, smallest_sentinel_group, temp_dir, Agent};

const LONG: Duration = Duration::from_secs(40);
const MB: u64 = 1024 * 1024;

/// The median of `n` sequential `/metrics` scrapes, each of which must
/// answer 200.
fn scrape_p50(agent: &Agent, n: usize) -> Duration {
    let mut took: Vec<Duration> = (0..n)
        .map(|_| {
            let start = Instant::now();
            let (status, _) = agent.get("/metrics");
            assert_eq!(status, 200, "a well-behaved scrape failed");
            start.elapsed()
        })
        .collect();
    took.sort();
    took[n / 2]
}

/// Whether the peer closed `stream`: a read gives end of file or a reset
/// (anything the agent answered before closing is read past).
fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// Must show: 300 clients that send half a request and then trickle a
/// header line a second (slowloris), plus 200 threads scraping `/metrics`
/// as fast as they can, do not starve a well-behaved scraper: its median
/// scrape stays under max(10 x its unloaded median, 500 ms). The bound is
/// generous on purpose (2 cores shared with 500 client threads and the
/// servers): this is a does-not-starve check, speed is for the benchmarks.
/// The slow clients are disconnected once the header read timeout has
/// passed, so they hold nothing forever; memory stays bounded; polls go on.
#[test]
fn crowds_and_slow_clients_do_not_starve_a_scraper() {
    let group = smallest_sentinel_group();
    let agent = Agent::start(&sentinel_deployment("s", &[group.sentinels[0].addr()]));
    agent.wait_targets_up(3, LONG);
    let baseline = scrape_p50(&agent, 20);
    let rss_before = agent.rss();
    let addr = agent.base.trim_start_matches("http://").to_string();

    let connected = Instant::now();
    let mut slow: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: agent\r\n")
                .unwrap();
            s
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let streams: Vec<TcpStream> = slow.iter().map(|s| s.try_clone().unwrap()).collect();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut streams = streams;
            while !stop.load(Ordering::Relaxed) {
                for s in &mut streams {
                    let _ = s.write_all(b"X-Slow: 1\r\n");
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let scrapers: Vec<_> = (0..200)
        .map(|_| {
            let (url, stop) = (format!("{}/metrics", agent.base), stop.clone());
            let (served, failed) = (served.clone(), failed.clone());
            std::thread::spawn(move || {
                let http = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(30))
                    .build();
                while !stop.load(Ordering::Relaxed) {
                    match http.get(&url).call().map(|r| r.into_string()) {
                        Ok(Ok(body)) if body.contains("redis_ha_target_up") => &served,
                        _ => &failed,
                    }
                    .fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let polled = agent.last_polls();
    let loaded = scrape_p50(&agent, 20);
    let rss_loaded = agent.rss();
    agent.wait_polled_since(&polled, LONG);
    stop.store(true, Ordering::Relaxed);
    for s in scrapers {
        s.join().unwrap();
    }
    trickle.join().unwrap();

    // The header read timeout (10 s) has passed for every slow client
    // within a few seconds more: each must have been disconnected.
    let deadline = connected + Duration::from_secs(20);
    let mut still_open = 0;
    for s in &mut slow {
        let left = deadline.saturating_duration_since(Instant::now());
        s.set_read_timeout(Some(left.max(Duration::from_millis(10))))
            .unwrap();
        if !closed_by_peer(s) {
            still_open += 1;
        }
    }
    let rss_after = agent.rss();
    let (served, failed) = (
        served.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    eprintln!(
        "scrape p50: unloaded {baseline:?}, loaded {loaded:?}; crowd: {served} scrapes served, {failed} failed; \
         slow clients still open after 20 s: {still_open}/300; \
         RSS before {} MB, under load {} MB, after {} MB",
        rss_before / MB,
        rss_loaded / MB,
        rss_after / MB
    );
    let bound = (baseline * 10).max(Duration::from_millis(500));
    assert!(
        loaded < bound,
        "the scraper starved: median {loaded:?} under load, bound {bound:?}"
    );
    assert!(served > 0, "the crowd of scrapers got no answer at all");
    assert_eq!(
        still_open, 0,
        "clients that never finish their request headers are held open"
    );
    assert!(
        rss_loaded.max(rss_after) < rss_before + 64 * MB,
        "memory grew from {} MB to {} MB",
        rss_before / MB,
        rss_loaded.max(rss_after) / MB
    );
    for s in &slow {
        let _ = s.shutdown(Shutdown::Both);
    }
    agent.wait_polled_since(&agent.last_polls(), LONG);
}

/// One command as a client sends it (an array of bulk strings), or `None`
/// when the client is gone.
fn read_command(reader: &mut BufReader<TcpStream>) -> Option<Vec<String>> {
    let mut line = String::new();
    reader.read_line(&mut line).ok().filter(|n| *n > 0)?;
    let n: usize = line.trim().strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::new();
    for _ in 0..n {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let len: usize = line.trim().strip_prefix('$')?.parse().ok()?;
        let mut arg = vec![0; len + 2];
        reader.read_exact(&mut arg).ok()?;
        arg.truncate(len);
        args.push(String::from_utf8_lossy(&arg).into_owned());
    }
    Some(args)
}

/// A `pmessage` of the `*` pattern as a sentinel pushes it.
fn pmessage(channel: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = b"*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n".to_vec();
    for part in [channel, payload] {
        out.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A server configured as one more sentinel of a real group, standing in
/// for whatever may answer on a sentinel's address: it
/// answers the connection's handshake, refuses every `SENTINEL` command (so
/// its polls fail), and pushes `flood` to each connection that ran
/// `PSUBSCRIBE` as many times as `rounds` says, each followed by
/// `+new-epoch <round>` to say it is done. A real sentinel
/// accepts `PUBLISH` only on its hello channel and does not pass it on; a
/// sentinel that is compromised, or a program answering on its address, is
/// what can say anything there.
fn flooding_sentinel(flood: Arc<Vec<Vec<u8>>>, rounds: Arc<AtomicUsize>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let (flood, rounds) = (flood.clone(), rounds.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                while let Some(args) = read_command(&mut reader) {
                    let reply: Vec<u8> = match args[0].to_ascii_uppercase().as_str() {
                        "PING" => b"+PONG\r\n".to_vec(),
                        "AUTH" | "SELECT" | "QUIT" => b"+OK\r\n".to_vec(),
                        "CLIENT" if args[1].eq_ignore_ascii_case("ID") => b":7\r\n".to_vec(),
                        "CLIENT" => b"+OK\r\n".to_vec(),
                        "INFO" => {
                            let info =
                                "# Server\r\nredis_version:7.0.15\r\nredis_mode:sentinel\r\n";
                            format!("${}\r\n{info}\r\n", info.len()).into_bytes()
                        }
                        "PSUBSCRIBE" => {
                            let confirmed = b"*3\r\n$10\r\npsubscribe\r\n$1\r\n*\r\n:1\r\n";
                            if conn.write_all(confirmed).is_err() {
                                break;
                            }
                            for round in 1.. {
                                while rounds.load(Ordering::Relaxed) < round {
                                    std::thread::sleep(Duration::from_millis(10));
                                }
                                let done = pmessage(b"+new-epoch", round.to_string().as_bytes());
                                if flood
                                    .iter()
                                    .chain([&done])
                                    .any(|m| conn.write_all(m).is_err())
                                {
                                    break;
                                }
                            }
                            break;
                        }
                        _ => b"-ERR unknown command\r\n".to_vec(),
                    };
                    if conn.write_all(&reply).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Forged events about masters no sentinel monitors, as a sentinel would
/// word them, garbage on random channels, and megabyte payloads on a
/// channel about no master: `n` rounds of the first two kinds.
fn forged_events(n: usize) -> Vec<Vec<u8>> {
    let mut rng = fastrand::Rng::with_seed(18);
    let mut all = Vec::new();
    for i in 0..n {
        let ghost = format!("ghost{i}");
        let (old, new) = (20000 + i, 30000 + i);
        for (channel, payload) in [
            ("+sdown", format!("master {ghost} 127.0.0.1 {old}")),
            (
                "+odown",
                format!("master {ghost} 127.0.0.1 {old} #quorum 1/1"),
            ),
            ("+try-failover", format!("master {ghost} 127.0.0.1 {old}")),
            ("+elected-leader", format!("master {ghost} 127.0.0.1 {old}")),
            (
                "+switch-master",
                format!("{ghost} 127.0.0.1 {old} 127.0.0.1 {new}"),
            ),
            ("+failover-end", format!("master {ghost} 127.0.0.1 {old}")),
        ] {
            all.push(pmessage(channel.as_bytes(), payload.as_bytes()));
        }
        let garbage: Vec<u8> = (0..rng.usize(1..200)).map(|_| rng.u8(..)).collect();
        let channel: Vec<u8> = (0..rng.usize(1..20)).map(|_| rng.u8(..)).collect();
        all.push(pmessage(&channel, &garbage));
        all.push(pmessage(b"+switch-master", &garbage));
    }
    for _ in 0..200 {
        let mut payload = b"5 ".to_vec();
        payload.resize(MB as usize, b'x');
        all.push(pmessage(b"+new-epoch", &payload));
    }
    all
}

/// Must show: a sentinel of the deployment whose channels carry 16,000
/// forged and garbage messages (`+sdown`, `+odown`, `+try-failover`,
/// `+elected-leader`, `+switch-master`, `+failover-end` for 2000 masters
/// that do not exist, random bytes on random channels) and 200 events of
/// 1 MB: no failover timeline is opened and nothing about a master that
/// does not exist reaches the webhook or /metrics; the event log keeps no
/// megabyte payloads and memory stays bounded; the real master is still
/// the one reported and polls go on. The webhook does get the alert that
/// holds (that sentinel does not answer its polls: `TargetDown`), so its
/// silence about the rest means something.
#[test]
fn a_sentinel_flooding_its_channels_invents_nothing() {
    let group = smallest_sentinel_group();
    let hook = Receiver::start();
    let flood = Arc::new(forged_events(2000));
    let rounds = Arc::new(AtomicUsize::new(0));
    let fake = flooding_sentinel(flood.clone(), rounds.clone());
    let sentinels = [group.sentinels[0].addr(), fake.clone()];
    let agent = Agent::start_full(
        &sentinel_deployment("s", &sentinels),
        &format!(
            "alerts:\n  state_dir: \"$DIR/state\"\n  rules:\n    TargetDown: {{ for: 1s }}\n  receivers:\n    - {{ name: hook, type: webhook, url: \"{}\" }}\n",
            hook.url("/hook")
        ),
        &[],
    );
    agent.wait_metrics("the subscription to the flooding sentinel", LONG, |m| {
        m.value(
            "redis_ha_sentinel_subscription_up",
            &[("deployment", "s"), ("sentinel", &fake)],
        ) == Some(1.0)
    });
    // Whatever the agent makes of a flood, it has read to its end when the
    // round's last event is in the event log.
    let flood_once = || {
        let round = rounds.fetch_add(1, Ordering::Relaxed) + 1;
        agent.wait_until("the flood's last event in the event log", LONG, |a| {
            let last = &a.json("/api/v1/events?limit=1")["events"][0];
            last["sentinel"] == fake.as_str() && last["payload"] == round.to_string().as_str()
        });
        agent.rss()
    };
    let rss_before = agent.rss();
    let rss_after: Vec<u64> = (0..4).map(|_| flood_once()).collect();
    agent.wait_metrics("the real group up", LONG, |m| {
        m.find("redis_ha_target_up", &[("deployment", "s")])
            .filter(|s| s.value == 1.0)
            .count()
            == 3
    });
    agent.wait_polled_since(&agent.last_polls(), LONG);
    hook.wait_for("TargetDown for the flooding sentinel", LONG, |got| {
        got.iter().any(|r| {
            let a = &r.json()["alerts"][0];
            a["labels"]["alertname"] == "TargetDown" && a["labels"]["sentinel"] == fake.as_str()
        })
    });

    let failovers = agent.json("/api/v1/failovers")["failovers"].clone();
    assert_eq!(failovers, serde_json::json!([]), "timelines invented");
    for r in hook.requests() {
        let a = &r.json()["alerts"][0];
        assert_eq!(a["labels"]["alertname"], "TargetDown", "{}", r.body);
    }
    let m = agent.metrics();
    assert!(
        !m.text.contains("ghost"),
        "series for masters that do not exist:\n{}",
        m.text
            .lines()
            .filter(|l| l.contains("ghost"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        m.label_values(
            "redis_ha_sentinel_master_info",
            "node",
            &[("deployment", "s")]
        ),
        vec![group.nodes[0].addr()],
        "the real master"
    );
    assert_eq!(
        m.value(
            "redis_ha_target_up",
            &[("deployment", "s"), ("sentinel", &fake)]
        ),
        Some(0.0)
    );
    let events = agent.json("/api/v1/events").to_string();
    let flood_mb = flood.iter().map(Vec::len).sum::<usize>() as u64 / MB;
    eprintln!(
        "floods of {flood_mb} MB: RSS before {} MB, after each of 4 floods {:?} MB; the event log's JSON is {} kB",
        rss_before / MB,
        rss_after.iter().map(|r| r / MB).collect::<Vec<_>>(),
        events.len() / 1024
    );
    assert!(
        !events.contains("ghost"),
        "the event log lists events about masters that do not exist"
    );
    assert!(
        events.len() < MB as usize,
        "the event log holds megabyte payloads: {} bytes",
        events.len()
    );
    // What floods leave is the allocator's (read buffers freed and kept
    // for reuse, by arena): after four, less than what one carried, where
    // the event log kept the megabyte events (and snapshots copies of
    // them).
    let most = rss_after.iter().max().unwrap();
    assert!(
        *most < rss_before + flood_mb * MB,
        "memory grew from {} MB to {} MB over four floods of {flood_mb} MB",
        rss_before / MB,
        most / MB
    );
}

/// A tmpfs of 64 kB mounted for the test, filled to the last byte by
/// `fill`; unmounted when dropped, panics included (lazily: the agent may
/// still hold files open on it).
struct FullDisk {
    dir: PathBuf,
}

impl FullDisk {
    fn mount(dir: &Path) -> FullDisk {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount tmpfs (the test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        FullDisk {
            dir: dir.to_path_buf(),
        }
    }

    /// Writes a file until the filesystem has no byte left.
    fn fill(&self) {
        let mut f = std::fs::File::create(self.dir.join("filler")).unwrap();
        let block = [0u8; 4096];
        loop {
            if let Err(e) = f.write_all(&block).and_then(|()| f.sync_all()) {
                assert_eq!(e.raw_os_error(), Some(28), "ENOSPC expected: {e}");
                break;
            }
        }
        // The last partial block too.
        while f.write_all(&[0]).is_ok() && f.sync_all().is_ok() {}
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Must show: with the timeline file and the alert state on a full disk
/// (a real full filesystem: as root, permissions would not stop writes),
/// a failover goes on: polls and `/metrics` continue, every failed write is
/// counted in `redis_ha_state_write_errors_total` and logged, and the
/// alerts of the failover still reach the webhook from memory.
#[test]
fn a_full_disk_loses_nothing_that_memory_can_keep() {
    let group = SentinelGroup::start(SentinelOpts::default());
    let hook = Receiver::start();
    let disk = FullDisk::mount(&temp_dir("abuse-full-disk"));
    let dir = disk.dir.display();
    let agent = Agent::start_full(
        &sentinel_deployment("s", &[group.sentinels[0].addr()]),
        &format!(
            "timelines:\n  path: \"{dir}/timelines.jsonl\"\nalerts:\n  state_dir: \"{dir}\"\n  receivers:\n    - {{ name: hook, type: webhook, url: \"{}\" }}\n",
            hook.url("/hook")
        ),
        &[],
    );
    agent.wait_targets_up(6, LONG);
    let errors = |a: &Agent, file: &str| {
        a.metrics()
            .value("redis_ha_state_write_errors_total", &[("file", file)])
            .expect("the write error counter is served from the start")
    };
    for file in ["timelines", "delivery_queue", "firing_alerts"] {
        assert_eq!(errors(&agent, file), 0.0, "{file} before the disk is full");
    }
    disk.fill();

    let old = group.master_port().unwrap();
    group.node(old).freeze();
    let new = group.wait_for_new_master(old, LONG);
    group.node(old).resume();
    hook.wait_for("FailoverSwitched delivered from memory", LONG, |got| {
        got.iter()
            .any(|r| r.json()["alerts"][0]["labels"]["alertname"] == "FailoverSwitched")
    });
    agent.wait_until("the failover's timeline write failed", LONG, |a| {
        errors(a, "timelines") > 0.0
    });
    let counted = ["timelines", "delivery_queue", "firing_alerts"].map(|f| (f, errors(&agent, f)));
    eprintln!("failed writes counted: {counted:?}");
    for (file, n) in counted {
        assert!(n > 0.0, "{file} writes failed unseen");
    }
    let log = agent.log();
    for line in [
        "cannot write timelines",
        "cannot write the delivery queue",
        "cannot record the firing alerts",
    ] {
        assert!(log.contains(line), "no {line:?} in the log:\n{log}");
    }
    // The timeline is kept in memory and served.
    let t = agent.ended_failover("s", "the failover ends", LONG, |_| true);
    assert_eq!(
        t["new_master"].as_str(),
        Some(format!("127.0.0.1:{new}").as_str()),
        "{t}"
    );
    agent.wait_polled_since(&agent.last_polls(), LONG);
    // The agent first: it holds files open on the file system.
    drop(agent);
    drop(disk);
}

/// How a fake server answers each read of a request.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// Random bytes.
    Garbage,
    /// A bulk string declared 512 MB long of which 1 MB ever comes.
    Endless,
    /// A complete bulk string of 50 MB.
    Huge,
    /// A valid reply of the wrong type: an integer for everything.
    WrongType,
}

/// A TCP server standing in for a sentinel: it reads whatever comes and
/// answers each read as `answer` says, on a thread per connection, until
/// the test process ends. Replies are made before it listens, so that a
/// 50 MB one leaves at once.
fn fake_server(answer: Answer) -> String {
    let fixed: Arc<Vec<u8>> = Arc::new(match answer {
        Answer::Garbage => Vec::new(),
        Answer::Endless => {
            let mut r = b"$536870912\r\n".to_vec();
            r.resize(r.len() + MB as usize, b'x');
            r
        }
        Answer::Huge => {
            let mut r = format!("${}\r\n", 50 * MB).into_bytes();
            r.resize(r.len() + 50 * MB as usize, b'y');
            r.extend_from_slice(b"\r\n");
            r
        }
        Answer::WrongType => b":42\r\n".to_vec(),
    });
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let fixed = fixed.clone();
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut rng = fastrand::Rng::new();
                let mut buf = [0; 65536];
                while matches!(conn.read(&mut buf), Ok(n) if n > 0) {
                    let garbage: Vec<u8>;
                    let reply = match answer {
                        Answer::Garbage => {
                            garbage = (0..4096).map(|_| rng.u8(..)).collect();
                            &garbage
                        }
                        _ => &*fixed,
                    };
                    if conn.write_all(reply).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Must show: four "sentinels" that answer random bytes, a bulk string
/// declared 512 MB long that never completes, a real 50 MB bulk string,
/// and an integer to every command are reported down (`target_up` 0, their
/// poll failures counting, the reason logged), the agent's memory stays
/// bounded and flat while it keeps reading them, and the real sentinel
/// group configured beside them is polled and reported as before.
///
/// fred reads a reply whole and has no limit on its size: each 50 MB reply
/// costs about three times that while it is read (the read buffer grows by
/// doubling, then the text is copied out), one reply per connection at a
/// time, hence the 400 MB bound. A declared length costs nothing until its
/// bytes arrive: the 512 MB that never come are never reserved.
#[test]
fn servers_answering_garbage_or_huge_replies_are_down_not_fatal() {
    let group = smallest_sentinel_group();
    let fakes: Vec<(Answer, String)> = [
        Answer::Garbage,
        Answer::Endless,
        Answer::Huge,
        Answer::WrongType,
    ]
    .into_iter()
    .map(|a| (a, fake_server(a)))
    .collect();
    let mut deployments = sentinel_deployment("real", &[group.sentinels[0].addr()]);
    for (answer, addr) in &fakes {
        deployments += &sentinel_deployment(&format!("{answer:?}"), std::slice::from_ref(addr));
    }
    let agent = Agent::start(&deployments);
    agent.wait_metrics("the real group up", LONG, |m| {
        m.find("redis_ha_target_up", &[("deployment", "real")])
            .filter(|s| s.value == 1.0)
            .count()
            == 3
    });
    let failures = |a: &Agent, deployment: &str| {
        a.metrics()
            .value(
                "redis_ha_target_poll_failures_total",
                &[("deployment", deployment)],
            )
            .unwrap_or(0.0)
    };
    // Past the first connections and their first huge replies.
    std::thread::sleep(Duration::from_secs(5));
    let counted: Vec<f64> = fakes
        .iter()
        .map(|(a, _)| failures(&agent, &format!("{a:?}")))
        .collect();
    let polled = agent.last_polls();
    // The highest RSS of each 10 s, over 30 s of huge replies read again
    // and again: how long the first takes to be read depends on the load
    // of the machine, what matters is that later windows rise no higher.
    let mut windows = [0; 3];
    for window in &mut windows {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            *window = (*window).max(agent.rss());
            assert_eq!(agent.get("/metrics").0, 200);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    agent.wait_polled_since(&polled, LONG);
    let m = agent.metrics();
    for ((answer, addr), before) in fakes.iter().zip(counted) {
        let deployment = format!("{answer:?}");
        assert_eq!(
            m.value(
                "redis_ha_target_up",
                &[("deployment", &deployment), ("sentinel", addr)]
            ),
            Some(0.0),
            "{answer:?} reported up"
        );
        let after = failures(&agent, &deployment);
        assert!(after > before, "{answer:?}: poll failures stopped counting");
        let log = agent.log();
        let why = log
            .lines()
            .find(|l| l.contains("target down") && l.contains(&format!("deployment={deployment} ")))
            .unwrap_or_else(|| panic!("{answer:?}: no reason logged"));
        eprintln!("{answer:?}: {}", &why[why.find("error=").unwrap_or(0)..]);
    }
    assert_eq!(
        m.find("redis_ha_target_up", &[("deployment", "real")])
            .filter(|s| s.value == 1.0)
            .count(),
        3,
        "the real group beside them"
    );
    assert_eq!(
        m.label_values(
            "redis_ha_sentinel_master_info",
            "node",
            &[("deployment", "real")]
        ),
        vec![group.nodes[0].addr()]
    );
    let [first, second, third] = windows.map(|w| w / MB);
    eprintln!("highest RSS in each 10 s from 5 s on: {first}, {second}, {third} MB");
    assert!(
        first.max(second).max(third) < 400,
        "memory reached {} MB reading 50 MB replies",
        first.max(second).max(third)
    );
    // One more reply held at once (by another connection, in another
    // allocator arena) moves the peak by a reply's 50 MB; a reply kept
    // per poll would add a gigabyte in 10 s.
    assert!(
        third < first.max(second) + 64,
        "memory keeps growing: {first}, {second}, then {third} MB"
    );
}
