//! Hot slots: a hash slot holding a large share of its shard's keys, from
//! each master's `CLUSTER SLOT-STATS ORDERBY key-count` and `DBSIZE`
//! (`collect::slot_stats`, Valkey 8.0+ and Redis 8.2+). A slot is the
//! smallest unit Redis Cluster moves between masters: keys that pile up in
//! one (typically under one hash tag, `{...}`) stay on one master whatever
//! the resharding. Pure: the same statistics give the same findings.

use crate::config::Severity;
use crate::model::finding::{Check, Finding};
use crate::model::{HotSlot, Skew, SlotStatsReading};

/// Shards with fewer keys are not judged: with few keys, one slot holds a
/// large share by chance (1000 keys hashed over 5461 slots leave at most
/// 3 or 4 in any, under 0.5%).
pub const MIN_KEYS: u64 = 1000;

/// A slot holding this share of its shard's keys is an info finding...
const SHARE_INFO: f64 = 0.05;

/// ...and from this share a warning: a quarter of the master's keys can
/// never be moved off it in pieces.
const SHARE_WARNING: f64 = 0.25;

/// Only when the slot also holds this many times an average slot of its
/// shard: in a shard of few slots, every slot holds a large share.
const SKEW_MIN: f64 = 10.0;

/// One shard's slot statistics, as its master reported them.
#[derive(Debug, Clone, Copy)]
pub struct ShardSlots<'a> {
    /// The shard label.
    pub shard: &'a str,
    /// Its master, `host:port`.
    pub node: &'a str,
    /// Slots the shard serves.
    pub slots: u32,
    /// What the master said.
    pub stats: &'a SlotStatsReading,
}

/// The `n` slots with the most keys over every shard, most first (then by
/// slot).
pub fn top(shards: &[ShardSlots], n: usize) -> Vec<HotSlot> {
    let mut all: Vec<HotSlot> = shards
        .iter()
        .flat_map(|s| {
            s.stats.top.iter().map(|t| HotSlot {
                shard: s.shard.to_string(),
                slot: t.slot,
                keys: t.keys,
            })
        })
        .collect();
    all.sort_by(|a, b| b.keys.cmp(&a.keys).then(a.slot.cmp(&b.slot)));
    all.truncate(n);
    all
}

/// The skew of a shard's slot with the most keys; `None` while it has no
/// keys or serves no slots.
pub fn skew(s: &ShardSlots) -> Option<Skew> {
    let hottest = s.stats.top.iter().max_by_key(|t| t.keys)?;
    // The master's key count, or the listed slots' if it is read lower
    // (keys written between the two reads).
    let shard_keys = s.stats.keys.max(s.stats.top.iter().map(|t| t.keys).sum());
    if shard_keys == 0 || s.slots == 0 {
        return None;
    }
    let share = hottest.keys as f64 / shard_keys as f64;
    Some(Skew {
        slot: hottest.slot,
        keys: hottest.keys,
        shard_keys,
        share,
        skew: share * f64::from(s.slots),
    })
}

