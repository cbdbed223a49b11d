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

pub fn object(r: Reply) -> Result<Object> {
    match r {
        Reply::Object(o) | Reply::Grant(o) => Ok(o),
        other => Err(unexpected("an object", &other)),
    }
}

pub fn objects(r: Reply) -> Result<Vec<Object>> {
    match r {
        Reply::Objects(o) | Reply::Grants(o) => Ok(o),
        other => Err(unexpected("a list of objects", &other)),
    }
}

pub fn tombstones(r: Reply) -> Result<Vec<Tombstone>> {
    match r {
        Reply::Tombstones(t) => Ok(t),
        other => Err(unexpected("deleted objects", &other)),
    }
}

pub fn tombstone(r: Reply) -> Result<Tombstone> {
    match r {
        Reply::Tombstone(t) => Ok(t),
        other => Err(unexpected("a deleted object", &other)),
    }
}

pub fn restored(r: Reply) -> Result<Restored> {
    match r {
        Reply::Restored(x) => Ok(x),
        other => Err(unexpected("a restored object", &other)),
    }
}

pub fn purged(r: Reply) -> Result<Vec<String>> {
    match r {
        Reply::Purged(ids) => Ok(ids),
        other => Err(unexpected("purged IDs", &other)),
    }
}

pub fn decision(r: Reply) -> Result<Decision> {
    match r {
        Reply::Decision(d) => Ok(d),
        other => Err(unexpected("an access decision", &other)),
    }
}

pub fn audit_records(r: Reply) -> Result<Vec<Record>> {
    match r {
        Reply::AuditRecords(x) => Ok(x),
        other => Err(unexpected("audit records", &other)),
    }
}

pub fn token(t: Option<Token>) -> Result<Token> {
    t.ok_or_else(|| anyhow!("the directory committed a write but returned no replica token"))
}

pub fn served_by(s: Option<ServedBy>) -> Result<ServedBy> {
    s.ok_or_else(|| anyhow!("the directory answered a read without saying which replica served it"))
}
