//! Checked-in data of format version 1 (fixtures/format-v1, made by scripts/gen-format-fixtures):
//! a format change that breaks old clusters or old backup archives fails here.
#![allow(clippy::unwrap_used)]

mod util;

use std::path::Path;

use util::dirctl;

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn run(root: &Path, args: &[&str]) -> serde_json::Value {
    let out = dirctl()
        .arg("--cluster")
        .arg(root)
        .args(args)
        .args(["--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dirctl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_format_1_cluster_and_backup_still_open_read_and_restore() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(
        Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/format-v1"
        )),
        dir.path(),
    );
    let root = dir.path().join("cluster");
    for region in ["westus", "eastus"] {
        let v = run(
            &root,
            &[
                "user",
                "get",
                "--tenant",
                "contoso",
                "ada@contoso.com",
                "--region",
                region,
            ],
        );
        assert_eq!(v["displayName"], "Ada Lovelace");
    }
    let m = run(
        &root,
        &[
            "group",
            "members",
            "--tenant",
            "contoso",
            "33333333-3333-4333-8333-333333333333",
        ],
    );
    assert_eq!(
        m["objects"][0]["id"],
        "11111111-1111-4111-8111-111111111111"
    );
    let s = run(&root, &["status"]);
    assert!(
        s["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["health"] == "ok" && r["lagEntries"] == 0),
        "{s}"
    );
    run(
        &root,
        &[
            "user",
            "create",
            "--tenant",
            "contoso",
            "--upn",
            "new@contoso.com",
            "--display-name",
            "New",
        ],
    );
    let backups = dir.path().join("backups");
    let b = backups.to_str().unwrap();
    run(&root, &["backup", "verify", "2026-11-29", "--dest", b]);
    let restored = dir.path().join("restored");
    run(
        &root,
        &[
            "backup",
            "restore",
            "2026-11-29",
            "--dest",
            b,
            "--to",
            restored.to_str().unwrap(),
        ],
    );
    let v = run(
        &restored,
        &["user", "get", "--tenant", "contoso", "ada@contoso.com"],
    );
    assert_eq!(v["id"], "11111111-1111-4111-8111-111111111111");
}

#[test]
fn an_error_under_output_json_is_a_json_document_on_stderr_with_its_exit_code() {
    let c = util::Cluster::new();
    let r = c.fails(
        &[
            "user",
            "get",
            "--tenant",
            "contoso",
            "nobody@contoso.com",
            "--output",
            "json",
        ],
        3,
    );
    let v: serde_json::Value = serde_json::from_str(r.stderr.trim()).expect("stderr is JSON");
    assert_eq!(v["error"]["exitCode"], 3);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no user with userPrincipalName nobody@contoso.com"));
    assert!(r.stdout.is_empty());
    // A usage error too, and a name's text-direction character is escaped in a text error.
    let out = dirctl()
        .args(["--output", "json", "user", "get"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value =
        serde_json::from_slice(String::from_utf8_lossy(&out.stderr).trim().as_bytes())
            .expect("stderr is JSON");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("<ID>"),
        "{v}"
    );
    let r = c.fails(
        &[
            "user",
            "get",
            "--tenant",
            "contoso",
            "no\u{202e}pe@contoso.com",
        ],
        3,
    );
    assert!(
        r.stderr.contains("no\\u{202e}pe@contoso.com"),
        "{}",
        r.describe()
    );
    assert!(!r.stderr.contains('\u{202e}'), "{}", r.describe());
}
