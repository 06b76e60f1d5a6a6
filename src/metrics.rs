//! Snapshot to Prometheus text format.
//!
//! Families are built afresh from each snapshot, so a node, shard or
//! sentinel that left the topology has no series at all: nothing lingers at
//! its last value. [`FAMILIES`] is the one list of names, types, labels and
//! help; docs/metrics.md is checked against it and against /metrics.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use std::fmt::Write;
use std::hash::BuildHasherDefault;

use prometheus::proto::MetricType;

use crate::model::histogram::Histogram;
use crate::model::snapshot::{DeploymentView, FailoverView, OpenState, ShardView, Snapshot};
use crate::model::timeline::{phase_names, Outcome, Timeline};
use crate::model::write_errors::WriteErrors;
use crate::notify::EndpointStats;
use crate::parse::info::Role;
use crate::slots::SLOTS;
use crate::util::hash::Fast;

/// One metric family's contract.
#[derive(Debug)]
pub struct FamilyDef {
    /// Full name, `redis_ha_` prefixed.
    pub name: &'static str,
    /// Gauge or counter.
    pub kind: MetricType,
    /// Label names; `node|sentinel` means one of the two.
    pub labels: &'static str,
    /// The HELP text.
    pub help: &'static str,
}

const fn def(
    name: &'static str,
    kind: MetricType,
    labels: &'static str,
    help: &'static str,
) -> FamilyDef {
    FamilyDef {
        name,
        kind,
        labels,
        help,
    }
}

use MetricType::{COUNTER, GAUGE, HISTOGRAM};

