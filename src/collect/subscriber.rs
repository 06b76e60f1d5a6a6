//! One sentinel's event stream: `PSUBSCRIBE *` on a connection of its own.

use std::sync::Arc;
use std::time::SystemTime;

use fred::prelude::*;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, watch};

use crate::client::{client, PollSettings, Purpose};
use crate::config::Deployment;
use crate::model::{EventMessage, Input, TargetId};

/// The longest message (channel and payload) forwarded to the monitor.
/// Sentinel's events are a few names and addresses, well under 1 kB even
/// with hostnames; but what answers on a sentinel's address may send
/// anything (a Redis server configured as a sentinel by mistake, where any
/// client may publish), and megabyte messages would otherwise queue
/// towards the monitor and fill its event log.
const MAX_MESSAGE: usize = 4096;

/// Listens to `target` until `stop`, forwarding every message and every
/// change of the subscription's state.
///
/// The subscription is up only after a `PSUBSCRIBE` succeeded on the
/// current connection. It is made again after every reconnect, and retried
/// every interval while connected but not subscribed (a `PSUBSCRIBE` that
/// timed out). Events published while it was down are lost; the sentinel's
/// next poll resynchronises the state they would have changed.
pub async fn run(
    target: TargetId,
    deployment: Arc<Deployment>,
    settings: PollSettings,
    tx: mpsc::Sender<Input>,
    mut stop: watch::Receiver<bool>,
) {
    let Ok(client) = client(
        &target.addr,
        &deployment.sentinel_auth,
        deployment.sentinel_tls.as_ref(),
        settings.timeout,
        Purpose::Subscribe,
    ) else {
        // The poller of the same sentinel reports the bad address.
        return;
    };
    let mut messages = client.message_rx();
    let mut connected = client.reconnect_rx();
    let connection = client.connect();
    let mut check = tokio::time::interval(settings.interval);
    let mut subscribed = false;
    let mut reported = None;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Ok(_) = connected.recv() => subscribed = subscribe(&client, &target, settings).await,
            message = messages.recv() => match message {
                Ok(message) => {
                    let size = message.channel.len() + message.value.as_bytes().map_or(0, <[u8]>::len);
                    if size > MAX_MESSAGE {
                        tracing::warn!(deployment = %target.deployment, sentinel = %target.addr, bytes = size, "ignoring a message too long to be a sentinel event");
                        continue;
                    }
                    let event = EventMessage {
                        target: target.clone(),
                        at: SystemTime::now(),
                        channel: message.channel.to_string(),
                        payload: message.value.as_string().unwrap_or_default(),
                    };
                    if tx.send(Input::Event(event)).await.is_err() {
                        break;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(deployment = %target.deployment, sentinel = %target.addr, missed = n, "sentinel events dropped: the agent fell behind");
                }
                Err(RecvError::Closed) => break,
            },
            _ = check.tick() => {
                if !client.is_connected() {
                    subscribed = false;
                } else if !subscribed {
                    subscribed = subscribe(&client, &target, settings).await;
                }
            }
        }
        let up = subscribed && client.is_connected();
        if reported != Some(up) {
            reported = Some(up);
            let input = Input::Subscription {
                target: target.clone(),
                up,
            };
            if tx.send(input).await.is_err() {
                break;
            }
        }
    }
    let _ = tokio::time::timeout(settings.timeout, client.quit()).await;
    connection.abort();
}

async fn subscribe(client: &Client, target: &TargetId, settings: PollSettings) -> bool {
    match tokio::time::timeout(settings.timeout, client.psubscribe("*")).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(deployment = %target.deployment, sentinel = %target.addr, error = %e, "cannot subscribe to sentinel events");
            false
        }
        Err(_) => false,
    }
}
