//! The product's gateways against the carrier simulator (crates/carrier-sim),
//! end to end without the engine: `KannelGateway`, `JsonReceipts` and the
//! settings on one side, the simulator playing the carrier on the other.
//! These were the simulator's own tests while it lived in `src/`; the
//! simulator's tests of itself stay in its crate.
//!
//! Kannel: every outcome's receipt parsed back, the `dlr-mask` bits, a wrong
//! password, Kannel's answers to bad requests, callback retries like
//! Kannel's, duplicate counting. JSON: signed callbacks. Faults: each of
//! the simulator's carrier faults as the Kannel gateway sees it (retryable,
//! throttled with Retry-After, timeouts, resets, garbage, outages) and the
//! attempt report; the `[simulator.faults]` settings from the environment.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use carrier_sim::{
    parse_rules, AttemptKind, AttemptReport, DownAnswer, FaultConfig, OutcomeMix, SimDialect,
    SimHandle, SimStats, Simulator, SimulatorConfig,
};
use pedulicovid::domain::{Msisdn, SmsText};
use pedulicovid::gateway::http;
use pedulicovid::gateway::kannel::{interpret_answer, parse_receipt, KannelConfig, KannelGateway};
use pedulicovid::gateway::{Gateway, OutboundSms, ParsedReceipt, ReceiptOutcome, SendError};
use pedulicovid::secret::Secret;
use tokio::sync::mpsc;

type Pairs = Vec<(String, String)>;

/// Rules used by the end-to-end tests: the last digit picks the outcome.
const RULES: &str = "1=delivered,2=undelivered,3=rejected,4=expired,5=invalid,6=no_receipt";

fn test_config() -> SimulatorConfig {
    SimulatorConfig {
        listen: "127.0.0.1:0".to_string(),
        receipt_delay_ms: 10,
        receipt_jitter_ms: 5,
        rules: parse_rules(RULES).expect("test rules parse"),
        callback_retry_delay_ms: 50,
        seed: Some(7),
        ..SimulatorConfig::default()
    }
}

async fn start_sim(config: SimulatorConfig) -> SimHandle {
    let sim = Simulator::bind(config).await.expect("bind simulator");
    let handle = sim.handle();
    sim.spawn(std::future::pending());
    handle
}

