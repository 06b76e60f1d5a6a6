//! Collectors: with the canary probes, the only part of the agent that
//! talks to Redis. One poller task per target, each with its own
//! connection and schedule, so a frozen or dead target delays nobody else;
//! one event subscriber per sentinel. The supervisor (src/supervise.rs)
//! starts and stops them.

pub mod clients;
pub mod node;
pub mod poller;
pub mod sentinel;
pub mod settings;
pub mod slot_stats;
pub mod subscriber;
pub mod topology;

use fred::error::{Error, ErrorKind};

use crate::model::PollError;
use crate::parse::ParseError;

/// A command that failed: a timeout, or what the server or client said.
fn failed(e: Error) -> PollError {
    match e.kind() {
        ErrorKind::Timeout => PollError::Timeout,
        _ => PollError::Command(e.to_string()),
    }
}

/// A reply of `command` that did not parse.
fn parsed<T>(command: &'static str, r: Result<T, ParseError>) -> Result<T, PollError> {
    r.map_err(|error| PollError::Parse { command, error })
}
