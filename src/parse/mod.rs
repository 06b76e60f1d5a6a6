//! Replies from Redis and Sentinel turned into typed values.
//!
//! Nothing here does I/O, so every parser is tested from recorded replies
//! (`tests/fixtures`, captured from real servers) and fuzzed with arbitrary
//! input: a lying or garbled server must produce a [`ParseError`], never a
//! panic, because one bad node must not take the agent down.

pub mod clients;
pub mod cluster;
pub mod event;
pub mod info;
pub mod sentinel;
pub mod slot_stats;

use std::str::FromStr;

/// Why a reply could not be understood. Carries the field so the log line
/// says which part of the reply was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A field every supported server version sends was absent.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A field was present but its value was not of the expected form.
    #[error("field `{field}` has an unexpected value {value:?}")]
    Invalid {
        /// The field name as the server spells it.
        field: &'static str,
        /// The offending value, cut short so that a garbage reply cannot flood the log.
        value: String,
    },
}

impl ParseError {
    fn invalid(field: &'static str, value: &str) -> Self {
        ParseError::Invalid {
            field,
            value: value.chars().take(64).collect(),
        }
    }
}

/// Parses `value` as `T`, naming `field` in the error.
fn num<T: FromStr>(field: &'static str, value: &str) -> Result<T, ParseError> {
    value
        .trim()
        .parse()
        .map_err(|_| ParseError::invalid(field, value))
}

/// The lines of a reply that hold something, trimmed: replies listing one
/// item a line (`CLUSTER NODES`, `CLIENT LIST`).
fn items(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty())
}

/// Splits `host:port` (the host may be an IPv6 address, with or without
/// brackets, as Redis announces it) into its parts.
pub fn split_addr(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    Some((host, port.parse().ok()?))
}

/// Joins a host and port into the `host:port` name used for nodes and
/// sentinels everywhere in the agent (labels, API, logs), as Redis announces them.
pub fn join_addr(host: &str, port: u16) -> String {
    format!("{host}:{port}")
}

/// A reply recorded from a real server, from `tests/fixtures`.
#[cfg(test)]
pub(crate) fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The versions with recordings of their own in `tests/fixtures/<version>/`,
/// besides Redis 7.0 (the files at the top of `tests/fixtures`). They were made
/// the same way on each server (the same topology, ports and writes), so their
/// replies parse to the same values except where a test says otherwise.
#[cfg(test)]
pub(crate) const RECORDED_VERSIONS: [&str; 2] = ["redis-6.2", "valkey-8.1"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_for_ipv4_ipv6_and_hostnames() {
        assert_eq!(split_addr("127.0.0.1:6379"), Some(("127.0.0.1", 6379)));
        assert_eq!(split_addr("::1:7000"), Some(("::1", 7000)));
        assert_eq!(split_addr("[::1]:7000"), Some(("::1", 7000)));
        assert_eq!(
            split_addr("redis-0.example:6379"),
            Some(("redis-0.example", 6379))
        );
        assert_eq!(split_addr("nohost"), None);
        assert_eq!(split_addr(":6379"), None);
        assert_eq!(split_addr("h:99999"), None);
    }
}
