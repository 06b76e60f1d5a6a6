//! The `findings` section: how often the settings the findings read are
//! read, and when an entry Sentinel remembers counts as stale.

use std::time::Duration;

use serde::Deserialize;

use super::yaml::duration;

/// How the findings (docs/findings.md) are made.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Findings {
    /// How often each data node's settings (`CONFIG GET`) are read. They
    /// change by hand, rarely: a slow cadence costs the server nothing.
    #[serde(default = "default_settings_interval", deserialize_with = "duration")]
    pub settings_interval: Duration,
    /// How long a sentinel or replica a sentinel knows may be down before
    /// it is a stale entry (`stale_sentinel`, `stale_replica`).
    #[serde(default = "default_stale_after", deserialize_with = "duration")]
    pub stale_after: Duration,
    /// How many slots with the most keys each cluster master is asked for
    /// (`CLUSTER SLOT-STATS`, where the server has it), and how many the
    /// metrics show per cluster: a bound on their series.
    #[serde(default = "default_hot_slots")]
    pub hot_slots: usize,
}

impl Default for Findings {
    fn default() -> Self {
        Findings {
            settings_interval: default_settings_interval(),
            stale_after: default_stale_after(),
            hot_slots: default_hot_slots(),
        }
    }
}

fn default_hot_slots() -> usize {
    10
}

fn default_settings_interval() -> Duration {
    Duration::from_secs(60)
}

/// Longer than any failover or restart takes, so only entries gone for
/// good are named.
fn default_stale_after() -> Duration {
    Duration::from_secs(30 * 60)
}
