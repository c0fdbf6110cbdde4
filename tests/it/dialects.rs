//! Whole campaigns through the real app against the in-process simulator
//! speaking the Jasmin and the generic JSON dialects, on both databases:
//! import → campaign → worker → `POST /send` (Jasmin) or `POST /v1/messages`
//! (JSON) → the dialect's receipt callbacks → statuses, receipts and flags.
//!
//! The gateway "sim" asks for the simulator by name (`dialect =
//! "simulator"`) and speaks whatever the simulator speaks, so these tests
//! only switch `simulator.dialect`. Outcomes come from suffix
//! rules on the destination's last digit, as in the Kannel harness: 0
//! undelivered, 9 expired, 8 rejected, 7 invalid number, anything else
//! delivered.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::*;
use carrier_sim::SimDialect;
use pedulicovid::app::Parts;
use pedulicovid::config::{Dialect, GatewayDialect, Settings};
use pedulicovid::gateway::json::JsonConfig;
use pedulicovid::secret::Secret;
use pedulicovid::status::Status;

/// Callback token of the "sim" gateway in these tests, so a test can post
/// receipts of its own.
const TOKEN: &str = "dialect-test-token-0123456789abcdef";

/// Settings for one dialect: the simulator speaks it, every outcome has a
/// suffix rule, and numbers without a rule are always delivered.
fn dialect_settings(db: &TestDb, dialect: SimDialect, rules: &str) -> Settings {
    let mut s = ruled_settings(db, rules);
    s.simulator.dialect = dialect;
    assert_eq!(s.gateways.len(), 1);
    assert_eq!(s.gateways[0].name, "sim");
    s.gateways[0].callback_secret = Secret::new(TOKEN);
    s
}

const RULES: &str = "0=undelivered,9=expired,8=rejected,7=invalid";

/// (status, flag reason) the rules above give a number ending in `digit`.
fn expected(digit: u32) -> (Status, Option<&'static str>) {
    match digit {
        0 => (Status::Undelivered, Some("undelivered")),
        9 => (Status::Expired, Some("expired")),
        8 => (Status::Rejected, Some("rejected")),
        7 => (Status::Rejected, Some("invalid_number")),
        _ => (Status::Delivered, None),
    }
}

/// The final status word of the dialect's receipt for a number ending in
/// `digit` (`receipts.raw_status`).
fn expected_raw(dialect: SimDialect, digit: u32) -> &'static str {
    match (dialect, digit) {
        (SimDialect::Jasmin, 0) => "UNDELIV",
        (SimDialect::Jasmin, 9) => "EXPIRED",
        (SimDialect::Jasmin, 8) => "REJECTD",
        (SimDialect::Jasmin, 7) => "ESME_RINVDSTADR",
        (SimDialect::Jasmin, _) => "DELIVRD",
        (_, 0) => "FAILED",
        (_, 9) => "EXPIRED",
        (_, 8) => "REJECTED",
        (_, 7) => "INVALID",
        (_, _) => "DELIVERED",
    }
}

fn expected_outcome(digit: u32) -> &'static str {
    match digit {
        0 => "undelivered",
        9 => "expired",
        8 => "rejected",
        7 => "invalid_number",
        _ => "delivered",
    }
}

fn last_digit(phone: &str) -> u32 {
    phone
        .chars()
        .last()
        .and_then(|c| c.to_digit(10))
        .unwrap_or_else(|| panic!("phone {phone:?} does not end in a digit"))
}

/// One `messages` row, read with plain sqlx (the store has no listing of a
/// campaign's messages).
#[derive(Debug, Clone, sqlx::FromRow)]
struct MessageRow {
    id: i64,
    phone: String,
    status: String,
    gateway: Option<String>,
    gateway_message_id: Option<String>,
    encoding: Option<String>,
    segments: Option<i32>,
    body: Option<String>,
}

async fn campaign_messages(url: &str, campaign: i64) -> Vec<MessageRow> {
    let sql = "SELECT id, phone, status, gateway, gateway_message_id, encoding, segments, body \
               FROM messages WHERE campaign_id = $1 ORDER BY id";
    sql_rows(url, sql, &[campaign]).await
}

