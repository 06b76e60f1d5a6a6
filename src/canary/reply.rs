//! What the canary reads from servers, as typed values: its own key's
//! value, a sentinel's answer to `GET-MASTER-ADDR-BY-NAME`, and the errors
//! that tell it where to go next. Pure, no I/O.

use crate::parse::join_addr;
use crate::slots::key_slot;

/// One canary write as stored in its key: `<seq>:<unix_ms>`. The sequence
/// number says which writes a node holds (the key is overwritten, and a
/// node holding `seq` holds every earlier write of the same stream); the
/// time says how old the data is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The write's sequence number.
    pub seq: u64,
    /// When it was sent, unix milliseconds.
    pub at_ms: u64,
}

impl Written {
    /// The value to store.
    pub fn encode(self) -> String {
        format!("{}:{}", self.seq, self.at_ms)
    }

    /// A value read back; `None` for anything the canary did not write
    /// (the key is in the keyspace of whoever runs the server).
    pub fn parse(text: &str) -> Option<Written> {
        let (seq, at_ms) = text.split_once(':')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(seq) || !digits(at_ms) {
            return None;
        }
        Some(Written {
            seq: seq.parse().ok()?,
            at_ms: at_ms.parse().ok()?,
        })
    }
}

/// What the key held when read: missing, a canary write, or something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// No such key: the node has none of the canary's writes.
    Missing,
    /// A canary write.
    Written(Written),
    /// A value the canary did not write: nothing can be concluded from it.
    Foreign,
}

impl Held {
    /// The reply to `GET` (or `SET ... GET`): nil or a string.
    pub fn from_reply(reply: Option<&str>) -> Held {
        match reply {
            None => Held::Missing,
            Some(text) => Written::parse(text).map_or(Held::Foreign, Held::Written),
        }
    }
}

/// Why a command was refused, as far as choosing the next node goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `MOVED <slot> <host:port>`: the slot is served there now.
    Moved(String),
    /// An answer a quick retry would get again: a refused permission
    /// (`NOPERM`, `NOAUTH`, `WRONGPASS`), a key of another type
    /// (`WRONGTYPE`), a command the server refuses (`ERR`: `SET ... GET`
    /// before Redis 6.2). The probe backs off rather than ask every interval.
    Lasting,
    /// Anything else, retried at the next interval: a timeout, a lost
    /// connection, `READONLY` (the node became a replica), `CLUSTERDOWN`,
    /// `LOADING`, `ASK` (a slot in migration, not followed).
    Other,
}

impl Refusal {
    /// Classifies an error's text as the server (or the client library) gave it.
    pub fn of(details: &str) -> Refusal {
        let mut words = details.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("MOVED"), Some(slot), Some(addr)) if slot.parse::<u16>().is_ok() => {
                match crate::parse::split_addr(addr) {
                    Some((host, port)) => Refusal::Moved(join_addr(host, port)),
                    None => Refusal::Other,
                }
            }
            (Some("NOPERM" | "NOAUTH" | "WRONGPASS" | "WRONGTYPE" | "ERR"), _, _) => {
                Refusal::Lasting
            }
            _ => Refusal::Other,
        }
    }
}

/// A reply to `SENTINEL GET-MASTER-ADDR-BY-NAME` that is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MasterAddrError {
    /// The port is not a number.
    #[error("invalid port {0:?}")]
    Port(String),
    /// Not `[host, port]`.
    #[error("expected [host, port], got {0} items")]
    Shape(usize),
}

/// A sentinel's answer to `SENTINEL GET-MASTER-ADDR-BY-NAME`: `[host, port]`,
/// or nil when it does not monitor that master.
pub fn master_addr(reply: Option<&[String]>) -> Result<Option<String>, MasterAddrError> {
    match reply {
        None => Ok(None),
        Some([host, port]) if !host.is_empty() => port
            .parse::<u16>()
            .map(|port| Some(join_addr(host, port)))
            .map_err(|_| MasterAddrError::Port(port.clone())),
        Some(other) => Err(MasterAddrError::Shape(other.len())),
    }
}

/// How far [`tag_for_slot`] searches: every slot has a decimal tag below it
/// (a unit test checks all 16384).
const TAG_SEARCH: u32 = 1 << 20;

