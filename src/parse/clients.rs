//! `CLIENT LIST`: the connections a server has open, one line each of
//! space-separated `field=value` pairs.

use super::{items, num, ParseError};

/// One connection of a `CLIENT LIST` reply: the fields the agent reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConnection {
    /// `addr`: the peer's `ip:port` as the server sees it.
    pub addr: String,
    /// `name`: set by `CLIENT SETNAME`; empty when none was set.
    pub name: String,
    /// `lib-name`: set by `CLIENT SETINFO` (Redis 7.2+, Valkey); empty or
    /// absent when none was set or the server has no such field.
    pub lib_name: String,
    /// `flags`: one letter each (`S` a replica's link, `M` the link to the
    /// master, `P` pub/sub, `N` none).
    pub flags: String,
    /// `cmd`: the last command run.
    pub cmd: String,
    /// `age`: seconds connected.
    pub age: u64,
    /// `idle`: seconds since the last command.
    pub idle: u64,
    /// `db`: the selected database.
    pub db: u32,
}

impl ClientConnection {
    /// A replication link: a replica's connection to this master (`S`), or
    /// this replica's connection to its master (`M`).
    pub fn is_replication(&self) -> bool {
        self.flags.contains(['S', 'M'])
    }
}

/// Parses a `CLIENT LIST` reply. A line without `addr` is an error: every
/// server version sends it.
pub fn parse_client_list(text: &str) -> Result<Vec<ClientConnection>, ParseError> {
    items(text).map(parse_line).collect()
}

fn parse_line(line: &str) -> Result<ClientConnection, ParseError> {
    let mut c = ClientConnection {
        addr: String::new(),
        name: String::new(),
        lib_name: String::new(),
        flags: String::new(),
        cmd: String::new(),
        age: 0,
        idle: 0,
        db: 0,
    };
    for pair in line.split(' ') {
        let Some((field, value)) = pair.split_once('=') else {
            continue;
        };
        match field {
            "addr" => c.addr = value.to_string(),
            "name" => c.name = value.to_string(),
            "lib-name" => c.lib_name = value.to_string(),
            "flags" => c.flags = value.to_string(),
            "cmd" => c.cmd = value.to_string(),
            "age" => c.age = num("age", value)?,
            "idle" => c.idle = num("idle", value)?,
            "db" => c.db = num("db", value)?,
            _ => {}
        }
    }
    if c.addr.is_empty() {
        return Err(ParseError::Missing("addr"));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{fixture, RECORDED_VERSIONS};

    /// The same setup on every version: a replica, one sentinel (its
    /// command and pub/sub connections), `direct-app` (named, and on
    /// servers with `CLIENT SETINFO` its library named `app-lib`), an
    /// unnamed subscriber, and the `CLIENT LIST` itself.
    fn master(version: Option<&str>) -> Vec<ClientConnection> {
        let path = match version {
            Some(v) => format!("{v}/client-list-master.txt"),
            None => "client-list-master.txt".to_string(),
        };
        parse_client_list(&fixture(&path)).expect("recorded reply parses")
    }

    #[test]
    fn a_masters_connections_parse_on_every_version() {
        for version in [None].into_iter().chain(RECORDED_VERSIONS.map(Some)) {
            let list = master(version);
            let names: Vec<&str> = list.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(list.len(), 6, "{version:?}: {names:?}");
            let links: Vec<&str> = list
                .iter()
                .filter(|c| c.is_replication())
                .map(|c| c.flags.as_str())
                .collect();
            assert_eq!(links, ["S"], "{version:?}: the replica's link only");
            let sentinel = |suffix: &str| {
                names
                    .iter()
                    .filter(|n| n.starts_with("sentinel-") && n.ends_with(suffix))
                    .count()
            };
            assert_eq!(
                (sentinel("-cmd"), sentinel("-pubsub")),
                (1, 1),
                "{version:?}"
            );
            let subscriber = list.iter().find(|c| c.flags == "P" && c.name.is_empty());
            assert_eq!(subscriber.map(|c| c.cmd.as_str()), Some("subscribe"));
            let app = list.iter().find(|c| c.name == "direct-app").expect("named");
            assert!(app.addr.starts_with("127.0.0.1:"), "{}", app.addr);
            assert_eq!((app.flags.as_str(), app.db, app.age), ("N", 0, 1));
            let lib = if version == Some("valkey-8.1") {
                "app-lib"
            } else {
                ""
            };
            assert_eq!(app.lib_name, lib, "{version:?}");
        }
    }

    #[test]
    fn a_replicas_link_to_its_master_is_replication() {
        let list = parse_client_list(&fixture("client-list-replica.txt")).expect("parses");
        let link: Vec<&ClientConnection> = list.iter().filter(|c| c.is_replication()).collect();
        assert_eq!(link.len(), 1);
        assert_eq!(
            (link[0].flags.as_str(), link[0].cmd.as_str()),
            ("M", "NULL")
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(parse_client_list(""), Ok(vec![]));
        assert_eq!(
            parse_client_list("id=1 name=x"),
            Err(ParseError::Missing("addr"))
        );
        assert!(matches!(
            parse_client_list("addr=1.2.3.4:5 age=-3"),
            Err(ParseError::Invalid { field: "age", .. })
        ));
        let odd = parse_client_list("addr=a:1 flags name==x junk").expect("tolerated");
        assert_eq!(odd[0].name, "=x");
    }
}
