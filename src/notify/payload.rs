//! The request body each kind of receiver expects, for one transition (or,
//! for Alertmanager, the alerts firing now).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::config::ReceiverKind;
use crate::model::alert::{Alert, Transition};

/// Alertmanager's "not set" time: a firing alert's `endsAt`.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
/// PagerDuty refuses a longer summary.
const PAGERDUTY_SUMMARY_MAX: usize = 1024;

/// The last second RFC 3339 can write (9999-12-31T23:59:59Z).
const LAST_SECOND: f64 = 253_402_300_799.0;

/// RFC 3339 with milliseconds, as Alertmanager writes times. Times out of
/// range (from an edited state file) are clamped, never a panic.
pub fn rfc3339(unix: f64) -> String {
    let secs = if unix.is_finite() {
        unix.clamp(0.0, LAST_SECOND)
    } else {
        0.0
    };
    let t = UNIX_EPOCH + Duration::from_secs_f64(secs);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Seconds since the epoch now.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn status(t: &Transition) -> &'static str {
    if t.resolved_at.is_some() {
        "resolved"
    } else {
        "firing"
    }
}

fn summary(a: &Alert) -> &str {
    a.annotations.get("summary").map_or("", String::as_str)
}

/// What a person needs first about a failover: what switched to what, how
/// long writes failed, what was lost, where to read the rest. Read from the
/// annotations of the failover's event alerts; empty for other alerts.
/// The canary's figures are what clients saw; without the canary, the
/// agent's own: the old master's last answer to the switch, and the bytes
/// the new master lacked.
fn failover_facts(a: &Alert) -> Vec<(&'static str, String)> {
    let get = |k: &str| a.annotations.get(k).map(String::as_str);
    let mut facts = Vec::new();
    if let (Some(old), Some(new)) = (get("old_master"), get("new_master")) {
        let epoch = get("epoch").map_or(String::new(), |e| format!(" (epoch {e})"));
        facts.push(("Switched", format!("{old} -> {new}{epoch}")));
    }
    let failed = match (
        get("canary_write_unavailable_seconds"),
        get("phase_outage_seconds"),
    ) {
        (Some(s), _) => Some(format!("{} (canary)", seconds(s))),
        (None, Some(s)) => Some(format!(
            "~{} (old master's last answer to the switch)",
            seconds(s)
        )),
        _ => None,
    };
    if let Some(failed) = failed {
        facts.push(("Writes failed", failed));
    }
    let lost = match (get("canary_lost_writes"), get("unreplicated_bytes")) {
        (Some(n), _) => Some(format!("{n} acknowledged writes (canary)")),
        (None, Some(b)) => Some(format!("up to {b} bytes the new master lacked")),
        _ => None,
    };
    if let Some(lost) = lost {
        facts.push(("Lost", lost));
    }
    if let Some(url) = get("failover_url") {
        facts.push(("Timeline", url.to_string()));
    }
    facts
}

/// `1.234` as `1.2s`; anything else as it is.
fn seconds(s: &str) -> String {
    s.parse::<f64>()
        .map_or_else(|_| s.to_string(), |v| format!("{v:.1}s"))
}

/// The one line a pager shows: the summary, then the facts it lacks.
fn headline(a: &Alert) -> String {
    let mut line = format!("{}: {}", a.rule, summary(a));
    for (name, fact) in failover_facts(a) {
        if name != "Timeline" && name != "Switched" {
            line.push_str(&format!("; {} {fact}", name.to_lowercase()));
        }
    }
    line
}

fn generator_url(external_url: &str) -> String {
    if external_url.is_empty() {
        String::new()
    } else {
        format!("{}/api/v1/alerts", external_url.trim_end_matches('/'))
    }
}

/// The body for one transition. PagerDuty's `routing_key` is added when
/// sending ([`with_routing_key`]), so that it is never written to disk.
pub fn render(kind: ReceiverKind, receiver: &str, t: &Transition, external_url: &str) -> Value {
    match kind {
        ReceiverKind::Webhook => webhook(receiver, t, external_url),
        ReceiverKind::Slack => slack(t),
        ReceiverKind::Pagerduty => pagerduty(t, external_url),
        ReceiverKind::Alertmanager => {
            json!([alertmanager_alert(&t.alert, t.resolved_at, external_url)])
        }
    }
}

