//! One target's poll loop over a persistent fred connection.

use std::collections::HashMap;
use std::time::{Instant, SystemTime};

use fred::prelude::*;
use fred::types::InfoKind;
use futures::future::try_join_all;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

use crate::client::{client, command, Events, PollSettings};
use crate::config::{Deployment, Kind};
use crate::model::{
    ClusterReading, Input, MasterView, NodeReading, Observation, PollError, Reading,
    SentinelReading, TargetId, TargetKind,
};
use crate::parse::cluster::{parse_nodes, reply_digest, ClusterInfo};
use crate::parse::info::{ReplicationInfo, SentinelInfo};
use crate::parse::sentinel::{parse_ckquorum, MasterEntry, ReplicaEntry, SentinelEntry};
use crate::parse::ParseError;

/// Polls `target` every interval until `stop` turns true, sending every
/// result, success or failure, to the monitor.
pub async fn run(
    target: TargetId,
    deployment: Deployment,
    settings: PollSettings,
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
        Events::None,
    );
    let mut errors = client.as_ref().ok().map(|c| c.error_rx());
    let connection = client.as_ref().ok().map(|c| c.connect());
    let mut connection_error = None;
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut was_up = None;
    let mut last_view: Option<LastView> = None;
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
                let polled = poll(client, &target, &deployment, last_view.as_ref());
                let mut result = match tokio::time::timeout(limit, polled).await {
                    Ok(r) => r,
                    Err(_) => Err(PollError::Timeout),
                };
                // Connection errors (refused, wrong password) surface here,
                // not in the replies: the poll only sees its commands time out.
                while let Some(Ok((e, _))) = errors.as_mut().map(|r| r.try_recv()) {
                    connection_error = Some(e.to_string());
                }
                if client.is_connected() {
                    connection_error = None;
                } else if let (Err(PollError::Timeout), Some(e)) = (&result, &connection_error) {
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
        let result = result.map(|(reading, reply)| {
            if let (
                Reading::Node(NodeReading {
                    cluster: Some(view),
                    ..
                }),
                Some(reply),
            ) = (&reading, reply)
            {
                last_view = Some(LastView {
                    reply,
                    view: view.clone(),
                });
            }
            reading
        });
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
    }
    if let (Ok(client), Some(connection)) = (&client, connection) {
        // A frozen server may never answer QUIT: bound it, then drop the task.
        let _ = tokio::time::timeout(settings.timeout, client.quit()).await;
        connection.abort();
    }
}

fn failed(e: Error) -> PollError {
    match e.kind() {
        ErrorKind::Timeout => PollError::Timeout,
        _ => PollError::Command(e.to_string()),
    }
}

fn parsed<T>(command: &'static str, r: Result<T, ParseError>) -> Result<T, PollError> {
    r.map_err(|error| PollError::Parse { command, error })
}

/// The last cluster view a poller sent, and the digest of the `CLUSTER
/// NODES` reply it came from: a reply with the same digest is not parsed
/// again, and the view is sent as the same shared lines (an unchanged view
/// costs the monitor a comparison).
struct LastView {
    reply: u64,
    view: ClusterReading,
}

/// One poll; with a cluster view, the digest of its `CLUSTER NODES` reply.
async fn poll(
    client: &Client,
    target: &TargetId,
    deployment: &Deployment,
    last: Option<&LastView>,
) -> Result<(Reading, Option<u64>), PollError> {
    match target.kind {
        TargetKind::Node => poll_node(client, deployment.kind == Kind::Cluster, last)
            .await
            .map(|(r, reply)| (Reading::Node(r), reply)),
        TargetKind::Sentinel => poll_sentinel(client, deployment)
            .await
            .map(|r| (Reading::Sentinel(r), None)),
    }
}

