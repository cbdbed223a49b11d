//! The replication log: entries `(term, lsn, time, ops, crc)` and their byte encoding.
//!
//! An op carries the value it replaces (`prev`), so that an entry can be cut off
//! (undone) on any replica: a failed commit, a fenced primary's tail, a diverged
//! secondary. Encoding (version 1, all integers big-endian):
//!
//! ```text
//! u8 version=1 | u64 term | u64 lsn | i64 time_ms | u32 n_ops | ops... | u32 crc32(all before)
//! op: u8 kind (1 put, 2 delete) | bytes key | [bytes value if put] | u8 has_prev | [bytes prev]
//! bytes: u32 len | len bytes
//! ```

use crate::error::{Error, Result};

pub const ENTRY_FORMAT_VERSION: u8 = 1;

/// One change to the data column family, with the value it replaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        prev: Option<Vec<u8>>,
    },
    Delete {
        key: Vec<u8>,
        prev: Option<Vec<u8>>,
    },
}

impl Op {
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Put { key, .. } | Op::Delete { key, .. } => key,
        }
    }
    pub fn prev(&self) -> Option<&[u8]> {
        match self {
            Op::Put { prev, .. } | Op::Delete { prev, .. } => prev.as_deref(),
        }
    }
}

/// A log entry: named by (term, lsn).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub term: u64,
    pub lsn: u64,
    pub time_ms: i64,
    pub ops: Vec<Op>,
}

/// A position in a partition's log.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Position {
    pub term: u64,
    pub lsn: u64,
}

impl Entry {
    pub fn position(&self) -> Position {
        Position {
            term: self.term,
            lsn: self.lsn,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            64 + self
                .ops
                .iter()
                .map(|o| o.key().len() * 2 + 64)
                .sum::<usize>(),
        );
        out.push(ENTRY_FORMAT_VERSION);
        out.extend_from_slice(&self.term.to_be_bytes());
        out.extend_from_slice(&self.lsn.to_be_bytes());
        out.extend_from_slice(&self.time_ms.to_be_bytes());
        out.extend_from_slice(&(self.ops.len() as u32).to_be_bytes());
        for op in &self.ops {
            match op {
                Op::Put { key, value, prev } => {
                    out.push(1);
                    put_bytes(&mut out, key);
                    put_bytes(&mut out, value);
                    put_prev(&mut out, prev);
                }
                Op::Delete { key, prev } => {
                    out.push(2);
                    put_bytes(&mut out, key);
                    put_prev(&mut out, prev);
                }
            }
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Checks an entry's checksum and format version without decoding its operations (a
    /// scrub's check); returns its position. `decode` makes the same checks first.
    pub fn check(bytes: &[u8], location: &str) -> Result<Position> {
        let (body, corrupt) = checked_body(bytes, location)?;
        let mut r = Reader { buf: body, pos: 0 };
        r.u8();
        let term = r.u64().ok_or_else(|| corrupt("truncated header"))?;
        let lsn = r.u64().ok_or_else(|| corrupt("truncated header"))?;
        Ok(Position { term, lsn })
    }

    /// Decodes and checks an entry read from `location` (for the error message).
    pub fn decode(bytes: &[u8], location: &str) -> Result<Entry> {
        let (body, corrupt) = checked_body(bytes, location)?;
        let mut r = Reader { buf: body, pos: 0 };
        r.u8();
        let term = r.u64().ok_or_else(|| corrupt("truncated header"))?;
        let lsn = r.u64().ok_or_else(|| corrupt("truncated header"))?;
        let time_ms = r.u64().ok_or_else(|| corrupt("truncated header"))? as i64;
        let n = r.u32().ok_or_else(|| corrupt("truncated header"))? as usize;
        let mut ops = Vec::with_capacity(n.min(1 << 16));
        for i in 0..n {
            let bad = || corrupt(&format!("op {i} truncated"));
            let kind = r.u8().ok_or_else(bad)?;
            let key = r.bytes().ok_or_else(bad)?;
            let op = match kind {
                1 => {
                    let value = r.bytes().ok_or_else(bad)?;
                    let prev = r.prev().ok_or_else(bad)?;
                    Op::Put { key, value, prev }
                }
                2 => {
                    let prev = r.prev().ok_or_else(bad)?;
                    Op::Delete { key, prev }
                }
                k => return Err(corrupt(&format!("op {i} has unknown kind {k}"))),
            };
            ops.push(op);
        }
        if r.pos != body.len() {
            return Err(corrupt("trailing bytes"));
        }
        Ok(Entry {
            term,
            lsn,
            time_ms,
            ops,
        })
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

fn put_prev(out: &mut Vec<u8>, prev: &Option<Vec<u8>>) {
    match prev {
        Some(p) => {
            out.push(1);
            put_bytes(out, p);
        }
        None => out.push(0),
    }
}

/// An entry's bytes without their crc, once the crc and the format version are checked; and
/// the error maker naming `location`.
fn checked_body<'a>(
    bytes: &'a [u8],
    location: &str,
) -> Result<(&'a [u8], impl Fn(&str) -> Error + use<>)> {
    let location = location.to_string();
    let corrupt = move |what: &str| Error::Corrupt(format!("log entry at {location}: {what}"));
    if bytes.len() < 1 + 8 + 8 + 8 + 4 + 4 {
        return Err(corrupt("too short"));
    }
    let (body, crc_bytes) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_be_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    let computed = crc32fast::hash(body);
    if computed != stored {
        return Err(corrupt(&format!(
            "checksum mismatch (crc32 at byte {}: stored {stored:08x}, computed {computed:08x})",
            body.len()
        )));
    }
    if body[0] != ENTRY_FORMAT_VERSION {
        return Err(corrupt(&format!("unknown format version {}", body[0])));
    }
    Ok((body, corrupt))
}
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_be_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_be_bytes)
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.u32()? as usize;
        self.take(n).map(|s| s.to_vec())
    }
    fn prev(&mut self) -> Option<Option<Vec<u8>>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.bytes()?)),
            _ => None,
        }
    }
}

