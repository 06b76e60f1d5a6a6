//! Processes the harness starts (the agent, redis_exporter, Prometheus), what
//! /proc says about them, and plain HTTP GETs.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (SIGKILL) and reaped on drop. It also dies with the
/// thread that started it (`PR_SET_PDEATHSIG`), so a harness killed outright
/// leaves nothing behind: start these from the main thread.
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `program` with `args`, stdout and stderr to `log`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, &str)],
        log: PathBuf,
    ) -> Proc {
        let out = File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let err = out.try_clone().expect("clone log handle");
        let mut command = Command::new(program);
        command
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // SAFETY: getpid is async-signal-safe and runs before the fork.
        let parent = unsafe { libc::getpid() };
        // SAFETY: only async-signal-safe calls (prctl, getppid), no allocation.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Proc {
            name: name.to_string(),
            child,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Panics with the tail of the log if the process has exited.
    pub fn check_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited with {status}; last lines of {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log, 20)
            );
        }
    }

    /// Waits until `url` answers 200, checking the process is still alive.
    pub fn wait_ready(&mut self, url: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let http = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(2))
            .build();
        loop {
            self.check_running();
            if matches!(http.get(url).call(), Ok(r) if r.status() == 200) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not answer {url} within {timeout:?}; last lines of {}:\n{}",
                    self.name,
                    self.log.display(),
                    tail(&self.log, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A port nothing listens on now (from the ephemeral range, away from the
/// lab's 20000-30000).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// CPU time (user + system, every thread, exited ones too) of a process, in
/// seconds, from /proc/<pid>/stat. Resolution: one clock tick (10 ms).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
    parse_cpu_ticks(&stat) as f64 / clock_ticks_per_second()
}

/// utime + stime (fields 14 and 15) of a /proc/<pid>/stat line. The command
/// name (field 2) may hold spaces, so fields are counted after its `)`.
fn parse_cpu_ticks(stat: &str) -> u64 {
    let after = stat.rsplit_once(')').map_or(stat, |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state): utime is field 14, stime 15.
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    field(14).unwrap_or(0) + field(15).unwrap_or(0)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// `VmRSS` and `VmHWM` (peak) of a process, in bytes.
pub fn memory(pid: u32) -> (u64, u64) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

/// A keep-alive HTTP client for timing GETs.
pub fn http_client(timeout: Duration) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(timeout)
        .max_idle_connections_per_host(4)
        .build()
}

/// GETs `url` and reads the whole body; returns the body length and how long
/// the request took (sending it to the last byte of the body).
pub fn timed_get(http: &ureq::Agent, url: &str) -> Result<(usize, Duration), String> {
    let start = Instant::now();
    let response = http.get(url).call().map_err(|e| e.to_string())?;
    let mut body = Vec::with_capacity(64 * 1024);
    response
        .into_reader()
        .read_to_end(&mut body)
        .map_err(|e| e.to_string())?;
    Ok((body.len(), start.elapsed()))
}

/// GETs `url` as text.
pub fn get_text(http: &ureq::Agent, url: &str) -> Result<String, String> {
    http.get(url)
        .call()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|e| e.to_string())
}

/// First line of `program --version` (or of `args`), stdout or stderr.
pub fn version_line(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(out) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            text.lines().next().unwrap_or("").trim().to_string()
        }
        Err(e) => format!("({program}: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_from_stat() {
        let stat =
            "1234 (tokio runtime) S 1 1234 1234 0 -1 4194560 1960 0 0 0 250 75 0 0 20 0 6 0 1 0 0";
        assert_eq!(parse_cpu_ticks(stat), 325);
        assert!(cpu_seconds(std::process::id()) >= 0.0);
        let (rss, peak) = memory(std::process::id());
        assert!(rss > 0 && peak >= rss);
    }
}
