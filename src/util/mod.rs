//! Small pieces every layer may use: clocks, hashing, and the vector that
//! snapshots share. Nothing here knows about Redis or the agent.

pub mod hash;
pub mod shared;
pub mod time;
