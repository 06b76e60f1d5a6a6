//! A failover's pages, and the three cases of two masters in a shard,
//! against real servers: the returning old master that Sentinel converts
//! (part of the failover, no page of its own), one that takes writes before
//! its conversion (`MultipleMastersWriting` at once), one that stays a
//! master (`MultipleMasters` past its bound).

mod support;

use std::time::{Duration, Instant};

use redis_ha_lab::{SentinelGroup, SentinelOpts};
use serde_json::Value;
use support::receiver::{Receiver, Request};
use support::{sentinel_deployment, Agent};

const LONG: Duration = Duration::from_secs(40);

/// One notification as the webhook receiver got it.
#[derive(Debug, Clone)]
struct Note {
    alertname: String,
    status: String,
    severity: String,
    alert: Value,
    at: Instant,
}

fn notes(hook: &Receiver) -> Vec<Note> {
    hook.accepted()
        .iter()
        .map(|r| {
            let body = r.json();
            let alert = body["alerts"][0].clone();
            Note {
                alertname: alert["labels"]["alertname"].as_str().unwrap().into(),
                status: alert["status"].as_str().unwrap().into(),
                severity: alert["labels"]["severity"].as_str().unwrap().into(),
                alert,
                at: r.at,
            }
        })
        .collect()
}

/// The notifications of `name` that fired (not resolved).
fn fired(hook: &Receiver, name: &str) -> Vec<Note> {
    notes(hook)
        .into_iter()
        .filter(|n| n.alertname == name && n.status == "firing")
        .collect()
}

/// Waits until `name` reached the receiver with `status` (`firing`,
/// `resolved`); the alert as sent.
fn wait_for(hook: &Receiver, name: &str, status: &str) -> Value {
    let alert = |r: &Request| r.json()["alerts"][0].clone();
    let is = |a: &Value| a["labels"]["alertname"] == name && a["status"] == status;
    let got = hook.wait_for(&format!("{name} {status}"), LONG, |r| {
        r.iter().any(|r| is(&alert(r)))
    });
    got.iter().map(alert).find(is).unwrap()
}

/// The agent watching `group`, with a webhook receiver and `rules`.
fn agent(group: &SentinelGroup, hook: &Receiver, rules: &str) -> Agent {
    let extra = format!(
        "alerts:\n  state_dir: \"$DIR/state\"\n  external_url: \"http://mon.example:9478\"\n  receivers:\n    - {{ name: hook, type: webhook, url: \"{}\" }}\n{rules}",
        hook.url("/")
    );
    let agent = Agent::start_full(
        &sentinel_deployment("s", &[group.sentinels[0].addr()]),
        &extra,
        &[],
    );
    agent.wait_targets_up(6, LONG);
    agent
}

/// Freezes the master until the agent's timeline of the failover ended,
/// then resumes it: it comes back still a master. Returns the old and new
/// masters' ports and the timeline.
fn fail_over(group: &SentinelGroup, agent: &Agent) -> (u16, u16, Value) {
    let old = group.master_port().expect("a sentinel names the master");
    let old_addr = group.node(old).addr();
    group.node(old).freeze();
    let new = group.wait_for_new_master(old, LONG);
    let t = agent.ended_failover("s", "the failover's end", LONG, |t| {
        t["old_master"] == old_addr.as_str()
    });
    group.node(old).resume();
    (old, new, t)
}

fn role(group: &SentinelGroup, port: u16) -> String {
    group
        .node(port)
        .info("replication")
        .map(|i| i["role"].clone())
        .unwrap_or_default()
}

/// Waits until the agent shows the shard's open two-masters window with its
/// write count read: the base the writes are counted from.
fn wait_for_window(agent: &Agent, id: &str) -> Value {
    let mut window = Value::Null;
    agent.wait_until("the two-masters window with its count", LONG, |a| {
        window = a
            .failovers("s")
            .into_iter()
            .find(|t| t["id"] == id)
            .map(|t| t["two_masters"].clone())
            .unwrap_or_default();
        window["end"].is_null() && window["writes"].is_u64()
    });
    window
}

