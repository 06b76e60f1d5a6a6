//! The dashboards of `dashboards/` and the Prometheus rules of `alerts/`,
//! checked without servers: complete panels, documented metrics only, and
//! rules that match the agent's built-in ones. (tests/prometheus.rs runs
//! them against a real Prometheus.)

mod support;

use std::collections::BTreeSet;

use redis_ha_exporter::config::RuleName;
use serde_json::{json, Value};
use support::dashboards::{family_of, load, metric_names, problems, queries};
use support::documented_families;

#[test]
fn every_panel_is_complete_and_reads_documented_metrics() {
    let documented = documented_families();
    let mut found = Vec::new();
    for (name, d) in load() {
        found.extend(problems(&name, &d, &documented));
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The check above fails on each defect it looks for.
#[test]
fn the_dashboard_check_catches_each_defect() {
    let documented = documented_families();
    let (name, mut d) = load().remove(0);
    assert!(problems(&name, &d, &documented).is_empty());
    let mut panels: Vec<&mut Value> = d["panels"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .filter(|p| p["type"] != "row")
        .collect();
    panels[0]["targets"][0]["expr"] = json!("rate(redis_ha_no_such_thing_total[5m])");
    panels[1]["fieldConfig"]["defaults"]
        .as_object_mut()
        .unwrap()
        .remove("unit");
    panels[2]["datasource"] = json!({"type": "prometheus", "uid": "P1809F7CD0C75ACF3"});
    panels[3]["title"] = json!("");
    panels[4]["description"] = json!("");
    panels[5]["targets"][0]["datasource"] = Value::Null;
    d["schemaVersion"] = json!(27);
    let found = problems(&name, &d, &documented).join("\n");
    for defect in [
        "redis_ha_no_such_thing_total is not in docs/metrics.md",
        "range [5m] is neither",
        "no unit",
        "datasource is not ${datasource}",
        "no title",
        "no description",
        "a query's datasource is not ${datasource}",
        "schemaVersion below 39",
    ] {
        assert!(found.contains(defect), "{defect:?} not caught in:\n{found}");
    }
}

/// Together the dashboards show every family the agent serves.
#[test]
fn the_dashboards_show_every_family() {
    let documented = documented_families();
    let shown: BTreeSet<String> = load()
        .iter()
        .flat_map(|(name, d)| queries(name, d))
        .flat_map(|q| metric_names(&q.expr))
        .filter_map(|m| family_of(&m, &documented).map(str::to_string))
        .collect();
    let missing: Vec<&String> = documented.keys().filter(|f| !shown.contains(*f)).collect();
    assert!(missing.is_empty(), "in no dashboard: {missing:?}");
}

/// The rules of alerts/redis-ha.rules.yml: (alert, expr, severity, for,
/// annotations).
fn prometheus_rules() -> Vec<serde_yaml::Value> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/alerts/redis-ha.rules.yml"
    ))
    .unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    doc["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().clone())
        .collect()
}

fn seconds(d: &str) -> u64 {
    let (n, unit) = d.split_at(d.len() - 1);
    let n: u64 = n.parse().unwrap();
    match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => panic!("duration {d}"),
    }
}

/// Every built-in rule of the agent has a Prometheus rule of the same name,
/// severity and `for`; every rule reads documented metrics and links to its
/// entry in docs/alerts.md.
#[test]
fn the_prometheus_rules_match_the_agents_rules() {
    let rules = prometheus_rules();
    let documented = documented_families();
    let alerts_doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/alerts.md")).unwrap();
    for (rule, severity, for_) in redis_ha_exporter::monitor::alerts::rules::DEFAULTS {
        let name = rule.to_string();
        let r = rules
            .iter()
            .find(|r| r["alert"].as_str() == Some(&name))
            .unwrap_or_else(|| panic!("no Prometheus rule {name}"));
        assert_eq!(
            r["labels"]["severity"].as_str(),
            Some(severity.as_str()),
            "{name}"
        );
        // OpenSlotsStuck's `open_for` (10m) is a `for` in PromQL terms.
        let expected = match rule {
            RuleName::OpenSlotsStuck => 600,
            _ => *for_,
        };
        let got = r["for"].as_str().map_or(0, seconds);
        assert_eq!(got, expected, "`for` of {name}");
    }
    for r in &rules {
        let name = r["alert"].as_str().unwrap();
        let expr = r["expr"].as_str().unwrap();
        for m in metric_names(expr) {
            assert!(
                family_of(&m, &documented).is_some(),
                "{name} reads {m}, not in docs/metrics.md"
            );
        }
        for key in ["summary", "description", "runbook_url"] {
            assert!(
                r["annotations"][key]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{name} has no {key}"
            );
        }
        let url = r["annotations"]["runbook_url"].as_str().unwrap();
        let anchor = url
            .split_once("docs/alerts.md#")
            .map(|(_, a)| a)
            .unwrap_or_else(|| panic!("{name}: runbook_url {url} is not docs/alerts.md#..."));
        assert_eq!(anchor, name.to_lowercase());
        assert!(
            alerts_doc.contains(&format!("<a id=\"{anchor}\"></a>")),
            "docs/alerts.md has no anchor {anchor}"
        );
    }
}

/// alerts/redis-ha.test.yml tests every rule with a case where it fires and
/// one where it must not (promtool runs them: tests/prometheus.rs).
#[test]
fn every_prometheus_rule_has_a_firing_and_a_quiet_case() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/alerts/redis-ha.test.yml"
    ))
    .unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let cases: Vec<&serde_yaml::Value> = doc["tests"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_sequence().unwrap())
        .collect();
    for r in prometheus_rules() {
        let name = r["alert"].as_str().unwrap();
        let of_rule = |firing: bool| {
            cases.iter().any(|c| {
                c["alertname"].as_str() == Some(name)
                    && c["exp_alerts"]
                        .as_sequence()
                        .is_some_and(|a| a.is_empty() != firing)
            })
        };
        assert!(of_rule(true), "no case where {name} fires");
        assert!(of_rule(false), "no case where {name} must not fire");
    }
}
