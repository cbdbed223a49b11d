//! Promise 9: the audit trail, through the real binary.
#![allow(clippy::unwrap_used)]

mod util;

use serde_json::Value;
use util::Cluster;

fn records(c: &Cluster, filter: &[&str]) -> Vec<Value> {
    let mut a = vec!["audit", "list"];
    a.extend(filter);
    c.ok(&a)["records"].as_array().unwrap().clone()
}

/// What an attacker with the disks would do: change the data CF of every replica of a partition.
fn tamper(c: &Cluster, partition: u32, change: impl Fn(&rocksdb::DB, &[u8])) {
    tamper_at(c, partition, &["westus", "eastus", "westeurope"], change);
}

/// The same, at some datacenters only; `change` gets the key of audit record 2.
fn tamper_at(c: &Cluster, partition: u32, dcs: &[&str], change: impl Fn(&rocksdb::DB, &[u8])) {
    let mut key = vec![0x08u8];
    key.extend_from_slice(&2u64.to_be_bytes());
    for dc in dcs {
        let path = c.dc_dir(dc).join(format!("p{partition}"));
        let db = rocksdb::DB::open_cf(
            &rocksdb::Options::default(),
            &path,
            ["default", "log", "meta"],
        )
        .unwrap();
        change(&db, &key);
    }
}

