//! A re-registration only the worker can make (issue 10, point 6), through
//! the real app on both databases: a phone-only look-up shows no NIK digit
//! or name; a wrong name and an unknown NIK are refused identically and
//! change nothing; the 6th failure-locked attempt gets 429 + Retry-After
//! even with correct data (per NIK, known or not, and per number); support
//! staff see and lift a lock; in the default `validated` mode nothing is
//! sent until a One Data import carries the new number (then exactly one
//! notice) or support staff approve; in the `immediate` mode the notice
//! carries no NIK digits; a caller cannot move another worker.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use pedulicovid::app::{App, Parts};
use pedulicovid::store::{ReregistrationMode, Role, Store};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The running app, its tokens and a client.
struct Bot {
    app: App,
    base: String,
    http: reqwest::Client,
    bot: String,
    support: String,
    operator: String,
    // Dropped last: the database outlives the app.
    db: TestDb,
}

/// Workers 1 and 2 (Jakarta) and 3 (Sulawesi Selatan), validated and
/// eligible, named "Nakes Nomor {i}".
fn registry() -> String {
    format!(
        "{HEADER}{}{}{}",
        row(1, "31", "00000011"),
        row(2, "31", "00000021"),
        row(3, "73", "00000031")
    )
}

impl Bot {
    async fn start(backend: &str, mode: ReregistrationMode, parts: Parts) -> Bot {
        let db = TestDb::new(backend).await;
        let mut settings = ruled_settings(&db, "");
        settings.chatbot.reregistration = mode;
        let app = start(settings, parts).await;
        assert_eq!(import_text(&app.store, &registry()).await.accepted, 3);
        let base = base_url(&app);
        let bot = app
            .store
            .create_token("bot", Role::Chatbot)
            .await
            .unwrap()
            .secret;
        let support = app
            .store
            .create_token("desk", Role::Support)
            .await
            .unwrap()
            .secret;
        let operator = app
            .store
            .create_token("ops", Role::Operator)
            .await
            .unwrap()
            .secret;
        Bot {
            app,
            base,
            http: reqwest::Client::new(),
            bot,
            support,
            operator,
            db,
        }
    }

    fn store(&self) -> &Store {
        &self.app.store
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> reqwest::Response {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            r = r.json(b);
        }
        if let Some(k) = key {
            r = r.header("Idempotency-Key", k);
        }
        r.send().await.expect("request")
    }

    /// A re-registration: (status, Retry-After, body text). Each call its
    /// own Idempotency-Key. Paced under the chatbot's per-token rate.
    async fn rereg(&self, nik: &str, name: &str, phone: &str) -> (StatusCode, Option<u64>, String) {
        tokio::time::sleep(Duration::from_millis(60)).await;
        let body = json!({"nik": nik, "full_name": name, "whatsapp_phone": phone});
        let key = uuid::Uuid::new_v4().to_string();
        let r = self
            .call(
                Method::POST,
                "/api/v1/chatbot/reregister",
                &self.bot,
                Some(&body),
                Some(&key),
            )
            .await;
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().parse().unwrap());
        (r.status(), retry, r.text().await.unwrap())
    }

    async fn json(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let r = self.call(method, path, token, body.as_ref(), None).await;
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    async fn phone_of_worker(&self, i: u32, prov: &str) -> String {
        self.store()
            .worker_by_nik(&nik_of(i, prov))
            .await
            .unwrap()
            .unwrap()
            .phone
            .as_e164()
            .to_string()
    }

    /// (id, phone, status, body) of every message, oldest first.
    async fn messages(&self) -> Vec<(i64, String, String, Option<String>)> {
        sql_rows(
            &self.db.url,
            "SELECT id, phone, status, body FROM messages ORDER BY id",
            &[],
        )
        .await
    }

    /// Every audit entry as one string.
    async fn audit_text(&self) -> Vec<String> {
        let rows: Vec<(String, String, String, String)> = sql_rows(
            &self.db.url,
            "SELECT actor, action, subject, detail FROM audit_log ORDER BY id",
            &[],
        )
        .await;
        rows.into_iter()
            .map(|(a, b, c, d)| format!("{a} | {b} | {c} | {d}"))
            .collect()
    }

    /// [`open_windows_now`] on this test's database.
    async fn open_windows_now(&self) {
        open_windows_now(&self.db.url).await;
    }

    async fn stop(self) {
        self.app.stop(Duration::from_secs(5)).await;
    }
}

/// Polls `f` until it returns true, or panics after `limit`.
async fn wait_until<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every string and number in a JSON value, with its path.
fn leaves(v: &Value, path: String, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => m
            .iter()
            .for_each(|(k, x)| leaves(x, format!("{path}.{k}"), out)),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| leaves(x, format!("{path}[{i}]"), out)),
        Value::String(s) => out.push((path, s.clone())),
        Value::Number(n) => out.push((path, n.to_string())),
        _ => {}
    }
}

// ---------------------------------------------------------------- look-up

