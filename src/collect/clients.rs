//! Clients left behind: one read of `CLIENT LIST` on a failover's old
//! master, some seconds after the switch, sent to the monitor for the
//! failover's timeline (docs/findings.md, "Clients left behind"). The
//! supervisor starts one per failover that switched.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fred::prelude::*;
use tokio::sync::{mpsc, watch};

use super::failed;
use crate::client::{client, command, set_name, PollSettings, Purpose, CLIENT_NAME};
use crate::config::Deployment;
use crate::model::clients::{ClientsLeftBehind, Report};
use crate::model::snapshot::Snapshot;
use crate::model::{Input, PollError};
use crate::parse::clients::{parse_client_list, ClientConnection};
use crate::parse::info::Role;
use crate::util::time::unix_now;

/// How long after the switch an old master is awaited (to come back, to be
/// turned into a replica) before it is read as it is.
pub const GIVE_UP_AFTER: f64 = 300.0;

/// Which failover's old master to read.
#[derive(Debug, Clone)]
pub struct Read {
    /// The deployment.
    pub deployment: Arc<Deployment>,
    /// The shard.
    pub shard: String,
    /// The failover's timeline id.
    pub timeline: String,
    /// The old master.
    pub node: String,
    /// When clients could learn the new master (unix seconds).
    pub switched: f64,
}

/// Why a read failed: worth trying again (the node is down or slow) or not
/// (it refused the command, or answered nonsense).
enum Failure {
    Again(String),
    Final(String),
}

/// Reads `CLIENT LIST` on the old master `after` it was turned into a
/// replica, and sends what it found. Sentinel kills the clients of an
/// instance it turns into a replica (`CLIENT KILL TYPE normal`, `pubsub`),
/// and does it only once the instance reported role master for 8 s after
/// the switch (or after coming back): the clients there `after` that have
/// come back to this address. Until [`GIVE_UP_AFTER`] the old master is
/// awaited (down, or still a master); then it is read as it is, and when
/// it cannot be, the timeline says why.
pub async fn run(
    read: Read,
    after: Duration,
    settings: PollSettings,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    tx: mpsc::Sender<Input>,
    mut stop: watch::Receiver<bool>,
) {
    let deadline = read.switched + GIVE_UP_AFTER;
    let until = |at: f64| tokio::time::sleep(Duration::from_secs_f64((at - unix_now()).max(0.0)));
    loop {
        let demoted = snapshots
            .borrow_and_update()
            .deployment(&read.deployment.name)
            .and_then(|d| d.role_of(&read.node))
            == Some(Role::Replica);
        if demoted || unix_now() >= deadline {
            break;
        }
        tokio::select! {
            changed = snapshots.changed() => if changed.is_err() { return },
            () = until(deadline) => {}
            _ = stop.changed() => return,
        }
    }
    let mut due = unix_now() + after.as_secs_f64();
    let left = loop {
        tokio::select! {
            () = until(due) => {}
            _ = stop.changed() => return,
        }
        let outcome = list(&read, settings.timeout).await;
        let now = unix_now();
        match outcome {
            Ok(list) => break ClientsLeftBehind::read(&read.node, now, &list, CLIENT_NAME),
            Err(Failure::Again(e)) if now < deadline + after.as_secs_f64() => {
                due = now + settings.interval.as_secs_f64();
                tracing::debug!(deployment = %read.deployment.name, node = %read.node, error = %e, "clients left behind: old master not read yet");
            }
            Err(Failure::Again(e) | Failure::Final(e)) => {
                break ClientsLeftBehind::unread(&read.node, now, e);
            }
        }
    };
    let report = Report {
        deployment: read.deployment.name.as_str().into(),
        shard: read.shard,
        timeline: read.timeline,
        at: SystemTime::now(),
        left,
    };
    let _ = tx.send(Input::Clients(report)).await;
}

/// `CLIENT LIST` on a connection of its own, named as the agent's so that
/// it is not counted, and closed after.
async fn list(read: &Read, timeout: Duration) -> Result<Vec<ClientConnection>, Failure> {
    let d = &read.deployment;
    let client = client(&read.node, &d.auth, d.tls.as_ref(), timeout, Purpose::Once)
        .map_err(|e| Failure::Final(e.to_string()))?;
    let connection = client
        .init()
        .await
        .map_err(|e| Failure::Again(e.to_string()))?;
    let text = match set_name(&client).await {
        Ok(()) => {
            client
                .custom::<String, _>(command("CLIENT"), vec!["LIST"])
                .await
        }
        Err(e) => Err(e),
    };
    // Closed without a QUIT: one round trip less, and nothing is pending.
    connection.abort();
    let text = text.map_err(|e| match failed(e) {
        PollError::Timeout => Failure::Again(PollError::Timeout.to_string()),
        e => Failure::Final(e.to_string()),
    })?;
    parse_client_list(&text).map_err(|e| Failure::Final(format!("CLIENT LIST: {e}")))
}
