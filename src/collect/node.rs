//! One poll of a data node: `INFO replication`, and on cluster nodes
//! `CLUSTER INFO` every poll and `CLUSTER NODES` when it has something new
//! to say ([`super::topology`]); `INFO persistence` on masters that have no
//! replica connected, or that report role master beside their shard's
//! master ([`Strays`]); the node's settings ([`super::settings`]) when the
//! poller says they are due.

use fred::prelude::*;
use fred::types::InfoKind;

use std::collections::HashSet;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use super::topology::{Rotation, Topology};
use super::{failed, parsed};
use crate::client::{client, command, Purpose, CLIENT_NAME};
use crate::config::{Auth, Tls};
use crate::model::{ClusterReading, NodeReading, PollError, SlotStatsRead};
use crate::parse::cluster::{info_signals, parse_nodes, reply_digest, ClusterInfo};
use crate::parse::info::{changes_since_save, ReplicationInfo, Role};

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
    /// How to open another connection to it, for `CLUSTER NODES`.
    pub auth: &'a Auth,
    /// Its TLS settings, if any.
    pub tls: Option<&'a Tls>,
    /// The time one command may take.
    pub timeout: Duration,
    /// The poll interval.
    pub interval: Duration,
    /// Its cluster's rotation now.
    pub rotation: &'a Rotation,
    /// Its cluster's interned lines and read permits.
    pub shared: &'a Topology,
    /// The poll round now.
    pub round: u64,
    /// Its last poll failed, or there was none: it may have missed anything.
    pub back: bool,
}

