//! Scenario 1, failover to page: freeze the master, time the page.
//!
//! The clock is the harness's own subscription to every sentinel
//! ([`crate::watch`]). Per failover:
//! - (a) first `+switch-master` → the agent's `FailoverSwitched` at the
//!   receiver (the page);
//! - (b) first `+switch-master` → the peer's alert firing on Prometheus's
//!   `/api/v1/alerts` (polled every 50 ms);
//! - (c) first `+odown` → the agent's `FailoverStarted` at the receiver;
//! - the end: first `+switch-master` → `FailoverCompleted` at the receiver,
//!   split into first `+switch-master` → the leader's `+failover-end`
//!   (Sentinel's own reconfiguration of the other replicas) and
//!   `+failover-end` → `FailoverCompleted` (the agent);
//! - the pages: the critical notifications (firing, `severity=critical`)
//!   the receiver got from the freeze to the next failover's freeze, by
//!   alertname.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use redis_ha_lab::{Reply, SentinelGroup};

use crate::peer::AlertWatch;
use crate::receiver::Receiver;
use crate::watch::EventLog;

/// The peer's rule: redis_exporter 1.45 exposes the master a sentinel names
/// only as the `master_address` label of `redis_sentinel_master_status`, so
/// a change is two addresses for one master name within a short window. The
/// inner count collapses the three exporters (one per sentinel) and the
/// `master_status` label. The window is 5 s, not 1 m, so the alert resolves
/// between failovers (each is timed from its own firing edge); the window
/// does not delay firing, which happens at the first evaluation after the
/// first scrape that shows the new address.
pub const PEER_ALERT: &str = "SentinelMasterChanged";
pub const PEER_RULES: &str = "groups:
  - name: peer
    interval: 1s
    rules:
      - alert: SentinelMasterChanged
        expr: count by (master_name) (count by (master_name, master_address) (last_over_time(redis_sentinel_master_status[5s]))) > 1
";

/// The figures of one failover, in seconds (`None`: not seen in time).
#[derive(Debug, Clone, Default)]
pub struct FailoverRun {
    /// (a) first `+switch-master` → `FailoverSwitched` at the receiver.
    pub agent_page: Option<f64>,
    /// (b) first `+switch-master` → the peer's alert firing.
    pub peer_page: Option<f64>,
    /// (c) first `+odown` → `FailoverStarted` at the receiver.
    pub agent_started: Option<f64>,
    /// First `+switch-master` → `FailoverCompleted` at the receiver.
    pub agent_completed: Option<f64>,
    /// First `+switch-master` → the leader's `+failover-end`.
    pub switch_to_end: Option<f64>,
    /// `+failover-end` → `FailoverCompleted` at the receiver.
    pub end_to_completed: Option<f64>,
    /// Critical notifications (firing) from this failover's freeze to the
    /// next one's (the last: to the group being steady again), by alertname.
    pub pages: BTreeMap<String, usize>,
    /// The first `+switch-master` came from a sentinel other than the leader
    /// (the one publishing `+failover-end`).
    pub first_switch_not_leader: bool,
    /// Freeze to the first `+switch-master`.
    pub freeze_to_switch: Option<f64>,
}

/// How long to wait for each output of a failover.
const WAIT: Duration = Duration::from_secs(40);

