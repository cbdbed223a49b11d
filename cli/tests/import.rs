//! dirctl through the real binary: an import killed or failing midway keeps what it committed.
#![allow(clippy::unwrap_used)]

mod util;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use serde_json::Value;
use util::Cluster;

#[test]
fn import_killed_with_sigkill_keeps_every_object_it_reported_committed() {
    let c = Cluster::new();
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/contoso.jsonl");
    let (mut cmd, shown) = c.command(&[
        "import",
        "--tenant",
        "contoso",
        fixtures,
        "--batch-size",
        "100",
        "--output",
        "json",
    ]);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reported = 0u64;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(Ok(line)) = lines.next() {
        let v: Value = serde_json::from_str(&line).unwrap();
        if let Some(n) = v["committedThroughLine"].as_u64() {
            reported = n;
        }
        if reported >= 1500 {
            child.kill().unwrap(); // SIGKILL
            break;
        }
    }
    child.wait().unwrap();
    assert!(
        reported >= 1500,
        "{shown}: import ended before it was killed"
    );
    // Every object of the reported lines is readable.
    let text = std::fs::read_to_string(fixtures).unwrap();
    let ids: Vec<String> = text
        .lines()
        .take(reported as usize)
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let users = c.ok(&["user", "list", "--tenant", "contoso", "--region", "eastus"]);
    let have: std::collections::HashSet<&str> = users["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    for id in &ids {
        assert!(
            have.contains(id.as_str()),
            "object {id} was reported committed but is missing"
        );
    }
    // After sync, the replicas agree.
    c.ok(&["sync"]);
    let rows = c.status(0);
    let lsns: Vec<_> = rows.iter().map(|r| r["lastLsn"].as_u64()).collect();
    assert!(
        lsns.iter().all(|l| *l == lsns[0] && l.is_some()),
        "{rows:?}"
    );
    let a = c.ok(&[
        "user",
        "list",
        "--tenant",
        "contoso",
        "--region",
        "westeurope",
    ]);
    let b = c.ok(&["user", "list", "--tenant", "contoso", "--region", "eastus"]);
    assert_eq!(a["objects"], b["objects"]);
}

#[test]
fn an_import_whose_standby_fails_midway_keeps_the_lines_before_and_says_where_it_stopped() {
    let c = Cluster::new();
    let file = c.path("ten.jsonl");
    let upns: Vec<String> = (1..=10).map(|i| format!("bulk{i}@contoso.com")).collect();
    let text: String = upns
        .iter()
        .map(|u| {
            format!(
                "{{\"@odata.type\": \"#microsoft.graph.user\", \"userPrincipalName\": \"{u}\", \"displayName\": \"{u}\"}}\n"
            )
        })
        .collect();
    std::fs::write(&file, text).unwrap();
    // Five batches of two lines: the standby fails from the third batch's entry on.
    let next = c.lsn(0, "westus").unwrap() + 1;
    let (mut cmd, shown) = c.command(&[
        "import",
        "--tenant",
        "contoso",
        file.to_str().unwrap(),
        "--batch-size",
        "2",
        "--output",
        "json",
    ]);
    let out = cmd
        .env(
            "DIRCTL_FAILPOINT",
            format!("standby-fails-from-lsn:{}", next + 2),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{shown}\n{stdout}\n{stderr}");
    assert!(
        stderr.contains("from line 5; lines before it are committed")
            && stderr.contains("nothing was applied"),
        "{stderr}"
    );
    let reported: Vec<u64> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["committedThroughLine"].as_u64())
        .collect();
    assert_eq!(reported, [2, 4]);
    c.ok(&["sync"]);
    for dc in ["westus", "eastus", "westeurope"] {
        let users = c.ok(&["user", "list", "--tenant", "contoso", "--region", dc]);
        let have: Vec<&str> = users["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["userPrincipalName"].as_str().unwrap())
            .collect();
        for (i, upn) in upns.iter().enumerate() {
            assert_eq!(have.contains(&upn.as_str()), i < 4, "{upn} read at {dc}");
        }
    }
    let audit = c.ok(&["audit", "list", "--op", "import"]);
    let outcomes: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.len(), 1, "{audit}");
    assert!(outcomes[0].contains("standby"), "{audit}");
}
