//! The results section of BENCHMARKS.md: machine, versions, one table per
//! scenario with median, p99, min and max, ratios against the peer, and
//! whether each target was met.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::criterion::BenchResult;
use crate::failover::FailoverRun;
use crate::scale::Scale;
use crate::scrape::CostPair;
use crate::stats::{summarize, Summary};
use crate::traffic::Traffic;

pub const BEGIN: &str =
    "<!-- bench:results:begin (written by scripts/bench; edits here are replaced) -->";
pub const END: &str = "<!-- bench:results:end -->";

/// Scenario 2 for one setup. Latencies in seconds.
pub struct ScrapeSet {
    pub setup: String,
    pub targets: usize,
    pub ours: Vec<f64>,
    /// `GET /-/healthy` right after each scrape: the control.
    pub ours_healthy: Vec<f64>,
    /// The same scrape again right after: the body cached, no render.
    pub ours_cached: Vec<f64>,
    pub ours_bytes: usize,
    pub peer: Vec<f64>,
    pub peer_bytes: usize,
    pub peer_errors: usize,
    pub ours_frozen: Vec<f64>,
    pub ours_frozen_healthy: Vec<f64>,
    pub ours_frozen_cached: Vec<f64>,
    pub peer_frozen: Vec<f64>,
    pub peer_frozen_errors: usize,
}

pub struct Report {
    command: String,
    date: String,
    machine: Vec<(String, String)>,
    load_start: String,
    load_end: String,
    elapsed: Duration,
    pub failovers: Vec<FailoverRun>,
    pub scrapes: Vec<ScrapeSet>,
    pub costs: Vec<(String, CostPair)>,
    pub parsing: Vec<BenchResult>,
    /// Scenario 5, on the large cluster.
    pub traffic: Option<Traffic>,
    /// Scenario 6, by size.
    pub scales: Vec<Scale>,
    /// The peer's rounds per setup (normal, frozen) and time budget.
    pub peer_rounds: (usize, usize),
    pub peer_seconds: u64,
}

