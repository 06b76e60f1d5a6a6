//! Replies of `CLUSTER SLOT-STATS` (Valkey 8.0+, Redis 8.2+): per hash
//! slot of the answering node, its key count, and with
//! `cluster-slot-stats-enabled yes` the CPU time and network bytes its
//! commands took since the node started.
//!
//! The server answers with one `[slot, statistics]` pair per slot, the
//! statistics a map in RESP3 and a flat name/value array in RESP2; the
//! collector hands each pair over as [`Entry`] whatever the protocol
//! version, every value as a string.

use std::collections::HashMap;

use super::info::fields;

/// Whether a server, by its `INFO server`, has `CLUSTER SLOT-STATS`:
/// Valkey 8.0+ (which still reports `redis_version:7.2.4`) or Redis 8.2+.
/// Asked first, because a server without it may check the ACL before the
/// subcommand: Redis 6.2 logs a user without `+cluster|slot-stats` as
/// refused instead of answering "unknown subcommand".
pub fn has_slot_stats(info_server: &str) -> bool {
    let version = |name: &str| {
        let v = fields(info_server).find(|(k, _)| *k == name)?.1;
        let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        Some((parts.next()?, parts.next().unwrap_or(0)))
    };
    match (version("valkey_version"), version("redis_version")) {
        (Some(valkey), _) => valkey >= (8, 0),
        (None, Some(redis)) => redis >= (8, 2),
        (None, None) => false,
    }
}

use super::{num, ParseError};
use crate::parse::cluster::MAX_SLOT;

/// One slot of the reply: its number and its statistics by name.
pub type Entry = (String, HashMap<String, String>);

/// One slot's statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotStats {
    /// The hash slot.
    pub slot: u16,
    /// `key-count`: keys in the slot now.
    pub keys: u64,
    /// `cpu-usec`: CPU time of the slot's commands, microseconds
    /// (`cluster-slot-stats-enabled yes` only, as the three below).
    pub cpu_usec: Option<u64>,
    /// `network-bytes-in`: bytes of the slot's commands.
    pub network_bytes_in: Option<u64>,
    /// `network-bytes-out`: bytes of their replies.
    pub network_bytes_out: Option<u64>,
}

impl SlotStats {
    /// Parses one `[slot, statistics]` pair.
    pub fn parse((slot, stats): &Entry) -> Result<Self, ParseError> {
        let slot: u16 = num("slot", slot)?;
        if slot > MAX_SLOT {
            return Err(ParseError::invalid("slot", &slot.to_string()));
        }
        let field = |name: &'static str| stats.get(name).map(|v| num(name, v)).transpose();
        Ok(SlotStats {
            slot,
            keys: field("key-count")?.ok_or(ParseError::Missing("key-count"))?,
            cpu_usec: field("cpu-usec")?,
            network_bytes_in: field("network-bytes-in")?,
            network_bytes_out: field("network-bytes-out")?,
        })
    }
}

/// Parses the reply of `CLUSTER SLOT-STATS`, in the server's order.
pub fn parse_slot_stats(entries: &[Entry]) -> Result<Vec<SlotStats>, ParseError> {
    entries.iter().map(SlotStats::parse).collect()
}

#[cfg(test)]
mod tests {
    use fred::bytes::Bytes;
    use fred::types::{FromValue, Value};
    use redis_protocol::resp3::decode::complete::decode_bytes;

    use super::*;
    use crate::parse::fixture;

    /// A recorded reply (RESP2 or RESP3 bytes, as the server sent them)
    /// turned into [`Entry`]s as the collector gets them from fred: RESP2
    /// frames are a subset of RESP3's, and fred decodes both into RESP3
    /// frames before making values of them.
    fn recorded(name: &str) -> Vec<Entry> {
        let bytes = Bytes::from(fixture(name));
        let (frame, used) = decode_bytes(&bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len(), "one reply");
        Vec::<Entry>::from_value(Value::try_from(frame).unwrap()).unwrap()
    }

    #[test]
    fn recorded_replies_parse_alike_in_resp2_and_resp3() {
        let resp2 =
            parse_slot_stats(&recorded("valkey-8.1/cluster-slot-stats-resp2.resp")).unwrap();
        let resp3 =
            parse_slot_stats(&recorded("valkey-8.1/cluster-slot-stats-resp3.resp")).unwrap();
        assert_eq!(resp2, resp3);
        // `{x}1`..`{x}4` share slot 16287 (hash tag `x`), then single keys
        // in slot order.
        assert_eq!(
            resp2[0],
            SlotStats {
                slot: 16287,
                keys: 4,
                cpu_usec: Some(12),
                network_bytes_in: Some(143),
                network_bytes_out: Some(27),
            }
        );
        let slots: Vec<(u16, u64)> = resp2.iter().map(|s| (s.slot, s.keys)).collect();
        assert_eq!(slots, [(16287, 4), (3300, 1), (7365, 1)]);
    }

    #[test]
    fn without_slot_stats_enabled_only_keys_are_counted() {
        let keys =
            parse_slot_stats(&recorded("valkey-8.1/cluster-slot-stats-keys-only.resp")).unwrap();
        assert_eq!(keys.len(), 3);
        assert_eq!(
            keys[0],
            SlotStats {
                slot: 16287,
                keys: 4,
                cpu_usec: None,
                network_bytes_in: None,
                network_bytes_out: None,
            }
        );
    }

    #[test]
    fn malformed_entries_are_errors() {
        let entry = |slot: &str, stats: &[(&str, &str)]| {
            (
                slot.to_string(),
                stats
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        assert_eq!(
            SlotStats::parse(&entry("16384", &[("key-count", "1")])),
            Err(ParseError::invalid("slot", "16384"))
        );
        assert!(SlotStats::parse(&entry("x", &[("key-count", "1")])).is_err());
        assert_eq!(
            SlotStats::parse(&entry("1", &[("cpu-usec", "1")])),
            Err(ParseError::Missing("key-count"))
        );
        assert!(SlotStats::parse(&entry("1", &[("key-count", "-1")])).is_err());
        assert!(SlotStats::parse(&entry("1", &[("key-count", "1"), ("cpu-usec", "a")])).is_err());
        assert_eq!(parse_slot_stats(&[]), Ok(Vec::new()));
    }

    #[test]
    fn which_servers_have_slot_stats() {
        let info = |fields: &str| format!("# Server\r\n{fields}\r\nredis_mode:cluster\r\n");
        assert!(has_slot_stats(&info(
            "redis_version:7.2.4\r\nvalkey_version:8.1.8"
        )));
        assert!(!has_slot_stats(&info(
            "redis_version:7.2.4\r\nvalkey_version:7.2.5"
        )));
        assert!(has_slot_stats(&info("redis_version:8.2.0")));
        assert!(!has_slot_stats(&info("redis_version:8.0.3")));
        assert!(!has_slot_stats(&info("redis_version:7.0.15")));
        assert!(!has_slot_stats(&info("redis_version:6.2.14")));
        assert!(!has_slot_stats("garbage"));
    }
}
