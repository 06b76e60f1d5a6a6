//! Counters of the agent's failed writes of its own files, shared by the
//! outputs that write them (the timeline store, the delivery queues) and
//! read by /metrics: data, so that neither output imports the other.

use std::sync::atomic::{AtomicU64, Ordering};

/// Failed writes of the agent's state files since it started, by file, for
/// /metrics. A write that fails (a full disk, a file system gone read-only)
/// is logged and the agent goes on with what it holds in memory: this is
/// how the loss of what would survive a restart shows.
#[derive(Debug, Default)]
pub struct WriteErrors {
    /// Appends to the timeline file (`timelines.path`).
    pub timelines: AtomicU64,
    /// Opening, appending to or compacting a delivery queue under
    /// `alerts.state_dir`.
    pub delivery_queue: AtomicU64,
    /// Saving the firing alerts, `alerts.state_dir/firing.json`.
    pub firing_alerts: AtomicU64,
}

impl WriteErrors {
    /// Each counter with the value of its `file` label.
    pub fn by_file(&self) -> [(&'static str, u64); 3] {
        [
            ("timelines", &self.timelines),
            ("delivery_queue", &self.delivery_queue),
            ("firing_alerts", &self.firing_alerts),
        ]
        .map(|(file, n)| (file, n.load(Ordering::Relaxed)))
    }
}
