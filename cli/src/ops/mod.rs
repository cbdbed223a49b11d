//! Cluster commands, one file per noun.

mod control_plane;
mod dc;
mod failover;
mod init;
mod scrub;
mod status;
mod sync;
mod tenant;

pub use control_plane::control_plane;
pub use dc::dc;
pub use failover::failover;
pub use init::init;
pub use scrub::scrub;
pub use status::status;
pub use sync::sync;
pub use tenant::tenant;
