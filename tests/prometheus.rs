//! The alert rules and dashboards against real tools: promtool checks and
//! unit-tests the rules and lints /metrics; a real Prometheus scraping the
//! agent every second through a sentinel failover and a lost cluster shard
//! answers every dashboard query and fires the rules.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redis_ha_lab::{Cluster, ClusterOpts, SentinelGroup, SentinelOpts};
use serde_json::Value;
use support::dashboards::{load, queries, substitute, variables};
use support::receiver::Receiver;
use support::{cluster_deployment, sentinel_deployment, unix_now, Agent, Service, CANARY};

const LONG: Duration = Duration::from_secs(90);

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs promtool (from the Debian package `prometheus`; scripts/install-deps
/// installs it) and returns its output, failing the test unless it succeeds.
fn promtool(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(repo("alerts"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/install-deps installs the prometheus package)");
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// Must show 1: the rule files are valid and their unit tests pass.
#[test]
fn promtool_checks_and_tests_the_rules() {
    let checked = promtool(&["check", "rules", "redis-ha.rules.yml"], None);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&["test", "rules", "redis-ha.test.yml"], None);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// A real Prometheus, started here, scraping and evaluating every second.
struct Prometheus(Service);

impl Prometheus {
    fn start(target: &str, rules: &Path) -> Prometheus {
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [\"{}\"]\nscrape_configs:\n  - job_name: redis-ha-exporter\n    static_configs:\n      - targets: [\"{target}\"]\n",
            rules.display()
        );
        Prometheus(Service::start(
            "prometheus",
            &config,
            &[
                "--config.file=$DIR/config.yml",
                "--storage.tsdb.path=$DIR/data",
                "--web.listen-address=127.0.0.1:$PORT",
            ],
        ))
    }

    /// `data` of an API answer, or why there is none.
    fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let mut req = ureq::get(&format!("{}{path}", self.0.url));
        for (k, v) in params {
            req = req.query(k, v);
        }
        let body = match req.call() {
            Ok(r) => r.into_string().map_err(|e| e.to_string())?,
            Err(ureq::Error::Status(code, r)) => {
                return Err(format!(
                    "HTTP {code}: {}",
                    r.into_string().unwrap_or_default()
                ))
            }
            Err(e) => return Err(e.to_string()),
        };
        let v: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        if v["status"] != "success" {
            return Err(body);
        }
        Ok(v["data"].clone())
    }

    /// Series of an instant query now (empty on error).
    fn instant(&self, expr: &str) -> Vec<Value> {
        self.api("/api/v1/query", &[("query", expr)])
            .ok()
            .and_then(|d| d["result"].as_array().cloned())
            .unwrap_or_default()
    }

    /// Series of a range query over [start, now], one point a second.
    fn range(&self, expr: &str, start: f64) -> Result<Vec<Value>, String> {
        let now = unix_now();
        let data = self.api(
            "/api/v1/query_range",
            &[
                ("query", expr),
                ("start", &format!("{start:.3}")),
                ("end", &format!("{now:.3}")),
                ("step", "1"),
            ],
        )?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    fn wait(&self, what: &str, cond: impl Fn(&Prometheus) -> bool) {
        let deadline = Instant::now() + LONG;
        while !cond(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The alerts Prometheus's own rules hold now.
    fn alerts(&self) -> Vec<Value> {
        self.api("/api/v1/alerts", &[])
            .ok()
            .and_then(|d| d["alerts"].as_array().cloned())
            .unwrap_or_default()
    }
}

fn firing(p: &Prometheus, alertname: &str, label: (&str, &str)) -> bool {
    p.alerts().iter().any(|a| {
        a["labels"]["alertname"] == alertname
            && a["labels"][label.0] == label.1
            && a["state"] == "firing"
    })
}

/// Must shows 2 and 3: the lab, the agent and a real Prometheus through a
/// sentinel failover and a cluster shard frozen whole. /metrics passes
/// `promtool check metrics`; every query of every dashboard returns data;
/// the rules of alerts/ fire for the lost shard.
#[test]
fn dashboards_and_rules_against_a_real_prometheus() {
    let group = SentinelGroup::start(SentinelOpts::default());
    let cluster = Cluster::start(ClusterOpts::default());
    // One node refuses the settings read: the "cannot tell" panel has data.
    let refusing = cluster.nodes.last().unwrap();
    refusing
        .cmd(&["ACL", "SETUSER", "default", "-config"])
        .unwrap();
    // Where the servers keep slot statistics (Valkey 8+), the hot-slot
    // panels have data; elsewhere they must stay empty.
    let slot_stats = cluster.nodes[0]
        .cmd(&["CLUSTER", "SLOT-STATS", "SLOTSRANGE", "0", "0"])
        .is_ok();
    let hot_slot_families = [
        "redis_ha_cluster_hot_slot_keys",
        "redis_ha_cluster_shard_slot_skew",
    ];
    let hook = Receiver::start();
    // The canary on: the dashboards show its families too.
    let deployments = format!(
        "{}{CANARY}{}{CANARY}",
        sentinel_deployment("s", &[group.sentinels[0].addr()]),
        cluster_deployment("c", &[cluster.nodes[0].addr()])
    );
    // A receiver, so the delivery families have series too; settings and
    // slot statistics read every second, so a shard's skew is known once
    // the canary wrote its key.
    let extra = format!(
        "findings:\n  settings_interval: 1s\nalerts:\n  state_dir: \"$DIR/state\"\n  receivers:\n    - {{ name: hook, type: webhook, url: \"{}\" }}\n",
        hook.url("/")
    );
    let agent = Agent::start_full(&deployments, &extra, &[]);
    let started = unix_now();
    let prometheus = Prometheus::start(
        agent.base.trim_start_matches("http://"),
        &repo("alerts/redis-ha.rules.yml"),
    );
    // Three sentinels, three data nodes, six cluster nodes.
    prometheus.wait("every target up in Prometheus", |p| {
        p.instant("count(redis_ha_target_up == 1)")
            .first()
            .is_some_and(|s| s["value"][1] == "12")
    });

    // A sentinel failover.
    let old = group.master_port().unwrap();
    group.node(old).freeze();
    group.wait_for_new_master(old, LONG);
    group.node(old).resume();
    prometheus.wait("the failover in Prometheus", |p| {
        !p.instant(r#"redis_ha_failovers_total{deployment="s", outcome="completed"} == 1"#)
            .is_empty()
    });

    // Must show 2: the agent's /metrics passes promtool's lint, with every
    // family present (histograms holding a failover).
    let (status, metrics) = agent.get("/metrics");
    assert_eq!(status, 200);
    promtool(&["check", "metrics"], Some(&metrics));

    // A cluster shard lost whole: master 1 and its only replica (nodes[4]).
    let (master, replica) = (&cluster.nodes[1], &cluster.nodes[4]);
    master.freeze();
    replica.freeze();
    let (m, r) = (master.addr(), replica.addr());
    prometheus.wait("the rules to fire for the lost shard", |p| {
        firing(p, "SlotCoverageLost", ("deployment", "c"))
            && firing(p, "ClusterStateFail", ("deployment", "c"))
            && firing(p, "TargetDown", ("node", &m))
            && firing(p, "TargetDown", ("node", &r))
    });
    // The sentinel failover fired its rules too (for five minutes): the
    // switch's page and the end.
    for rule in ["FailoverSwitched", "FailoverCompleted"] {
        assert!(firing(&prometheus, rule, ("deployment", "s")), "{rule}");
    }
    // What fires carries the rule's annotations, templated.
    let coverage = prometheus
        .alerts()
        .into_iter()
        .find(|a| a["labels"]["alertname"] == "SlotCoverageLost")
        .unwrap();
    let summary = coverage["annotations"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("Cluster c serves ") && summary.ends_with("% of its slots"),
        "{summary}"
    );

    // Every dashboard query, as Grafana would send it for the time since
    // the agent started, with every deployment and shard selected.
    let range = (unix_now() - started).ceil() as u64;
    let mut empty = Vec::new();
    let mut asked = 0;
    for (name, d) in load() {
        for q in queries(&name, &d) {
            let expr = substitute(&q.expr, range);
            asked += 1;
            let expected = slot_stats || !hot_slot_families.iter().any(|f| expr.contains(f));
            match prometheus.range(&expr, started) {
                Ok(series) if series.is_empty() == expected => {
                    let wrong = if expected {
                        "no data"
                    } else {
                        "data without CLUSTER SLOT-STATS"
                    };
                    empty.push(format!("{}: {wrong} for {expr}", q.place))
                }
                Ok(_) => {}
                Err(e) => empty.push(format!("{}: {e} for {expr}", q.place)),
            }
        }
        for (var, selector, label) in variables(&d) {
            let selector = substitute(&selector, range);
            let values = prometheus
                .api(
                    &format!("/api/v1/label/{label}/values"),
                    &[("match[]", &selector)],
                )
                .ok()
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default();
            if values.is_empty() {
                empty.push(format!("{name}: variable {var} has no values ({selector})"));
            }
        }
    }
    assert!(asked > 50, "only {asked} queries found");
    assert!(
        empty.is_empty(),
        "{} of {asked} queries:\n{}",
        empty.len(),
        empty.join("\n")
    );
    master.resume();
    replica.resume();
}