/// The Alertmanager webhook JSON, version 4, one alert per notification.
fn webhook(receiver: &str, t: &Transition, external_url: &str) -> Value {
    let a = &t.alert;
    json!({
        "version": "4",
        "groupKey": format!("{{}}/{receiver}:{{fingerprint=\"{}\"}}", a.fingerprint),
        "truncatedAlerts": 0,
        "status": status(t),
        "receiver": receiver,
        "groupLabels": { "alertname": a.rule.to_string() },
        "commonLabels": a.labels,
        "commonAnnotations": a.annotations,
        "externalURL": external_url,
        "alerts": [{
            "status": status(t),
            "labels": a.labels,
            "annotations": a.annotations,
            "startsAt": rfc3339(a.since),
            "endsAt": t.resolved_at.map_or(ZERO_TIME.to_string(), rfc3339),
            "generatorURL": generator_url(external_url),
            "fingerprint": a.fingerprint,
        }],
    })
}

/// A Slack incoming-webhook message: `text` for notifications and clients
/// without blocks, `blocks` for the channel.
fn slack(t: &Transition) -> Value {
    let a = &t.alert;
    let state = status(t).to_uppercase();
    let text = format!(
        "[{state}] {} ({}): {}",
        a.rule,
        a.severity.as_str(),
        summary(a)
    );
    let mut fields: Vec<Value> = a
        .labels
        .iter()
        .filter(|(k, _)| *k != "alertname")
        .map(|(k, v)| json!({ "type": "mrkdwn", "text": format!("*{k}*\n{v}") }))
        .collect();
    // Slack takes at most 10 fields per section.
    fields.truncate(10);
    let mut context = format!("since {}", rfc3339(a.since));
    if let Some(end) = t.resolved_at {
        context.push_str(&format!(", resolved {}", rfc3339(end)));
    }
    if let Some(url) = a.annotations.get("runbook_url") {
        context.push_str(&format!(" | <{url}|runbook>"));
    }
    let mut blocks = vec![
        json!({ "type": "header", "text": { "type": "plain_text", "text": format!("{state}: {}", a.rule) } }),
        json!({ "type": "section", "text": { "type": "mrkdwn", "text": summary(a) } }),
    ];
    // A failover's facts come first, one line each, the timeline linked.
    let facts: Vec<String> = failover_facts(a)
        .into_iter()
        .map(|(name, fact)| match name {
            "Timeline" => format!("*{name}*: <{fact}|the failover's page>"),
            _ => format!("*{name}*: {fact}"),
        })
        .collect();
    if !facts.is_empty() {
        blocks.push(
            json!({ "type": "section", "text": { "type": "mrkdwn", "text": facts.join("\n") } }),
        );
    }
    blocks.push(json!({ "type": "section", "fields": fields }));
    blocks
        .push(json!({ "type": "context", "elements": [ { "type": "mrkdwn", "text": context } ] }));
    json!({ "text": text, "blocks": blocks })
}

/// A PagerDuty Events API v2 event: trigger, or resolve by `dedup_key`.
fn pagerduty(t: &Transition, external_url: &str) -> Value {
    let a = &t.alert;
    if t.resolved_at.is_some() {
        return json!({ "event_action": "resolve", "dedup_key": a.fingerprint });
    }
    let mut summary = headline(a);
    if summary.len() > PAGERDUTY_SUMMARY_MAX {
        let mut end = PAGERDUTY_SUMMARY_MAX;
        while !summary.is_char_boundary(end) {
            end -= 1;
        }
        summary.truncate(end);
    }
    let label = |k: &str| a.labels.get(k).cloned();
    let mut event = json!({
        "event_action": "trigger",
        "dedup_key": a.fingerprint,
        "payload": {
            "summary": summary,
            "source": label("deployment").unwrap_or_else(|| "redis-ha-exporter".into()),
            "severity": a.severity.as_str(),
            "timestamp": rfc3339(a.since),
            "class": a.rule.to_string(),
            "custom_details": { "labels": a.labels, "annotations": a.annotations },
        },
        "client": "redis-ha-exporter",
    });
    // Optional fields are left out rather than sent as null.
    let component = label("node")
        .or_else(|| label("sentinel"))
        .or_else(|| label("shard"));
    for (key, value) in [("component", component), ("group", label("deployment"))] {
        if let Some(v) = value {
            event["payload"][key] = v.into();
        }
    }
    if !external_url.is_empty() {
        event["client_url"] = external_url.into();
    }
    if let Some(url) = a.annotations.get("failover_url") {
        event["links"] = json!([{ "href": url, "text": "The failover's timeline" }]);
    }
    event
}

