//! Stopping the agent on SIGTERM, against real servers: what it collected
//! reaches the disk before it exits.

mod support;

use std::time::Duration;

use redis_ha_lab::{SentinelGroup, SentinelOpts};
use serde_json::Value;
use support::receiver::{Receiver, Request};
use support::{free_port, sentinel_deployment, Agent};

const LONG: Duration = Duration::from_secs(60);
/// The agent's own bound on a stop (`STOP_WITHIN`, docs/architecture.md).
const STOP_WITHIN: Duration = Duration::from_secs(8);

/// Whether `r` is the FailoverCompleted notification of failover `id`.
fn completed(r: &Request, id: &str) -> bool {
    let alert = &r.json()["alerts"][0];
    alert["labels"]["alertname"] == "FailoverCompleted"
        && alert["labels"]["failover"] == id
        && alert["status"] == "firing"
}

/// The last line the timeline file holds for `id`.
fn stored(agent: &Agent, id: &str) -> Option<Value> {
    let path = agent.config_path().with_file_name("timelines.jsonl");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|t| t["id"] == id)
}

/// Must show: the agent SIGTERMed right after a failover ends, while its
/// receiver is down, exits 0 within its bound with the timeline in the
/// file; after a restart the FailoverCompleted notification is delivered
/// once and the timeline is served again.
#[test]
fn sigterm_right_after_a_failover_loses_nothing() {
    let group = SentinelGroup::start(SentinelOpts::default());
    // Nothing listens here until the restart: the receiver is down.
    let port = free_port();
    let mut agent = Agent::start_full(
        &sentinel_deployment("s", &[group.sentinels[0].addr()]),
        &format!(
            "timelines:\n  path: \"$DIR/timelines.jsonl\"\nalerts:\n  state_dir: \"$DIR/state\"\n  receivers:\n    - {{ name: hook, type: webhook, url: \"http://127.0.0.1:{port}/hook\" }}\n"
        ),
        &[],
    );
    agent.wait_metrics("every sentinel subscribed", LONG, |m| {
        let up: Vec<f64> = m
            .find("redis_ha_sentinel_subscription_up", &[("deployment", "s")])
            .map(|s| s.value)
            .collect();
        up.len() == 3 && up.iter().all(|v| *v == 1.0)
    });
    let old = group.master_port().unwrap();
    group.node(old).freeze();
    let timeline = agent.ended_failover("s", "the failover to end", LONG, |_| true);
    let (exit, took) = agent.terminate(STOP_WITHIN);
    let id = timeline["id"].as_str().unwrap().to_string();

    assert!(
        exit.success(),
        "exit {exit} after SIGTERM; its log:\n{}",
        agent.log()
    );
    let log = agent.log();
    assert!(
        log.contains("stopping") && log.contains("stopped cleanly"),
        "the log does not say it stopped: {log}"
    );
    eprintln!("stopped {took:?} after SIGTERM");
    let on_disk = stored(&agent, &id).expect("the ended timeline in the file");
    assert_eq!(on_disk["outcome"], timeline["outcome"], "{on_disk}");
    assert_eq!(on_disk["marks"], timeline["marks"], "{on_disk}");

    let hook = Receiver::start_on(port);
    agent.restart();
    hook.wait_for("FailoverCompleted after the restart", LONG, |got| {
        got.iter().any(|r| completed(r, &id))
    });
    agent.wait_until("the timeline served again", LONG, |a| {
        a.failovers("s")
            .iter()
            .any(|t| t["id"] == id.as_str() && t["outcome"] == timeline["outcome"])
    });
    // Anything more would be a duplicate.
    std::thread::sleep(Duration::from_secs(5));
    let notified = hook.accepted().iter().filter(|r| completed(r, &id)).count();
    assert_eq!(
        notified, 1,
        "FailoverCompleted of {id} delivered {notified} times"
    );
    group.node(old).resume();
}

/// A client that sent half a request and holds its connection does not hold
/// the stop: requests in flight get a bounded drain (docs/architecture.md,
/// "Stopping"), and the agent still exits 0 well within its bound.
#[test]
fn a_client_holding_a_request_open_does_not_hold_the_stop() {
    use std::io::Write;

    // A seed nothing answers: nothing to collect, only the endpoint matters.
    let seed = format!("127.0.0.1:{}", free_port());
    let mut agent = Agent::start(&sentinel_deployment("s", &[seed]));
    let addr = agent.base.trim_start_matches("http://").to_string();
    let mut held = std::net::TcpStream::connect(&addr).unwrap();
    held.write_all(b"GET /metrics HTTP/1.1\r\nHost: agent\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let (exit, took) = agent.terminate(STOP_WITHIN);
    assert!(
        exit.success(),
        "exit {exit} after SIGTERM; its log:\n{}",
        agent.log()
    );
    assert!(
        took < Duration::from_secs(5),
        "the stop waited {took:?} for the held request"
    );
    drop(held);
}
