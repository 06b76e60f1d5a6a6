//! The chaos run: a sentinel group and a cluster under one agent, and a
//! seeded random fault every few seconds on whichever deployment is at
//! rest: a server frozen or killed for a while and brought back, a master
//! cut off from its peers for a while (every server on its own host of a
//! lab network), a `SENTINEL FAILOVER`, a `CLUSTER FAILOVER`. At the end,
//! with everything healed, the agent's failover timelines are held against
//! the independent record (tests/support/record.rs: the sentinels' events
//! as a raw `PSUBSCRIBE *` received them, every server's own view of
//! roles): every real failover recorded exactly once with the right new
//! master and paged once, no timeline without a real failover or failure
//! behind it, and no alert left firing. CI runs a short one
//! (`REDIS_HA_CHAOS_SECONDS`, 45 by default, a new seed each time);
//! `scripts/chaos 60m` runs a long one and keeps its report
//! (docs/chaos.md). `REDIS_HA_CHAOS_SEED` replays a run's choices.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use redis_ha_lab::{Host, Node};
use serde_json::{json, Value};
use support::long_run::{report, seconds, server_version, Lab, CLUSTER, SENTINEL};
use support::mark_at;
use support::record::Failover;
use support::unix_now;

/// Event alerts resolve after this (5 minutes by default), so that the
/// last failover's pages are over a short while after the run.
const RULES: &str = "  rules:\n    FailoverSwitched: { hold: 15s }\n    FailoverCompleted: { hold: 15s }\n    FailoverAborted: { hold: 15s }\n";
/// How long a frozen or killed server stays so, in seconds: from a blip
/// the sentinels and the cluster ride out to well past what they take to
/// fail a master over (down-after and node timeout 1 s, election and
/// promotion a second or two more).
const OUTAGE: (f64, f64) = (0.3, 5.0);
/// The pause after a fault is healed, in seconds.
const PAUSE: (f64, f64) = (1.0, 3.0);
/// How long a deployment may take to come to rest after a fault: a
/// returning old master is converted by Sentinel within about 20 s, a TILT
/// lasts 30 s; beyond this something is stuck.
const SETTLE: Duration = Duration::from_secs(120);
/// A timeline's switch (sentinel) or promotion (cluster) and the record's
/// first sight of the new master are this close, in seconds: both are
/// within a poll or an event of the real moment (a second at most), and a
/// shard fails over to the same node again only two failovers later.
const NEAR: f64 = 10.0;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Deployment {
    Sentinel,
    Cluster,
}

/// A value between `range.0` and `range.1`.
fn between(rng: &mut fastrand::Rng, range: (f64, f64)) -> f64 {
    range.0 + rng.f64() * (range.1 - range.0)
}

fn port(addr: &str) -> u16 {
    addr.rsplit_once(':').unwrap().1.parse().unwrap()
}

fn pick<T: Clone>(rng: &mut fastrand::Rng, from: &[T]) -> T {
    from[rng.usize(..from.len())].clone()
}

/// Whether `on` is at rest, by the record.
fn settled(lab: &Lab, on: Deployment) -> Result<(), String> {
    match on {
        Deployment::Sentinel => lab.record.sentinel_settled(),
        Deployment::Cluster => lab.record.cluster_settled(),
    }
}

/// A master of `on`, as the record names it now.
fn master(lab: &Lab, rng: &mut fastrand::Rng, on: Deployment) -> String {
    match on {
        Deployment::Sentinel => lab.record.sentinel_master().unwrap(),
        Deployment::Cluster => {
            let masters: Vec<String> = lab.record.cluster_masters().into_values().collect();
            pick(rng, &masters)
        }
    }
}

/// The server a freeze or a kill hits, and its role: the master half of
/// the time, as the master's failure is what a failover is for.
fn target(lab: &Lab, rng: &mut fastrand::Rng, on: Deployment) -> (String, &'static str) {
    let record = &lab.record;
    let master = master(lab, rng, on);
    match on {
        Deployment::Sentinel => {
            let replicas: Vec<String> = record
                .data_nodes
                .iter()
                .filter(|n| **n != master)
                .cloned()
                .collect();
            match rng.u8(..4) {
                0 | 1 => (master, "sentinel master"),
                2 => (pick(rng, &replicas), "sentinel replica"),
                _ => (pick(rng, &record.sentinels), "sentinel"),
            }
        }
        Deployment::Cluster => {
            if rng.bool() {
                (master, "cluster master")
            } else {
                (pick(rng, &record.cluster_replicas()), "cluster replica")
            }
        }
    }
}

