//! Two agents side by side for high availability (docs/ha.md), against real
//! servers: both watch the same sentinel group, or cluster, each with its
//! own canary key prefix and state directory, and push to one real
//! Alertmanager, which routes every alert to a webhook receiver as a
//! notification of its own. Each alert reaches the receiver once, not once
//! per agent, while both run and through the kill (SIGKILL) and restart of
//! either; an alert that resolved does not fire again when an agent
//! restarts.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis_ha_lab::{Cluster, ClusterOpts, Node, SentinelGroup, SentinelOpts};
use support::alertmanager::Alertmanager;
use support::receiver::Receiver;
use support::{cluster_deployment, sentinel_deployment, Agent};

const LONG: Duration = Duration::from_secs(60);

/// The alerts every failover raises. `FailoverStarted` too, but it lasts
/// only until the end, which in a cluster seen by polls can come within
/// Alertmanager's `group_wait` of the `fail`: then Alertmanager notifies
/// nothing of it.
const FAILOVER_ALERTS: [&str; 2] = ["FailoverSwitched", "FailoverCompleted"];

/// Alertmanager sending each alert (`group_by: ['...']`: every label) to
/// `hook` as a notification of its own, within a second and when it
/// resolves.
fn alertmanager(hook: &Receiver) -> Alertmanager {
    Alertmanager::with_config(&format!(
        "route:
  receiver: hook
  group_by: ['...']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: \"{}\"
        send_resolved: true
",
        hook.url("/")
    ))
}

