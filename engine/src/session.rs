//! A logical session: its datacenter affinity and the replica tokens of its writes,
//! kept in a small JSON file between dirctl invocations.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::topology::write_atomically;

/// What a write returns: (partition, term, lsn, datacenter). A read carrying it never
/// sees state older than it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub partition: u32,
    pub term: u64,
    pub lsn: u64,
    pub datacenter: String,
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p{}:t{}:l{}@{}",
            self.partition, self.term, self.lsn, self.datacenter
        )
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// The datacenter this session reads from where it holds a secondary.
    pub datacenter: Option<String>,
    /// The newest token per partition.
    #[serde(default)]
    pub tokens: BTreeMap<u32, Token>,
}

impl Session {
    /// Loads a session file; a missing file is a new, empty session.
    pub fn load(path: &Path) -> Result<Session> {
        match std::fs::read(path) {
            Ok(raw) => serde_json::from_slice(&raw).map_err(|e| {
                Error::Invalid(format!(
                    "session file {} is not a dirctl session: {e}",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Session::default()),
            Err(e) => Err(Error::io(format!("read session {}", path.display()), e)),
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let raw = serde_json::to_vec_pretty(self).map_err(|e| Error::Storage(e.to_string()))?;
        write_atomically(path, &raw)
    }

    /// Keeps the newer of the stored token and `t`.
    pub fn observe(&mut self, t: &Token) {
        let newer = self
            .tokens
            .get(&t.partition)
            .is_none_or(|old| (old.term, old.lsn) <= (t.term, t.lsn));
        if newer {
            self.tokens.insert(t.partition, t.clone());
        }
    }
}
