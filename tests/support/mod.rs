//! Runs the real agent binary against lab topologies and reads its /metrics.

#![allow(dead_code)] // each test binary uses a different part of this module

pub mod alertmanager;
pub mod certs;
pub mod dashboards;
pub mod long_run;
pub mod receiver;
pub mod record;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The agent under test, as a child process; killed on drop.
pub struct Agent {
    child: Child,
    pub base: String,
    client: Client,
    dir: PathBuf,
    log: PathBuf,
    /// The agent's config file.
    pub config: PathBuf,
    starts: usize,
    /// Where it runs, on a lab network; the root namespace if `None`.
    host: Option<redis_ha_lab::Host>,
    /// The environment it was started with, for a restart.
    env: Vec<(String, String)>,
}

/// How the tests reach the agent: plain HTTP by default; HTTPS and
/// credentials for an agent started with a web config (tests/web.rs).
#[derive(Clone)]
pub struct Client {
    pub https: bool,
    pub http: ureq::Agent,
    /// `(user, password)` sent with every request.
    pub basic_auth: Option<(String, String)>,
}

impl Client {
    pub fn plain() -> Client {
        Client {
            https: false,
            http: ureq::Agent::new(),
            basic_auth: None,
        }
    }

    /// A GET of `url` with the credentials, if any.
    pub fn get(&self, url: &str) -> ureq::Request {
        let request = self.http.get(url);
        match &self.basic_auth {
            Some((user, password)) => {
                use base64::Engine as _;
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                request.set("Authorization", &format!("Basic {token}"))
            }
            None => request,
        }
    }
}

/// Poll interval every test configures: short, so tests are quick.
pub const POLL: Duration = Duration::from_millis(500);
/// Per-command timeout every test configures.
pub const TIMEOUT: Duration = Duration::from_millis(250);

