//! Connections to Redis: a fred client per server, as every poller,
//! subscriber and canary probe uses it.

use std::time::Duration;

use fred::prelude::*;
use fred::types::config::{Server, TlsConnector, UnresponsiveConfig};
use fred::types::{ClusterHash, CustomCommand};
use tokio::sync::broadcast::error::TryRecvError;
use tokio::sync::broadcast::Receiver as BroadcastReceiver;

use crate::config::{Auth, Tls};
use crate::model::PollError;
use crate::parse::split_addr;

/// Per-poll limits shared by every poller.
#[derive(Debug, Clone, Copy)]
pub struct PollSettings {
    /// Time between the starts of two polls of one target.
    pub interval: Duration,
    /// Time one command may take.
    pub timeout: Duration,
    /// Time between two reads of a data node's settings.
    pub settings_interval: Duration,
    /// Slots with the most keys asked of each cluster master with them.
    pub hot_slots: usize,
}

/// A client for one server: one connection, reconnecting forever with
/// backoff, every command bounded by `timeout` and never retried, so a poll
/// reports what the server did at that moment.
pub fn client(
    addr: &str,
    auth: &Auth,
    tls: Option<&Tls>,
    timeout: Duration,
    purpose: Purpose,
) -> Result<Client, PollError> {
    let (host, port) =
        split_addr(addr).ok_or_else(|| PollError::Command(format!("invalid address {addr:?}")))?;
    let connector = tls
        .map(|t| crate::tls::client_config(t).map(TlsConnector::from))
        .transpose()
        .map_err(|e| PollError::Connect(format!("TLS: {e}")))?;
    let config = Config {
        server: ServerConfig::Centralized {
            server: Server {
                host: host.into(),
                port,
                // Without one, the address connected to (IP or hostname).
                tls_server_name: tls.and_then(|t| t.server_name.as_deref().map(Into::into)),
            },
        },
        tls: connector.map(Into::into),
        username: auth.username.clone(),
        password: auth.password.as_ref().map(|p| p.expose().to_string()),
        // Keep trying when the first connection fails: the target may come
        // up later. A connection for one read fails at once instead.
        fail_fast: matches!(purpose, Purpose::Once),
        ..Default::default()
    };
    let mut builder = Builder::from_config(config);
    builder
        .with_connection_config(|c| {
            c.connection_timeout = timeout;
            c.internal_command_timeout = timeout;
            c.max_command_attempts = 1;
            // Commands wait in fred's queue while it reconnects, and a node
            // that stays down would grow that queue by a poll's commands a
            // second for as long as it is down. Bounded, later polls fail at
            // once; the few queued run (read-only, answered to nobody) when
            // the node is back.
            c.max_command_buffer_len = COMMAND_BUFFER;
            // A connection whose replies stopped (a frozen server) is closed
            // and reopened instead of queueing commands behind it forever.
            // fred checks that with a timer woken every `interval` and armed
            // anew for every frame: about 20 µs a poll at 1000 nodes, a fifth
            // of the agent's whole cost. Pollers do without it and reconnect
            // themselves when a poll times out (`poller::run`).
            if matches!(purpose, Purpose::Canary | Purpose::Subscribe) {
                c.unresponsive = UnresponsiveConfig {
                    max_timeout: Some(timeout * 2),
                    interval: (timeout / 2).max(Duration::from_millis(10)),
                };
            }
        })
        .with_performance_config(|p| {
            p.default_command_timeout = timeout;
            p.broadcast_channel_capacity = match purpose {
                // A failover is a burst of events from each sentinel; the
                // default of 32 could drop the ones a timeline needs.
                Purpose::Subscribe => EVENT_BUFFER,
                // Only connection errors are read, the latest first: a
                // client's several channels of 32 each would cost every
                // target of a 1000-node cluster tens of kB for nothing.
                Purpose::Poll | Purpose::Canary | Purpose::Once => NOTICES,
            };
        });
    if !matches!(purpose, Purpose::Once) {
        builder.set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2));
    }
    builder
        .build()
        .map_err(|e| PollError::Command(e.to_string()))
}

/// Notices (connection errors, reconnections) a poller's client keeps.
const NOTICES: usize = 4;

/// Commands that may wait for a connection: a few polls' worth.
const COMMAND_BUFFER: usize = 16;

/// Messages buffered between a sentinel's connection and its subscriber task.
const EVENT_BUFFER: usize = 4096;

/// What a client is for: it sets the event buffer and who watches for a
/// connection that stopped answering.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    /// A poller's: commands only; the poller reconnects after a poll times out.
    Poll,
    /// A canary probe's: writes, fred reconnecting when replies stop.
    Canary,
    /// A subscriber's: `PSUBSCRIBE *`.
    Subscribe,
    /// One read, then closed: connects once, never reconnects.
    Once,
}

/// A command by name, its keys (if any) hashed as usual.
pub fn command(name: &'static str) -> CustomCommand {
    CustomCommand::new_static(name, ClusterHash::FirstKey, false)
}

/// The name the agent gives its connections to data nodes (`CLIENT
/// SETNAME`): a read of the clients left behind on a failover's old master
/// (`collect::clients`) tells the agent's own connections by it.
pub const CLIENT_NAME: &str = "redis-ha-exporter";

/// Names a client's connections: fred opens each new one (the first, and
/// every reconnection) unnamed, and says so on its reconnection channel.
pub struct Naming {
    reconnects: BroadcastReceiver<Server>,
    /// A connection opened that is not named yet.
    pending: bool,
}

impl Naming {
    /// Follows `client`'s connections; made before it connects, to see the first.
    pub fn new(client: &Client) -> Self {
        Naming {
            reconnects: client.reconnect_rx(),
            pending: false,
        }
    }

    /// Names the connection if it is new since the last call (or the last
    /// attempt failed): one round trip after each connection, none
    /// otherwise. Called after a command that was answered: a name sent to
    /// a server that stopped answering would wait in fred's queue and hold
    /// up the commands behind it once it answers again.
    pub async fn name<C: ClientLike>(&mut self, client: &C) {
        while let Ok(_) | Err(TryRecvError::Lagged(_)) = self.reconnects.try_recv() {
            self.pending = true;
        }
        if self.pending {
            self.pending = set_name(client).await.is_err();
        }
    }
}

/// `CLIENT SETNAME` [`CLIENT_NAME`] on the client's connection.
pub async fn set_name<C: ClientLike>(client: &C) -> Result<(), Error> {
    client
        .custom::<String, _>(command("CLIENT"), vec!["SETNAME", CLIENT_NAME])
        .await
        .map(drop)
}
