//! Scenario 4: the results of `cargo bench --bench parse` (criterion), read
//! from criterion's output directory (`<target>/criterion/<group>/<n>/new/`).

use std::path::Path;

use serde_json::Value;

use crate::stats::{summarize, Summary};

#[derive(Debug, Clone)]
pub struct BenchResult {
    pub group: String,
    /// The parameter: nodes.
    pub nodes: u64,
    /// Elements per iteration (nodes parsed/rendered, or 1 poll).
    pub elements: u64,
    /// Seconds per iteration, over criterion's samples (each sample's mean).
    pub per_iter: Summary,
}

impl BenchResult {
    /// Seconds per element.
    pub fn per_element(&self) -> Summary {
        let e = self.elements.max(1) as f64;
        let s = self.per_iter;
        Summary {
            median: s.median / e,
            p99: s.p99 / e,
            min: s.min / e,
            max: s.max / e,
            mean: s.mean / e,
            ..s
        }
    }
}

/// Every benchmark under `dir`, sorted by group and size; empty when
/// criterion has not run.
pub fn read(dir: &Path) -> Vec<BenchResult> {
    let mut found = Vec::new();
    walk(dir, &mut found);
    found.sort_by(|a, b| (&a.group, a.nodes).cmp(&(&b.group, b.nodes)));
    found
}

fn walk(dir: &Path, found: &mut Vec<BenchResult>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if path.file_name().is_some_and(|n| n == "new") {
            if let Some(r) = load(&path) {
                found.push(r);
            }
        } else if path.file_name().is_some_and(|n| n != "report") {
            walk(&path, found);
        }
    }
}

fn load(new: &Path) -> Option<BenchResult> {
    let read = |f: &str| -> Option<Value> {
        serde_json::from_str(&std::fs::read_to_string(new.join(f)).ok()?).ok()
    };
    let bench = read("benchmark.json")?;
    let sample = read("sample.json")?;
    let iters = sample["iters"].as_array()?;
    let times = sample["times"].as_array()?;
    let per_iter: Vec<f64> = iters
        .iter()
        .zip(times)
        .filter_map(|(i, t)| Some(t.as_f64()? / i.as_f64()? / 1e9))
        .collect();
    Some(BenchResult {
        group: bench["group_id"].as_str()?.to_string(),
        nodes: bench["value_str"].as_str()?.parse().ok()?,
        elements: bench["throughput"]["Elements"].as_u64().unwrap_or(1),
        per_iter: summarize(&per_iter)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_criterion_output() {
        let dir = std::env::temp_dir().join(format!("bench-criterion-{}", std::process::id()));
        let new = dir.join("cluster_nodes/100/new");
        std::fs::create_dir_all(&new).unwrap();
        std::fs::create_dir_all(dir.join("cluster_nodes/report")).unwrap();
        std::fs::write(
            new.join("benchmark.json"),
            r#"{"group_id":"cluster_nodes","function_id":null,"value_str":"100","throughput":{"Elements":100}}"#,
        )
        .unwrap();
        std::fs::write(
            new.join("sample.json"),
            r#"{"sampling_mode":"Linear","iters":[10.0,20.0],"times":[1000000.0,4000000.0]}"#,
        )
        .unwrap();
        let results = read(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(results.len(), 1);
        let r = &results[0];
        assert_eq!(
            (r.group.as_str(), r.nodes, r.elements),
            ("cluster_nodes", 100, 100)
        );
        assert!((r.per_iter.min - 100e-6).abs() < 1e-12);
        assert!((r.per_iter.max - 200e-6).abs() < 1e-12);
        assert!((r.per_element().max - 2e-6).abs() < 1e-12);
    }
}