/// One agent of the pair: the same `deployment` and receiver as the other,
/// its own canary key prefix, state directory and timeline file. The event
/// alerts resolve after 5 s, so that each failover's resolve is seen too.
fn agent(deployment: &str, am: &Alertmanager, canary_prefix: &str) -> Agent {
    let deployment =
        format!("{deployment}    canary: {{ enabled: true, key_prefix: {canary_prefix} }}\n");
    let extra = format!(
        "timelines:
  path: \"$DIR/timelines.jsonl\"
alerts:
  state_dir: \"$DIR/state\"
  rules:
    FailoverSwitched: {{ hold: 5s }}
    FailoverCompleted: {{ hold: 5s }}
    FailoverAborted: {{ hold: 5s }}
  receivers:
    - {{ name: am, type: alertmanager, urls: [\"{}\"] }}
",
        am.0.url
    );
    let agent = Agent::start_full(&deployment, &extra, &[]);
    agent.wait_targets_up(6, LONG);
    agent
}

/// The webhook receiver, the Alertmanager in front of it, and agents A and
/// B watching `deployment`.
fn pair(deployment: &str) -> (Receiver, Alertmanager, Agent, Agent) {
    let hook = Receiver::start();
    let am = alertmanager(&hook);
    let a = agent(deployment, &am, "pair_a");
    let b = agent(deployment, &am, "pair_b");
    (hook, am, a, b)
}

/// The master the sentinels of `group` name now.
fn master(group: &SentinelGroup) -> &Node {
    group.node(group.master_port().expect("a sentinel names the master"))
}

/// One alert of a notification: its labels, status and annotations, and
/// when the receiver got it.
struct Note {
    labels: BTreeMap<String, String>,
    status: String,
    annotations: BTreeMap<String, String>,
    at: Instant,
}

/// Every alert the receiver was notified of, in arrival order.
fn notes(hook: &Receiver) -> Vec<Note> {
    let strings = |v: &serde_json::Value| -> BTreeMap<String, String> {
        serde_json::from_value(v.clone()).unwrap()
    };
    hook.accepted()
        .iter()
        .flat_map(|r| {
            let alerts = r.json()["alerts"].as_array().unwrap().clone();
            alerts.into_iter().map(|a| Note {
                labels: strings(&a["labels"]),
                status: a["status"].as_str().unwrap().to_string(),
                annotations: strings(&a["annotations"]),
                at: r.at,
            })
        })
        .collect()
}

/// Each alert notified, as `alertname failover status` (the failover
/// label where there is one), for messages.
fn listed(hook: &Receiver) -> Vec<String> {
    notes(hook)
        .iter()
        .map(|n| {
            let failover = n.labels.get("failover").map_or("", String::as_str);
            format!("{} {failover} {}", n.labels["alertname"], n.status)
        })
        .collect()
}

/// The statuses notified for `alertname` about failover `id`, in order.
fn statuses(notes: &[Note], alertname: &str, id: &str) -> Vec<String> {
    notes
        .iter()
        .filter(|n| {
            n.labels["alertname"] == alertname
                && n.labels.get("failover").map(String::as_str) == Some(id)
        })
        .map(|n| n.status.clone())
        .collect()
}

/// Once every canary of the agents in `watching` writes, freezes `old`, the
/// master of a shard of `deployment`, until each of those agents has the
/// failover's timeline ended, then resumes it; asserts the agents name the
/// failover alike, waits until each of its alerts fired and resolved at
/// the receiver and until each agent has its canary's figures. Returns the
/// failover's id and how long after the freeze the receiver had its
/// `FailoverSwitched`.
fn fail_over(
    deployment: &str,
    old: &Node,
    watching: &[&Agent],
    hook: &Receiver,
) -> (String, Duration) {
    // Each canary writes before the failure, so that it measures the failover.
    for agent in watching {
        agent.wait_metrics("every canary up", LONG, |m| {
            let up: Vec<f64> = m.find("redis_ha_canary_up", &[]).map(|s| s.value).collect();
            !up.is_empty() && up.iter().all(|v| *v == 1.0)
        });
    }
    let old_addr = old.addr();
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let frozen = Instant::now();
    old.freeze();
    let ids: Vec<String> = watching
        .iter()
        .map(|a| {
            let t = a.ended_failover(deployment, "the failover's end", LONG, |t| {
                t["old_master"] == old_addr.as_str() && t["started"].as_f64() >= Some(since)
            });
            assert_eq!(t["outcome"], "completed", "{t}");
            t["id"].as_str().unwrap().to_string()
        })
        .collect();
    old.resume();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "the agents' ids: {ids:?}"
    );
    let id = ids[0].clone();
    hook.wait_for("the failover's alerts fired and resolved", LONG, |_| {
        let got = notes(hook);
        FAILOVER_ALERTS
            .iter()
            .all(|name| statuses(&got, name, &id).contains(&"resolved".to_string()))
    });
    for agent in watching {
        agent.wait_until("the agent's canary figures", LONG, |a| {
            a.failovers(deployment)
                .iter()
                .any(|t| t["id"] == id.as_str() && t["canary"].is_object())
        });
    }
    let switched = notes(hook)
        .into_iter()
        .find(|n| n.labels["alertname"] == "FailoverSwitched" && n.labels["failover"] == id)
        .unwrap();
    (id, switched.at - frozen)
}

/// Each failover's alerts (`FAILOVER_ALERTS` among them) were notified
/// exactly once firing and once resolved, and no other failover (one
/// agent's other name for it); every other alert alternates firing and
/// resolved (a second firing in a row would be an agent's duplicate).
fn assert_each_alert_once(hook: &Receiver, failovers: &[&str]) {
    let got = notes(hook);
    let notified: BTreeSet<&str> = got
        .iter()
        .filter_map(|n| n.labels.get("failover").map(String::as_str))
        .collect();
    assert_eq!(
        notified,
        failovers.iter().copied().collect(),
        "the failovers notified"
    );
    for id in failovers {
        let names: BTreeSet<&str> = got
            .iter()
            .filter(|n| n.labels.get("failover").map(String::as_str) == Some(*id))
            .map(|n| n.labels["alertname"].as_str())
            .collect();
        assert!(
            FAILOVER_ALERTS.iter().all(|name| names.contains(name)),
            "{id}: {names:?}"
        );
        for name in names {
            assert_eq!(
                statuses(&got, name, id),
                ["firing", "resolved"],
                "{name} of failover {id}"
            );
        }
    }
    let mut by_labels: BTreeMap<&BTreeMap<String, String>, Vec<&str>> = BTreeMap::new();
    for n in &got {
        by_labels.entry(&n.labels).or_default().push(&n.status);
    }
    for (labels, seen) in by_labels {
        let alternating = seen
            .iter()
            .enumerate()
            .all(|(i, s)| *s == ["firing", "resolved"][i % 2]);
        assert!(alternating, "{labels:?}: {seen:?}");
    }
}

/// Must show: a failover while both agents run reaches the receiver once
/// per alert, with identical labels from both (the failover's id included)
/// and each agent's canary figures as annotations; with agent A killed, a
/// second failover reaches it once, from B; with A restarted from its
/// state directory and B killed, a third does too; restarting B fires
/// nothing again, and a fourth, with both back, reaches it once.
#[test]
fn two_agents_notify_each_alert_once_through_kills_and_restarts() {
    let group = SentinelGroup::start(SentinelOpts::default());
    let (hook, _am, mut a, mut b) = pair(&sentinel_deployment("s", &[group.sentinels[0].addr()]));

    let (first, took) = fail_over("s", master(&group), &[&a, &b], &hook);
    eprintln!("failover {first}, both agents running: FailoverSwitched at the receiver {took:?} after the freeze");
    assert_each_alert_once(&hook, &[&first]);
    let got = notes(&hook);
    let completed = got
        .iter()
        .find(|n| n.labels["alertname"] == "FailoverCompleted")
        .unwrap();
    // Labels are the condition's own: nothing of either agent's (the
    // canary's prefix, its figures) is in them; the figures, which each
    // agent measures its own way, are annotations, the last pushed kept.
    assert_eq!(
        completed.labels.keys().collect::<Vec<_>>(),
        ["alertname", "deployment", "failover", "severity", "shard"]
    );
    assert!(
        completed
            .annotations
            .contains_key("canary_write_unavailable_seconds"),
        "{:?}",
        completed.annotations
    );
    // Both agents pushed the failover's three alerts, firing and resolved.
    for agent in [&a, &b] {
        agent.wait_metrics("the agent's pushes", LONG, |m| {
            m.value(
                "redis_ha_webhook_deliveries_total",
                &[("receiver", "am"), ("result", "delivered")],
            ) >= Some(6.0)
        });
    }

    a.kill();
    let (second, took) = fail_over("s", master(&group), &[&b], &hook);
    eprintln!("failover {second}, agent A killed: FailoverSwitched at the receiver {took:?} after the freeze");
    assert_ne!(second, first);
    assert_each_alert_once(&hook, &[&first, &second]);

    a.start_again();
    a.wait_until("A ready again", LONG, |a| a.get("/-/ready").0 == 200);
    a.wait_targets_up(6, LONG);
    b.kill();
    let (third, took) = fail_over("s", master(&group), &[&a], &hook);
    eprintln!("failover {third}, A restarted and B killed: FailoverSwitched at the receiver {took:?} after the freeze");
    assert!(third != first && third != second);
    assert_each_alert_once(&hook, &[&first, &second, &third]);

    // B comes back from its state directory: what resolved while it was
    // down resolves at most once more in Alertmanager, which does not
    // notify it again; nothing fires again.
    let before = listed(&hook).len();
    b.start_again();
    b.wait_until("B ready again", LONG, |b| b.get("/-/ready").0 == 200);
    std::thread::sleep(Duration::from_secs(5));
    assert_each_alert_once(&hook, &[&first, &second, &third]);
    let after = &listed(&hook)[before..];
    assert!(
        after.iter().all(|n| !n.ends_with("firing")),
        "fired again after B's restart: {after:?}"
    );

    // Both restarted, each having missed a failover the other saw: they
    // name the next one alike, from the epochs.
    b.wait_targets_up(6, LONG);
    let (fourth, took) = fail_over("s", master(&group), &[&a, &b], &hook);
    eprintln!("failover {fourth}, both restarted: FailoverSwitched at the receiver {took:?} after the freeze");
    assert_each_alert_once(&hook, &[&first, &second, &third, &fourth]);
    eprintln!("notified: {:?}", listed(&hook));
}

/// Must show, for a cluster: a failover while both agents run, named alike
/// by both (each polls on its own schedule), reaches the receiver once per
/// alert; so does the next failover of the shard, the old master's turn to
/// take over, after one agent was killed and started again in between.
#[test]
fn two_agents_notify_a_cluster_failover_once() {
    let cluster = Cluster::start(ClusterOpts::default());
    let (hook, _am, a, mut b) = pair(&cluster_deployment("c", &[cluster.nodes[1].addr()]));
    // Replica i of master m is nodes[masters + m * replicas + i].
    let (master, replica) = (&cluster.nodes[0], &cluster.nodes[3]);
    let (first, took) = fail_over("c", master, &[&a, &b], &hook);
    eprintln!(
        "cluster failover {first}: FailoverSwitched at the receiver {took:?} after the freeze"
    );
    assert_each_alert_once(&hook, &[&first]);

    cluster.wait_ok(LONG);
    let synced = |n: &Node| {
        n.info("replication")
            .is_ok_and(|i| i["role"] == "slave" && i["master_link_status"] == "up")
    };
    let deadline = Instant::now() + LONG;
    while !synced(master) {
        assert!(
            Instant::now() < deadline,
            "the old master never followed the new one"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Restarted after the failover, the agent names the shard as its
    // partner, which watched it, does (docs/ha.md): the same members.
    b.kill();
    b.start_again();
    b.wait_targets_up(cluster.nodes.len(), LONG);
    let shard = |x: &Agent| {
        x.json("/api/v1/topology")["deployments"][0]["shards"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["master"] == replica.addr().as_str())
            .map(|s| s["shard"].clone())
    };
    assert_eq!(shard(&b), shard(&a));
    assert!(shard(&a).is_some());
    let (second, took) = fail_over("c", replica, &[&a, &b], &hook);
    eprintln!(
        "cluster failover {second}: FailoverSwitched at the receiver {took:?} after the freeze"
    );
    assert_ne!(second, first);
    assert_each_alert_once(&hook, &[&first, &second]);
    eprintln!("notified: {:?}", listed(&hook));
}
