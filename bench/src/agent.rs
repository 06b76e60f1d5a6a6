//! The agent under test: the release binary, started with a config file.

use std::path::Path;
use std::time::Duration;

use crate::procs::{free_port, get_text, http_client, Proc};

/// Poll interval and per-command timeout every benchmarked agent runs with:
/// the defaults (docs: README, Configuration).
pub const POLL_INTERVAL: &str = "1s";
pub const TIMEOUT: &str = "500ms";

pub struct Agent {
    pub proc: Proc,
    pub base: String,
}

impl Agent {
    /// Starts `binary` watching `deployments` (YAML list entries), with
    /// `extra` top-level YAML, and waits for `/-/ready`.
    pub fn start(binary: &Path, work: &Path, name: &str, deployments: &str, extra: &str) -> Agent {
        let dir = work.join(name);
        std::fs::create_dir_all(&dir).expect("agent dir");
        let port = free_port();
        let extra = extra.replace("$DIR", &dir.display().to_string());
        let config = format!(
            "listen: \"127.0.0.1:{port}\"\npoll_interval: {POLL_INTERVAL}\ntimeout: {TIMEOUT}\n{extra}deployments:\n{deployments}"
        );
        let config_path = dir.join("agent.yaml");
        std::fs::write(&config_path, config).expect("write agent config");
        let mut proc = Proc::spawn(
            name,
            binary,
            &["--config".to_string(), config_path.display().to_string()],
            &[("REDIS_HA_LOG", "info")],
            dir.join("agent.log"),
        );
        let base = format!("http://127.0.0.1:{port}");
        proc.wait_ready(&format!("{base}/-/ready"), Duration::from_secs(60));
        Agent { proc, base }
    }

    /// Targets in /metrics (`redis_ha_target_up` series) and how many are up.
    pub fn targets(&self) -> (usize, usize) {
        let http = http_client(Duration::from_secs(5));
        let text = get_text(&http, &format!("{}/metrics", self.base)).unwrap_or_default();
        let up: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("redis_ha_target_up{"))
            .collect();
        (up.len(), up.iter().filter(|l| l.ends_with(" 1")).count())
    }

    /// Waits until `count` targets are in /metrics and at least `up` of them up.
    pub fn wait_targets(&mut self, count: usize, up: usize, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            self.proc.check_running();
            let (n, u) = self.targets();
            if n == count && u >= up {
                return;
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "{}: {n} targets ({u} up), want {count} ({up} up); log {}",
                    self.proc.name,
                    self.proc.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A `deployments:` entry.
pub fn deployment(name: &str, kind: &str, seeds: &[String]) -> String {
    let key = if kind == "sentinel" {
        "sentinels"
    } else {
        "seeds"
    };
    format!("  - name: {name}\n    kind: {kind}\n    {key}: {seeds:?}\n")
}

/// Top-level YAML sending every alert to `url` as a webhook.
pub fn webhook(url: &str) -> String {
    format!(
        "alerts:\n  state_dir: \"$DIR/state\"\n  receivers:\n    - {{ name: bench, type: webhook, url: \"{url}\" }}\n"
    )
}

pub fn binary_version(binary: &Path) -> String {
    crate::procs::version_line(&binary.display().to_string(), &["--version"])
}
