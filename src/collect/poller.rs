//! One target's poll loop over a persistent fred connection.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use fred::prelude::*;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

use super::node::{self, Strays, Watch};
use super::sentinel;
use super::topology::Topology;
use crate::client::{client, Naming, PollSettings, Purpose};
use crate::config::Deployment;
use crate::model::{Input, Observation, PollError, Reading, TargetId, TargetKind};
use crate::util::hash::digest;
use crate::util::time::unix_now;

/// Polls `target` every interval until `stop` turns true, sending every
/// result, success or failure, to the monitor. `cluster`: what the node
/// pollers of its cluster share, for nodes of clusters.
pub async fn run(
    target: TargetId,
    deployment: Arc<Deployment>,
    settings: PollSettings,
    cluster: Option<Arc<Topology>>,
    strays: Arc<Strays>,
    tx: mpsc::Sender<Input>,
    mut stop: watch::Receiver<bool>,
) {
    let (auth, tls) = match target.kind {
        TargetKind::Node => (&deployment.auth, &deployment.tls),
        TargetKind::Sentinel => (&deployment.sentinel_auth, &deployment.sentinel_tls),
    };
    // An address fred refuses, or TLS files that cannot be read any more,
    // never connect: every poll reports why, so the target shows as down,
    // not absent.
    let client = client(
        &target.addr,
        auth,
        tls.as_ref(),
        settings.timeout,
        Purpose::Poll,
    );
    let mut errors = client.as_ref().ok().map(|c| c.error_rx());
    // Data nodes only: their lists of clients are what `CLIENT LIST` reads.
    let mut naming = client
        .as_ref()
        .ok()
        .filter(|_| target.kind == TargetKind::Node)
        .map(Naming::new);
    let connection = client.as_ref().ok().map(|c| c.connect());
    let mut connection_error = None;
    let start = tokio::time::Instant::now() + phase(&target, settings.interval);
    let mut ticker = tokio::time::interval_at(start, settings.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut was_up = None;
    let mut timeouts_in_row = 0u32;
    let mut topology = Watch::default();
    // When the node's settings were last read: again on its first poll
    // after it was down (it may have restarted with others).
    let mut settings_read: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => break,
        }
        let started = Instant::now();
        let result = match &client {
            Ok(client) => {
                // Sentinels take two rounds of commands; the per-command
                // timeout bounds each, this bounds the whole.
                let limit = settings.timeout * 2;
                // Boxed: a poll's futures (fred's commands, the topology
                // logic) are large, and a poller that held them between
                // polls would cost that much per target, at rest.
                let polled = Box::pin(async {
                    match target.kind {
                        TargetKind::Sentinel => sentinel::poll(client, &deployment)
                            .await
                            .map(Reading::Sentinel),
                        TargetKind::Node => {
                            let rotation = cluster.as_ref().map(|c| c.rotation());
                            let cluster = cluster.as_ref().zip(rotation.as_deref()).map(
                                |(shared, rotation)| {
                                    let c = node::Cluster {
                                        addr: &target.addr,
                                        auth,
                                        tls: tls.as_ref(),
                                        timeout: settings.timeout,
                                        interval: settings.interval,
                                        rotation,
                                        shared,
                                        round: (unix_now() / settings.interval.as_secs_f64())
                                            as u64,
                                        back: was_up != Some(true),
                                    };
                                    (c, &mut topology)
                                },
                            );
                            let stray = strays.contains(&target.addr);
                            let due = was_up != Some(true)
                                || settings_read
                                    .is_none_or(|t| t.elapsed() >= settings.settings_interval);
                            let slow = due.then_some(settings.hot_slots);
                            let polled = node::poll(client, cluster, stray, slow).await;
                            if matches!(&polled, Ok(r) if r.settings.is_some()) {
                                settings_read = Some(Instant::now());
                            }
                            polled.map(Reading::Node)
                        }
                    }
                });
                let mut result = match tokio::time::timeout(limit, polled).await {
                    Ok(r) => r,
                    Err(_) => Err(PollError::Timeout),
                };
                // Connection errors (refused, wrong password) surface here,
                // not in the replies: the poll only sees its commands time out.
                while let Some(Ok((e, _))) = errors.as_mut().map(|r| r.try_recv()) {
                    connection_error = Some(e.to_string());
                }
                if matches!(result, Err(PollError::Timeout)) {
                    timeouts_in_row += 1;
                } else {
                    timeouts_in_row = 0;
                }
                if timeouts_in_row >= RECONNECT_AFTER_TIMEOUTS && client.is_connected() {
                    // The server stopped answering (frozen, or packets
                    // dropped): the commands behind the ones that timed out
                    // would wait on this connection for as long. A new one
                    // starts clean; reconnecting is bounded like a command.
                    let _ =
                        tokio::time::timeout(settings.timeout, client.force_reconnection()).await;
                }
                if client.is_connected() {
                    connection_error = None;
                } else if let (Err(_), Some(e)) = (&result, &connection_error) {
                    // Timed out or refused by a full queue: either way the
                    // cause is the connection.
                    result = Err(PollError::Connect(e.clone()));
                }
                result
            }
            Err(e) => Err(e.clone()),
        };
        // Log changes of state, not every failed poll: a dead node would
        // otherwise fill the log once a second.
        match (&result, was_up) {
            (Err(e), Some(true) | None) => {
                tracing::warn!(deployment = %target.deployment, target = %target.addr, error = %e, "target down")
            }
            (Ok(_), Some(false)) => {
                tracing::info!(deployment = %target.deployment, target = %target.addr, "target up again")
            }
            _ => {}
        }
        was_up = Some(result.is_ok());
        let obs = Observation {
            target: target.clone(),
            at: SystemTime::now(),
            seen: Instant::now(),
            duration: started.elapsed(),
            result,
        };
        if tx.send(Input::Poll(obs)).await.is_err() {
            break;
        }
        // Named after a poll that answered, out of the poll's time: a name
        // sent to a server that stopped answering would queue behind it.
        if let (Ok(client), Some(naming), Some(true)) = (&client, &mut naming, was_up) {
            naming.name(client).await;
        }
    }
    if let (Ok(client), Some(connection)) = (&client, connection) {
        // A frozen server may never answer QUIT: bound it, then drop the task.
        let _ = tokio::time::timeout(settings.timeout, client.quit()).await;
        connection.abort();
    }
}

