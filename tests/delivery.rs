//! Alert notifications delivered to receivers (local HTTP servers standing
//! in for webhooks, Slack and PagerDuty; a real Alertmanager), against real
//! servers.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use redis_ha_lab::{SentinelGroup, SentinelOpts};
use serde_json::Value;
use support::alertmanager::Alertmanager;
use support::receiver::{Mode, Receiver, Request};
use support::{free_port, sentinel_deployment, temp_dir, Agent};

const LONG: Duration = Duration::from_secs(60);
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// (alertname, status) of an Alertmanager-webhook notification.
fn what(r: &Request) -> (String, String) {
    let v = r.json();
    let a = &v["alerts"][0];
    (
        a["labels"]["alertname"].as_str().unwrap().to_string(),
        a["status"].as_str().unwrap().to_string(),
    )
}

fn has(got: &[Request], alertname: &str, status: &str) -> bool {
    got.iter()
        .any(|r| what(r) == (alertname.to_string(), status.to_string()))
}

/// Standard Webhooks verification, written from the specification: HMAC-SHA256
/// over `id.timestamp.body` with the base64-decoded secret.
fn verifies(r: &Request, secret: &str) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let signed = format!(
        "{}.{}.{}",
        r.headers["webhook-id"], r.headers["webhook-timestamp"], r.body
    );
    r.headers["webhook-signature"]
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .any(|tag| ring::hmac::verify(&key, signed.as_bytes(), &tag).is_ok())
}

