//! Typed errors of the engine. The CLI maps each variant to an exit code of DESIGN.md.

/// Every way an engine operation can fail, by what the caller can do about it.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: malformed JSON, unknown type or field, invalid topology (exit 2).
    #[error("{0}")]
    Invalid(String),
    /// A session's replica token beyond anything its partition ever held: a damaged session
    /// file, or one of another cluster. No replica could ever reach it (exit 2).
    #[error("{0}")]
    ImpossibleToken(String),
    /// The object, tenant, partition or datacenter does not exist (exit 3).
    #[error("{0}")]
    NotFound(String),
    /// Uniqueness or a stale precondition (exit 4).
    #[error("{0}")]
    Conflict(String),
    /// Nothing was applied: no geo-durable commit possible, no healthy replica (exit 5).
    #[error("{0}")]
    Unavailable(String),
    /// The disk holding a replica is full: nothing was written; the way out is freeing space
    /// there, not a failover (exit 5).
    #[error("{0}")]
    DiskFull(String),
    /// A crash or I/O error in the middle of a commit: the write may or may not be durable (exit 1).
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// Bytes read from disk failed their checksum or did not decode (exit 1).
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A replica's stored bytes failed a check (a RocksDB checksum, a log entry's crc, less
    /// than it promised): it serves no read and is never promoted until rebuilt (exit 5).
    #[error("{0}")]
    Damaged(String),
    /// A replica saw a newer term than the one it was asked to write in (exit 1).
    #[error("fenced: {0}")]
    Fenced(String),
    /// An I/O or storage error, with what was being done (exit 1).
    #[error("{0}")]
    Storage(String),
    /// The caller is not permitted: no proven operator, no role, no active elevation, a
    /// wrong or replayed code, a lock-out (exit 6). Says what would grant it.
    #[error("not permitted: {0}")]
    NotPermitted(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(context: impl std::fmt::Display, e: std::io::Error) -> Error {
        Error::Storage(format!("{context}: {e}"))
    }

    /// Why a replica could not be held, as its caller reports it: a full disk stays
    /// `DiskFull`, told with `context` (which replica, for what); anything else is `otherwise`.
    pub fn disk_full_or(
        &self,
        context: impl std::fmt::Display,
        otherwise: impl FnOnce() -> Error,
    ) -> Error {
        match self {
            Error::DiskFull(why) => Error::DiskFull(format!("{context}: {why}")),
            _ => otherwise(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_stays_a_full_disk_with_its_context_and_anything_else_is_otherwise() {
        let full = Error::DiskFull("the disk holding /x is full".into());
        let got = full.disk_full_or("the primary of partition 3", || Error::Invalid("no".into()));
        assert!(
            matches!(&got, Error::DiskFull(m) if m == "the primary of partition 3: the disk holding /x is full"),
            "{got:?}"
        );
        let held = Error::Unavailable("held elsewhere".into());
        let got = held.disk_full_or("ctx", || Error::Unavailable("unreachable".into()));
        assert!(
            matches!(&got, Error::Unavailable(m) if m == "unreachable"),
            "{got:?}"
        );
    }
}