/// A plain failover with the old master resumed pages once (the switch,
/// critical, naming the new master), then tells the end (warning), and
/// nothing about the returning master while Sentinel converts it. In a
/// second failover a client writes to the returning old master before its
/// conversion: `MultipleMastersWriting` pages at once with the count, and
/// resolves once it is a replica.
#[test]
fn a_failover_pages_once_and_writes_to_a_returning_master_page_at_once() {
    let group = SentinelGroup::start(SentinelOpts::default());
    let hook = Receiver::start();
    let agent = agent(&group, &hook, "");

    let (old, new, t) = fail_over(&group, &agent);
    let (old_addr, new_addr) = (group.node(old).addr(), group.node(new).addr());
    let id = t["id"].as_str().unwrap().to_string();
    wait_until("Sentinel to convert the old master", || {
        role(&group, old) == "slave"
    });
    agent.wait_metrics("one master again", LONG, |m| {
        m.value(
            "redis_ha_shard_masters",
            &[("deployment", "s"), ("shard", "mymaster")],
        ) == Some(1.0)
    });
    wait_for(&hook, "FailoverCompleted", "firing");
    // What reached the receiver: one page, the switch, then the end.
    let critical: Vec<Note> = notes(&hook)
        .into_iter()
        .filter(|n| n.status == "firing" && n.severity == "critical")
        .collect();
    let names: Vec<&str> = critical.iter().map(|n| n.alertname.as_str()).collect();
    assert_eq!(names, ["FailoverSwitched"], "one page per failover");
    let switch = &critical[0];
    let a = &switch.alert;
    assert_eq!(a["labels"]["failover"], id.as_str());
    assert_eq!(a["annotations"]["new_master"], new_addr.as_str());
    assert_eq!(a["annotations"]["old_master"], old_addr.as_str());
    assert!(a["annotations"]["epoch"].as_str().is_some(), "{a}");
    assert_eq!(
        a["annotations"]["failover_url"],
        format!("http://mon.example:9478/ui/failovers/{id}").as_str()
    );
    let completed = fired(&hook, "FailoverCompleted");
    assert_eq!(completed.len(), 1);
    assert!(completed[0].at >= switch.at, "the switch comes first");
    assert_eq!(completed[0].severity, "warning");
    assert_eq!(completed[0].alert["labels"]["failover"], id.as_str());
    let about_masters: Vec<&Note> = critical
        .iter()
        .filter(|n| n.alertname.starts_with("MultipleMasters"))
        .collect();
    assert!(about_masters.is_empty(), "{about_masters:?}");
    // The returning master is on the failover's timeline, having taken nothing.
    let t = agent
        .failovers("s")
        .into_iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap();
    let window = &t["two_masters"];
    assert!(!window["end"].is_null(), "{window}");
    assert_eq!(window["writes"], 0, "{window}");
    assert!(
        window["nodes"]
            .as_array()
            .unwrap()
            .contains(&Value::from(old_addr.as_str())),
        "{window}"
    );

    // Again, and this time a client still writes to the old master, which
    // a replica still follows (as one Sentinel has not moved yet would):
    // the agent reads the write count of a master beside the shard's
    // master even when it has replicas.
    let (old, new, t) = fail_over(&group, &agent);
    let old_addr = group.node(old).addr();
    let id = t["id"].as_str().unwrap().to_string();
    let other = group
        .nodes
        .iter()
        .map(|n| n.port())
        .find(|p| *p != old && *p != new)
        .unwrap();
    group
        .node(other)
        .cmd(&["REPLICAOF", "127.0.0.1", &old.to_string()])
        .unwrap();
    wait_until("the replica to follow the old master", || {
        group
            .node(old)
            .info("replication")
            .is_ok_and(|i| i["connected_slaves"] == "1")
    });
    let window = wait_for_window(&agent, &id);
    assert_eq!(window["writes"], 0, "nothing written yet: {window}");
    assert_eq!(role(&group, old), "master", "not converted yet");
    for i in 0..5 {
        group
            .node(old)
            .cmd(&["SET", &format!("lost-{i}"), "written to the old master"])
            .unwrap();
    }
    let page = wait_for(&hook, "MultipleMastersWriting", "firing");
    assert_eq!(page["labels"]["severity"], "critical");
    assert_eq!(page["labels"]["shard"], "mymaster");
    let summary = page["annotations"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with(&format!("{old_addr} took 5 writes")),
        "{summary}"
    );
    assert!(
        summary.contains(&group.node(new).addr()),
        "names the master: {summary}"
    );
    let m = agent.metrics();
    assert_eq!(
        m.value(
            "redis_ha_shard_two_masters_writes",
            &[("deployment", "s"), ("shard", "mymaster")]
        ),
        Some(5.0)
    );
    // Sentinel converts it; the alert resolves, the count stays on the timeline.
    wait_for(&hook, "MultipleMastersWriting", "resolved");
    assert_eq!(role(&group, old), "slave");
    let t = agent
        .failovers("s")
        .into_iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap();
    assert_eq!(t["two_masters"]["writes"], 5, "{}", t["two_masters"]);
    assert!(
        fired(&hook, "MultipleMasters").is_empty(),
        "converted in time"
    );
}

/// An old master that Sentinel cannot convert (here its ACL refuses
/// `REPLICAOF`) stays a master: `MultipleMasters` pages past its bound
/// (shortened to 5 s for the test), and `MultipleMastersWriting` does not,
/// as nobody writes there.
#[test]
fn an_old_master_that_stays_a_master_pages_past_its_bound() {
    let group = SentinelGroup::start(SentinelOpts::default());
    let hook = Receiver::start();
    let agent = agent(
        &group,
        &hook,
        "  rules:\n    MultipleMasters: { for: 5s }\n",
    );
    let (old, new, _) = fail_over(&group, &agent);
    group
        .node(old)
        .cmd(&["ACL", "SETUSER", "default", "-replicaof", "-slaveof"])
        .unwrap();
    let page = wait_for(&hook, "MultipleMasters", "firing");
    assert_eq!(page["labels"]["severity"], "critical");
    assert_eq!(role(&group, old), "master", "still unconverted");
    let summary = page["annotations"]["summary"].as_str().unwrap();
    assert!(summary.contains(&group.node(old).addr()), "{summary}");
    assert!(fired(&hook, "MultipleMastersWriting").is_empty());
    // Put right by hand, it resolves.
    group
        .node(old)
        .cmd(&["ACL", "SETUSER", "default", "+@all"])
        .unwrap();
    group
        .node(old)
        .cmd(&["REPLICAOF", "127.0.0.1", &new.to_string()])
        .unwrap();
    wait_for(&hook, "MultipleMasters", "resolved");
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LONG;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