/// Tests: an entry of one put of `key` (time 0), built the same way in every test module.
#[cfg(any(test, feature = "testing"))]
pub fn put_entry(term: u64, lsn: u64, key: &[u8], value: &[u8], prev: Option<&[u8]>) -> Entry {
    Entry {
        term,
        lsn,
        time_ms: 0,
        ops: vec![Op::Put {
            key: key.to_vec(),
            value: value.to_vec(),
            prev: prev.map(<[u8]>::to_vec),
        }],
    }
}

/// Where a secondary whose last entry is `secondary_last` agrees with the primary's log.
///
/// `primary_term_at(lsn)` gives the term of the primary's entry at `lsn` (None past
/// its committed end). Returns the highest lsn at which both logs hold the same
/// entry; everything on the secondary above it must be cut before shipping.
/// Pure: the replication decision without I/O.
pub fn agreement_point<E>(
    secondary_last: Position,
    secondary_term_at: impl Fn(u64) -> Result<Option<u64>, E>,
    primary_term_at: impl Fn(u64) -> Result<Option<u64>, E>,
) -> Result<u64, E> {
    let mut lsn = secondary_last.lsn;
    while lsn > 0 {
        match (secondary_term_at(lsn)?, primary_term_at(lsn)?) {
            (Some(a), Some(b)) if a == b => return Ok(lsn),
            _ => lsn -= 1,
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        Entry {
            term: 3,
            lsn: 42,
            time_ms: 1_700_000_000_000,
            ops: vec![
                Op::Put {
                    key: b"k1".to_vec(),
                    value: b"v1".to_vec(),
                    prev: None,
                },
                Op::Put {
                    key: b"k2".to_vec(),
                    value: b"v2".to_vec(),
                    prev: Some(b"old".to_vec()),
                },
                Op::Delete {
                    key: b"k3".to_vec(),
                    prev: Some(b"gone".to_vec()),
                },
            ],
        }
    }

    #[test]
    fn entry_round_trips() {
        let e = sample();
        assert_eq!(Entry::decode(&e.encode(), "test").expect("decodes"), e);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let bytes = sample().encode();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(
                matches!(Entry::decode(&b, "test"), Err(Error::Corrupt(_))),
                "flip at {i} not detected"
            );
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert!(
                matches!(Entry::decode(&bytes[..n], "test"), Err(Error::Corrupt(_))),
                "truncation to {n} not detected"
            );
        }
    }

    #[test]
    fn agreement_point_table() {
        // (secondary's terms at lsn 1.., primary's committed terms at lsn 1.., agreement);
        // lsn 0 stands for an empty log, and a 0 term for an entry pruned or not held.
        let table: [(&[u64], &[u64], u64); 9] = [
            (&[], &[], 0),
            (&[], &[1, 1], 0),
            (&[1, 1], &[], 0),
            (&[1, 1, 1], &[1, 1, 1, 2], 3),
            (&[1, 1, 2, 2], &[1, 1, 3, 3], 2),
            (&[1, 1, 1, 1, 1], &[1, 1], 2),
            (&[2, 2], &[1, 1], 0),
            (&[1, 2, 2, 4], &[1, 2, 3, 3, 3], 2),
            // The primary pruned lsn 1..=2: agreement is found only where it still holds entries.
            (&[1, 1, 1], &[0, 0, 1, 1], 3),
        ];
        for (s, p, want) in table {
            let at = |v: &[u64], lsn: u64| -> Result<Option<u64>, ()> {
                Ok(v.get(lsn as usize - 1).copied().filter(|t| *t != 0))
            };
            let last = Position {
                term: s.last().copied().unwrap_or(0),
                lsn: s.len() as u64,
            };
            assert_eq!(
                agreement_point(last, |l| at(s, l), |l| at(p, l)),
                Ok(want),
                "secondary {s:?} primary {p:?}"
            );
        }
    }

    #[test]
    fn agreement_point_passes_on_read_errors() {
        let r = agreement_point(
            Position { term: 1, lsn: 2 },
            |_| Err("disk"),
            |_| Ok(Some(1)),
        );
        assert_eq!(r, Err("disk"));
    }

    #[test]
    fn agreement_point_finds_last_common_entry() {
        // secondary: terms [1,1,1,2,2] at lsn 1..=5; primary: [1,1,1,3] at 1..=4
        let s = [1u64, 1, 1, 2, 2];
        let p = [1u64, 1, 1, 3];
        let at = |v: &'static [u64]| move |lsn: u64| Ok::<_, ()>(v.get(lsn as usize - 1).copied());
        let s: &'static [u64] = Box::leak(Box::new(s));
        let p: &'static [u64] = Box::leak(Box::new(p));
        assert_eq!(
            agreement_point(Position { term: 2, lsn: 5 }, at(s), at(p)),
            Ok(3)
        );
        assert_eq!(
            agreement_point(Position { term: 1, lsn: 2 }, at(s), at(p)),
            Ok(2)
        );
        assert_eq!(
            agreement_point(Position { term: 0, lsn: 0 }, at(s), at(p)),
            Ok(0)
        );
    }
}