/// A hash tag whose slot is `slot`. A cluster shard's canary key carries
/// it, so that the key lives in the shard's own slots and its writes go to
/// the shard's master; the smallest such number keeps the key the same for
/// as long as the shard keeps that slot.
pub fn tag_for_slot(slot: u16) -> Option<String> {
    (0..TAG_SEARCH)
        .map(|n| n.to_string())
        .find(|tag| key_slot(tag.as_bytes()) == slot)
}

/// The canary key of a sentinel shard: one per master name.
pub fn sentinel_key(prefix: &str, master: &str) -> String {
    format!("{prefix}:{master}")
}

/// The canary key of a cluster shard: the tag picks the slot.
pub fn cluster_key(prefix: &str, tag: &str) -> String {
    format!("{prefix}:{{{tag}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_foreign_ones_are_told_apart() {
        let w = Written {
            seq: 1_795_318_679_376,
            at_ms: 1_795_318_680_000,
        };
        assert_eq!(Written::parse(&w.encode()), Some(w));
        assert_eq!(
            Held::from_reply(Some("7:9")),
            Held::Written(Written { seq: 7, at_ms: 9 })
        );
        assert_eq!(Held::from_reply(None), Held::Missing);
        for foreign in [
            "",
            "7",
            "7:",
            ":9",
            "a:9",
            "7:9:1",
            "-7:9",
            "+7:9",
            "7 :9",
            "99999999999999999999:1",
        ] {
            assert_eq!(
                Held::from_reply(Some(foreign)),
                Held::Foreign,
                "{foreign:?}"
            );
        }
    }

    #[test]
    fn refusals_say_where_to_go() {
        assert_eq!(
            Refusal::of("MOVED 3999 127.0.0.1:6381"),
            Refusal::Moved("127.0.0.1:6381".into())
        );
        assert_eq!(
            Refusal::of("MOVED 3999 node-2.cache:6381"),
            Refusal::Moved("node-2.cache:6381".into())
        );
        assert_eq!(
            Refusal::of("MOVED 3999 [::1]:6381"),
            Refusal::Moved("::1:6381".into())
        );
        for lasting in [
            "NOPERM this user has no permissions to run the 'set' command",
            "WRONGTYPE Operation against a key holding the wrong kind of value",
            "ERR syntax error",
            "WRONGPASS invalid username-password pair or user is disabled.",
        ] {
            assert_eq!(Refusal::of(lasting), Refusal::Lasting, "{lasting:?}");
        }
        for other in [
            "READONLY You can't write against a read only replica.",
            "ASK 3999 127.0.0.1:6381",
            "MOVED x 127.0.0.1:6381",
            "MOVED 3999 nowhere",
            "MOVED",
            "CLUSTERDOWN The cluster is down",
            "LOADING Redis is loading the dataset in memory",
            "Request timed out.",
            "",
        ] {
            assert_eq!(Refusal::of(other), Refusal::Other, "{other:?}");
        }
    }

    #[test]
    fn a_sentinels_master_address() {
        let reply = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            master_addr(Some(&reply(&["127.0.0.1", "6380"]))),
            Ok(Some("127.0.0.1:6380".into()))
        );
        assert_eq!(master_addr(None), Ok(None));
        assert!(master_addr(Some(&reply(&["127.0.0.1", "x"]))).is_err());
        assert!(master_addr(Some(&reply(&["127.0.0.1"]))).is_err());
        assert!(master_addr(Some(&reply(&["", "6380"]))).is_err());
    }

    #[test]
    fn every_slot_has_a_tag_and_keys_land_in_it() {
        let mut covered = vec![false; crate::slots::SLOTS];
        let mut found = 0;
        for n in 0..TAG_SEARCH {
            let slot = usize::from(key_slot(n.to_string().as_bytes()));
            if !covered[slot] {
                covered[slot] = true;
                found += 1;
                if found == crate::slots::SLOTS {
                    break;
                }
            }
        }
        assert_eq!(found, crate::slots::SLOTS, "every slot within the search");
        for slot in [0, 1, 5460, 5461, 10922, 16383] {
            let tag = tag_for_slot(slot).unwrap();
            let key = cluster_key("__redis_ha_canary", &tag);
            assert_eq!(key_slot(key.as_bytes()), slot, "{key}");
        }
        assert_eq!(sentinel_key("p", "mymaster"), "p:mymaster");
    }
}
