//! The soak: a sentinel group and a cluster of real servers (the lab,
//! `redis_ha_lab`, each server on its own host of a lab network) left alone
//! under the agent's watch, with the built-in alert rules and a webhook
//! receiver. Nothing fails, so the agent must say nothing: no notification
//! reaches the receiver, no failover timeline appears, no finding comes or
//! goes, and its memory stays flat. CI runs a short one
//! (`REDIS_HA_SOAK_SECONDS`, 60 by default); `scripts/soak 60m` runs a long
//! one and keeps its report (docs/chaos.md).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use support::long_run::{report, seconds, server_version, Lab, Rss, CLUSTER, SENTINEL};
use support::unix_now;

/// Growth of the agent's memory from the end of the warm-up to the end of
/// the run that counts as a leak, whatever the run's length. Without a
/// leak the agent's RSS moves in its first minutes only (the first
/// findings rounds, buffers growing to their working size): an hour's run
/// moved 4 KiB after its warm-up (docs/chaos.md). Medians of a tenth of the
/// samples at each end smooth out an allocator keeping a busier moment's
/// pages; a leak of 100 bytes per poll (12 targets, two polls a second)
/// passes 1 MiB within 8 minutes.
const LEAK: u64 = 1024 * 1024;

/// `(check, shard, node)` of every finding now.
fn findings(lab: &Lab) -> BTreeSet<String> {
    lab.agent.json("/api/v1/findings")["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| format!("{} {} {}", f["check"], f["shard"], f["node"]))
        .collect()
}

#[test]
fn a_quiet_lab_raises_nothing_and_memory_stays_flat() {
    let total = seconds("REDIS_HA_SOAK_SECONDS", 60);
    // Past the first findings round, connection setup and the first scrapes.
    let warm_up = (total / 6).clamp(Duration::from_secs(15), Duration::from_secs(300));
    let every = (total / 360).max(Duration::from_secs(1));
    let lab = Lab::start("");
    let begun = unix_now();
    eprintln!(
        "soak: {total:?} on {}, warm-up {warm_up:?}, RSS every {every:?}",
        server_version()
    );
    let mut rss = Rss::default();
    let mut problems = Vec::new();
    let mut found_at_warm_up = None;
    while lab.started.elapsed() < total {
        std::thread::sleep(every);
        let bytes = rss.sample(&lab);
        eprintln!("  {:7.1}s  RSS {:6} KiB", lab.elapsed(), bytes / 1024);
        let firing = lab.firing();
        if !firing.is_empty() {
            problems.push(format!("at {:.0}s firing: {firing:?}", lab.elapsed()));
        }
        if found_at_warm_up.is_none() && lab.started.elapsed() >= warm_up {
            found_at_warm_up = Some(findings(&lab));
        }
    }

    // A tenth of the samples after the warm-up, and the last tenth.
    let span = (total - warm_up).as_secs_f64();
    let window = (span / 10.0).max(every.as_secs_f64() * 3.0);
    let start = warm_up.as_secs_f64();
    let (rss_start, rss_end) = (
        rss.median(start, start + window),
        rss.median(total.as_secs_f64() - window, f64::MAX),
    );
    let grown = rss_end.saturating_sub(rss_start);
    if grown > LEAK {
        problems.push(format!(
            "RSS grew by {grown} bytes ({rss_start} -> {rss_end}), more than {LEAK}"
        ));
    }
    let requests = lab.hook.requests();
    for r in &requests {
        problems.push(format!("the receiver got: {}", r.body));
    }
    let timelines: Vec<Value> = [SENTINEL, CLUSTER]
        .iter()
        .flat_map(|d| lab.failovers(d))
        .collect();
    for t in &timelines {
        problems.push(format!("a failover timeline appeared: {t}"));
    }
    let found_now = findings(&lab);
    if found_at_warm_up.as_ref() != Some(&found_now) {
        problems.push(format!(
            "findings changed: {found_at_warm_up:?} after the warm-up, {found_now:?} at the end"
        ));
    }
    let targets = lab.agent.metrics();
    let down: Vec<_> = targets
        .find("redis_ha_target_up", &[])
        .filter(|s| s.value != 1.0)
        .map(|s| s.labels.clone())
        .collect();
    if !down.is_empty() {
        problems.push(format!("targets down at the end: {down:?}"));
    }
    // The lab itself stayed quiet, by its own word: otherwise whatever the
    // agent said would have been right.
    let now = unix_now();
    let quiet = !lab.record.sentinel_trouble(begun, now)
        && lab
            .record
            .cluster_nodes
            .iter()
            .all(|n| !lab.record.cluster_trouble(n, begun, now));
    if !quiet {
        problems.push(format!(
            "the lab was not quiet (a server was seen down): {:?}",
            lab.record.events()
        ));
    }

    report(
        &lab,
        &json!({
            "run": "soak",
            "server": server_version(),
            "seconds": total.as_secs(),
            "warm_up_seconds": warm_up.as_secs(),
            "targets": lab.record.sentinels.len() + lab.record.data_nodes.len() + lab.record.cluster_nodes.len(),
            "notifications": requests.len(),
            "timelines": timelines.len(),
            "findings": found_now,
            "rss_start_bytes": rss_start,
            "rss_end_bytes": rss_end,
            "rss_grown_bytes": grown,
            "rss_bound_bytes": LEAK,
            "rss_samples": rss.json(),
            "problems": problems,
        }),
    );
    assert!(problems.is_empty(), "soak: {problems:#?}");
}
