//! A cluster node's slots with the most keys: `CLUSTER SLOT-STATS ORDERBY
//! key-count LIMIT n` (Valkey 8.0+, Redis 8.2+) and `DBSIZE`, what the hot
//! slots check needs (`monitor::findings::hot_slots`). A read of the slow
//! cadence, not of every poll: the server walks its slots to sort them.

use fred::prelude::*;
use fred::types::InfoKind;

use super::{failed, parsed};
use crate::client::command;
use crate::model::{PollError, SlotStatsReading};
use crate::parse::cluster::MAX_SLOT;
use crate::parse::slot_stats::{has_slot_stats, parse_slot_stats, Entry};

/// A command that failed; a refusal in the server's own words
/// (`NOPERM ...`), as the findings show it.
fn refused(e: fred::error::Error) -> PollError {
    if e.details().starts_with("NOPERM") {
        PollError::Command(e.details().to_string())
    } else {
        failed(e)
    }
}

/// The node's `limit` slots with the most keys (clamped to 1..=16384, as
/// the server takes it), most first, and its key count. `None` when the
/// server does not have the command (Redis before 8.2, Valkey before 8.0):
/// an answer, not a failure.
pub async fn slot_stats(
    client: &Client,
    limit: usize,
) -> Result<Option<SlotStatsReading>, PollError> {
    let server = client
        .info::<String>(Some(InfoKind::Server))
        .await
        .map_err(failed)?;
    if !has_slot_stats(&server) {
        return Ok(None);
    }
    let limit = limit.clamp(1, usize::from(MAX_SLOT) + 1).to_string();
    let args = vec!["SLOT-STATS", "ORDERBY", "key-count", "LIMIT", &limit];
    // One after the other: a server without the command is not asked for
    // its key count either (an ACL without `+dbsize`, as on servers that
    // cannot have `+cluster|slot-stats`, would log the refusal).
    let entries = match client
        .custom::<Vec<Entry>, _>(command("CLUSTER"), args)
        .await
    {
        Ok(entries) => entries,
        Err(e) if e.details().contains("unknown subcommand") => return Ok(None),
        Err(e) => return Err(refused(e)),
    };
    let keys = client.dbsize::<u64>().await.map_err(refused)?;
    Ok(Some(SlotStatsReading {
        top: parsed("CLUSTER SLOT-STATS", parse_slot_stats(&entries))?,
        keys,
    }))
}
