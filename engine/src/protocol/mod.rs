//! The replication protocol's decisions, without I/O (openraft's `Engine`, neon's
//! safekeeper): facts in (positions, answers, the topology), a decision or the commands to
//! carry out back. The `cluster` modules gather the facts from the replicas and the control
//! plane, and carry the commands out.
//!
//! **Invariant:** nothing here opens a replica, reads a file or looks at a clock; every
//! function is tested over small exhaustive or table-driven inputs.
//!
//! - `commit`: commit or cut an entry once its replicas answered; settle the entries a
//!   crashed writer left above a reopened primary's commit lsn.
//! - `retention`: how far the log may be pruned.
//! - `promotion`: who is promoted in a failover, which tail it cuts, who becomes the sync
//!   standby.
//! - `routing`: where a read goes (nearest healthy secondary, then the primary) and whether
//!   a replica must pull before it answers a session's token.
//!
//! The agreement point and the catch-up plan live with the log (`log`, `catch_up`).

pub mod commit;
pub mod promotion;
pub mod retention;
pub mod routing;
