//! The Grafana dashboards of `dashboards/`: every PromQL query they hold,
//! and the checks each one must pass to be importable and honest (a
//! templated datasource, a unit, a title, documented metrics only).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::Value;

use super::Documented;

/// One PromQL expression of a dashboard and where it sits.
#[derive(Debug)]
pub struct Query {
    /// "<file>: <panel title>" (or "annotation <name>").
    pub place: String,
    pub expr: String,
}

/// Every dashboard file (name, parsed JSON), in name order.
pub fn load() -> Vec<(String, Value)> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboards in {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).unwrap();
            let json =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
            (name, json)
        })
        .collect()
}

/// Panels, with the panels of collapsed rows, rows included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        all.push(p);
        all.extend(p["panels"].as_array().into_iter().flatten());
    }
    all
}

fn is_row(p: &Value) -> bool {
    p["type"] == "row"
}

/// The queries of every panel and annotation (not the variables').
pub fn queries(name: &str, d: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    for p in panels(d).into_iter().filter(|p| !is_row(p)) {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(Query {
                place: format!("{name}: {}", p["title"].as_str().unwrap_or("?")),
                expr: t["expr"].as_str().unwrap_or("").to_string(),
            });
        }
    }
    for a in d["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(expr) = a["expr"].as_str() {
            out.push(Query {
                place: format!("{name}: annotation {}", a["name"].as_str().unwrap_or("?")),
                expr: expr.to_string(),
            });
        }
    }
    out
}

/// The `label_values(<selector>, <label>)` queries of the variables:
/// (variable, selector, label).
pub fn variables(d: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] != "query" {
            continue;
        }
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap_or("");
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'));
        if let Some((selector, label)) = inner.and_then(|i| i.rsplit_once(',')) {
            out.push((
                v["name"].as_str().unwrap_or("").to_string(),
                selector.trim().to_string(),
                label.trim().to_string(),
            ));
        }
    }
    out
}

/// The `redis_ha_` metric names an expression reads, as written (a
/// histogram's `_bucket`, `_sum`, `_count` included).
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("redis_ha_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

/// The family a series name belongs to, if docs/metrics.md lists it.
pub fn family_of<'a>(name: &'a str, documented: &BTreeMap<String, Documented>) -> Option<&'a str> {
    if documented.contains_key(name) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|suffix| name.strip_suffix(suffix))
        .find(|base| documented.get(*base).is_some_and(|d| d.kind == "histogram"))
}

/// The ranges (`[...]`) an expression selects.
fn ranges(expr: &str) -> Vec<&str> {
    expr.split('[')
        .skip(1)
        .filter_map(|s| s.split_once(']').map(|(r, _)| r))
        .collect()
}

fn templated(ds: &Value) -> bool {
    ds["uid"] == "${datasource}" || ds.as_str() == Some("${datasource}")
}

/// What is wrong with a dashboard: each problem names the panel.
pub fn problems(name: &str, d: &Value, documented: &BTreeMap<String, Documented>) -> Vec<String> {
    let mut out = Vec::new();
    if d["schemaVersion"].as_u64().unwrap_or(0) < 39 {
        out.push(format!("{name}: schemaVersion below 39"));
    }
    for key in ["uid", "title", "description"] {
        if d[key].as_str().is_none_or(str::is_empty) {
            out.push(format!("{name}: no {key}"));
        }
    }
    let vars = d["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let var = |n: &str| vars.iter().find(|v| v["name"] == n);
    match var("datasource") {
        Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
        _ => out.push(format!("{name}: no prometheus `datasource` variable")),
    }
    for n in ["deployment", "shard"] {
        match var(n) {
            Some(v) if v["type"] == "query" && templated(&v["datasource"]) => {}
            _ => out.push(format!(
                "{name}: no `{n}` query variable on the templated datasource"
            )),
        }
    }
    let mut ids = BTreeSet::new();
    for p in panels(d) {
        let title = p["title"].as_str().unwrap_or("");
        let at = format!(
            "{name}: panel {:?}",
            if title.is_empty() { "?" } else { title }
        );
        if !ids.insert(p["id"].as_u64()) {
            out.push(format!("{at}: duplicate id"));
        }
        if title.is_empty() {
            out.push(format!("{at}: no title"));
        }
        if is_row(p) {
            continue;
        }
        if p["description"].as_str().is_none_or(str::is_empty) {
            out.push(format!("{at}: no description"));
        }
        if !templated(&p["datasource"]) {
            out.push(format!("{at}: datasource is not ${{datasource}}"));
        }
        if p["fieldConfig"]["defaults"]["unit"]
            .as_str()
            .is_none_or(str::is_empty)
        {
            out.push(format!("{at}: no unit"));
        }
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            out.push(format!("{at}: no query"));
        }
        for t in &targets {
            if !templated(&t["datasource"]) {
                out.push(format!("{at}: a query's datasource is not ${{datasource}}"));
            }
        }
    }
    let mut exprs: Vec<(String, String)> = queries(name, d)
        .into_iter()
        .map(|q| (q.place, q.expr))
        .collect();
    exprs.extend(
        variables(d)
            .into_iter()
            .map(|(v, selector, _)| (format!("{name}: variable {v}"), selector)),
    );
    for (place, expr) in exprs {
        if expr.trim().is_empty() {
            out.push(format!("{place}: empty query"));
        }
        for m in metric_names(&expr) {
            if family_of(&m, documented).is_none() {
                out.push(format!("{place}: {m} is not in docs/metrics.md"));
            }
        }
        for r in ranges(&expr) {
            if r != "$__rate_interval" && r != "$__range" {
                out.push(format!(
                    "{place}: range [{r}] is neither $__rate_interval nor $__range"
                ));
            }
        }
    }
    out
}

/// A query as Grafana sends it, for a dashboard showing the last
/// `range_secs` with every deployment and shard selected.
pub fn substitute(expr: &str, range_secs: u64) -> String {
    expr.replace("$__rate_interval", "5s")
        .replace("$__range", &format!("{range_secs}s"))
        .replace("$__interval", "1s")
        .replace("$deployment", ".*")
        .replace("$shard", ".*")
}
