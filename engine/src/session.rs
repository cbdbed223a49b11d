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

/// A token as `Display` writes it (`p0:t3:l42@westus`): what an HTTP client sends back.
impl std::str::FromStr for Token {
    type Err = Error;

    fn from_str(s: &str) -> Result<Token> {
        let bad = || {
            Error::Invalid(format!(
                "replica token {s:?} is not of the form p<partition>:t<term>:l<lsn>@<datacenter>"
            ))
        };
        let (head, datacenter) = s.split_once('@').ok_or_else(bad)?;
        let mut parts = head.split(':');
        let mut number = |prefix: char| -> Result<u64> {
            parts
                .next()
                .and_then(|p| p.strip_prefix(prefix))
                .and_then(|n| n.parse().ok())
                .ok_or_else(bad)
        };
        let (partition, term, lsn) = (number('p')?, number('t')?, number('l')?);
        if parts.next().is_some() || datacenter.is_empty() || datacenter.len() > 64 {
            return Err(bad());
        }
        Ok(Token {
            partition: u32::try_from(partition).map_err(|_| bad())?,
            term,
            lsn,
            datacenter: datacenter.to_string(),
        })
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

#[cfg(test)]
mod token_tests {
    use super::*;

    #[test]
    fn a_token_reads_back_what_display_wrote_and_anything_else_is_invalid() {
        let t = Token {
            partition: 3,
            term: 7,
            lsn: 42,
            datacenter: "westus".into(),
        };
        assert_eq!(t.to_string().parse::<Token>().expect("parse"), t);
        for bad in [
            "",
            "p3:t7:l42",
            "p3:t7@westus",
            "3:7:42@westus",
            "p3:t7:l42:x@w",
            "p3:t-1:l4@w",
            "p99999999999:t1:l1@w",
            "p1:t1:l1@",
        ] {
            assert!(
                matches!(bad.parse::<Token>(), Err(Error::Invalid(_))),
                "{bad:?} parsed"
            );
        }
    }
}
