//! Promise 8 through the real binary: restores to a new root, in place and object by object.
#![allow(clippy::unwrap_used)]

mod util;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use util::backups::{archive, at, backed_up, dest, ok_at, DAY1};
use util::Cluster;

/// Every key and value of a replica's data, read through the engine's read-only view.
fn dump(replica: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    engine::replica::CheckpointView::open(replica)
        .unwrap()
        .scan_prefix(&[])
        .unwrap()
        .into_iter()
        .collect()
}

fn primaries(root: &Path) -> Vec<(u32, String)> {
    let t: Value =
        serde_json::from_slice(&std::fs::read(root.join("cluster.json")).unwrap()).unwrap();
    t["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_u64().unwrap() as u32,
                p["primary"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn promise_8_restore_to_a_new_root_after_wiping_the_cluster_gives_every_object_back_equal() {
    let c = Cluster::new();
    let ada = c.create_user("ada@contoso.com");
    let bob = c.create_user("bob@contoso.com");
    let gone = c.create_user("gone@contoso.com");
    let g = c.create_group("Engineering");
    let outer = c.create_group("Everyone");
    c.ok(&["group", "add-member", "--tenant", "contoso", &g, &ada]);
    c.ok(&["group", "add-member", "--tenant", "contoso", &g, &gone]);
    c.ok(&["group", "add-member", "--tenant", "contoso", &outer, &g]);
    c.ok(&["user", "delete", "--tenant", "contoso", &gone]); // a tombstone (0x06)
    c.ok(&["tenant", "create", "fabrikam", "--partition", "2"]);
    let before: BTreeMap<u32, _> = primaries(&c.root)
        .into_iter()
        .map(|(p, dc)| (p, dump(&c.root.join(format!("dc-{dc}/p{p}")))))
        .collect();
    assert!(
        before[&0].keys().any(|k| k[0] == 0x06),
        "a tombstone to compare"
    );
    let made = ok_at(&c, DAY1, &["backup", "create", "--dest", &dest(&c)]);
    assert_eq!(made["created"], true);
    assert_eq!(made["backup"], "2026-12-01");
    let p0 = &made["manifest"]["partitions"][0];
    // The backup's own audit record follows it on partition 0.
    assert_eq!(p0["lsn"], c.lsn(0, "westus").unwrap() - 1);
    assert_eq!(p0["counts"]["objects"], 4);
    assert_eq!(p0["counts"]["tombstones"], 1);
    let old_id = c.ok(&["status"])["clusterId"].as_str().unwrap().to_string();

    std::fs::remove_dir_all(&c.root).unwrap();
    let to = c.path("restored");
    let r = c.ok(&[
        "backup",
        "restore",
        "2026-12-01",
        "--to",
        to.to_str().unwrap(),
        "--dest",
        &dest(&c),
    ]);
    assert_eq!(r["restored"]["root"], to.to_str().unwrap());

    let n = at(&to);
    let status = n.ok(&["status"]);
    let new_id = status["clusterId"].as_str().unwrap();
    assert!(!new_id.is_empty());
    assert_ne!(new_id, old_id, "a restored cluster has a new identity");
    for row in status["replicas"].as_array().unwrap() {
        assert_eq!(row["health"], "ok", "{row}");
    }
    // Every replica of every partition holds exactly the primary's data at backup time.
    for (p, data) in &before {
        for dc in ["westus", "eastus", "westeurope"] {
            assert_eq!(
                &dump(&to.join(format!("dc-{dc}/p{p}"))),
                data,
                "dc-{dc}/p{p}"
            );
        }
    }
    assert_eq!(n.user_get("ada@contoso.com", &[])["id"], ada.as_str());
    let members = n.ok(&["group", "members", "--tenant", "contoso", &g]);
    assert_eq!(
        members["objects"].as_array().map(Vec::len),
        Some(1),
        "{members}"
    );
    // The restored cluster takes writes, replicated as usual.
    n.create_user("carol@contoso.com");
    n.fails(
        &[
            "user",
            "create",
            "--tenant",
            "contoso",
            "--upn",
            "bob@contoso.com",
            "--display-name",
            "b",
        ],
        4,
    );
    let _ = bob;
}

#[test]
fn promise_8_restore_object_brings_a_deleted_user_back_with_its_memberships() {
    let c = Cluster::new();
    let ada = c.create_user("ada@contoso.com");
    let g = c.create_group("Engineering");
    c.ok(&["group", "add-member", "--tenant", "contoso", &g, &ada]);
    ok_at(&c, DAY1, &["backup", "create", "--dest", &dest(&c)]);
    c.ok(&["user", "delete", "--tenant", "contoso", &ada]);
    c.fails(&["user", "get", "--tenant", "contoso", &ada], 3);
    let r = c.ok(&[
        "backup",
        "restore-object",
        &ada,
        "--from",
        "2026-12-01",
        "--tenant",
        "contoso",
        "--dest",
        &dest(&c),
    ]);
    assert_eq!(r["object"]["userPrincipalName"], "ada@contoso.com");
    let got = c.user_get(&ada, &[]);
    assert_eq!(got["userPrincipalName"], "ada@contoso.com");
    let members = c.ok(&["group", "members", "--tenant", "contoso", &g]);
    assert_eq!(members["objects"][0]["id"], ada.as_str(), "{members}");
    // Live again: a second restore is a conflict.
    c.fails(
        &[
            "backup",
            "restore-object",
            &ada,
            "--from",
            "2026-12-01",
            "--tenant",
            "contoso",
            "--dest",
            &dest(&c),
        ],
        4,
    );
}

#[test]
fn promise_8_a_truncated_archive_is_refused_and_the_target_left_as_it_was() {
    let c = backed_up();
    let cut = c.path("cut.tar.zst");
    let bytes = std::fs::read(archive(&c, "2026-12-01")).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let r = c.fails(&["backup", "verify", cut.to_str().unwrap()], 1);
    assert!(r.stderr.contains("cut.tar.zst"), "{}", r.describe());
    let to = c.path("restored");
    c.fails(
        &[
            "backup",
            "restore",
            cut.to_str().unwrap(),
            "--to",
            to.to_str().unwrap(),
        ],
        1,
    );
    assert!(!to.exists());
    // No temporary folder is left beside the target either.
    let left: Vec<_> = std::fs::read_dir(c.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".geodir-restore"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn promise_8_an_entry_named_dot_dot_is_refused_before_anything_is_written() {
    let c = backed_up();
    let evil = c.path("evil.tar.zst");
    let mut b =
        tar::Builder::new(zstd::Encoder::new(std::fs::File::create(&evil).unwrap(), 3).unwrap());
    let mut h = tar::Header::new_gnu();
    // Set the raw name: tar's set_path itself refuses `..`.
    let name = b"../../x";
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_size(5);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    b.append(&h, &b"owned"[..]).unwrap();
    b.into_inner().unwrap().finish().unwrap();
    let r = c.fails(&["backup", "verify", evil.to_str().unwrap()], 1);
    assert!(
        r.stderr.contains("../../x") && r.stderr.contains("refused"),
        "{}",
        r.describe()
    );
    let to = c.dir.path().join("a").join("restored");
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    c.fails(
        &[
            "backup",
            "restore",
            evil.to_str().unwrap(),
            "--to",
            to.to_str().unwrap(),
        ],
        1,
    );
    assert!(!to.exists());
    assert!(!c.dir.path().join("x").exists() && !c.dir.path().parent().unwrap().join("x").exists());
    // A symlink is refused the same way.
    let link = c.path("link.tar.zst");
    let mut b =
        tar::Builder::new(zstd::Encoder::new(std::fs::File::create(&link).unwrap(), 3).unwrap());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_path("p0/CURRENT").unwrap();
    h.set_link_name("/etc/passwd").unwrap();
    h.set_size(0);
    h.set_cksum();
    b.append(&h, std::io::empty()).unwrap();
    b.into_inner().unwrap().finish().unwrap();
    let r = c.fails(&["backup", "verify", link.to_str().unwrap()], 1);
    assert!(r.stderr.contains("Symlink"), "{}", r.describe());
}

#[test]
fn promise_8_restore_in_place_needs_yes_then_replaces_the_replicas() {
    let c = Cluster::new();
    c.create_user("ada@contoso.com");
    ok_at(&c, DAY1, &["backup", "create", "--dest", &dest(&c)]);
    let id = c.ok(&["status"])["clusterId"].clone();
    // bob is written in a session: its token is past what the backup holds.
    let session = c.path("session.json").display().to_string();
    c.create_user_with("bob@contoso.com", &["--session", &session]);
    let term_before = c.status_row(0, "westus")["partitionTerm"].as_u64().unwrap();
    let (mut cmd, _) = c.command(&[
        "backup",
        "restore",
        "2026-12-01",
        "--in-place",
        "--dest",
        &dest(&c),
    ]);
    let out = cmd.stdin(std::process::Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    c.user_get("bob@contoso.com", &[]);
    c.ok(&[
        "backup",
        "restore",
        "2026-12-01",
        "--in-place",
        "--yes",
        "--dest",
        &dest(&c),
    ]);
    c.fails(
        &["user", "get", "--tenant", "contoso", "bob@contoso.com"],
        3,
    );
    c.user_get("ada@contoso.com", &[]);
    assert_eq!(c.ok(&["status"])["clusterId"], id);
    // Terms only go up, so the session's token of the undone history is known as such: its
    // reads go on (with a warning) instead of waiting for an lsn that is gone.
    assert!(c.status_row(0, "westus")["partitionTerm"].as_u64().unwrap() > term_before);
    let r = c.user_get_run("ada@contoso.com", &["--session", &session]);
    assert_eq!(r.code, 0, "{}", r.describe());
    assert!(r.stderr.contains("were undone"), "{}", r.describe());
    let r = c.user_get_run("ada@contoso.com", &["--session", &session]);
    assert_eq!(r.code, 0, "{}", r.describe());
    assert!(
        !r.stderr.contains("were undone"),
        "said once: {}",
        r.describe()
    );
    c.create_user("carol@contoso.com");
}
