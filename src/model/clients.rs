//! Clients left behind: the applications still connected to a failover's
//! old master some seconds after the switch. Sentinel-aware and cluster
//! clients follow a failover by themselves; one that does not (it was given
//! the master's address, or never reconnects) writes to a demoted or dead
//! master, and is named here before the next failover hurts it.
//!
//! See docs/findings.md, "Clients left behind".

use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::parse::clients::ClientConnection;

/// Connections listed on a timeline at most; `count` has them all.
pub const LISTED: usize = 50;

/// One connection left on the old master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftClient {
    /// The client's `ip:port` as the old master sees it.
    pub addr: String,
    /// Its `CLIENT SETNAME`, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its library's `CLIENT SETINFO lib-name` (Redis 7.2+, Valkey), if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lib_name: Option<String>,
    /// The last command it ran.
    pub cmd: String,
    /// Seconds it has been connected.
    pub age: u64,
    /// Seconds since its last command.
    pub idle: u64,
    /// Its `CLIENT LIST` flags (`P` a subscriber, `N` none).
    pub flags: String,
}

/// What `CLIENT LIST` on a failover's old master showed, once, some
/// seconds after the switch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientsLeftBehind {
    /// When it was read (or given up), unix seconds.
    pub read_at: f64,
    /// The old master read.
    pub node: String,
    /// Every connection left behind.
    pub count: usize,
    /// The first [`LISTED`] of them, the longest connected first.
    pub clients: Vec<LeftClient>,
    /// Why it could not be read (the old master stayed unreachable):
    /// `count` is then 0 and means nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether a connection is an application's: not a replication link, not a
/// sentinel (they name their connections `sentinel-<id>-cmd` and
/// `sentinel-<id>-pubsub`), not one of the agent's (named `own_name`).
/// Subscribers count: one still on the old master misses what is now
/// published on the new one.
fn is_application(c: &ClientConnection, own_name: &str) -> bool {
    let sentinel = c
        .name
        .strip_prefix("sentinel-")
        .is_some_and(|rest| rest.ends_with("-cmd") || rest.ends_with("-pubsub"));
    !c.is_replication() && !sentinel && c.name != own_name
}

fn named(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

impl ClientsLeftBehind {
    /// The applications among `connections`, the longest connected first,
    /// at most [`LISTED`] of them.
    pub fn read(
        node: &str,
        read_at: f64,
        connections: &[ClientConnection],
        own_name: &str,
    ) -> Self {
        let mut left: Vec<&ClientConnection> = connections
            .iter()
            .filter(|c| is_application(c, own_name))
            .collect();
        left.sort_by(|a, b| b.age.cmp(&a.age).then_with(|| a.addr.cmp(&b.addr)));
        ClientsLeftBehind {
            read_at,
            node: node.to_string(),
            count: left.len(),
            clients: left
                .iter()
                .take(LISTED)
                .map(|c| LeftClient {
                    addr: c.addr.clone(),
                    name: named(&c.name),
                    lib_name: named(&c.lib_name),
                    cmd: c.cmd.clone(),
                    age: c.age,
                    idle: c.idle,
                    flags: c.flags.clone(),
                })
                .collect(),
            error: None,
        }
    }

    /// The old master could not be read before the agent gave up.
    pub fn unread(node: &str, read_at: f64, error: String) -> Self {
        ClientsLeftBehind {
            read_at,
            node: node.to_string(),
            count: 0,
            clients: Vec::new(),
            error: Some(error),
        }
    }

    /// The count, when it was read.
    pub fn counted(&self) -> Option<usize> {
        self.error.is_none().then_some(self.count)
    }
}

/// A read of a failover's old master, for the monitor to put on the timeline.
#[derive(Debug, Clone)]
pub struct Report {
    /// The deployment.
    pub deployment: Arc<str>,
    /// The shard.
    pub shard: String,
    /// The failover's timeline id.
    pub timeline: String,
    /// When it was sent.
    pub at: SystemTime,
    /// What it found.
    pub left: ClientsLeftBehind,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::clients::parse_client_list;
    use crate::parse::fixture;

    fn conn(addr: &str, name: &str, flags: &str, age: u64) -> ClientConnection {
        let line = format!("addr={addr} name={name} flags={flags} age={age} cmd=get");
        parse_client_list(&line).expect("parses").remove(0)
    }

    #[test]
    fn only_applications_are_left_behind() {
        let list = parse_client_list(&fixture("client-list-master.txt")).expect("parses");
        let left = ClientsLeftBehind::read("m:1", 5.0, &list, "agent");
        let names: Vec<Option<&str>> = left.clients.iter().map(|c| c.name.as_deref()).collect();
        // The replica's link and both sentinel connections are not; the
        // subscriber and the (unnamed) connection that read the list are.
        assert_eq!(names, [Some("direct-app"), None, None], "{left:?}");
        assert_eq!((left.count, left.counted()), (3, Some(3)));
        let own = [conn("a:1", "agent", "N", 9), conn("b:2", "app", "N", 1)];
        let left = ClientsLeftBehind::read("m:1", 5.0, &own, "agent");
        assert_eq!(left.count, 1, "the agent's own connections are not");
    }

    #[test]
    fn a_sentinel_lookalike_is_an_application() {
        let list = [
            conn("a:1", "sentinel-1a2b-cmd", "N", 1),
            conn("a:2", "sentinel-app", "N", 1),
            conn("a:3", "x", "M", 1),
        ];
        let left = ClientsLeftBehind::read("m:1", 5.0, &list, "agent");
        assert_eq!(left.clients[0].name.as_deref(), Some("sentinel-app"));
        assert_eq!(left.count, 1);
    }

    #[test]
    fn the_list_is_bounded_and_the_oldest_come_first() {
        let list: Vec<ClientConnection> = (0..LISTED as u64 + 7)
            .map(|i| conn(&format!("10.0.0.1:{i}"), "", "N", i))
            .collect();
        let left = ClientsLeftBehind::read("m:1", 5.0, &list, "agent");
        assert_eq!((left.count, left.clients.len()), (LISTED + 7, LISTED));
        assert_eq!(left.clients[0].age, LISTED as u64 + 6);
        assert_eq!(left.clients[0].name, None);
    }

    #[test]
    fn an_unread_master_counts_nothing() {
        let left = ClientsLeftBehind::unread("m:1", 5.0, "connection refused".into());
        assert_eq!(left.counted(), None);
        let json = serde_json::to_value(&left).expect("serialises");
        assert_eq!(json["error"], "connection refused");
    }
}
