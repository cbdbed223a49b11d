//! The audit trail (promise 9): one record per mutating or privileged operation, stored in
//! the partition's data like any other key (so replicated and backed up with it) and
//! hash-chained per partition.
//!
//! Keys: `0x08 | seq u64 BE -> record JSON` and the chain head `0x09 -> seq u64 BE | sha256`,
//! so appending is O(1). Each record holds the SHA-256 (hex) of the previous record's stored
//! bytes (`prev`; 64 zeros for the first). See docs/design.md, "Audit record, version 1".

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::directory::{Store, Txn, K_AUDIT, K_AUDIT_HEAD};
use crate::error::{Error, Result};

pub const RECORD_VERSION: u32 = 1;
const GENESIS: [u8; 32] = [0; 32];

/// What the caller knows of an operation; `append` adds `seq` and `prev`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub v: u32,
    pub seq: u64,
    pub time: String,
    pub actor: String,
    pub op: String,
    pub targets: Vec<String>,
    /// `ok`, or the error's text.
    pub outcome: String,
    pub correlation_id: String,
    /// SHA-256 (hex) of the previous record's stored bytes.
    pub prev: String,
}

impl Record {
    pub fn new(
        time: &str,
        actor: &str,
        op: &str,
        targets: Vec<String>,
        outcome: &str,
        correlation_id: &str,
    ) -> Record {
        Record {
            v: RECORD_VERSION,
            seq: 0,
            time: time.to_string(),
            actor: actor.to_string(),
            op: op.to_string(),
            targets,
            outcome: outcome.to_string(),
            correlation_id: correlation_id.to_string(),
            prev: String::new(),
        }
    }
}

fn record_key(seq: u64) -> Vec<u8> {
    let mut k = vec![K_AUDIT];
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The sequence number of the partition's last audit record (0: none), from the chain head
/// alone: how complete a copy is, without reading its records.
pub fn last_seq(s: &dyn Store) -> Result<u64> {
    Ok(head(s)?.0)
}

fn head(s: &dyn Store) -> Result<(u64, [u8; 32])> {
    match s.get(&[K_AUDIT_HEAD])? {
        None => Ok((0, GENESIS)),
        Some(v) if v.len() == 40 => {
            let mut seq = [0u8; 8];
            seq.copy_from_slice(&v[..8]);
            let mut h = [0u8; 32];
            h.copy_from_slice(&v[8..]);
            Ok((u64::from_be_bytes(seq), h))
        }
        Some(v) => Err(Error::Corrupt(format!(
            "audit chain head is {} bytes, not 40",
            v.len()
        ))),
    }
}

/// Appends `rec` to the partition's chain inside `t` (so it is atomic with the change).
pub fn append(t: &mut Txn, mut rec: Record) -> Result<u64> {
    let (last, prev) = head(t)?;
    rec.seq = last + 1;
    rec.prev = hex(&prev);
    let bytes = serde_json::to_vec(&rec)
        .map_err(|e| Error::Invalid(format!("audit record does not encode: {e}")))?;
    let hash: [u8; 32] = Sha256::digest(&bytes).into();
    let mut h = rec.seq.to_be_bytes().to_vec();
    h.extend_from_slice(&hash);
    t.put(record_key(rec.seq), bytes)?;
    t.put(vec![K_AUDIT_HEAD], h)?;
    Ok(rec.seq)
}

/// Every record of the partition, in sequence order.
pub fn list(s: &dyn Store) -> Result<Vec<Record>> {
    s.scan_prefix(&[K_AUDIT])?
        .into_iter()
        .map(|(k, v)| {
            serde_json::from_slice(&v)
                .map_err(|e| Error::Corrupt(format!("audit record key {}: {e}", hex(&k))))
        })
        .collect()
}

/// Walks the chain: every sequence number present, each record's `seq` equal to its key's,
/// each `prev` equal to the hash of the record before, the head naming the last one.
/// Returns the number of records; Corrupt naming the sequence number otherwise.
pub fn verify(s: &dyn Store) -> Result<u64> {
    Ok(chain(s)?.len() as u64)
}

/// `verify`'s walk, returning each record's hash in sequence order (record n at n - 1), so
/// that the copies of a chain at different replicas can be compared.
pub fn chain(s: &dyn Store) -> Result<Vec<[u8; 32]>> {
    let mut hashes = Vec::new();
    let mut prev = GENESIS;
    let mut expect = 1u64;
    for (k, v) in s.scan_prefix(&[K_AUDIT])? {
        let seq = k
            .get(1..9)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .filter(|_| k.len() == 9)
            .ok_or_else(|| Error::Corrupt(format!("audit key {} is malformed", hex(&k))))?;
        if seq != expect {
            return Err(Error::Corrupt(format!(
                "audit record {expect} is missing (the next is {seq}): removed"
            )));
        }
        let rec: Record = serde_json::from_slice(&v).map_err(|e| {
            Error::Corrupt(format!("audit record {seq} does not decode (changed): {e}"))
        })?;
        if rec.seq != seq {
            return Err(Error::Corrupt(format!(
                "audit record {seq} holds sequence number {} (reordered)",
                rec.seq
            )));
        }
        if rec.prev != hex(&prev) {
            let at = seq.saturating_sub(1);
            return Err(Error::Corrupt(format!(
                "audit record {at} was changed: record {seq} holds another hash of it"
            )));
        }
        prev = Sha256::digest(&v).into();
        hashes.push(prev);
        expect += 1;
    }
    let (last, h) = head(s)?;
    if last != expect - 1 {
        return Err(Error::Corrupt(format!(
            "audit record {last} is missing (the chain ends at {}): removed",
            expect - 1
        )));
    }
    if h != prev {
        return Err(Error::Corrupt(format!(
            "audit record {last} was changed: the chain head holds another hash of it"
        )));
    }
    Ok(hashes)
}

/// A partition's audit chain head as it was at `time`, signed with the cluster's key and
/// kept outside the data (in the control plane's topology): a chain rewritten end to end
/// since, every hash recomputed, no longer holds `hash` at `seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Anchor {
    pub seq: u64,
    /// SHA-256 (hex) of record `seq`'s stored bytes.
    pub hash: String,
    pub time: String,
    /// Ed25519 signature (hex) of `message`, by the cluster's key.
    pub signature: String,
}

