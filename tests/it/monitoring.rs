//! The shipped monitoring (`deploy/`): the alert rules pass `promtool check
//! rules` and their unit tests (`promtool test rules`); every expression of
//! the Grafana dashboard is valid PromQL; and every metric the rules and
//! the dashboard name is one a real campaign's `/metrics` has.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pedulicovid::app::Parts;

use crate::common::*;

fn deploy(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool is missing: `apt-get install prometheus` (scripts/test.sh does)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// The dashboard's queries: (panel title, expression).
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(deploy("grafana/pedulicovid.json")).unwrap();
    let d: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut out = vec![];
    for p in d["panels"].as_array().expect("panels") {
        let title = p["title"].as_str().unwrap().to_string();
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            out.push((title.clone(), t["expr"].as_str().unwrap().to_string()));
        }
    }
    out
}

/// Every `pedulicovid_…` and `process_…` metric an expression names.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &expr[i..];
        if (rest.starts_with("pedulicovid_") || rest.starts_with("process_"))
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'))
        {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            names.insert(rest[..end].to_string());
            i += end;
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let dir = deploy("prometheus");
    let checked = promtool(&["check", "rules", "alerts.yml"], &dir);
    assert!(checked.contains("SUCCESS: 8 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "alerts_test.yml"], &dir);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn every_dashboard_query_is_valid_promql() {
    // promtool parses rule expressions: each query becomes a recording rule.
    let dir = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in dashboard_queries().iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {}\n",
            serde_json::to_string(expr).unwrap()
        ));
    }
    std::fs::write(dir.path().join("dashboard.yml"), &rules).unwrap();
    promtool(&["check", "rules", "dashboard.yml"], dir.path());
}

/// The names the rules and the dashboard use are in the exposition of a
/// real campaign (the serve side, where a worker's counters also are in
/// `run`): a renamed metric cannot leave a panel blank unnoticed.
async fn named_metrics_exist(backend: &str) {
    let db = TestDb::new(backend).await;
    // One number undelivered (an open flag), a rate limit (its gauge).
    let mut s = ruled_settings(&db, "1=undelivered");
    s.gateways[0].rate_per_sec = 1000;
    // A name of its own: the per-gateway gauges are this test binary's,
    // and a test running beside this one with an unlimited `sim` would set
    // `sim`'s configured rate back to none before /metrics is read.
    let gateway = format!("rated-{backend}");
    s.gateways[0].name = gateway.clone();
    // The lag is counted from the send's recording: receipts a second
    // after the answer come long after it (an immediate one may overtake
    // the recording, and is then, rightly, not counted).
    s.simulator.receipt_delay_ms = 1_000;
    s.simulator.receipt_jitter_ms = 0;
    let app = start(s, Parts::ALL).await;
    import_text(
        &app.store,
        &format!(
            "{HEADER}{}{}",
            row(1, "31", "00000011"),
            row(2, "31", "00000021")
        ),
    )
    .await;
    let c = run_campaign(&app, "Pantau", "00:00-24:00").await;
    wait_done(&app.store, c, Duration::from_secs(30)).await;
    let body = reqwest::get(format!("{}/metrics", base_url(&app)))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    app.stop(Duration::from_secs(5)).await;
    // Receipts came back: the lag histogram counted both.
    let lag_count = body
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!(
                "pedulicovid_receipt_lag_seconds_count{{gateway=\"{gateway}\"}} "
            ))
        })
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert_eq!(lag_count, 2.0, "receipt lag not counted:\n{body}");
    let families: BTreeSet<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let exists = |name: &str| {
        families.contains(name)
            || ["_bucket", "_sum", "_count"]
                .iter()
                .any(|s| name.strip_suffix(s).is_some_and(|f| families.contains(f)))
    };
    let alerts = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();
    let mut used: Vec<(String, String)> = dashboard_queries();
    used.push(("alerts.yml".into(), alerts));
    let mut missing = vec![];
    for (place, expr) in &used {
        for name in metric_names(expr) {
            if !exists(&name) {
                missing.push(format!("{place}: {name}"));
            }
        }
    }
    assert!(missing.is_empty(), "not in /metrics: {missing:#?}\n{body}");
}

both_backends!(named_metrics_exist);
