//! The monitor's task: applies every input waiting, publishes one snapshot
//! per batch, hands on what must outlive it and logs each state change.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::time::{Duration, Instant};

use super::changes::ChangeLog;
use super::Monitor;
use crate::model::alert::Transition;
use crate::model::snapshot::Snapshot;
use crate::model::timeline::Timeline;
use crate::model::Input;

/// Inputs applied at most per batch: a burst of polls costs one step and
/// one snapshot, and a snapshot is never more than this many inputs late.
const BATCH: usize = 256;

/// Least time between two steps. The polls of a large deployment arrive
/// spread over the interval, one or two at a time: stepping for each would
/// publish a snapshot per poll (about 700 a second at 1000 nodes). Waiting
/// this long after the previous step gathers them in batches, at most 100
/// steps a second, and adds nothing when inputs are rarer than this. A
/// batch holding a sentinel event does not wait: events are few, and one of
/// them (`+switch-master`) is what pages someone. A flood of them still
/// comes in batches (as many as wait, up to [`BATCH`]).
const SPACING: Duration = Duration::from_millis(10);

/// Where the monitor hands what must outlive it.
#[derive(Debug, Default)]
pub struct Outputs {
    /// Changed timelines, for the timeline file.
    pub timelines: Option<mpsc::UnboundedSender<Vec<Timeline>>>,
    /// Alert transitions, for the receivers.
    pub transitions: Option<mpsc::UnboundedSender<Vec<Transition>>>,
}

/// Runs the monitor until every sender is gone: applies every input
/// waiting, then hands alert transitions on (first: they are what pages
/// someone), publishes the batch's snapshot and hands changed timelines on.
pub async fn run(
    mut monitor: Monitor,
    mut rx: mpsc::Receiver<Input>,
    tx: watch::Sender<Arc<Snapshot>>,
    outputs: Outputs,
) {
    let mut batch = Vec::new();
    let mut last: Option<Instant> = None;
    let mut log = ChangeLog::default();
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let event = batch.iter().any(|i| matches!(i, Input::Event(_)));
        if let (Some(ready), false) = (last.map(|at| at + SPACING), event) {
            if Instant::now() < ready {
                tokio::time::sleep_until(ready).await;
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(input) => batch.push(input),
                        Err(_) => break,
                    }
                }
            }
        }
        monitor.apply_all(batch.drain(..));
        last = Some(Instant::now());
        let transitions = monitor.take_transitions();
        log.alerts(&transitions);
        if let (Some(n), false) = (&outputs.transitions, transitions.is_empty()) {
            let _ = n.send(transitions);
        }
        tx.send_replace(monitor.snapshot());
        let changed = monitor.take_changed_timelines();
        log.timelines(&changed);
        if let (Some(p), false) = (&outputs.timelines, changed.is_empty()) {
            let _ = p.send(changed);
        }
    }
}
