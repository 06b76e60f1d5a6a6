//! redis-ha-exporter: watches Redis Sentinel and Redis Cluster deployments.
//!
//! Data flows one way (see docs/architecture.md): collectors poll every
//! sentinel and node and send [`model::Observation`]s to the monitor, the
//! single owner of state, which publishes an immutable [`snapshot::Snapshot`]
//! after each change; the HTTP server renders metrics from the latest
//! snapshot and never talks to Redis. The opt-in canary probes
//! ([`canary`]) write to every shard as a client would and report what
//! clients lose in a failover.

pub mod alert;
pub mod canary;
pub mod collect;
pub mod config;
pub mod failovers;
pub mod healthcheck;
pub mod http;
pub mod metrics;
pub mod model;
pub mod monitor;
pub mod notify;
pub mod parse;
pub mod shutdown;
pub mod slots;
pub mod snapshot;
pub mod store;
pub mod timeline;
pub mod tls;
pub mod web;
