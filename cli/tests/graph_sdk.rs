//! Microsoft's own Graph SDK for Python (`msgraph-sdk`, in the virtual environment
//! scripts/setup makes) against real servers: users, groups, members, paging, deleted items
//! and restore (cli/tests/graph_sdk/sdk_test.py), its base URL one geodird's and its
//! credential a token from `dirctl token issue`.
mod util;

use std::path::Path;
use std::process::Command;

use util::graph::token;
use util::{Cluster, Mode};

#[test]
fn the_official_graph_sdk_creates_pages_filters_groups_deletes_and_restores() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = repo.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: scripts/setup makes the virtual environment with msgraph-sdk",
        python.display()
    );
    let script = repo.join("cli/tests/graph_sdk/sdk_test.py");
    let c = Cluster::in_mode(Mode::Server);
    let writer = token(&c, "contoso", "writer", &[]);
    let reader = token(&c, "contoso", "reader", &[]);
    // The sync standby's server: a write sent there goes on to the primary.
    let http = c.servers.as_ref().unwrap().lock().unwrap().servers["eastus"]
        .http
        .clone();
    let url = format!("{http}/v1.0");
    let out = Command::new(&python)
        .arg(&script)
        .env("GEODIR_GRAPH_URL", &url)
        .env("GEODIR_GRAPH_TOKEN", &writer)
        .env("GEODIR_GRAPH_READER_TOKEN", &reader)
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env("NO_PROXY", "*")
        .output()
        .unwrap();
    let shown = format!(
        "ran: GEODIR_GRAPH_URL={url} {} {}\nexit: {:?}\nstdout:\n{}\nstderr:\n{}\n{}",
        python.display(),
        script.display(),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        c.server_logs()
    );
    assert!(out.status.success(), "{shown}");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .trim_end()
            .ends_with("ok"),
        "{shown}"
    );
}