/// A receipt endpoint on port 0 answering `status`; every callback's
/// query pairs arrive on the channel.
async fn start_receiver(status: StatusCode) -> (String, mpsc::UnboundedReceiver<Pairs>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new().route(
        "/callbacks/sim/TOKEN",
        get(move |RawQuery(q): RawQuery| {
            let tx = tx.clone();
            async move {
                let pairs: Pairs = url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
                    .into_owned()
                    .collect();
                // The test may have stopped listening; that is fine.
                let _ = tx.send(pairs);
                status
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let addr = listener.local_addr().expect("receiver addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/callbacks/sim/TOKEN"), rx)
}

fn gateway(sim: &SimHandle, callback_url: &str, password: &str, dlr_mask: u8) -> KannelGateway {
    let config = KannelConfig {
        sendsms_url: sim.sendsms_url(),
        password: Secret::new(password),
        dlr_mask,
        ..KannelConfig::default()
    };
    KannelGateway::new(
        "sim",
        config,
        callback_url.into(),
        http::client(Duration::from_secs(5), 8),
    )
}

fn sms(id: i64, number: &str) -> OutboundSms {
    OutboundSms {
        message_id: id,
        to: Msisdn::parse(number).expect("valid test number"),
        text: SmsText::new("PEDULICOVID: jadwal vaksinasi Anda sudah tersedia"),
    }
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Pairs>) -> Pairs {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a callback within 5 s")
        .expect("receiver alive")
}

async fn nothing_more(rx: &mut mpsc::UnboundedReceiver<Pairs>) {
    let extra = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await;
    assert!(extra.is_err(), "unexpected callback: {extra:?}");
}

/// Sends one message through `KannelGateway` to a number whose last
/// digit selects the outcome, and returns the receipts it produced.
async fn send_and_collect(
    last_digit: char,
    mask: u8,
    expected: usize,
) -> (SimHandle, Vec<ParsedReceipt>, Vec<Pairs>) {
    let sim = start_sim(test_config()).await;
    let (callback, mut rx) = start_receiver(StatusCode::OK).await;
    let gw = gateway(&sim, &callback, "secret", mask);
    let number = format!("+628123456700{last_digit}");
    let got = gw.send(&sms(41, &number)).await;
    assert_eq!(
        got,
        Ok(pedulicovid::gateway::Accepted {
            gateway_message_id: None
        })
    );
    let mut raw = Vec::new();
    for _ in 0..expected {
        raw.push(next(&mut rx).await);
    }
    nothing_more(&mut rx).await;
    let parsed = raw
        .iter()
        .map(|p| parse_receipt(p).expect("simulator callbacks parse"))
        .collect();
    (sim, parsed, raw)
}

async fn check_final(last_digit: char, outcome: ReceiptOutcome, raw: &str, err: &str) {
    let (sim, receipts, pairs) = send_and_collect(last_digit, 19, 1).await;
    let r = &receipts[0];
    assert_eq!(r.message_id, Some(41));
    assert_eq!(r.outcome, outcome);
    assert_eq!(r.raw_status, raw);
    assert_eq!(r.error_code.as_deref(), Some(err));
    if outcome == ReceiptOutcome::InvalidNumber {
        assert_eq!(r.gateway_message_id, None, "no SMSC id for a NACK");
    } else {
        let fid = r.gateway_message_id.as_deref().expect("an SMSC id");
        assert!(
            fid.len() >= 10 && fid.bytes().all(|b| b.is_ascii_hexdigit()),
            "{fid}"
        );
    }
    // No phone number in the callback: our dlr-url has no %p.
    assert!(
        pairs[0].iter().all(|(_, v)| !v.contains("81234567")),
        "{pairs:?}"
    );
    let stats = sim.stats();
    assert_eq!(stats.submits_total, 1);
    assert_eq!(stats.duplicates, 0);
    assert_eq!(stats.callbacks_sent, 1);
    assert_eq!(sim.submits_for(&format!("628123456700{last_digit}")), 1);
}

#[tokio::test]
async fn delivered_end_to_end() {
    check_final('1', ReceiptOutcome::Delivered, "1", "000").await;
}

#[tokio::test]
async fn undelivered_end_to_end() {
    check_final('2', ReceiptOutcome::Undelivered, "2", "001").await;
}

#[tokio::test]
async fn rejected_end_to_end() {
    check_final('3', ReceiptOutcome::Rejected, "2", "011").await;
}

#[tokio::test]
async fn expired_end_to_end() {
    check_final('4', ReceiptOutcome::Expired, "34", "027").await;
}

#[tokio::test]
async fn invalid_end_to_end() {
    check_final('5', ReceiptOutcome::InvalidNumber, "16", "0x0000000b").await;
}

#[tokio::test]
async fn no_receipt_end_to_end() {
    let (sim, receipts, _) = send_and_collect('6', 19, 0).await;
    assert!(receipts.is_empty());
    assert_eq!(sim.stats().no_receipt, 1);
}

#[tokio::test]
async fn mask_31_adds_ack_and_enroute() {
    let (_sim, receipts, _) = send_and_collect('1', 31, 3).await;
    let kinds: BTreeSet<&str> = receipts.iter().map(|r| r.raw_status.as_str()).collect();
    assert_eq!(kinds, BTreeSet::from(["1", "4", "8"]));
    let fids: BTreeSet<_> = receipts
        .iter()
        .map(|r| r.gateway_message_id.clone())
        .collect();
    assert_eq!(fids.len(), 1, "one SMSC id for all three: {fids:?}");
    for r in &receipts {
        let want = if r.raw_status == "1" {
            ReceiptOutcome::Delivered
        } else {
            ReceiptOutcome::Accepted
        };
        assert_eq!(r.outcome, want);
    }
    // NODLR still ACKs; NACK gets only its 16.
    let (_sim, receipts, _) = send_and_collect('6', 31, 1).await;
    assert_eq!(receipts[0].raw_status, "8");
    let (_sim, receipts, _) = send_and_collect('5', 31, 1).await;
    assert_eq!(receipts[0].raw_status, "16");
}

#[tokio::test]
async fn wrong_password_is_a_gateway_fault() {
    let sim = start_sim(test_config()).await;
    let gw = gateway(&sim, "http://127.0.0.1:9/cb", "wrong", 19);
    let got = gw.send(&sms(1, "+6281234567001")).await;
    match got {
        Err(SendError::GatewayFault {
            kind: pedulicovid::gateway::Fault::Config,
            ..
        }) => {}
        other => panic!("expected a configuration fault, got {other:?}"),
    }
    let stats = sim.stats();
    assert_eq!((stats.rejected_requests, stats.submits_total), (1, 0));
}

async fn raw_get(url: &str) -> (StatusCode, String) {
    let resp = reqwest::get(url).await.expect("simulator answers");
    let status = resp.status();
    (status, resp.text().await.expect("body"))
}

#[tokio::test]
async fn kannel_answers_for_bad_requests() {
    let sim = start_sim(test_config()).await;
    let base = format!("{}?username=pedulicovid&password=secret", sim.sendsms_url());

    let (status, body) = raw_get(&format!("{base}&to=abc&text=hi")).await;
    assert_eq!(
        (status.as_u16(), body.as_str()),
        (
            400,
            "Number(s) has/have been denied by white- and/or black-lists."
        )
    );
    match interpret_answer(status, None, &body) {
        Err(SendError::Permanent { invalid_number, .. }) => assert!(invalid_number),
        other => panic!("expected permanent invalid number, got {other:?}"),
    }

    let (status, body) = raw_get(&format!("{base}&text=hi")).await;
    assert_eq!(
        (status.as_u16(), body.as_str()),
        (400, "Missing receiver number, rejected")
    );

    let (status, body) = raw_get(&format!(
        "{}?username=x&password=secret&to=1",
        sim.sendsms_url()
    ))
    .await;
    assert_eq!(
        (status.as_u16(), body.as_str()),
        (403, "Authorization failed for sendsms")
    );

    let resp = reqwest::Client::new()
        .post(format!("{base}&to=6281234567001"))
        .send()
        .await
        .expect("simulator answers");
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(
        resp.text().await.expect("body"),
        "Authorization failed for sendsms"
    );

    let (status, body) =
        raw_get(&format!("{base}&to=%2B6281234567001+6281234567002&text=hi")).await;
    assert_eq!(
        (status.as_u16(), body.as_str()),
        (202, "0: Accepted for delivery")
    );
    let stats = sim.stats();
    assert_eq!((stats.rejected_requests, stats.submits_total), (4, 2));
}

/// Kannel's POST mode on the simulator, as Kannel 1.4.5 answers it (the
/// harness's answers; `src/gateway/kannel.rs` for the request's shape):
/// the product's gateway in POST mode gets its message through with every
/// receipt, quoting the text the body carried; a form POST is refused as
/// `Invalid content-type` before the credentials are looked at, which the
/// gateway reads as a configuration fault; credentials in the query of a
/// POST are not read.
#[tokio::test]
async fn kannel_post_mode() {
    use pedulicovid::gateway::kannel::KannelMethod;
    let sim = start_sim(test_config()).await;
    let (callback, mut rx) = start_receiver(StatusCode::OK).await;
    let post = KannelGateway::new(
        "sim",
        KannelConfig {
            sendsms_url: sim.sendsms_url(),
            method: KannelMethod::Post,
            ..KannelConfig::default()
        },
        callback.as_str().into(),
        http::client(Duration::from_secs(5), 8),
    );
    let text = "Yth. nakes, daftar di pedulilindungi.id & *119# (100%)";
    let got = post
        .send(&OutboundSms {
            message_id: 77,
            to: Msisdn::parse("+6281234567001").expect("valid"),
            text: SmsText::new(text),
        })
        .await;
    assert_eq!(
        got,
        Ok(pedulicovid::gateway::Accepted {
            gateway_message_id: None
        })
    );
    let pairs = next(&mut rx).await;
    let r = parse_receipt(&pairs).expect("parses");
    assert_eq!(
        (r.message_id, r.outcome),
        (Some(77), ReceiptOutcome::Delivered)
    );
    let answer = &pairs.iter().find(|(k, _)| k == "answer").expect("%A").1;
    assert!(
        answer.ends_with(&format!("text:{}", &text[..20])),
        "the SMSC quotes the body's text: {answer}"
    );
    nothing_more(&mut rx).await;

    let form = reqwest::Client::new()
        .post(sim.sendsms_url())
        .header("X-Kannel-Username", "wrong")
        .form(&[("to", "6281234567001"), ("text", "hi")])
        .send()
        .await
        .expect("simulator answers");
    let status = form.status();
    let body = form.text().await.expect("body");
    assert_eq!(
        (status.as_u16(), body.as_str()),
        (400, "Invalid content-type")
    );
    match interpret_answer(status, None, &body) {
        Err(SendError::GatewayFault { kind, reason }) => {
            assert_eq!(kind, pedulicovid::gateway::Fault::Config);
            assert!(reason.contains("kannel.method = \"GET\""), "{reason}");
        }
        other => panic!("expected a configuration fault, got {other:?}"),
    }
    let query_credentials = reqwest::Client::new()
        .post(format!(
            "{}?username=pedulicovid&password=secret&to=6281234567002",
            sim.sendsms_url()
        ))
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .expect("simulator answers");
    assert_eq!(query_credentials.status().as_u16(), 403);
    // No receiver: Kannel's POST wording, a refusal of the message (our
    // bug, never the number's), as the GET's.
    let no_receiver = reqwest::Client::new()
        .post(sim.sendsms_url())
        .header("X-Kannel-Username", "pedulicovid")
        .header("X-Kannel-Password", "secret")
        .body("hi")
        .send()
        .await
        .expect("simulator answers");
    let status = no_receiver.status();
    let body = no_receiver.text().await.expect("body");
    assert_eq!(
        (status.as_u16(), body.as_str()),
        (400, "Missing receiver(s) number(s), rejected")
    );
    assert!(
        matches!(
            interpret_answer(status, None, &body),
            Err(SendError::Permanent {
                invalid_number: false,
                ..
            })
        ),
        "{body}"
    );
    let stats = sim.stats();
    assert_eq!(
        (
            stats.kannel_posts,
            stats.rejected_requests,
            stats.submits_total
        ),
        (4, 3, 1)
    );
}

#[tokio::test]
async fn failing_receiver_gets_one_plus_retries_identical_callbacks() {
    let sim = start_sim(test_config()).await;
    let (callback, mut rx) = start_receiver(StatusCode::INTERNAL_SERVER_ERROR).await;
    let gw = gateway(&sim, &callback, "secret", 19);
    gw.send(&sms(9, "+6281234567001")).await.expect("accepted");
    let first = next(&mut rx).await;
    for _ in 0..3 {
        assert_eq!(next(&mut rx).await, first, "retries are identical");
    }
    nothing_more(&mut rx).await;
    let stats = sim.stats();
    assert_eq!(
        (
            stats.callbacks_failed,
            stats.callbacks_sent,
            stats.callback_attempts
        ),
        (1, 0, 4)
    );
}

#[tokio::test]
async fn receiver_answering_204_is_retried_like_kannel() {
    let mut config = test_config();
    config.callback_retries = 1;
    let sim = start_sim(config).await;
    let (callback, mut rx) = start_receiver(StatusCode::NO_CONTENT).await;
    let gw = gateway(&sim, &callback, "secret", 19);
    gw.send(&sms(9, "+6281234567001")).await.expect("accepted");
    next(&mut rx).await;
    next(&mut rx).await;
    nothing_more(&mut rx).await;
    assert_eq!(sim.stats().callbacks_failed, 1);
}

#[tokio::test]
async fn duplicates_are_counted_and_stats_served() {
    let sim = start_sim(test_config()).await;
    let gw = gateway(&sim, "http://127.0.0.1:9/cb", "secret", 0);
    gw.send(&sms(1, "+6281234567001")).await.expect("accepted");
    gw.send(&sms(2, "+6281234567001")).await.expect("accepted");
    gw.send(&sms(3, "+6281234567011")).await.expect("accepted");
    assert_eq!(sim.submits_for("6281234567001"), 2);
    assert_eq!(sim.submits_for("6281234567011"), 1);
    assert_eq!(sim.submits_for("6281234567099"), 0);
    let url = sim.sendsms_url().replace("/cgi-bin/sendsms", "/sim/stats");
    let served: SimStats = reqwest::get(url)
        .await
        .expect("stats answer")
        .json()
        .await
        .expect("stats JSON");
    assert_eq!(served, sim.stats());
    assert_eq!(
        (served.submits_total, served.duplicates, served.delivered),
        (3, 1, 3)
    );
    assert_eq!(served.callback_attempts, 0, "mask 0 asks for no reports");
}

#[tokio::test]
async fn json_callbacks_are_signed_when_configured() {
    use pedulicovid::gateway::json::{JsonReceiptMapping, JsonReceipts, ReceiptSignature};
    use pedulicovid::gateway::ReceiptParser;
    // One table configures both ends, as `[simulator.json_signature]` and a
    // gateway's `[gateways.json.receipt.signature]` would.
    let table = "header = \"X-Sig\"\nsecret = \"webhook-secret\"\ntimestamp_header = \"X-Ts\"\n";
    let sig: ReceiptSignature = toml::from_str(table).expect("signature settings");
    let sim = start_sim(SimulatorConfig {
        dialect: SimDialect::Json,
        json_signature: Some(toml::from_str(table).expect("the simulator's signature settings")),
        ..test_config()
    })
    .await;
    // A receiver that checks each callback as the JSON dialect would.
    let checker = JsonReceipts::new(JsonReceiptMapping {
        signature: Some(sig),
        ..Default::default()
    })
    .expect("mapping");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let app = Router::new().route(
        "/cb",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            let verdict = checker.authenticate(&headers, &body, chrono::Utc::now().timestamp());
            async move {
                let _ = tx.send(verdict.clone());
                if verdict.is_ok() {
                    StatusCode::OK
                } else {
                    StatusCode::UNAUTHORIZED
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let resp = reqwest::Client::new()
        .post(sim.send_url())
        .bearer_auth("secret")
        .json(&serde_json::json!({
            "to": "+6281234567001", "text": "hi", "reference": "7",
            "callback_url": format!("http://{addr}/cb"),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let verdict = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a callback came")
        .unwrap();
    assert_eq!(verdict, Ok(()));
}

// -----------------------------------------------------------------
// Fault modes
// -----------------------------------------------------------------

/// A simulator with only `faults` changed, every number delivered.
async fn faulty(faults: FaultConfig) -> SimHandle {
    start_sim(SimulatorConfig {
        rules: Vec::new(),
        mix: OutcomeMix {
            delivered: 1.0,
            undelivered: 0.0,
            rejected: 0.0,
            expired: 0.0,
            invalid: 0.0,
        },
        faults,
        ..test_config()
    })
    .await
}

/// A Kannel gateway with a 300 ms timeout, no receipts asked for.
fn impatient(sim: &SimHandle) -> KannelGateway {
    let config = KannelConfig {
        sendsms_url: sim.sendsms_url(),
        dlr_mask: 0,
        ..KannelConfig::default()
    };
    KannelGateway::new(
        "sim",
        config,
        "http://127.0.0.1:9/cb".into(),
        http::client(Duration::from_millis(300), 8),
    )
}

fn retryable_reason(got: Result<pedulicovid::gateway::Accepted, SendError>) -> String {
    match got {
        Err(SendError::Retryable { reason, .. }) => reason,
        other => panic!("expected a retryable error, got {other:?}"),
    }
}

const NUMBER: &str = "+6281234567001";
const DIGITS: &str = "6281234567001";

#[tokio::test]
async fn server_errors_are_retryable_and_submit_nothing() {
    let sim = faulty(FaultConfig {
        server_error: 1.0,
        ..FaultConfig::default()
    })
    .await;
    let gw = impatient(&sim);
    for _ in 0..6 {
        let reason = retryable_reason(gw.send(&sms(1, NUMBER)).await);
        assert!(
            reason.starts_with("HTTP 500") || reason.starts_with("HTTP 503"),
            "{reason}"
        );
    }
    let stats = sim.stats();
    assert_eq!(
        (
            stats.server_errors,
            stats.submits_total,
            stats.attempts_total
        ),
        (6, 0, 6)
    );
    let kinds: Vec<AttemptKind> = sim.attempts_for(DIGITS).iter().map(|a| a.kind).collect();
    assert_eq!(kinds, vec![AttemptKind::ServerError; 6]);
}

#[tokio::test]
async fn throttles_carry_retry_after() {
    let sim = faulty(FaultConfig {
        throttle: 1.0,
        retry_after_secs: 3,
        ..FaultConfig::default()
    })
    .await;
    let got = impatient(&sim).send(&sms(1, NUMBER)).await;
    assert_eq!(
        got,
        Err(SendError::Throttled {
            retry_after: Some(Duration::from_secs(3))
        })
    );
    let stats = sim.stats();
    assert_eq!((stats.throttled, stats.submits_total), (1, 0));
}

#[tokio::test]
async fn timeouts_hold_past_the_client_and_submit_nothing() {
    let sim = faulty(FaultConfig {
        timeout: 1.0,
        timeout_hold_ms: 2_000,
        ..FaultConfig::default()
    })
    .await;
    let started = Instant::now();
    let reason = retryable_reason(impatient(&sim).send(&sms(1, NUMBER)).await);
    assert!(reason.starts_with("timeout"), "{reason}");
    assert!(started.elapsed() < Duration::from_millis(1_500));
    let stats = sim.stats();
    assert_eq!((stats.timeouts, stats.submits_total), (1, 0));
}

#[tokio::test]
async fn accepted_then_timeout_counts_as_a_submit() {
    let sim = faulty(FaultConfig {
        accept_then_timeout: 1.0,
        timeout_hold_ms: 2_000,
        ..FaultConfig::default()
    })
    .await;
    let gw = impatient(&sim);
    let reason = retryable_reason(gw.send(&sms(1, NUMBER)).await);
    assert!(reason.starts_with("timeout"), "{reason}");
    // The client's retry is a real duplicate.
    let _ = gw.send(&sms(1, NUMBER)).await;
    let stats = sim.stats();
    assert_eq!(
        (
            stats.accepted_then_timeouts,
            stats.submits_total,
            stats.duplicates
        ),
        (2, 2, 1)
    );
    assert_eq!(sim.attempt_report().max_submits, 2);
}

#[tokio::test]
async fn resets_close_the_connection_without_an_answer() {
    let sim = faulty(FaultConfig {
        reset: 1.0,
        ..FaultConfig::default()
    })
    .await;
    let gw = impatient(&sim);
    for _ in 0..3 {
        let reason = retryable_reason(gw.send(&sms(1, NUMBER)).await);
        assert!(!reason.starts_with("HTTP"), "an answer came: {reason}");
        assert!(!reason.starts_with("timeout"), "{reason}");
    }
    let stats = sim.stats();
    assert_eq!((stats.resets, stats.submits_total), (3, 0));
    // Every dialect's endpoint resets alike (raw requests here).
    for dialect in [SimDialect::Jasmin, SimDialect::Json] {
        let sim = start_sim(SimulatorConfig {
            dialect,
            faults: FaultConfig {
                reset: 1.0,
                ..FaultConfig::default()
            },
            ..test_config()
        })
        .await;
        let client = reqwest::Client::new();
        let sent = match dialect {
            SimDialect::Json => {
                client
                    .post(sim.send_url())
                    .bearer_auth("secret")
                    .body(r#"{"to":"6281234567001","text":"hi"}"#)
                    .send()
                    .await
            }
            _ => {
                client
                    .get(format!(
                        "{}?username=pedulicovid&password=secret&to=6281234567001&content=hi",
                        sim.send_url()
                    ))
                    .send()
                    .await
            }
        };
        assert!(sent.is_err(), "{dialect}: {sent:?}");
        assert_eq!(sim.stats().resets, 1);
        assert_eq!(sim.attempts_for(DIGITS)[0].kind, AttemptKind::Reset);
    }
}

#[tokio::test]
async fn garbage_and_slow_answers() {
    let sim = faulty(FaultConfig {
        garbage: 1.0,
        ..FaultConfig::default()
    })
    .await;
    let gw = impatient(&sim);
    for _ in 0..8 {
        let reason = retryable_reason(gw.send(&sms(1, NUMBER)).await);
        assert!(
            reason.starts_with("unrecognised gateway answer"),
            "{reason}"
        );
    }
    assert_eq!(sim.stats().garbage_answers, 8);
    assert_eq!(sim.stats().submits_total, 0);

    let sim = faulty(FaultConfig {
        slow: 1.0,
        slow_ms: 150,
        ..FaultConfig::default()
    })
    .await;
    let started = Instant::now();
    impatient(&sim)
        .send(&sms(1, NUMBER))
        .await
        .expect("a slow answer is an answer");
    assert!(started.elapsed() >= Duration::from_millis(150));
    let stats = sim.stats();
    assert_eq!((stats.slow_answers, stats.submits_total), (1, 1));
    assert_eq!(sim.attempts_for(DIGITS)[0].kind, AttemptKind::Accepted);
}

#[tokio::test]
async fn always_fail_suffixes_get_503() {
    let sim = faulty(FaultConfig {
        always_fail: vec!["99".into()],
        ..FaultConfig::default()
    })
    .await;
    let gw = impatient(&sim);
    let reason = retryable_reason(gw.send(&sms(1, "+6281234567099")).await);
    assert!(reason.starts_with("HTTP 503"), "{reason}");
    gw.send(&sms(2, NUMBER)).await.expect("others go through");
    let stats = sim.stats();
    assert_eq!((stats.server_errors, stats.submits_total), (1, 1));
}

#[tokio::test]
async fn outages_by_switch_and_by_schedule() {
    // By switch, resetting.
    let sim = faulty(FaultConfig::default()).await;
    let gw = impatient(&sim);
    sim.set_down(true);
    assert!(sim.is_down());
    retryable_reason(gw.send(&sms(1, NUMBER)).await);
    sim.set_down(false);
    gw.send(&sms(1, NUMBER)).await.expect("back up");
    let stats = sim.stats();
    assert_eq!(
        (stats.outage_refusals, stats.resets, stats.submits_total),
        (1, 1, 1)
    );

    // By schedule, answering 503: down from the start for 400 ms.
    let sim = faulty(FaultConfig {
        down_after_ms: Some(0),
        down_for_ms: 400,
        down_answer: DownAnswer::Unavailable,
        ..FaultConfig::default()
    })
    .await;
    let gw = impatient(&sim);
    let reason = retryable_reason(gw.send(&sms(1, NUMBER)).await);
    assert!(reason.starts_with("HTTP 503"), "{reason}");
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(!sim.is_down());
    gw.send(&sms(1, NUMBER)).await.expect("the outage is over");
    let kinds: Vec<AttemptKind> = sim.attempts_for(DIGITS).iter().map(|a| a.kind).collect();
    assert_eq!(kinds, vec![AttemptKind::Down, AttemptKind::Accepted]);
}

#[tokio::test]
async fn attempt_report_measures_counts_and_gaps() {
    let sim = faulty(FaultConfig {
        throttle: 1.0,
        ..FaultConfig::default()
    })
    .await;
    let gw = impatient(&sim);
    for _ in 0..3 {
        let _ = gw.send(&sms(1, NUMBER)).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let _ = gw.send(&sms(2, "+6281234567002")).await;
    let r = sim.attempt_report();
    assert_eq!((r.destinations, r.attempts_total), (2, 4));
    assert_eq!(r.distribution, [(1, 1), (3, 1)].into_iter().collect());
    assert_eq!(
        (
            r.max_attempts,
            r.max_throttled,
            r.max_attempts_not_throttled,
            r.max_submits
        ),
        (3, 3, 0, 0)
    );
    let gap = r.min_gap_ms.expect("a destination tried twice");
    assert!((60.0..1_000.0).contains(&gap), "{gap}");
    assert_eq!(r.min_gap_after_ms.get(&AttemptKind::Throttled), Some(&gap));
    // Served as JSON, and read back.
    let url = sim
        .sendsms_url()
        .replace("/cgi-bin/sendsms", "/sim/attempts");
    let served: AttemptReport = reqwest::get(url)
        .await
        .expect("attempts answer")
        .json()
        .await
        .expect("attempts JSON");
    // Compare through the same round trip as text: serde_json's parser
    // (without `float_roundtrip`) may read a printed float one ulp off,
    // and a `Value` round trip never prints it.
    let expected: AttemptReport =
        serde_json::from_str(&serde_json::to_string(&r).expect("report serialises"))
            .expect("report reads back");
    assert_eq!(served, expected);
}

#[test]
fn simulator_fault_settings_read_from_the_environment() {
    let env = [
        ("PEDULICOVID__SIMULATOR__FAULTS__THROTTLE", "0.05"),
        ("PEDULICOVID__SIMULATOR__FAULTS__DOWN_AFTER_MS", "5000"),
        ("PEDULICOVID__SIMULATOR__FAULTS__DOWN_ANSWER", "unavailable"),
        ("PEDULICOVID__SIMULATOR__FAULTS__ALWAYS_FAIL", "[\"99\"]"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let s = pedulicovid::config::Settings::load_from(None, env).expect("settings");
    let f = &s.simulator.faults;
    assert_eq!(f.throttle, 0.05);
    assert_eq!(f.down_after_ms, Some(5000));
    assert_eq!(f.down_answer, DownAnswer::Unavailable);
    assert_eq!(f.always_fail, vec!["99".to_string()]);
}
