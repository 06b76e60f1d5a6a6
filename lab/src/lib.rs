//! The lab: real `redis-server` / sentinel processes on 127.0.0.1 for integration tests,
//! the demo and benchmarks.
//!
//! Everything here is synchronous and std-only so plain `#[test]` functions can use it.
//! Topologies ([`SentinelGroup`], [`Cluster`]) own their [`Node`]s; dropping a node
//! SIGKILLs its process, so servers go away when a test ends *or panics*.
//!
//! # Use it from the thread that owns the topology
//!
//! Every server is started with `PR_SET_PDEATHSIG(SIGKILL)` so it dies even when the
//! test process is SIGKILLed (nextest timeout, Ctrl-C) and `Drop` never runs. Linux ties
//! that signal to the *thread* that spawned the server, not the process: a topology
//! built on a helper thread that then exits loses all its servers. Build and use a
//! topology on the thread that lives as long as it does, normally the test's own thread
//! (and do not share one through a `static` initialised by whichever test runs first).
//! Another thread that only needs to talk to a server (poll it, read its events) takes
//! a [`Remote`] from [`Node::remote`]: it owns no process, only the way to reach one.
//!
//! # Choosing the server binary
//!
//! `REDIS_HA_LAB_SERVER` selects the binary (a path, or a name looked up in `PATH`),
//! so the same tests run against Redis 6.2, 7.x or Valkey (`valkey-server`); the default
//! is `redis-server`. Sentinels are the same binary started with `--sentinel`.
//!
//! # Beyond what real servers sustain
//!
//! [`SimCluster`] serves a simulated cluster of any size from one process, for
//! benchmarks and scale tests (see the `sim` module). It starts no servers, so
//! none of the above applies to it: it runs on its own threads and stops when
//! dropped.

mod cluster;
mod error;
mod net;
mod node;
mod ports;
mod resp;
mod security;
mod sentinel;
mod sim;

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use cluster::{Cluster, ClusterOpts};
pub use error::LabError;
pub use net::{Host, Net};
pub use node::{server_major_version, Node, Remote};
pub use resp::{Message, Reply, Subscription};
pub use security::{Acl, Security, TlsFiles};
pub use sentinel::{SentinelGroup, SentinelOpts};
pub use sim::{Control, ControlError, FailureTiming, SimCluster, SimError, SimNode, SimOpts};

/// Environment variable naming the server binary to use.
pub const SERVER_ENV: &str = "REDIS_HA_LAB_SERVER";

/// The server binary: `$REDIS_HA_LAB_SERVER` (a path, or a name searched in `PATH`),
/// default `redis-server` from `PATH`.
///
/// Panics with installation instructions when it cannot be found: tests that need real
/// servers must fail loudly on a machine without them, never silently skip.
pub fn server_binary() -> PathBuf {
    match resolve_binary(std::env::var_os(SERVER_ENV), std::env::var_os("PATH")) {
        Ok(path) => path,
        Err(why) => panic!("redis-ha-lab: {why}"),
    }
}

/// Pure part of [`server_binary`], separated so it can be unit tested without touching
/// the process environment.
fn resolve_binary(configured: Option<OsString>, path: Option<OsString>) -> Result<PathBuf, String> {
    let fix = format!(
        "install it with `apt-get install redis-server redis-sentinel`, \
         or set {SERVER_ENV} to the path of a redis-server (6.2+) or valkey-server binary"
    );
    let wanted = configured
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| OsString::from("redis-server"));
    let wanted_path = PathBuf::from(&wanted);
    if wanted_path.components().count() > 1 {
        return if wanted_path.is_file() {
            Ok(wanted_path)
        } else {
            Err(format!(
                "server binary {} (from {SERVER_ENV}) does not exist; {fix}",
                wanted_path.display()
            ))
        };
    }
    path.iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(&wanted))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            format!(
                "server binary `{}` not found in PATH; {fix}",
                wanted.to_string_lossy()
            )
        })
}

