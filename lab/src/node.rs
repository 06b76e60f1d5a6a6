//! One `redis-server` or sentinel process.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::net::Host;
use crate::ports::PortReservation;
use crate::resp::{self, Reply, Subscription};
use crate::security::{Admin, Security};
use crate::{server_binary, LabError};

/// How long a freshly (re)started server gets to answer PING.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// One redis-server or sentinel process on 127.0.0.1, or on its own host of a
/// lab network ([`crate::Net`]).
///
/// The process is SIGKILLed when the `Node` is dropped, including during a panic, and
/// its port reservation is released after that.
#[derive(Debug)]
pub struct Node {
    ip: Ipv4Addr,
    /// The namespace the server runs in, on a lab network.
    host: Option<Host>,
    port: u16,
    sentinel: bool,
    conf: PathBuf,
    dir: PathBuf,
    log: PathBuf,
    /// stdout/stderr of the process: config errors are printed there, before `logfile`
    /// takes effect.
    output: PathBuf,
    /// `None` once killed. A mutex (not `&mut self`) so `is_running`, `freeze` and
    /// `resume` can take `&self` while a topology hands out shared references.
    child: Mutex<Option<Child>>,
    frozen: AtomicBool,
    /// How the lab itself reaches the server.
    admin: Admin,
    _reservation: PortReservation,
}

/// Which configuration a new node gets on top of the common lines.
pub(crate) enum Role<'a> {
    /// A plain data node, optionally a replica of the master on `<port>`;
    /// with a hostname, it announces itself and finds its master by it.
    Data {
        replica_of: Option<SocketAddrV4>,
        hostname: Option<&'a str>,
    },
    /// A cluster-enabled data node, announcing `hostname` if given.
    ClusterNode {
        node_timeout_ms: u64,
        hostname: Option<&'a str>,
    },
    /// A sentinel; the lines are the `sentinel …` directives.
    Sentinel { directives: &'a [String] },
}

impl Node {
    /// Reserves a port, writes the config into `dir` and starts the process without
    /// waiting for it: topologies start all their processes first and then wait for each,
    /// which is much faster than starting them one by one.
    /// On `host` when given, else on 127.0.0.1.
    pub(crate) fn spawn(
        dir: &Path,
        role: Role<'_>,
        security: &Security,
        host: Option<Host>,
    ) -> Node {
        let reservation = PortReservation::reserve(matches!(role, Role::ClusterNode { .. }));
        let port = reservation.port();
        let ip = host.as_ref().map_or(Ipv4Addr::LOCALHOST, Host::ip);
        let conf = dir.join(format!("{port}.conf"));
        let log = dir.join(format!("{port}.log"));
        let output = dir.join(format!("{port}.out"));
        let text = config_text(SocketAddrV4::new(ip, port), dir, &log, &role, security);
        if let Err(e) = fs::write(&conf, text) {
            panic!("redis-ha-lab: cannot write {}: {e}", conf.display());
        }
        let node = Node {
            ip,
            host,
            port,
            sentinel: matches!(role, Role::Sentinel { .. }),
            conf,
            dir: dir.to_path_buf(),
            log,
            output,
            child: Mutex::new(None),
            frozen: AtomicBool::new(false),
            admin: security.admin(ip, port, dir),
            _reservation: reservation,
        };
        node.launch();
        node
    }

    /// The TCP port the server listens on (cluster bus: port + 10000).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `"<ip>:<port>"`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// 127.0.0.1, or the node's address on its lab network.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The node's host on a lab network, to partition it.
    pub fn host(&self) -> Option<&Host> {
        self.host.as_ref()
    }

    /// Whether this node runs in sentinel mode.
    pub fn is_sentinel(&self) -> bool {
        self.sentinel
    }

    /// The process id while running: for printing `kill -STOP <pid>` hints and for
    /// tests that want to signal the process themselves.
    pub fn pid(&self) -> Option<u32> {
        self.lock_child().as_ref().map(Child::id)
    }

