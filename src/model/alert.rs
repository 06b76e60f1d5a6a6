//! Alerts as the monitor fires them and delivery sends them: plain data,
//! kept across restarts in `firing.json`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{RuleName, Severity};

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
