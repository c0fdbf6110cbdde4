//! Retention on both databases: after a real campaign (simulator receipts,
//! flags, a resend), records aged past their period are purged in bounded
//! batches (receipt payloads emptied, attempts and audit entries deleted,
//! message bodies and numbers of the finished campaign removed), younger
//! ones are left alone, and every count a report is made of is the same
//! after the purge as before; `retention status` and `retention run` on the
//! command line.

use std::path::Path;
use std::time::Duration;

use crate::common::*;
use pedulicovid::app::Parts;
use pedulicovid::domain::notice::FreeText;
use pedulicovid::store::{now_ms, RetentionPolicy, Store};
use serde_json::Value;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// Everything a report shows about campaign `c`, as text.
async fn figures(store: &Store, c: i64) -> String {
    let r = store.campaign_report(c).await.unwrap();
    let p = store.province_delivery(c).await.unwrap();
    let e = store.receipt_effects().await.unwrap();
    let f = store.flags(Some(c), true).await.unwrap();
    format!(
        "{:?} {} {:?} {:?} {:?} {:?}",
        r.by_status,
        r.sent,
        r.flagged_by_reason,
        p,
        e,
        f.iter()
            .map(|f| (f.id, &f.reason, &f.resolution))
            .collect::<Vec<_>>()
    )
}

async fn count(url: &str, sql: &str) -> i64 {
    sql_rows::<(i64,)>(url, sql, &[]).await[0].0
}

/// Moves every record's time `days` into the past.
async fn age(url: &str, days: i64) {
    let by = days * DAY_MS;
    for sql in [
        "UPDATE receipts SET received_at = received_at - $1 RETURNING id",
        "UPDATE attempts SET at = at - $1 RETURNING id",
        "UPDATE audit_log SET at = at - $1 RETURNING id",
        "UPDATE resends SET created_at = created_at - $1 RETURNING id",
        "UPDATE campaigns SET updated_at = updated_at - $1 RETURNING id",
    ] {
        let _: Vec<(i64,)> = sql_rows(url, sql, &[by]).await;
    }
}

fn policy(batch: i64) -> RetentionPolicy {
    RetentionPolicy {
        batch,
        ..RetentionPolicy::from_days(30, 90, 180, 730, 7 * 24 * 3600, 1)
    }
}

async fn purges_keep_reports_right(backend: &str) {
    let db = TestDb::new(backend).await;
    let app = start(ruled_settings(&db, "1=undelivered,2=expired"), Parts::ALL).await;
    let c = campaign_of(&app, 6, "retention").await;
    wait_done(&app.store, c, Duration::from_secs(30)).await;
    // A resend to the undelivered worker: an extra notice with a number.
    let w1 = worker_id(&app.store, &nik_of(1, "31")).await;
    app.store
        .resend(
            w1,
            &FreeText::staff("Sari").unwrap(),
            &FreeText::reason("called").unwrap(),
        )
        .await
        .unwrap();
    wait_done(&app.store, c, Duration::from_secs(30)).await;
    wait_status(&app.store, c, "completed", Duration::from_secs(10)).await;
    app.stop(Duration::from_secs(5)).await;
    let store = db.store().await;
    let url = db.url.as_str();
    let before = figures(&store, c).await;
    let (receipts, attempts, audit) = (
        count(url, "SELECT COUNT(*) FROM receipts").await,
        count(url, "SELECT COUNT(*) FROM attempts").await,
        count(url, "SELECT COUNT(*) FROM audit_log").await,
    );
    assert!(receipts >= 7 && attempts >= 7 && audit >= 2);

    // Nothing is due while everything is young.
    let p = policy(2);
    let step = store.retention_step(&p).await.unwrap();
    assert_eq!(step.total(), 0, "{step:?}");

    // 100 days on: payloads (30 d) and message data (90 d) are due,
    // attempts (180 d) and audit (730 d) are not.
    age(url, 100).await;
    let status = store.retention_status(&p).await.unwrap();
    let due = |k: &str| status.iter().find(|s| s.kind == k).unwrap().due;
    assert_eq!(due("receipt_payloads"), receipts);
    assert_eq!(due("message_data"), 7 + 1, "7 messages and 1 resend number");
    assert_eq!((due("attempts"), due("audit")), (0, 0));

    // Bounded: one step purges at most `batch` rows of each kind.
    let step = store.retention_step(&p).await.unwrap();
    assert_eq!(step.receipt_payloads, 2);
    assert!(step.message_data <= 2 + 2, "{step:?}");
    assert!(step.more);
    while store.retention_step(&p).await.unwrap().more {}
    assert_eq!(
        count(url, "SELECT COUNT(*) FROM receipts WHERE payload <> ''").await,
        0
    );
    assert_eq!(
        count(
            url,
            "SELECT COUNT(*) FROM messages WHERE phone <> '' OR body IS NOT NULL"
        )
        .await,
        0
    );
    assert_eq!(
        count(url, "SELECT COUNT(*) FROM resends WHERE phone <> ''").await,
        0
    );
    assert_eq!(count(url, "SELECT COUNT(*) FROM attempts").await, attempts);
    assert_eq!(count(url, "SELECT COUNT(*) FROM audit_log").await, audit);
    assert_eq!(count(url, "SELECT COUNT(*) FROM receipts").await, receipts);
    let status = store.retention_status(&p).await.unwrap();
    assert!(status.iter().all(|s| s.due == 0), "{status:?}");

    // Three years on, attempts and audit entries go too.
    age(url, 1000).await;
    while store.retention_step(&p).await.unwrap().more {}
    assert_eq!(count(url, "SELECT COUNT(*) FROM attempts").await, 0);
    assert_eq!(count(url, "SELECT COUNT(*) FROM audit_log").await, 0);

    // The reports are made of what stays.
    assert_eq!(figures(&store, c).await, before);
    // And new records are left alone by a walk that has passed the old.
    store.audit("ops", "test.new", "x", "young").await.unwrap();
    while store.retention_step(&p).await.unwrap().more {}
    assert_eq!(count(url, "SELECT COUNT(*) FROM audit_log").await, 1);
    store.close().await;
}
both_backends!(purges_keep_reports_right);