impl Report {
    pub fn new(command: &str, agent: &Path) -> Report {
        use crate::procs::version_line;
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_default();
        let mem = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(String::new(), |kb| {
                format!("{:.1} GiB", kb as f64 / 1048576.0)
            });
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let server = std::env::var(redis_ha_lab::SERVER_ENV)
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "redis-server".to_string());
        let machine = vec![
            (
                "CPU".into(),
                format!("{cpu}, {cores} cores available, {mem} RAM"),
            ),
            ("kernel".into(), version_line("uname", &["-sr"])),
            ("OS".into(), os_name()),
            (
                "agent".into(),
                format!(
                    "{} ({}, release build)",
                    crate::agent::binary_version(agent),
                    agent.display()
                ),
            ),
            ("Redis".into(), version_line(&server, &["--version"])),
            ("peer exporter".into(), exporter_version()),
            (
                "Prometheus".into(),
                version_line("prometheus", &["--version"]),
            ),
            ("rustc".into(), version_line("rustc", &["--version"])),
        ];
        Report {
            command: command.to_string(),
            date: version_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            machine,
            load_start: loadavg(),
            load_end: String::new(),
            elapsed: Duration::ZERO,
            failovers: Vec::new(),
            scrapes: Vec::new(),
            costs: Vec::new(),
            parsing: Vec::new(),
            traffic: None,
            scales: Vec::new(),
            peer_rounds: (0, 0),
            peer_seconds: 0,
        }
    }

    pub fn finish(&mut self, elapsed: Duration) {
        self.elapsed = elapsed;
        self.load_end = loadavg();
    }

    /// Every series behind the tables (seconds), for a closer look.
    pub fn raw(&self) -> serde_json::Value {
        use serde_json::json;
        json!({
            "failovers": self.failovers.iter().map(|r| json!({
                "agent_page": r.agent_page,
                "peer_page": r.peer_page,
                "agent_started": r.agent_started,
                "agent_completed": r.agent_completed,
                "switch_to_end": r.switch_to_end,
                "end_to_completed": r.end_to_completed,
                "critical_notifications": r.pages,
                "freeze_to_switch": r.freeze_to_switch,
                "first_switch_not_leader": r.first_switch_not_leader,
            })).collect::<Vec<_>>(),
            "scrapes": self.scrapes.iter().map(|s| json!({
                "setup": s.setup,
                "agent": s.ours,
                "agent_healthy": s.ours_healthy,
                "agent_cached": s.ours_cached,
                "peer": s.peer,
                "agent_frozen": s.ours_frozen,
                "agent_frozen_healthy": s.ours_frozen_healthy,
                "agent_frozen_cached": s.ours_frozen_cached,
                "peer_frozen": s.peer_frozen,
            })).collect::<Vec<_>>(),
            "costs": self.costs.iter().map(|(name, c)| json!({
                "topology": name,
                "targets": c.targets,
                "seconds": c.seconds,
                "agent_cpu_per_poll": c.agent.per_op,
                "peer_cpu_per_scrape": c.peer.per_op,
                                "redis_cpu_cores": c.redis_cores,
            })).collect::<Vec<_>>(),
            "traffic": self.traffic.as_ref().map(|t| json!({
                "nodes": t.nodes,
                "seconds": t.seconds,
                "agent_bytes_per_node_second": t.agent,
                "peer_bytes_per_node_second": t.peer,
                "idle_bytes_per_node_second": t.idle,
            })),
            "scale": self.scales.iter().map(|s| json!({
                "nodes": s.nodes,
                "seconds": s.seconds,
                "agent_cpu_per_poll": s.per_poll,
                "rss": s.rss,
                "peak_rss": s.peak_rss,
                "body_bytes": s.body_bytes,
                "series": s.series,
                "metrics_p99": s.metrics.p99,
                "healthy_p99": s.healthy.p99,
                "fail_declared_to_mark": s.to_fail_mark,
                "fail_declared_to_coverage_lost": s.to_coverage_lost,
            })).collect::<Vec<_>>(),
        })
    }

    /// Replaces the results section of `path` (between the markers), or
    /// writes a file holding only it.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let section = format!("{BEGIN}\n{}{END}", self.render());
        let text = match std::fs::read_to_string(path) {
            Ok(old) => match (old.find(BEGIN), old.find(END)) {
                (Some(b), Some(e)) if b < e => {
                    format!("{}{section}{}", &old[..b], &old[e + END.len()..])
                }
                _ => format!("{old}\n{section}\n"),
            },
            Err(_) => format!("# Benchmarks\n\n{section}\n"),
        };
        std::fs::write(path, text)
    }

    fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "## Results\n\nOne run of `{}`, {}, {:.1} minutes. Load average (1, 5, 15 min) {} at the start, {} at the end: the machine was not otherwise idle-checked, so compare figures within this run, not across runs.\n",
            self.command,
            self.date,
            self.elapsed.as_secs_f64() / 60.0,
            self.load_start,
            self.load_end
        );
        o.push_str("| | |\n|---|---|\n");
        for (k, v) in &self.machine {
            let _ = writeln!(o, "| {k} | {} |", v.replace('|', "\\|"));
        }
        o.push('\n');
        self.failover_section(&mut o);
        self.scrape_section(&mut o);
        self.cost_section(&mut o);
        self.parsing_section(&mut o);
        self.traffic_section(&mut o);
        self.scale_section(&mut o);
        o
    }

    fn traffic_section(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "### 5. Bytes from Redis
"
        );
        let Some(t) = &self.traffic else {
            o.push_str(
                "Not run.

",
            );
            return;
        };
        let _ = writeln!(
            o,
            "The large cluster ({} nodes), three windows of {} s: the agent polling alone; the agent stopped (SIGSTOP) while redis_exporter is scraped once a second for every node; neither ({} B per node per second: the harness's own reads of the counter, subtracted from both). Bytes: the servers' `INFO stats` `total_net_output_bytes` summed over the nodes.\n",
            t.nodes,
            t.seconds,
            sig3(t.idle)
        );
        o.push_str("| | bytes per node per second |\n|---|---|\n");
        let _ = writeln!(o, "| agent (poll every 1 s) | {} |", sig3(t.agent));
        let _ = writeln!(
            o,
            "| redis_exporter (scraped every 1 s) | {} |",
            sig3(t.peer)
        );
        let _ = writeln!(
            o,
            "| agent / peer | {} |\n",
            ratio(Some(t.agent), Some(t.peer))
        );
        let ok = t.agent * 5.0 <= t.peer;
        let _ = writeln!(
            o,
            "- **Target at most a fifth of the peer's bytes: {}** ({} of the peer's).\n",
            met(ok),
            ratio(Some(t.agent), Some(t.peer))
        );
    }

    fn scale_section(&self, o: &mut String) {
        let _ = writeln!(o, "### 6. Scale (simulated clusters)\n");
        if self.scales.is_empty() {
            o.push_str("Not run.\n\n");
            return;
        }
        let _ = writeln!(
            o,
            "The lab's cluster simulator (`SimCluster`, half masters with one replica each, 1 s node timeout, the replica promoted {} s after the failure is declared) in the harness's process; the agent polls every node every second. CPU per node poll over {} s (utime + stime over nodes x seconds); RSS at the end (peak); {} scrapes of `/metrics`, 20 ms apart, each followed by the same scrape again (cached) and `/-/healthy` (the control). Then the first shard's master fails: from the failure being declared (the first node flags it `fail`) to the `fail` mark of the agent's timeline (the mark's time), and to `SlotCoverageLost` at a webhook receiver.\n",
            sig3(crate::scale::PROMOTE_AFTER.as_secs_f64()),
            self.scales[0].seconds,
            self.scales[0].metrics.n,
        );
        o.push_str("| nodes | agent CPU per node poll | RSS (peak) | /metrics body | series | /metrics p50 / p99 | cached p50 | /-/healthy p50 / p99 | declared to `fail` mark | declared to SlotCoverageLost |\n|---|---|---|---|---|---|---|---|---|---|\n");
        let secs = |s: f64| format!("{} s", sig3(s));
        for s in &self.scales {
            let _ = writeln!(
                o,
                "| {} | {} µs | {} | {} kB | {} | {} / {} ms | {} ms | {} / {} ms | {} | {} |",
                s.nodes,
                fmt_us(s.per_poll),
                fmt_mem(s.rss, s.peak_rss),
                s.body_bytes / 1000,
                s.series,
                fmt_ms(s.metrics.median),
                fmt_ms(s.metrics.p99),
                fmt_ms(s.cached.median),
                fmt_ms(s.healthy.median),
                fmt_ms(s.healthy.p99),
                secs(s.to_fail_mark),
                secs(s.to_coverage_lost),
            );
        }
        o.push('\n');
        if let Some(s) = self.scales.iter().max_by_key(|s| s.nodes) {
            let small = self
                .scales
                .iter()
                .min_by_key(|s| s.nodes)
                .expect("one size");
            let _ = writeln!(
                o,
                "- **At {} nodes: CPU under 100 µs per node poll: {}** ({} µs); **RSS under 100 MB: {}** ({} MB); **`/metrics` p99 under 5 ms: {}** ({} ms, control {} ms); **`fail` mark within 2 poll intervals: {}** ({}).",
                s.nodes,
                met(s.per_poll < 100e-6),
                fmt_us(s.per_poll),
                met(s.rss < 100 * 1024 * 1024),
                fmt_mb(s.rss),
                met(s.metrics.p99 < 5e-3),
                fmt_ms(s.metrics.p99),
                fmt_ms(s.healthy.p99),
                met(s.to_fail_mark <= 2.0),
                secs(s.to_fail_mark),
            );
            let _ = writeln!(
                o,
                "- Cost per node from {} to {} nodes: {} of the smallest's.\n",
                small.nodes,
                s.nodes,
                ratio(Some(s.per_poll), Some(small.per_poll))
            );
        }
    }

    fn failover_section(&self, o: &mut String) {
        let runs = &self.failovers;
        let _ = writeln!(o, "### 1. Failover to page\n");
        if runs.is_empty() {
            o.push_str("Not run.\n\n");
            return;
        }
        let col = |f: fn(&FailoverRun) -> Option<f64>| -> Vec<f64> {
            runs.iter().filter_map(f).collect()
        };
        let a = col(|r| r.agent_page);
        let b = col(|r| r.peer_page);
        let c = col(|r| r.agent_started);
        let _ = writeln!(
            o,
            "{} failovers of a sentinel group (master, 2 replicas, 3 sentinels; down-after 1 s, failover-timeout 4 s), each by freezing the master (SIGSTOP), resuming it once the sentinels agree on a new one and at once making it a replica of that one (`REPLICAOF`, so the next failover need not wait for Sentinel to do it). The clock: the harness's own `PSUBSCRIBE` on every sentinel. Agent: poll interval 1 s, timeout 500 ms, the default rules (`FailoverSwitched` critical, `FailoverStarted` and `FailoverCompleted` warning), every notification to a `webhook` receiver on 127.0.0.1 (a notification's time is its request's arrival). Peer: redis_exporter on each sentinel, Prometheus scraping them every 1 s and evaluating every 1 s `{}`, firing seen by polling `/api/v1/alerts` every 50 ms. Rows: (a) the page, the agent's `FailoverSwitched`, timed from the first `+switch-master` any sentinel publishes; (b) the peer from the same instant; (c) `FailoverStarted` from the first `+odown`; then the end of the failover, `FailoverCompleted`, from the first `+switch-master`, in two parts: Sentinel's (until its leader publishes `+failover-end`, once it has reconfigured the other replica) and the agent's (from `+failover-end` to the receiver). Times in ms.\n",
            runs.len(),
            crate::failover::PEER_RULES
                .lines()
                .find_map(|l| l.trim().strip_prefix("expr: "))
                .unwrap_or("")
        );
        o.push_str("| from → to | n | median | p99 | min | max |\n|---|---|---|---|---|---|\n");
        let rows: [(&str, Vec<f64>); 7] = [
            (
                "(a) first `+switch-master` → agent's `FailoverSwitched` at the receiver (the page)",
                a.clone(),
            ),
            (
                "(b) first `+switch-master` → peer's alert firing in Prometheus",
                b.clone(),
            ),
            (
                "(c) first `+odown` → agent's `FailoverStarted` at the receiver",
                c.clone(),
            ),
            (
                "end: first `+switch-master` → agent's `FailoverCompleted` at the receiver",
                col(|r| r.agent_completed),
            ),
            (
                "end, part 1: first `+switch-master` → leader's `+failover-end` (Sentinel)",
                col(|r| r.switch_to_end),
            ),
            (
                "end, part 2: `+failover-end` → `FailoverCompleted` at the receiver (agent)",
                col(|r| r.end_to_completed),
            ),
            (
                "for scale: freeze → first `+switch-master` (Sentinel's detection and election)",
                col(|r| r.freeze_to_switch),
            ),
        ];
        for (label, values) in rows {
            row_ms(o, label, &values);
        }
        let missing = runs.len() - a.len().min(b.len()).min(c.len());
        let not_leader = runs.iter().filter(|r| r.first_switch_not_leader).count();
        let (sa, sb, sc) = (summarize(&a), summarize(&b), summarize(&c));
        let _ = writeln!(
            o,
            "\nRatio peer/agent (b)/(a): {} at the median, {} at p99. The first `+switch-master` came from a sentinel other than the failover's leader in {not_leader} of {} failovers.{}\n",
            ratio(sb.map(|s| s.median), sa.map(|s| s.median)),
            ratio(sb.map(|s| s.p99), sa.map(|s| s.p99)),
            runs.len(),
            if missing > 0 {
                format!(" {missing} failovers lack a figure (an output not seen within 40 s).")
            } else {
                String::new()
            }
        );
        self.pages_table(o);
        let p99a = sa.map_or(f64::INFINITY, |s| s.p99);
        let _ = writeln!(
            o,
            "- **Target (a) p99 under 50 ms: {}** (p99 {} ms, median {} ms). {}",
            met(p99a < 0.050),
            fmt_ms(p99a),
            fmt_ms(sa.map_or(f64::NAN, |s| s.median)),
            if p99a < 0.050 {
                "The agent pages at the first `+switch-master` any sentinel publishes, heard on its own subscription to every sentinel, without waiting for the end of the failover."
            } else {
                "See Findings for where the time goes."
            }
        );
        let r = match (sa, sb) {
            (Some(a), Some(b)) if a.median > 0.0 => b.median / a.median,
            _ => 0.0,
        };
        let _ = writeln!(
            o,
            "- **Target (b)/(a) over 50x: {}** ({} at the median, {} at p99). The peer sees the switch only at its next scrape of a switched sentinel and the evaluation after it (about 1 s on average at 1 s intervals); the agent hears the event.",
            met(r > 50.0),
            ratio(sb.map(|s| s.median), sa.map(|s| s.median)),
            ratio(sb.map(|s| s.p99), sa.map(|s| s.p99)),
        );
        let one_page = runs
            .iter()
            .filter(|r| r.pages.len() == 1 && r.pages.get("FailoverSwitched") == Some(&1))
            .count();
        let two_masters: usize = runs
            .iter()
            .flat_map(|r| &r.pages)
            .filter(|(name, _)| name.starts_with("MultipleMasters"))
            .map(|(_, n)| n)
            .sum();
        let _ = writeln!(
            o,
            "- **One page per failover, `FailoverSwitched`: {}** ({one_page} of {} failovers had exactly that critical notification and no other); `MultipleMasters` or `MultipleMastersWriting` pages: {two_masters}. Caveat: the harness turns the returning old master into a replica right after resuming it, so two masters last only between those two commands, with no client writing; Sentinel would convert it itself in about 8 s, and `MultipleMasters` waits 30 s. This run does not show the 8 s case.",
            met(one_page == runs.len() && two_masters == 0),
            runs.len(),
        );
        let end = summarize(&col(|r| r.agent_completed)).map_or(f64::NAN, |s| s.p99);
        let part1 = summarize(&col(|r| r.switch_to_end)).map_or(f64::NAN, |s| s.p99);
        let part2 = summarize(&col(|r| r.end_to_completed)).map_or(f64::NAN, |s| s.p99);
        let _ = writeln!(
            o,
            "- The end, no target set: `FailoverCompleted` (warning, not a page) reaches the receiver with a p99 of {} ms after the first `+switch-master`: Sentinel's reconfiguration until `+failover-end` (part 1, p99 {} ms) and the agent's own part at the end (part 2, p99 {} ms).",
            fmt_ms(end),
            fmt_ms(part1),
            fmt_ms(part2),
        );
        let p99c = sc.map_or(f64::INFINITY, |s| s.p99);
        let _ = writeln!(
            o,
            "- (c), no target set: p99 {} ms from `+odown` to `FailoverStarted` at the receiver.\n",
            fmt_ms(p99c)
        );
    }

    /// Critical notifications per failover, by alertname.
    fn pages_table(&self, o: &mut String) {
        let runs = &self.failovers;
        let mut names: Vec<&String> = runs.iter().flat_map(|r| r.pages.keys()).collect();
        names.sort();
        names.dedup();
        let _ = writeln!(
            o,
            "Pages: the critical notifications (`status` firing, `severity=critical`) the receiver got per failover, from its freeze to the next failover's (the last one's: until the group was steady again), by alertname.\n"
        );
        o.push_str("| critical alertname | failovers with it | per failover: min | max | total |\n|---|---|---|---|---|\n");
        if names.is_empty() {
            o.push_str("| (none) | 0 | 0 | 0 | 0 |\n");
        }
        // One row: failovers with any, then min, max and total per failover.
        let row = |o: &mut String, label: &str, counts: &[usize]| {
            let _ = writeln!(
                o,
                "| {label} | {} of {} | {} | {} | {} |",
                counts.iter().filter(|&&n| n > 0).count(),
                runs.len(),
                counts.iter().min().unwrap_or(&0),
                counts.iter().max().unwrap_or(&0),
                counts.iter().sum::<usize>(),
            );
        };
        for name in names {
            let counts: Vec<usize> = runs
                .iter()
                .map(|r| r.pages.get(name).copied().unwrap_or(0))
                .collect();
            row(o, &format!("`{name}`"), &counts);
        }
        let totals: Vec<usize> = runs.iter().map(|r| r.pages.values().sum()).collect();
        row(o, "all critical", &totals);
        o.push('\n');
    }

    fn scrape_section(&self, o: &mut String) {
        let _ = writeln!(o, "### 2. Scrape latency\n");
        if self.scrapes.is_empty() {
            o.push_str("Not run.\n\n");
            return;
        }
        let _ = writeln!(
            o,
            "Agent: `GET /metrics` on a kept-alive connection, one every 10 ms (so many scrapes meet a snapshot not rendered yet, as a Prometheus scrape does), each followed by two controls on the same connection: the same `GET /metrics` again (its body cached by then, unless a new snapshot came in between: the transfer without the render), and `GET /-/healthy` (nothing rendered or sent: what the machine and the HTTP stack alone cost). Peer: one `GET /scrape?target=redis://host:port` per node and sentinel of the same setup on one redis_exporter, all at once (Prometheus scrapes targets in parallel), timed until the last answers; back to back, for up to {} rounds ({} frozen) or {} s ({} s frozen), whichever ends first. redis_exporter runs with `-connection-timeout={}` (the agent's `timeout`; its default is 15 s). Frozen: one cluster replica SIGSTOPped. Times in ms.\n",
            self.peer_rounds.0,
            self.peer_rounds.1,
            self.peer_seconds,
            self.peer_seconds / 2,
            crate::peer::EXPORTER_TIMEOUT
        );
        o.push_str("| setup | scraper | n | median | p99 | min | max | body |\n|---|---|---|---|---|---|---|---|\n");
        for s in &self.scrapes {
            let rows = [
                (
                    "agent `/metrics`".to_string(),
                    &s.ours,
                    format!("{} kB", s.ours_bytes / 1000),
                ),
                (
                    "control: `/metrics` again (cached body)".to_string(),
                    &s.ours_cached,
                    String::new(),
                ),
                (
                    "control: agent `/-/healthy`".to_string(),
                    &s.ours_healthy,
                    String::new(),
                ),
                (
                    format!("peer, {} targets at once", s.targets),
                    &s.peer,
                    format!("{} kB{}", s.peer_bytes / 1000, errors(s.peer_errors)),
                ),
                (
                    "agent `/metrics`, node frozen".to_string(),
                    &s.ours_frozen,
                    String::new(),
                ),
                (
                    "control: `/metrics` again, node frozen".to_string(),
                    &s.ours_frozen_cached,
                    String::new(),
                ),
                (
                    "control: agent `/-/healthy`, node frozen".to_string(),
                    &s.ours_frozen_healthy,
                    String::new(),
                ),
                (
                    format!("peer, {} targets at once, node frozen", s.targets),
                    &s.peer_frozen,
                    errors(s.peer_frozen_errors)
                        .trim_start_matches(", ")
                        .to_string(),
                ),
            ];
            for (who, values, extra) in rows {
                if let Some(x) = summarize(values) {
                    let _ = writeln!(
                        o,
                        "| {} | {who} | {} | {} | {} | {} | {} | {extra} |",
                        s.setup,
                        x.n,
                        fmt_ms(x.median),
                        fmt_ms(x.p99),
                        fmt_ms(x.min),
                        fmt_ms(x.max)
                    );
                }
            }
        }
        o.push('\n');
        for s in &self.scrapes {
            let (Some(ours), Some(peer), Some(of), Some(pf)) = (
                summarize(&s.ours),
                summarize(&s.peer),
                summarize(&s.ours_frozen),
                summarize(&s.peer_frozen),
            ) else {
                continue;
            };
            // "Unchanged" allows the noise of a shared machine: 1 ms, 2x, or
            // as much as the control (which renders nothing) moved itself.
            let control = summarize(&s.ours_healthy).map_or(f64::NAN, |c| c.p99);
            let control_frozen = summarize(&s.ours_frozen_healthy).map_or(f64::NAN, |c| c.p99);
            let shift = (control_frozen - control).max(0.0);
            let unchanged = of.p99 <= ours.p99 + ours.p99.max(0.001).max(shift);
            let fast = ours.p99 < 0.005 && of.p99 < 0.005;
            let _ = writeln!(
                o,
                "- {}: peer/agent {} at the median and {} at p99; frozen {} and {}. **Target p99 under 5 ms: {}** ({} ms, frozen {} ms; the control `/-/healthy` {} ms, frozen {} ms); **unchanged by the frozen node: {}** (median {} → {} ms; p99 within 2x, 1 ms, or the control's own shift); the peer's p99 went from {} ms to {} ms, its timeout being {}.",
                s.setup,
                ratio(Some(peer.median), Some(ours.median)),
                ratio(Some(peer.p99), Some(ours.p99)),
                ratio(Some(pf.median), Some(of.median)),
                ratio(Some(pf.p99), Some(of.p99)),
                met(fast),
                fmt_ms(ours.p99),
                fmt_ms(of.p99),
                fmt_ms(control),
                fmt_ms(control_frozen),
                met(unchanged),
                fmt_ms(ours.median),
                fmt_ms(of.median),
                fmt_ms(peer.p99),
                fmt_ms(pf.p99),
                crate::peer::EXPORTER_TIMEOUT
            );
        }
        o.push('\n');
    }

    fn cost_section(&self, o: &mut String) {
        let _ = writeln!(o, "### 3. Cost per node\n");
        if self.costs.is_empty() {
            o.push_str("Not run.\n\n");
            return;
        }
        let seconds = self.costs[0].1.seconds;
        let _ = writeln!(
            o,
            "Over {seconds:.0} s: the agent polls every target once a second; the peer's redis_exporter is scraped once a second for every target (a multi-target round) at the same time. CPU: utime + stime from `/proc/<pid>/stat` (10 ms ticks) over the window divided by the polls (targets x seconds); in brackets the min-max over its 10 s parts. RSS: `VmRSS` at the end (peak `VmHWM`). Redis's own CPU is not counted in either; the last column shows what the topology's servers used meanwhile (cores), for context.\n"
        );
        o.push_str("| topology | targets | agent CPU per node poll | agent RSS (peak) | peer CPU per node scrape | peer RSS (peak) | peer/agent CPU | Redis servers |\n|---|---|---|---|---|---|---|---|\n");
        for (name, c) in &self.costs {
            let _ = writeln!(
                o,
                "| {name} | {} | {} µs [{}-{}] | {} | {} µs [{}-{}] | {} | {} | {:.2} cores |",
                c.targets,
                fmt_us(c.agent.per_op),
                fmt_us(c.agent.per_op_windows.min),
                fmt_us(c.agent.per_op_windows.max),
                fmt_mem(c.agent.rss, c.agent.peak_rss),
                fmt_us(c.peer.per_op),
                fmt_us(c.peer.per_op_windows.min),
                fmt_us(c.peer.per_op_windows.max),
                fmt_mem(c.peer.rss, c.peer.peak_rss),
                ratio(Some(c.peer.per_op), Some(c.agent.per_op)),
                c.redis_cores,
            );
        }
        o.push('\n');
        if let Some((name, c)) = self
            .costs
            .iter()
            .filter(|(_, c)| c.targets >= 30)
            .max_by_key(|(_, c)| c.targets)
        {
            let cpu_ok = c.agent.per_op < 100e-6;
            let mem_ok = c.agent.peak_rss < 30 * 1024 * 1024;
            let _ = writeln!(
                o,
                "- **Target under 100 µs CPU per node poll at 30+ nodes: {}** ({} µs at {name}). {}",
                met(cpu_ok),
                fmt_us(c.agent.per_op),
                if cpu_ok { "" } else { "See Findings for the profile." }
            );
            let _ = writeln!(
                o,
                "- **Target under 30 MB RSS at 30+ nodes: {}** ({} MB, peak {} MB).\n",
                met(mem_ok),
                fmt_mb(c.agent.rss),
                fmt_mb(c.agent.peak_rss)
            );
        } else {
            o.push_str("- No topology of 30+ nodes was measured: the targets at 30+ nodes are not assessed.\n\n");
        }
    }

    fn parsing_section(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "### 4. Parsing and rendering (`cargo bench --bench parse`)\n"
        );
        if self.parsing.is_empty() {
            o.push_str("Not run (no criterion output found).\n\n");
            return;
        }
        o.push_str("Criterion, generated Redis 7.0 replies (benches/parse.rs). Figures per node (per poll for `monitor_poll` and `monitor_failover`), over criterion's samples (each the mean of many iterations); in the last column the whole iteration.\n\n");
        o.push_str("| benchmark | nodes | per node: median | p99 | min | max | per iteration (median) |\n|---|---|---|---|---|---|---|\n");
        for r in &self.parsing {
            let e = r.per_element();
            let what = match r.group.as_str() {
                "info_replication" => "`ReplicationInfo::parse` (INFO replication of every node)",
                "cluster_nodes" => "`parse_nodes` (one CLUSTER NODES reply)",
                "render_metrics" => "`metrics::render` (/metrics body of the cluster)",
                "monitor_poll" => {
                    "`Monitor::apply` of a steady poll (same view, offsets moving), per poll"
                }
                "monitor_failover" => {
                    "`Monitor::apply` of a poll whose view changed mid-failover (the cluster-wide derivation runs), per poll"
                }
                "monitor_full" => "`Monitor::reference` (every view of a cluster mid-failover derived from scratch)",
                "cluster_findings" => "`views::cluster_findings` (the cluster checks after a derivation; a finding per shard)",
                other => other,
            };
            let _ = writeln!(
                o,
                "| {what} | {} | {} | {} | {} | {} | {} |",
                r.nodes,
                fmt_time(e.median),
                fmt_time(e.p99),
                fmt_time(e.min),
                fmt_time(e.max),
                fmt_time(r.per_iter.median)
            );
        }
        o.push('\n');
    }
}