#[test]
fn every_operation_leaves_one_record_with_actor_target_and_outcome() {
    let c = Cluster::new();
    let (mut cmd, _) = c.command(&[
        "user",
        "create",
        "--tenant",
        "contoso",
        "--upn",
        "ada@contoso.com",
        "--display-name",
        "Ada",
        "--actor",
        "alice",
        "--output",
        "json",
    ]);
    let out = cmd.output().unwrap();
    assert!(out.status.success());
    let ada = serde_json::from_slice::<Value>(&out.stdout).unwrap()["object"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A failed operation is recorded with its error.
    c.create_user_fails("ada@contoso.com", 4);
    // Addressed by UPN, recorded by object ID.
    c.ok(&[
        "user",
        "update",
        "--tenant",
        "contoso",
        "ada@contoso.com",
        "--set",
        "jobTitle=CFO",
    ]);
    c.ok(&["user", "delete", "--tenant", "contoso", "ada@contoso.com"]);
    c.ok(&[
        "failover",
        "--yes",
        "--partition",
        "0",
        "--to",
        "westeurope",
    ]);

    let created = records(&c, &["--op", "user.create"]);
    assert_eq!(created.len(), 2, "{created:?}");
    assert_eq!(created[0]["actor"], "alice");
    assert_eq!(created[0]["targets"], serde_json::json!([ada.clone()]));
    assert_eq!(created[0]["outcome"], "ok");
    assert!(
        created[1]["outcome"]
            .as_str()
            .unwrap()
            .contains("already taken"),
        "{created:?}"
    );
    assert_eq!(
        created[1]["targets"],
        serde_json::json!(["ada@contoso.com"])
    );
    assert_eq!(created[0]["v"], 1);
    let correlation = |i: usize| created[i]["correlationId"].as_str().unwrap().to_string();
    assert!(!correlation(0).is_empty(), "{created:?}");
    assert_ne!(correlation(0), correlation(1));

    let on_ada = records(&c, &["--target", &ada]);
    let ops: Vec<_> = on_ada.iter().map(|r| r["op"].as_str().unwrap()).collect();
    assert_eq!(ops, vec!["user.create", "user.update", "user.delete"]);
    let failovers = records(&c, &["--op", "failover.planned"]);
    assert_eq!(failovers.len(), 1);
    assert_eq!(failovers[0]["outcome"], "ok");
    assert_eq!(records(&c, &["--op", "tenant.create"]).len(), 1);
    assert_eq!(records(&c, &["--by", "nobody"]).len(), 0);
    assert_eq!(records(&c, &["--by", "alice"]).len(), 1);
    // The old spelling does not silently list everyone's records.
    let r = c.fails(&["audit", "list", "--actor", "alice"], 2);
    assert!(r.stderr.contains("--by"), "{}", r.describe());
    // As the global option before the command, --actor still names who runs it.
    c.ok(&["--actor", "ops", "audit", "list"]);
    // Who runs `audit list` (DIRCTL_ACTOR) does not filter what it lists.
    let (mut cmd, _) = c.command(&["audit", "list", "--output", "json"]);
    let out = cmd.env("DIRCTL_ACTOR", "nobody").output().unwrap();
    assert!(out.status.success());
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["records"], Value::Array(records(&c, &[])));
    c.ok(&["sync"]);
    let v = c.ok(&["audit", "verify"]);
    assert!(
        v["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["result"] == "intact"),
        "{v}"
    );
}

#[test]
fn privileged_operations_need_yes_without_a_terminal() {
    let c = Cluster::new();
    let r = c.fails(&["failover", "--partition", "0", "--to", "westeurope"], 2);
    assert!(r.stderr.contains("--yes"), "{}", r.describe());
    let r = c.fails(&["dc", "drain", "westeurope"], 2);
    assert!(r.stderr.contains("--yes"), "{}", r.describe());
    assert_eq!(c.ok(&["dc", "list"])[2]["drained"], false);
}

#[test]
fn audit_verify_catches_a_record_changed_in_rocksdb() {
    let c = Cluster::new();
    for u in ["a@contoso.com", "b@contoso.com", "c@contoso.com"] {
        c.create_user(u);
    }
    c.ok(&["audit", "verify"]);
    tamper(&c, 0, |db, key| {
        // A secondary that has not caught up yet holds no record 2.
        let Some(v) = db.get(key).unwrap() else {
            return;
        };
        let changed = String::from_utf8(v)
            .unwrap()
            .replace("user.create", "user.update");
        db.put(key, changed).unwrap();
    });
    let r = c.fails(&["audit", "verify"], 1);
    assert!(
        r.stderr.contains("partition 0") && r.stderr.contains("record 2 was changed"),
        "{}",
        r.describe()
    );
}

#[test]
fn audit_verify_catches_a_deleted_record() {
    let c = Cluster::new();
    for u in ["a@contoso.com", "b@contoso.com", "c@contoso.com"] {
        c.create_user(u);
    }
    tamper(&c, 0, |db, key| db.delete(key).unwrap());
    let r = c.fails(&["audit", "verify"], 1);
    assert!(
        r.stderr.contains("partition 0") && r.stderr.contains("record 2 is missing"),
        "{}",
        r.describe()
    );
}

#[test]
fn audit_verify_checks_the_copy_at_every_datacenter_not_only_the_one_a_read_reaches() {
    // A record changed at the primary only: reads go to secondaries, verify still finds it.
    let c = Cluster::new();
    for u in ["a@contoso.com", "b@contoso.com", "c@contoso.com"] {
        c.create_user(u);
    }
    c.ok(&["sync"]);
    tamper_at(&c, 0, &["westus"], |db, key| {
        let v = String::from_utf8(db.get(key).unwrap().unwrap()).unwrap();
        db.put(key, v.replace("user.create", "user.update"))
            .unwrap();
    });
    for region in ["westus", "eastus", "westeurope"] {
        let r = c.fails(&["audit", "verify", "--region", region], 1);
        assert!(
            r.stderr.contains("partition 0 at westus") && r.stderr.contains("record 2 was changed"),
            "{}",
            r.describe()
        );
    }

    // The last record and the chain head rewritten consistently at one secondary: its own
    // chain walks clean, but it no longer matches the primary's copy.
    let c = Cluster::new();
    for u in ["a@contoso.com", "b@contoso.com", "c@contoso.com"] {
        c.create_user(u);
    }
    c.ok(&["sync"]);
    tamper_at(&c, 0, &["eastus"], |db, _| {
        let head = db.get([0x09u8]).unwrap().unwrap();
        let mut key = vec![0x08u8];
        key.extend_from_slice(&head[..8]);
        let v = String::from_utf8(db.get(&key).unwrap().unwrap()).unwrap();
        let changed = v.replace("\"actor\":\"", "\"actor\":\"mallory-as-");
        assert_ne!(v, changed);
        let mut h = head[..8].to_vec();
        h.extend_from_slice(&<sha2::Sha256 as sha2::Digest>::digest(changed.as_bytes()));
        db.put(&key, changed).unwrap();
        db.put([0x09u8], h).unwrap();
    });
    let r = c.fails(&["audit", "verify"], 1);
    assert!(
        r.stderr.contains("partition 0 at eastus")
            && r.stderr
                .contains("differs from the primary's copy at westus"),
        "{}",
        r.describe()
    );

    // A record appended at one secondary, its head moved along: the primary has no such record.
    let c = Cluster::new();
    c.create_user("a@contoso.com");
    c.ok(&["sync"]);
    tamper_at(&c, 0, &["westeurope"], |db, _| {
        let head = db.get([0x09u8]).unwrap().unwrap();
        let last = u64::from_be_bytes(head[..8].try_into().unwrap());
        let prev: String = head[8..].iter().map(|b| format!("{b:02x}")).collect();
        let forged = serde_json::json!({"v": 1, "seq": last + 1, "time": "2026-11-29T00:00:00Z",
            "actor": "mallory", "op": "user.delete", "targets": [], "outcome": "ok",
            "correlationId": "x", "prev": prev})
        .to_string();
        let mut next = vec![0x08u8];
        next.extend_from_slice(&(last + 1).to_be_bytes());
        let mut h = (last + 1).to_be_bytes().to_vec();
        h.extend_from_slice(&<sha2::Sha256 as sha2::Digest>::digest(forged.as_bytes()));
        db.put(&next, forged).unwrap();
        db.put([0x09u8], h).unwrap();
    });
    let r = c.fails(&["audit", "verify"], 1);
    assert!(
        r.stderr.contains("partition 0 at westeurope")
            && r.stderr.contains("past the primary's last"),
        "{}",
        r.describe()
    );

    // A copy that cannot be checked is not called intact.
    let c = Cluster::new();
    c.create_user("a@contoso.com");
    util::rename(&c.dc_dir("eastus"), &c.path("away"));
    let r = c.fails(&["audit", "verify"], 5);
    assert!(
        r.stderr.contains("could not be checked") && r.stderr.contains("at eastus"),
        "{}",
        r.describe()
    );
}

#[test]
fn a_failure_its_own_partition_cannot_record_is_recorded_in_another() {
    let c = Cluster::new();
    c.create_user("a@contoso.com");
    // Partition 0's primary (westus) is lost: the failed write cannot be recorded there.
    util::rename(&c.dc_dir("westus"), &c.path("away"));
    let r = c.create_user_fails("b@contoso.com", 5);
    assert!(r.stderr.contains("went to partition"), "{}", r.describe());
    let failed: Vec<_> = records(&c, &["--op", "user.create"])
        .into_iter()
        .filter(|r| r["outcome"] != "ok")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_ne!(failed[0]["partition"].as_u64().unwrap(), 0);
    assert!(failed[0]["outcome"]
        .as_str()
        .unwrap()
        .contains("unreachable"));
}

#[test]
fn memberships_named_by_upn_are_recorded_by_object_id_and_actors_are_plain_names() {
    let c = Cluster::new();
    let ada = c.create_user("ada@contoso.com");
    let g = c.create_group("eng");
    c.ok(&[
        "group",
        "add-member",
        "--tenant",
        "contoso",
        &g,
        "ada@contoso.com",
    ]);
    let recs = records(&c, &["--op", "group.add-member"]);
    assert_eq!(recs[0]["targets"], serde_json::json!([g, ada]));
    let r = c.fails(
        &["user", "list", "--tenant", "contoso", "--actor", "ev\nil"],
        2,
    );
    assert!(r.stderr.contains("control character"), "{}", r.describe());
    let r = c.fails(
        &[
            "access",
            "grant",
            "--tenant",
            "contoso",
            "--principal",
            &ada,
            "--resource",
            "pay\nroll",
            "--allow",
        ],
        2,
    );
    assert!(r.stderr.contains("control character"), "{}", r.describe());
}

#[test]
fn audit_list_shows_every_committed_record_even_from_a_lagging_region() {
    let c = Cluster::new();
    let id = c.create_user("fresh@contoso.com");
    // westeurope lags on partition 0 (no sync yet): its copy lacks the create's record.
    let v = c.ok(&["audit", "list", "--target", &id, "--region", "westeurope"]);
    assert_eq!(v["records"].as_array().unwrap().len(), 1, "{v}");
    // A primary's unsettled entries (a crashed writer's) are not listed.
    c.crash_leaving_an_unacknowledged_tail("5a1e7a11-0000-4000-8000-00000000d11e");
    let v = c.ok(&[
        "audit",
        "list",
        "--target",
        "5a1e7a11-0000-4000-8000-00000000d11e",
    ]);
    assert_eq!(v["records"], serde_json::json!([]), "{v}");
    // Without the primary's copy, the list says it may lack the newest records.
    util::rename(&c.dc_dir("westus"), &c.path("away"));
    let r = c.run(&["audit", "list", "--target", &id]);
    assert_eq!(r.code, 0, "{}", r.describe());
    assert!(
        r.stderr.contains("may lack the newest records"),
        "{}",
        r.describe()
    );
}

/// What an attacker with every datacenter's disks would do: change record 2 of partition
/// 0's chain, then recompute every later record's `prev` and the chain head, so that the
/// chain is consistent again.
fn rewrite_chain(c: &Cluster) {
    use sha2::Digest as _;
    tamper(c, 0, |db, _| {
        let records: Vec<(Vec<u8>, Vec<u8>)> = db
            .prefix_iterator([0x08u8])
            .map(|kv| kv.unwrap())
            .take_while(|(k, _)| k.first() == Some(&0x08))
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        let mut prev = [0u8; 32];
        for (k, v) in &records {
            let mut rec: Value = serde_json::from_slice(v).unwrap();
            if rec["seq"] == 2 {
                rec["op"] = "user.update".into();
            }
            rec["prev"] = prev
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                .into();
            let bytes = serde_json::to_vec(&rec).unwrap();
            prev = sha2::Sha256::digest(&bytes).into();
            db.put(k, &bytes).unwrap();
        }
        let last = records.last().map(|(k, _)| k[1..9].to_vec()).unwrap();
        let mut head = last;
        head.extend_from_slice(&prev);
        db.put([0x09u8], head).unwrap();
    });
}

#[test]
fn audit_verify_catches_a_chain_rewritten_end_to_end_since_its_signed_anchor() {
    // Without an anchor, a chain rewritten end to end is consistent: verify cannot tell.
    let bare = Cluster::new();
    for u in ["a@contoso.com", "b@contoso.com", "c@contoso.com"] {
        bare.create_user(u);
    }
    bare.ok(&["sync"]);
    rewrite_chain(&bare);
    bare.ok(&["audit", "verify"]);

    let c = Cluster::new();
    for u in ["a@contoso.com", "b@contoso.com", "c@contoso.com"] {
        c.create_user(u);
    }
    // Anchored while westeurope (not the sync standby) lags: a lagging copy is no fault.
    let anchors = c.ok(&["audit", "anchor"])["anchors"].clone();
    let p0 = anchors
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["partition"] == 0)
        .unwrap_or_else(|| panic!("no anchor of partition 0: {anchors}"))
        .clone();
    assert!(p0["seq"].as_u64().unwrap() >= 3, "{p0}");
    let lagging = c.ok(&["audit", "verify"]);
    assert!(
        lagging["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["partition"] == 0
                && r["datacenter"] == "westeurope"
                && r["result"].as_str().unwrap().contains("behind the anchor")),
        "{lagging}"
    );
    c.ok(&["sync"]);
    let ok = c.ok(&["audit", "verify"]);
    assert!(
        ok["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["partition"] == 0
                && r["result"].as_str().unwrap().contains("anchored at record")),
        "{ok}"
    );
    // The key's signature is in the control plane, never the key.
    let topology = std::fs::read_to_string(c.root.join("cluster.json")).unwrap();
    let seed = std::fs::read(c.root.join("secrets/token-signing-key")).unwrap();
    let seed_hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        topology.contains("auditAnchors") || topology.contains("audit_anchors"),
        "{topology}"
    );
    assert!(!topology.contains(&seed_hex));

    rewrite_chain(&c);
    let r = c.fails(&["audit", "verify"], 1);
    assert!(
        r.stderr.contains("partition 0") && r.stderr.contains("rewritten since"),
        "{}",
        r.describe()
    );
    assert!(
        r.stdout.contains(&format!("record {}", p0["seq"])),
        "the anchor checked against is not named\n{}",
        r.describe()
    );
}

