//! Cluster commands, one file per noun.

mod dc;
mod failover;
mod init;
mod scrub;
mod status;
mod sync;
mod tenant;

pub use dc::dc;
pub use failover::failover;
pub use init::init;
pub use scrub::scrub;
pub use status::status;
pub use sync::sync;
pub use tenant::tenant;