fn row_ms(o: &mut String, label: &str, values: &[f64]) {
    match summarize(values) {
        Some(Summary {
            n,
            median,
            p99,
            min,
            max,
            ..
        }) => {
            let _ = writeln!(
                o,
                "| {label} | {n} | {} | {} | {} | {} |",
                fmt_ms(median),
                fmt_ms(p99),
                fmt_ms(min),
                fmt_ms(max)
            );
        }
        None => {
            let _ = writeln!(o, "| {label} | 0 | | | | |");
        }
    }
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "not met"
    }
}

fn errors(n: usize) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(", {n} target scrapes failed")
    }
}

fn ratio(num: Option<f64>, den: Option<f64>) -> String {
    match (num, den) {
        (Some(n), Some(d)) if d > 0.0 => {
            let r = n / d;
            if r >= 10.0 {
                format!("{r:.0}x")
            } else {
                format!("{r:.2}x")
            }
        }
        _ => "n/a".to_string(),
    }
}

/// Three significant digits.
fn sig3(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn fmt_ms(seconds: f64) -> String {
    sig3(seconds * 1e3)
}

fn fmt_us(seconds: f64) -> String {
    sig3(seconds * 1e6)
}

fn fmt_mb(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1048576.0)
}

fn fmt_mem(rss: u64, peak: u64) -> String {
    format!("{} MB ({})", fmt_mb(rss), fmt_mb(peak))
}

