//! Connections to Redis: a fred client per server, as every poller,
//! subscriber and canary probe uses it.

use std::time::Duration;

use fred::prelude::*;
use fred::types::config::{Server, TlsConnector, UnresponsiveConfig};
use fred::types::{ClusterHash, CustomCommand};

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
}

/// A client for one server: one connection, reconnecting forever with
/// backoff, every command bounded by `timeout` and never retried, so a poll
/// reports what the server did at that moment.
pub fn client(
    addr: &str,
    auth: &Auth,
    tls: Option<&Tls>,
    timeout: Duration,
    events: Events,
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
        // Keep trying when the first connection fails: the target may come up later.
        fail_fast: false,
        ..Default::default()
    };
    Builder::from_config(config)
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
            // and reopened instead of queueing polls behind it forever.
            c.unresponsive = UnresponsiveConfig {
                max_timeout: Some(timeout * 2),
                interval: (timeout / 2).max(Duration::from_millis(10)),
            };
        })
        .with_performance_config(|p| {
            p.default_command_timeout = timeout;
            p.broadcast_channel_capacity = match events {
                // A failover is a burst of events from each sentinel; the
                // default of 32 could drop the ones a timeline needs.
                Events::Subscribe => EVENT_BUFFER,
                // Only connection errors are read, the latest first: a
                // client's several channels of 32 each would cost every
                // target of a 1000-node cluster tens of kB for nothing.
                Events::None => NOTICES,
            };
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
        .build()
        .map_err(|e| PollError::Command(e.to_string()))
}

/// Notices (connection errors, reconnections) a poller's client keeps.
const NOTICES: usize = 4;

/// Commands that may wait for a connection: a few polls' worth.
const COMMAND_BUFFER: usize = 16;

/// Messages buffered between a sentinel's connection and its subscriber task.
const EVENT_BUFFER: usize = 4096;

/// Whether a client will carry a sentinel's event stream.
#[derive(Debug, Clone, Copy)]
pub enum Events {
    /// A poller's client: commands only.
    None,
    /// A subscriber's client: `PSUBSCRIBE *`.
    Subscribe,
}

/// A command by name, its keys (if any) hashed as usual.
pub fn command(name: &'static str) -> CustomCommand {
    CustomCommand::new_static(name, ClusterHash::FirstKey, false)
}
