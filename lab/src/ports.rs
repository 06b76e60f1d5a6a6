//! Port allocation that is safe across concurrently running test processes.
//!
//! cargo-nextest runs every test in its own process, in parallel, so "bind port 0 and
//! hand the number to redis-server" would race: the port is free again the moment
//! our probe socket closes, and another test process may pick the same number before
//! the server binds it. Instead each port is *reserved* by creating a lock file
//! `<temp>/redis-ha-lab-ports/<port>` (with `create_new`, holding our pid) for as long
//! as the node lives. A reservation whose owner died without cleaning up (SIGKILL,
//! nextest timeout) is reclaimed. The check-and-reclaim step runs under an `flock` on
//! `<temp>/redis-ha-lab-ports/.lock` so that two processes can never both decide the
//! same stale file is theirs.

use std::collections::hash_map::RandomState;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::net::TcpListener;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Cluster bus ports are `port + 10000`.
pub(crate) const BUS_OFFSET: u16 = 10_000;

/// Base ports come from here: below the Linux ephemeral range (32768+) so outgoing
/// connections of unrelated programs never sit on them.
const BASE_RANGE: Range<u16> = 20_000..30_000;

/// How many random ports to try before giving up.
const ATTEMPTS: usize = 500;

/// A port (and, for cluster nodes, its bus port) reserved for this process until dropped.
#[derive(Debug)]
pub(crate) struct PortReservation {
    port: u16,
    file: PathBuf,
}