/// `INFO replication`, plus `CLUSTER INFO` and `CLUSTER NODES` on cluster
/// nodes, sent together on the one connection.
async fn poll_node(
    client: &Client,
    cluster: bool,
    last: Option<&LastView>,
) -> Result<(NodeReading, Option<u64>), PollError> {
    let info = client.info::<String>(Some(InfoKind::Replication));
    if !cluster {
        let text = info.await.map_err(failed)?;
        let reading = NodeReading {
            replication: parsed("INFO replication", ReplicationInfo::parse(&text))?,
            cluster: None,
        };
        return Ok((reading, None));
    }
    let (text, cinfo, cnodes) = tokio::try_join!(
        info,
        client.custom::<String, _>(command("CLUSTER"), vec!["INFO"]),
        client.custom::<String, _>(command("CLUSTER"), vec!["NODES"]),
    )
    .map_err(failed)?;
    let info = parsed("CLUSTER INFO", ClusterInfo::parse(&cinfo))?;
    let reply = reply_digest(&cnodes);
    let view = match last {
        Some(last) if last.reply == reply => last.view.with_info(info),
        _ => ClusterReading::new(info, parsed("CLUSTER NODES", parse_nodes(&cnodes))?)
            .reusing(last.map(|l| &l.view)),
    };
    let reading = NodeReading {
        replication: parsed("INFO replication", ReplicationInfo::parse(&text))?,
        cluster: Some(view),
    };
    Ok((reading, Some(reply)))
}

type Maps = Vec<HashMap<String, String>>;

/// `SENTINEL MASTERS` and `INFO sentinel`, then for each watched master
/// `SENTINEL REPLICAS`, `SENTINELS` and `CKQUORUM`. All read-only: nothing
/// here can change a sentinel's state or cast a vote.
async fn poll_sentinel(
    client: &Client,
    deployment: &Deployment,
) -> Result<SentinelReading, PollError> {
    let (masters, info) = tokio::try_join!(
        client.custom::<Maps, _>(command("SENTINEL"), vec!["MASTERS"]),
        client.custom::<String, _>(command("INFO"), vec!["sentinel"]),
    )
    .map_err(failed)?;
    let info = parsed("INFO sentinel", SentinelInfo::parse(&info))?;
    let masters = masters
        .iter()
        .map(|m| parsed("SENTINEL MASTERS", MasterEntry::parse(m)))
        .collect::<Result<Vec<_>, _>>()?;
    let views = try_join_all(
        masters
            .into_iter()
            .filter(|m| deployment.watches_master(&m.name))
            .map(|m| master_view(client, m)),
    )
    .await?;
    Ok(SentinelReading {
        info,
        masters: views
            .into_iter()
            .map(|v| (v.master.name.clone(), v))
            .collect(),
    })
}

async fn master_view(client: &Client, master: MasterEntry) -> Result<MasterView, PollError> {
    let name = master.name.as_str();
    let (replicas, sentinels, quorum) = tokio::join!(
        client.custom::<Maps, _>(command("SENTINEL"), vec!["REPLICAS", name]),
        client.custom::<Maps, _>(command("SENTINEL"), vec!["SENTINELS", name]),
        client.custom::<String, _>(command("SENTINEL"), vec!["CKQUORUM", name]),
    );
    let replicas = replicas
        .map_err(failed)?
        .iter()
        .map(|m| parsed("SENTINEL REPLICAS", ReplicaEntry::parse(m)))
        .collect::<Result<Vec<_>, _>>()?;
    let sentinels = sentinels
        .map_err(failed)?
        .iter()
        .map(|m| parsed("SENTINEL SENTINELS", SentinelEntry::parse(m)))
        .collect::<Result<Vec<_>, _>>()?;
    // NOQUORUM is an answer, not a failed poll.
    let quorum_ok = match quorum {
        Ok(text) => parsed("SENTINEL CKQUORUM", parse_ckquorum(&text))? > 0,
        Err(e) if e.details().starts_with("NOQUORUM") => false,
        Err(e) => return Err(failed(e)),
    };
    Ok(MasterView {
        master,
        replicas,
        sentinels,
        quorum_ok,
    })
}
