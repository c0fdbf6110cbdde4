//! Routing and failover across gateways; receipts matched by the gateway's
//! own id, including before the send is recorded.

use std::time::Duration;

use crate::common::*;
use pedulicovid::app::Parts;
use pedulicovid::campaign;
use pedulicovid::config::GatewaySettings;
use pedulicovid::gateway::kannel::KannelConfig;
use pedulicovid::gateway::{ParsedReceipt, ReceiptOutcome};
use pedulicovid::store::{ReceiptEffect, SendOutcome};

/// A port nothing listens on: connection refused at once.
async fn dead_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}/cgi-bin/sendsms")
}

async fn a_dead_gateway_fails_over_to_the_next_route(backend: &str) {
    let db = TestDb::new(backend).await;
    let mut s = test_settings(&db);
    // Telkomsel numbers (0812…) prefer "primary", which is down; "sim" is
    // the default route and takes over once the breaker opens.
    let primary = GatewaySettings {
        name: "primary".into(),
        dialect: KannelConfig {
            sendsms_url: dead_url().await,
            ..Default::default()
        }
        .into(),
        operators: vec!["telkomsel".into()],
        breaker_threshold: 3,
        breaker_cool_down_secs: 60,
        ..Default::default()
    };
    s.gateways = vec![primary, GatewaySettings::simulator("sim")];
    s.worker.batch_size = 5;
    s.worker.concurrency = 1;
    s.worker.max_attempts = 5;
    let app = start(s, Parts::ALL).await;
    let mut csv = String::from(HEADER);
    for i in 0..30u32 {
        csv.push_str(&row(i, "31", &format!("{:07}1", i)));
    }
    assert_eq!(import_text(&app.store, &csv).await.accepted, 30);
    let (c, n) = create_campaign(&app, campaign_request("failover")).await;
    assert_eq!(n, 30);
    let r = wait_done(&app.store, c.id, Duration::from_secs(30)).await;
    // Every message got through the second route; the few that hit the dead
    // gateway first were retried, none failed.
    assert_eq!(r.sent, 30, "{r:?}");
    assert_eq!(r.status(pedulicovid::status::Status::Failed), 0, "{r:?}");
    assert_eq!(app.simulator.clone().unwrap().stats().submits_total, 30);
    let states = app.store.gateway_states().await.unwrap();
    let primary = states
        .iter()
        .find(|s| s.gateway == "primary")
        .expect("primary state recorded");
    assert_eq!(primary.state, "open", "{states:?}");
    app.stop(Duration::from_secs(5)).await;
}
both_backends!(a_dead_gateway_fails_over_to_the_next_route);

fn by_gateway_id(gmid: &str, outcome: ReceiptOutcome) -> ParsedReceipt {
    ParsedReceipt {
        message_id: None,
        gateway_message_id: Some(gmid.into()),
        raw_status: "DELIVRD".into(),
        error_code: None,
        outcome,
    }
}

/// Imports `rows`, creates campaign `name` for them and claims its
/// messages as worker `w`: the campaign's id and the claimed messages.
async fn enqueue_and_claim(
    store: &pedulicovid::store::Store,
    rows: &str,
    name: &str,
) -> (i64, Vec<pedulicovid::store::ClaimedMessage>) {
    import_text(store, &format!("{HEADER}{rows}")).await;
    let renderer = pedulicovid::render::Renderer::builtin();
    let c = campaign::create(store, &renderer, 1, campaign_request(name))
        .await
        .unwrap()
        .campaign;
    let claimed = store
        .claim("w", 10, pedulicovid::store::now_ms() + 60_000)
        .await
        .unwrap();
    (c.id, claimed)
}