/// The lab network hosts of `nodes`.
fn hosts<'a>(nodes: &[&'a Node]) -> Vec<&'a Host> {
    nodes.iter().filter_map(|n| n.host()).collect()
}

/// Cuts a master of `on` off from every other server of its deployment
/// (the agent, in the root namespace, still sees both sides) for `outage`,
/// then heals the cut.
fn partition(lab: &Lab, rng: &mut fastrand::Rng, on: Deployment, outage: Duration) -> String {
    let master = master(lab, rng, on);
    let servers: Vec<&Node> = match on {
        Deployment::Sentinel => lab.group.nodes.iter().chain(&lab.group.sentinels).collect(),
        Deployment::Cluster => lab.cluster.nodes.iter().collect(),
    };
    let (inside, outside): (Vec<&Node>, Vec<&Node>) =
        servers.into_iter().partition(|n| n.addr() == master);
    lab.net.cut(&hosts(&inside), &hosts(&outside));
    std::thread::sleep(outage);
    lab.net.heal();
    format!(
        "{master} (master) cut from its peers {:.1}s",
        outage.as_secs_f64()
    )
}

/// Injects one fault on `on`, at rest, and heals it; returns its kind and
/// what it was.
fn inject(lab: &mut Lab, rng: &mut fastrand::Rng, on: Deployment) -> (&'static str, String) {
    let kind = rng.u8(..4);
    if kind == 3 {
        let outage = Duration::from_secs_f64(between(rng, OUTAGE));
        return ("partition", partition(lab, rng, on, outage));
    }
    if kind == 2 {
        return match on {
            Deployment::Sentinel => {
                let sentinel = pick(rng, &lab.record.sentinels);
                let said = lab.group.node(port(&sentinel)).cmd(&[
                    "SENTINEL",
                    "FAILOVER",
                    &lab.group.master_name,
                ]);
                ("SENTINEL FAILOVER", format!("at {sentinel}: {said:?}"))
            }
            Deployment::Cluster => {
                let replica = pick(rng, &lab.record.cluster_replicas());
                let said = lab
                    .cluster
                    .node(port(&replica))
                    .cmd(&["CLUSTER", "FAILOVER"]);
                ("CLUSTER FAILOVER", format!("at {replica}: {said:?}"))
            }
        };
    }
    let (target, role) = target(lab, rng, on);
    let outage = Duration::from_secs_f64(between(rng, OUTAGE));
    let node = match on {
        Deployment::Sentinel => lab.group.node_mut(port(&target)),
        Deployment::Cluster => lab.cluster.node_mut(port(&target)),
    };
    let what = format!("{target} ({role}) {:.1}s", outage.as_secs_f64());
    if kind == 0 {
        node.freeze();
        std::thread::sleep(outage);
        node.resume();
        ("freeze", what)
    } else {
        node.kill();
        std::thread::sleep(outage);
        node.restart();
        ("kill+restart", what)
    }
}

/// When a timeline switched to its new master: `switched` (sentinel; a
/// replica promoted but never switched to is no new master), `promoted`
/// (cluster); `None` for one that did not.
fn switch_at(t: &Value) -> Option<f64> {
    match t["kind"].as_str() {
        Some("sentinel") => mark_at(t, "switched"),
        _ => mark_at(t, "promoted"),
    }
}

/// The figures and the problems of the comparison.
struct Verdict {
    matched: Vec<Value>,
    problems: Vec<String>,
    /// Ids of the timelines matched to a real failover.
    ids: Vec<String>,
}

