//! What the soak and the chaos run share: a sentinel group and a cluster
//! watched by one agent with a webhook receiver, the independent record of
//! both, how long a run lasts, the agent's memory over time, what reached
//! the receiver, and the report a run writes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use redis_ha_lab::{Cluster, ClusterOpts, Net, SentinelGroup, SentinelOpts};
use serde_json::{json, Value};

use super::receiver::Receiver;
use super::record::Record;
use super::{cluster_deployment, sentinel_deployment, Agent};

/// The sentinel deployment's name in the agent's config.
pub const SENTINEL: &str = "s";
/// The cluster deployment's name.
pub const CLUSTER: &str = "c";

/// A run's length: `var` in seconds, else `default`.
pub fn seconds(var: &str, default: u64) -> Duration {
    let secs = match std::env::var(var) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{var}={v}: expected whole seconds")),
        Err(_) => default,
    };
    Duration::from_secs(secs)
}

/// The lab of a long run. Fields drop in order: the agent before the
/// servers, the record's threads with it, the network last.
pub struct Lab {
    pub agent: Agent,
    pub hook: Receiver,
    pub record: Record,
    pub group: SentinelGroup,
    pub cluster: Cluster,
    /// Every server on its own host of it, so that the master can be cut
    /// off from its peers, and so that the lab is laid out as production
    /// is: on one host, every server would be a finding of its own
    /// (`sentinels_share_host`, `shard_shares_host`, docs/findings.md) and
    /// `ConfigurationRisk` would page about the lab 10 minutes in.
    pub net: Net,
    pub started: Instant,
}

impl Lab {
    /// A default sentinel group (master, two replicas, three sentinels) and
    /// a 3x1 cluster on a lab network, recorded, and the agent watching both
    /// from the root namespace (it sees every side of a cut) with the
    /// built-in rules and every alert going to a webhook receiver; `rules`
    /// is an `alerts.rules` section. Returns once the agent sees every
    /// target up and every sentinel subscribed.
    pub fn start(rules: &str) -> Lab {
        let net = Net::start();
        let group = SentinelGroup::start(SentinelOpts {
            net: Some(net.clone()),
            ..SentinelOpts::default()
        });
        let cluster = Cluster::start(ClusterOpts {
            net: Some(net.clone()),
            ..ClusterOpts::default()
        });
        let record = Record::start(&group, &cluster);
        let hook = Receiver::start();
        let agent = Agent::start_full(
            &format!(
                "{}{}",
                sentinel_deployment(SENTINEL, &[group.sentinels[0].addr()]),
                cluster_deployment(CLUSTER, &[cluster.nodes[0].addr()])
            ),
            &format!(
                "timelines:\n  keep_per_shard: 1000\nalerts:\n  state_dir: \"$DIR/state\"\n  receivers:\n    - {{ name: hook, type: webhook, url: \"{}\" }}\n{rules}",
                hook.url("/")
            ),
            &[],
        );
        let targets = group.nodes.len() + group.sentinels.len() + cluster.nodes.len();
        agent.wait_metrics(
            "every target up and every sentinel subscribed",
            Duration::from_secs(40),
            |m| {
                m.find("redis_ha_target_up", &[])
                    .filter(|s| s.value == 1.0)
                    .count()
                    == targets
                    && m.find("redis_ha_sentinel_subscription_up", &[])
                        .filter(|s| s.value == 1.0)
                        .count()
                        == group.sentinels.len()
            },
        );
        Lab {
            agent,
            hook,
            record,
            group,
            cluster,
            net,
            started: Instant::now(),
        }
    }

