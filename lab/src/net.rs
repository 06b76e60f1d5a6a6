//! Hosts on a network the lab makes: one Linux network namespace per server,
//! each with its own address on a bridge, so a test can partition them.
//!
//! On one loopback, a "partition" can only be faked by freezing a process,
//! which stops it from talking to everyone at once and stops its clock too.
//! Real partitions split the servers into groups that each go on working:
//! an isolated master keeps taking writes from the clients on its side while
//! the majority elects a new one. Namespaces make that real: each server
//! gets a namespace (`ip netns`) with a veth into one bridge in the root
//! namespace, and packets between two groups are dropped silently by
//! nftables rules inside each namespace, as a dead switch port drops them
//! (connections hang and time out; nothing is refused).
//!
//! The root namespace, where the test process runs, holds the bridge's own
//! address and is never cut: the test always sees every server, and an agent
//! started there sees both sides of any partition. An agent or a client that
//! must stand on one side gets a [`Host`] of its own.
//!
//! Needs root, `ip` (iproute2), `nft` (nftables) and, for delays,
//! `iptables`. The kernel need not have `netem`: loss is an nftables rule
//! with a random number, and a delay is a queue (`NFQUEUE`) that a thread
//! of the lab drains late.

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::ports::{reserve_in, PortReservation};

/// How many networks can exist at once on the machine (one /24 each).
const NETS: u16 = 250;

/// A bridge and the hosts on it. Cheap to clone (all clones are the same
/// network); the namespaces and the bridge are removed once the last clone
/// and the last [`Host`] are dropped.
#[derive(Clone)]
pub struct Net {
    inner: Arc<Inner>,
}

struct Inner {
    /// `0..NETS`: names the bridge (`rhl<index>`) and the subnet
    /// (`10.213.<index>.0/24`).
    index: u8,
    next_host: AtomicU8,
    /// Every host made, to heal them all.
    hosts: Mutex<Vec<Host>>,
    /// The threads holding delayed packets, until healed.
    delays: Mutex<Vec<Delay>>,
    /// Holds the index for this process until dropped.
    _reservation: PortReservation,
}

/// One namespace on a [`Net`], with its address.
#[derive(Clone)]
pub struct Host {
    name: String,
    ip: Ipv4Addr,
}

impl fmt::Debug for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Net({})", self.bridge())
    }
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Host({} {})", self.name, self.ip)
    }
}

