//! dirctl through the real binary: malformed input, conflicts and missing objects (exit 4, 3).
#![allow(clippy::unwrap_used)]

mod util;

use util::{dirctl, Cluster};

/// A change made to a JSON file by hand.
type Edit = fn(&mut serde_json::Value);

#[test]
fn duplicate_upn_is_a_conflict_with_exit_4() {
    let c = Cluster::new();
    c.create_user("dup@contoso.com");
    let r = c.create_user_fails("DUP@contoso.com", 4);
    assert!(r.stderr.contains("already taken"), "{}", r.describe());
    let list = c.ok(&["user", "list", "--tenant", "contoso", "--region", "eastus"]);
    assert_eq!(list["objects"].as_array().unwrap().len(), 1);
}

/// Arguments that are not UTF-8 are malformed input wherever they stand: exit 2 with clap's
/// message, never a panic (exit 101).
#[test]
fn a_non_utf8_argument_is_a_usage_error_not_a_panic() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let c = Cluster::new();
    let bad = OsStr::from_bytes(b"caf\xc3");
    let s = OsStr::new;
    for args in [
        vec![s("user"), s("get"), s("--tenant"), s("contoso"), bad],
        vec![s("user"), s("get"), s("--tenant"), bad, s("x")],
        vec![
            s("--actor"),
            bad,
            s("user"),
            s("list"),
            s("--tenant"),
            s("contoso"),
        ],
        vec![s("audit"), s("list"), s("--by"), bad],
        vec![
            s("user"),
            s("list"),
            s("--tenant"),
            s("contoso"),
            s("--output"),
            s("json"),
            s("--region"),
            bad,
        ],
        vec![bad],
    ] {
        let r = c.run_os(&args);
        assert_eq!(r.code, 2, "{}", r.describe());
        assert!(!r.stderr.contains("panicked"), "{}", r.describe());
    }
}

/// A hand-edited cluster.json that contradicts itself is refused at load, as a malformed one
/// is (exit 1, naming the file and the field), before any command acts on it.
#[test]
fn an_inconsistent_cluster_json_is_refused_at_load_naming_the_field() {
    let c = Cluster::new();
    let path = c.root.join("cluster.json");
    let good: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let edits: [(&str, Edit); 2] = [
        ("partitions[2].primary", |t| {
            t["partitions"][2]["primary"] = "nowhere".into()
        }),
        ("partitions[0].term", |t| {
            t["partitions"][0]["term"] = 5.into()
        }),
    ];
    for (field, edit) in edits {
        let mut t = good.clone();
        edit(&mut t);
        std::fs::write(&path, serde_json::to_vec_pretty(&t).unwrap()).unwrap();
        for args in [&["user", "list", "--tenant", "contoso"][..], &["status"]] {
            let r = c.fails(args, 1);
            assert!(
                r.stderr.contains(field) && r.stderr.contains("cluster.json"),
                "{}",
                r.describe()
            );
        }
    }
}

