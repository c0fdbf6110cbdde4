//! `/metrics` through the real app: a small campaign through the built-in
//! simulator, and the per-gateway series (sends, failures by kind and
//! reason, receipts by outcome, latency histogram, rate-limit waits) count
//! exactly what happened.
//!
//! The counters are process-wide, so these tests live in the `exclusive`
//! binary and hold its lock ([`crate::SERIAL`]): no other test counts
//! anything while one compares the counts after its campaign with those
//! before it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::common::*;
use pedulicovid::app::Parts;
use pedulicovid::status::Status;

use crate::SERIAL;

/// Every sample of the exposition, keyed by `name{labels}` as written.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("name value");
            (k.to_string(), v.parse().expect("a number"))
        })
        .collect()
}

async fn scrape(base: &str) -> HashMap<String, f64> {
    let r = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(r.status(), 200);
    samples(&r.text().await.unwrap())
}

/// `after − before` for one series (absent counts as 0).
fn delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>, key: &str) -> f64 {
    after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
}

async fn gateway_series_count_the_campaign(backend: &str) {
    let _serial = SERIAL.lock().await;
    let db = TestDb::new(backend).await;
    // …10 undelivered, …55 answered 503 until its attempts run out, the
    // rest delivered.
    let mut s = ruled_settings(&db, "0=undelivered");
    s.simulator.faults.always_fail = vec!["55".into()];
    s.worker.max_attempts = 3;
    let app = start(s, Parts::ALL).await;
    let base = base_url(&app);
    let before = scrape(&base).await;

    let mut csv = String::from(HEADER);
    for (i, tail) in ["11", "21", "31", "10", "55"].iter().enumerate() {
        csv.push_str(&row(i as u32, "31", tail));
    }
    assert_eq!(import_text(&app.store, &csv).await.accepted, 5);
    let (c, n) = create_campaign(&app, campaign_request("metrics")).await;
    assert_eq!(n, 5);
    let report = wait_done(&app.store, c.id, Duration::from_secs(30)).await;
    assert_eq!(report.status(Status::Delivered), 3, "{report:?}");
    assert_eq!(report.status(Status::Undelivered), 1, "{report:?}");
    assert_eq!(report.status(Status::Failed), 1, "{report:?}");

    // The final receipts are applied before the campaign is done; poll
    // anyway in case a callback's answer races the scrape.
    let delivered = "pedulicovid_receipts_total{gateway=\"sim\",outcome=\"delivered\"}";
    let started = Instant::now();
    let after = loop {
        let after = scrape(&base).await;
        if delta(&before, &after, delivered) >= 3.0 || started.elapsed() > Duration::from_secs(10) {
            break after;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let d = |k: &str| delta(&before, &after, k);
    let sim = |family: &str, labels: &str| format!("{family}{{gateway=\"sim\"{labels}}}");

    assert_eq!(
        d(&sim("pedulicovid_sends_total", "")),
        4.0,
        "accepted sends"
    );
    assert_eq!(d(delivered), 3.0);
    assert_eq!(
        d(&sim(
            "pedulicovid_receipts_total",
            ",outcome=\"undelivered\""
        )),
        1.0
    );
    assert_eq!(
        d(&sim(
            "pedulicovid_receipts_total",
            ",outcome=\"unknown_message\""
        )),
        0.0
    );
    // …55: 503 on attempts 1 and 2 (retried), 503 on attempt 3 (given up).
    let failure = |kind: &str, reason: &str| {
        d(&sim(
            "pedulicovid_failures_total",
            &format!(",kind=\"{kind}\",reason=\"{reason}\""),
        ))
    };
    assert_eq!(failure("transient", "http_5xx"), 2.0);
    assert_eq!(failure("permanent", "retries_exhausted"), 1.0);
    assert_eq!(failure("permanent", "rejected"), 0.0);
    assert_eq!(failure("transient", "timeout"), 0.0);
    // Every gateway request is timed: 4 accepted + 3 refused.
    let count = sim("pedulicovid_send_latency_seconds_count", "");
    assert_eq!(d(&count), 7.0);
    assert_eq!(
        d(&sim(
            "pedulicovid_send_latency_seconds_bucket",
            ",le=\"+Inf\""
        )),
        7.0
    );
    assert!(d(&sim("pedulicovid_send_latency_seconds_sum", "")) > 0.0);
    assert!(after.contains_key(&sim("pedulicovid_rate_limit_wait_seconds_total", "")));
    assert!(after.contains_key(&sim("pedulicovid_circuit_opens_total", "")));
    // Failures before any gateway is chosen have an empty gateway label.
    assert!(after.contains_key(
        "pedulicovid_failures_total{gateway=\"\",kind=\"permanent\",reason=\"render_failed\"}"
    ));
    // Bounded labels: this campaign adds series only for its configured
    // gateway (and the empty one). The counters are process-wide, so series
    // an earlier test of this binary left (its own gateways) are not ours.
    for k in after
        .keys()
        .filter(|k| k.contains("gateway=\"") && !before.contains_key(*k))
    {
        assert!(
            k.contains("gateway=\"sim\"") || k.contains("gateway=\"\""),
            "unexpected gateway label: {k}"
        );
    }
    app.stop(Duration::from_secs(5)).await;
}
both_backends!(gateway_series_count_the_campaign);
