use std::collections::BTreeSet;

use serde::de::DeserializeOwned;
use serde_json::json;

use super::*;

const T: &str = "contoso";

fn obj() -> Object {
    let mut m = Object::new();
    m.insert(
        "id".into(),
        Value::from("3f2504e0-4f89-11d3-9a0c-0305e82c3301"),
    );
    m.insert("accountEnabled".into(), Value::Bool(true));
    m
}

fn token() -> Token {
    Token {
        partition: 1,
        term: 2,
        lsn: 3,
        datacenter: "westus".into(),
    }
}

/// One sample of every request: the directory objects' here, the others' in `other_requests`.
fn requests() -> Vec<Request> {
    let s = String::from;
    vec![
        Request::CreateObject {
            tenant: s(T),
            object_type: ObjectType::User,
            fields: obj(),
        },
        Request::UpdateObject {
            tenant: s(T),
            object_type: ObjectType::Group,
            id: s("g"),
            patch: obj(),
        },
        Request::DeleteObject {
            tenant: s(T),
            object_type: ObjectType::Device,
            id: s("d"),
        },
        Request::GetObject {
            tenant: s(T),
            object_type: ObjectType::ServicePrincipal,
            id: s("a@b.c"),
        },
        Request::ListObjects {
            tenant: s(T),
            object_type: ObjectType::Application,
        },
        Request::ListMembers {
            tenant: s(T),
            group: s("g"),
        },
        Request::ListMemberOf {
            tenant: s(T),
            member: s("m"),
            transitive: true,
        },
        Request::AddMember {
            tenant: s(T),
            group: s("g"),
            member: s("m"),
        },
        Request::RemoveMember {
            tenant: s(T),
            group: s("g"),
            member: s("m"),
        },
        Request::Import {
            tenant: s(T),
            file: s("users.jsonl"),
            batch_size: 2,
            lines: vec![ImportLine {
                number: 4,
                object_type: ObjectType::Group,
                fields: obj(),
                members: vec![s("m")],
            }],
        },
    ]
    .into_iter()
    .chain(other_requests())
    .collect()
}

/// The samples of the recycle bin's, access, tenant, audit and backup requests.
fn other_requests() -> Vec<Request> {
    let s = String::from;
    vec![
        Request::ListDeleted { tenant: s(T) },
        Request::GetDeleted {
            tenant: s(T),
            id: s("x"),
        },
        Request::RestoreDeleted {
            tenant: s(T),
            id: s("x"),
            new_upn: Some(s("n@b.c")),
        },
        Request::PurgeDeleted {
            tenant: s(T),
            id: s("x"),
        },
        Request::PurgeExpired {
            tenants: vec![s(T), s("fabrikam")],
        },
        Request::Grant {
            tenant: s(T),
            principal: s("p"),
            resource: s("r"),
            action: s("*"),
            effect: Effect::Deny,
        },
        Request::Revoke {
            tenant: s(T),
            principal: s("p"),
            resource: s("r"),
            action: s("read"),
        },
        Request::ListGrants {
            tenant: s(T),
            principal: None,
        },
        Request::CheckAccess {
            tenant: s(T),
            user: s("u"),
            resource: s("r"),
            action: s("read"),
        },
        Request::CreateTenant {
            name: s(T),
            partition: Some(2),
        },
        Request::ListAudit { partition: 1 },
        Request::RecordAudit {
            partition: 0,
            op: s("sync"),
            targets: vec![s("p0")],
            outcome: s("ok"),
        },
        Request::RestoreFromBackup {
            tenant: s(T),
            backup: s("20261201T000000Z"),
            checkpoint: "/tmp/x/p0".into(),
            id: s("x"),
        },
    ]
}

/// Each variant's number: a match without a wildcard, so a new variant cannot be
/// added without a sample here.
fn request_variant(r: &Request) -> usize {
    match r {
        Request::CreateObject { .. } => 0,
        Request::UpdateObject { .. } => 1,
        Request::DeleteObject { .. } => 2,
        Request::GetObject { .. } => 3,
        Request::ListObjects { .. } => 4,
        Request::ListMembers { .. } => 5,
        Request::AddMember { .. } => 6,
        Request::RemoveMember { .. } => 7,
        Request::Import { .. } => 8,
        Request::ListDeleted { .. } => 9,
        Request::GetDeleted { .. } => 10,
        Request::RestoreDeleted { .. } => 11,
        Request::PurgeDeleted { .. } => 12,
        Request::PurgeExpired { .. } => 13,
        Request::Grant { .. } => 14,
        Request::Revoke { .. } => 15,
        Request::ListGrants { .. } => 16,
        Request::CheckAccess { .. } => 17,
        Request::CreateTenant { .. } => 18,
        Request::ListAudit { .. } => 19,
        Request::RecordAudit { .. } => 20,
        Request::RestoreFromBackup { .. } => 21,
        Request::ListMemberOf { .. } => 22,
    }
}
const REQUEST_VARIANTS: usize = 23;