impl PortReservation {
    /// Reserves a random free port. `with_bus` also requires `port + 10000` to be bindable.
    ///
    /// Panics when no port could be found: this is test infrastructure, and a clear panic
    /// is the most useful failure.
    pub(crate) fn reserve(with_bus: bool) -> PortReservation {
        let dir = std::env::temp_dir().join("redis-ha-lab-ports");
        let range = candidate_range(with_bus, ephemeral_low());
        let mut rng = seed();
        let candidates = (0..ATTEMPTS).map(|_| {
            let span = u64::from(range.end - range.start);
            // `span` is at most 10000, so the value fits in u16.
            range.start + (next_random(&mut rng) % span) as u16
        });
        match reserve_in(&dir, candidates, |port| bindable(port, with_bus)) {
            Ok(Some(reservation)) => reservation,
            Ok(None) => panic!(
                "redis-ha-lab: no free port in {range:?} after {ATTEMPTS} attempts \
                 (reservations live in {})",
                dir.display()
            ),
            Err(e) => panic!(
                "redis-ha-lab: cannot reserve a port in {}: {e}",
                dir.display()
            ),
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortReservation {
    fn drop(&mut self) {
        // Only remove the file if it is still ours: never delete a reservation that
        // another process reclaimed because it (wrongly) thought we were dead.
        if read_owner(&self.file) == Some(std::process::id()) {
            let _ = fs::remove_file(&self.file);
        }
    }
}

/// Tries `candidates` in order and reserves the first one that is not reserved by a live
/// process and passes `usable` (the bind check). `Ok(None)` when all were taken.
pub(crate) fn reserve_in(
    dir: &Path,
    candidates: impl IntoIterator<Item = u16>,
    mut usable: impl FnMut(u16) -> bool,
) -> io::Result<Option<PortReservation>> {
    fs::create_dir_all(dir)?;
    let _guard = DirLock::acquire(&dir.join(".lock"))?;
    let me = std::process::id();
    for port in candidates {
        let file = dir.join(port.to_string());
        if file.exists() {
            match read_owner(&file) {
                Some(pid) if pid == me || pid_alive(pid) => continue,
                // Dead owner or unreadable content (a writer killed mid-write): stale.
                _ => fs::remove_file(&file)?,
            }
        }
        if !usable(port) {
            continue;
        }
        let mut f = match OpenOptions::new().write(true).create_new(true).open(&file) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        writeln!(f, "{me}")?;
        return Ok(Some(PortReservation { port, file }));
    }
    Ok(None)
}

/// The range base ports are drawn from. Cluster nodes also need `port + 10000`; when
/// the machine's ephemeral range starts low enough that a bus port could land in it,
/// prefer base ports whose bus port stays below it, as long as that leaves a useful
/// number of ports.
fn candidate_range(with_bus: bool, ephemeral_low: Option<u16>) -> Range<u16> {
    if with_bus {
        if let Some(low) = ephemeral_low {
            let end = low.saturating_sub(BUS_OFFSET).min(BASE_RANGE.end);
            if end >= BASE_RANGE.start + 500 {
                return BASE_RANGE.start..end;
            }
        }
    }
    BASE_RANGE
}

/// First port of the kernel's ephemeral range, if readable.
fn ephemeral_low() -> Option<u16> {
    let text = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn bindable(port: u16, with_bus: bool) -> bool {
    let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
    free(port) && (!with_bus || port.checked_add(BUS_OFFSET).is_some_and(free))
}

fn read_owner(file: &Path) -> Option<u32> {
    fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// Whether a process with this pid exists (EPERM means it exists but is not ours).
pub(crate) fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// An exclusive `flock` on a file, released when dropped (by closing the descriptor).
struct DirLock {
    _file: File,
}

impl DirLock {
    fn acquire(path: &Path) -> io::Result<DirLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        loop {
            // SAFETY: the descriptor is valid for the lifetime of `file`.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(DirLock { _file: file });
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

/// A per-call random seed without a `rand` dependency: `RandomState` is randomly keyed
/// per process, and mixing in the pid and time keeps concurrent processes apart.
fn seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish() | 1
}

/// xorshift64: plenty for spreading port picks.
fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "redis-ha-lab-ports-test-{}-{name}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    /// A pid that certainly belonged to a process that has exited (and been reaped).
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn reserves_and_releases() {
        let dir = scratch_dir("basic");
        let r = reserve_in(&dir, [25_001], |_| true).unwrap().unwrap();
        assert_eq!(r.port(), 25_001);
        let file = dir.join("25001");
        assert_eq!(read_owner(&file), Some(std::process::id()));
        drop(r);
        assert!(!file.exists(), "released on drop");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn never_hands_out_a_reserved_port_twice() {
        let dir = scratch_dir("twice");
        let first = reserve_in(&dir, [25_002], |_| true).unwrap().unwrap();
        assert!(reserve_in(&dir, [25_002], |_| true).unwrap().is_none());
        let second = reserve_in(&dir, [25_002, 25_003], |_| true)
            .unwrap()
            .unwrap();
        assert_eq!((first.port(), second.port()), (25_002, 25_003));
        drop((first, second));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn respects_reservation_of_a_live_process() {
        let dir = scratch_dir("live");
        fs::create_dir_all(&dir).unwrap();
        // pid 1 always exists.
        fs::write(dir.join("25004"), "1\n").unwrap();
        assert!(reserve_in(&dir, [25_004], |_| true).unwrap().is_none());
        assert_eq!(read_owner(&dir.join("25004")), Some(1));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reclaims_reservation_of_a_dead_process_or_garbage() {
        let dir = scratch_dir("dead");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("25005"), format!("{}\n", dead_pid())).unwrap();
        fs::write(dir.join("25006"), "").unwrap();
        let a = reserve_in(&dir, [25_005], |_| true).unwrap().unwrap();
        let b = reserve_in(&dir, [25_006], |_| true).unwrap().unwrap();
        assert_eq!(read_owner(&dir.join("25005")), Some(std::process::id()));
        assert_eq!((a.port(), b.port()), (25_005, 25_006));
        drop((a, b));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn skips_ports_that_fail_the_bind_check() {
        let dir = scratch_dir("bind");
        let r = reserve_in(&dir, [25_007, 25_008], |p| p != 25_007)
            .unwrap()
            .unwrap();
        assert_eq!(r.port(), 25_008);
        assert!(!dir.join("25007").exists());
        drop(r);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn drop_leaves_a_reclaimed_reservation_alone() {
        let dir = scratch_dir("stolen");
        let r = reserve_in(&dir, [25_009], |_| true).unwrap().unwrap();
        fs::write(dir.join("25009"), "1\n").unwrap();
        drop(r);
        assert_eq!(read_owner(&dir.join("25009")), Some(1));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bus_ports_stay_below_the_ephemeral_range_when_possible() {
        assert_eq!(candidate_range(false, Some(32_768)), 20_000..30_000);
        assert_eq!(candidate_range(true, Some(32_768)), 20_000..22_768);
        assert_eq!(candidate_range(true, Some(49_152)), 20_000..30_000);
        // Too little room below a low ephemeral range: accept the overlap (bind-checked).
        assert_eq!(candidate_range(true, Some(30_100)), 20_000..30_000);
        assert_eq!(candidate_range(true, None), 20_000..30_000);
    }

    #[test]
    fn real_reservation_is_bindable_and_in_range() {
        let r = PortReservation::reserve(true);
        assert!(BASE_RANGE.contains(&r.port()));
        assert!(TcpListener::bind(("127.0.0.1", r.port())).is_ok());
        assert!(TcpListener::bind(("127.0.0.1", r.port() + BUS_OFFSET)).is_ok());
    }

    #[test]
    fn random_sequence_moves() {
        let mut s = seed();
        let a = next_random(&mut s);
        let b = next_random(&mut s);
        assert_ne!(a, b);
    }
}