async fn receipts_match_by_gateway_id_even_before_the_send_is_recorded(backend: &str) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let rows = format!("{}{}", row(1, "31", "00000011"), row(2, "31", "00000021"));
    let (campaign, claimed) = enqueue_and_claim(&store, &rows, "refs").await;
    assert_eq!(claimed.len(), 2);
    let sent = |id: i64, gmid: &str| SendOutcome::Sent {
        id,
        gateway: "agg".into(),
        gateway_message_id: Some(gmid.into()),
        body: "x".into(),
        encoding: "gsm7",
        segments: 1,
    };
    // Message 1's send is recorded with id "0000AbC9"; its receipt names
    // "abc9" (another case, leading zeros dropped).
    store
        .record_outcomes("w", &[sent(claimed[0].id, "0000AbC9")])
        .await
        .unwrap();
    let e = store
        .apply_receipt(
            "agg",
            "raw",
            &by_gateway_id("abc9", ReceiptOutcome::Delivered),
        )
        .await
        .unwrap();
    assert_eq!(e, ReceiptEffect::Applied);
    // Message 2's receipt overtakes the recording of its send: kept as
    // pending, applied by housekeeping once the send lands.
    let e = store
        .apply_receipt(
            "agg",
            "raw",
            &by_gateway_id("XYZ", ReceiptOutcome::Undelivered),
        )
        .await
        .unwrap();
    assert_eq!(e, ReceiptEffect::Pending);
    assert_eq!(store.apply_pending_receipts(60_000).await.unwrap(), 0);
    store
        .record_outcomes("w", &[sent(claimed[1].id, "xyz")])
        .await
        .unwrap();
    assert_eq!(store.apply_pending_receipts(60_000).await.unwrap(), 1);
    let r = store.campaign_report(campaign).await.unwrap();
    assert_eq!(r.status(pedulicovid::status::Status::Delivered), 1, "{r:?}");
    assert_eq!(
        r.status(pedulicovid::status::Status::Undelivered),
        1,
        "{r:?}"
    );
    let receipts = store.receipts_for(claimed[1].id).await.unwrap();
    assert_eq!(
        receipts.len(),
        1,
        "the pending row itself was applied, not copied"
    );
    assert_eq!(receipts[0].effect.as_deref(), Some("applied"));
    // Same id from another gateway does not match.
    let e = store
        .apply_receipt(
            "other",
            "raw",
            &by_gateway_id("abc9", ReceiptOutcome::Undelivered),
        )
        .await
        .unwrap();
    assert_eq!(e, ReceiptEffect::Pending);
    // …and gives up after the maximum age.
    tokio::time::sleep(Duration::from_millis(20)).await;
    store.apply_pending_receipts(1).await.unwrap();
    let effects = store.receipt_effects().await.unwrap();
    assert!(
        effects
            .iter()
            .any(|e| e.effect.as_deref() == Some("unknown_message") && e.count == 1),
        "{effects:?}"
    );
}
both_backends!(receipts_match_by_gateway_id_even_before_the_send_is_recorded);

/// A receipt that waits for its message's row lock behind the transaction
/// recording that message's send is applied once the send is committed:
/// the hand-over it needs is the one that transaction wrote. (On
/// PostgreSQL one statement locks the rows and reads the hand-overs; a
/// statement that waited for a lock re-reads the locked row but sees the
/// other tables as of its start, so the receipt must not be judged on
/// that read alone.) A third connection holds the row while both queue.
async fn a_receipt_queued_behind_the_recording_of_its_send_is_applied(backend: &str) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let (campaign, claimed) = enqueue_and_claim(&store, &row(1, "31", "00000011"), "race").await;
    let id = claimed[0].id;
    let sent = SendOutcome::Sent {
        id,
        gateway: "sim".into(),
        gateway_message_id: Some("g1".into()),
        body: "x".into(),
        encoding: "gsm7",
        segments: 1,
    };
    let receipt = ParsedReceipt {
        message_id: Some(id),
        ..by_gateway_id("g1", ReceiptOutcome::Delivered)
    };
    // Hold the row (PostgreSQL) or the write lock (SQLite).
    let hold = "UPDATE messages SET updated_at = updated_at WHERE id = $1";
    let hold = if backend == "sqlite" {
        hold.replace("$1", "?")
    } else {
        hold.to_string()
    };
    enum Held {
        Pg(sqlx::Transaction<'static, sqlx::Postgres>, sqlx::PgPool),
        Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    }
    let held = if backend == "sqlite" {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        let mut tx = pool.begin().await.unwrap();
        sqlx::query(&hold).bind(id).execute(&mut *tx).await.unwrap();
        Held::Sqlite(tx)
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        let mut tx = pool.begin().await.unwrap();
        sqlx::query(&hold).bind(id).execute(&mut *tx).await.unwrap();
        Held::Pg(tx, pool)
    };
    // Waiting for a lock: PostgreSQL says so; SQLite's writers retry on
    // their busy timeout, in no set order (a receipt first is kept pending,
    // then applied below, as when it overtakes the send).
    let waiting = |n: i64| {
        let held = &held;
        async move {
            let Held::Pg(_, pool) = held else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                return;
            };
            for _ in 0..200 {
                let w: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                )
                .fetch_one(pool)
                .await
                .unwrap();
                if w >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("{n} statements never queued for the row");
        }
    };
    let recording = tokio::spawn({
        let store = store.clone();
        async move { store.record_outcomes("w", &[sent]).await }
    });
    waiting(1).await;
    let applying = tokio::spawn({
        let store = store.clone();
        async move { store.apply_receipt("sim", "raw", &receipt).await }
    });
    waiting(2).await;
    match held {
        Held::Pg(tx, _) => tx.commit().await.unwrap(),
        Held::Sqlite(tx) => tx.commit().await.unwrap(),
    }
    recording.await.unwrap().unwrap();
    let effect = applying.await.unwrap().unwrap();
    if backend == "postgres" {
        assert_eq!(effect, ReceiptEffect::Applied, "queued after the recording");
    }
    store.apply_pending_receipts(60_000).await.unwrap();
    let r = store.campaign_report(campaign).await.unwrap();
    assert_eq!(
        r.status(pedulicovid::status::Status::Delivered),
        1,
        "{effect:?} {r:?}"
    );
    let receipts = store.receipts_for(id).await.unwrap();
    assert_eq!(receipts[0].effect.as_deref(), Some("applied"));
}
both_backends!(a_receipt_queued_behind_the_recording_of_its_send_is_applied);
