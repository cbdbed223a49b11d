//! Typed errors of the engine. The CLI maps each variant to an exit code of DESIGN.md.

/// Every way an engine operation can fail, by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
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
    /// A crash or I/O error in the middle of a commit: the write may or may not be durable (exit 1).
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// Bytes read from disk failed their checksum or did not decode (exit 1).
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A replica saw a newer term than the one it was asked to write in (exit 1).
    #[error("fenced: {0}")]
    Fenced(String),
    /// An I/O or storage error, with what was being done (exit 1).
    #[error("{0}")]
    Storage(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(context: impl std::fmt::Display, e: std::io::Error) -> Error {
        Error::Storage(format!("{context}: {e}"))
    }
}
