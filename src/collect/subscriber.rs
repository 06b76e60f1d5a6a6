//! One sentinel's event stream: `PSUBSCRIBE *` on a connection of its own.

use std::time::SystemTime;

use fred::prelude::*;
use tokio::sync::{mpsc, watch};

use super::poller::client;
use super::PollSettings;
use crate::config::Deployment;
use crate::model::{EventMessage, Input, TargetId};

/// Listens to `target` until `stop`, forwarding every message and every
/// change of the subscription's state. Re-subscribes after each reconnect;
/// events published while disconnected are lost, and the sentinel's next
/// poll resynchronises the state they would have changed.
pub async fn run(
    target: TargetId,
    deployment: Deployment,
    settings: PollSettings,
    tx: mpsc::Sender<Input>,
    mut stop: watch::Receiver<bool>,
) {
    let Ok(client) = client(&target.addr, &deployment.sentinel_auth, settings.timeout) else {
        // The poller of the same sentinel reports the bad address.
        return;
    };
    let mut messages = client.message_rx();
    let mut connected = client.reconnect_rx();
    let mut errors = client.error_rx();
    let connection = client.connect();
    let mut check = tokio::time::interval(settings.interval);
    let mut up = None;
    loop {
        let now_up = tokio::select! {
            _ = stop.changed() => break,
            Ok(_) = connected.recv() => {
                match tokio::time::timeout(settings.timeout, client.psubscribe("*")).await {
                    Ok(Ok(())) => true,
                    Ok(Err(e)) => {
                        tracing::warn!(deployment = %target.deployment, sentinel = %target.addr, error = %e, "cannot subscribe to sentinel events");
                        false
                    }
                    Err(_) => false,
                }
            }
            Ok(message) = messages.recv() => {
                let payload = message.value.as_string().unwrap_or_default();
                let event = EventMessage {
                    target: target.clone(),
                    at: SystemTime::now(),
                    channel: message.channel.to_string(),
                    payload,
                };
                if tx.send(Input::Event(event)).await.is_err() {
                    break;
                }
                continue;
            }
            Ok(_) = errors.recv() => false,
            _ = check.tick() => up.unwrap_or(false) && client.is_connected(),
        };
        if up != Some(now_up) {
            up = Some(now_up);
            let input = Input::Subscription {
                target: target.clone(),
                up: now_up,
            };
            if tx.send(input).await.is_err() {
                break;
            }
        }
    }
    let _ = tokio::time::timeout(settings.timeout, client.quit()).await;
    connection.abort();
}