/// Where in the interval a target's polls fall, from a hash of the target
/// (as Prometheus places its scrapes): a large cluster's nodes are polled a
/// quarter at a time through the interval, not all at once at its start.
/// The cluster and the agent see a smoother load, and when a whole cluster
/// is discovered at once (the agent starting) its first polls, and first
/// `CLUSTER NODES` reads, come in [`PHASES`] waves instead of one.
fn phase(target: &TargetId, interval: Duration) -> Duration {
    let h = digest(&(&*target.deployment, target.kind, &target.addr));
    // The top bits, spread evenly over the phases whatever the low bits do.
    let phase = ((u128::from(h) * u128::from(PHASES)) >> 64) as u32;
    interval / PHASES * phase
}

/// Polls in a row that must time out before the connection is replaced. A
/// frozen server times out every poll, and its connection is replaced at
/// the second; on a link that loses packets, a poll now and then times out
/// while the reply is only retransmitted late (200 ms and up), and a new
/// connection would make it worse: a lost SYN is sent again only after a
/// second, longer than the timeout, and the target stayed down for seconds
/// of backoff (5 s on end at 20% loss, `tests/partitions.rs`).
const RECONNECT_AFTER_TIMEOUTS: u32 = 2;

/// Distinct poll phases in an interval. The polls of one phase start
/// together: one timer and one wake-up for all of them, and their readings
/// reach the monitor in one batch. At 1000 nodes polled every second, a
/// phase per 100 ms cost 105 µs of agent CPU a poll, 4 phases 78, a single
/// one 60 but half the nodes timed out in the first round (1000 connections
/// and first reads at once on 2 cores).
const PHASES: u32 = 4;