#[test]
fn a_backup_anchors_the_audit_chains_outside_the_control_plane() {
    let c = Cluster::new();
    for u in ["a@contoso.com", "b@contoso.com", "c@contoso.com"] {
        c.create_user(u);
    }
    c.ok(&["sync"]);
    let dest = c.path("backups").display().to_string();
    let made = c.ok(&["backup", "create", "--dest", &dest]);
    let id = made["backup"].as_str().unwrap().to_string();
    let sidecar: Value = serde_json::from_slice(
        &std::fs::read(c.path(&format!("backups/geodir-{id}.json"))).unwrap(),
    )
    .unwrap();
    let p0 = &sidecar["manifest"]["audit_anchors"]["0"];
    assert!(p0["seq"].as_u64().unwrap_or(0) >= 3, "{sidecar}");
    assert!(
        !p0["signature"].as_str().unwrap_or("").is_empty(),
        "{sidecar}"
    );
    // Rewritten end to end, with no anchor in the control plane (never taken, or rolled
    // back with it): the chain is consistent, and only the backup's anchor tells.
    rewrite_chain(&c);
    c.ok(&["audit", "verify"]);
    let r = c.fails(&["audit", "verify", "--backups", &dest], 1);
    assert!(
        r.stderr.contains("partition 0")
            && r.stderr.contains("rewritten since")
            && r.stderr.contains(&format!("backup {id}'s")),
        "{}",
        r.describe()
    );
    // A folder without a backup that anchors anything is said so, not taken as a pass.
    let empty = c.path("none").display().to_string();
    let r = c.fails(&["audit", "verify", "--backups", &empty], 3);
    assert!(r.stderr.contains("no good backup"), "{}", r.describe());
}