impl Anchor {
    /// What is signed: the cluster, the partition, and the anchored head.
    pub fn message(&self, cluster_id: &str, partition: u32) -> String {
        format!(
            "geodir-audit-anchor:v1:{cluster_id}:{partition}:{}:{}:{}",
            self.seq, self.hash, self.time
        )
    }

    /// Whether a chain (its records' hashes in sequence order, as `chain` returns them)
    /// still holds the anchored record: Err says how it does not.
    pub fn check(&self, hashes: &[[u8; 32]]) -> std::result::Result<(), String> {
        if self.seq == 0 {
            return Ok(());
        }
        match hashes.get(self.seq as usize - 1) {
            None => Err(format!(
                "the chain ends at record {} but was anchored at record {} ({}): records were removed",
                hashes.len(),
                self.seq,
                self.time
            )),
            Some(h) if hex(h) != self.hash => Err(format!(
                "record {} is not the one anchored at {}: the chain was rewritten since",
                self.seq, self.time
            )),
            Some(_) => Ok(()),
        }
    }
}

/// The partition's chain head now: its last sequence number and that record's hash (hex).
pub fn head_hex(s: &dyn Store) -> Result<(u64, String)> {
    let (seq, h) = head(s)?;
    Ok((seq, hex(&h)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct Mem(BTreeMap<Vec<u8>, Vec<u8>>);
    impl Store for Mem {
        fn get(&self, k: &[u8]) -> Result<Option<Vec<u8>>> {
            Ok(self.0.get(k).cloned())
        }
        fn scan_prefix(&self, p: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
            Ok(self
                .0
                .range(p.to_vec()..)
                .take_while(|(k, _)| k.starts_with(p))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
        }
    }

    #[test]
    fn an_anchor_holds_until_the_chain_is_rewritten_or_cut_below_it() {
        let m = chain(3);
        let hashes = super::chain(&m).unwrap();
        let (seq, hash) = head_hex(&m).unwrap();
        let a = Anchor {
            seq,
            hash,
            time: "t".into(),
            signature: String::new(),
        };
        assert_eq!(a.check(&hashes), Ok(()));
        let mut more = hashes.clone();
        more.push([7; 32]);
        assert_eq!(a.check(&more), Ok(()), "records after the anchor");
        let mut rewritten = hashes.clone();
        rewritten[2] = [1; 32];
        assert!(a.check(&rewritten).unwrap_err().contains("rewritten"));
        assert!(a.check(&hashes[..2]).unwrap_err().contains("removed"));
        assert_ne!(a.message("c", 0), a.message("c", 1));
    }

    fn chain(n: u64) -> Mem {
        let mut m = Mem(BTreeMap::new());
        for i in 0..n {
            let mut t = Txn::new(&m);
            append(
                &mut t,
                Record::new(
                    "2026-12-29T10:00:00Z",
                    "ada",
                    "op",
                    vec![i.to_string()],
                    "ok",
                    "c",
                ),
            )
            .expect("append");
            let ops = t.into_ops();
            for op in ops {
                if let crate::log::Op::Put { key, value, .. } = op {
                    m.0.insert(key, value);
                }
            }
        }
        m
    }

    #[test]
    fn intact_changed_removed_and_reordered_chains() {
        assert_eq!(verify(&chain(3)).expect("intact"), 3);
        let mut m = chain(3);
        let v = m.0.get(&record_key(2)).cloned().unwrap_or_default();
        let changed = String::from_utf8_lossy(&v).replace("ada", "eve");
        m.0.insert(record_key(2), changed.into_bytes());
        assert!(matches!(verify(&m), Err(Error::Corrupt(e)) if e.contains("record 2 was changed")));
        let mut m = chain(3);
        m.0.remove(&record_key(2));
        assert!(matches!(verify(&m), Err(Error::Corrupt(e)) if e.contains("record 2 is missing")));
        let mut m = chain(3);
        let (a, b) = (m.0[&record_key(1)].clone(), m.0[&record_key(2)].clone());
        m.0.insert(record_key(1), b);
        m.0.insert(record_key(2), a);
        assert!(matches!(verify(&m), Err(Error::Corrupt(e)) if e.contains("reordered")));
        let mut m = chain(3);
        m.0.remove(&record_key(3));
        assert!(matches!(verify(&m), Err(Error::Corrupt(e)) if e.contains("record 3 is missing")));
    }
}
