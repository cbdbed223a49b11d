//! Directory requests through the embedded client: what a remote client will send, with no
//! closure over a replica.

#![allow(clippy::unwrap_used)]

use engine::client::{Directory, Embedded};
use engine::cluster::{Cluster, ClusterOptions};
use engine::directory::ObjectType;
use engine::request::{Envelope, Reply, Request};
use engine::topology::parse_datacenter;
use engine::Error;
use serde_json::{json, Map, Value};

fn open(dir: &std::path::Path) -> Embedded {
    let root = dir.join("cluster");
    let dcs = [
        "westus@37.4,-122.1",
        "eastus@37.4,-79.4",
        "westeurope@52.4,4.9",
    ];
    Cluster::init(
        &root,
        dcs.iter().map(|s| parse_datacenter(s).unwrap()).collect(),
        2,
    )
    .unwrap();
    Embedded::new(Cluster::open(&root, ClusterOptions::default()).unwrap())
}

fn envelope() -> Envelope {
    Envelope {
        actor: "ada".into(),
        correlation_id: "corr-1".into(),
        datacenter: None,
        token: None,
    }
}

fn fields(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

/// Every request sent as JSON and read back first, as a server would receive it.
fn send(d: &mut Embedded, req: Request) -> engine::Result<engine::request::Response> {
    let wire = serde_json::to_string(&req).unwrap();
    d.execute(&envelope(), serde_json::from_str(&wire).unwrap())
}

fn audit(d: &mut Embedded) -> Vec<engine::audit::Record> {
    let mut all = Vec::new();
    for partition in 0..2 {
        match send(d, Request::ListAudit { partition }).unwrap().reply {
            Reply::AuditRecords(r) => all.extend(r),
            other => panic!("{other:?}"),
        }
    }
    all
}

#[test]
fn a_write_request_commits_with_its_audit_record_and_a_read_request_finds_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = open(dir.path());
    let r = send(
        &mut d,
        Request::CreateTenant {
            name: "contoso".into(),
            partition: Some(1),
        },
    )
    .unwrap();
    assert!(matches!(r.reply, Reply::Tenant { partition: 1, .. }));
    assert_eq!(d.placement("contoso").unwrap().partition, 1);

    let r = send(
        &mut d,
        Request::CreateObject {
            tenant: "contoso".into(),
            object_type: ObjectType::User,
            fields: fields(json!({"userPrincipalName": "ada@contoso.com", "displayName": "Ada"})),
        },
    )
    .unwrap();
    let token = r.token.unwrap();
    assert_eq!(token.partition, 1);
    let Reply::Object(created) = r.reply else {
        panic!("not an object")
    };
    let id = created["id"].as_str().unwrap().to_string();

    let r = send(
        &mut d,
        Request::GetObject {
            tenant: "contoso".into(),
            object_type: ObjectType::User,
            id: "ada@contoso.com".into(),
        },
    )
    .unwrap();
    assert_eq!(r.reply, Reply::Object(created));
    assert!(r.served_by.unwrap().lsn >= token.lsn);

    // The record names the created object by id, with the envelope's actor and correlation id.
    let records = audit(&mut d);
    let rec = records.iter().find(|r| r.op == "user.create").unwrap();
    assert_eq!(rec.targets, vec![id]);
    assert_eq!(
        (rec.actor.as_str(), rec.correlation_id.as_str()),
        ("ada", "corr-1")
    );
    assert_eq!(rec.outcome, "ok");
}