/// Every family the agent serves.
pub const FAMILIES: &[FamilyDef] = &[
    def("redis_ha_build_info", GAUGE, "version", "Always 1; the agent's version."),
    def("redis_ha_target_up", GAUGE, "deployment, node|sentinel", "1 if the last poll of this target succeeded."),
    def("redis_ha_target_poll_duration_seconds", GAUGE, "deployment, node|sentinel", "How long the last poll of this target took."),
    def("redis_ha_target_poll_failures_total", COUNTER, "deployment, node|sentinel", "Polls of this target that failed or timed out."),
    def("redis_ha_target_last_poll_timestamp_seconds", GAUGE, "deployment, node|sentinel", "When the last poll of this target finished (unix time)."),
    def("redis_ha_sentinel_subscription_up", GAUGE, "deployment, sentinel", "1 while the event subscription to this sentinel is live."),
    def("redis_ha_node_role", GAUGE, "deployment, shard, node, role", "1 for the role the node reports, 0 for the other."),
    def("redis_ha_replica_lag_bytes", GAUGE, "deployment, shard, node", "The master's replication offset minus this replica's."),
    def("redis_ha_replica_lag_seconds", GAUGE, "deployment, shard, node", "Age of the oldest write the replica has not received (0 when caught up)."),
    def("redis_ha_replica_ack_age_seconds", GAUGE, "deployment, shard, node", "Seconds since the replica's last ACK, as its master reports it."),
    def("redis_ha_replica_link_up", GAUGE, "deployment, shard, node", "1 if the replica reports its link to the master up."),
    def("redis_ha_replica_link_down_seconds", GAUGE, "deployment, shard, node", "Seconds the replica's link to its master has been down (0 while up)."),
    def("redis_ha_replica_sync_in_progress", GAUGE, "deployment, shard, node", "1 while the replica runs a full sync."),
    def("redis_ha_master_repl_offset_bytes", GAUGE, "deployment, shard", "The shard master's replication offset; its rate is the write rate."),
    def("redis_ha_shard_masters", GAUGE, "deployment, shard", "Reachable nodes of the shard that report role master: 1 healthy, 0 none, more is split brain."),
    def("redis_ha_shard_two_masters_writes", GAUGE, "deployment, shard", "While more than one node of the shard reports role master: write commands the ones other than the shard's master took since they were seen so (absent otherwise, or when not read)."),
    def("redis_ha_shard_two_masters_written_bytes", GAUGE, "deployment, shard", "While more than one node of the shard reports role master: bytes their replication offsets moved since the switch (writes plus sentinels' hello messages; absent otherwise)."),
    def("redis_ha_shard_replicas_healthy", GAUGE, "deployment, shard", "Replicas of the shard whose link to the master is up."),
    def("redis_ha_sentinel_master_info", GAUGE, "deployment, shard, node", "1 for the master address the reachable sentinels agree on."),
    def("redis_ha_sentinel_quorum", GAUGE, "deployment, shard", "The configured quorum."),
    def("redis_ha_sentinel_sentinels_reachable", GAUGE, "deployment, shard", "Sentinels watching this master that the agent can reach."),
    def("redis_ha_sentinel_quorum_ok", GAUGE, "deployment, shard", "1 if SENTINEL CKQUORUM succeeds on every reachable sentinel."),
    def("redis_ha_sentinel_agreement", GAUGE, "deployment, shard", "1 if every reachable sentinel names the same master and config epoch."),
    def("redis_ha_sentinel_config_epoch", GAUGE, "deployment, shard", "The highest config epoch the sentinels report."),
    def("redis_ha_sentinel_tilt", GAUGE, "deployment, sentinel", "1 while the sentinel is in TILT mode."),
    def("redis_ha_sentinel_master_down", GAUGE, "deployment, shard, state", "state=sdown: sentinels that see the master down; state=odown: 1 if objectively down."),
    def("redis_ha_cluster_state_ok", GAUGE, "deployment", "1 if a majority of reachable nodes report cluster_state:ok."),
    def("redis_ha_cluster_slots", GAUGE, "deployment, state", "Slots by state: assigned, ok, pfail, fail from the majority CLUSTER INFO; uncovered (no master, or a master in fail) from the merged slot map."),
    def("redis_ha_cluster_known_nodes", GAUGE, "deployment", "cluster_known_nodes of the majority view."),
    def("redis_ha_cluster_current_epoch", GAUGE, "deployment", "The highest current epoch a node reports."),
    def("redis_ha_cluster_node_failing", GAUGE, "deployment, node, state", "state=pfail: nodes that flag it fail?; state=fail: 1 if any node flags it fail."),
    def("redis_ha_cluster_slot_coverage_ratio", GAUGE, "deployment", "Slots served by a master not in fail, over 16384."),
    def("redis_ha_cluster_uncovered_ranges", GAUGE, "deployment", "Contiguous ranges of slots with no master or a master in fail."),
    def("redis_ha_cluster_shard_slots", GAUGE, "deployment, shard", "Slots the shard owns in the merged slot map."),
    def("redis_ha_cluster_hot_slot_keys", GAUGE, "deployment, shard, slot", "Keys in each of the cluster's slots with the most keys (at most findings.hot_slots per cluster), where the masters have CLUSTER SLOT-STATS (Valkey 8+, Redis 8.2+)."),
    def("redis_ha_cluster_shard_slot_skew", GAUGE, "deployment, shard", "How many times an average slot of the shard its slot with the most keys holds (1: keys spread evenly); where the master has CLUSTER SLOT-STATS."),
    def("redis_ha_cluster_open_slots", GAUGE, "deployment, state", "Slots in migration: state=migrating or importing, as the nodes doing it report."),
    def("redis_ha_cluster_config_consistent", GAUGE, "deployment", "1 if every answering node holds the same slot map."),
    def("redis_ha_cluster_config_views", GAUGE, "deployment", "Distinct slot maps among the answering nodes."),
    def("redis_ha_cluster_shards_without_replica", GAUGE, "deployment", "Shards owning slots with no replica whose link is up."),
    def("redis_ha_cluster_shards_same_host", GAUGE, "deployment", "Shards with replicas whose master and every replica share one host."),
    def("redis_ha_sentinel_events_total", COUNTER, "deployment, shard, event", "Sentinel events, counted once per event however many sentinels publish it."),
    def("redis_ha_failover_in_progress", GAUGE, "deployment, shard", "1 from the first sign of failure until the failover ends."),
    def("redis_ha_failovers_total", COUNTER, "deployment, shard, outcome", "Failovers ended since the agent started, by outcome (completed, aborted, timed_out)."),
    def("redis_ha_failover_phase_seconds", HISTOGRAM, "deployment, kind, phase", "Duration of each phase of completed failovers."),
    def("redis_ha_failover_last_end_timestamp_seconds", GAUGE, "deployment, shard", "When the shard's last failover ended (unix time)."),
    def("redis_ha_failover_last_switch_timestamp_seconds", GAUGE, "deployment, shard", "When the shard's latest failover switched to a new master (unix time): a sentinel's first +switch-master, a cluster's promotion."),
    def("redis_ha_failover_last_duration_seconds", GAUGE, "deployment, shard", "Total duration of the shard's last failover."),
    def("redis_ha_failover_unreplicated_bytes", GAUGE, "deployment, shard", "At the shard's last failover: the old master's offset minus the promoted replica's (writes at risk)."),
    def("redis_ha_failover_clients_left_behind", GAUGE, "deployment, shard", "Application connections still open on the old master of the shard's latest failover some seconds after the switch (docs/findings.md; absent until read, or when it could not be read)."),
    def("redis_ha_canary_up", GAUGE, "deployment, shard", "1 if the canary's last write to the shard was acknowledged."),
    def("redis_ha_canary_write_latency_seconds", HISTOGRAM, "deployment, shard", "Round trip of the canary's acknowledged writes."),
    def("redis_ha_canary_write_unavailable_seconds", HISTOGRAM, "deployment, shard", "Time without an acknowledged canary write, per episode: from the last acknowledged write before writes failed to the first after."),
    def("redis_ha_canary_lost_writes_total", COUNTER, "deployment, shard", "Canary writes a node acknowledged that the node written to next did not hold."),
    def("redis_ha_alerts_firing", GAUGE, "alertname, severity", "Alerts of the agent's built-in rules firing now."),
    def("redis_ha_finding", GAUGE, "deployment, shard, node, check, severity", "1 for each finding about the setup now (docs/findings.md); shard and node empty when it is about none."),
    def("redis_ha_finding_unknown", GAUGE, "deployment, node, check", "1 for each check that cannot tell on a node: the agent's user may not read what it needs (docs/security.md)."),
    def("redis_ha_webhook_deliveries_total", COUNTER, "receiver, endpoint, result", "Notification deliveries by result: delivered, retried (an attempt failed, it will be retried), refused (the receiver answered 4xx: given up), dropped (the queue was full)."),
    def("redis_ha_webhook_queue_length", GAUGE, "receiver, endpoint", "Notifications waiting to be delivered to this receiver URL."),
    def("redis_ha_state_write_errors_total", COUNTER, "file", "Writes of the agent's state files that failed (a full disk, a read-only file system), by file: timelines, delivery_queue, firing_alerts. What could not be written is kept in memory and lost at a restart."),
];

