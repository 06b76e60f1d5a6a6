//! One poll of a sentinel: `SENTINEL MASTERS` and `INFO sentinel`, then for
//! each watched master `SENTINEL REPLICAS`, `SENTINELS` and `CKQUORUM`. All
//! read-only: nothing here can change a sentinel's state or cast a vote.

use std::collections::HashMap;

use fred::prelude::*;
use futures::future::try_join_all;

use super::{failed, parsed};
use crate::client::command;
use crate::config::Deployment;
use crate::model::{MasterView, PollError, SentinelReading};
use crate::parse::info::SentinelInfo;
use crate::parse::sentinel::{parse_ckquorum, MasterEntry, ReplicaEntry, SentinelEntry};

type Maps = Vec<HashMap<String, String>>;

/// Polls one sentinel about the masters `deployment` watches.
pub async fn poll(client: &Client, deployment: &Deployment) -> Result<SentinelReading, PollError> {
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