    /// Seconds since the agent was ready, for log lines.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Every timeline of a deployment (up to the API's 1000).
    pub fn failovers(&self, deployment: &str) -> Vec<Value> {
        self.agent.json(&format!(
            "/api/v1/failovers?deployment={deployment}&limit=1000"
        ))["failovers"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// The alerts firing now, by name.
    pub fn firing(&self) -> Vec<String> {
        self.agent.json("/api/v1/alerts")["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["alertname"].as_str().unwrap().to_string())
            .collect()
    }

    /// What reached the receiver.
    pub fn notes(&self) -> Notes {
        Notes::read(&self.hook)
    }
}

/// One notification the receiver took.
#[derive(Debug, Clone)]
pub struct Note {
    pub alertname: String,
    pub status: String,
    pub fingerprint: String,
    pub labels: Value,
}

/// Every notification the receiver took, in arrival order.
pub struct Notes(pub Vec<Note>);

impl Notes {
    fn read(hook: &Receiver) -> Notes {
        Notes(
            hook.accepted()
                .iter()
                .flat_map(|r| r.json()["alerts"].as_array().cloned().unwrap_or_default())
                .map(|a| Note {
                    alertname: a["labels"]["alertname"].as_str().unwrap_or("?").into(),
                    status: a["status"].as_str().unwrap_or("?").into(),
                    fingerprint: a["fingerprint"].as_str().unwrap_or("?").into(),
                    labels: a["labels"].clone(),
                })
                .collect(),
        )
    }

    /// How many alerts fired, by name.
    pub fn fired(&self) -> BTreeMap<String, usize> {
        let mut fired = BTreeMap::new();
        for n in self.0.iter().filter(|n| n.status == "firing") {
            *fired.entry(n.alertname.clone()).or_default() += 1;
        }
        fired
    }

    /// The alerts whose last notification says firing: what on-call
    /// believes still fires.
    pub fn left_firing(&self) -> Vec<Note> {
        let mut last: BTreeMap<&str, &Note> = BTreeMap::new();
        for n in &self.0 {
            last.insert(&n.fingerprint, n);
        }
        last.into_values()
            .filter(|n| n.status == "firing")
            .cloned()
            .collect()
    }
}

/// The agent's resident memory over a run.
#[derive(Default)]
pub struct Rss {
    /// (seconds since the start, bytes).
    pub samples: Vec<(f64, u64)>,
}

impl Rss {
    /// Takes a sample now.
    pub fn sample(&mut self, lab: &Lab) -> u64 {
        let rss = lab.agent.rss();
        self.samples.push((lab.elapsed(), rss));
        rss
    }

    /// The median of the samples taken in `[from, to)` seconds: a single
    /// sample may catch an allocation on its way out.
    pub fn median(&self, from: f64, to: f64) -> u64 {
        let mut window: Vec<u64> = self
            .samples
            .iter()
            .filter(|(at, _)| (from..to).contains(at))
            .map(|s| s.1)
            .collect();
        assert!(!window.is_empty(), "no RSS sample in [{from}, {to})");
        window.sort();
        window[window.len() / 2]
    }

    pub fn json(&self) -> Value {
        json!(self.samples)
    }
}

/// Prints `report` and, when `$REDIS_HA_REPORT` names a file (scripts/soak
/// and scripts/chaos set it), writes it there, with the record's raw
/// sentinel events (`events.jsonl`) and the agent's timelines
/// (`timelines.json`) beside it, for a reader to check a run's verdict.
pub fn report(lab: &Lab, report: &Value) {
    let text = serde_json::to_string_pretty(report).unwrap();
    eprintln!("report: {text}");
    let Ok(path) = std::env::var("REDIS_HA_REPORT") else {
        return;
    };
    let path = std::path::Path::new(&path);
    let events: String = lab
        .record
        .events()
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect();
    let timelines: Vec<Value> = [SENTINEL, CLUSTER]
        .iter()
        .flat_map(|d| lab.failovers(d))
        .collect();
    for (file, text) in [
        (path.to_path_buf(), text + "\n"),
        (path.with_file_name("events.jsonl"), events),
        (
            path.with_file_name("timelines.json"),
            serde_json::to_string_pretty(&timelines).unwrap(),
        ),
    ] {
        std::fs::write(&file, text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
}

/// The server binary's version line, for the report.
pub fn server_version() -> String {
    let out = std::process::Command::new(redis_ha_lab::server_binary())
        .arg("--version")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
