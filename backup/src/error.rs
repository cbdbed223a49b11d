//! Typed errors of the backup crate; the CLI maps them to DESIGN.md's exit codes.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file of the archive failed its checksum, or the archive does not decode (exit 1).
    #[error("backup {}: {file}: {why}", archive.display())]
    Corrupt {
        archive: PathBuf,
        file: String,
        why: String,
    },
    /// An entry that could write outside its folder or is not a plain file (exit 1).
    #[error("backup {}: refused entry {entry:?}: {why}; nothing was written to the target", archive.display())]
    Unsafe {
        archive: PathBuf,
        entry: String,
        why: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// Bad input, no such backup, a target that exists (engine's Invalid, NotFound and
    /// Conflict), and the engine's own errors.
    #[error(transparent)]
    Engine(#[from] engine::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(context: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io {
        context: context.to_string(),
        source,
    }
}