/// Health workers whose names are not GSM-7 as registered, with the name
/// their notice prints: the Vietnamese `ễ`/`ị` fold to their base letters,
/// and a name with no Latin letter at all gets the polite fallback. Both
/// notices still go out GSM-7 in one segment (a name never makes a notice
/// UCS-2; the UCS-2 wire forms are tested per dialect in `src/gateway/`).
const NON_GSM_NAMES: [(&str, &str); 2] = [
    ("Nguyễn Thị Hoa", "Nguyen Thi Hoa"),
    ("王秀英", pedulicovid::render::NAME_FALLBACK),
];

/// A whole campaign through the simulator speaking `dialect`.
async fn campaign_through(backend: &str, dialect: SimDialect) {
    let t0 = Instant::now();
    let db = TestDb::new(backend).await;
    let app = start(dialect_settings(&db, dialect, RULES), Parts::ALL).await;
    let sim = app.simulator.clone().expect("simulator runs");
    assert_eq!(sim.dialect(), dialect);

    // 20 workers: every outcome digit twice; plus two with non-GSM names,
    // delivered (their numbers end in 1).
    let provinces = ["31", "73", "94"];
    let mut csv = String::from(HEADER);
    for i in 0..20u32 {
        csv.push_str(&row(
            i,
            provinces[(i % 3) as usize],
            &format!("{:07}{}", i, i % 10),
        ));
    }
    let mut non_gsm_phones = vec![];
    for (k, (name, _)) in NON_GSM_NAMES.iter().enumerate() {
        let i = 20 + k as u32;
        let tail = format!("{:07}1", 900 + i);
        non_gsm_phones.push(format!("+62812{tail}"));
        csv.push_str(
            &row(i, "31", &tail).replace(&format!("Nakes Nomor {i},"), &format!("{name},")),
        );
    }
    let n = 22i64;
    let imported = import_text(&app.store, &csv).await;
    assert_eq!(imported.accepted, n as u64, "{:?}", imported.rejections);

    let (c, enqueued) = create_campaign(&app, campaign_request(dialect.as_str())).await;
    assert_eq!(enqueued, n as u64);
    let mut r = wait_done(&app.store, c.id, Duration::from_secs(30)).await;
    let settled = t0.elapsed();
    // A fast receipt can make a message final just before its send is
    // recorded; the record follows right after.
    let limit = Instant::now() + Duration::from_secs(10);
    while r.sent < n && Instant::now() < limit {
        tokio::time::sleep(Duration::from_millis(50)).await;
        r = app.store.campaign_report(c.id).await.unwrap();
    }

    assert_eq!(r.enqueued, n, "{r:?}");
    assert_eq!(r.sent, n, "{r:?}");
    assert_eq!(
        r.status(Status::Delivered),
        14,
        "1..=6 twice, and both non-GSM names: {r:?}"
    );
    assert_eq!(r.status(Status::Undelivered), 2, "{r:?}");
    assert_eq!(r.status(Status::Expired), 2, "{r:?}");
    assert_eq!(
        r.status(Status::Rejected),
        4,
        "8 rejected + 7 invalid: {r:?}"
    );
    for s in [Status::Failed, Status::Unknown, Status::Cancelled] {
        assert_eq!(r.status(s), 0, "{s:?}: {r:?}");
    }
    let flags: BTreeMap<String, i64> = r.flagged_by_reason.iter().cloned().collect();
    let want: BTreeMap<String, i64> = [
        ("expired", 2),
        ("invalid_number", 2),
        ("rejected", 2),
        ("undelivered", 2),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(flags, want, "{r:?}");
    let flag_rows = app.store.flags(Some(c.id), false).await.unwrap();
    assert_eq!(flag_rows.len(), 8, "{flag_rows:?}");
    for f in &flag_rows {
        assert_eq!(
            expected(last_digit(&f.phone)).1,
            Some(f.reason.as_str()),
            "{f:?}"
        );
    }

    // Every message: its status, its encoding, the aggregator's id, and its
    // receipts in the dialect's own form.
    let messages = campaign_messages(&db.url, c.id).await;
    assert_eq!(messages.len(), n as usize);
    for m in &messages {
        let digit = last_digit(&m.phone);
        let ctx = format!("message {} to …{digit} ({dialect})", m.id);
        assert_eq!(m.status, expected(digit).0.as_str(), "{ctx}: {m:?}");
        assert_eq!(m.gateway.as_deref(), Some("sim"), "{ctx}");
        let gmid = m
            .gateway_message_id
            .clone()
            .unwrap_or_else(|| panic!("{ctx}: the aggregator's id is recorded: {m:?}"));
        assert_eq!(m.encoding.as_deref(), Some("gsm7"), "{ctx}: {m:?}");
        assert_eq!(m.segments, Some(1), "{ctx}: {m:?}");
        if let Some(k) = non_gsm_phones.iter().position(|p| *p == m.phone) {
            let body = m.body.as_deref().unwrap_or("");
            assert!(
                body.starts_with(&format!("{} (NIK", NON_GSM_NAMES[k].1)),
                "{ctx}: the name is reduced to GSM-7: {m:?}"
            );
        }

        let receipts = app.store.receipts_for(m.id).await.unwrap();
        assert!(
            receipts
                .iter()
                .all(|x| x.message_id == Some(m.id) && x.gateway == "sim"),
            "{ctx}: {receipts:?}"
        );
        let applied: Vec<_> = receipts
            .iter()
            .filter(|x| x.effect.as_deref() == Some("applied"))
            .collect();
        assert_eq!(applied.len(), 1, "{ctx}: one applied receipt: {receipts:?}");
        let a = applied[0];
        assert_eq!(
            a.raw_status.as_deref(),
            Some(expected_raw(dialect, digit)),
            "{ctx}: {a:?}"
        );
        assert_eq!(
            a.outcome.as_deref(),
            Some(expected_outcome(digit)),
            "{ctx}: {a:?}"
        );
        assert_eq!(
            a.gateway_message_id.as_deref(),
            Some(gmid.as_str()),
            "{ctx}: {a:?}"
        );
        match dialect {
            SimDialect::Jasmin => {
                // Level 3: an SMSC-level report (`ESME_ROK`, intermediate)
                // precedes the handset receipt; a refused submit has only
                // its SMSC-level report.
                let want = if digit == 7 { 1 } else { 2 };
                assert_eq!(receipts.len(), want, "{ctx}: {receipts:?}");
                for x in &receipts {
                    assert!(
                        x.payload.contains("message_status=")
                            && x.payload.contains(&format!("id={gmid}"))
                            && x.payload.contains(&format!("pcid={}", m.id)),
                        "{ctx}: a Jasmin report: {:?}",
                        x.payload
                    );
                    if x.id != a.id {
                        assert_eq!(x.raw_status.as_deref(), Some("ESME_ROK"), "{x:?}");
                        assert_eq!(x.effect.as_deref(), Some("intermediate"), "{x:?}");
                    }
                }
            }
            _ => {
                assert_eq!(receipts.len(), 1, "{ctx}: {receipts:?}");
                // The stored payload: our `pcid` query, then the JSON body.
                let (query, body) = a
                    .payload
                    .split_once('\n')
                    .unwrap_or_else(|| panic!("{ctx}: query and body: {:?}", a.payload));
                assert_eq!(query, format!("pcid={}", m.id), "{ctx}");
                let json: serde_json::Value = serde_json::from_str(body)
                    .unwrap_or_else(|e| panic!("{ctx}: a JSON body ({e}): {body:?}"));
                assert_eq!(json["message_id"], gmid.as_str(), "{ctx}: {json}");
                assert_eq!(json["reference"], m.id.to_string(), "{ctx}: {json}");
                assert_eq!(
                    json["status"],
                    expected_raw(dialect, digit),
                    "{ctx}: {json}"
                );
            }
        }
    }

    // The simulator's side: one submit per worker, every callback taken the
    // first time, and (Jasmin) every one answered exactly `ACK/Jasmin`.
    let want_callbacks = match dialect {
        SimDialect::Jasmin => 2 * (n as u64 - 2) + 2,
        _ => n as u64,
    };
    let limit = Instant::now() + Duration::from_secs(10);
    let mut st = sim.stats();
    while st.callbacks_sent < want_callbacks && Instant::now() < limit {
        tokio::time::sleep(Duration::from_millis(50)).await;
        st = sim.stats();
    }
    assert_eq!(st.submits_total, n as u64, "{st:?}");
    assert_eq!(st.duplicates, 0, "{st:?}");
    assert_eq!(st.rejected_requests, 0, "{st:?}");
    assert_eq!(st.callbacks_sent, want_callbacks, "{st:?}");
    assert_eq!(st.callbacks_failed, 0, "{st:?}");
    assert_eq!(st.callbacks_unacknowledged, 0, "{st:?}");
    assert_eq!(
        st.callback_attempts, want_callbacks,
        "no callback was retried: {st:?}"
    );

    app.stop(Duration::from_secs(5)).await;
    eprintln!(
        "{backend}/{dialect}: {n} messages settled after {settled:?}, whole test {:?}",
        t0.elapsed()
    );
}

async fn jasmin_campaign(backend: &str) {
    campaign_through(backend, SimDialect::Jasmin).await
}
both_backends!(jasmin_campaign);

async fn json_campaign(backend: &str) {
    campaign_through(backend, SimDialect::Json).await
}
both_backends!(json_campaign);

/// A JSON receipt that carries neither our reference nor `pcid`, only the
/// aggregator's id written in another case and/or with leading zeros, still
/// finds its message.
async fn json_receipt_matched_by_aggregator_id_alone(backend: &str) {
    let db = TestDb::new(backend).await;
    // 5 = accepted but never a receipt: the test sends the receipts itself.
    // No `{{callback_url}}` in the template: an aggregator on one fixed
    // URL, the only kind the gateway-wide token is accepted from.
    let mut settings = dialect_settings(&db, SimDialect::Json, "5=no_receipt");
    settings.gateways[0].dialect = GatewayDialect::Simulator(Some(
        JsonConfig {
            body_template: r#"{"to": "{{to}}", "text": "{{text}}", "sender": "{{sender}}"}"#
                .to_string(),
            ..Default::default()
        }
        .into(),
    ));
    let app = start(settings, Parts::ALL).await;
    let n = 4u32;
    let mut csv = String::from(HEADER);
    for i in 0..n {
        csv.push_str(&row(i, "31", &format!("{:07}5", i)));
    }
    assert_eq!(import_text(&app.store, &csv).await.accepted, u64::from(n));
    let (c, _) = create_campaign(&app, campaign_request("by-id")).await;
    let t0 = Instant::now();
    loop {
        let r = app.store.campaign_report(c.id).await.unwrap();
        if r.status(Status::Sent) == i64::from(n) && r.unrecorded == 0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "never all sent: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let messages = campaign_messages(&db.url, c.id).await;
    assert_eq!(messages.len(), n as usize);

    let url = format!(
        "http://127.0.0.1:{}/callbacks/sim/{TOKEN}",
        app.port().expect("http runs")
    );
    let client = reqwest::Client::new();
    // (how the aggregator writes its id, status, what the message becomes)
    type Case = (fn(&str) -> String, &'static str, Status);
    let cases: [Case; 4] = [
        (|id| id.to_uppercase(), "DELIVERED", Status::Delivered),
        (|id| format!("000{id}"), "failed", Status::Undelivered),
        (
            |id| format!("00{}", id.to_uppercase()),
            "Expired",
            Status::Expired,
        ),
        (|id| format!(" 0{id} "), "REJECTED", Status::Rejected),
    ];
    for (m, (write, status, _)) in messages.iter().zip(cases) {
        let gmid = m.gateway_message_id.clone().expect("aggregator id");
        let theirs = write(&gmid);
        assert_ne!(theirs, gmid, "the test must send another spelling");
        let body = serde_json::json!({ "message_id": theirs, "status": status, "error": null });
        let resp = client.post(&url).json(&body).send().await.unwrap();
        let code = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(code, 200, "{theirs:?}: {text}");

        let receipts = app.store.receipts_for(m.id).await.unwrap();
        assert_eq!(
            receipts.len(),
            1,
            "{theirs:?} → message {}: {receipts:?}",
            m.id
        );
        let x = &receipts[0];
        assert_eq!(x.effect.as_deref(), Some("applied"), "{x:?}");
        assert_eq!(
            x.gateway_message_id.as_deref(),
            Some(theirs.trim()),
            "{x:?}"
        );
        assert_eq!(x.raw_status.as_deref(), Some(status), "{x:?}");
        assert!(x.payload.contains(&theirs), "stored raw: {x:?}");
    }
    let after = campaign_messages(&db.url, c.id).await;
    for (m, (_, _, want)) in after.iter().zip(cases) {
        assert_eq!(m.status, want.as_str(), "{m:?}");
    }
    let r = app.store.campaign_report(c.id).await.unwrap();
    let flags: BTreeMap<String, i64> = r.flagged_by_reason.iter().cloned().collect();
    assert_eq!(flags.get("undelivered"), Some(&1), "{r:?}");
    assert_eq!(flags.get("expired"), Some(&1), "{r:?}");
    assert_eq!(flags.get("rejected"), Some(&1), "{r:?}");
    assert_eq!(r.in_flight(), 0, "{r:?}");
    app.stop(Duration::from_secs(5)).await;
}
both_backends!(json_receipt_matched_by_aggregator_id_alone);

/// The "sim" gateway (`dialect = "simulator"`) is wired to the simulator
/// with the simulator's credentials in every dialect: for JSON that is the
/// Bearer token.
async fn json_sim_gateway_uses_the_simulator_password(backend: &str) {
    let db = TestDb::new(backend).await;
    let mut s = dialect_settings(&db, SimDialect::Json, "");
    s.simulator.password = carrier_sim::Password::new("not-the-default-token");
    let app = start(s, Parts::ALL).await;
    let mut csv = String::from(HEADER);
    for i in 0..3u32 {
        csv.push_str(&row(i, "31", &format!("{:07}1", i)));
    }
    assert_eq!(import_text(&app.store, &csv).await.accepted, 3);
    let (c, _) = create_campaign(&app, campaign_request("token")).await;
    let r = wait_done(&app.store, c.id, Duration::from_secs(30)).await;
    let st = app.simulator.clone().unwrap().stats();
    assert_eq!(
        st.rejected_requests, 0,
        "the simulator refused our token: {st:?} {r:?}"
    );
    assert_eq!(r.status(Status::Delivered), 3, "{r:?}");
    app.stop(Duration::from_secs(5)).await;
}
// bug (fixed): App::start pointed the "sim" gateway at the simulator but, in the JSON
// dialect, leaves `json.auth` at its default Bearer token "secret" instead of
// the simulator's password (it copies username/password for kannel and
// jasmin): any other `simulator.password` makes every send a 401, failed
// `rejected`.
mod json_sim_gateway_uses_the_simulator_password {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::json_sim_gateway_uses_the_simulator_password("sqlite").await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::json_sim_gateway_uses_the_simulator_password("postgres").await
    }
}

/// Settings naming every dialect load (the settings check must know every
/// dialect `App::start` builds).
#[test]
fn settings_accept_every_dialect() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(&file, "").unwrap();
    for dialect in Dialect::ALL {
        let mut env = vec![
            (
                "PEDULICOVID__GATEWAYS__0__NAME".to_string(),
                "g".to_string(),
            ),
            (
                "PEDULICOVID__GATEWAYS__0__DIALECT".to_string(),
                dialect.as_str().to_string(),
            ),
        ];
        if let Some(field) = dialect.url_field() {
            env.push((
                format!(
                    "PEDULICOVID__GATEWAYS__0__{}",
                    field.replace('.', "__").to_ascii_uppercase()
                ),
                "http://127.0.0.1:1/send".to_string(),
            ));
        }
        let s = Settings::load_from(Some(&file), env)
            .unwrap_or_else(|e| panic!("dialect {dialect}: {e:#}"));
        assert_eq!(s.gateways[0].dialect, dialect);
    }
}
