//! Taking the expected part out of a directory `Response`: a reply of another kind than
//! the request's is the directory's bug, reported as an error rather than a panic.

use anyhow::{anyhow, Result};
use engine::access::Decision;
use engine::audit::Record;
use engine::cluster::ServedBy;
use engine::recycle::{Restored, Tombstone};
use engine::request::{Object, Reply};
use engine::session::Token;

fn unexpected(want: &str, got: &Reply) -> anyhow::Error {
    anyhow!("the directory answered {got:?} where {want} was expected")
}

/// `pub fn $name(r: Reply) -> Result<$t>`: the reply's `$variant`s (one or more, of the
/// same payload), or an error saying that `$want` was expected.
macro_rules! expect {
    ($name:ident, $t:ty, $want:literal, $($variant:ident)|+) => {
        pub fn $name(r: Reply) -> Result<$t> {
            match r {
                $(Reply::$variant(x))|+ => Ok(x),
                other => Err(unexpected($want, &other)),
            }
        }
    };
}

expect!(object, Object, "an object", Object | Grant);
expect!(objects, Vec<Object>, "a list of objects", Objects | Grants);
expect!(tombstones, Vec<Tombstone>, "deleted objects", Tombstones);
expect!(tombstone, Tombstone, "a deleted object", Tombstone);
expect!(restored, Restored, "a restored object", Restored);
expect!(purged, Vec<String>, "purged IDs", Purged);
expect!(decision, Decision, "an access decision", Decision);
expect!(audit_records, Vec<Record>, "audit records", AuditRecords);

pub fn token(t: Option<Token>) -> Result<Token> {
    t.ok_or_else(|| anyhow!("the directory committed a write but returned no replica token"))
}

pub fn served_by(s: Option<ServedBy>) -> Result<ServedBy> {
    s.ok_or_else(|| anyhow!("the directory answered a read without saying which replica served it"))
}