/// Holds the agent's timelines against the record's failovers.
fn compare(lab: &Lab, real: &[Failover], timelines: &[Value], origin: f64) -> Verdict {
    let mut problems = Vec::new();
    let mut taken = vec![false; timelines.len()];
    let mut matched = Vec::new();
    let mut ids = Vec::new();
    for f in real {
        let kind = f.kind;
        let best = timelines
            .iter()
            .enumerate()
            .filter(|(i, t)| {
                !taken[*i] && t["kind"] == kind && t["new_master"] == f.new_master.as_str()
            })
            .filter_map(|(i, t)| Some((i, (switch_at(t)? - f.at).abs())))
            .filter(|(_, gap)| *gap <= NEAR)
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let Some((i, gap)) = best else {
            problems.push(format!(
                "missed: the {kind} failover {} -> {} at {:.1}s has no timeline",
                f.old_master,
                f.new_master,
                f.at - origin
            ));
            continue;
        };
        taken[i] = true;
        let t = &timelines[i];
        if t["old_master"] != f.old_master.as_str() {
            problems.push(format!(
                "the {kind} failover to {} at {:.1}s names old master {}, not {}",
                f.new_master,
                f.at - origin,
                t["old_master"],
                f.old_master
            ));
        }
        if t["outcome"] != "completed" {
            problems.push(format!(
                "the {kind} failover to {} at {:.1}s ended {}: {t}",
                f.new_master,
                f.at - origin,
                t["outcome"]
            ));
        }
        ids.push(t["id"].as_str().unwrap().to_string());
        matched.push(json!({
            "kind": kind, "shard": f.shard, "at": f.at - origin,
            "old_master": f.old_master, "new_master": f.new_master,
            "timeline": t["id"], "switch_gap_seconds": gap,
        }));
    }
    for (t, _) in timelines.iter().zip(&taken).filter(|(_, taken)| !**taken) {
        if t["outcome"].is_null() {
            problems.push(format!("a timeline is still open once all is healed: {t}"));
            continue;
        }
        let (from, to) = (
            t["started"].as_f64().unwrap() - 2.0,
            t["ended"].as_f64().unwrap() + 2.0,
        );
        // A failover given up on (timed out, aborted) while the record
        // shows it switching: paged `FailoverAborted` for a new master.
        // Unless a sentinel itself gave that attempt up (its promotion
        // timed out: `-failover-abort-slave-timeout`) and a later attempt,
        // of a higher epoch and a timeline of its own, made the switch.
        let cut_short = real.iter().find(|f| {
            f.kind == t["kind"]
                && t["old_master"] == f.old_master.as_str()
                && (from + 2.0..=to).contains(&f.at)
        });
        let given_up_by_sentinel = t["kind"] == "sentinel"
            && t["outcome"] == "aborted"
            && lab.record.sentinel_aborted(from, to);
        if let (Some(f), Some("timed_out" | "aborted"), false) =
            (cut_short, t["outcome"].as_str(), given_up_by_sentinel)
        {
            problems.push(format!(
                "a timeline ended {} while the failover switched to {} at {:.1}s: {t}",
                t["outcome"],
                f.new_master,
                f.at - origin
            ));
        }
        if switch_at(t).is_some() {
            problems.push(format!(
                "a timeline switches to {} with no real failover of the record near it (invented, or recorded twice): {t}",
                t["new_master"]
            ));
        } else if t["kind"] == "sentinel" && !lab.record.sentinel_trouble(from, to) {
            problems.push(format!(
                "no sentinel saw the master down around this timeline: {t}"
            ));
        } else if t["kind"] == "cluster"
            && !lab
                .record
                .cluster_trouble(t["old_master"].as_str().unwrap_or_default(), from, to)
        {
            problems.push(format!(
                "no cluster node flagged the master failing around this timeline: {t}"
            ));
        }
    }
    Verdict {
        matched,
        problems,
        ids,
    }
}

/// Waits up to `within` for `ok`; whether it came.
fn wait(within: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !ok() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    true
}

