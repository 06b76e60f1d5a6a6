//! The findings engine: what will go wrong in the next failover, before it
//! does, from the readings the monitor already has. One file per kind of
//! deployment; each check is pure and tested without servers.
//! docs/findings.md lists every check.

pub mod cluster;
pub mod hot_slots;
pub mod reach;
pub mod sentinel;
pub mod settings;