    /// Whether the node is currently SIGSTOPped by [`Node::freeze`].
    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::SeqCst)
    }

    /// Sends one command on a new short-lived connection (2 s connect and read timeout)
    /// and returns the reply. A top-level error reply becomes [`LabError::Server`].
    pub fn cmd(&self, args: &[&str]) -> Result<Reply, LabError> {
        resp::request(&self.admin, args)
    }

    /// `INFO <section>` parsed into its `key:value` pairs.
    pub fn info(&self, section: &str) -> Result<HashMap<String, String>, LabError> {
        resp::info(&self.admin, section)
    }

    /// A handle reaching this server from any thread, e.g. a watcher that
    /// polls it or reads its events while the thread owning the topology
    /// freezes, kills and restarts servers (the port stays the same).
    pub fn remote(&self) -> Remote {
        Remote {
            admin: self.admin.clone(),
        }
    }

    /// SIGSTOP: the process stays alive and keeps its sockets, but answers nothing, which
    /// is how a hung or partitioned server looks to its peers. No-op if not running.
    pub fn freeze(&self) {
        if self.signal(libc::SIGSTOP) {
            self.frozen.store(true, Ordering::SeqCst);
        }
    }

    /// SIGCONT: undoes [`Node::freeze`]. No-op if not running.
    pub fn resume(&self) {
        if self.signal(libc::SIGCONT) {
            self.frozen.store(false, Ordering::SeqCst);
        }
    }

    /// SIGKILL and reap the process. Idempotent; works on a frozen process too.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.lock_child().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.frozen.store(false, Ordering::SeqCst);
    }

    /// Kills the process if it runs, starts it again with the same port, config file and
    /// directory (so a cluster node keeps its node id, and a data node reconfigured by
    /// sentinel keeps its rewritten role), and waits until it answers PING.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
        self.wait_started();
    }

    /// Whether the process is alive (a frozen process is alive).
    pub fn is_running(&self) -> bool {
        match self.lock_child().as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits until the server answers PING; panics with the tail of its log otherwise.
    pub(crate) fn wait_started(&self) {
        let start = Instant::now();
        loop {
            let exited = self
                .lock_child()
                .as_mut()
                .map(|child| child.try_wait())
                .unwrap_or_else(|| panic!("redis-ha-lab: {} is not running", self.addr()));
            match exited {
                Ok(Some(status)) => self.startup_failed(&format!("exited with {status}")),
                Err(e) => self.startup_failed(&format!("cannot be waited for: {e}")),
                Ok(None) => {}
            }
            match self.cmd(&["PING"]) {
                Ok(_) => return,
                Err(e) if start.elapsed() >= START_TIMEOUT => self.startup_failed(&format!(
                    "did not answer PING within {START_TIMEOUT:?} (last error: {e})"
                )),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn startup_failed(&self, what: &str) -> ! {
        let mode = if self.sentinel { " --sentinel" } else { "" };
        panic!(
            "redis-ha-lab: `{}{mode}` on port {} {what}\n\
             --- last lines of {} ---\n{}\n--- {} ---\n{}",
            server_binary().display(),
            self.port,
            self.log.display(),
            tail(&self.log, 30),
            self.output.display(),
            tail(&self.output, 30),
        )
    }

    fn launch(&self) {
        let binary = server_binary();
        let output = File::options()
            .create(true)
            .append(true)
            .open(&self.output)
            .and_then(|out| Ok((out.try_clone()?, out)));
        let (stdout, stderr) = match output {
            Ok(pair) => pair,
            Err(e) => panic!("redis-ha-lab: cannot open {}: {e}", self.output.display()),
        };
        let mut command = Command::new(&binary);
        command.arg(&self.conf);
        if self.sentinel {
            command.arg("--sentinel");
        }
        if let Some(host) = &self.host {
            host.place(&mut command);
        }
        command
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        // SAFETY: getpid is async-signal-safe and runs before the fork.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the closure only calls the async-signal-safe prctl and getppid and
        // allocates nothing.
        unsafe {
            command.pre_exec(move || {
                // Die with the spawning thread even if it is SIGKILLed and never runs
                // `Drop` (see the crate docs for why this pins topologies to a thread).
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl.
                if libc::getppid() != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        match command.spawn() {
            Ok(child) => *self.lock_child() = Some(child),
            Err(e) => panic!("redis-ha-lab: cannot start {}: {e}", binary.display()),
        }
        self.frozen.store(false, Ordering::SeqCst);
    }

    /// Sends `signal` if running; returns whether it was sent.
    fn signal(&self, signal: libc::c_int) -> bool {
        let mut guard = self.lock_child();
        let Some(child) = guard.as_mut() else {
            return false;
        };
        // Once reaped, the pid may belong to an unrelated process: never signal it then.
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        let Ok(pid) = libc::pid_t::try_from(child.id()) else {
            return false;
        };
        // SAFETY: plain kill(2). The child is not reaped (checked above, and the lock
        // keeps anyone else from reaping it), so the pid is still ours.
        unsafe { libc::kill(pid, signal) == 0 }
    }

    fn lock_child(&self) -> MutexGuard<'_, Option<Child>> {
        // A panic while holding the lock cannot leave the Option inconsistent.
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A server as any thread reaches it: what [`Node::remote`] hands out. It
/// owns no process, only the way to talk to one.
#[derive(Debug, Clone)]
pub struct Remote {
    admin: Admin,
}

impl Remote {
    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.admin.port
    }

    /// `"<ip>:<port>"`, as [`Node::addr`].
    pub fn addr(&self) -> String {
        format!("{}:{}", self.admin.ip, self.admin.port)
    }

    /// As [`Node::cmd`].
    pub fn cmd(&self, args: &[&str]) -> Result<Reply, LabError> {
        resp::request(&self.admin, args)
    }

    /// As [`Node::info`].
    pub fn info(&self, section: &str) -> Result<HashMap<String, String>, LabError> {
        resp::info(&self.admin, section)
    }

    /// A connection of its own subscribed to `pattern` (`PSUBSCRIBE`).
    pub fn psubscribe(&self, pattern: &str) -> Result<Subscription, LabError> {
        Subscription::open(&self.admin, pattern)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The whole config file for a node.
fn config_text(
    at: SocketAddrV4,
    dir: &Path,
    log: &Path,
    role: &Role<'_>,
    security: &Security,
) -> String {
    let port = at.port();
    let mut text = String::new();
    let mut line = |l: &str| {
        text.push_str(l);
        text.push('\n');
    };
    let sentinel = matches!(role, Role::Sentinel { .. });
    for l in security.config_lines(port, dir, sentinel) {
        line(&l);
    }
    line(&format!("bind {}", at.ip()));
    line("protected-mode no");
    line("daemonize no");
    line(&format!("dir \"{}\"", dir.display()));
    line(&format!("logfile \"{}\"", log.display()));
    if let Role::Sentinel { directives } = role {
        for directive in directives.iter() {
            line(directive);
        }
        return text;
    }
    line("save \"\"");
    line("appendonly no");
    // Every node of a topology shares `dir`, so each needs its own RDB file name.
    line(&format!("dbfilename dump-{port}.rdb"));
    // Diskless full sync without delay: replicas come up in milliseconds.
    line("repl-diskless-sync yes");
    line("repl-diskless-sync-delay 0");
    if server_major_version().is_some_and(|major| major >= 7) {
        // Allow `DEBUG SLEEP` from loopback, the classic way to make a master hang.
        // The directive does not exist before 7.0 (where DEBUG is always allowed).
        // On a lab network the lab's connections come from the bridge, not
        // from loopback.
        let who = if at.ip().is_loopback() {
            "local"
        } else {
            "yes"
        };
        line(&format!("enable-debug-command {who}"));
    }
    match role {
        Role::Data {
            replica_of,
            hostname,
        } => {
            if let Some(host) = hostname {
                line(&format!("replica-announce-ip {host}"));
            }
            if let Some(master) = replica_of {
                let ip = master.ip().to_string();
                line(&format!(
                    "replicaof {} {}",
                    hostname.unwrap_or(&ip),
                    master.port()
                ));
            }
        }
        Role::ClusterNode {
            node_timeout_ms,
            hostname,
        } => {
            if let Some(host) = hostname {
                line(&format!("cluster-announce-hostname {host}"));
            }
            line("cluster-enabled yes");
            line(&format!(
                "cluster-config-file \"{}\"",
                dir.join(format!("nodes-{port}.conf")).display()
            ));
            line(&format!("cluster-node-timeout {node_timeout_ms}"));
        }
        Role::Sentinel { .. } => {}
    }
    text
}

/// Major version of the server binary (`redis-server --version` and `valkey-server
/// --version` both print `v=X.Y.Z`), looked up once per process.
pub fn server_major_version() -> Option<u32> {
    static MAJOR: OnceLock<Option<u32>> = OnceLock::new();
    *MAJOR.get_or_init(|| {
        let out = Command::new(server_binary())
            .arg("--version")
            .output()
            .ok()?;
        parse_major_version(&String::from_utf8_lossy(&out.stdout))
    })
}

fn parse_major_version(version_output: &str) -> Option<u32> {
    let v = version_output
        .split_whitespace()
        .find_map(|word| word.strip_prefix("v="))?;
    v.split('.').next()?.parse().ok()
}

/// The last `lines` lines of a file, for panic messages.
fn tail(path: &Path, lines: usize) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_parsing() {
        assert_eq!(
            parse_major_version("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0"),
            Some(7)
        );
        assert_eq!(
            parse_major_version("Valkey server v=8.1.1 sha=00000000:0 malloc=jemalloc"),
            Some(8)
        );
        assert_eq!(parse_major_version("Redis server v=6.2.14 sha=0"), Some(6));
        assert_eq!(parse_major_version("garbage"), None);
    }

    #[test]
    fn replica_config() {
        let dir = Path::new("/tmp/x");
        let text = config_text(
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 21000),
            dir,
            &dir.join("21000.log"),
            &Role::Data {
                replica_of: Some(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 21001)),
                hostname: None,
            },
            &Security::default(),
        );
        for expected in [
            "port 21000\n",
            "bind 127.0.0.1\n",
            "save \"\"\n",
            "replicaof 127.0.0.1 21001\n",
            "logfile \"/tmp/x/21000.log\"\n",
        ] {
            assert!(text.contains(expected), "{expected:?} missing in\n{text}");
        }
        assert!(!text.contains("cluster-enabled"));
    }

    #[test]
    fn sentinel_config_has_no_data_directives() {
        let dir = Path::new("/tmp/x");
        let directives = vec!["sentinel monitor m 127.0.0.1 1 2".to_string()];
        let text = config_text(
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 21000),
            dir,
            &dir.join("l"),
            &Role::Sentinel {
                directives: &directives,
            },
            &Security::default(),
        );
        assert!(
            text.ends_with("sentinel monitor m 127.0.0.1 1 2\n"),
            "{text}"
        );
        assert!(!text.contains("save"), "{text}");
    }
}
