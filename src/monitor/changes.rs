//! The monitor's state changes as log lines: each new step of a failover,
//! its end, and each alert firing or resolving, one line each. The log is
//! where an operator without Prometheus (or after the fact, from journald
//! or a pod's log) reads what happened, so every change the agent acts on
//! is there in order, with the same names as the API.

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::model::alert::Transition;
use crate::model::timeline::{MarkName, Timeline};

/// Ended failovers remembered, so that what is learnt after the end (a
/// two-masters window, the canary's figures) does not log the end again.
const ENDED_KEPT: usize = 1024;

/// What has been logged of each failover.
#[derive(Debug, Default)]
pub struct ChangeLog {
    /// Marks logged per open failover, by id.
    marks: HashMap<String, BTreeSet<MarkName>>,
    /// Ids of the failovers whose end was logged, oldest first.
    ended: VecDeque<String>,
}

impl ChangeLog {
    /// Logs what is new in `changed` since the last call.
    pub fn timelines(&mut self, changed: &[Timeline]) {
        for t in changed {
            if self.ended.contains(&t.id) {
                continue;
            }
            let logged = self.marks.entry(t.id.clone()).or_default();
            for m in &t.marks {
                if logged.insert(m.name) {
                    tracing::info!(
                        failover = %t.id,
                        deployment = %t.deployment,
                        shard = %t.shard,
                        mark = m.name.as_str(),
                        reporter = %m.reporter,
                        at = m.at,
                        old_master = t.old_master.as_deref().unwrap_or(""),
                        new_master = t.new_master.as_deref().unwrap_or(""),
                        "failover step"
                    );
                }
            }
            if let Some(outcome) = t.outcome {
                tracing::info!(
                    failover = %t.id,
                    deployment = %t.deployment,
                    shard = %t.shard,
                    outcome = outcome.as_str(),
                    reason = t.abort_reason.as_deref().unwrap_or(""),
                    old_master = t.old_master.as_deref().unwrap_or(""),
                    new_master = t.new_master.as_deref().unwrap_or(""),
                    seconds = t.duration().unwrap_or(0.0),
                    "failover ended"
                );
                self.marks.remove(&t.id);
                if self.ended.len() == ENDED_KEPT {
                    self.ended.pop_front();
                }
                self.ended.push_back(t.id.clone());
            }
        }
    }

    /// Logs each alert that started firing or resolved.
    pub fn alerts(&self, transitions: &[Transition]) {
        for tr in transitions {
            let a = &tr.alert;
            let labels = a
                .labels
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "alertname" | "severity"))
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            let status = if tr.resolved_at.is_some() {
                "resolved"
            } else {
                "firing"
            };
            tracing::info!(
                alertname = %a.rule,
                severity = a.severity.as_str(),
                status,
                labels = %labels,
                summary = a.annotations.get("summary").map_or("", String::as_str),
                "alert {status}"
            );
        }
    }
}
