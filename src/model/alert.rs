//! Alerts as the monitor fires them and delivery sends them: plain data,
//! kept across restarts in `firing.json`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{RuleName, Severity};

/// The page of one failover in the agent's web UI, under the agent's URL as
/// on-call people reach it (`alerts.external_url`): what notifications
/// link to. `None` when that URL cannot take a path.
pub fn failover_page(external_url: &str, id: &str) -> Option<String> {
    let mut url = url::Url::parse(external_url).ok()?;
    url.path_segments_mut()
        .ok()?
        .pop_if_empty()
        .extend(["ui", "failovers", id]);
    Some(url.into())
}

/// An alert firing now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The rule.
    #[serde(rename = "alertname")]
    pub rule: RuleName,
    /// `critical`, `warning` or `info`.
    pub severity: Severity,
    /// Identifying labels (alertname and severity included).
    pub labels: BTreeMap<String, String>,
    /// Summary and description, plus configured extras.
    pub annotations: BTreeMap<String, String>,
    /// When it started firing (unix seconds).
    pub since: f64,
    /// Stable id from the labels: the same condition is the same alert.
    pub fingerprint: String,
}

/// An alert that started firing, or stopped: one notification each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// The alert as it was at the transition.
    pub alert: Alert,
    /// When it resolved (unix seconds); `None` when it started firing.
    pub resolved_at: Option<f64>,
    /// Event alerts: when they resolve by themselves.
    pub until: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failover_pages_sit_under_the_external_url_with_the_id_encoded() {
        assert_eq!(
            failover_page("http://mon.example:9478", "d:my master/1:1700000000123").as_deref(),
            Some("http://mon.example:9478/ui/failovers/d:my%20master%2F1:1700000000123")
        );
        assert_eq!(
            failover_page("https://x.example/redis/", "a:b:1").as_deref(),
            Some("https://x.example/redis/ui/failovers/a:b:1")
        );
        assert_eq!(failover_page("not a url", "a:b:1"), None);
    }
}