pub fn run(
    group: &SentinelGroup,
    receiver: &Receiver,
    events: &EventLog,
    peer: &AlertWatch,
    count: usize,
) -> Vec<FailoverRun> {
    let mut runs = Vec::with_capacity(count);
    let mut starts = Vec::with_capacity(count);
    for i in 0..count {
        wait_steady(group, peer);
        let old = group.master_port().expect("a sentinel names the master");
        let t0 = Instant::now();
        starts.push(t0);
        group.node(old).freeze();
        let new = group.wait_for_new_master(old, Duration::from_secs(60));
        group.node(old).resume();
        // What Sentinel does itself once the old master has reported role
        // master for 8 s (seen at its INFO of it): make it a replica of the
        // new master. Done now so the next failover starts sooner; it also
        // cuts the two-masters window to the time between these two
        // commands, so `MultipleMasters` (30 s) cannot show here.
        let _ = group
            .node(old)
            .cmd(&["REPLICAOF", "127.0.0.1", &new.to_string()]);
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline
            && !(receiver.first_firing("FailoverSwitched", t0).is_some()
                && receiver.first_firing("FailoverCompleted", t0).is_some()
                && peer.fired_after(t0).is_some())
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let switch = events.first("+switch-master", t0);
        let odown = events.first("+odown", t0);
        let end = events.first("+failover-end", t0);
        let switched = receiver.first_firing("FailoverSwitched", t0);
        let completed = receiver.first_firing("FailoverCompleted", t0);
        let started = receiver.first_firing("FailoverStarted", t0);
        let since = |from: Option<Instant>, to: Option<Instant>| match (from, to) {
            (Some(f), Some(t)) => Some(signed_seconds(f, t)),
            _ => None,
        };
        let switch_at = switch.as_ref().map(|e| e.at);
        let end_at = end.as_ref().map(|e| e.at);
        let run = FailoverRun {
            agent_page: since(switch_at, switched),
            peer_page: since(switch_at, peer.fired_after(t0)),
            agent_started: since(odown.as_ref().map(|e| e.at), started),
            agent_completed: since(switch_at, completed),
            switch_to_end: since(switch_at, end_at),
            end_to_completed: since(end_at, completed),
            pages: BTreeMap::new(),
            first_switch_not_leader: match (&switch, &end) {
                (Some(s), Some(e)) => s.sentinel != e.sentinel,
                _ => false,
            },
            freeze_to_switch: switch_at.map(|s| s.duration_since(t0).as_secs_f64()),
        };
        eprintln!(
            "bench: failover {}/{count}: {old} -> {new}; page (a) {} ms, peer (b) {} ms, started (c) {} ms, completed {} ms, switch->end {} ms",
            i + 1,
            ms(run.agent_page),
            ms(run.peer_page),
            ms(run.agent_started),
            ms(run.agent_completed),
            ms(run.switch_to_end),
        );
        runs.push(run);
    }
    // The last failover's window ends when a next one could start.
    wait_steady(group, peer);
    let last = Instant::now();
    for (i, run) in runs.iter_mut().enumerate() {
        let until = starts.get(i + 1).copied().unwrap_or(last);
        run.pages = receiver.firing_by_name("critical", starts[i], until);
        eprintln!(
            "bench: failover {}/{count}: critical notifications {:?}",
            i + 1,
            run.pages
        );
    }
    runs
}

/// `to - from` in seconds, negative when `to` came first.
fn signed_seconds(from: Instant, to: Instant) -> f64 {
    if to >= from {
        to.duration_since(from).as_secs_f64()
    } else {
        -from.duration_since(to).as_secs_f64()
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |s| format!("{:.1}", s * 1000.0))
}

/// Waits until the group is settled for the next failover: every sentinel
/// names the same master, sees it up and both replicas up (not down or
/// disconnected); the data nodes agree (one master, replicas linked to it,
/// by their own INFO); the peer's alert is not firing. Panics after 90 s
/// with what was still missing.
fn wait_steady(group: &SentinelGroup, peer: &AlertWatch) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let why = match steady(group) {
            Ok(()) if peer.firing() => Some("the peer's alert still fires".to_string()),
            Ok(()) => None,
            Err(why) => Some(why),
        };
        match why {
            None => return,
            Some(why) if Instant::now() > deadline => {
                panic!("bench: the sentinel group did not settle between failovers: {why}")
            }
            Some(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn steady(group: &SentinelGroup) -> Result<(), String> {
    let name = group.master_name.as_str();
    let mut master = None;
    for s in &group.sentinels {
        let fields = map(&s
            .cmd(&["SENTINEL", "MASTER", name])
            .map_err(|e| e.to_string())?);
        let port = fields.get("port").cloned().unwrap_or_default();
        if fields.get("flags").map(String::as_str) != Some("master") {
            return Err(format!(
                "sentinel {}: master flags {:?}",
                s.port(),
                fields.get("flags")
            ));
        }
        if *master.get_or_insert(port.clone()) != port {
            return Err("sentinels name different masters".into());
        }
        let replicas = s
            .cmd(&["SENTINEL", "REPLICAS", name])
            .map_err(|e| e.to_string())?;
        let Reply::Array(entries) = replicas else {
            return Err("SENTINEL REPLICAS is not an array".into());
        };
        let healthy = entries
            .iter()
            .map(map)
            .filter(|r| r.get("flags").map(String::as_str) == Some("slave"))
            .count();
        if healthy != group.nodes.len() - 1 {
            return Err(format!("sentinel {}: {healthy} healthy replicas", s.port()));
        }
    }
    let master: u16 = master
        .and_then(|p| p.parse().ok())
        .ok_or("no master port")?;
    for node in &group.nodes {
        let info = node.info("replication").map_err(|e| e.to_string())?;
        let field = |k: &str| info.get(k).map(String::as_str).unwrap_or("");
        if node.port() == master {
            if field("role") != "master" {
                return Err(format!("{} is not master yet", node.port()));
            }
        } else if field("role") != "slave"
            || field("master_port") != master.to_string()
            || field("master_link_status") != "up"
        {
            return Err(format!("{} is not a linked replica yet", node.port()));
        }
    }
    Ok(())
}

/// A `[key, value, ...]` reply as a map.
fn map(reply: &Reply) -> std::collections::HashMap<String, String> {
    let Reply::Array(items) = reply else {
        return Default::default();
    };
    items
        .chunks_exact(2)
        .filter_map(|kv| Some((kv[0].as_str()?.to_string(), kv[1].as_str()?.to_string())))
        .collect()
}
