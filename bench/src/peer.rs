//! The peer pipeline: prometheus-redis-exporter (redis_exporter 1.45, the
//! Debian package) and a real Prometheus.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::procs::{free_port, http_client, timed_get, Proc};

pub const EXPORTER: &str = "prometheus-redis-exporter";

/// The per-command timeout given to redis_exporter (`-connection-timeout`):
/// the agent's `timeout`, so both give a frozen node the same time. The
/// exporter's default is 15 s, cut by Prometheus's `scrape_timeout`.
pub const EXPORTER_TIMEOUT: &str = "500ms";

/// One redis_exporter process. `redis_addr` is its own target (`None`:
/// multi-target mode only, `/scrape?target=`).
pub fn start_exporter(work: &Path, name: &str, redis_addr: Option<&str>) -> (Proc, String) {
    let port = free_port();
    let addr = redis_addr.map_or(String::new(), |a| format!("redis://{a}"));
    let args = vec![
        format!("-redis.addr={addr}"),
        format!("-web.listen-address=127.0.0.1:{port}"),
        format!("-connection-timeout={EXPORTER_TIMEOUT}"),
    ];
    let mut proc = Proc::spawn(
        name,
        &PathBuf::from(EXPORTER),
        &args,
        &[],
        work.join(format!("{name}.log")),
    );
    let base = format!("http://127.0.0.1:{port}");
    proc.wait_ready(&format!("{base}/health"), Duration::from_secs(20));
    (proc, base)
}

/// Prometheus scraping `targets` every second and evaluating `rules` every
/// second.
pub fn start_prometheus(work: &Path, targets: &[String], rules: &str) -> (Proc, String) {
    let dir = work.join("prometheus");
    std::fs::create_dir_all(&dir).expect("prometheus dir");
    std::fs::write(dir.join("rules.yml"), rules).expect("write rules");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files: [\"{}\"]\nscrape_configs:\n  - job_name: redis_exporter\n    static_configs:\n      - targets: {targets:?}\n",
        dir.join("rules.yml").display()
    );
    std::fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");
    let port = free_port();
    let args = vec![
        format!("--config.file={}", dir.join("prometheus.yml").display()),
        format!("--storage.tsdb.path={}", dir.join("data").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
    ];
    let mut proc = Proc::spawn(
        "prometheus",
        &PathBuf::from("prometheus"),
        &args,
        &[],
        dir.join("prometheus.log"),
    );
    let base = format!("http://127.0.0.1:{port}");
    proc.wait_ready(&format!("{base}/-/ready"), Duration::from_secs(60));
    (proc, base)
}

/// Polls Prometheus's `/api/v1/alerts` every 50 ms and records when the
/// named alert turns firing and when it stops.
pub struct AlertWatch {
    edges: Arc<Mutex<Vec<(Instant, bool)>>>,
    firing: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl AlertWatch {
    pub fn start(prometheus: &str, alertname: &str) -> AlertWatch {
        let watch = AlertWatch {
            edges: Arc::default(),
            firing: Arc::default(),
            stop: Arc::default(),
        };
        let (edges, firing, stop) = (
            watch.edges.clone(),
            watch.firing.clone(),
            watch.stop.clone(),
        );
        let url = format!("{prometheus}/api/v1/alerts");
        let alertname = alertname.to_string();
        std::thread::spawn(move || {
            let http = http_client(Duration::from_secs(5));
            let mut was = false;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                if let Ok(text) = crate::procs::get_text(&http, &url) {
                    let now = Instant::now();
                    let is = alert_firing(&text, &alertname);
                    if is != was {
                        edges.lock().unwrap().push((now, is));
                        firing.store(is, Ordering::Relaxed);
                        was = is;
                    }
                }
                let next = started + Duration::from_millis(50);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        });
        watch
    }

    pub fn firing(&self) -> bool {
        self.firing.load(Ordering::Relaxed)
    }

    /// When the alert first turned firing after `since`.
    pub fn fired_after(&self, since: Instant) -> Option<Instant> {
        self.edges
            .lock()
            .unwrap()
            .iter()
            .find(|(at, firing)| *firing && *at > since)
            .map(|(at, _)| *at)
    }
}

impl Drop for AlertWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn alert_firing(api_answer: &str, alertname: &str) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(api_answer) else {
        return false;
    };
    v["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|a| a["labels"]["alertname"] == alertname && a["state"] == "firing")
}

/// The result of one multi-target scrape: every target scraped at once (as
/// Prometheus scrapes its targets in parallel), done when the last answers.
#[derive(Debug, Clone)]
pub struct Round {
    pub latency: Duration,
    pub bytes: usize,
    pub errors: usize,
}

/// One thread per target, each with its own keep-alive connection to the
/// exporter, scraping `/scrape?target=redis://<addr>` on demand.
pub struct ScrapePool {
    workers: Vec<Sender<()>>,
    /// Behind a mutex so a pool can be shared with a thread that drives it.
    results: Mutex<Receiver<Result<usize, String>>>,
}

impl ScrapePool {
    pub fn new(exporter: &str, targets: &[String]) -> ScrapePool {
        let (result_tx, results) = channel();
        let workers = targets
            .iter()
            .map(|addr| {
                let (go_tx, go_rx) = channel::<()>();
                let result_tx = result_tx.clone();
                let url = format!("{exporter}/scrape?target=redis://{addr}");
                std::thread::spawn(move || {
                    let http = http_client(Duration::from_secs(30));
                    while go_rx.recv().is_ok() {
                        let r = timed_get(&http, &url).map(|(bytes, _)| bytes);
                        if result_tx.send(r).is_err() {
                            return;
                        }
                    }
                });
                go_tx
            })
            .collect();
        ScrapePool {
            workers,
            results: Mutex::new(results),
        }
    }

    pub fn targets(&self) -> usize {
        self.workers.len()
    }

    /// Scrapes every target at once; returns when all have answered.
    pub fn round(&self) -> Round {
        let results = self.results.lock().unwrap();
        let start = Instant::now();
        for w in &self.workers {
            w.send(()).expect("scrape worker alive");
        }
        let (mut bytes, mut errors) = (0, 0);
        for _ in &self.workers {
            match results.recv().expect("scrape worker alive") {
                Ok(b) => bytes += b,
                Err(_) => errors += 1,
            }
        }
        Round {
            latency: start.elapsed(),
            bytes,
            errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_state_from_the_api() {
        let answer = r#"{"status":"success","data":{"alerts":[
            {"labels":{"alertname":"Other"},"state":"firing"},
            {"labels":{"alertname":"SentinelMasterChanged","master_name":"mymaster"},"state":"pending"}]}}"#;
        assert!(!alert_firing(answer, "SentinelMasterChanged"));
        assert!(alert_firing(
            &answer.replace("pending", "firing"),
            "SentinelMasterChanged"
        ));
        assert!(!alert_firing("garbage", "SentinelMasterChanged"));
    }
}
