//! A gateway we are not allowed to use (refused credentials, a wrong URL, a
//! redirect) is the gateway's fault, never the message's: the breaker opens,
//! no attempt is used, no worker is flagged, and the campaign auto-pauses.
//!
//! The carrier is a tiny HTTP server on 127.0.0.1 that answers every request
//! with one fixed status and body; the client side is the product's own
//! (`App`, the dialects, the engine).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;

use crate::common::*;
use pedulicovid::app::Parts;
use pedulicovid::config::{GatewaySettings, Settings};
use pedulicovid::gateway::json::JsonConfig;
use pedulicovid::gateway::kannel::KannelConfig;
use pedulicovid::metrics::{FailureReason, METRICS};

/// Starts a carrier answering every request with `status` and `body`;
/// returns its port and the number of requests it has seen.
async fn carrier(status: u16, body: &'static str) -> (u16, Arc<AtomicU64>) {
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    let status = StatusCode::from_u16(status).unwrap();
    let app = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            (status, body).into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, seen)
}

/// [`test_settings`] with exactly one gateway, `g`, and settings where a
/// fault charged to the message would show at once: one attempt each.
fn settings(db: &TestDb, g: GatewaySettings) -> Settings {
    let mut s = test_settings(db);
    s.gateways = vec![g];
    s.gateways[0].breaker_threshold = 20;
    s.gateways[0].breaker_cool_down_secs = 1;
    s.worker.max_attempts = 1;
    s.worker.auto_pause_window = 3;
    s.worker.auto_pause_threshold = 0.5;
    s
}

fn kannel_at(name: &str, port: u16) -> GatewaySettings {
    GatewaySettings {
        name: name.into(),
        dialect: KannelConfig {
            sendsms_url: format!("http://127.0.0.1:{port}/cgi-bin/sendsms"),
            ..Default::default()
        }
        .into(),
        ..Default::default()
    }
}

fn json_at(name: &str, port: u16) -> GatewaySettings {
    GatewaySettings {
        name: name.into(),
        dialect: JsonConfig {
            url: format!("http://127.0.0.1:{port}/v1/sms"),
            ..Default::default()
        }
        .into(),
        ..Default::default()
    }
}

/// Sends a six-worker campaign through the only gateway, `name`, which
/// refuses us; checks that the campaign pauses, the breaker is open with
/// `detail_has` in its detail, every message is still queued with no
/// attempt used, and nobody is flagged.
async fn refused_gateway_flags_no_worker(db: &TestDb, s: Settings, detail_has: &str) {
    let name = s.gateways[0].name.clone();
    let config_before = METRICS
        .gateways
        .get(&name)
        .failures(FailureReason::GatewayConfig);
    let rejected_before = METRICS
        .gateways
        .get(&name)
        .failures(FailureReason::Rejected);
    let app = start(s, Parts::ALL).await;
    let c = campaign_of(&app, 6, "refused").await;
    wait_status(&app.store, c, "paused", Duration::from_secs(20)).await;
    let states = app.store.gateway_states().await.unwrap();
    assert!(
        states.iter().any(|s| s.gateway == name
            && s.state == "open"
            && s.detail.contains("gateway fault (gateway_config)")
            && s.detail.contains(detail_has)),
        "{states:?}"
    );
    let r = app.store.campaign_report(c).await.unwrap();
    assert!(r.flagged_by_reason.is_empty(), "{r:?}");
    let rows: Vec<(String, i64, String)> = sql_rows(
        &db.url,
        "SELECT status, CAST(attempts AS BIGINT), COALESCE(last_error, '') FROM messages \
         WHERE campaign_id = $1 ORDER BY id",
        &[c],
    )
    .await;
    assert_eq!(rows.len(), 6);
    for (status, attempts, _) in &rows {
        assert_eq!((status.as_str(), *attempts), ("queued", 0), "{rows:?}");
    }
    assert!(
        rows.iter()
            .any(|(_, _, e)| e.contains("gateway fault (gateway_config)")),
        "{rows:?}"
    );
    let flags: Vec<(i64,)> = sql_rows(&db.url, "SELECT COUNT(*) FROM non_recipients", &[]).await;
    assert_eq!(flags[0].0, 0);
    let outcomes: Vec<(String,)> =
        sql_rows(&db.url, "SELECT DISTINCT outcome FROM attempts", &[]).await;
    assert_eq!(outcomes, vec![("gateway_fault".to_string(),)]);
    let m = METRICS.gateways.get(&name);
    assert!(m.failures(FailureReason::GatewayConfig) > config_before);
    assert_eq!(m.failures(FailureReason::Rejected), rejected_before);
    app.stop(Duration::from_secs(5)).await;
}

async fn kannel_authorization_failed_opens_the_breaker_and_flags_no_worker(backend: &str) {
    let (port, seen) = carrier(403, "Authorization failed for sendsms").await;
    let db = TestDb::new(backend).await;
    let s = settings(&db, kannel_at("kannel-badpw", port));
    refused_gateway_flags_no_worker(&db, s, "kannel authorization failed").await;
    // The open breaker stops traffic: far fewer tries than messages x retries.
    let n = seen.load(Ordering::SeqCst);
    assert!((1..=6).contains(&n), "{n} requests");
}
both_backends!(kannel_authorization_failed_opens_the_breaker_and_flags_no_worker);

