//! A shard with more than one node reporting role master: usually the old
//! master back from a failure before Sentinel (or the cluster) turns it
//! into a replica. What matters is whether clients still write there:
//! those writes are lost at the conversion.

use std::collections::BTreeMap;

use crate::model::timeline::Window;

/// A node of a shard that reports role master, as its last poll says.
#[derive(Debug, Clone)]
pub struct MasterSeen {
    /// `host:port`.
    pub addr: String,
    /// Its `master_repl_offset`.
    pub offset: u64,
    /// Its `rdb_changes_since_last_save`, when read (masters with no
    /// replica connected).
    pub changes: Option<u64>,
}

/// An open two-masters window, with what each node other than the shard's
/// master took since it opened.
#[derive(Debug, Clone)]
pub struct TwoMasters {
    /// The window as timelines and views show it.
    pub window: Window,
    others: BTreeMap<String, Taken>,
}

/// What one node that should not be a master took while it was one.
#[derive(Debug, Clone, Default)]
struct Taken {
    /// Its offset at the switch, or when the window opened.
    base_offset: u64,
    /// Bytes its offset moved since.
    bytes: u64,
    /// Its last `rdb_changes_since_last_save`.
    changes: Option<u64>,
    /// Write commands counted since the first reading of it.
    writes: u64,
}

impl TwoMasters {
    /// A window opened at `now`.
    pub fn open(now: f64) -> Self {
        TwoMasters {
            window: Window {
                start: now,
                end: None,
                nodes: Vec::new(),
                writes: None,
                written_bytes: None,
            },
            others: BTreeMap::new(),
        }
    }

    /// Follows the masters seen now. `master` is the shard's master as the
    /// sentinels or the slot map name it (unknown: nothing is counted, as
    /// there is no telling which node is the stray one); `switched_from` the
    /// old master of the shard's last failover and its offset then, the
    /// base of what it took. Whether the window changed.
    pub fn see(
        &mut self,
        masters: &[MasterSeen],
        master: Option<&str>,
        switched_from: Option<(&str, u64)>,
    ) -> bool {
        let before = self.window.clone();
        self.window.nodes = masters.iter().map(|m| m.addr.clone()).collect();
        if let Some(master) = master {
            for m in masters.iter().filter(|m| m.addr != master) {
                let taken = self.others.entry(m.addr.clone()).or_insert_with(|| Taken {
                    base_offset: switched_from
                        .filter(|(addr, _)| *addr == m.addr)
                        .map_or(m.offset, |(_, offset)| offset),
                    ..Taken::default()
                });
                taken.see(m);
            }
            let others = || self.others.values();
            self.window.written_bytes = Some(others().map(|t| t.bytes).sum());
            self.window.writes = others()
                .any(|t| t.changes.is_some())
                .then(|| others().map(|t| t.writes).sum());
        }
        self.window != before
    }
}

impl Taken {
    fn see(&mut self, m: &MasterSeen) {
        self.bytes = m.offset.saturating_sub(self.base_offset);
        if let Some(now) = m.changes {
            self.writes += match self.changes {
                Some(last) if now >= last => now - last,
                // A save started the count again from 0.
                Some(_) => now,
                None => 0,
            };
            self.changes = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(addr: &str, offset: u64, changes: Option<u64>) -> MasterSeen {
        MasterSeen {
            addr: addr.into(),
            offset,
            changes,
        }
    }

    #[test]
    fn a_returning_master_that_takes_no_write_counts_none() {
        let mut two = TwoMasters::open(10.0);
        let masters = [seen("new", 500, None), seen("old", 120, Some(7))];
        assert!(two.see(&masters, Some("new"), Some(("old", 100))));
        assert_eq!(two.window.nodes, ["new", "old"]);
        // Bytes since the switch: sentinels' hellos move the offset too.
        assert_eq!(two.window.written_bytes, Some(20));
        assert_eq!(two.window.writes, Some(0), "the first reading is the base");
        let later = [seen("new", 900, None), seen("old", 160, Some(7))];
        assert!(two.see(&later, Some("new"), Some(("old", 100))));
        assert_eq!(
            (two.window.writes, two.window.written_bytes),
            (Some(0), Some(60))
        );
        assert!(
            !two.see(&later, Some("new"), Some(("old", 100))),
            "nothing moved"
        );
    }

    #[test]
    fn writes_are_counted_across_a_save() {
        let mut two = TwoMasters::open(0.0);
        two.see(
            &[seen("m", 0, None), seen("x", 50, Some(3))],
            Some("m"),
            None,
        );
        assert_eq!(
            two.window.written_bytes,
            Some(0),
            "no switch: based at the window"
        );
        two.see(
            &[seen("m", 0, None), seen("x", 90, Some(5))],
            Some("m"),
            None,
        );
        // A save restarts the count: 5 -> 0 -> 4 reads as 4 more.
        two.see(
            &[seen("m", 0, None), seen("x", 130, Some(4))],
            Some("m"),
            None,
        );
        assert_eq!(two.window.writes, Some(6));
        assert_eq!(two.window.written_bytes, Some(80));
    }

    #[test]
    fn without_a_known_master_nothing_is_counted() {
        let mut two = TwoMasters::open(0.0);
        two.see(
            &[seen("a", 10, Some(1)), seen("b", 20, Some(2))],
            None,
            None,
        );
        assert_eq!((two.window.writes, two.window.written_bytes), (None, None));
        assert_eq!(two.window.nodes.len(), 2);
    }
}