fn fmt_time(seconds: f64) -> String {
    let a = seconds.abs();
    if a < 1e-6 {
        format!("{} ns", sig3(seconds * 1e9))
    } else if a < 1e-3 {
        format!("{} µs", sig3(seconds * 1e6))
    } else if a < 1.0 {
        format!("{} ms", sig3(seconds * 1e3))
    } else {
        format!("{} s", sig3(seconds))
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn os_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_default()
}

/// redis_exporter prints its version in a log line.
fn exporter_version() -> String {
    let line = crate::procs::version_line(crate::peer::EXPORTER, &["-version"]);
    let version = line
        .split("msg=\"")
        .nth(1)
        .map(|m| {
            m.split("    ")
                .next()
                .unwrap_or(m)
                .trim_end_matches('"')
                .to_string()
        })
        .unwrap_or(line);
    format!("{version} (`{}`, Debian package)", crate::peer::EXPORTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_formatted() {
        assert_eq!(fmt_ms(0.001234), "1.23");
        assert_eq!(fmt_ms(1.5), "1500");
        assert_eq!(fmt_us(0.0000456), "45.6");
        assert_eq!(fmt_time(2.5e-8), "25.0 ns");
        assert_eq!(ratio(Some(10.0), Some(4.0)), "2.50x");
        assert_eq!(ratio(Some(600.0), Some(2.0)), "300x");
        assert_eq!(ratio(Some(1.0), Some(0.0)), "n/a");
    }

    #[test]
    fn the_results_section_is_replaced_in_place() {
        let path = std::env::temp_dir().join(format!("bench-report-{}.md", std::process::id()));
        std::fs::write(
            &path,
            format!("# B\n\nintro\n\n{BEGIN}\nold\n{END}\n\n## Findings\n"),
        )
        .unwrap();
        let report = Report::new("scripts/bench", Path::new("/bin/true"));
        report.write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(text.starts_with("# B\n\nintro\n\n"));
        assert!(text.ends_with(&format!("{END}\n\n## Findings\n")));
        assert!(!text.contains("\nold\n"));
        assert!(text.contains("### 1. Failover to page"));
    }
}