impl Net {
    /// A new bridge with its own /24. Panics with the command's error when
    /// the machine cannot make one (not root, no `ip` or `nft`): tests that
    /// need partitions must fail loudly, never skip.
    pub fn start() -> Net {
        let dir = std::env::temp_dir().join("redis-ha-lab-nets");
        // A reservation left by a dead process leaves its namespaces and
        // bridge behind: removed before the index is taken again.
        let reservation = reserve_in(&dir, 0..NETS, |index| {
            remove_leftovers(index as u8);
            true
        });
        let reservation = match reservation {
            Ok(Some(r)) => r,
            Ok(None) => panic!("redis-ha-lab: all {NETS} lab networks are in use"),
            Err(e) => panic!("redis-ha-lab: cannot reserve a lab network: {e}"),
        };
        let index = u8::try_from(reservation.port()).expect("fewer than 256 networks");
        let net = Net {
            inner: Arc::new(Inner {
                index,
                next_host: AtomicU8::new(2),
                hosts: Mutex::new(Vec::new()),
                delays: Mutex::new(Vec::new()),
                _reservation: reservation,
            }),
        };
        let bridge = net.bridge();
        run(&["ip", "link", "add", &bridge, "type", "bridge"]);
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", net.ip(1)),
            "dev",
            &bridge,
        ]);
        run(&["ip", "link", "set", &bridge, "up"]);
        net
    }

    /// A new namespace on the network, with the next free address. `label`
    /// only helps a reader of `ip netns list`.
    pub fn host(&self, label: &str) -> Host {
        let n = self.inner.next_host.fetch_add(1, Ordering::SeqCst);
        assert!(n < 255, "redis-ha-lab: a lab network holds 253 hosts");
        let name = format!("rhl{}-{n}-{label}", self.inner.index);
        let host = Host {
            name,
            ip: self.ip(n),
        };
        // The root side of the veth pair is named after the network and the
        // host number (interface names are at most 15 bytes).
        let veth = format!("rhl{}h{n}", self.inner.index);
        let ns = host.name.as_str();
        run(&["ip", "netns", "add", ns]);
        run(&[
            "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ]);
        run(&["ip", "link", "set", &veth, "master", &self.bridge(), "up"]);
        run(&[
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/24", host.ip),
            "dev",
            "eth0",
        ]);
        run(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
        run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        host.nft(
            "add table inet lab\n\
             add chain inet lab in { type filter hook input priority 0; }\n\
             add chain inet lab out { type filter hook output priority 0; }\n",
        );
        self.hosts().push(host.clone());
        host
    }

    /// Cuts every link between a host of `a` and a host of `b`, both ways:
    /// packets are dropped silently until [`Net::heal`]. Links within each
    /// side, and to the root namespace, stay.
    pub fn cut(&self, a: &[&Host], b: &[&Host]) {
        for (side, other) in [(a, b), (b, a)] {
            let ips: Vec<String> = other.iter().map(|h| h.ip.to_string()).collect();
            let set = ips.join(", ");
            for host in side {
                host.nft(&format!(
                    "add rule inet lab out ip daddr {{ {set} }} drop\n\
                     add rule inet lab in ip saddr {{ {set} }} drop\n"
                ));
            }
        }
    }

    /// Drops `percent` of the packets `host` sends and of those it receives,
    /// at random, until [`Net::heal`].
    pub fn loss(&self, host: &Host, percent: u8) {
        assert!(percent <= 100, "redis-ha-lab: loss is a percentage");
        host.nft(&format!(
            "add rule inet lab out numgen random mod 100 < {percent} drop\n\
             add rule inet lab in numgen random mod 100 < {percent} drop\n"
        ));
    }

    /// Holds every packet `host` sends for `by` before it leaves: its
    /// round trips to anyone, the root namespace included, take `by` longer,
    /// until [`Net::heal`]. Packets keep their order.
    pub fn delay(&self, host: &Host, by: Duration) {
        let (tx, rx) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (host, stop) = (host.clone(), stop.clone());
            move || hold(&host, by, &stop, &tx)
        });
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("redis-ha-lab: cannot queue packets in {}: {e}", host.name),
            Err(_) => panic!("redis-ha-lab: the delay thread of {} died", host.name),
        }
        // Only once the queue is read: `--queue-bypass` lets packets through
        // while no one reads it, and after the thread stops.
        run(&[
            "ip",
            "netns",
            "exec",
            &host.name,
            "iptables",
            "-A",
            "OUTPUT",
            "-j",
            "NFQUEUE",
            "--queue-num",
            "0",
            "--queue-bypass",
        ]);
        self.delays().push(Delay {
            host: host.clone(),
            stop,
            thread: Some(thread),
        });
    }

    /// Removes every cut, loss and delay: all hosts reach each other again
    /// at once.
    pub fn heal(&self) {
        for host in self.hosts().iter() {
            host.nft("flush chain inet lab in\nflush chain inet lab out\n");
        }
        self.delays().clear();
    }

    fn bridge(&self) -> String {
        format!("rhl{}", self.inner.index)
    }

    fn ip(&self, n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.inner.index, n)
    }

    fn hosts(&self) -> std::sync::MutexGuard<'_, Vec<Host>> {
        self.inner.hosts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn delays(&self) -> std::sync::MutexGuard<'_, Vec<Delay>> {
        self.inner.delays.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A host's outgoing packets held back by a thread.