/// Parses `INFO`-style text (`CLUSTER INFO` uses the same format): `key:value` lines,
/// `# Section` headers and blank lines ignored.
pub(crate) fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Polls `probe` until it returns `Ok`, panicking after `timeout` with the last reason
/// it gave. Topology setup is a series of "wait until the servers agree" steps, and the
/// last reason is what makes a failed setup debuggable.
pub(crate) fn wait_until<T>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    loop {
        match probe() {
            Ok(value) => return value,
            Err(why) if start.elapsed() >= timeout => {
                panic!("redis-ha-lab: timed out after {timeout:?} waiting for {what}; last state: {why}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The per-topology directory (`<temp>/redis-ha-lab-<pid>-<n>`) holding configs, logs
/// and node state; removed when dropped.
#[derive(Debug)]
pub(crate) struct LabDir {
    path: PathBuf,
}

impl LabDir {
    pub(crate) fn new() -> LabDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let temp = std::env::temp_dir();
        remove_stale_dirs(&temp);
        let pid = std::process::id();
        let path = temp.join(format!(
            "redis-ha-lab-{pid}-{}",
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        // Left over from an earlier process that had the same pid: its servers are gone.
        let _ = fs::remove_dir_all(&path);
        if let Err(e) = fs::create_dir_all(&path) {
            panic!("redis-ha-lab: cannot create {}: {e}", path.display());
        }
        LabDir { path }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LabDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Removes `redis-ha-lab-<pid>-<n>` directories of processes that died without running
/// `Drop` (killed test processes), so repeated runs do not fill the temp dir.
fn remove_stale_dirs(temp: &Path) {
    let Ok(entries) = fs::read_dir(temp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("redis-ha-lab-")) else {
            continue;
        };
        let Some(pid) = rest.split_once('-').and_then(|(pid, n)| {
            n.parse::<usize>().ok()?;
            pid.parse::<u32>().ok()
        }) else {
            continue;
        };
        if !ports::pid_alive(pid) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_parsing() {
        let info = parse_info("# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\n\r\nslave0:ip=127.0.0.1,port=1\r\n");
        assert_eq!(info["role"], "slave");
        assert_eq!(info["master_host"], "127.0.0.1");
        assert_eq!(info["slave0"], "ip=127.0.0.1,port=1");
        assert_eq!(info.len(), 3);
    }

    #[test]
    fn binary_from_path() {
        let dir =
            std::env::temp_dir().join(format!("redis-ha-lab-bin-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("redis-server"), "").unwrap();
        let path = std::env::join_paths(["/nonexistent-dir", dir.to_str().unwrap()]).unwrap();
        assert_eq!(
            resolve_binary(None, Some(path.clone())),
            Ok(dir.join("redis-server"))
        );
        assert_eq!(
            resolve_binary(Some("".into()), Some(path.clone())),
            Ok(dir.join("redis-server"))
        );
        let explicit = dir.join("redis-server");
        assert_eq!(
            resolve_binary(Some(explicit.clone().into()), None),
            Ok(explicit)
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_binary_explains_how_to_install() {
        let err = resolve_binary(None, Some("/nonexistent-dir".into())).unwrap_err();
        assert!(err.contains("`redis-server` not found"), "{err}");
        assert!(
            err.contains("apt-get install redis-server redis-sentinel"),
            "{err}"
        );
        assert!(err.contains(SERVER_ENV), "{err}");

        let err = resolve_binary(Some("/no/such/valkey-server".into()), None).unwrap_err();
        assert!(err.contains("/no/such/valkey-server"), "{err}");
        assert!(err.contains("apt-get install"), "{err}");
    }

    #[test]
    fn stale_dirs_of_dead_processes_are_removed() {
        let temp = std::env::temp_dir();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = temp.join(format!("redis-ha-lab-{dead}-0"));
        fs::create_dir_all(&stale).unwrap();
        let live = LabDir::new();
        assert!(!stale.exists());
        assert!(live.path().is_dir(), "our own dir survives the sweep");
        let kept = live.path().to_path_buf();
        drop(live);
        assert!(!kept.exists(), "removed on drop");
    }
}
