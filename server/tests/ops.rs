//! ops/: the Prometheus alerting rules pass promtool (Debian's `prometheus` package, which
//! scripts/setup installs) and their unit tests, and the Grafana dashboard asks only for
//! metrics a server serves.
#![allow(clippy::unwrap_used)]

use std::process::Command;

const OPS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../ops");

/// What `/metrics` of a server names (server::metrics) plus Prometheus's own `up` and the
/// backup age of `dirctl metrics`.
const SERVED: &[&str] = &[
    "geodir_requests_total",
    "geodir_request_seconds_bucket",
    "geodir_partition_term",
    "geodir_partition_primary_here",
    "geodir_replication_lag_entries",
    "geodir_replication_lag_seconds",
    "geodir_backup_age_seconds",
    "up",
];

fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(OPS)
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool {args:?}: {e} (scripts/setup installs Debian's prometheus package)")
        });
    assert!(
        out.status.success(),
        "promtool {} failed:\n{}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_alerting_rules_are_valid_and_pass_their_unit_tests() {
    promtool(&["check", "rules", "alerts.yml"]);
    promtool(&["test", "rules", "alerts_test.yml"]);
}

/// The metric names in a PromQL expression (identifiers followed by `{`, `[` or `)`).
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_alphabetic() || b[i] == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let word = &expr[start..i];
            let next = expr[i..].trim_start().chars().next();
            if word.starts_with("geodir_") || (word == "up" && next == Some('{')) {
                out.push(word.to_string());
            }
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn the_dashboard_and_the_rules_ask_only_for_served_metrics() {
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{OPS}/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut exprs: Vec<String> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    let rules = std::fs::read_to_string(format!("{OPS}/alerts.yml")).unwrap();
    exprs.extend(
        rules
            .lines()
            .filter_map(|l| l.trim().strip_prefix("expr:"))
            .map(str::to_string),
    );
    assert!(exprs.len() >= 10, "{exprs:?}");
    for e in &exprs {
        let names = metric_names(e);
        assert!(!names.is_empty(), "no metric in {e}");
        for n in names {
            assert!(
                SERVED.contains(&n.as_str()),
                "{e} asks for {n}, which nothing serves"
            );
        }
    }
}