/// Adds PagerDuty's routing key to a stored event.
pub fn with_routing_key(body: &str, key: &str) -> Option<String> {
    let mut v: Map<String, Value> = serde_json::from_str(body).ok()?;
    v.insert("routing_key".into(), key.into());
    serde_json::to_string(&v).ok()
}

/// One alert as `POST /api/v2/alerts` takes it. A firing alert has no
/// `endsAt`: Alertmanager then resolves it by itself if the agent stops
/// re-sending it (after its `resolve_timeout`).
pub fn alertmanager_alert(a: &Alert, resolved_at: Option<f64>, external_url: &str) -> Value {
    let mut v = json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "startsAt": rfc3339(a.since),
    });
    // Alertmanager checks the field as a URI: an empty one is refused.
    if !external_url.is_empty() {
        v["generatorURL"] = generator_url(external_url).into();
    }
    if let Some(end) = resolved_at {
        v["endsAt"] = rfc3339(end).into();
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RuleName, Severity};

    fn transition(resolved_at: Option<f64>) -> Transition {
        let alert = Alert {
            rule: RuleName::TargetDown,
            severity: Severity::Warning,
            labels: [
                ("alertname", "TargetDown"),
                ("severity", "warning"),
                ("deployment", "d"),
                ("node", "127.0.0.1:7000"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            annotations: [("summary".to_string(), "x".repeat(2000))].into(),
            since: 1_700_000_000.5,
            fingerprint: "00112233aabbccdd".into(),
        };
        Transition {
            alert,
            resolved_at,
            until: None,
        }
    }

    #[test]
    fn times_are_rfc3339_with_milliseconds() {
        assert_eq!(rfc3339(1_700_000_000.5), "2023-11-14T22:13:20.500Z");
        assert_eq!(rfc3339(1e300), "9999-12-31T23:59:59.000Z");
        assert_eq!(rfc3339(f64::NAN), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(-5.0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn pagerduty_summary_is_cut_to_its_limit_and_resolve_is_minimal() {
        let v = render(ReceiverKind::Pagerduty, "p", &transition(None), "");
        assert_eq!(v["payload"]["summary"].as_str().unwrap().len(), 1024);
        assert_eq!(v["payload"]["component"], "127.0.0.1:7000");
        let r = render(ReceiverKind::Pagerduty, "p", &transition(Some(1.0)), "");
        assert_eq!(
            r,
            json!({ "event_action": "resolve", "dedup_key": "00112233aabbccdd" })
        );
        let keyed: Value =
            serde_json::from_str(&with_routing_key(&r.to_string(), "KEY").unwrap()).unwrap();
        assert_eq!(keyed["routing_key"], "KEY");
    }

    #[test]
    fn alertmanager_alerts_end_only_when_resolved() {
        let firing = render(
            ReceiverKind::Alertmanager,
            "a",
            &transition(None),
            "http://x/",
        );
        assert!(firing[0].get("endsAt").is_none());
        assert_eq!(firing[0]["generatorURL"], "http://x/api/v1/alerts");
        let resolved = render(
            ReceiverKind::Alertmanager,
            "a",
            &transition(Some(1_700_000_001.0)),
            "",
        );
        assert_eq!(resolved[0]["endsAt"], "2023-11-14T22:13:21.000Z");
    }

    /// A completed failover with the canary on, as the engine raises it.
    fn completed() -> Transition {
        let pairs = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let alert = Alert {
            rule: RuleName::FailoverCompleted,
            severity: Severity::Warning,
            labels: pairs(&[
                ("alertname", "FailoverCompleted"),
                ("severity", "warning"),
                ("deployment", "d"),
                ("shard", "mymaster"),
                ("failover", "d:mymaster:e7"),
            ]),
            annotations: pairs(&[
                (
                    "summary",
                    "failover of mymaster completed in 6.1s: 10.0.0.1:6379 -> 10.0.0.2:6379",
                ),
                ("old_master", "10.0.0.1:6379"),
                ("new_master", "10.0.0.2:6379"),
                ("epoch", "7"),
                ("phase_outage_seconds", "5.020"),
                ("unreplicated_bytes", "120"),
                ("canary_write_unavailable_seconds", "4.875"),
                ("canary_lost_writes", "3"),
                ("failover_url", "http://mon:9478/ui/failovers/d:mymaster:e7"),
            ]),
            since: 1_700_000_006.0,
            fingerprint: "aa".into(),
        };
        Transition {
            alert,
            resolved_at: None,
            until: Some(1_700_000_306.0),
        }
    }

    #[test]
    fn failover_alerts_lead_with_the_switch_the_outage_the_loss_and_the_link() {
        let t = completed();
        let url = "http://mon:9478/ui/failovers/d:mymaster:e7";
        let slack = render(ReceiverKind::Slack, "s", &t, "");
        let facts = slack["blocks"][2]["text"]["text"].as_str().unwrap();
        assert_eq!(
            facts,
            format!(
                "*Switched*: 10.0.0.1:6379 -> 10.0.0.2:6379 (epoch 7)\n\
                 *Writes failed*: 4.9s (canary)\n\
                 *Lost*: 3 acknowledged writes (canary)\n\
                 *Timeline*: <{url}|the failover's page>"
            )
        );
        let pd = render(ReceiverKind::Pagerduty, "p", &t, "http://mon:9478");
        assert_eq!(
            pd["payload"]["summary"],
            "FailoverCompleted: failover of mymaster completed in 6.1s: 10.0.0.1:6379 -> 10.0.0.2:6379; \
             writes failed 4.9s (canary); lost 3 acknowledged writes (canary)"
        );
        assert_eq!(pd["links"][0]["href"], url);
        assert_eq!(
            pd["payload"]["custom_details"]["annotations"]["new_master"],
            "10.0.0.2:6379"
        );
        let hook = render(ReceiverKind::Webhook, "w", &t, "http://mon:9478");
        assert_eq!(hook["alerts"][0]["annotations"]["failover_url"], url);
        assert_eq!(hook["alerts"][0]["labels"]["failover"], "d:mymaster:e7");
        let am = render(ReceiverKind::Alertmanager, "a", &t, "http://mon:9478");
        assert_eq!(am[0]["annotations"]["failover_url"], url);
        assert_eq!(am[0]["annotations"]["canary_lost_writes"], "3");
    }

    #[test]
    fn without_the_canary_the_agents_own_figures_say_what_failed_and_what_was_at_risk() {
        let mut t = completed();
        let a = &mut t.alert.annotations;
        for k in [
            "canary_write_unavailable_seconds",
            "canary_lost_writes",
            "failover_url",
            "epoch",
        ] {
            a.remove(k);
        }
        let facts: Vec<String> = failover_facts(&t.alert)
            .into_iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        assert_eq!(
            facts,
            [
                "Switched: 10.0.0.1:6379 -> 10.0.0.2:6379",
                "Writes failed: ~5.0s (old master's last answer to the switch)",
                "Lost: up to 120 bytes the new master lacked",
            ]
        );
        let pd = render(ReceiverKind::Pagerduty, "p", &t, "");
        assert!(pd.get("links").is_none());
        // Other alerts carry no such facts.
        assert!(failover_facts(&transition(None).alert).is_empty());
        let slack = render(ReceiverKind::Slack, "s", &transition(None), "");
        assert_eq!(slack["blocks"].as_array().unwrap().len(), 4);
    }
}
