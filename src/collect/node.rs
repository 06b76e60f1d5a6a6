//! One poll of a data node: `INFO replication`, and on cluster nodes
//! `CLUSTER INFO` every poll and `CLUSTER NODES` when it has something new
//! to say ([`super::topology`]).

use fred::prelude::*;
use fred::types::InfoKind;

use super::topology::{Lines, Rotation};
use super::{failed, parsed};
use crate::client::command;
use crate::model::{ClusterReading, NodeReading, PollError};
use crate::parse::cluster::{info_signals, parse_nodes, reply_digest, ClusterInfo};
use crate::parse::info::{ReplicationInfo, Role};

/// What a cluster node's poller keeps between polls to decide whether to
/// read `CLUSTER NODES`.
#[derive(Debug, Default)]
pub struct Watch {
    /// The last view sent, and the digest of the reply it came from: a
    /// reply with the same digest is not parsed again, and the view is sent
    /// as the same shared lines.
    last: Option<(u64, ClusterReading)>,
    /// [`info_signals`] of the last `CLUSTER INFO`.
    signals: Option<u64>,
    /// The node's role and master in its last `INFO replication`.
    upstream: Option<(Role, Option<String>)>,
    /// The round of the last `CLUSTER NODES` read.
    read: Option<u64>,
}

/// What a cluster node's poll needs besides its connection.
pub struct Cluster<'a> {
    /// The node's address, its place in the rotation.
    pub addr: &'a str,
    /// Its cluster's rotation now.
    pub rotation: &'a Rotation,
    /// Its cluster's interned lines.
    pub lines: &'a Lines,
    /// The poll round now.
    pub round: u64,
    /// Its last poll failed, or there was none: it may have missed anything.
    pub back: bool,
}

/// `INFO replication`; on a cluster node also `CLUSTER INFO`, and `CLUSTER
/// NODES` on the node's turn, when it is new or back, or (in a second round
/// trip) when `CLUSTER INFO` or its own role says the topology moved.
/// `watch` is updated only by a poll that succeeds.
pub async fn poll(
    client: &Client,
    cluster: Option<(Cluster<'_>, &mut Watch)>,
) -> Result<NodeReading, PollError> {
    let info = client.info::<String>(Some(InfoKind::Replication));
    let Some((c, watch)) = cluster else {
        let text = info.await.map_err(failed)?;
        return Ok(NodeReading {
            replication: parsed("INFO replication", ReplicationInfo::parse(&text))?,
            cluster: None,
        });
    };
    let turn = c.back || watch.last.is_none() || c.rotation.due(c.addr, c.round, watch.read);
    let cluster_info = client.custom::<String, _>(command("CLUSTER"), vec!["INFO"]);
    let (text, cinfo, nodes) = if turn {
        let (text, cinfo, nodes) =
            tokio::try_join!(info, cluster_info, read_nodes(client)).map_err(failed)?;
        (text, cinfo, Some(nodes))
    } else {
        let (text, cinfo) = tokio::try_join!(info, cluster_info).map_err(failed)?;
        (text, cinfo, None)
    };
    let replication = parsed("INFO replication", ReplicationInfo::parse(&text))?;
    let info = parsed("CLUSTER INFO", ClusterInfo::parse(&cinfo))?;
    let signals = info_signals(&cinfo);
    let upstream = (
        replication.role,
        replication.upstream.as_ref().map(|u| u.master.clone()),
    );
    let moved = watch.signals != Some(signals) || watch.upstream.as_ref() != Some(&upstream);
    let view = match (nodes, watch.last.take()) {
        (None, Some((reply, view))) if !moved => {
            let fresh = view.with_info(info);
            watch.last = Some((reply, view));
            fresh
        }
        (text, last) => {
            let read = match text {
                Some(text) => Ok(text),
                None => read_nodes(client).await.map_err(failed),
            };
            let view = read.and_then(|text| {
                let reply = reply_digest(&text);
                let view = match &last {
                    Some((digest, view)) if *digest == reply => view.with_info(info),
                    _ => ClusterReading::new(
                        info,
                        c.lines.intern(parsed("CLUSTER NODES", parse_nodes(&text))?),
                    )
                    .reusing(last.as_ref().map(|(_, v)| v)),
                };
                Ok((reply, view))
            });
            let (reply, view) = match view {
                Ok(v) => v,
                Err(e) => {
                    // Kept for the next poll, which reads again.
                    watch.last = last;
                    return Err(e);
                }
            };
            watch.read = Some(c.round);
            watch.last = Some((reply, view.clone()));
            view
        }
    };
    watch.signals = Some(signals);
    watch.upstream = Some(upstream);
    Ok(NodeReading {
        replication,
        cluster: Some(view),
    })
}

async fn read_nodes(client: &Client) -> Result<String, Error> {
    client
        .custom::<String, _>(command("CLUSTER"), vec!["NODES"])
        .await
}