async fn json_401_opens_the_breaker_and_flags_no_worker(backend: &str) {
    let (port, seen) = carrier(401, r#"{"error": "invalid token"}"#).await;
    let db = TestDb::new(backend).await;
    let s = settings(&db, json_at("agg-badtoken", port));
    refused_gateway_flags_no_worker(&db, s, "HTTP 401").await;
    let n = seen.load(Ordering::SeqCst);
    assert!((1..=6).contains(&n), "{n} requests");
}
both_backends!(json_401_opens_the_breaker_and_flags_no_worker);

async fn a_redirect_to_https_is_a_configuration_fault(backend: &str) {
    let (port, _) = carrier(308, "").await;
    let db = TestDb::new(backend).await;
    let s = settings(&db, json_at("agg-redirect", port));
    refused_gateway_flags_no_worker(&db, s, "redirect").await;
}
both_backends!(a_redirect_to_https_is_a_configuration_fault);

/// The other side: a refusal about the message itself (422 "invalid
/// text") still fails that message for good and flags its worker; it is
/// not mistaken for a gateway fault.
async fn a_refusal_about_the_message_is_still_permanent(backend: &str) {
    let (port, _) = carrier(422, r#"{"error": "invalid text"}"#).await;
    let db = TestDb::new(backend).await;
    let s = settings(&db, json_at("agg-422", port));
    let app = start(s, Parts::ALL).await;
    let csv: String = std::iter::once(HEADER.to_string())
        .chain((0..2).map(|i| row(i, "31", &format!("{i}"))))
        .collect();
    assert_eq!(import_text(&app.store, &csv).await.accepted, 2);
    let (c, _) = create_campaign(&app, campaign_request("refused message")).await;
    let r = wait_done(&app.store, c.id, Duration::from_secs(20)).await;
    assert_eq!(
        r.flagged_by_reason,
        vec![("rejected".to_string(), 2)],
        "{r:?}"
    );
    let states = app.store.gateway_states().await.unwrap();
    assert!(
        !states
            .iter()
            .any(|s| s.gateway == "agg-422" && s.state == "open"),
        "{states:?}"
    );
    app.stop(Duration::from_secs(5)).await;
}
both_backends!(a_refusal_about_the_message_is_still_permanent);

/// Without `http.public_url`, a listener on `0.0.0.0` would hand every
/// gateway `http://0.0.0.0:…` callback URLs: the start is refused, naming
/// the setting, before anything is opened or written.
#[tokio::test]
async fn an_unreachable_callback_address_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let db_file = dir.path().join("never.db");
    let (port, seen) = carrier(202, "0: Accepted for delivery").await;
    let mut s = Settings {
        database_url: format!("sqlite://{}?mode=rwc", db_file.display()),
        gateways: vec![kannel_at("tsel", port)],
        ..Default::default()
    };
    s.http.listen = "0.0.0.0:0".into();
    for parts in [Parts::ALL, Parts::WORKER, Parts::SERVE] {
        let e = match pedulicovid::app::App::start(s.clone(), parts).await {
            Ok(_) => panic!("started with callback URLs nobody can reach"),
            Err(e) => format!("{e:#}"),
        };
        assert!(e.contains("http.public_url is required"), "{e}");
        assert!(e.contains("0.0.0.0:0"), "{e}");
    }
    assert!(!db_file.exists(), "nothing opened before the refusal");
    assert_eq!(seen.load(Ordering::SeqCst), 0);
}

/// The real Kannel (shared/carrier harness) with a wrong password: its own
/// `403 Authorization failed` answer is classified a configuration fault.
#[tokio::test]
async fn real_kannel_with_a_wrong_password_is_a_configuration_fault() {
    use pedulicovid::domain::{Msisdn, SmsText};
    use pedulicovid::gateway::http::{gateway_client, GatewayTls};
    use pedulicovid::gateway::kannel::KannelGateway;
    use pedulicovid::gateway::{Fault, Gateway, OutboundSms, SendError};

    let carrier = crate::common::carrier::carrier().await;
    let client = gateway_client("kannel", &GatewayTls::default(), Duration::from_secs(10), 2)
        .expect("client builds");
    let gw = KannelGateway::new(
        "kannel",
        KannelConfig {
            sendsms_url: carrier.sendsms_url.clone(),
            username: carrier.username.clone(),
            password: pedulicovid::secret::Secret::new(format!("{}-wrong", carrier.password)),
            ..KannelConfig::default()
        },
        "http://127.0.0.1:1/callbacks/kannel/token".into(),
        client,
    );
    let got = gw
        .send(&OutboundSms {
            message_id: 1,
            to: Msisdn::parse("081234567891").unwrap(),
            text: SmsText::new("Halo nakes"),
        })
        .await;
    match got {
        Err(SendError::GatewayFault {
            kind: Fault::Config,
            reason,
        }) => assert!(reason.contains("authorization failed"), "{reason}"),
        other => panic!("expected a configuration fault, got {other:?}"),
    }
}
