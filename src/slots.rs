//! Hash slots: key slots, per-view slot ownership, contiguous ranges, and
//! the agreement check of `redis-cli --cluster check`. Pure.

use crate::parse::cluster::{ClusterNode, MAX_SLOT};
use crate::util::hash::Fnv;

/// Slots in a cluster.
pub const SLOTS: usize = MAX_SLOT as usize + 1;

/// CRC16/XMODEM (polynomial 0x1021, initial value 0), as Redis Cluster uses it.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The slot of `key`: only the part between the first `{` and the next `}`
/// is hashed when it is not empty (a hash tag), else the whole key.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) & MAX_SLOT
}

/// Contiguous runs of equal values: `(start, end, value)` with `end` inclusive.
pub fn runs<T: PartialEq + Clone>(per_slot: &[T]) -> Vec<(u16, u16, T)> {
    let mut out: Vec<(u16, u16, T)> = Vec::new();
    for (slot, value) in per_slot.iter().enumerate() {
        let slot = slot as u16;
        match out.last_mut() {
            Some((_, end, v)) if v == value && *end + 1 == slot => *end = slot,
            _ => out.push((slot, slot, value.clone())),
        }
    }
    out
}

/// The node id serving each slot in one node's view; when two lines claim
/// a slot, the higher config epoch wins, as in Redis.
pub fn owners<'a>(view: impl IntoIterator<Item = &'a ClusterNode>) -> Vec<Option<&'a str>> {
    let mut owner: Vec<Option<(&str, u64)>> = vec![None; SLOTS];
    for line in view.into_iter().filter(|l| l.flags.master) {
        for &(start, end) in &line.slots {
            for slot in &mut owner[usize::from(start)..=usize::from(end)] {
                if slot.is_none_or(|(_, epoch)| line.config_epoch > epoch) {
                    *slot = Some((&line.id, line.config_epoch));
                }
            }
        }
    }
    owner.into_iter().map(|o| o.map(|(id, _)| id)).collect()
}

/// The `redis-cli --cluster check` signature of a view: the sorted
/// `id:slots` of every line that owns slots, reduced to a hash (each line
/// hashed, the hashes sorted, then combined) so that comparing large
/// clusters builds no large strings. Equal signatures, same slot map.
pub fn signature<'a>(view: impl IntoIterator<Item = &'a ClusterNode>) -> u64 {
    let mut lines: Vec<u64> = view
        .into_iter()
        .filter(|l| !l.slots.is_empty())
        .map(|l| {
            let mut h = Fnv::default();
            h.write(l.id.as_bytes());
            for (a, b) in &l.slots {
                h.write(&a.to_le_bytes());
                h.write(&b.to_le_bytes());
            }
            h.0
        })
        .collect();
    lines.sort_unstable();
    let mut h = Fnv::default();
    for line in lines {
        h.write(&line.to_le_bytes());
    }
    h.0
}

/// A run of slots whose owner differs between two views: `(start, end,
/// this view's owner, the other's owner)`.
pub type Difference<'a> = (u16, u16, Option<&'a str>, Option<&'a str>);

/// Where one view's slot map differs from another, per contiguous run.
pub fn differences<'a>(
    view: &[Option<&'a str>],
    reference: &[Option<&'a str>],
) -> Vec<Difference<'a>> {
    let pairs: Vec<(Option<&str>, Option<&str>)> = view
        .iter()
        .copied()
        .zip(reference.iter().copied())
        .collect();
    runs(&pairs)
        .into_iter()
        .filter(|(_, _, (a, b))| a != b)
        .map(|(s, e, (a, b))| (s, e, a, b))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::cluster::parse_nodes;
    use crate::parse::fixture;

    #[test]
    fn key_slots_match_the_reference_vectors() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"123456789"), 12739);
        assert_eq!(key_slot(b"{user1000}.following"), 3443);
        assert_eq!(key_slot(b"{user1000}.followers"), 3443);
        assert_eq!(key_slot(b"foo{}bar"), 14292);
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        assert_eq!(key_slot(b""), 0);
    }

    #[test]
    fn owners_runs_and_signatures_of_the_recorded_views() {
        let ok = parse_nodes(&fixture("cluster-nodes-ok.txt")).unwrap();
        let owner = owners(&ok);
        let ranges: Vec<(u16, u16)> = runs(&owner).into_iter().map(|(a, b, _)| (a, b)).collect();
        assert_eq!(ranges, [(0, 5460), (5461, 10922), (10923, 16383)]);
        assert!(owner.iter().all(Option::is_some));
        let after = parse_nodes(&fixture("cluster-nodes-after-failover.txt")).unwrap();
        assert_ne!(signature(&ok), signature(&after));
        let diff = differences(&owners(&after), &owner);
        assert_eq!(diff.len(), 1);
        assert_eq!((diff[0].0, diff[0].1), (5461, 10922));
        // Same lines in another order: same signature.
        let mut shuffled = ok.clone();
        shuffled.reverse();
        assert_eq!(signature(&ok), signature(&shuffled));
    }
}