struct Delay {
    host: Host,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Delay {
    /// The rule first (nothing more is queued), then the thread lets what it
    /// holds go.
    fn drop(&mut self) {
        let _ = quiet(&[
            "ip",
            "netns",
            "exec",
            &self.host.name,
            "iptables",
            "-F",
            "OUTPUT",
        ]);
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads queue 0 inside `host` and accepts each packet `by` after it came,
/// until `stop`; says on `ready` whether the queue could be bound.
fn hold(
    host: &Host,
    by: Duration,
    stop: &AtomicBool,
    ready: &std::sync::mpsc::Sender<io::Result<()>>,
) {
    host.enter();
    let queue = nfq::Queue::open().and_then(|mut q| {
        q.bind(0)?;
        q.set_queue_max_len(0, 65_536)?;
        q.set_nonblocking(true);
        Ok(q)
    });
    let mut queue = match queue {
        Ok(q) => q,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let mut held = std::collections::VecDeque::new();
    let release = |queue: &mut nfq::Queue, mut msg: nfq::Message| {
        msg.set_verdict(nfq::Verdict::Accept);
        let _ = queue.verdict(msg);
    };
    while !stop.load(Ordering::SeqCst) {
        while let Ok(msg) = queue.recv() {
            held.push_back((Instant::now() + by, msg));
        }
        while held.front().is_some_and(|(due, _)| *due <= Instant::now()) {
            let (_, msg) = held.pop_front().expect("a packet is due");
            release(&mut queue, msg);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    for (_, msg) in held {
        release(&mut queue, msg);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(delays) = self.delays.get_mut() {
            delays.clear();
        }
        remove_leftovers(self.index);
    }
}

impl Host {
    /// The host's address on its network.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The namespace's name (`ip netns exec <name> ...`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Makes `command` start inside the namespace. The namespace is entered
    /// in the child between fork and exec, so the child keeps everything
    /// else the caller set up (its parent-death signal among it).
    pub fn place(&self, command: &mut Command) {
        let ns = self.open();
        // SAFETY: setns(2) is async-signal-safe; `ns` stays open in the
        // closure, which allocates nothing.
        unsafe {
            command.pre_exec(move || {
                if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// Moves the calling thread (only it) into the namespace: a test's
    /// client thread that must stand on one side of a partition. Sockets
    /// opened before stay where they were.
    pub fn enter(&self) {
        let ns = self.open();
        // SAFETY: plain setns(2) on a descriptor that is open.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            panic!(
                "redis-ha-lab: cannot enter {}: {}",
                self.name,
                io::Error::last_os_error()
            );
        }
    }

    fn open(&self) -> File {
        let path = format!("/run/netns/{}", self.name);
        File::open(&path).unwrap_or_else(|e| panic!("redis-ha-lab: cannot open {path}: {e}"))
    }

    /// Applies an nftables script inside the namespace.
    fn nft(&self, script: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("redis-ha-lab: cannot run nft (install nftables): {e}"));
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(script.as_bytes());
        }
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("redis-ha-lab: nft: {e}"));
        assert!(
            out.status.success(),
            "redis-ha-lab: nft in {} failed: {}\n{script}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Deletes the veths, namespaces and bridge of network `index`, whatever
/// process made them. The veths go first and by name: a namespace lives on
/// while a thread is still inside it, and its veth with it.
fn remove_leftovers(index: u8) {
    let veth = format!("rhl{index}h");
    if let Ok(out) = Command::new("ip").args(["-o", "link", "show"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // `12: rhl0h2@if3: <BROADCAST,...`
            let name = line.split(": ").nth(1).unwrap_or_default();
            let name = name.split('@').next().unwrap_or_default();
            if name
                .strip_prefix(&veth)
                .is_some_and(|n| n.parse::<u8>().is_ok())
            {
                let _ = quiet(&["ip", "link", "del", name]);
            }
        }
    }
    let prefix = format!("rhl{index}-");
    if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            if name.starts_with(&prefix) {
                let _ = quiet(&["ip", "netns", "del", name]);
            }
        }
    }
    let _ = quiet(&["ip", "link", "del", &format!("rhl{index}")]);
}

fn quiet(args: &[&str]) -> io::Result<std::process::ExitStatus> {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
}

/// Runs a setup command, panicking with its output when it fails.
fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("redis-ha-lab: cannot run `{}`: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "redis-ha-lab: `{}` failed (lab networks need root, iproute2 and nftables): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}