#[test]
fn random_faults_every_failover_recorded_once_and_nothing_invented() {
    let total = seconds("REDIS_HA_CHAOS_SECONDS", 45);
    let seed = match std::env::var("REDIS_HA_CHAOS_SEED") {
        Ok(s) => s.parse().expect("REDIS_HA_CHAOS_SEED: a number"),
        Err(_) => fastrand::u64(..),
    };
    let server = server_version();
    eprintln!("chaos: {total:?} on {server}, seed {seed} (REDIS_HA_CHAOS_SEED={seed} replays it)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut lab = Lab::start(RULES);
    let origin = unix_now() - lab.elapsed();
    let rss_start = lab.agent.rss();
    let mut faults: BTreeMap<&str, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    while lab.started.elapsed() < total {
        // Drawn whatever is at rest, so that a seed draws the same choices
        // again; a fault on one deployment may come while the other is
        // still busy with the last.
        let on = pick(&mut rng, &[Deployment::Sentinel, Deployment::Cluster]);
        if !wait(SETTLE, || settled(&lab, on).is_ok()) {
            problems.push(format!(
                "{on:?} did not come to rest within {SETTLE:?}: {:?}\n{}",
                settled(&lab, on),
                lab.record.describe()
            ));
            break;
        }
        let (kind, what) = inject(&mut lab, &mut rng, on);
        eprintln!("  {:7.1}s  {kind:<17} {what}", lab.elapsed());
        *faults.entry(kind).or_default() += 1;
        std::thread::sleep(Duration::from_secs_f64(between(&mut rng, PAUSE)));
    }

    // Every fault is healed when its injection returns: wait for rest.
    eprintln!("  {:7.1}s  faults over; waiting for rest", lab.elapsed());
    let rested = wait(SETTLE, || {
        settled(&lab, Deployment::Sentinel).is_ok()
            && settled(&lab, Deployment::Cluster).is_ok()
            && lab.record.tilted().is_empty()
    });
    if !rested {
        problems.push(format!(
            "the lab did not come to rest within {SETTLE:?}: {:?} {:?}, TILT {:?}\n{}",
            lab.record.sentinel_settled(),
            lab.record.cluster_settled(),
            lab.record.tilted(),
            lab.record.describe()
        ));
    }
    // Then the agent: every timeline ended, every alert resolved (the
    // event alerts after their hold).
    let timelines_of = |lab: &Lab| -> Vec<Value> {
        [SENTINEL, CLUSTER]
            .iter()
            .flat_map(|d| lab.failovers(d))
            .collect()
    };
    wait(Duration::from_secs(60), || {
        timelines_of(&lab).iter().all(|t| !t["outcome"].is_null())
    });
    let quiet = wait(Duration::from_secs(60), || lab.firing().is_empty());
    eprintln!("  {:7.1}s  at rest", lab.elapsed());
    if !quiet {
        problems.push(format!("alerts left firing: {:?}", lab.firing()));
    }
    // The receiver's view: each alert's last notification resolved it.
    let notes = lab.notes();
    for n in notes.left_firing() {
        problems.push(format!(
            "the receiver last heard {} firing: {}",
            n.alertname, n.labels
        ));
    }

    let real_sentinel = lab.record.sentinel_failovers();
    let switches = lab.record.sentinel_epoch_switches();
    let epochs: Vec<&String> = switches.iter().map(|(_, m)| m).collect();
    let events: Vec<&String> = real_sentinel.iter().map(|f| &f.new_master).collect();
    if epochs != events {
        problems.push(format!(
            "the record disagrees with itself: +switch-master to {events:?}, config epochs to {switches:?}\n{}",
            lab.record.describe()
        ));
    }
    let real: Vec<Failover> = real_sentinel
        .into_iter()
        .chain(lab.record.cluster_failovers())
        .collect();
    let timelines = timelines_of(&lab);
    let verdict = compare(&lab, &real, &timelines, origin);
    problems.extend(verdict.problems);
    // One page per real failover, each for its timeline.
    let mut pages: BTreeMap<String, usize> = BTreeMap::new();
    for n in notes
        .0
        .iter()
        .filter(|n| n.alertname == "FailoverSwitched" && n.status == "firing")
    {
        *pages
            .entry(n.labels["failover"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    for id in &verdict.ids {
        if pages.get(id) != Some(&1) {
            problems.push(format!(
                "FailoverSwitched for {id} reached the receiver {} times",
                pages.get(id).unwrap_or(&0)
            ));
        }
    }
    for (id, _) in pages.iter().filter(|(id, _)| !verdict.ids.contains(id)) {
        problems.push(format!(
            "FailoverSwitched for {id}, which is no real failover"
        ));
    }

    let count = |kind: &str| real.iter().filter(|f| f.kind == kind).count();
    let rss_end = lab.agent.rss();
    report(
        &lab,
        &json!({
            "run": "chaos",
            "server": server,
            "seed": seed,
            "seconds": total.as_secs(),
            "faults": faults,
            "faults_total": faults.values().sum::<usize>(),
            "failovers_real": { "sentinel": count("sentinel"), "cluster": count("cluster") },
            "failovers_recorded": verdict.matched.len(),
            "timelines": timelines.len(),
            "timelines_without_switch": timelines.iter().filter(|t| switch_at(t).is_none()).count(),
            "alerts_fired": notes.fired(),
            "rss_start_bytes": rss_start,
            "rss_end_bytes": rss_end,
            "failovers": verdict.matched,
            "problems": problems,
        }),
    );
    assert!(problems.is_empty(), "chaos (seed {seed}): {problems:#?}");
}
