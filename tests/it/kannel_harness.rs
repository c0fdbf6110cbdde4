//! A whole campaign through the REAL carrier harness (`shared/carrier`:
//! Kannel 1.4.5 bearerbox + smsbox and the SMPP SMSC simulator) on both
//! databases: import → campaign → worker → `GET /cgi-bin/sendsms` → SMPP →
//! receipts → Kannel's `dlr-url` callbacks → statuses, receipts and flags.
//!
//! The harness is started here if it is not up (`start.sh` is idempotent and
//! installs Kannel with apt-get when missing, which needs root). It is left
//! running at the end: other tests may use it, and the suite's script stops
//! it. A harness that cannot start fails the test with start.sh's output;
//! nothing is skipped silently.
//!
//! The simulator's default rules decide each outcome from the destination's
//! last digit: 0 UNDELIV, 9 EXPIRED (Kannel reports `%d` = 34), 8 REJECTD,
//! 7 NACK invalid destination (`%d` = 16), 1-6 DELIVRD.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::carrier::carrier;
use crate::common::*;
use pedulicovid::app::Parts;
use pedulicovid::config::GatewaySettings;
use pedulicovid::gateway::kannel::{KannelConfig, KannelMethod};
use pedulicovid::secret::Secret;
use pedulicovid::status::Status;

/// The running SMSC simulator's command line, for failure messages: a
/// harness started with other `SMSC_SIM_ARGS` (`--rules`, `--no-tlv`)
/// explains different outcomes.
fn simulator_cmdline(run_dir: &Path) -> String {
    std::fs::read_to_string(run_dir.join("smsc_sim.pid"))
        .ok()
        .and_then(|pid| std::fs::read(format!("/proc/{}/cmdline", pid.trim())).ok())
        .map(|b| {
            String::from_utf8_lossy(&b)
                .replace('\0', " ")
                .trim()
                .to_string()
        })
        .unwrap_or_else(|| "not found".to_string())
}

/// What the simulator's default rules do with a number ending in `digit`:
/// (message status, flag reason, Kannel `%d`, SMSC id present).
fn expected(digit: u32) -> (Status, Option<&'static str>, &'static str, bool) {
    match digit {
        0 => (Status::Undelivered, Some("undelivered"), "2", true),
        9 => (Status::Expired, Some("expired"), "34", true),
        8 => (Status::Rejected, Some("rejected"), "2", true),
        7 => (Status::Rejected, Some("invalid_number"), "16", false),
        _ => (Status::Delivered, None, "1", true),
    }
}

/// The receipt outcome name stored for a number ending in `digit`.
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

/// `(id, phone, status, gateway)` of every message of a campaign, read with
/// plain sqlx (the store has no listing of a campaign's messages).
async fn campaign_messages(url: &str, campaign: i64) -> Vec<(i64, String, String, Option<String>)> {
    let sql = "SELECT id, phone, status, gateway FROM messages WHERE campaign_id = $1 ORDER BY id";
    sql_rows(url, sql, &[campaign]).await
}

async fn campaign_through_real_kannel(backend: &str) {
    campaign_through_kannel(backend, KannelMethod::Get).await;
}
both_backends!(campaign_through_real_kannel);

/// The same campaign with the gateway in Kannel's POST mode (the text as
/// the body, the other fields as `X-Kannel-*` headers): Kannel 1.4.5 takes
/// it, and every outcome, receipt and text comes back the same.
async fn campaign_through_real_kannel_in_post_mode(backend: &str) {
    campaign_through_kannel(backend, KannelMethod::Post).await;
}
both_backends!(campaign_through_real_kannel_in_post_mode);