#[test]
fn a_refused_request_writes_nothing_and_a_failed_one_records_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = open(dir.path());
    send(
        &mut d,
        Request::CreateTenant {
            name: "contoso".into(),
            partition: Some(0),
        },
    )
    .unwrap();
    let user = |upn: &str| Request::CreateObject {
        tenant: "contoso".into(),
        object_type: ObjectType::User,
        fields: fields(json!({"userPrincipalName": upn, "displayName": upn})),
    };
    let before = audit(&mut d).len();
    let bad = send(&mut d, user("not-a-upn"));
    assert!(matches!(bad, Err(Error::Invalid(_))), "{bad:?}");
    assert_eq!(
        audit(&mut d).len(),
        before,
        "malformed input is not recorded"
    );

    send(&mut d, user("ada@contoso.com")).unwrap();
    let taken = send(&mut d, user("ADA@contoso.com"));
    assert!(matches!(taken, Err(Error::Conflict(_))), "{taken:?}");
    let records = audit(&mut d);
    let failed: Vec<_> = records.iter().filter(|r| r.outcome != "ok").collect();
    assert_eq!(failed.len(), 1, "{records:?}");
    assert!(failed[0].outcome.contains("already taken"), "{failed:?}");
    assert_eq!(failed[0].targets, vec!["ADA@contoso.com".to_string()]);
    assert!(d.take_notes().is_empty());
}

/// Group commit: writes carried out together share one log entry (one token), each with
/// its audit record; one that fails alone (a UPN taken by the one before it in the same
/// batch) fails only itself, with its failure recorded in the same entry; the audit chain
/// verifies across it.
#[test]
fn writes_carried_out_together_share_an_entry_and_fail_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = open(dir.path());
    send(
        &mut d,
        Request::CreateTenant {
            name: "contoso".into(),
            partition: Some(0),
        },
    )
    .unwrap();
    let before = audit(&mut d).len();
    let user = |upn: &str| Request::CreateObject {
        tenant: "contoso".into(),
        object_type: ObjectType::User,
        fields: fields(json!({"userPrincipalName": upn, "displayName": upn})),
    };
    let batch = vec![
        (envelope(), user("ada@contoso.com")),
        (envelope(), user("ada@contoso.com")),
        (envelope(), user("alan@contoso.com")),
        (
            envelope(),
            Request::CreateObject {
                tenant: "nobody".into(),
                object_type: ObjectType::User,
                fields: fields(json!({"userPrincipalName": "x@nobody.com"})),
            },
        ),
    ];
    let got = d.execute_many(batch);
    let shown: Vec<String> = got.iter().map(|r| format!("{r:?}")).collect();
    assert_eq!(got.len(), 4, "{shown:#?}");
    let (ada, alan) = match (&got[0], &got[2]) {
        (Ok(a), Ok(b)) => (a, b),
        _ => panic!("both distinct creates should succeed: {shown:#?}"),
    };
    assert!(
        matches!(got[1], Err(Error::Conflict(_))),
        "the second create of one UPN conflicts with the first in the same batch: {shown:#?}"
    );
    assert!(matches!(got[3], Err(Error::NotFound(_))), "{shown:#?}");
    let (ta, tb) = (ada.token.clone().unwrap(), alan.token.clone().unwrap());
    assert_eq!(ta, tb, "one log entry for the batch: {shown:#?}");

    let records = audit(&mut d);
    let new: Vec<(String, String)> = records[before..]
        .iter()
        .map(|r| (r.targets.join(","), r.outcome.clone()))
        .collect();
    assert_eq!(
        new.len(),
        3,
        "an audit record per write of the partition: {new:?}"
    );
    assert_eq!(new.iter().filter(|(_, o)| o == "ok").count(), 2, "{new:?}");
    assert!(
        new.iter()
            .any(|(t, o)| t == "ada@contoso.com" && o.contains("ada@contoso.com")),
        "the conflict's failure is recorded under the UPN it was to have: {new:?}"
    );
    for upn in ["ada@contoso.com", "alan@contoso.com"] {
        let r = send(
            &mut d,
            Request::GetObject {
                tenant: "contoso".into(),
                object_type: ObjectType::User,
                id: upn.into(),
            },
        );
        assert!(r.is_ok(), "{upn} is readable after the batch: {r:?}");
    }
    assert!(
        audit_chain_holds(&mut d),
        "the audit chain verifies across the shared entry"
    );
}

fn audit_chain_holds(d: &mut Embedded) -> bool {
    let p = d.cluster().topology().partition(0).unwrap().primary.clone();
    d.cluster_mut()
        .at_replica(0, &p, |r| engine::audit::verify(r))
        .is_ok()
}
