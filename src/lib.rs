//! redis-ha-exporter: watches Redis Sentinel and Redis Cluster deployments.
//!
//! Data flows one way (see docs/architecture.md, "Layers"): collectors
//! poll every sentinel and node and send [`model::Observation`]s to the
//! monitor, the single owner of state, which publishes an immutable
//! [`model::snapshot::Snapshot`] after each batch; outputs (metrics, the
//! API, alert delivery, the timeline file) read snapshots and never talk
//! to Redis. The opt-in canary probes ([`canary`]) write to every shard as
//! a client would and report what clients lose in a failover.
//!
//! Modules by layer, lowest first: [`util`], [`logs`], [`parse`], [`slots`], [`tls`];
//! [`config`]; [`model`]; [`client`], [`collect`], [`canary`],
//! [`supervise`]; [`monitor`]; [`store`], [`notify`], [`metrics`], [`web`],
//! [`ui`], [`http`], [`healthcheck`]. A module imports only from layers below its
//! own (`tests/layers.rs` checks it).

pub mod canary;
pub mod client;
pub mod collect;
pub mod config;
pub mod healthcheck;
pub mod http;
pub mod logs;
pub mod metrics;
pub mod model;
pub mod monitor;
pub mod notify;
pub mod parse;
pub mod shutdown;
pub mod slots;
pub mod store;
pub mod supervise;
pub mod tls;
pub mod ui;
pub mod util;
pub mod web;