/// A server program a test starts (Prometheus, Alertmanager) on a free
/// port of 127.0.0.1, with its own directory; killed on drop.
pub struct Service {
    child: Child,
    pub url: String,
    pub dir: PathBuf,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    /// Writes `config` to `<dir>/config.yml`, starts `program` with `args`
    /// (`$DIR` and `$PORT` replaced) and waits until `/-/ready` answers.
    pub fn start(program: &str, config: &str, args: &[&str]) -> Service {
        let port = free_port();
        let dir = temp_dir(&format!("{program}-{port}"));
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let fill = |a: &str| {
            a.replace("$DIR", dir.to_str().unwrap())
                .replace("$PORT", &port.to_string())
        };
        let child = Command::new(program)
            .args(args.iter().map(|a| fill(a)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e} (scripts/install-deps installs it)"));
        let service = Service {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while ureq::get(&format!("{}/-/ready", service.url))
            .call()
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "{program} did not start: {}",
                service.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        service
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Now, in unix seconds: the clock the agent's timelines use.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rhe-test-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The smallest sentinel group, one master, one replica and one sentinel:
/// for tests that need something to watch rather than a failover.
pub fn smallest_sentinel_group() -> redis_ha_lab::SentinelGroup {
    redis_ha_lab::SentinelGroup::start(redis_ha_lab::SentinelOpts {
        replicas: 1,
        sentinels: 1,
        quorum: 1,
        ..redis_ha_lab::SentinelOpts::default()
    })
}

/// The `deployments:` entries for a sentinel set seeded by `sentinels`.
pub fn sentinel_deployment(name: &str, sentinels: &[String]) -> String {
    format!("  - name: {name}\n    kind: sentinel\n    sentinels: {sentinels:?}\n")
}

/// A deployment's `canary` key turning the probe on: append it to a
/// `sentinel_deployment` or `cluster_deployment` entry.
pub const CANARY: &str = "    canary: { enabled: true }\n";

/// The `deployments:` entry for a cluster seeded by `seeds`.
pub fn cluster_deployment(name: &str, seeds: &[String]) -> String {
    format!("  - name: {name}\n    kind: cluster\n    seeds: {seeds:?}\n")
}

impl Agent {
    /// Starts the agent with these deployments and waits until /-/ready.
    pub fn start(deployments: &str) -> Agent {
        Self::start_with_env(deployments, &[])
    }

    pub fn start_with_env(deployments: &str, env: &[(&str, &str)]) -> Agent {
        Self::start_full(deployments, "", env)
    }

    /// Starts the agent with `extra` top-level YAML (e.g. a `timelines:` section;
    /// `poll_interval` or `timeout` there replace the tests' fast ones).
    /// A listen port taken between choosing and binding it (tests run in
    /// parallel) makes the agent exit at once: then it tries another port.
    pub fn start_full(deployments: &str, extra: &str, env: &[(&str, &str)]) -> Agent {
        Self::start_with_client(deployments, extra, env, Client::plain())
    }

    /// Starts the agent and waits until `client` gets 200 from /-/ready.
    pub fn start_with_client(
        deployments: &str,
        extra: &str,
        env: &[(&str, &str)],
        client: Client,
    ) -> Agent {
        Self::start_at(None, deployments, extra, env, client)
    }

    /// Starts the agent inside `host` of a lab network, listening on the
    /// host's address: it reaches what the host reaches, and a partition
    /// can put it on one side.
    pub fn start_on(host: &redis_ha_lab::Host, deployments: &str, extra: &str) -> Agent {
        Self::start_at(Some(host.clone()), deployments, extra, &[], Client::plain())
    }

    fn start_at(
        host: Option<redis_ha_lab::Host>,
        deployments: &str,
        extra: &str,
        env: &[(&str, &str)],
        client: Client,
    ) -> Agent {
        let ip = host
            .as_ref()
            .map_or(std::net::Ipv4Addr::LOCALHOST, redis_ha_lab::Host::ip);
        for _ in 0..3 {
            let port = free_port();
            let dir = temp_dir(&format!("agent-{port}"));
            let config = dir.join("agent.yaml");
            let extra = extra.replace("$DIR", dir.to_str().unwrap());
            let env: Vec<(String, String)> = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.replace("$DIR", dir.to_str().unwrap())))
                .collect();
            // The tests' fast polls, unless `extra` sets its own.
            let mut timing = String::new();
            for (key, value) in [("poll_interval", POLL), ("timeout", TIMEOUT)] {
                if !extra.lines().any(|l| l.starts_with(&format!("{key}:"))) {
                    timing += &format!("{key}: {}ms\n", value.as_millis());
                }
            }
            std::fs::write(
                &config,
                format!("listen: \"{ip}:{port}\"\n{timing}{extra}deployments:\n{deployments}"),
            )
            .unwrap();
            let log = dir.join("agent.log");
            let child = Self::spawn(&config, &dir, &log, &env, host.as_ref());
            let mut agent = Agent {
                child,
                base: format!(
                    "{}://{ip}:{port}",
                    if client.https { "https" } else { "http" }
                ),
                client: client.clone(),
                dir,
                log,
                config,
                starts: 1,
                host: host.clone(),
                env,
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if agent.get("/-/ready").0 == 200 {
                    return agent;
                }
                if let Ok(Some(_)) = agent.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let log = agent.log();
            if !log.contains("cannot listen") {
                panic!("the agent did not become ready; its log:\n{log}");
            }
        }
        panic!("the agent could not get a listen port in three tries");
    }

    fn spawn(
        config: &std::path::Path,
        dir: &std::path::Path,
        log: &std::path::Path,
        env: &[(String, String)],
        host: Option<&redis_ha_lab::Host>,
    ) -> Child {
        let mut command = Command::new(env!("CARGO_BIN_EXE_redis-ha-exporter"));
        if let Some(host) = host {
            host.place(&mut command);
        }
        command
            .arg("--config")
            .arg(config)
            .env("REDIS_HA_LOG", "redis_ha_exporter=debug,info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(
                std::fs::File::create(dir.join("agent.out")).unwrap(),
            ))
            .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
            .spawn()
            .unwrap()
    }

    /// Kills the agent (SIGKILL: no chance to flush anything) unless it has
    /// exited already, and starts it again with the same config, waiting
    /// until it serves.
    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }

    /// Kills the agent (SIGKILL) unless it has exited already.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the agent, killed or exited, again with the same config,
    /// waiting until it serves.
    pub fn start_again(&mut self) {
        self.starts += 1;
        self.log = self.dir.join(format!("agent-{}.log", self.starts));
        self.child = Self::spawn(
            &self.config,
            &self.dir,
            &self.log,
            &self.env,
            self.host.as_ref(),
        );
        self.wait_until("the restarted agent serves", Duration::from_secs(20), |a| {
            a.get("/-/healthy").0 == 200
        });
    }

    /// Sends SIGTERM and waits up to `within` for the agent to exit: how it
    /// exited and how long that took.
    pub fn terminate(&mut self, within: Duration) -> (std::process::ExitStatus, Duration) {
        let sent = Instant::now();
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success(), "kill -TERM {}: {kill}", self.child.id());
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                return (exit, sent.elapsed());
            }
            assert!(
                sent.elapsed() < within,
                "the agent did not exit within {within:?} of SIGTERM; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The agent's resident memory now (`VmRSS`), in bytes.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS in /proc/<pid>/status")
            * 1024
    }

    /// A JSON document from the API.
    pub fn json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// The failover timelines of a deployment, in progress first, newest first.
    /// The shard entries of a deployment in /api/v1/topology.
    pub fn shards(&self, deployment: &str) -> Vec<serde_json::Value> {
        let topo = self.json("/api/v1/topology");
        topo["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["deployment"] == deployment)
            .map(|d| d["shards"].as_array().unwrap().clone())
            .unwrap_or_default()
    }

    /// The nodes /api/v1/findings names under `check` now.
    pub fn named(&self, check: &str) -> Vec<String> {
        self.json("/api/v1/findings")["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["check"] == check)
            .map(|f| f["node"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    pub fn failovers(&self, deployment: &str) -> Vec<serde_json::Value> {
        self.json(&format!("/api/v1/failovers?deployment={deployment}"))["failovers"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Status and body of a GET.
    pub fn get(&self, path: &str) -> (u16, String) {
        match self
            .client
            .get(&format!("{}{path}", self.base))
            .timeout(Duration::from_secs(5))
            .call()
        {
            Ok(r) => (r.status(), r.into_string().unwrap()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    }

    pub fn metrics(&self) -> Metrics {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "GET /metrics");
        Metrics::parse(&body)
    }

    /// Whether the agent process is still alive (not exited, not a zombie).
    fn running(&self) -> bool {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // The state follows the command name in parentheses.
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    }

    /// Everything the agent printed so far: its log (stderr) and stdout.
    pub fn printed(&self) -> String {
        self.log() + &std::fs::read_to_string(self.dir.join("agent.out")).unwrap_or_default()
    }

    /// The config file the agent runs with.
    pub fn config_path(&self) -> &std::path::Path {
        &self.config
    }

    /// Everything the agent logged so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        std::fs::File::open(&self.log)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    /// Waits until `cond` holds, checking every 50 ms; panics with `what` and
    /// the agent's log tail after `timeout`.
    pub fn wait_until(&self, what: &str, timeout: Duration, mut cond: impl FnMut(&Agent) -> bool) {
        let start = Instant::now();
        while !cond(self) {
            if !self.running() {
                panic!(
                    "the agent exited while waiting for {what}; its log:\n{}",
                    self.log()
                );
            }
            if start.elapsed() > timeout {
                let log = self.log();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                panic!(
                    "timed out after {timeout:?} waiting for {what}; agent log tail:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the metrics satisfy `cond`; returns them.
    pub fn wait_metrics(
        &self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&Metrics) -> bool,
    ) -> Metrics {
        self.wait_until(what, timeout, |a| cond(&a.metrics()));
        self.metrics()
    }

    /// When each target was last polled, by its deployment and address.
    pub fn last_polls(&self) -> BTreeMap<(String, String), f64> {
        self.metrics()
            .find("redis_ha_target_last_poll_timestamp_seconds", &[])
            .map(|s| {
                let target = s.labels.get("node").or(s.labels.get("sentinel"));
                (
                    (s.labels["deployment"].clone(), target.unwrap().clone()),
                    s.value,
                )
            })
            .collect()
    }

    /// Waits until every target of `before` (from `last_polls`) has been
    /// polled again since: polling goes on, for each of them.
    pub fn wait_polled_since(&self, before: &BTreeMap<(String, String), f64>, timeout: Duration) {
        assert!(!before.is_empty(), "no target polled yet");
        self.wait_until("every target polled again", timeout, |a| {
            let now = a.last_polls();
            before
                .iter()
                .all(|(target, at)| now.get(target).is_some_and(|t| t > at))
        });
    }

    /// Waits until `targets` targets report up.
    pub fn wait_targets_up(&self, targets: usize, timeout: Duration) {
        self.wait_metrics("every target up", timeout, |m| {
            m.find("redis_ha_target_up", &[])
                .filter(|s| s.value == 1.0)
                .count()
                == targets
        });
    }
}

/// Mark names and times of a timeline, in its order.
pub fn marks(t: &serde_json::Value) -> Vec<(String, f64)> {
    t["marks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                m["at"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// When a timeline's mark `name` was seen.
pub fn mark_at(t: &serde_json::Value, name: &str) -> Option<f64> {
    marks(t)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, at)| at)
}

impl Agent {
    /// Waits for an ended timeline of `deployment` matching `pick`, returns it.
    pub fn ended_failover(
        &self,
        deployment: &str,
        what: &str,
        timeout: Duration,
        pick: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut found = None;
        self.wait_until(what, timeout, |a| {
            found = a
                .failovers(deployment)
                .into_iter()
                .find(|t| !t["outcome"].is_null() && pick(t));
            found.is_some()
        });
        found.unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One sample of the text format.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed /metrics body.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub samples: Vec<Sample>,
    /// Family name to its `# TYPE`.
    pub types: BTreeMap<String, String>,
    pub text: String,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        let mut types = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                types.insert(name.to_string(), kind.to_string());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k.to_string(), v.trim_matches('"').to_string())
                })
                .collect();
            samples.push(Sample {
                name: name.to_string(),
                labels,
                value: value.parse().unwrap(),
            });
        }
        Metrics {
            samples,
            types,
            text: text.to_string(),
        }
    }

    /// Samples of `name` whose labels include every pair of `want`.
    pub fn find<'a>(
        &'a self,
        name: &'a str,
        want: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && want
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The value of the one sample of `name` matching `want`, if exactly one.
    pub fn value(&self, name: &str, want: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<_> = self.find(name, want).collect();
        match found.as_slice() {
            [one] => Some(one.value),
            _ => None,
        }
    }

    /// Label values of `label` over the samples of `name` matching `want`, sorted.
    pub fn label_values(&self, name: &str, label: &str, want: &[(&str, &str)]) -> Vec<String> {
        let mut v: Vec<String> = self
            .find(name, want)
            .filter_map(|s| s.labels.get(label).cloned())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// A family as docs/metrics.md lists it: its type and the label sets it
/// may carry (each sorted).
pub struct Documented {
    pub kind: String,
    pub label_sets: Vec<Vec<String>>,
}

fn metrics_doc() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md")).unwrap()
}

/// The families docs/metrics.md lists, by name.
pub fn documented_families() -> BTreeMap<String, Documented> {
    let docs = metrics_doc();
    let mut documented = BTreeMap::new();
    for line in docs.lines().filter(|l| l.starts_with("| `redis_ha_")) {
        // `\|` is a pipe inside a cell: "node\|sentinel" means either label.
        let line = line.replace("\\|", "/");
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_string();
        let alternatives: Vec<Vec<String>> = {
            // "deployment, node/sentinel" -> [[deployment, node], [deployment, sentinel]]
            let mut sets = vec![Vec::new()];
            for label in cells[3].split(',').map(str::trim) {
                let options: Vec<&str> = label.split('/').collect();
                sets = sets
                    .into_iter()
                    .flat_map(|s| {
                        options
                            .iter()
                            .map(move |o| [s.clone(), vec![o.to_string()]].concat())
                    })
                    .collect();
            }
            sets.into_iter()
                .map(|mut s| {
                    s.sort();
                    s
                })
                .collect()
        };
        documented.insert(
            name,
            Documented {
                kind: cells[2].to_string(),
                label_sets: alternatives,
            },
        );
    }
    documented
}

/// The families served only where cluster masters keep slot statistics
/// (`CLUSTER SLOT-STATS`: Valkey 8+, Redis 8.2+).
pub const SLOT_STATS_FAMILIES: [&str; 2] = [
    "redis_ha_cluster_hot_slot_keys",
    "redis_ha_cluster_shard_slot_skew",
];

/// Whether the lab's server keeps slot statistics, asked of `node`.
pub fn has_slot_stats(node: &redis_ha_lab::Node) -> bool {
    node.cmd(&["CLUSTER", "SLOT-STATS", "SLOTSRANGE", "0", "0"])
        .is_ok()
}

/// Every family documented in docs/metrics.md is served in one of the
/// scrapes, each with the documented type and labels, and nothing
/// undocumented is served; but `absent`, families the lab's server cannot
/// give (none must be served).
pub fn check_docs_match(scrapes: &[&Metrics], absent: &[&str]) {
    let docs = metrics_doc();
    let documented = documented_families();
    // The code's own list of families says the same as the docs.
    for def in redis_ha_exporter::metrics::FAMILIES {
        let doc = documented
            .get(def.name)
            .unwrap_or_else(|| panic!("{} is not in docs/metrics.md", def.name));
        let code_kind = format!("{:?}", def.kind).to_lowercase();
        assert_eq!(doc.kind, code_kind, "type of {}", def.name);
        let code_labels = def.labels.replace('|', "/");
        let doc_line = docs
            .lines()
            .find(|l| l.starts_with(&format!("| `{}`", def.name)))
            .unwrap();
        assert!(
            doc_line.replace("\\|", "/").contains(&code_labels),
            "labels of {}: {:?}",
            def.name,
            doc.label_sets
        );
        assert!(
            doc_line.contains(def.help),
            "help of {} differs from docs/metrics.md",
            def.name
        );
    }
    assert_eq!(documented.len(), redis_ha_exporter::metrics::FAMILIES.len());
    let served: std::collections::BTreeSet<&String> =
        scrapes.iter().flat_map(|m| m.types.keys()).collect();
    let listed: std::collections::BTreeSet<&String> = documented
        .keys()
        .filter(|f| !absent.contains(&f.as_str()))
        .collect();
    assert_eq!(
        served, listed,
        "families served by /metrics vs documented in docs/metrics.md"
    );
    for (m, s) in scrapes
        .iter()
        .flat_map(|m| m.samples.iter().map(move |s| (m, s)))
    {
        // Histograms serve _bucket (with `le`), _sum and _count series.
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|suffix| s.name.strip_suffix(suffix))
            .find(|base| m.types.get(*base).map(String::as_str) == Some("histogram"))
            .unwrap_or(&s.name);
        let doc = &documented[family];
        assert_eq!(m.types[family], doc.kind, "type of {family}");
        let names: Vec<String> = s
            .labels
            .keys()
            .filter(|k| *k != "le" || family == s.name)
            .cloned()
            .collect();
        assert!(
            doc.label_sets.contains(&names),
            "{} has labels {names:?}; documented: {:?}",
            s.name,
            doc.label_sets
        );
    }
}
