//! The agent's log as a log pipeline reads it: `--log.format json` through
//! a sentinel failover, at the default level, beside an agent that asks for
//! the client library's warnings too.

mod support;

use std::time::Duration;

use redis_ha_lab::{SentinelGroup, SentinelOpts};
use serde_json::Value;
use support::{sentinel_deployment, Agent};

const LONG: Duration = Duration::from_secs(60);

/// Every line of `log` as JSON, each with the keys every line has.
fn lines(log: &str) -> Vec<Value> {
    log.lines()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"));
            for key in ["ts", "level", "source", "msg"] {
                assert!(v[key].is_string(), "no {key} in {l}");
            }
            v
        })
        .collect()
}

/// The lines with message `msg`.
fn with_msg<'a>(lines: &'a [Value], msg: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["msg"] == msg).collect()
}

/// Must show: JSON logs of a failover run: every line parses, the state
/// changes are there, no line from the client library at the default level.
#[test]
fn json_logs_of_a_failover_show_each_change_and_nothing_of_the_library() {
    let mut group = SentinelGroup::start(SentinelOpts::default());
    let sentinels: Vec<String> = group.sentinels.iter().map(|s| s.addr()).collect();
    let deployment = sentinel_deployment("s", &sentinels);
    // The default level, as a user runs it; `REDIS_HA_LOG` is the tests'
    // debug filter otherwise.
    let json = [("REDIS_HA_LOG", "info"), ("REDIS_HA_LOG_FORMAT", "json")];
    let agent = Agent::start_with_env(&deployment, &json);
    // The same, asking for the client library's warnings: what the default
    // keeps out.
    let verbose =
        Agent::start_with_env(&deployment, &[("REDIS_HA_LOG", "info,fred=warn"), json[1]]);
    agent.wait_targets_up(6, LONG);
    verbose.wait_targets_up(6, LONG);

    let old = group.nodes[0].addr();
    group.nodes[0].freeze();
    let new_port = group.wait_for_new_master(group.nodes[0].port(), LONG);
    let new = group.node(new_port).addr();
    agent.wait_until("the failover ended", LONG, |a| {
        a.failovers("s").iter().any(|t| !t["ended"].is_null())
    });
    let port = group.nodes[0].port();
    group.node_mut(port).resume();
    let up_again = |a: &Agent| {
        lines(&a.log())
            .iter()
            .any(|l| l["msg"] == "target up again" && l["target"] == old.as_str())
    };
    agent.wait_until("the old master answering again", LONG, up_again);

    let log = lines(&agent.log());
    let of_library: Vec<&Value> = log
        .iter()
        .filter(|l| {
            !l["source"]
                .as_str()
                .unwrap()
                .starts_with("redis_ha_exporter")
        })
        .collect();
    assert!(of_library.is_empty(), "{of_library:#?}");
    let verbose_log = lines(&verbose.log());
    let fred: Vec<&Value> = verbose_log
        .iter()
        .filter(|l| l["source"].as_str().unwrap().starts_with("fred"))
        .collect();
    assert!(
        !fred.is_empty(),
        "the client library warned nothing with fred=warn: the default's silence proves nothing"
    );
    eprintln!(
        "{} lines at the default level; {} from the client library with fred=warn, e.g. {}",
        log.len(),
        fred.len(),
        fred[0]
    );

    // The frozen master: down, then up again, once each.
    let down: Vec<&Value> = with_msg(&log, "target down")
        .into_iter()
        .filter(|l| l["target"] == old.as_str())
        .collect();
    assert_eq!(down.len(), 1, "{down:#?}");
    assert_eq!(down[0]["level"], "warn");
    assert_eq!(down[0]["deployment"], "s");

    // The failover: its steps in the order they happened, then its end.
    let steps = with_msg(&log, "failover step");
    let marks: Vec<&str> = steps.iter().map(|l| l["mark"].as_str().unwrap()).collect();
    for mark in [
        "sdown",
        "odown",
        "try_failover",
        "elected",
        "promoted",
        "switched",
    ] {
        assert!(marks.contains(&mark), "no {mark} step: {marks:?}");
    }
    // Logged as they were seen, so in time order; `last_ok` (the old
    // master's last answer) is learnt after the fact.
    let at: Vec<f64> = steps
        .iter()
        .filter(|l| l["mark"] != "last_ok")
        .map(|l| l["at"].as_f64().unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] <= w[1]), "{at:?}");
    let ended = with_msg(&log, "failover ended");
    assert_eq!(ended.len(), 1, "{ended:#?}");
    let end = ended[0];
    assert_eq!(end["outcome"], "completed");
    assert_eq!(end["old_master"], old.as_str());
    assert_eq!(end["new_master"], new.as_str());
    assert_eq!(end["failover"], steps[0]["failover"]);
    assert!(end["seconds"].as_f64().unwrap() > 0.0);
    let position = |l: &Value| log.iter().position(|x| x == l).unwrap();
    assert!(steps.iter().all(|s| position(s) < position(end)));

    // The page.
    let switched: Vec<&Value> = with_msg(&log, "alert firing")
        .into_iter()
        .filter(|l| l["alertname"] == "FailoverSwitched")
        .collect();
    assert_eq!(switched.len(), 1, "{switched:#?}");
    assert_eq!(switched[0]["severity"], "critical");
    assert!(
        switched[0]["labels"]
            .as_str()
            .unwrap()
            .contains("shard=mymaster"),
        "{}",
        switched[0]
    );
}