/// Where the render functions put samples: the text writer below, and in
/// the tests the crate's own encoder, which the text must equal.
trait Out {
    /// One gauge or counter sample (the family's kind says which).
    fn add(&mut self, name: &'static str, labels: &[(&str, &str)], value: f64);
    /// One histogram: its buckets (cumulative), sum and count.
    fn histogram(&mut self, name: &'static str, labels: &[(&str, &str)], h: &Histogram);
}

/// Writes the text format directly, one buffer per family, joined in
/// [`FAMILIES`] order. A 1000-node cluster has about 15,000 samples: going
/// through the crate's protobuf families (a heap string per label, a
/// message per sample) took 10 ms a render; writing the lines takes a
/// fraction of that, and the output is the same byte for byte (tested).
struct Text {
    index: HashMap<&'static str, usize, BuildHasherDefault<Fast>>,
    bodies: Vec<String>,
}

impl Text {
    fn new() -> Self {
        let index = FAMILIES
            .iter()
            .enumerate()
            .map(|(i, d)| (d.name, i))
            .collect();
        Text {
            index,
            bodies: vec![String::new(); FAMILIES.len()],
        }
    }

    /// The headers and samples of every family that has a sample.
    fn finish(self) -> String {
        let size = self.bodies.iter().map(String::len).sum::<usize>();
        let mut text = String::with_capacity(size + 200 * FAMILIES.len());
        for (d, body) in FAMILIES.iter().zip(&self.bodies) {
            if body.is_empty() {
                continue;
            }
            text.push_str("# HELP ");
            text.push_str(d.name);
            text.push(' ');
            escape(&mut text, d.help, false);
            text.push_str("\n# TYPE ");
            text.push_str(d.name);
            text.push_str(match d.kind {
                COUNTER => " counter\n",
                HISTOGRAM => " histogram\n",
                _ => " gauge\n",
            });
            text.push_str(body);
        }
        text
    }
}

impl Out for Text {
    fn add(&mut self, name: &'static str, labels: &[(&str, &str)], value: f64) {
        let body = &mut self.bodies[self.index[name]];
        sample(body, name, "", labels, None, value);
    }

    fn histogram(&mut self, name: &'static str, labels: &[(&str, &str)], h: &Histogram) {
        let body = &mut self.bodies[self.index[name]];
        let mut le = String::new();
        for (bound, n) in h.bounds.iter().zip(h.cumulative()) {
            le.clear();
            let _ = write!(le, "{bound}");
            sample(body, name, "_bucket", labels, Some(&le), n as f64);
        }
        if !h.bounds.last().is_some_and(|b| *b == f64::INFINITY) {
            sample(body, name, "_bucket", labels, Some("+Inf"), h.count as f64);
        }
        sample(body, name, "_sum", labels, None, h.sum);
        sample(body, name, "_count", labels, None, h.count as f64);
    }
}

/// One sample line: `name{labels} value`, `le` last when given.
fn sample(
    body: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(&str, &str)],
    le: Option<&str>,
    value: f64,
) {
    body.push_str(name);
    body.push_str(suffix);
    let mut separator = '{';
    for (k, v) in labels.iter().chain(le.map(|le| ("le", le)).as_ref()) {
        body.push(separator);
        body.push_str(k);
        body.push_str("=\"");
        escape(body, v, true);
        body.push('"');
        separator = ',';
    }
    if separator == ',' {
        body.push('}');
    }
    // Most values are counts and flags: an integer prints as f64's Display
    // would print it (no fraction, no exponent below 1e16), cheaper.
    if value.fract() == 0.0 && value.abs() < 1e15 && !(value == 0.0 && value.is_sign_negative()) {
        let _ = writeln!(body, " {}", value as i64);
    } else {
        let _ = writeln!(body, " {value}");
    }
}

/// Appends `v` escaped as the text format wants: backslash and newline
/// always, the double quote inside label values.
fn escape(out: &mut String, v: &str, quote: bool) {
    if !v
        .bytes()
        .any(|b| b == b'\\' || b == b'\n' || (quote && b == b'"'))
    {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// Renders a snapshot as the /metrics body (without the delivery counters:
/// [`render_live`]).
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = Text::new();
    out.add(
        "redis_ha_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    for d in &snapshot.deployments {
        deployment(&mut out, d);
        failovers(&mut out, d, &snapshot.failovers);
        canaries(&mut out, d);
        for f in d.findings.iter() {
            out.add(
                "redis_ha_finding",
                &[
                    ("deployment", &d.name),
                    ("shard", f.shard.as_deref().unwrap_or("")),
                    ("node", f.node.as_deref().unwrap_or("")),
                    ("check", f.check.as_str()),
                    ("severity", f.severity.as_str()),
                ],
                1.0,
            );
        }
        for u in d.findings_unknown.iter() {
            for check in &u.checks {
                out.add(
                    "redis_ha_finding_unknown",
                    &[
                        ("deployment", &d.name),
                        ("node", &u.node),
                        ("check", check.as_str()),
                    ],
                    1.0,
                );
            }
        }
    }
    for (rule, severity) in &snapshot.alerts.rules {
        let n = snapshot
            .alerts
            .firing
            .iter()
            .filter(|a| a.rule == *rule)
            .count();
        out.add(
            "redis_ha_alerts_firing",
            &[
                ("alertname", rule.to_string().as_str()),
                ("severity", severity.as_str()),
            ],
            n as f64,
        );
    }
    out.finish()
}

/// Renders the delivery counters of every receiver URL and the failed
/// writes of state files: live counters, read at each scrape (the rest of
/// the body is rendered once per snapshot).
pub fn render_live(deliveries: &[Arc<EndpointStats>], write_errors: &WriteErrors) -> String {
    let mut out = Text::new();
    for (file, n) in write_errors.by_file() {
        out.add(
            "redis_ha_state_write_errors_total",
            &[("file", file)],
            n as f64,
        );
    }
    for e in deliveries {
        let endpoint = [("receiver", &*e.receiver), ("endpoint", &*e.endpoint)];
        for (result, n) in [
            ("delivered", &e.delivered),
            ("retried", &e.retried),
            ("refused", &e.refused),
            ("dropped", &e.dropped),
        ] {
            out.add(
                "redis_ha_webhook_deliveries_total",
                &[endpoint[0], endpoint[1], ("result", result)],
                n.load(Ordering::Relaxed) as f64,
            );
        }
        out.add(
            "redis_ha_webhook_queue_length",
            &endpoint,
            e.queued.load(Ordering::Relaxed) as f64,
        );
    }
    out.finish()
}

fn deployment(out: &mut dyn Out, d: &DeploymentView) {
    let dep = &*d.name;
    for t in d.targets.iter().filter(|t| t.exported && t.polled) {
        let labels = [("deployment", dep), (t.id.kind.label(), t.id.addr.as_str())];
        out.add("redis_ha_target_up", &labels, flag(t.up));
        out.add(
            "redis_ha_target_poll_failures_total",
            &labels,
            t.failures as f64,
        );
        if let Some(dur) = t.last_duration {
            out.add(
                "redis_ha_target_poll_duration_seconds",
                &labels,
                dur.as_secs_f64(),
            );
        }
        if let Some(at) = t
            .last_poll
            .and_then(|a| a.duration_since(std::time::UNIX_EPOCH).ok())
        {
            out.add(
                "redis_ha_target_last_poll_timestamp_seconds",
                &labels,
                at.as_secs_f64(),
            );
        }
        if let Some(tilt) = t.tilt {
            out.add("redis_ha_sentinel_tilt", &labels, flag(tilt));
        }
    }
    for (sentinel, up) in d.subscriptions.iter() {
        out.add(
            "redis_ha_sentinel_subscription_up",
            &[("deployment", dep), ("sentinel", sentinel.as_str())],
            flag(*up),
        );
    }
    for (shard, event, n) in d.events_total.iter() {
        out.add(
            "redis_ha_sentinel_events_total",
            &[
                ("deployment", dep),
                ("shard", shard.as_str()),
                ("event", event.as_str()),
            ],
            *n as f64,
        );
    }
    for s in d.shards.iter() {
        shard(out, dep, s);
    }
    if let Some(c) = &d.cluster {
        let labels = [("deployment", dep)];
        out.add("redis_ha_cluster_state_ok", &labels, flag(c.state_ok));
        out.add(
            "redis_ha_cluster_current_epoch",
            &labels,
            c.current_epoch as f64,
        );
        if let Some(m) = &c.majority {
            out.add(
                "redis_ha_cluster_known_nodes",
                &labels,
                f64::from(m.known_nodes),
            );
            for (state, n) in [
                ("assigned", m.slots_assigned),
                ("ok", m.slots_ok),
                ("pfail", m.slots_pfail),
                ("fail", m.slots_fail),
            ] {
                out.add(
                    "redis_ha_cluster_slots",
                    &[("deployment", dep), ("state", state)],
                    f64::from(n),
                );
            }
        }
        if let Some(sv) = &c.slots {
            out.add(
                "redis_ha_cluster_slots",
                &[("deployment", dep), ("state", "uncovered")],
                f64::from(sv.uncovered),
            );
            let covered = SLOTS as f64 - f64::from(sv.uncovered);
            out.add(
                "redis_ha_cluster_slot_coverage_ratio",
                &labels,
                covered / SLOTS as f64,
            );
            out.add(
                "redis_ha_cluster_uncovered_ranges",
                &labels,
                f64::from(sv.uncovered_ranges),
            );
            for shard in d.shards.iter() {
                let n = sv.served(&shard.name).unwrap_or(0);
                out.add(
                    "redis_ha_cluster_shard_slots",
                    &[("deployment", dep), ("shard", shard.name.as_str())],
                    f64::from(n),
                );
            }
            for h in &d.hot_slots.top {
                out.add(
                    "redis_ha_cluster_hot_slot_keys",
                    &[
                        ("deployment", dep),
                        ("shard", &h.shard),
                        ("slot", &h.slot.to_string()),
                    ],
                    h.keys as f64,
                );
            }
            for (shard, skew) in &d.hot_slots.skews {
                out.add(
                    "redis_ha_cluster_shard_slot_skew",
                    &[("deployment", dep), ("shard", shard)],
                    skew.skew,
                );
            }
            for state in [OpenState::Migrating, OpenState::Importing] {
                let slots: BTreeSet<u16> = sv
                    .open
                    .iter()
                    .filter(|o| o.state == state)
                    .map(|o| o.slot)
                    .collect();
                out.add(
                    "redis_ha_cluster_open_slots",
                    &[("deployment", dep), ("state", state.as_str())],
                    slots.len() as f64,
                );
            }
            out.add(
                "redis_ha_cluster_config_consistent",
                &labels,
                flag(sv.config_views <= 1),
            );
            out.add(
                "redis_ha_cluster_config_views",
                &labels,
                f64::from(sv.config_views),
            );
            out.add(
                "redis_ha_cluster_shards_without_replica",
                &labels,
                f64::from(sv.shards_without_replica),
            );
            out.add(
                "redis_ha_cluster_shards_same_host",
                &labels,
                f64::from(sv.shards_same_host),
            );
        }
        for f in &c.failing {
            let node = f.node.as_str();
            out.add(
                "redis_ha_cluster_node_failing",
                &[("deployment", dep), ("node", node), ("state", "pfail")],
                f64::from(f.pfail),
            );
            out.add(
                "redis_ha_cluster_node_failing",
                &[("deployment", dep), ("node", node), ("state", "fail")],
                flag(f.fail),
            );
        }
    }
}

fn shard(out: &mut dyn Out, dep: &str, s: &ShardView) {
    let name = s.name.as_str();
    let labels = [("deployment", dep), ("shard", name)];
    out.add("redis_ha_shard_masters", &labels, f64::from(s.masters));
    if let Some(w) = &s.two_masters {
        if let Some(writes) = w.writes {
            out.add("redis_ha_shard_two_masters_writes", &labels, writes as f64);
        }
        if let Some(bytes) = w.written_bytes {
            out.add(
                "redis_ha_shard_two_masters_written_bytes",
                &labels,
                bytes as f64,
            );
        }
    }
    out.add(
        "redis_ha_shard_replicas_healthy",
        &labels,
        f64::from(s.replicas_healthy),
    );
    if let Some(o) = s.master_offset {
        out.add("redis_ha_master_repl_offset_bytes", &labels, o as f64);
    }
    for n in &s.nodes {
        let node = [
            ("deployment", dep),
            ("shard", name),
            ("node", n.addr.as_str()),
        ];
        if let Some(role) = n.role {
            for r in [Role::Master, Role::Replica] {
                let l = [node[0], node[1], node[2], ("role", r.as_str())];
                out.add("redis_ha_node_role", &l, flag(role == r));
            }
        }
        let Some(rep) = &n.replica else { continue };
        if let Some(v) = rep.lag_bytes {
            out.add("redis_ha_replica_lag_bytes", &node, v as f64);
        }
        if let Some(v) = rep.lag_seconds {
            out.add("redis_ha_replica_lag_seconds", &node, v);
        }
        if let Some(v) = rep.ack_age_seconds {
            out.add("redis_ha_replica_ack_age_seconds", &node, v as f64);
        }
        if let Some(link) = &rep.link {
            out.add("redis_ha_replica_link_up", &node, flag(link.up));
            out.add(
                "redis_ha_replica_link_down_seconds",
                &node,
                link.down_seconds as f64,
            );
            out.add(
                "redis_ha_replica_sync_in_progress",
                &node,
                flag(link.sync_in_progress),
            );
        }
    }
    if let Some(sv) = &s.sentinel {
        if let Some(addr) = &sv.master_addr {
            out.add(
                "redis_ha_sentinel_master_info",
                &[labels[0], labels[1], ("node", addr.as_str())],
                1.0,
            );
        }
        out.add("redis_ha_sentinel_quorum", &labels, f64::from(sv.quorum));
        out.add(
            "redis_ha_sentinel_sentinels_reachable",
            &labels,
            f64::from(sv.reachable),
        );
        out.add("redis_ha_sentinel_quorum_ok", &labels, flag(sv.quorum_ok));
        out.add("redis_ha_sentinel_agreement", &labels, flag(sv.agreement));
        out.add(
            "redis_ha_sentinel_config_epoch",
            &labels,
            sv.config_epoch as f64,
        );
        out.add(
            "redis_ha_sentinel_master_down",
            &[labels[0], labels[1], ("state", "sdown")],
            f64::from(sv.sdown),
        );
        out.add(
            "redis_ha_sentinel_master_down",
            &[labels[0], labels[1], ("state", "odown")],
            flag(sv.odown),
        );
    }
}

/// The canary families of one deployment: every probed shard that
/// reported has all four, histograms empty until something is observed.
fn canaries(out: &mut dyn Out, d: &DeploymentView) {
    for c in d.canaries.iter() {
        let labels = [("deployment", &*d.name), ("shard", c.shard.as_str())];
        out.add("redis_ha_canary_up", &labels, flag(c.status.up));
        out.histogram("redis_ha_canary_write_latency_seconds", &labels, &c.latency);
        out.histogram(
            "redis_ha_canary_write_unavailable_seconds",
            &labels,
            &c.unavailable,
        );
        out.add(
            "redis_ha_canary_lost_writes_total",
            &labels,
            c.lost_writes as f64,
        );
    }
}

/// The failover families of one deployment: every shard gets its
/// in-progress gauge and a counter per outcome (0 until one happens), every
/// phase its histogram, so rates and quantiles work before the first failover.
fn failovers(out: &mut dyn Out, d: &DeploymentView, f: &FailoverView) {
    let dep = &*d.name;
    for s in d.shards.iter() {
        let labels = [("deployment", dep), ("shard", s.name.as_str())];
        out.add(
            "redis_ha_failover_in_progress",
            &labels,
            flag(s.failover_in_progress),
        );
        for outcome in Outcome::ALL {
            let n = f
                .totals
                .get(&(dep.to_string(), s.name.clone(), outcome))
                .copied()
                .unwrap_or(0);
            out.add(
                "redis_ha_failovers_total",
                &[labels[0], labels[1], ("outcome", outcome.as_str())],
                n as f64,
            );
        }
        let last: Option<&Timeline> = f
            .last_ended
            .get(&(dep.to_string(), s.name.clone()))
            .map(|i| &f.timelines[*i]);
        // The open failover's switch, else the last ended one's; open
        // timelines come first and are few, and only shards with one
        // look for it.
        let open = s
            .failover_in_progress
            .then(|| {
                f.timelines
                    .iter()
                    .take_while(|t| t.is_open())
                    .find(|t| *t.deployment == *dep && t.shard == s.name)
            })
            .flatten();
        let switch = open
            .and_then(Timeline::switch_seen)
            .or_else(|| last.and_then(Timeline::switch_seen));
        if let Some(at) = switch {
            out.add(
                "redis_ha_failover_last_switch_timestamp_seconds",
                &labels,
                at,
            );
        }
        let left = [open, last]
            .into_iter()
            .flatten()
            .find_map(|t| t.clients_left_behind.as_ref()?.counted());
        if let Some(count) = left {
            out.add(
                "redis_ha_failover_clients_left_behind",
                &labels,
                count as f64,
            );
        }
        if let Some(t) = last {
            if let Some(end) = t.ended() {
                out.add("redis_ha_failover_last_end_timestamp_seconds", &labels, end);
            }
            if let Some(secs) = t.duration() {
                out.add("redis_ha_failover_last_duration_seconds", &labels, secs);
            }
            if let Some(bytes) = t.unreplicated_bytes {
                out.add(
                    "redis_ha_failover_unreplicated_bytes",
                    &labels,
                    bytes as f64,
                );
            }
        }
    }
    let empty = Histogram::default();
    for phase in phase_names(d.kind) {
        let h = f
            .phases
            .get(&(dep.to_string(), d.kind, phase))
            .unwrap_or(&empty);
        out.histogram(
            "redis_ha_failover_phase_seconds",
            &[
                ("deployment", dep),
                ("kind", d.kind.as_str()),
                ("phase", phase.as_str()),
            ],
            h,
        );
    }
}

#[cfg(test)]
mod tests {
    use prometheus::proto::{
        Bucket, Counter, Gauge, Histogram as ProtoHistogram, LabelPair, Metric, MetricFamily,
    };
    use prometheus::TextEncoder;

    use super::*;

    /// The crate's protobuf families, encoded by its `TextEncoder`: what
    /// the agent rendered before writing the text itself.
    struct Proto(Vec<MetricFamily>);

    impl Proto {
        fn new() -> Self {
            Proto(
                FAMILIES
                    .iter()
                    .map(|d| {
                        let mut f = MetricFamily::default();
                        f.set_name(d.name.to_string());
                        f.set_help(d.help.to_string());
                        f.set_field_type(d.kind);
                        f
                    })
                    .collect(),
            )
        }

        fn family(&mut self, name: &str) -> &mut MetricFamily {
            let i = FAMILIES.iter().position(|d| d.name == name).unwrap();
            &mut self.0[i]
        }

        fn finish(self) -> String {
            let families: Vec<MetricFamily> = self
                .0
                .into_iter()
                .filter(|f| !f.get_metric().is_empty())
                .collect();
            let mut text = String::new();
            TextEncoder::new()
                .encode_utf8(&families, &mut text)
                .unwrap();
            text
        }
    }

    fn metric(labels: &[(&str, &str)]) -> Metric {
        let mut m = Metric::default();
        m.set_label(
            labels
                .iter()
                .map(|(k, v)| {
                    let mut l = LabelPair::default();
                    l.set_name(k.to_string());
                    l.set_value(v.to_string());
                    l
                })
                .collect(),
        );
        m
    }

    impl Out for Proto {
        fn add(&mut self, name: &'static str, labels: &[(&str, &str)], value: f64) {
            let f = self.family(name);
            let mut m = metric(labels);
            if f.get_field_type() == COUNTER {
                let mut c = Counter::default();
                c.set_value(value);
                m.set_counter(c);
            } else {
                let mut g = Gauge::default();
                g.set_value(value);
                m.set_gauge(g);
            }
            f.mut_metric().push(m);
        }

        fn histogram(&mut self, name: &'static str, labels: &[(&str, &str)], h: &Histogram) {
            let mut m = metric(labels);
            let mut p = ProtoHistogram::default();
            p.set_sample_count(h.count);
            p.set_sample_sum(h.sum);
            p.set_bucket(
                h.bounds
                    .iter()
                    .zip(h.cumulative())
                    .map(|(bound, n)| {
                        let mut b = Bucket::default();
                        b.set_upper_bound(*bound);
                        b.set_cumulative_count(n);
                        b
                    })
                    .collect(),
            );
            m.set_histogram(p);
            self.family(name).mut_metric().push(m);
        }
    }

    /// Feeds the same samples to both writers: every family, label values
    /// that need escaping, values of every shape, histograms empty and not.
    fn feed(out: &mut dyn Out) {
        const ODD: &[f64] = &[0.001, 0.25, 1.0, 2.5, f64::INFINITY];
        let values = [
            0.0,
            -0.0,
            1.0,
            0.1,
            1234567.0,
            1e21,
            1.5e-7,
            -3.25,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            16384.0,
            1.7e9 + 0.123,
        ];
        let labels = [
            "127.0.0.1:7000",
            "a\"quoted\"",
            "back\\slash",
            "new\nline",
            "all \\\"\n three",
            "ünïcode ✓",
            "",
        ];
        for (i, d) in FAMILIES.iter().enumerate() {
            if i % 7 == 6 {
                continue; // some families stay empty: no headers
            }
            let names: Vec<&str> = d
                .labels
                .split(", ")
                .filter(|l| !l.is_empty())
                .map(|l| l.split('|').next().unwrap())
                .collect();
            for (j, value) in values.iter().enumerate().skip(i % 3) {
                let set: Vec<(&str, &str)> = names
                    .iter()
                    .enumerate()
                    .map(|(k, n)| (*n, labels[(i + j + k) % labels.len()]))
                    .collect();
                if d.kind == HISTOGRAM {
                    let mut h = Histogram::new(if j % 2 == 0 { ODD } else { PHASE });
                    for v in values.iter().take(j) {
                        h.observe(v.abs().min(1e6));
                    }
                    out.histogram(d.name, &set, &h);
                } else {
                    out.add(d.name, &set, *value);
                }
            }
        }
    }

    use crate::model::histogram::PHASE_BUCKETS as PHASE;

    #[test]
    fn the_text_is_what_the_crates_encoder_writes() {
        let mut text = Text::new();
        feed(&mut text);
        let mut proto = Proto::new();
        feed(&mut proto);
        let (text, proto) = (text.finish(), proto.finish());
        assert!(proto.lines().count() > 500, "{proto}");
        for (a, b) in text.lines().zip(proto.lines()) {
            assert_eq!(a, b);
        }
        assert_eq!(text, proto);
    }

    #[test]
    fn an_empty_render_has_the_build_info_only() {
        let text = render(&Snapshot::default());
        assert_eq!(
            text,
            format!(
                "# HELP redis_ha_build_info Always 1; the agent's version.\n\
                 # TYPE redis_ha_build_info gauge\n\
                 redis_ha_build_info{{version=\"{}\"}} 1\n",
                env!("CARGO_PKG_VERSION")
            )
        );
    }
}
