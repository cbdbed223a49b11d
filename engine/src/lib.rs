//! geodir's engine: the replicated directory store behind `dirctl`.
//!
//! See ARCHITECTURE.md at the repository root for the map, docs/design.md for formats.

pub mod access;
pub mod audit;
pub mod catch_up;
pub mod client;
pub mod clock;
pub mod cluster;
pub mod directory;
pub mod error;
pub mod executor;
pub mod failover;
pub mod layout;
pub mod log;
pub mod memlog;
pub mod operators;
pub mod protocol;
pub mod rebuild;
pub mod recycle;
pub mod replica;
pub mod replica_log;
mod replica_store;
pub mod request;
pub mod session;
pub mod shipping;
mod text;
pub mod topology;

pub use error::{Error, Result};