fn replies() -> Vec<Reply> {
    let tomb = Tombstone {
        object: obj(),
        member_of: vec!["g".into()],
        members: Vec::new(),
        deleted_at: chrono::DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .map(|d| d.with_timezone(&chrono::Utc))
            .unwrap_or_default(),
        expired: false,
    };
    let decision = Decision {
        allowed: true,
        grant: Some(obj()),
        reason: "allowed by the grant to x".into(),
        principals_checked: 3,
    };
    let record = Record::new(
        "2026-12-01T10:00:00Z",
        "ada",
        "user.create",
        vec!["x".into()],
        "ok",
        "c",
    );
    vec![
        Reply::Object(obj()),
        Reply::Objects(vec![obj(), obj()]),
        Reply::Membership,
        Reply::Imported(7),
        Reply::Tombstones(vec![tomb.clone()]),
        Reply::Tombstone(tomb),
        Reply::Restored(Restored {
            object: obj(),
            memberships: vec!["memberOf group g".into()],
            skipped: vec!["member m: purged".into()],
        }),
        Reply::Purged(vec!["x".into()]),
        Reply::Grant(obj()),
        Reply::Grants(vec![obj()]),
        Reply::Decision(decision),
        Reply::Tenant {
            record: obj(),
            partition: 2,
        },
        Reply::AuditRecords(vec![record]),
        Reply::AuditRecorded,
        Reply::RestoredFromBackup {
            object: obj(),
            skipped: vec!["member m".into()],
        },
    ]
}

fn reply_variant(r: &Reply) -> usize {
    match r {
        Reply::Object(_) => 0,
        Reply::Objects(_) => 1,
        Reply::Membership => 2,
        Reply::Imported(_) => 3,
        Reply::Tombstones(_) => 4,
        Reply::Tombstone(_) => 5,
        Reply::Restored(_) => 6,
        Reply::Purged(_) => 7,
        Reply::Grant(_) => 8,
        Reply::Grants(_) => 9,
        Reply::Decision(_) => 10,
        Reply::Tenant { .. } => 11,
        Reply::AuditRecords(_) => 12,
        Reply::AuditRecorded => 13,
        Reply::RestoredFromBackup { .. } => 14,
    }
}
const REPLY_VARIANTS: usize = 15;

fn round_trips<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T) {
    let text = serde_json::to_string(v).expect("serializes");
    let back: T = serde_json::from_str(&text).expect("deserializes");
    assert_eq!(&back, v, "{text}");
}

#[test]
fn every_request_variant_round_trips_through_json() {
    let all = requests();
    let seen: BTreeSet<usize> = all.iter().map(request_variant).collect();
    assert_eq!(seen, (0..REQUEST_VARIANTS).collect());
    for r in &all {
        round_trips(r);
    }
}

#[test]
fn every_reply_variant_round_trips_through_json() {
    let all = replies();
    let seen: BTreeSet<usize> = all.iter().map(reply_variant).collect();
    assert_eq!(seen, (0..REPLY_VARIANTS).collect());
    for r in &all {
        round_trips(r);
        round_trips(&Response {
            reply: r.clone(),
            token: Some(token()),
            served_by: Some(ServedBy {
                datacenter: "eastus".into(),
                partition: 1,
                term: 2,
                lsn: 3,
                pulled_entries: 0,
            }),
        });
    }
    for p in [
        Progress::Checked { token: token() },
        Progress::Committed {
            through_line: 9,
            objects: 2,
            token: token(),
        },
    ] {
        round_trips(&p);
    }
    round_trips(&Note::Warning("w".into()));
    round_trips(&Envelope {
        actor: "ada".into(),
        correlation_id: "c".into(),
        datacenter: Some("westus".into()),
        token: Some(token()),
    });
}

#[test]
fn requests_are_tagged_in_camel_case() {
    let v = serde_json::to_value(Request::ListMembers {
        tenant: T.into(),
        group: "g".into(),
    })
    .expect("json");
    assert_eq!(
        v,
        json!({"request": "listMembers", "tenant": T, "group": "g"})
    );
    let v = serde_json::to_value(Request::RestoreDeleted {
        tenant: T.into(),
        id: "x".into(),
        new_upn: None,
    })
    .expect("json");
    assert_eq!(v["newUpn"], Value::Null);
    assert!(v.as_object().is_some_and(|m| m.contains_key("newUpn")));
}

#[test]
fn reads_write_no_audit_record_and_writes_name_theirs() {
    for r in requests() {
        assert_eq!(r.audit_op().is_none(), r.is_read(), "{r:?}");
    }
    let create = Request::CreateObject {
        tenant: T.into(),
        object_type: ObjectType::ServicePrincipal,
        fields: obj(),
    };
    assert_eq!(create.audit_op().as_deref(), Some("sp.create"));
}

#[test]
fn a_requests_name_is_its_json_tag() {
    let reqs = [
        Request::ListAudit { partition: 0 },
        Request::CreateTenant {
            name: "t".into(),
            partition: None,
        },
        Request::PurgeExpired { tenants: vec![] },
        Request::ListDeleted { tenant: "t".into() },
    ];
    for r in reqs {
        let tag = serde_json::to_value(&r).unwrap()["request"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(r.name(), tag, "{r:?}");
    }
}
