//! Collectors: with the canary probes, the only part of the agent that
//! talks to Redis. One poller task per target, each with its own
//! connection and schedule, so a frozen or dead target delays nobody else;
//! one event subscriber per sentinel. The supervisor (src/supervise.rs)
//! starts and stops them.

pub mod poller;
pub mod subscriber;