/// Must shows 1 and 5: a failover reaches a signed webhook as FailoverStarted,
/// FailoverSwitched, then FailoverCompleted; Slack and PagerDuty get their
/// documented payloads; routes pick the receivers by severity (the page,
/// FailoverSwitched, to PagerDuty).
#[test]
fn a_failover_reaches_webhook_slack_and_pagerduty() {
    let group = SentinelGroup::start(SentinelOpts::default());
    let hook = Receiver::start();
    let chat = Receiver::start();
    let pager = Receiver::start();
    let files = temp_dir("delivery-secrets");
    std::fs::write(files.join("secret"), format!("{SECRET}\n")).unwrap();
    std::fs::write(files.join("slack-url"), chat.url("/services/T0/B0/token")).unwrap();
    let extra = format!(
        "alerts:
  state_dir: \"$DIR/state\"
  external_url: \"http://agent.example:9478\"
  rules:
    FailoverSwitched: {{ hold: 3s }}
  receivers:
    - {{ name: hook, type: webhook, url: \"{}\", secret_file: \"{}\" }}
    - {{ name: chat, type: slack, url_file: \"{}\" }}
    - {{ name: pager, type: pagerduty, url: \"{}\", routing_key_env: RHE_TEST_PD_KEY }}
  routes:
    - {{ receiver: hook }}
    - {{ receiver: chat, severity: [warning] }}
    - {{ receiver: pager, severity: [critical], deployment: [s] }}
",
        hook.url("/hook"),
        files.join("secret").display(),
        files.join("slack-url").display(),
        pager.url("/v2/enqueue"),
    );
    let agent = Agent::start_full(
        &sentinel_deployment("s", &[group.sentinels[0].addr()]),
        &extra,
        &[("RHE_TEST_PD_KEY", "pd-routing-key-0123")],
    );
    let old = group.master_port().unwrap();
    group.node(old).freeze();
    let got = hook.wait_for("FailoverCompleted at the webhook", LONG, |got| {
        has(got, "FailoverCompleted", "firing")
    });
    group.node(old).resume();

    // FailoverStarted first, then FailoverSwitched, then FailoverCompleted.
    let order: Vec<(String, String)> = got
        .iter()
        .map(what)
        .filter(|(n, _)| n.starts_with("Failover"))
        .collect();
    let at = |name: &str| {
        order
            .iter()
            .position(|w| *w == (name.into(), "firing".into()))
    };
    let (started, switched, completed) = (
        at("FailoverStarted"),
        at("FailoverSwitched"),
        at("FailoverCompleted"),
    );
    assert!(
        started.is_some() && started < switched && switched < completed,
        "order: {order:?}"
    );

    // The Alertmanager webhook format, field by field.
    let r = got
        .iter()
        .find(|r| what(r).0 == "FailoverCompleted")
        .unwrap();
    assert_eq!(r.path, "/hook");
    assert_eq!(r.headers["content-type"], "application/json");
    let v = r.json();
    assert_eq!(v["version"], "4");
    assert_eq!(v["status"], "firing");
    assert_eq!(v["receiver"], "hook");
    assert_eq!(v["externalURL"], "http://agent.example:9478");
    assert_eq!(v["groupLabels"]["alertname"], "FailoverCompleted");
    assert!(v["groupKey"].as_str().is_some_and(|k| !k.is_empty()));
    assert_eq!(v["truncatedAlerts"], 0);
    let a = &v["alerts"][0];
    assert_eq!(v["alerts"].as_array().unwrap().len(), 1);
    assert_eq!(a["labels"]["deployment"], "s");
    assert_eq!(a["labels"]["shard"], "mymaster");
    assert_eq!(a["labels"]["severity"], "warning");
    assert_eq!(v["commonLabels"], a["labels"]);
    assert!(a["annotations"]["summary"]
        .as_str()
        .unwrap()
        .contains(&format!("127.0.0.1:{old} ->")));
    assert!(a["annotations"]["phase_total_seconds"].is_string());
    assert_eq!(a["endsAt"], "0001-01-01T00:00:00Z");
    let starts = a["startsAt"].as_str().unwrap();
    assert!(
        starts.len() == 24 && starts.ends_with('Z') && starts.as_bytes()[10] == b'T',
        "{starts}"
    );
    let fp = a["fingerprint"].as_str().unwrap();
    assert!(fp.len() == 16 && fp.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(a["generatorURL"], "http://agent.example:9478/api/v1/alerts");

    // Signed: verifies with the secret, not with another one, nor once the
    // body is altered.
    assert!(got.iter().all(|r| verifies(r, SECRET)));
    assert!(!verifies(
        r,
        "whsec_c2VjcmV0LWJ1dC1ub3QtdGhlLXJpZ2h0LW9uZQ=="
    ));
    let mut tampered = r.clone();
    tampered.body = tampered.body.replace("mymaster", "yourmaster");
    assert!(!verifies(&tampered, SECRET));

    // PagerDuty: the critical FailoverSwitched (the page), triggered with
    // the switch, the outage and the link, then resolved after its hold
    // with the same dedup key; nothing of severity warning.
    let events = pager.wait_for("FailoverSwitched resolved at PagerDuty", LONG, |got| {
        got.iter().any(|r| r.json()["event_action"] == "resolve")
    });
    let trigger = events
        .iter()
        .map(Request::json)
        .find(|e| e["event_action"] == "trigger" && e["payload"]["class"] == "FailoverSwitched")
        .expect("a trigger for FailoverSwitched");
    assert_eq!(events[0].path, "/v2/enqueue");
    assert_eq!(trigger["routing_key"], "pd-routing-key-0123");
    assert_eq!(trigger["payload"]["severity"], "critical");
    assert_eq!(trigger["payload"]["source"], "s");
    let new = group.master_port().unwrap();
    let summary = trigger["payload"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with(&format!(
            "FailoverSwitched: mymaster switched to 127.0.0.1:{new} (was 127.0.0.1:{old})"
        )),
        "{summary}"
    );
    assert!(summary.contains("; writes failed ~"), "{summary}");
    let failover = trigger["payload"]["custom_details"]["labels"]["failover"]
        .as_str()
        .unwrap();
    assert_eq!(
        trigger["links"][0]["href"],
        format!("http://agent.example:9478/ui/failovers/{failover}").as_str()
    );
    assert_eq!(
        trigger["payload"]["custom_details"]["labels"]["shard"],
        "mymaster"
    );
    assert!(trigger["payload"]["timestamp"].is_string());
    let resolve = events
        .iter()
        .map(Request::json)
        .find(|e| e["event_action"] == "resolve")
        .unwrap();
    assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
    assert_eq!(resolve["routing_key"], "pd-routing-key-0123");
    assert!(events
        .iter()
        .all(|r| r.json()["payload"]["severity"] != "warning"));

    // Slack: the warning FailoverCompleted, with text and blocks (the
    // failover's facts among them); nothing critical.
    let posts = chat.wait_for("FailoverCompleted at Slack", LONG, |got| {
        got.iter().any(|r| {
            r.json()["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("[FIRING] FailoverCompleted"))
        })
    });
    assert_eq!(posts[0].path, "/services/T0/B0/token");
    let post = posts
        .iter()
        .map(Request::json)
        .find(|p| p["text"].as_str().unwrap().contains("FailoverCompleted"))
        .unwrap();
    let blocks = post["blocks"].as_array().unwrap();
    let types: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["header", "section", "section", "section", "context"]
    );
    assert!(blocks[1]["text"]["text"]
        .as_str()
        .unwrap()
        .contains("completed"));
    let facts = blocks[2]["text"]["text"].as_str().unwrap();
    assert!(
        facts.starts_with(&format!("*Switched*: 127.0.0.1:{old} -> 127.0.0.1:{new}")),
        "{facts}"
    );
    assert!(
        facts.ends_with(&format!(
            "*Timeline*: <http://agent.example:9478/ui/failovers/{failover}|the failover's page>"
        )),
        "{facts}"
    );
    assert!(posts
        .iter()
        .all(|p| !p.json()["text"].as_str().unwrap().contains("(critical)")));

    // The counters say the same; no URL, key or secret in metrics or logs.
    let m = agent.metrics();
    assert!(
        m.value(
            "redis_ha_webhook_deliveries_total",
            &[("receiver", "hook"), ("result", "delivered")]
        )
        .unwrap()
            >= 2.0
    );
    let text = agent.get("/metrics").1 + &agent.log();
    for secret in ["/services/T0/B0/token", "pd-routing-key-0123", SECRET] {
        assert!(!text.contains(secret), "{secret} leaked");
    }
}

/// A sentinel of `group` freezes, TargetDown fires (for 1s); it resumes,
/// TargetDown resolves. The receiver sees `firing` then `resolved`, and
/// nothing else: the rules a frozen sentinel also sets off are off (a
/// sentinel resumed from SIGSTOP enters TILT, as its clock jumped).
const RULES: &str = "  rules:\n    TargetDown: { for: 1s }\n    SentinelQuorumLost: { enabled: false }\n    SentinelsDisagree: { enabled: false }\n    SentinelTilt: { enabled: false }\n";

fn webhook_config(url: &str, extra: &str) -> String {
    format!(
        "alerts:\n  state_dir: \"$DIR/state\"\n{RULES}  receivers:\n    - {{ name: hook, type: webhook, url: \"{url}\", max_backoff: 1s{extra} }}\n"
    )
}

/// A sentinel group whose sentinels freeze and resume in a test without a
/// failover (down-after 60 s).
fn quiet_group() -> SentinelGroup {
    SentinelGroup::start(SentinelOpts {
        down_after_ms: 60_000,
        ..SentinelOpts::default()
    })
}

fn firing_now(agent: &Agent, alertname: &str, sentinel: &str) -> bool {
    agent.json("/api/v1/alerts")["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["alertname"] == alertname && a["labels"]["sentinel"] == sentinel)
}

/// The (alertname, sentinel, status) of each accepted notification.
fn sentinel_alerts(got: &[Request]) -> Vec<(String, String)> {
    got.iter()
        .map(|r| {
            let v = r.json();
            let a = &v["alerts"][0];
            (
                a["labels"]["sentinel"].as_str().unwrap_or("").to_string(),
                a["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Must show 2: the receiver answers 500 for 30 s while four notifications
/// are made; after it recovers every one arrives, in order, exactly once
/// by webhook-id.
#[test]
fn a_failing_receiver_gets_everything_in_order_once_it_recovers() {
    let group = quiet_group();
    let hook = Receiver::start();
    hook.set(Mode::Fail(500, None));
    let failing_since = Instant::now();
    let agent = Agent::start_full(
        &sentinel_deployment("s", &[group.sentinels[0].addr()]),
        &webhook_config(&hook.url("/"), ""),
        &[],
    );
    let (a, b) = (&group.sentinels[1], &group.sentinels[2]);
    let steps: [(&dyn Fn(), &str, bool); 4] = [
        (&|| a.freeze(), &a.addr(), true),
        (&|| b.freeze(), &b.addr(), true),
        (&|| a.resume(), &a.addr(), false),
        (&|| b.resume(), &b.addr(), false),
    ];
    for (step, addr, fires) in steps {
        step();
        agent.wait_until("the alert to change", LONG, |ag| {
            firing_now(ag, "TargetDown", addr) == fires
        });
    }
    let m = agent.metrics();
    assert!(m.value("redis_ha_webhook_queue_length", &[("receiver", "hook")]) >= Some(1.0));
    std::thread::sleep(Duration::from_secs(30).saturating_sub(failing_since.elapsed()));
    assert!(hook.accepted().is_empty());
    let refused = hook.requests().len();
    assert!(refused >= 2, "the agent retried: {refused} attempts");
    hook.set(Mode::Accept);

    hook.wait_for("four notifications", LONG, |got| got.len() >= 4);
    // Anything more would be a duplicate.
    std::thread::sleep(Duration::from_secs(2));
    let got = hook.accepted();
    assert_eq!(
        sentinel_alerts(&got),
        [
            (a.addr(), "firing".into()),
            (b.addr(), "firing".into()),
            (a.addr(), "resolved".into()),
            (b.addr(), "resolved".into()),
        ]
    );
    let mut ids: HashMap<&str, usize> = HashMap::new();
    for r in &got {
        *ids.entry(&r.headers["webhook-id"]).or_default() += 1;
    }
    assert!(ids.values().all(|n| *n == 1), "{ids:?}");
    // Retries carried the same id as the first attempt.
    let first = &hook.requests()[0];
    assert_eq!(first.headers["webhook-id"], got[0].headers["webhook-id"]);
    assert_eq!(first.body, got[0].body);
    agent.wait_metrics("counters", LONG, |m| {
        m.value("redis_ha_webhook_queue_length", &[("receiver", "hook")]) == Some(0.0)
            && m.value(
                "redis_ha_webhook_deliveries_total",
                &[("receiver", "hook"), ("result", "delivered")],
            ) == Some(4.0)
            && m.value(
                "redis_ha_webhook_deliveries_total",
                &[("receiver", "hook"), ("result", "retried")],
            ) >= Some(refused as f64)
    });
}

/// Must show 3: the receiver is down; the agent is killed (SIGKILL) with a
/// notification queued and started again: it is delivered after the restart,
/// once, and the alert that still fires is not notified a second time.
/// The config names no `state_dir`: the queues live where systemd's
/// `StateDirectory=` says (`$STATE_DIRECTORY`), the default.
#[test]
fn queued_notifications_survive_a_kill() {
    let group = quiet_group();
    let port = free_port();
    let config = webhook_config(&format!("http://127.0.0.1:{port}/{URL_TOKEN}"), "");
    let mut agent = Agent::start_full(
        &sentinel_deployment("s", &[group.sentinels[0].addr()]),
        &config.replace("  state_dir: \"$DIR/state\"\n", ""),
        &[("STATE_DIRECTORY", "$DIR/systemd-state")],
    );
    let state = agent.config.parent().unwrap().join("systemd-state");
    let frozen = &group.sentinels[2];
    frozen.freeze();
    agent.wait_metrics("a notification queued", LONG, |m| {
        m.value("redis_ha_webhook_queue_length", &[("receiver", "hook")]) == Some(1.0)
            && m.value(
                "redis_ha_webhook_deliveries_total",
                &[("receiver", "hook"), ("result", "retried")],
            ) >= Some(1.0)
    });
    let queues: Vec<String> = std::fs::read_dir(&state)
        .unwrap_or_else(|e| panic!("{}: {e}", state.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("queue-hook-"))
        .collect();
    assert_eq!(queues.len(), 1, "{queues:?}");
    agent.restart();
    agent.wait_until("ready again", LONG, |a| a.get("/-/ready").0 == 200);
    let hook = Receiver::start_on(port);
    let got = hook.wait_for("the queued notification", LONG, |got| !got.is_empty());
    assert_eq!(
        sentinel_alerts(&got),
        [(frozen.addr(), "firing".to_string())]
    );
    // Still firing after the restart: not notified again.
    std::thread::sleep(Duration::from_secs(4));
    assert!(firing_now(&agent, "TargetDown", &frozen.addr()));
    assert_eq!(
        hook.accepted().len(),
        1,
        "{:?}",
        sentinel_alerts(&hook.accepted())
    );
    frozen.resume();
    let got = hook.wait_for("resolved", LONG, |got| got.len() >= 2);
    assert_eq!(
        sentinel_alerts(&got),
        [
            (frozen.addr(), "firing".to_string()),
            (frozen.addr(), "resolved".to_string())
        ]
    );
    let log = agent.log();
    assert!(log.contains("resuming delivery of queued notifications"));
    assert!(log.contains("delivery failed; retrying"));
    assert!(!log.contains(URL_TOKEN), "the URL's token is in the log");
}

/// A token in a receiver's URL path, as Slack and many webhooks have.
const URL_TOKEN: &str = "hooks/Tk-9f8e7d6c5b4a";

/// Refused (400) is dropped, not retried; 429's `Retry-After` is waited out
/// even beyond `max_backoff`; a request that times out is retried with the
/// same webhook-id.
#[test]
fn refusals_throttling_and_timeouts() {
    let group = quiet_group();
    let hook = Receiver::start();
    hook.set(Mode::Fail(400, None));
    let agent = Agent::start_full(
        &sentinel_deployment("s", &[group.sentinels[0].addr()]),
        &webhook_config(&hook.url("/"), ", timeout: 1s"),
        &[],
    );
    let counter = |m: &support::Metrics, result: &str| {
        m.value(
            "redis_ha_webhook_deliveries_total",
            &[("receiver", "hook"), ("result", result)],
        )
        .unwrap_or(0.0)
    };
    let frozen = &group.sentinels[1];
    frozen.freeze();
    agent.wait_metrics("the refusal", LONG, |m| counter(m, "refused") == 1.0);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(hook.requests().len(), 1, "a 400 is not retried");
    assert_eq!(counter(&agent.metrics(), "retried"), 0.0);

    // 429 with Retry-After: 3 while max_backoff is 1s.
    hook.set(Mode::Fail(429, Some(3)));
    frozen.resume();
    let deadline = Instant::now() + LONG;
    while hook.requests().len() < 4 {
        assert!(Instant::now() < deadline, "no retries after 429");
        std::thread::sleep(Duration::from_millis(50));
    }
    hook.set(Mode::Accept);
    let throttled = hook.requests()[1..4].to_vec();
    for pair in throttled.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(2900), "retried after {gap:?}");
        assert_eq!(pair[0].headers["webhook-id"], pair[1].headers["webhook-id"]);
    }
    let got = hook.wait_for("the resolution", LONG, |got| !got.is_empty());
    assert_eq!(sentinel_alerts(&got), [(frozen.addr(), "resolved".into())]);

    // A receiver that does not answer within the 1 s timeout.
    hook.set(Mode::Hang);
    let before = hook.requests().len();
    frozen.freeze();
    let deadline = Instant::now() + LONG;
    while hook.requests().len() < before + 3 {
        assert!(Instant::now() < deadline, "no retries after timeouts");
        std::thread::sleep(Duration::from_millis(50));
    }
    hook.set(Mode::Accept);
    let got = hook.wait_for("the firing alert", LONG, |got| got.len() >= 2);
    // The first two timed out; the last may have been answered once the
    // receiver accepted again. All carried the same id.
    let tried = hook.requests()[before..].to_vec();
    assert!(tried[..2].iter().all(|r| r.status.is_none()), "{tried:?}");
    assert!(tried
        .iter()
        .all(|r| r.headers["webhook-id"] == got[1].headers["webhook-id"]));
    assert_eq!(
        sentinel_alerts(&got[1..]),
        [(frozen.addr(), "firing".into())]
    );
    assert!(agent.log().contains("(timed out)"));
    frozen.resume();
}

/// Must show 7: a receiver that never answers delays neither another
/// receiver nor the agent's polls.
#[test]
fn a_hanging_receiver_delays_nobody() {
    let group = quiet_group();
    let slow = Receiver::start();
    slow.set(Mode::Hang);
    let fast = Receiver::start();
    let extra = format!(
        "alerts:\n  state_dir: \"$DIR/state\"\n{RULES}  receivers:\n    - {{ name: slow, type: webhook, url: \"{}\", timeout: 60s }}\n    - {{ name: fast, type: webhook, url: \"{}\" }}\n",
        slow.url("/"),
        fast.url("/")
    );
    let agent = Agent::start_full(
        &sentinel_deployment("s", &[group.sentinels[0].addr()]),
        &extra,
        &[],
    );
    let frozen = &group.sentinels[2];
    frozen.freeze();
    fast.wait_for("TargetDown at the fast receiver", LONG, |got| {
        !got.is_empty()
    });
    let waiting = slow.requests();
    assert_eq!(waiting.len(), 1, "the slow receiver holds its request");
    assert_eq!(waiting[0].status, None, "and has not answered it");
    // Polls go on while the request hangs.
    let polled = |a: &Agent| {
        a.metrics()
            .value(
                "redis_ha_target_last_poll_timestamp_seconds",
                &[("sentinel", &group.sentinels[0].addr())],
            )
            .unwrap()
    };
    let before = polled(&agent);
    agent.wait_until("another poll", LONG, |a| polled(a) >= before + 1.0);
    frozen.resume();
    fast.wait_for("resolved at the fast receiver", LONG, |got| got.len() >= 2);
    assert_eq!(slow.requests().len(), 1, "still the first request");
    assert!(slow.requests()[0].status.is_none());
    slow.set(Mode::Accept);
    let got = slow.wait_for("both at the slow receiver", LONG, |got| got.len() >= 2);
    assert_eq!(
        sentinel_alerts(&got),
        [
            (frozen.addr(), "firing".to_string()),
            (frozen.addr(), "resolved".to_string())
        ]
    );
}

/// Must show 4: two agents push the same alert to a real Alertmanager: it
/// lists one; once resolved, it lists none.
#[test]
fn two_agents_push_one_alert_to_alertmanager() {
    let ams = [Alertmanager::start(), Alertmanager::start()];
    let group = quiet_group();
    let extra = format!(
        "alerts:\n  state_dir: \"$DIR/state\"\n{RULES}  receivers:\n    - {{ name: am, type: alertmanager, urls: [\"{}\", \"{}\"], repeat_interval: 2s }}\n",
        ams[0].0.url, ams[1].0.url
    );
    let deployment = sentinel_deployment("s", &[group.sentinels[0].addr()]);
    let one = Agent::start_full(&deployment, &extra, &[]);
    let two = Agent::start_full(&deployment, &extra, &[]);
    let frozen = &group.sentinels[1];
    frozen.freeze();
    let target_down = |am: &Alertmanager| -> Vec<Value> {
        am.alerts()
            .into_iter()
            .filter(|a| a["labels"]["alertname"] == "TargetDown")
            .collect()
    };
    // Each agent pushes to each Alertmanager, then pushes again while the
    // alert fires (repeat_interval 2s).
    for agent in [&one, &two] {
        agent.wait_metrics("pushed twice to each", LONG, |m| {
            ams.iter().all(|am| {
                m.value(
                    "redis_ha_webhook_deliveries_total",
                    &[
                        ("receiver", "am"),
                        ("endpoint", am.0.url.trim_start_matches("http://")),
                        ("result", "delivered"),
                    ],
                ) >= Some(2.0)
            })
        });
    }
    for am in &ams {
        let listed = target_down(am);
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0]["labels"]["sentinel"], frozen.addr().as_str());
        assert_eq!(listed[0]["labels"]["deployment"], "s");
        assert_eq!(listed[0]["status"]["state"], "active");
        assert!(listed[0]["annotations"]["summary"].is_string());
    }

    frozen.resume();
    let deadline = Instant::now() + LONG;
    while ams.iter().any(|am| !target_down(am).is_empty()) {
        assert!(Instant::now() < deadline, "still listed");
        std::thread::sleep(Duration::from_millis(200));
    }
    // And it stays resolved: no agent pushes it again.
    std::thread::sleep(Duration::from_secs(3));
    assert!(ams.iter().all(|am| target_down(am).is_empty()));
}