#[test]
fn not_found_gives_exit_3() {
    let c = Cluster::new();
    c.user_get_fails("7d1c7a1e-0000-4000-8000-000000000000", &[], 3);
    c.fails(
        &["user", "get", "--tenant", "contoso", "nobody@contoso.com"],
        3,
    );
    c.fails(
        &[
            "user",
            "get",
            "--tenant",
            "nosuchtenant",
            "nobody@contoso.com",
        ],
        3,
    );
    c.fails(
        &[
            "group",
            "members",
            "--tenant",
            "contoso",
            "7d1c7a1e-0000-4000-8000-000000000000",
        ],
        3,
    );
    let r = dirctl()
        .args(["status", "--cluster", c.path("nowhere").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(3));
}

#[test]
fn malformed_input_is_refused_clearly_and_nothing_is_written() {
    let c = Cluster::new();
    let before = c.lsn(0, "westus");
    let r = c.fails(
        &[
            "user",
            "create",
            "--tenant",
            "contoso",
            "--json",
            "{not json",
        ],
        2,
    );
    assert!(r.stderr.contains("not valid JSON"), "{}", r.describe());
    let r = c.fails(
        &[
            "user",
            "create",
            "--tenant",
            "contoso",
            "--upn",
            "a@contoso.com",
            "--display-name",
            "a",
            "--set",
            "shoeSize=42",
        ],
        2,
    );
    assert!(r.stderr.contains("shoeSize"), "{}", r.describe());
    c.create_user_fails("not-an-upn", 2);
    // An import with a bad line in the middle writes none of the good lines before it.
    // Imports with a bad line in the middle: none of the good lines before it are written.
    let file = c.path("bad.jsonl");
    let import = |lines: &[&str], code: i32| {
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        c.fails(
            &[
                "import",
                "--tenant",
                "contoso",
                file.to_str().unwrap(),
                "--batch-size",
                "1",
            ],
            code,
        )
    };
    let ok1 = r##"{"@odata.type":"#microsoft.graph.user","userPrincipalName":"ok1@contoso.com","displayName":"ok1"}"##;
    let ok2 = r##"{"@odata.type":"#microsoft.graph.user","userPrincipalName":"ok2@contoso.com","displayName":"ok2"}"##;
    let r = import(
        &[
            ok1,
            ok2,
            r##"{"@odata.type":"#microsoft.graph.user","userPrincipalName":"broken""##,
        ],
        2,
    );
    assert!(r.stderr.contains("line 3"), "{}", r.describe());
    let r = import(
        &[
            ok1,
            r##"{"@odata.type":"#microsoft.graph.printer","displayName":"p"}"##,
        ],
        2,
    );
    assert!(r.stderr.contains("unknown object type"), "{}", r.describe());
    // A group naming a member made by a later line says members come first.
    let r = import(
        &[
            r##"{"@odata.type":"#microsoft.graph.group","displayName":"g","members":["01a2b3c4-0000-7000-8000-000000000001"]}"##,
        ],
        3,
    );
    assert!(r.stderr.contains("earlier line"), "{}", r.describe());
    // Bytes that are not UTF-8 are malformed input too.
    std::fs::write(&file, b"\xff\xfe{}\n").unwrap();
    let r = c.fails(
        &["import", "--tenant", "contoso", file.to_str().unwrap()],
        2,
    );
    assert!(
        r.stderr.contains("line 1: not UTF-8") && r.stderr.contains("nothing was imported"),
        "{}",
        r.describe()
    );
    // A conflict late in the file is found before anything is written; a conflict with
    // an earlier line of the file names that line (its object was never written).
    let r = import(
        &[
            ok1,
            r##"{"@odata.type":"#microsoft.graph.user","userPrincipalName":"OK1@contoso.com","displayName":"ok1 again"}"##,
        ],
        4,
    );
    assert!(
        r.stderr.contains("line 2") && r.stderr.contains("taken by line 1 of this file"),
        "{}",
        r.describe()
    );
    // Only the audit records of the two failed imports (not found, conflict) were written:
    // malformed input is refused before anything is attempted.
    assert_eq!(c.lsn(0, "westus"), before.map(|l| l + 2));
    let failed: Vec<_> = c.ok(&["audit", "list", "--op", "import"])["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed[1].contains("line 1 of this file"), "{failed:?}");
    // A byte-order mark before the first line is not malformed JSON.
    std::fs::write(&file, format!("\u{feff}{ok2}\n")).unwrap();
    let r = c.run(&["import", "--tenant", "contoso", file.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.describe());
    c.user_get("ok2@contoso.com", &[]);
    c.user_get_fails("ok1@contoso.com", &["--region", "eastus"], 3);
}

/// `--json`'s fields and the flags are one set of fields: a field given both ways with
/// different values (a wrongly typed userPrincipalName in --json beside --upn) is refused,
/// naming it, and nothing is written; the same value both ways is fine.
#[test]
fn a_field_given_by_json_and_by_a_flag_differently_is_a_usage_error() {
    let c = Cluster::new();
    let before = c.lsn(0, "westus");
    let create = |json: &'static str, more: &[&'static str]| {
        let mut a = vec!["user", "create", "--tenant", "contoso", "--json", json];
        a.extend(more);
        a
    };
    for (json, more, field) in [
        (
            r#"{"userPrincipalName": 5}"#,
            &["--upn", "a@contoso.com", "--display-name", "a"][..],
            "userPrincipalName",
        ),
        (
            r#"{"displayName": "x"}"#,
            &["--upn", "b@contoso.com", "--display-name", "y"][..],
            "displayName",
        ),
        (
            r#"{"userPrincipalName": "c@contoso.com", "displayName": "c"}"#,
            &["--set", "displayName=d"][..],
            "displayName",
        ),
    ] {
        let r = c.fails(&create(json, more), 2);
        assert!(r.stderr.contains(field), "{}", r.describe());
    }
    assert_eq!(c.lsn(0, "westus"), before);
    let v = c.ok(&create(
        r#"{"userPrincipalName": "same@contoso.com"}"#,
        &["--upn", "same@contoso.com", "--display-name", "s"],
    ));
    assert_eq!(v["object"]["userPrincipalName"], "same@contoso.com");
}