/// `INFO replication`; on a cluster node also `CLUSTER INFO`, and `CLUSTER
/// NODES` on the node's turn, when it is new or back, or (in a second round
/// trip) when `CLUSTER INFO` or its own role says the topology moved.
/// `watch` is updated only by a poll that succeeds.
///
/// A `CLUSTER NODES` read that fails while an earlier view is known does
/// not fail the poll: the earlier view goes on with the fresh `CLUSTER
/// INFO`, and the next poll reads again.
/// `stray`: the node reports role master beside its shard's master.
/// `slow`: the reads of the slow cadence are due, the node's settings and
/// (on a cluster master) its `slow` slots with the most keys; read after
/// the poll's own commands, so they never delay what the poll is for.
pub async fn poll(
    client: &Client,
    cluster: Option<(Cluster<'_>, &mut Watch)>,
    stray: bool,
    slow: Option<usize>,
) -> Result<NodeReading, PollError> {
    let is_cluster = cluster.is_some();
    let mut reading = replication_and_cluster(client, cluster).await?;
    let r = &reading.replication;
    let master = r.role == Role::Master;
    if master && (r.replicas.is_empty() || stray) {
        reading.changes = changes(client).await;
    }
    if let Some(hot) = slow {
        reading.settings = super::settings::read(client, is_cluster)
            .await
            .map(Box::new);
        if is_cluster && master {
            // Not known to the server, or failed: no figures this time (a
            // failed read is asked again at the next slow read).
            let read = match super::slot_stats::slot_stats(client, hot).await {
                Ok(read) => read.map(SlotStatsRead::Read),
                Err(PollError::Command(e)) if e.contains("NOPERM") => {
                    Some(SlotStatsRead::Refused(e))
                }
                Err(_) => None,
            };
            reading.slot_stats = read.map(Box::new);
        }
    }
    Ok(reading)
}

/// The nodes of one deployment that report role master beside their
/// shard's master, as the latest snapshot shows them (set by the
/// supervisor): their pollers read their write count every poll, even
/// while a replica that was not yet moved to the new master still follows
/// them.
#[derive(Debug, Default)]
pub struct Strays(RwLock<HashSet<String>>);

impl Strays {
    /// Replaces the set; whether it changed.
    pub fn set(&self, nodes: HashSet<String>) -> bool {
        let mut current = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let changed = *current != nodes;
        *current = nodes;
        changed
    }

    /// Whether `addr` is one.
    pub fn contains(&self, addr: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(addr)
    }
}

/// Whether clients write to a master that should not be one: a returning
/// old master (its replicas follow the new master, or are being moved), and
/// the writes it takes are lost when it is turned into a replica. Other
/// masters (nearly every master, nearly always) are not asked: the second
/// round trip and the 1 kB reply are paid only where the answer matters. A
/// failed read is not a failed poll.
async fn changes(client: &Client) -> Option<u64> {
    let text = client
        .info::<String>(Some(InfoKind::Persistence))
        .await
        .ok()?;
    changes_since_save(&text).ok()
}

/// `INFO replication`, and the cluster's view on a cluster node.
async fn replication_and_cluster(
    client: &Client,
    cluster: Option<(Cluster<'_>, &mut Watch)>,
) -> Result<NodeReading, PollError> {
    let info = client.info::<String>(Some(InfoKind::Replication));
    let Some((c, watch)) = cluster else {
        let text = info.await.map_err(failed)?;
        return Ok(NodeReading {
            replication: parsed("INFO replication", ReplicationInfo::parse(&text))?,
            cluster: None,
            changes: None,
            settings: None,
            slot_stats: None,
        });
    };
    let turn = c.back || watch.last.is_none() || c.rotation.due(c.addr, c.round, watch.read);
    let cluster_info = client.custom::<String, _>(command("CLUSTER"), vec!["INFO"]);
    let both = async { tokio::try_join!(info, cluster_info).map_err(failed) };
    let (both, early) = if turn {
        // A first view waits its turn for a permit as long as a poll
        // round: when a whole cluster starts reading at once, the reads
        // queue for the permits rather than fall back on the connections
        // of the polls (each would keep a read buffer the size of the reply).
        let wait = if watch.last.is_none() {
            c.interval
        } else {
            c.timeout
        };
        let (both, nodes) = tokio::join!(both, read_apart(&c, wait));
        (both, Some(nodes))
    } else {
        (both.await, None)
    };
    let (text, cinfo) = both?;
    let replication = parsed("INFO replication", ReplicationInfo::parse(&text))?;
    let info = parsed("CLUSTER INFO", ClusterInfo::parse(&cinfo))?;
    let signals = info_signals(&cinfo);
    let upstream = (
        replication.role,
        replication.upstream.as_ref().map(|u| u.master.clone()),
    );
    let moved = watch.signals != Some(signals) || watch.upstream.as_ref() != Some(&upstream);
    let Some((reply, view)) = watch.last.take() else {
        // A first view: nothing to show without it, so the poll's own
        // connection reads it when another could not.
        let text = match early {
            Some(Ok(text)) => text,
            _ => read_nodes(client).await.map_err(failed)?,
        };
        let view = fresh(&c, watch, text, info, None)?;
        watch.signals = Some(signals);
        watch.upstream = Some(upstream);
        return Ok(NodeReading {
            replication,
            cluster: Some(view),
            changes: None,
            settings: None,
            slot_stats: None,
        });
    };
    let read = match early {
        Some(read) => Some(read),
        None if moved => Some(read_apart(&c, c.timeout).await),
        None => None,
    };
    let view = match read {
        Some(Ok(text)) => fresh(&c, watch, text, info, Some((reply, view)))?,
        unread => {
            let known = view.with_info(info);
            watch.last = Some((reply, view));
            if unread.is_some() {
                // The read failed: signals and role stay as they were, so
                // the next poll reads again.
                return Ok(NodeReading {
                    replication,
                    cluster: Some(known),
                    changes: None,
                    settings: None,
                    slot_stats: None,
                });
            }
            known
        }
    };
    watch.signals = Some(signals);
    watch.upstream = Some(upstream);
    Ok(NodeReading {
        replication,
        cluster: Some(view),
        changes: None,
        settings: None,
        slot_stats: None,
    })
}

/// The view of a `CLUSTER NODES` reply just read: the last one again when
/// the reply is the same, else parsed, its lines interned.
fn fresh(
    c: &Cluster<'_>,
    watch: &mut Watch,
    text: String,
    info: ClusterInfo,
    last: Option<(u64, ClusterReading)>,
) -> Result<ClusterReading, PollError> {
    let reply = reply_digest(&text);
    let view = match &last {
        Some((digest, view)) if *digest == reply => view.with_info(info),
        _ => match parsed("CLUSTER NODES", parse_nodes(&text)) {
            Ok(lines) => ClusterReading::new(info, c.shared.lines.intern(lines))
                .reusing(last.as_ref().map(|(_, v)| v)),
            Err(e) => {
                // Kept for the next poll, which reads again.
                watch.last = last;
                return Err(e);
            }
        },
    };
    watch.read = Some(c.round);
    watch.last = Some((reply, view.clone()));
    Ok(view)
}

/// Reads `CLUSTER NODES` on a connection opened for it and closed after.
/// A connection keeps a read buffer as large as the largest reply it ever
/// read, for as long as it lives: on the poll's own connection, every node
/// of a 1000-node cluster would hold 130 kB for a reply it reads once in
/// `topology_interval`. Waits for one of the cluster's permits first, at
/// most `wait`.
async fn read_apart(c: &Cluster<'_>, wait: Duration) -> Result<String, PollError> {
    let _permit = tokio::time::timeout(wait, c.shared.reads.acquire())
        .await
        .map_err(|_| PollError::Timeout)?
        .map_err(|_| PollError::Timeout)?;
    let client = client(c.addr, c.auth, c.tls, c.timeout, Purpose::Once)?;
    let connection = client.init().await.map_err(failed)?;
    // Named in the same round trip, as the agent's (not an application
    // left behind, should a read of `CLIENT LIST` see it); a refused name
    // does not fail the read.
    let pipeline = client.pipeline();
    let queued = async {
        pipeline
            .custom::<(), _>(command("CLIENT"), vec!["SETNAME", CLIENT_NAME])
            .await?;
        pipeline
            .custom::<(), _>(command("CLUSTER"), vec!["NODES"])
            .await
    };
    let nodes = match queued.await {
        Ok(()) => pipeline
            .try_all::<String>()
            .await
            .pop()
            .unwrap_or_else(|| Err(Error::new(ErrorKind::Unknown, "CLUSTER NODES: no reply"))),
        Err(e) => Err(e),
    }
    .map_err(failed);
    // Closed without a QUIT: one round trip less, and nothing is pending.
    connection.abort();
    nodes
}

async fn read_nodes(client: &Client) -> Result<String, Error> {
    client
        .custom::<String, _>(command("CLUSTER"), vec!["NODES"])
        .await
}