/// The `hot_slots` findings of cluster `deployment`: one per shard of at
/// least [`MIN_KEYS`] keys whose slot with the most keys holds
/// [`SHARE_INFO`] of them (info) or [`SHARE_WARNING`] (warning), and
/// [`SKEW_MIN`] times an average slot.
pub fn findings(deployment: &str, shards: &[ShardSlots]) -> Vec<Finding> {
    shards
        .iter()
        .filter_map(|s| {
            let k = skew(s).filter(|k| k.shard_keys >= MIN_KEYS && k.skew >= SKEW_MIN)?;
            let severity = if k.share >= SHARE_WARNING {
                Severity::Warning
            } else if k.share >= SHARE_INFO {
                Severity::Info
            } else {
                return None;
            };
            Some(Finding {
                check: Check::HotSlots,
                severity,
                deployment: deployment.to_string(),
                shard: Some(s.shard.to_string()),
                node: Some(s.node.to_string()),
                why: format!(
                    "slot {} holds {:.0}% of shard {}'s {} keys, {:.0}x an average slot of its {}: a slot is the smallest unit the cluster moves, so they stay on one master whatever the resharding",
                    k.slot,
                    k.share * 100.0,
                    s.shard,
                    k.shard_keys,
                    k.skew,
                    s.slots
                ),
                action: format!(
                    "look at its keys (CLUSTER GETKEYSINSLOT {} 20) for a hash tag {{...}} or one large family, and spread them over more tags",
                    k.slot
                ),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::slot_stats::SlotStats;

    fn stats(keys: u64, top: &[(u16, u64)]) -> SlotStatsReading {
        SlotStatsReading {
            top: top
                .iter()
                .map(|&(slot, keys)| SlotStats {
                    slot,
                    keys,
                    cpu_usec: None,
                    network_bytes_in: None,
                    network_bytes_out: None,
                })
                .collect(),
            keys,
        }
    }

    fn shard<'a>(shard: &'a str, slots: u32, stats: &'a SlotStatsReading) -> ShardSlots<'a> {
        ShardSlots {
            shard,
            node: "10.0.0.1:6379",
            slots,
            stats,
        }
    }

    #[test]
    fn the_top_slots_of_every_shard_most_keys_first() {
        let (a, b) = (
            stats(100, &[(7, 30), (9, 5)]),
            stats(50, &[(6000, 30), (6001, 10)]),
        );
        let t = top(&[shard("a", 5461, &a), shard("b", 5461, &b)], 3);
        let got: Vec<(&str, u16, u64)> = t
            .iter()
            .map(|h| (h.shard.as_str(), h.slot, h.keys))
            .collect();
        assert_eq!(got, [("a", 7, 30), ("b", 6000, 30), ("b", 6001, 10)]);
        assert_eq!(top(&[], 3), []);
    }

    #[test]
    fn skew_is_the_hottest_slots_share_against_an_average_slot() {
        let s = stats(10_000, &[(3, 500), (4, 10)]);
        let k = skew(&shard("a", 5000, &s)).unwrap();
        assert_eq!((k.slot, k.keys, k.shard_keys), (3, 500, 10_000));
        assert!((k.share - 0.05).abs() < 1e-9 && (k.skew - 250.0).abs() < 1e-6);
        // Keys read lower than the listed slots hold: the slots count.
        let late = stats(5, &[(3, 8), (4, 2)]);
        assert_eq!(skew(&shard("a", 10, &late)).unwrap().shard_keys, 10);
        assert_eq!(skew(&shard("a", 10, &stats(0, &[]))), None);
        assert_eq!(skew(&shard("a", 0, &s)), None);
    }

    #[test]
    fn hot_slots_are_info_then_a_warning_and_few_keys_or_slots_are_not_judged() {
        let severity = |keys, slots, hottest| {
            let s = stats(keys, &[(42, hottest)]);
            let f = findings("c", &[shard("a", slots, &s)]);
            f.first().map(|f| (f.severity, f.why.clone()))
        };
        // Even: 100 000 keys over 5461 slots, about 18 a slot.
        assert_eq!(severity(100_000, 5461, 40), None);
        let (s, why) = severity(100_000, 5461, 6_000).unwrap();
        assert_eq!(s, Severity::Info);
        assert!(
            why.starts_with(
                "slot 42 holds 6% of shard a's 100000 keys, 328x an average slot of its 5461"
            ),
            "{why}"
        );
        assert_eq!(
            severity(100_000, 5461, 30_000).unwrap().0,
            Severity::Warning
        );
        // Too few keys to tell, or too few slots for a share to mean much.
        assert_eq!(severity(999, 5461, 500), None);
        assert_eq!(severity(100_000, 4, 30_000), None);
        let s = stats(100_000, &[(42, 30_000)]);
        let f = findings("c", &[shard("a", 5461, &s)]);
        assert_eq!(f[0].check.as_str(), "hot_slots");
        assert_eq!(
            (f[0].shard.as_deref(), f[0].node.as_deref()),
            (Some("a"), Some("10.0.0.1:6379"))
        );
        assert!(f[0].action.contains("CLUSTER GETKEYSINSLOT 42 20"));
    }
}