async fn phone_only_lookup_shows_no_nik_or_name(backend: &str) {
    let b = Bot::start(backend, ReregistrationMode::Validated, Parts::SERVE).await;
    let nik = nik_of(1, "31");
    for body in [
        json!({"phone": "081200000011"}),
        json!({"phone": "+62 812-0000-0011"}),
        json!({"nik": &nik, "whatsapp_phone": "081200000011"}),
        json!({"nik": &nik, "whatsapp_phone": "081300000001"}),
        json!({"nik_last6": &nik[10..], "phone": "081200000011"}),
    ] {
        let (s, a) = b
            .json(
                Method::POST,
                "/api/v1/chatbot/lookup",
                &b.bot,
                Some(body.clone()),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(a["found"], true, "{body}: {a}");
        let mut all = vec![];
        leaves(&a, String::new(), &mut all);
        assert!(!all.is_empty());
        for (path, value) in all {
            // Not the last 4 digits (the old `nik_last4`), not the last 6,
            // not any part of the name.
            assert!(!value.contains(&nik[12..]), "{body}: {path} = {value}");
            assert!(!value.contains(&nik[10..]), "{body}: {path} = {value}");
            let v = value.to_lowercase();
            assert!(
                !v.contains("nakes") && !v.contains("nomor"),
                "{body}: {path} = {value}"
            );
        }
        assert!(
            a.as_object()
                .unwrap()
                .keys()
                .all(|k| !k.contains("nik") && !k.contains("name")),
            "{a}"
        );
    }
    b.stop().await;
}
both_backends!(phone_only_lookup_shows_no_nik_or_name);

// ---------------------------------------------------------------- refusals

async fn wrong_name_and_unknown_nik_are_refused_identically(backend: &str) {
    let b = Bot::start(backend, ReregistrationMode::Immediate, Parts::SERVE).await;
    let new = "081300000101";
    let mut answers = vec![];
    for (nik, name) in [
        // Worker 1's NIK with worker 2's name.
        (nik_of(1, "31"), "Nakes Nomor 2"),
        // A part of the name is not the name.
        (nik_of(1, "31"), "Nakes Nomor"),
        // A NIK no one has, with a registered name.
        (nik_of(77, "31"), "Nakes Nomor 1"),
    ] {
        let (s, retry, text) = b.rereg(&nik, name, new).await;
        assert_eq!((s, retry), (StatusCode::NOT_FOUND, None), "{text}");
        answers.push(text);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    assert!(!answers[0].contains(&nik_of(1, "31")[12..]));
    // Nothing changed: numbers, notices, re-registrations.
    assert_eq!(b.phone_of_worker(1, "31").await, "+6281200000011");
    assert_eq!(b.phone_of_worker(2, "31").await, "+6281200000021");
    assert!(b.messages().await.is_empty());
    assert!(b
        .store()
        .reregistrations(None, None, 10)
        .await
        .unwrap()
        .is_empty());
    // Malformed input is a 400 naming the field, and no failed attempt.
    for (body, field) in [
        (
            json!({"nik": "123", "full_name": "x", "whatsapp_phone": new}),
            "nik",
        ),
        (
            json!({"nik": nik_of(1, "31"), "full_name": " .'- ", "whatsapp_phone": new}),
            "full_name",
        ),
        (
            json!({"nik": nik_of(1, "31"), "full_name": "x", "whatsapp_phone": "12"}),
            "whatsapp_phone",
        ),
    ] {
        let r = b
            .call(
                Method::POST,
                "/api/v1/chatbot/reregister",
                &b.bot,
                Some(&body),
                Some("k"),
            )
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["field"], field, "{e}");
    }
    // The old `nik_last6` re-registration is gone.
    let old =
        json!({"nik_last6": &nik_of(1, "31")[10..], "old_phone": "081200000011", "new_phone": new});
    let r = b
        .call(
            Method::POST,
            "/api/v1/chatbot/reregister",
            &b.bot,
            Some(&old),
            Some("k2"),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    b.stop().await;
}
both_backends!(wrong_name_and_unknown_nik_are_refused_identically);

/// A caller that proves worker 1 moves worker 1 only; one that knows
/// worker 2's NIK and worker 3's name moves no one.
async fn a_caller_cannot_move_a_worker_it_has_not_proved(backend: &str) {
    let b = Bot::start(backend, ReregistrationMode::Immediate, Parts::SERVE).await;
    let (s, _, text) = b
        .rereg(&nik_of(2, "31"), "Nakes Nomor 3", "081300000201")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{text}");
    let (s, _, text) = b
        .rereg(&nik_of(3, "73"), "Nakes Nomor 2", "081300000201")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{text}");
    let (s, _, text) = b
        .rereg(&nik_of(1, "31"), "nakes nomor 1", "081300000201")
        .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert_eq!(b.phone_of_worker(1, "31").await, "+6281300000201");
    assert_eq!(b.phone_of_worker(2, "31").await, "+6281200000021");
    assert_eq!(b.phone_of_worker(3, "73").await, "+6281200000031");
    let w1 = worker_id(b.store(), &nik_of(1, "31")).await;
    let msgs: Vec<(i64,)> =
        sql_rows(&b.db.url, "SELECT worker_id FROM messages ORDER BY id", &[]).await;
    assert_eq!(msgs, vec![(w1,)]);
    b.stop().await;
}
both_backends!(a_caller_cannot_move_a_worker_it_has_not_proved);

// ---------------------------------------------------------------- locks

async fn the_sixth_attempt_is_locked_even_with_correct_data(backend: &str) {
    let b = Bot::start(backend, ReregistrationMode::Validated, Parts::SERVE).await;
    let nik1 = nik_of(1, "31");
    // Five wrong names for worker 1, each from another number: the NIK's
    // counter locks, no number's does.
    for i in 0..5 {
        let (s, _, _) = b
            .rereg(&nik1, "Siti Rahayu", &format!("08130000030{i}"))
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    let (s, retry, text) = b.rereg(&nik1, "Nakes Nomor 1", "081300000399").await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{text}");
    let retry = retry.expect("Retry-After");
    assert!((86_000..=86_400).contains(&retry), "{retry}");
    assert!(b
        .store()
        .reregistrations(None, None, 10)
        .await
        .unwrap()
        .is_empty());

    // A NIK no one has locks the same way: a lock says nothing about
    // whether the NIK exists.
    let ghost = nik_of(66, "31");
    for i in 0..5 {
        let (s, _, _) = b
            .rereg(&ghost, "Nakes Nomor 1", &format!("08130000031{i}"))
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    let (s, retry2, text2) = b.rereg(&ghost, "Nakes Nomor 1", "081300000398").await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry2.is_some());
    // The same words but the times (the lock's own).
    let strip = |t: &str| t.split(" until ").next().unwrap().to_string();
    assert_eq!(strip(&text), strip(&text2));

    // One number trying five unknown NIKs: that number is locked, even for
    // a worker it proves; the worker can still use another number.
    let spray = "081300000333";
    for i in 0..5 {
        let (s, _, _) = b.rereg(&nik_of(40 + i, "31"), "Nakes Nomor 2", spray).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    let (s, retry, _) = b.rereg(&nik_of(2, "31"), "Nakes Nomor 2", spray).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry.is_some());
    let (s, _, text) = b
        .rereg(&nik_of(2, "31"), "Nakes Nomor 2", "081300000334")
        .await;
    assert_eq!(s, StatusCode::OK, "{text}");

    // Audited, without a NIK or a number in clear.
    let audit = b.audit_text().await;
    let locks = audit
        .iter()
        .filter(|a| a.contains("reregistration.lock"))
        .count();
    assert_eq!(locks, 3, "{audit:#?}");
    let w1 = worker_id(b.store(), &nik1).await;
    assert!(
        audit
            .iter()
            .any(|a| a.contains("reregistration.lock") && a.contains(&format!("worker:{w1}"))),
        "{audit:#?}"
    );
    for a in &audit {
        assert!(!a.contains(&nik1) && !a.contains(&ghost), "{a}");
        assert!(!a.contains("81300000"), "a number in clear: {a}");
    }
    b.stop().await;
}
both_backends!(the_sixth_attempt_is_locked_even_with_correct_data);

async fn support_sees_and_lifts_a_lock(backend: &str) {
    let b = Bot::start(backend, ReregistrationMode::Validated, Parts::SERVE).await;
    let nik1 = nik_of(1, "31");
    let w1 = worker_id(b.store(), &nik1).await;
    for i in 0..5 {
        b.rereg(&nik1, "Nakes Nomor 9", &format!("08130000040{i}"))
            .await;
    }
    let (s, _, _) = b.rereg(&nik1, "Nakes Nomor 1", "081300000499").await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);

    // On the worker's record for support staff.
    let path = format!("/api/v1/support/workers/{w1}/reregistrations");
    let (s, v) = b.json(Method::GET, &path, &b.support, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let locks = v["locks"].as_array().unwrap();
    assert_eq!(locks.len(), 1, "{v}");
    assert_eq!(locks[0]["key_kind"], "nik");
    assert_eq!(locks[0]["active"], true);
    assert_eq!(locks[0]["failures"], 5);
    let lock_id = locks[0]["id"].as_i64().unwrap();
    let (_, all) = b
        .json(
            Method::GET,
            "/api/v1/support/reregistration-locks",
            &b.support,
            None,
        )
        .await;
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
    // Worker 2 has none.
    let w2 = worker_id(b.store(), &nik_of(2, "31")).await;
    let (_, v2) = b
        .json(
            Method::GET,
            &format!("/api/v1/support/workers/{w2}/reregistrations"),
            &b.support,
            None,
        )
        .await;
    assert!(v2["locks"].as_array().unwrap().is_empty());

    // The chatbot cannot lift it; support staff can, with a reason.
    let lift = format!("/api/v1/support/reregistration-locks/{lock_id}/lift");
    let (s, _) = b
        .json(Method::POST, &lift, &b.bot, Some(json!({"reason": "x"})))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, e) = b
        .json(
            Method::POST,
            &lift,
            &b.support,
            Some(json!({"reason": " "})),
        )
        .await;
    assert_eq!(
        (s, e["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("reason"))
    );
    let (s, l) = b
        .json(
            Method::POST,
            &lift,
            &b.support,
            Some(json!({"staff": "Rina", "reason": "showed her KTP at the desk"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{l}");
    assert_eq!(l["active"], false);
    let (s, _) = b
        .json(
            Method::POST,
            &lift,
            &b.support,
            Some(json!({"reason": "again"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(b
        .audit_text()
        .await
        .iter()
        .any(|a| a.starts_with("Rina (via desk) | reregistration.unlock")
            && a.contains(&format!("worker:{w1}"))));
    // Fresh attempts: the correct data now goes through (pending).
    let (s, _, text) = b.rereg(&nik1, "Nakes Nomor 1", "081300000499").await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let a: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(a["status"], "pending_validation");
    b.stop().await;
}
both_backends!(support_sees_and_lifts_a_lock);

// ---------------------------------------------------------------- modes

async fn validated_mode_sends_nothing_until_an_import_confirms(backend: &str) {
    let b = Bot::start(backend, ReregistrationMode::Validated, Parts::ALL).await;
    let nik1 = nik_of(1, "31");
    let w1 = worker_id(b.store(), &nik1).await;
    let (s, _, text) = b.rereg(&nik1, "NAKES NOMOR 1", "0813-0000-0111").await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let a: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(a["status"], "pending_validation", "{a}");
    assert_eq!(a["reregistered"], false);
    assert!(a["notice"].is_null());
    assert_eq!(a["phone_masked"], "+62813****111");
    // Nothing moves while it waits.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let sim = b.app.simulator.clone().unwrap();
    assert_eq!(sim.submits_for("6281300000111"), 0);
    assert!(b.messages().await.is_empty());
    assert_eq!(b.phone_of_worker(1, "31").await, "+6281200000011");

    // Listed (masked) and exported (in full, audited) for the operator.
    let (s, list) = b
        .json(Method::GET, "/api/v1/reregistrations", &b.operator, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["new_phone_masked"], "+62813****111");
    assert!(!list.to_string().contains(&nik1));
    let r = b
        .call(
            Method::GET,
            "/api/v1/reregistrations/pending.csv",
            &b.operator,
            None,
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let csv = r.text().await.unwrap();
    assert!(
        csv.starts_with("reregistration_id,nik,full_name,old_phone,new_phone"),
        "{csv}"
    );
    assert!(
        csv.contains(&nik1) && csv.contains("+6281300000111") && csv.contains("+6281200000011"),
        "{csv}"
    );
    assert!(b
        .audit_text()
        .await
        .iter()
        .any(|a| a.starts_with("ops | reregistration.export")));
    // Support staff cannot export.
    let r = b
        .call(
            Method::GET,
            "/api/v1/reregistrations/pending.csv",
            &b.support,
            None,
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // An import carrying another number for the NIK confirms nothing.
    let other = format!("{HEADER}{}", row(1, "31", "00000012"));
    let rep = import_text(b.store(), &other).await;
    assert_eq!(rep.counts.reregistrations_confirmed, 0);
    assert_eq!(
        b.store()
            .reregistrations(Some("pending"), None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    // One Data's next export carries the new number: confirmed, and
    // exactly one notice goes to it.
    let confirmed = format!(
        "{HEADER}{}{}",
        row(1, "31", "00000012").replace("081200000012", "081300000111"),
        row(2, "31", "00000021")
    );
    let rep = import_text(b.store(), &confirmed).await;
    assert_eq!(rep.counts.reregistrations_confirmed, 1, "{rep:?}");
    b.open_windows_now().await;
    wait_until(
        "notice to the new number",
        Duration::from_secs(20),
        || async { sim.submits_for("6281300000111") >= 1 },
    )
    .await;
    // The send is recorded (with its body) after the carrier took it.
    wait_until("body recorded", Duration::from_secs(10), || async {
        b.messages().await.first().is_some_and(|m| m.3.is_some())
    })
    .await;
    let m = b.messages().await;
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0].1, "+6281300000111");
    // A validated number: the usual notice, with the last NIK digits.
    assert!(
        m[0].3.as_deref().unwrap_or("").contains(&nik1[12..]),
        "{m:?}"
    );
    let rr = b.store().reregistrations(None, Some(w1), 10).await.unwrap();
    assert_eq!(rr[0].status, "confirmed");
    assert_eq!(rr[0].message_id, Some(m[0].0));
    // The same import again changes nothing more.
    let rep = import_text(b.store(), &confirmed).await;
    assert_eq!(rep.counts.reregistrations_confirmed, 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sim.submits_for("6281300000111"), 1);
    assert_eq!(b.messages().await.len(), 1);
    assert!(b
        .audit_text()
        .await
        .iter()
        .any(|a| a.starts_with("one-data-import | reregistration.confirm")));
    b.stop().await;
}
both_backends!(validated_mode_sends_nothing_until_an_import_confirms);

/// Audit F3.2: one WhatsApp number with a leaked list of NIKs and names
/// can neither cancel a worker's own pending request nor file more than
/// 3 requests a day; the import that carries a number confirms the
/// request with that number, and the others are superseded.
async fn a_leaked_list_cannot_displace_pending_requests(backend: &str) {
    let b = Bot::start(backend, ReregistrationMode::Validated, Parts::ALL).await;
    import_text(b.store(), &format!("{HEADER}{}", row(4, "31", "00000041"))).await;
    let nik1 = nik_of(1, "31");
    let w1 = worker_id(b.store(), &nik1).await;
    let (s, _, text) = b.rereg(&nik1, "Nakes Nomor 1", "081300000151").await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let own: Value = serde_json::from_str(&text).unwrap();
    // The same request again is the same stored request.
    let (s, _, text) = b.rereg(&nik1, "Nakes Nomor 1", "081300000151").await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let again: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(again["status"], "pending_validation");
    assert_eq!(
        again["reregistration_id"], own["reregistration_id"],
        "{again}"
    );

    let attacker = "081300000999";
    for (i, prov) in [(1, "31"), (2, "31"), (3, "73")] {
        let (s, _, text) = b
            .rereg(&nik_of(i, prov), &format!("Nakes Nomor {i}"), attacker)
            .await;
        assert_eq!(s, StatusCode::OK, "worker {i}: {text}");
    }
    // The worker's own request still waits, next to the attacker's.
    let pending = b
        .store()
        .reregistrations(Some("pending"), Some(w1), 10)
        .await
        .unwrap();
    assert_eq!(pending.len(), 2, "{pending:?}");
    assert!(pending
        .iter()
        .any(|r| r.new_phone_masked == "+62813****151"));
    // A 4th worker from the same number: refused, nothing stored.
    let (s, retry, text) = b.rereg(&nik_of(4, "31"), "Nakes Nomor 4", attacker).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{text}");
    let retry = retry.expect("Retry-After");
    assert!(retry > 86_000 && retry <= 86_400, "{retry}");
    let w4 = worker_id(b.store(), &nik_of(4, "31")).await;
    assert!(b
        .store()
        .reregistrations(None, Some(w4), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        b.store()
            .reregistrations(Some("pending"), None, 10)
            .await
            .unwrap()
            .len(),
        4
    );

    // One Data carries the worker's own number: that request is confirmed,
    // the attacker's for the same worker superseded; nothing goes to the
    // attacker.
    let csv = format!(
        "{HEADER}{}",
        row(1, "31", "00000011").replace("081200000011", "081300000151")
    );
    let rep = import_text(b.store(), &csv).await;
    assert_eq!(rep.counts.reregistrations_confirmed, 1, "{rep:?}");
    let rr = b.store().reregistrations(None, Some(w1), 10).await.unwrap();
    let status_of = |masked: &str| {
        rr.iter()
            .find(|r| r.new_phone_masked == masked)
            .map(|r| r.status.clone())
    };
    assert_eq!(status_of("+62813****151").as_deref(), Some("confirmed"));
    assert_eq!(status_of("+62813****999").as_deref(), Some("superseded"));
    assert_eq!(b.phone_of_worker(1, "31").await, "+6281300000151");
    let m = b.messages().await;
    assert!(m.iter().all(|x| x.1 != "+6281300000999"), "{m:?}");
    b.stop().await;
}
both_backends!(a_leaked_list_cannot_displace_pending_requests);

/// Audit F3.2, the other paths: a support approval supersedes the worker's
/// other pending requests; in the `immediate` mode moves to a number not
/// on file count toward the same daily cap.
async fn approval_supersedes_and_immediate_moves_are_capped(backend: &str) {
    let b = Bot::start(backend, ReregistrationMode::Validated, Parts::SERVE).await;
    let nik2 = nik_of(2, "31");
    let w2 = worker_id(b.store(), &nik2).await;
    for phone in ["081300000261", "081300000262"] {
        let (s, _, t) = b.rereg(&nik2, "Nakes Nomor 2", phone).await;
        assert_eq!(s, StatusCode::OK, "{t}");
    }
    let pending = b
        .store()
        .reregistrations(Some("pending"), Some(w2), 10)
        .await
        .unwrap();
    assert_eq!(pending.len(), 2, "{pending:?}");
    let own = pending
        .iter()
        .find(|r| r.new_phone_masked == "+62813****261")
        .unwrap()
        .id;
    b.store()
        .approve_reregistration(
            own,
            &pedulicovid::domain::notice::FreeText::staff("desk").unwrap(),
            &pedulicovid::domain::notice::FreeText::note("called the facility").unwrap(),
        )
        .await
        .unwrap();
    let rr = b.store().reregistrations(None, Some(w2), 10).await.unwrap();
    let mut st: Vec<(String, String)> = rr
        .iter()
        .map(|r| (r.new_phone_masked.clone(), r.status.clone()))
        .collect();
    st.sort();
    assert_eq!(
        st,
        vec![
            ("+62813****261".to_string(), "approved".to_string()),
            ("+62813****262".to_string(), "superseded".to_string())
        ]
    );
    b.stop().await;

    let b = Bot::start(backend, ReregistrationMode::Immediate, Parts::SERVE).await;
    import_text(b.store(), &format!("{HEADER}{}", row(4, "31", "00000041"))).await;
    let attacker = "081300000998";
    for (i, prov) in [(1, "31"), (2, "31"), (3, "73")] {
        let (s, _, t) = b
            .rereg(&nik_of(i, prov), &format!("Nakes Nomor {i}"), attacker)
            .await;
        assert_eq!(s, StatusCode::OK, "worker {i}: {t}");
    }
    let (s, retry, t) = b.rereg(&nik_of(4, "31"), "Nakes Nomor 4", attacker).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{t}");
    // The request cap, not (only) the number's notice limit.
    assert!(t.contains("re-registration requests"), "{t}");
    assert!(retry.is_some());
    assert_eq!(b.phone_of_worker(4, "31").await, "+6281200000041");
    b.stop().await;
}
both_backends!(approval_supersedes_and_immediate_moves_are_capped);

async fn support_approval_sends_the_notice_once(backend: &str) {
    let b = Bot::start(backend, ReregistrationMode::Validated, Parts::ALL).await;
    let (s, _, text) = b
        .rereg(&nik_of(2, "31"), "Nakes Nomor 2", "081300000221")
        .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let id = b
        .store()
        .reregistrations(Some("pending"), None, 10)
        .await
        .unwrap()[0]
        .id;
    let path = format!("/api/v1/support/reregistrations/{id}/approve");
    let (s, _) = b
        .json(Method::POST, &path, &b.operator, Some(json!({"note": "x"})))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, a) = b
        .json(
            Method::POST,
            &path,
            &b.support,
            Some(json!({"note": "called the facility"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(a["status"], "reregistered");
    assert_eq!(a["phone_changed"], true);
    assert!(a["notice"]["message_id"].is_i64(), "{a}");
    b.open_windows_now().await;
    let sim = b.app.simulator.clone().unwrap();
    wait_until("approved notice", Duration::from_secs(20), || async {
        sim.submits_for("6281300000221") >= 1
    })
    .await;
    let (s, _) = b
        .json(
            Method::POST,
            &path,
            &b.support,
            Some(json!({"note": "again"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sim.submits_for("6281300000221"), 1);
    assert_eq!(b.phone_of_worker(2, "31").await, "+6281300000221");
    assert!(b.audit_text().await.iter().any(
        |a| a.starts_with("desk | reregistration.approve") && a.contains("called the facility")
    ));
    b.stop().await;
}
both_backends!(support_approval_sends_the_notice_once);

async fn immediate_mode_notice_carries_no_nik_digits(backend: &str) {
    let b = Bot::start(backend, ReregistrationMode::Immediate, Parts::ALL).await;
    let nik3 = nik_of(3, "73");
    let (s, _, text) = b.rereg(&nik3, "Nakes  Nomor-3", "081300000331").await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let a: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(a["status"], "reregistered");
    assert_eq!(
        a["notice"]["campaign_name"],
        pedulicovid::store::UNVALIDATED_CAMPAIGN
    );
    b.open_windows_now().await;
    let sim = b.app.simulator.clone().unwrap();
    wait_until("immediate notice", Duration::from_secs(20), || async {
        sim.submits_for("6281300000331") >= 1
    })
    .await;
    wait_until("body recorded", Duration::from_secs(10), || async {
        b.messages().await.first().is_some_and(|m| m.3.is_some())
    })
    .await;
    let m = b.messages().await;
    assert_eq!(m.len(), 1);
    let body = m[0].3.clone().unwrap();
    assert!(!body.contains("NIK"), "{body}");
    for w in nik3.as_bytes().windows(4) {
        let digits = std::str::from_utf8(w).unwrap();
        assert!(!body.contains(digits), "{digits} in {body}");
    }
    assert!(body.contains("didaftarkan ulang"), "{body}");
    b.stop().await;
}
both_backends!(immediate_mode_notice_carries_no_nik_digits);

/// Audit F3.1: a second call with the number an immediate-mode call just
/// put on file must not count as "the validated number on file".
async fn a_repeated_immediate_reregistration_stays_unvalidated(backend: &str) {
    let b = Bot::start(backend, ReregistrationMode::Immediate, Parts::ALL).await;
    let nik1 = nik_of(1, "31");
    for round in 0..2 {
        let (s, _, text) = b.rereg(&nik1, "Nakes Nomor 1", "081300000141").await;
        assert_eq!(s, StatusCode::OK, "round {round}: {text}");
        let a: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(a["status"], "reregistered", "{a}");
        assert_eq!(
            a["notice"]["campaign_name"],
            pedulicovid::store::UNVALIDATED_CAMPAIGN,
            "round {round}: {a}"
        );
    }
    let flag: Vec<(bool,)> = sql_rows(
        &b.db.url,
        "SELECT phone_unvalidated FROM health_workers WHERE nik = '{NIK}'"
            .replace("{NIK}", &nik1)
            .as_str(),
        &[],
    )
    .await;
    assert_eq!(flag, vec![(true,)], "the mark survives the repeat");
    b.open_windows_now().await;
    let sim = b.app.simulator.clone().unwrap();
    wait_until("notice sent", Duration::from_secs(20), || async {
        sim.submits_for("6281300000141") >= 1
    })
    .await;
    wait_until("body recorded", Duration::from_secs(10), || async {
        b.messages().await.iter().any(|m| m.3.is_some())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let m = b.messages().await;
    // Two notices: the second supersedes the first if it is still queued;
    // within the standing campaign's window (08:00-20:00 local) the first
    // is due at once and a woken worker may have sent it already.
    assert_eq!(m.len(), 2, "one notice per re-registration: {m:?}");
    for (_, phone, _, body) in &m {
        assert_eq!(phone, "+6281300000141");
        let body = body.as_deref().unwrap_or("");
        assert!(!body.contains("NIK"), "{body}");
        for w in nik1.as_bytes().windows(4) {
            let digits = std::str::from_utf8(w).unwrap();
            assert!(!body.contains(digits), "{digits} in {body}");
        }
    }
    let submits = sim.submits_for("6281300000141");
    assert!((1..=2).contains(&submits), "{submits} submits");
    // A later ordinary campaign (its template shows `NIK ****dddd`) still
    // sends the number nothing with NIK digits.
    let (c, _) = create_campaign(&b.app, campaign_request("februari")).await;
    b.open_windows_now().await;
    wait_done(b.store(), c.id, Duration::from_secs(30)).await;
    let later: Vec<(String, Option<String>)> = sql_rows(
        &b.db.url,
        "SELECT phone, body FROM messages WHERE campaign_id = $1 ORDER BY id",
        &[c.id],
    )
    .await;
    let to_new: Vec<&String> = later
        .iter()
        .filter(|(p, _)| p == "+6281300000141")
        .filter_map(|(_, body)| body.as_ref())
        .collect();
    assert_eq!(to_new.len(), 1, "{later:?}");
    assert!(
        !to_new[0].contains(&nik1[12..]) && !to_new[0].contains("NIK"),
        "{}",
        to_new[0]
    );
    b.stop().await;
}
both_backends!(a_repeated_immediate_reregistration_stays_unvalidated);

// ---------------------------------------------------------------- CLI

/// Runs the binary against `url`; returns (success, stdout, stderr).
async fn cli(dir: &Path, url: &str, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pedulicovid"))
        .arg("--database-url")
        .arg(url)
        .args(args)
        .current_dir(dir)
        .env("USER", "ops-cli")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn cli_lists_exports_and_approves(backend: &str) {
    let b = Bot::start(backend, ReregistrationMode::Validated, Parts::SERVE).await;
    // A name that a spreadsheet would run.
    let evil = format!(
        "{HEADER}{}",
        row(4, "31", "00000041").replace("Nakes Nomor 4", "=HYPERLINK(x)")
    );
    import_text(b.store(), &evil).await;
    let (s, _, t) = b
        .rereg(&nik_of(4, "31"), "hyperlink x", "081300000441")
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = cli(dir.path(), &b.db.url, &["reregistrations", "list"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("pending") && out.contains("+62813****441"),
        "{out}"
    );
    assert!(!out.contains(&nik_of(4, "31")), "{out}");
    let file = dir.path().join("validasi.csv");
    let (ok, _, err) = cli(
        dir.path(),
        &b.db.url,
        &["reregistrations", "export", "-o", file.to_str().unwrap()],
    )
    .await;
    assert!(ok, "{err}");
    let csv = std::fs::read_to_string(&file).unwrap();
    assert!(
        csv.contains("'=HYPERLINK(x)") && csv.contains(&nik_of(4, "31")),
        "{csv}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }
    let id = b
        .store()
        .reregistrations(Some("pending"), None, 10)
        .await
        .unwrap()[0]
        .id
        .to_string();
    let (ok, _, err) = cli(
        dir.path(),
        &b.db.url,
        &[
            "reregistrations",
            "approve",
            &id,
            "--staff",
            "Rina",
            "--note",
            "by phone",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(b.phone_of_worker(4, "31").await, "+6281300000441");
    let (ok, _, _) = cli(
        dir.path(),
        &b.db.url,
        &[
            "reregistrations",
            "approve",
            &id,
            "--staff",
            "Rina",
            "--note",
            "twice",
        ],
    )
    .await;
    assert!(!ok, "a second approval is refused");
    b.stop().await;
}
both_backends!(cli_lists_exports_and_approves);

// ---------------------------------------------------------------- UI

/// The value of `name=` in a `Set-Cookie` header of `r`.
fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .map(|c| c.split(';').next().unwrap().to_string())
}

/// The first hidden `csrf` field of an HTML page.
fn csrf_field(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().unwrap().to_string()
}

async fn support_ui_lifts_a_lock_and_approves(backend: &str) {
    let b = Bot::start(backend, ReregistrationMode::Validated, Parts::SERVE).await;
    let nik1 = nik_of(1, "31");
    let w1 = worker_id(b.store(), &nik1).await;
    let w2 = worker_id(b.store(), &nik_of(2, "31")).await;
    for i in 0..5 {
        b.rereg(&nik1, "Nakes Nomor 2", &format!("08130000060{i}"))
            .await;
    }
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let origin = b.base.clone();
    // Sign in with the support token.
    let r = http.get(format!("{origin}/ui/login")).send().await.unwrap();
    let nonce = set_cookie(&r, "pcv_ui_login").unwrap();
    let csrf = csrf_field(&r.text().await.unwrap());
    let r = http
        .post(format!("{origin}/ui/login"))
        .header("origin", &origin)
        .header("cookie", format!("pcv_ui_login={nonce}"))
        .form(&[("csrf", csrf.as_str()), ("token", b.support.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let session = format!("pcv_ui={}", set_cookie(&r, "pcv_ui").unwrap());
    let page = |path: String| {
        let (http, session) = (http.clone(), session.clone());
        async move {
            http.get(path)
                .header("cookie", session)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let html = page(format!("{origin}/ui/nakes/{w1}")).await;
    assert!(html.contains("Registrasi ulang lewat chatbot"), "{html}");
    assert!(
        html.contains("terkunci") && html.contains("Buka kunci"),
        "{html}"
    );
    let csrf = csrf_field(&html);
    let lock = b
        .store()
        .reregistration_locks(Some(w1), true)
        .await
        .unwrap()[0]
        .id;
    let post = |path: String, form: Vec<(&'static str, String)>| {
        let (http, session, origin) = (http.clone(), session.clone(), origin.clone());
        async move {
            http.post(format!("{origin}{path}"))
                .header("origin", origin.as_str())
                .header("cookie", session)
                .form(&form)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // Worker 2's page cannot reach worker 1's lock.
    let s = post(
        format!("/ui/nakes/{w2}/kunci/{lock}/buka"),
        vec![("csrf", csrf.clone()), ("reason", "x".into())],
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // No CSRF token, no change.
    let s = post(
        format!("/ui/nakes/{w1}/kunci/{lock}/buka"),
        vec![("reason", "x".into())],
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        b.store()
            .reregistration_locks(Some(w1), true)
            .await
            .unwrap()
            .len(),
        1
    );
    let s = post(
        format!("/ui/nakes/{w1}/kunci/{lock}/buka"),
        vec![
            ("csrf", csrf.clone()),
            ("reason", "KTP checked at the desk".into()),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert!(b
        .store()
        .reregistration_locks(Some(w1), true)
        .await
        .unwrap()
        .is_empty());

    // Now the worker's own attempt is pending; approve it from the page.
    let (s, _, t) = b.rereg(&nik1, "Nakes Nomor 1", "081300000699").await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let html = page(format!("{origin}/ui/nakes/{w1}")).await;
    assert!(html.contains("menunggu validasi One Data"), "{html}");
    let rr = b
        .store()
        .reregistrations(Some("pending"), Some(w1), 5)
        .await
        .unwrap()[0]
        .id;
    let s = post(
        format!("/ui/nakes/{w2}/registrasi-ulang/{rr}/setujui"),
        vec![("csrf", csrf.clone()), ("note", "x".into())],
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let s = post(
        format!("/ui/nakes/{w1}/registrasi-ulang/{rr}/setujui"),
        vec![
            ("csrf", csrf.clone()),
            ("note", "called the facility".into()),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(b.phone_of_worker(1, "31").await, "+6281300000699");
    assert_eq!(b.phone_of_worker(2, "31").await, "+6281200000021");
    b.stop().await;
}
both_backends!(support_ui_lifts_a_lock_and_approves);

/// Ten wrong attempts at once on one NIK: exactly five are judged (and
/// counted), the other five find the lock; on PostgreSQL the attempts on a
/// key take turns, as SQLite's single writer makes them.
async fn concurrent_failures_lock_after_exactly_five(backend: &str) {
    let b = Bot::start(backend, ReregistrationMode::Validated, Parts::SERVE).await;
    let nik1 = nik_of(1, "31");
    let calls = (0..10).map(|i| {
        let b = &b;
        let nik1 = nik1.clone();
        async move {
            let body = json!({"nik": nik1, "full_name": "Nakes Nomor 2", "whatsapp_phone": format!("08130000070{i}")});
            let key = format!("c-{i}");
            b.call(
                Method::POST,
                "/api/v1/chatbot/reregister",
                &b.bot,
                Some(&body),
                Some(&key),
            )
            .await
            .status()
        }
    });
    let statuses = futures::future::join_all(calls).await;
    let judged = statuses
        .iter()
        .filter(|s| **s == StatusCode::NOT_FOUND)
        .count();
    let locked = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((judged, locked), (5, 5), "{statuses:?}");
    let failures: Vec<(i64,)> = sql_rows(
        &b.db.url,
        "SELECT COUNT(*) FROM reregistration_failures WHERE key_kind = 'nik'",
        &[],
    )
    .await;
    assert_eq!(failures, vec![(5,)]);
    b.stop().await;
}
both_backends!(concurrent_failures_lock_after_exactly_five);

/// The last 6 NIK digits with a phone are a guess at part of a NIK: five
/// mismatches for one phone lock that phone's `nik_last6` look-ups (even
/// with the right digits), not its other look-ups.
async fn last6_lookups_are_locked_per_phone(backend: &str) {
    let b = Bot::start(backend, ReregistrationMode::Validated, Parts::SERVE).await;
    let nik1 = nik_of(1, "31");
    let w1 = worker_id(b.store(), &nik1).await;
    let lookup = |body: Value| {
        let b = &b;
        async move {
            tokio::time::sleep(Duration::from_millis(60)).await;
            let r = b
                .call(
                    Method::POST,
                    "/api/v1/chatbot/lookup",
                    &b.bot,
                    Some(&body),
                    None,
                )
                .await;
            let retry = r.headers().get("retry-after").is_some();
            (r.status(), retry, r.json::<Value>().await.unwrap())
        }
    };
    let (s, _, a) = lookup(json!({"nik_last6": &nik1[10..], "phone": "081200000011"})).await;
    assert_eq!((s, a["found"].clone()), (StatusCode::OK, json!(true)));
    for guess in 1950..1955 {
        let (s, _, a) =
            lookup(json!({"nik_last6": format!("{guess}99"), "phone": "081200000011"})).await;
        assert_eq!((s, a["found"].clone()), (StatusCode::OK, json!(false)));
    }
    let (s, retry, _) = lookup(json!({"nik_last6": &nik1[10..], "phone": "081200000011"})).await;
    assert_eq!((s, retry), (StatusCode::TOO_MANY_REQUESTS, true));
    // The phone alone and the full NIK still answer; another phone too.
    let (s, _, a) = lookup(json!({"phone": "081200000011"})).await;
    assert_eq!((s, a["found"].clone()), (StatusCode::OK, json!(true)));
    // A NIK look-up from that number is locked too (one key per number);
    // from another number it answers.
    let (s, retry, _) = lookup(json!({"nik": &nik1, "whatsapp_phone": "081200000011"})).await;
    assert_eq!((s, retry), (StatusCode::TOO_MANY_REQUESTS, true));
    let (s, _, _) = lookup(json!({"nik": &nik1, "whatsapp_phone": "081300000077"})).await;
    assert_eq!(s, StatusCode::OK);
    let nik2 = nik_of(2, "31");
    let (s, _, a) = lookup(json!({"nik_last6": &nik2[10..], "phone": "081200000021"})).await;
    assert_eq!((s, a["found"].clone()), (StatusCode::OK, json!(true)));
    // Support staff see it on the worker's record and can lift it.
    let locks = b
        .store()
        .reregistration_locks(Some(w1), true)
        .await
        .unwrap();
    assert_eq!(locks.len(), 1);
    assert_eq!(locks[0].key_kind, "lookup");
    assert_eq!(locks[0].number_masked.as_deref(), Some("+62812****011"));
    b.store()
        .lift_reregistration_lock(
            locks[0].id,
            &pedulicovid::domain::notice::FreeText::staff("desk").unwrap(),
            &pedulicovid::domain::notice::FreeText::reason("her own number").unwrap(),
        )
        .await
        .unwrap();
    let (s, _, a) = lookup(json!({"nik_last6": &nik1[10..], "phone": "081200000011"})).await;
    assert_eq!((s, a["found"].clone()), (StatusCode::OK, json!(true)));
    for a in b.audit_text().await {
        assert!(
            !a.contains(&nik1[10..]) && !a.contains("81200000011"),
            "{a}"
        );
    }
    b.stop().await;
}
both_backends!(last6_lookups_are_locked_per_phone);

/// Audit F3.3: full-NIK look-ups name the conversation's WhatsApp number;
/// NIKs not on file count against it (5 in 24 hours lock its NIK
/// look-ups), and the masked number on file is shown only to that number.
async fn nik_lookups_are_counted_per_whatsapp_number(backend: &str) {
    let b = Bot::start(backend, ReregistrationMode::Validated, Parts::SERVE).await;
    let nik1 = nik_of(1, "31");
    let lookup = |body: Value| {
        let b = &b;
        async move {
            tokio::time::sleep(Duration::from_millis(60)).await;
            let r = b
                .call(
                    Method::POST,
                    "/api/v1/chatbot/lookup",
                    &b.bot,
                    Some(&body),
                    None,
                )
                .await;
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            (r.status(), retry, r.json::<Value>().await.unwrap())
        }
    };
    // The number is required with a NIK, and only with a NIK.
    let (s, _, e) = lookup(json!({"nik": &nik1})).await;
    assert_eq!(
        (s, e["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("whatsapp_phone"))
    );
    let (s, _, e) =
        lookup(json!({"phone": "081200000011", "whatsapp_phone": "081200000011"})).await;
    assert_eq!(
        (s, e["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("whatsapp_phone"))
    );
    // From another number: found, but not which number is on file.
    let stranger = "081300000444";
    let (s, _, a) = lookup(json!({"nik": &nik1, "whatsapp_phone": stranger})).await;
    assert_eq!(
        (s, a["found"].clone()),
        (StatusCode::OK, json!(true)),
        "{a}"
    );
    assert!(a["phone_masked"].is_null(), "{a}");
    // From the number on file: shown, masked.
    let (_, _, a) = lookup(json!({"nik": &nik1, "whatsapp_phone": "081200000011"})).await;
    assert_eq!(a["phone_masked"], "+62812****011", "{a}");
    // Five NIKs not on file from the stranger's number lock it, even for a
    // NIK on file.
    for i in 5..10 {
        let (s, _, a) = lookup(json!({"nik": nik_of(i, "31"), "whatsapp_phone": stranger})).await;
        assert_eq!(
            (s, a["found"].clone()),
            (StatusCode::OK, json!(false)),
            "{i}: {a}"
        );
    }
    let (s, retry, _) = lookup(json!({"nik": &nik1, "whatsapp_phone": stranger})).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    let retry = retry.expect("Retry-After");
    assert!(retry > 86_000 && retry <= 86_400, "{retry}");
    // Its `nik_last6` look-ups too; its phone-only look-up and other
    // numbers are not affected.
    let (s, _, _) = lookup(json!({"nik_last6": "999999", "phone": stranger})).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    let (s, _, _) = lookup(json!({"phone": stranger})).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, a) = lookup(json!({"nik": &nik1, "whatsapp_phone": "081300000555"})).await;
    assert_eq!((s, a["found"].clone()), (StatusCode::OK, json!(true)));
    let locks = b.store().reregistration_locks(None, true).await.unwrap();
    assert_eq!(locks.len(), 1, "{locks:?}");
    assert_eq!(locks[0].key_kind, "lookup");
    assert_eq!(locks[0].number_masked.as_deref(), Some("+62813****444"));
    b.stop().await;
}
both_backends!(nik_lookups_are_counted_per_whatsapp_number);

/// Failures older than the 24-hour window count for nothing: four old
/// ones and one fresh one do not lock, and housekeeping forgets the old.
async fn failures_past_the_window_do_not_count(backend: &str) {
    let b = Bot::start(backend, ReregistrationMode::Validated, Parts::SERVE).await;
    let nik1 = nik_of(1, "31");
    for i in 0..4 {
        b.rereg(&nik1, "Nakes Nomor 2", &format!("08130000080{i}"))
            .await;
    }
    let day = pedulicovid::store::FAILURE_WINDOW_MS;
    let _: Vec<(i64,)> = sql_rows(
        &b.db.url,
        "UPDATE reregistration_failures SET at = at - $1 RETURNING id",
        &[day + 1000],
    )
    .await;
    let (s, _, _) = b.rereg(&nik1, "Nakes Nomor 2", "081300000809").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, t) = b.rereg(&nik1, "Nakes Nomor 1", "081300000810").await;
    assert_eq!(s, StatusCode::OK, "not locked: {t}");
    pedulicovid::dispatch::housekeeping_once(b.store(), &Default::default())
        .await
        .unwrap();
    let left: Vec<(i64,)> = sql_rows(
        &b.db.url,
        "SELECT COUNT(*) FROM reregistration_failures",
        &[],
    )
    .await;
    // The fresh failure, once per key (NIK and number).
    assert_eq!(left, vec![(2,)]);
    b.stop().await;
}
both_backends!(failures_past_the_window_do_not_count);

/// In the `immediate` mode the number stays unvalidated for every later
/// notice too, in any campaign and template, until One Data carries it.
async fn an_unvalidated_number_gets_no_nik_digits_in_later_campaigns(backend: &str) {
    let b = Bot::start(backend, ReregistrationMode::Immediate, Parts::ALL).await;
    let nik1 = nik_of(1, "31");
    let (s, _, t) = b.rereg(&nik1, "Nakes Nomor 1", "081300000901").await;
    assert_eq!(s, StatusCode::OK, "{t}");
    // An ordinary campaign (its template shows `NIK ****dddd`).
    let (c, _) = create_campaign(&b.app, campaign_request("februari")).await;
    b.open_windows_now().await;
    let sim = b.app.simulator.clone().unwrap();
    wait_done(b.store(), c.id, Duration::from_secs(30)).await;
    let bodies: Vec<(String, Option<String>)> = sql_rows(
        &b.db.url,
        "SELECT phone, body FROM messages WHERE campaign_id = $1 ORDER BY id",
        &[c.id],
    )
    .await;
    let to_new: Vec<&String> = bodies
        .iter()
        .filter(|(p, _)| p == "+6281300000901")
        .filter_map(|(_, body)| body.as_ref())
        .collect();
    assert_eq!(to_new.len(), 1, "{bodies:?}");
    assert!(
        !to_new[0].contains(&nik1[12..]) && !to_new[0].contains("NIK"),
        "{}",
        to_new[0]
    );
    // Worker 2 (a number from One Data) gets the campaign's own text.
    let nik2 = nik_of(2, "31");
    assert!(
        bodies.iter().any(|(p, body)| p == "+6281200000021"
            && body.as_deref().is_some_and(|x| x.contains(&nik2[12..]))),
        "{bodies:?}"
    );
    assert!(sim.submits_for("6281300000901") >= 1);
    // One Data now carries the number: validated again.
    let csv = format!(
        "{HEADER}{}",
        row(1, "31", "00000011").replace("081200000011", "081300000901")
    );
    import_text(b.store(), &csv).await;
    let flag: Vec<(bool,)> = sql_rows(
        &b.db.url,
        "SELECT phone_unvalidated FROM health_workers WHERE nik = '{NIK}'"
            .replace("{NIK}", &nik1)
            .as_str(),
        &[],
    )
    .await;
    assert_eq!(flag, vec![(false,)]);
    b.stop().await;
}
both_backends!(an_unvalidated_number_gets_no_nik_digits_in_later_campaigns);