async fn campaign_through_kannel(backend: &str, method: KannelMethod) {
    let t0 = Instant::now();
    let carrier = carrier().await;
    let harness_ready = t0.elapsed();

    let db = TestDb::new(backend).await;
    let mut s = test_settings(&db);
    s.gateways = vec![GatewaySettings {
        name: "kannel".into(),
        dialect: KannelConfig {
            sendsms_url: carrier.sendsms_url.clone(),
            username: carrier.username.clone(),
            password: Secret::new(carrier.password.clone()),
            method,
            ..KannelConfig::default()
        }
        .into(),
        ..GatewaySettings::default()
    }];
    let app = start(s, Parts::ALL).await;
    assert!(
        app.simulator.is_none(),
        "the built-in simulator must be off"
    );

    // 20 workers: every outcome digit twice, spread over WIB (31, Jakarta),
    // WITA (73, Sulawesi Selatan) and WIT (94, Papua). Phone tails are
    // 8 digits: backend (1 sqlite, 2 postgres: both tests share the one
    // Kannel at the same time), a per-run token, the worker index, and the
    // outcome digit last.
    let b = match (backend, method) {
        ("sqlite", KannelMethod::Get) => 1,
        (_, KannelMethod::Get) => 2,
        ("sqlite", KannelMethod::Post) => 3,
        (_, KannelMethod::Post) => 4,
    };
    let run = (uuid::Uuid::new_v4().as_u128() % 10_000) as u32;
    let provinces = ["31", "73", "94"];
    let n = 20u32;
    let mut csv = String::from(HEADER);
    for i in 0..n {
        let tail = format!("{b}{run:04}{i:02}{}", i % 10);
        csv.push_str(&row(i, provinces[(i % 3) as usize], &tail));
    }
    let imported = import_text(&app.store, &csv).await;
    assert_eq!(u64::from(n), imported.accepted, "{:?}", imported.rejections);

    let (c, enqueued) = create_campaign(
        &app,
        campaign_request(&format!("kannel harness {backend} {method:?}")),
    )
    .await;
    assert_eq!(enqueued, u64::from(n));

    let sent_at = Instant::now();
    let mut r = wait_done(&app.store, c.id, Duration::from_secs(60)).await;
    let settled = sent_at.elapsed();
    // A fast callback (the NACK's type 16 comes with the submit_sm_resp) can
    // make a message final before the worker has recorded `sent_at`; the
    // record follows right after.
    let limit = Instant::now() + Duration::from_secs(10);
    while r.sent < i64::from(n) && Instant::now() < limit {
        tokio::time::sleep(Duration::from_millis(50)).await;
        r = app.store.campaign_report(c.id).await.expect("report");
    }
    let ctx = format!(
        "{r:?} (harness run dir {}, simulator: {})",
        carrier.run_dir.display(),
        simulator_cmdline(&carrier.run_dir)
    );

    assert_eq!(r.enqueued, i64::from(n), "{ctx}");
    assert_eq!(r.sent, i64::from(n), "every message went to Kannel: {ctx}");
    assert_eq!(r.status(Status::Delivered), 12, "{ctx}"); // 1..=6, twice
    assert_eq!(r.status(Status::Undelivered), 2, "{ctx}"); // 0
    assert_eq!(r.status(Status::Expired), 2, "{ctx}"); // 9
    assert_eq!(r.status(Status::Rejected), 4, "{ctx}"); // 8 rejected + 7 invalid number
    for s in [Status::Failed, Status::Unknown, Status::Cancelled] {
        assert_eq!(r.status(s), 0, "{s:?}: {ctx}");
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
    assert_eq!(flags, want, "{ctx}");

    // Each open flag names the worker whose number carried that outcome.
    let flag_rows = app.store.flags(Some(c.id), false).await.expect("flags");
    assert_eq!(flag_rows.len(), 8, "{flag_rows:?}");
    for f in &flag_rows {
        assert_eq!(
            expected(last_digit(&f.phone)).1,
            Some(f.reason.as_str()),
            "{f:?}"
        );
    }

    // Every message: the expected status, sent through "kannel", and a stored
    // receipt that was applied, carrying Kannel's own `%d`.
    let messages = campaign_messages(&db.url, c.id).await;
    assert_eq!(messages.len(), n as usize);
    let mut raw_34 = 0;
    let mut samples = 0;
    for (id, phone, status, gateway) in &messages {
        let digit = last_digit(phone);
        let (want_status, _, want_raw, has_fid) = expected(digit);
        assert_eq!(status, want_status.as_str(), "message {id} to …{digit}");
        assert_eq!(gateway.as_deref(), Some("kannel"), "message {id}");
        let receipts = app.store.receipts_for(*id).await.expect("receipts");
        let applied: Vec<_> = receipts
            .iter()
            .filter(|x| x.effect.as_deref() == Some("applied"))
            .collect();
        assert_eq!(
            applied.len(),
            1,
            "message {id} to …{digit}: one applied receipt expected: {receipts:?}"
        );
        let a = applied[0];
        assert_eq!(a.gateway, "kannel", "{a:?}");
        assert_eq!(a.raw_status.as_deref(), Some(want_raw), "{a:?}");
        assert_eq!(a.outcome.as_deref(), Some(expected_outcome(digit)), "{a:?}");
        assert_eq!(a.gateway_message_id.is_some(), has_fid, "{a:?}");
        if a.raw_status.as_deref() == Some("34") {
            raw_34 += 1;
        }
        // The text reached the SMSC as rendered (spaces, punctuation: the
        // form encoding of sendsms, decoded by Kannel): the SMSC's receipt
        // quotes its first 20 characters back (a NACK quotes nothing).
        if let Some(sample) = receipt_text_sample(&a.payload) {
            let body: Vec<(Option<String>,)> =
                sql_rows(&db.url, "SELECT body FROM messages WHERE id = $1", &[*id]).await;
            let body = body[0].0.clone().expect("a sent message keeps its body");
            let want: String = body
                .chars()
                .take(20)
                .map(|c| if (' '..='~').contains(&c) { c } else { '.' })
                .collect();
            assert_eq!(sample, want, "message {id}: the text the SMSC received");
            samples += 1;
        }
        // No callback may land on a message it is not for.
        assert!(
            receipts.iter().all(|x| x.message_id == Some(*id)),
            "{receipts:?}"
        );
    }
    assert!(samples >= 12, "receipts quoting the text: {samples}");
    assert_eq!(
        raw_34, 2,
        "expired receipts arrive as Kannel's bitmask 34 (EXPIRED|FAIL)"
    );

    app.stop(Duration::from_secs(5)).await;
    eprintln!(
        "{backend} {method:?}: harness ready after {harness_ready:?}, {n} messages settled \
         {settled:?} after the campaign was created, whole test {:?}",
        t0.elapsed()
    );
    // The harness stays up on purpose (see the module docs).
}

/// The `text:` field of the SMSC's receipt (Kannel's `%A`, the `answer` of
/// our `dlr-url`): the first 20 characters of the message as the SMSC
/// received it, non-printable ones as `.`.
fn receipt_text_sample(payload: &str) -> Option<String> {
    let answer = url::form_urlencoded::parse(payload.as_bytes())
        .find(|(k, _)| k == "answer")?
        .1
        .into_owned();
    let at = answer.find("text:")?;
    Some(answer[at + "text:".len()..].to_string())
}

/// Kannel hands the SMSC the same text whichever way it came (a `GET`'s
/// form-encoded `text` with `charset=UTF-8`, or a POST's UTF-8 body): a
/// GSM-7 text with extension characters, and a UCS-2 one that Kannel
/// must convert to UTF-16BE, not read as pairs of bytes. Each SMSC receipt
/// quotes the first 20 characters as the SMSC received them (anything
/// outside printable ASCII as `.`), and comes back to a receiver here.
#[tokio::test]
async fn real_kannel_gets_the_same_text_by_get_and_by_post() {
    use pedulicovid::domain::{Msisdn, SmsText};
    use pedulicovid::gateway::http::{gateway_client, GatewayTls};
    use pedulicovid::gateway::kannel::KannelGateway;
    use pedulicovid::gateway::{Gateway, OutboundSms};

    let carrier = carrier().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let receiver = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(uri.query().unwrap_or_default().to_string());
            "OK"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, receiver).await;
    });

    let gsm = "Yth. Budi {ok} [x] ~ 5€ ^_^";
    let ucs2 = "Vaksinasi 疫苗 Ñ ok";
    let run = uuid::Uuid::new_v4().as_u128() % 100_000;
    let mut sent = BTreeMap::new();
    for (m, method) in [KannelMethod::Get, KannelMethod::Post]
        .into_iter()
        .enumerate()
    {
        let gw = KannelGateway::new(
            "kannel",
            KannelConfig {
                sendsms_url: carrier.sendsms_url.clone(),
                username: carrier.username.clone(),
                password: Secret::new(carrier.password.clone()),
                method,
                ..KannelConfig::default()
            },
            format!("http://{addr}/cb").as_str().into(),
            gateway_client("kannel", &GatewayTls::default(), Duration::from_secs(10), 2)
                .expect("client"),
        );
        for (t, text) in [gsm, ucs2].into_iter().enumerate() {
            let id = (10 * m + t) as i64;
            // Ends in 1: delivered, by the SMSC simulator's rules.
            let number = format!("+62813{run:05}{id:02}1");
            gw.send(&OutboundSms {
                message_id: id,
                to: Msisdn::parse(&number).expect("valid"),
                text: SmsText::new(text),
            })
            .await
            .unwrap_or_else(|e| panic!("{method:?} {text:?}: {e:?}"));
            sent.insert(id, (method, text));
        }
    }

    let mut samples: BTreeMap<i64, String> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while samples.len() < sent.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(query)) = tokio::time::timeout(left, rx.recv()).await else {
            panic!("receipts for {:?} only, of {sent:?}", samples.keys());
        };
        let pairs: BTreeMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let id: i64 = pairs["id"].parse().expect("our id");
        assert_eq!(pairs["status"], "1", "delivered: {pairs:?}");
        let sample = receipt_text_sample(&query).expect("the receipt quotes the text");
        samples.insert(id, sample);
    }
    // UCS-2 decoded as the SMSC received it: only a correct UTF-16BE
    // conversion gives back the Latin letters around the dots.
    let want_ucs2 = "Vaksinasi .. . ok";
    assert_eq!(samples[&1], want_ucs2, "GET, UCS-2");
    assert_eq!(samples[&11], want_ucs2, "POST, UCS-2");
    assert!(
        samples[&0].starts_with("Yth. Budi "),
        "GET, GSM-7: {:?}",
        samples[&0]
    );
    assert_eq!(samples[&10], samples[&0], "POST and GET, GSM-7");
}