/// A walk stops at the first young row: old rows behind it wait for their
/// turn instead of being skipped or purged early.
async fn a_walk_never_passes_a_young_row(backend: &str) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let url = db.url.as_str();
    for i in 0..6 {
        store
            .audit("ops", "test", &format!("s{i}"), "")
            .await
            .unwrap();
    }
    let old = now_ms() - 1000 * DAY_MS;
    // Rows 1, 2 and 4 old; 3 young; 5, 6 young.
    let _: Vec<(i64,)> = sql_rows(
        url,
        "UPDATE audit_log SET at = $1 WHERE subject IN ('s0', 's1', 's3') RETURNING id",
        &[old],
    )
    .await;
    let p = policy(10);
    let step = store.retention_step(&p).await.unwrap();
    assert_eq!(step.audit, 2);
    let left: Vec<(String,)> =
        sql_rows(url, "SELECT subject FROM audit_log ORDER BY id", &[]).await;
    let left: Vec<&str> = left.iter().map(|(s,)| s.as_str()).collect();
    assert_eq!(left, ["s2", "s3", "s4", "s5"]);
    // Once s2 ages too, the walk goes on and takes s2 and s3.
    let _: Vec<(i64,)> = sql_rows(
        url,
        "UPDATE audit_log SET at = $1 WHERE subject = 's2' RETURNING id",
        &[old],
    )
    .await;
    assert_eq!(store.retention_step(&p).await.unwrap().audit, 2);
    assert_eq!(count(url, "SELECT COUNT(*) FROM audit_log").await, 2);
    store.close().await;
}
both_backends!(a_walk_never_passes_a_young_row);

async fn cli(dir: &Path, url: &str, args: &[&str]) -> (i32, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pedulicovid"))
        .arg("--database-url")
        .arg(url)
        .args(args)
        .current_dir(dir)
        .env("USER", "dpo")
        .env("RUST_LOG", "warn")
        .env("PEDULICOVID__RETENTION__AUDIT_DAYS", "10")
        .output()
        .await
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
    )
}

async fn the_command_line_shows_and_runs(backend: &str) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let store = db.store().await;
    for i in 0..3 {
        store
            .audit("ops", "test", &format!("s{i}"), "")
            .await
            .unwrap();
    }
    let _: Vec<(i64,)> = sql_rows(
        &db.url,
        "UPDATE audit_log SET at = at - $1 RETURNING id",
        &[11 * DAY_MS],
    )
    .await;
    let (code, out) = cli(dir.path(), &db.url, &["--json", "retention", "status"]).await;
    assert_eq!(code, 0, "{out}");
    let v: Vec<Value> = serde_json::from_str(&out).unwrap();
    let audit = v.iter().find(|k| k["kind"] == "audit").unwrap();
    assert_eq!(
        (audit["keep_days"].as_f64(), audit["due"].as_i64()),
        (Some(10.0), Some(3))
    );
    let (code, out) = cli(dir.path(), &db.url, &["--json", "retention", "run"]).await;
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["audit"], 3);
    // The run's own audit entry stays: it is young.
    assert_eq!(
        audit_actions(&db.url).await,
        [("retention.run".to_string(), "dpo".to_string())]
    );
    let (_, out) = cli(dir.path(), &db.url, &["retention", "status"]).await;
    assert!(out.contains("audit") && out.contains("10 days"), "{out}");
    store.close().await;
}
both_backends!(the_command_line_shows_and_runs);

/// A notice added to a finished campaign while its data was being purged
/// (a resend, and the campaign finished again) is purged too.
async fn a_purge_takes_notices_added_during_it(backend: &str) {
    let db = TestDb::new(backend).await;
    let app = start(test_settings(&db), Parts::ALL).await;
    let c = campaign_of(&app, 4, "mid-purge").await;
    wait_done(&app.store, c, Duration::from_secs(30)).await;
    wait_status(&app.store, c, "completed", Duration::from_secs(10)).await;
    app.stop(Duration::from_secs(5)).await;
    let store = db.store().await;
    let url = db.url.as_str();
    age(url, 100).await;
    let p = policy(2);
    let step = store.retention_step(&p).await.unwrap();
    assert!(step.message_data > 0 && step.more, "{step:?}");
    // A later notice of the same campaign, with a number and a body.
    let _: Vec<(i64,)> = sql_rows(
        url,
        "INSERT INTO messages (campaign_id, worker_id, generation, phone, utc_offset, status, attempts, \
         next_attempt_at, body, created_at, updated_at, final_at) \
         SELECT campaign_id, worker_id, 2, phone, 7, 'delivered', 1, 0, 'text', 0, 0, 0 \
         FROM messages WHERE campaign_id = $1 ORDER BY id LIMIT 1 RETURNING id",
        &[c],
    )
    .await;
    while store.retention_step(&p).await.unwrap().more {}
    assert_eq!(
        count(
            url,
            "SELECT COUNT(*) FROM messages WHERE phone <> '' OR body IS NOT NULL"
        )
        .await,
        0
    );
    store.close().await;
}
both_backends!(a_purge_takes_notices_added_during_it);
