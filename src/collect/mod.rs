//! Collectors: the only part of the agent that talks to Redis.
//!
//! One poller task per target, each with its own connection and schedule,
//! so a frozen or dead target delays nobody else. The supervisor starts and
//! stops pollers as the monitor's snapshots add and drop targets.

mod poller;
mod subscriber;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::model::{Input, Role, TargetId};
use crate::snapshot::Snapshot;

/// Per-poll limits shared by every poller.
#[derive(Debug, Clone, Copy)]
pub struct PollSettings {
    /// Time between the starts of two polls of one target.
    pub interval: Duration,
    /// Time one command may take.
    pub timeout: Duration,
}

/// Keeps exactly one poller running for every target of the latest snapshot.
pub async fn supervise(
    config: Arc<Config>,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    inputs: mpsc::Sender<Input>,
) {
    let settings = PollSettings {
        interval: config.poll_interval,
        timeout: config.timeout,
    };
    let mut running: HashMap<TargetId, (watch::Sender<bool>, Vec<JoinHandle<()>>)> = HashMap::new();
    loop {
        let snapshot = snapshots.borrow_and_update().clone();
        let wanted: HashMap<&TargetId, ()> = snapshot.targets().map(|t| (t, ())).collect();
        running.retain(|id, (stop, _)| {
            let keep = wanted.contains_key(id);
            if !keep {
                tracing::info!(deployment = %id.deployment, target = %id.addr, "target left the topology; polling stopped");
                // The poller closes its connection and exits on its own.
                let _ = stop.send(true);
            }
            keep
        });
        for id in wanted.keys() {
            if running.contains_key(*id) {
                continue;
            }
            let Some(deployment) = config
                .deployments
                .iter()
                .find(|d| *d.name == *id.deployment)
            else {
                continue;
            };
            tracing::info!(deployment = %id.deployment, target = %id.addr, kind = id.role.label(), "polling new target");
            let (stop, stopped) = watch::channel(false);
            let mut tasks = vec![tokio::spawn(poller::run(
                (*id).clone(),
                deployment.clone(),
                settings,
                inputs.clone(),
                stopped.clone(),
            ))];
            if id.role == Role::Sentinel {
                tasks.push(tokio::spawn(subscriber::run(
                    (*id).clone(),
                    deployment.clone(),
                    settings,
                    inputs.clone(),
                    stopped,
                )));
            }
            running.insert((*id).clone(), (stop, tasks));
        }
        if snapshots.changed().await.is_err() {
            break;
        }
    }
    for (_, (stop, tasks)) in running {
        let _ = stop.send(true);
        for task in tasks {
            let _ = task.await;
        }
    }
}
