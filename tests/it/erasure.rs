//! Erasure of one worker's personal data (issue 14, point 3), on both
//! databases: after a worker went through everything that stores a NIK,
//! name or number (import, campaigns sent to the simulator with receipts,
//! a flag resolved with a note, a support resend, a failed and an applied
//! chatbot re-registration with its stored answer, a queued notice, audit
//! entries, suppressions, an unmatched receipt), the operator API erases
//! them; then every text column of every table, read from the database's
//! own catalog, holds neither the NIK, nor any form of either number, nor
//! the name, while another worker's data is untouched. The erased worker is
//! found by no search or look-up, its queued notice is cancelled, a
//! re-import of the NIK is a new worker, and `import --revive-erased`
//! reconnects it. Only an operator token may erase.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use pedulicovid::app::Parts;
use pedulicovid::domain::notice::FreeText;
use pedulicovid::store::{sha256_hex, ReregistrationMode, Role, Store, SupportError};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const NAME: &str = "Erlinda Kusumawardhani";
const PHONE: &str = "081377712345";
const NEW_PHONE: &str = "081377799999";

/// The erased worker's NIK.
fn nik() -> String {
    nik_of(5, "31")
}

/// The worker to erase (province 31) and two others.
fn registry() -> String {
    format!(
        "{HEADER}{},{NAME},{PHONE},bidan,FKS5,3101,31,true,true\n{}{}",
        nik(),
        row(2, "31", "00000021"),
        row(3, "73", "00000031")
    )
}

/// Every form of a number in which it could be stored: +62…, 62…, 0…,
/// and the bare national significant number they all contain.
fn forms(national: &str) -> Vec<String> {
    let nsn = &national[1..];
    vec![
        format!("+62{nsn}"),
        format!("62{nsn}"),
        national.to_string(),
        nsn.to_string(),
    ]
}

/// Every (table, column) holding text, from the database's catalog:
/// `information_schema.columns` on PostgreSQL (every text-typed column of
/// the schema); on SQLite every column of every table in `sqlite_master`
/// (`pragma_table_info`; SQLite types values, not columns, so each column is
/// read as text).
async fn text_columns(url: &str) -> Vec<(String, String)> {
    if url.starts_with("sqlite:") {
        sql_rows(
            url,
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p \
             WHERE m.type = 'table' ORDER BY m.name, p.cid",
            &[],
        )
        .await
    } else {
        sql_rows(
            url,
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() \
             AND data_type IN ('text', 'character varying', 'character', 'json', 'jsonb') \
             ORDER BY table_name, ordinal_position",
            &[],
        )
        .await
    }
}

/// `table.column = value` for every value of `columns` that contains
/// `needle`, ignoring case.
async fn occurrences(url: &str, columns: &[(String, String)], needle: &str) -> Vec<String> {
    let mut found = vec![];
    let needle = needle.to_lowercase();
    if url.starts_with("sqlite:") {
        let p = sqlx::SqlitePool::connect(url).await.unwrap();
        for (t, c) in columns {
            let sql = format!(
                "SELECT CAST(\"{c}\" AS TEXT) FROM \"{t}\" \
                 WHERE instr(lower(CAST(\"{c}\" AS TEXT)), $1) > 0"
            );
            let rows: Vec<Option<String>> = sqlx::query_scalar(&sql)
                .bind(&needle)
                .fetch_all(&p)
                .await
                .unwrap_or_else(|e| panic!("{t}.{c}: {e}"));
            found.extend(rows.into_iter().map(|v| format!("{t}.{c} = {v:?}")));
        }
        p.close().await;
    } else {
        let p = sqlx::PgPool::connect(url).await.unwrap();
        for (t, c) in columns {
            let sql = format!(
                "SELECT \"{c}\"::text FROM \"{t}\" WHERE strpos(lower(\"{c}\"::text), $1) > 0"
            );
            let rows: Vec<Option<String>> = sqlx::query_scalar(&sql)
                .bind(&needle)
                .fetch_all(&p)
                .await
                .unwrap_or_else(|e| panic!("{t}.{c}: {e}"));
            found.extend(rows.into_iter().map(|v| format!("{t}.{c} = {v:?}")));
        }
        p.close().await;
    }
    found
}

/// Every needle of the erased worker found anywhere: the NIK, both
/// numbers in every form, each part of the name, and the hashes the
/// re-registration locks key the NIK and numbers by.
async fn traces(url: &str) -> Vec<String> {
    let columns = text_columns(url).await;
    assert!(
        columns.len() > 40
            && columns
                .iter()
                .any(|(t, c)| t == "receipts" && c == "payload")
            && columns
                .iter()
                .any(|(t, c)| t == "audit_log" && c == "detail"),
        "the catalog lists the text columns: {columns:?}"
    );
    let mut needles = vec![nik()];
    needles.extend(forms(PHONE));
    needles.extend(forms(NEW_PHONE));
    needles.extend(NAME.split(' ').map(String::from));
    needles.push(sha256_hex(
        format!("pedulicovid-reregistration:nik:{}", nik()).as_bytes(),
    ));
    for p in [PHONE, NEW_PHONE] {
        for kind in ["number", "lookup"] {
            let e164 = format!("+62{}", &p[1..]);
            needles.push(sha256_hex(
                format!("pedulicovid-reregistration:{kind}:{e164}").as_bytes(),
            ));
        }
    }
    let mut found = vec![];
    for n in &needles {
        for o in occurrences(url, &columns, n).await {
            found.push(format!("{n}: {o}"));
        }
    }
    found
}

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

async fn call(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Value,
    key: Option<&str>,
) -> (StatusCode, Value) {
    let mut r = http.request(method, format!("{base}{path}")).json(&body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(k) = key {
        r = r.header("Idempotency-Key", k);
    }
    let r = r.send().await.expect("request");
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// Statuses of the worker's messages, oldest first.
async fn statuses(url: &str, worker: i64) -> Vec<String> {
    let rows: Vec<(String,)> = sql_rows(
        url,
        "SELECT status FROM messages WHERE worker_id = $1 ORDER BY id",
        &[worker],
    )
    .await;
    rows.into_iter().map(|r| r.0).collect()
}

async fn erasure_leaves_no_trace(backend: &str) {
    let db = TestDb::new(backend).await;
    // The worker's first number is never reached: flagged, resent, flagged.
    let mut settings = ruled_settings(&db, "12345=undelivered");
    settings.chatbot.reregistration = ReregistrationMode::Immediate;
    let app = start(settings, Parts::ALL).await;
    let store: &Store = &app.store;
    let url = db.url.clone();
    assert_eq!(import_text(store, &registry()).await.accepted, 3);
    let id = worker_id(store, &nik()).await;
    let other = worker_id(store, &nik_of(2, "31")).await;
    let base = base_url(&app);
    let http = reqwest::Client::new();
    let token = |name: &'static str, role| async move {
        store.create_token(name, role).await.unwrap().secret
    };
    let (ops, desk, bot) = (
        token("ops", Role::Operator).await,
        token("desk", Role::Support).await,
        token("bot", Role::Chatbot).await,
    );

    // A campaign, its receipts, a flag; a support resend (its reason names
    // the worker), flagged again; the flag resolved with a note.
    let (c1, _) = create_campaign(&app, campaign_request("satu")).await;
    wait_done(store, c1.id, Duration::from_secs(30)).await;
    let staff = FreeText::staff("Dewi (help desk)").unwrap();
    store
        .resend(
            id,
            &staff,
            &FreeText::reason(&format!("{NAME} called from +62{}", &PHONE[1..])).unwrap(),
        )
        .await
        .expect("resend");
    wait_done(store, c1.id, Duration::from_secs(30)).await;
    let flag = store
        .flags(Some(c1.id), false)
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.worker_id == id)
        .expect("the worker is flagged");
    store
        .resolve_flag(
            flag.id,
            &staff,
            &FreeText::note(&format!("{NAME} ({}) will use {NEW_PHONE}", nik())).unwrap(),
        )
        .await
        .unwrap();
    // The outreach team's outcome on the same flag, its note naming the
    // worker and the new number (kept in the flag and its audit entry).
    store
        .record_flag_outcome(
            &pedulicovid::store::NewOutcome {
                flag_id: flag.id,
                outcome: pedulicovid::domain::outcome::Outcome::ReachedByPhone,
                note: Some(FreeText::note(&format!("{NAME} answered on {NEW_PHONE}")).unwrap()),
            },
            None,
            &staff,
        )
        .await
        .unwrap();

    // The chatbot: a wrong name (a failed attempt, keyed by hashes of the
    // NIK and number), then the re-registration, applied at once, with its
    // stored answer; the notice to the new number is delivered.
    let rereg = |name: &str| json!({"nik": nik(), "full_name": name, "whatsapp_phone": NEW_PHONE});
    let (s, _) = call(
        &http,
        &base,
        Method::POST,
        "/api/v1/chatbot/reregister",
        Some(&bot),
        rereg("Someone Else"),
        Some("k-1"),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (s, a) = call(
        &http,
        &base,
        Method::POST,
        "/api/v1/chatbot/reregister",
        Some(&bot),
        rereg(NAME),
        Some("k-2"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(a["reregistered"], true, "{a}");
    open_windows_now(&url).await;
    wait_until(
        "the re-registration notice delivered",
        Duration::from_secs(30),
        || async { statuses(&url, id).await.last().map(String::as_str) == Some("delivered") },
    )
    .await;

    // A notice still queued (window closed), audit entries naming the
    // worker, suppressions of the NIK and numbers, an unmatched receipt.
    let queued_window = closed_window_now();
    let c2 = run_campaign(&app, "dua", &queued_window).await;
    assert_eq!(statuses(&url, id).await.last().unwrap(), "queued");
    store
        .audit(
            "ops",
            "note",
            &format!("worker:{id}"),
            &format!("{NAME} asked by phone {PHONE}"),
        )
        .await
        .unwrap();
    store
        .audit(
            "ops",
            "note",
            "campaign:*",
            &format!("NIK {} and +62{} in a list", nik(), &NEW_PHONE[1..]),
        )
        .await
        .unwrap();
    for (kind, value) in [
        ("nik", nik()),
        ("phone", format!("+62{}", &PHONE[1..])),
        ("phone", format!("+62{}", &NEW_PHONE[1..])),
    ] {
        let _: Vec<(i64,)> = sql_rows(
            &url,
            &format!(
                "INSERT INTO suppressions (kind, value, reason, note, added_by, added_at) \
                 VALUES ('{kind}', '{value}', 'declined', '{NAME} declined', 'ops', 1) RETURNING id"
            ),
            &[],
        )
        .await;
    }
    store
        .store_malformed_receipt("sim", &format!("to=62{}&status=9", &PHONE[1..]))
        .await
        .unwrap();
    // What the other worker has, to compare after.
    let before = store.worker(other).await.unwrap();
    let other_rows = |url: String| async move {
        let r: Vec<(String, Option<String>, Option<String>)> = sql_rows(
            &url,
            "SELECT m.phone, m.body, r.payload FROM messages m \
             LEFT JOIN receipts r ON r.message_id = m.id WHERE m.worker_id = $1 AND m.campaign_id = $2 \
             ORDER BY m.id, r.id",
            &[other, c1.id],
        )
        .await;
        r
    };
    let other_before = other_rows(url.clone()).await;
    assert!(other_before.iter().any(|(_, _, p)| p.is_some()));
    assert!(
        !traces(&url).await.is_empty(),
        "the scan finds the worker before the erasure"
    );

    // Only an operator may erase; bad input is a 400 naming the field.
    let path = "/api/v1/workers/erase";
    let body = json!({"nik": nik(), "reason": "UU PDP request 14/2021"});
    for (t, want) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some(desk.as_str()), StatusCode::FORBIDDEN),
        (Some(bot.as_str()), StatusCode::FORBIDDEN),
    ] {
        let (s, _) = call(&http, &base, Method::POST, path, t, body.clone(), None).await;
        assert_eq!(s, want);
    }
    for (b, field) in [
        (json!({"nik": "123", "reason": "x"}), "nik"),
        (json!({"nik": nik(), "reason": " "}), "reason"),
        (json!({"nik": nik()}), "body"),
        // Bound to the NIK it names: nothing else can be slipped in.
        (
            json!({"nik": nik(), "reason": "x", "worker_id": other}),
            "body",
        ),
    ] {
        let (s, e) = call(&http, &base, Method::POST, path, Some(&ops), b, None).await;
        assert_eq!(
            (s, e["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some(field)),
            "{e}"
        );
    }
    let (s, e) = call(
        &http,
        &base,
        Method::POST,
        path,
        Some(&ops),
        json!({"nik": nik_of(77, "31"), "reason": "x"}),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    assert!(!e.to_string().contains(&nik_of(77, "31")), "{e}");
    assert!(
        !traces(&url).await.is_empty(),
        "refused calls changed nothing"
    );

    let (s, erased) = call(
        &http,
        &base,
        Method::POST,
        path,
        Some(&ops),
        body.clone(),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{erased}");
    assert_eq!(erased["worker_id"], id);
    assert_eq!(erased["notices_cancelled"], 1, "{erased}");
    assert_eq!(erased["suppressions"], 3, "{erased}");
    // Dispatch goes on a moment: nothing of the worker comes back.
    open_windows_now(&url).await;
    wait_done(store, c2, Duration::from_secs(30)).await;

    let left = traces(&url).await;
    assert!(left.is_empty(), "personal data left:\n{}", left.join("\n"));

    // The queued notice was cancelled, never sent; the rest kept their
    // status; the row and its codes stay.
    let st = statuses(&url, id).await;
    assert_eq!(st.last().unwrap(), "cancelled", "{st:?}");
    assert!(st.iter().any(|s| s == "delivered") && st.iter().any(|s| s == "undelivered"));
    let kept: Vec<(String, String, String, String, Option<i64>)> = sql_rows(
        &url,
        "SELECT nik, phone, full_name, province_code, erased_at FROM health_workers WHERE id = $1",
        &[id],
    )
    .await;
    let (n, p, name, prov, at) = &kept[0];
    assert_eq!(
        (n.as_str(), p.as_str(), name.as_str()),
        (&*format!("erased:{id}"), &*format!("erased:{id}"), "")
    );
    assert_eq!((prov.as_str(), at.is_some()), ("31", true));

    // Audited under the id, with who and why, never the NIK.
    let audit: Vec<(String, String, String)> = sql_rows(
        &url,
        "SELECT actor, subject, detail FROM audit_log WHERE action = 'worker.erase'",
        &[],
    )
    .await;
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (audit[0].0.as_str(), audit[0].1.as_str()),
        ("ops", &*format!("worker:{id}"))
    );
    assert!(audit[0].2.contains("UU PDP request 14/2021"), "{audit:?}");

    // The other worker is untouched.
    let after = store.worker(other).await.unwrap();
    assert_eq!(
        (
            after.nik.as_str(),
            after.full_name.as_str(),
            after.phone.as_e164()
        ),
        (
            before.nik.as_str(),
            before.full_name.as_str(),
            before.phone.as_e164()
        )
    );
    let other_after = other_rows(url.clone()).await;
    assert_eq!(other_after, other_before);

    // Found by nothing: support search, the chatbot, the worker's id.
    for q in [
        nik(),
        PHONE.to_string(),
        NEW_PHONE.to_string(),
        "Kusumawardhani".into(),
        "erased".into(),
    ] {
        let r = store.search_workers(&q).await.unwrap();
        assert!(r.workers.iter().all(|w| w.id != id), "{q}: {:?}", r.workers);
    }
    for b in [
        json!({"phone": NEW_PHONE}),
        json!({"nik": nik(), "whatsapp_phone": NEW_PHONE}),
        json!({"nik_last6": &nik()[10..], "phone": NEW_PHONE}),
    ] {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (s, a) = call(
            &http,
            &base,
            Method::POST,
            "/api/v1/chatbot/lookup",
            Some(&bot),
            b.clone(),
            None,
        )
        .await;
        assert_eq!(
            (s, &a["found"]),
            (StatusCode::OK, &json!(false)),
            "{b}: {a}"
        );
    }
    let (s, _) = call(
        &http,
        &base,
        Method::GET,
        &format!("/api/v1/support/workers/{id}/timeline"),
        Some(&desk),
        Value::Null,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Nor resent by id, nor on the outreach list.
    let r = store
        .resend(id, &staff, &FreeText::reason("again").unwrap())
        .await;
    assert!(matches!(r, Err(SupportError::NotFound(_))), "{r:?}");
    assert!(store
        .flags(None, true)
        .await
        .unwrap()
        .iter()
        .all(|f| f.worker_id != id));
    // The stored chatbot answer is gone, with the hash of the request it
    // answered: a retry is refused, and does nothing.
    let (s, _) = call(
        &http,
        &base,
        Method::POST,
        "/api/v1/chatbot/reregister",
        Some(&bot),
        rereg(NAME),
        Some("k-2"),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(store.worker_by_nik(&nik()).await.unwrap().is_none());
    // Erased already: not found again.
    let (s, _) = call(&http, &base, Method::POST, path, Some(&ops), body, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // One Data sends the NIK again: a new worker, the erased row stays.
    let again = import_text(store, &registry()).await;
    assert_eq!(again.counts.inserted, 1, "{again:?}");
    let new_id = worker_id(store, &nik()).await;
    assert_ne!(new_id, id);
    assert!(store.worker(id).await.is_err());
    app.stop(Duration::from_secs(5)).await;
}
both_backends!(erasure_leaves_no_trace);

// ---------------------------------------------------------------- the CLI

fn pedulicovid(dir: &Path, url: &str, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_pedulicovid"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env("PEDULICOVID__DATABASE_URL", url)
        .env("USER", "cli-test")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn erase_command_and_revival(backend: &str) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nakes.csv");
    std::fs::write(&file, registry()).unwrap();
    let file = file.to_str().unwrap();
    let o = pedulicovid(dir.path(), &db.url, &["import", file], "");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let store = db.store().await;
    let id = worker_id(&store, &nik()).await;

    // A bad line anywhere: nothing erased, exit 1, the line named.
    let o = pedulicovid(
        dir.path(),
        &db.url,
        &["erase", "--reason", "UU PDP"],
        &format!("{}\n\n31010123\n", nik()),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("line 3"), "{}", text(&o.stderr));
    assert!(store.worker(id).await.is_ok(), "nothing erased");
    // A reason is required (clap: usage, exit 2).
    let o = pedulicovid(dir.path(), &db.url, &["erase", "-"], &nik());
    assert_eq!(o.status.code(), Some(2));

    // The NIK from standard input; the id printed, never the NIK.
    let o = pedulicovid(
        dir.path(),
        &db.url,
        &["erase", "-", "--reason", "UU PDP", "--json"],
        &format!("{}\n", nik()),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(out["erased"][0]["worker_id"], id, "{out}");
    assert!(!text(&o.stdout).contains(&nik()) && !text(&o.stderr).contains(&nik()));
    assert!(store.worker_by_nik(&nik()).await.unwrap().is_none());
    // Again: a clear error, exit 1, the NIK masked.
    let o = pedulicovid(
        dir.path(),
        &db.url,
        &["erase", &nik(), "--reason", "again"],
        "",
    );
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("already erased") && !err.contains(&nik()),
        "{err}"
    );

    // Imported again with --revive-erased: the same worker, name and
    // number from the file, audited.
    let o = pedulicovid(
        dir.path(),
        &db.url,
        &["import", file, "--revive-erased", "--json"],
        "",
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (report["revived"].as_u64(), report["inserted"].as_u64()),
        (Some(1), Some(0)),
        "{report}"
    );
    let w = store.worker(id).await.expect("revived");
    assert_eq!(
        (w.nik.as_str(), w.full_name.as_str()),
        (nik().as_str(), NAME)
    );
    assert_eq!(w.phone.national(), PHONE);
    assert!(w.eligible);
    let revive: Vec<(String, String)> = sql_rows(
        &db.url,
        "SELECT actor, subject FROM audit_log WHERE action = 'worker.revive'",
        &[],
    )
    .await;
    assert_eq!(
        revive,
        vec![("cli-test".to_string(), format!("worker:{id}"))]
    );
    let verifier: Vec<(Option<String>, Option<i64>)> = sql_rows(
        &db.url,
        "SELECT nik_verifier, erased_at FROM health_workers WHERE id = $1",
        &[id],
    )
    .await;
    assert_eq!(verifier, vec![(None, None)]);
    // Without the flag, a NIK erased again comes back as a new worker.
    let o = pedulicovid(dir.path(), &db.url, &["erase", "--reason", "again"], &nik());
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains(&format!("worker {id} erased")),
        "{}",
        text(&o.stdout)
    );
    let o = pedulicovid(dir.path(), &db.url, &["import", file], "");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_ne!(worker_id(&store, &nik()).await, id);
    store.close().await;
}
both_backends!(erase_command_and_revival);

// ------------------------------------------------------- notices in flight

/// A notice handed to a dispatcher before the erasure keeps its status, and
/// nothing that comes back for it afterwards brings the data back: the
/// record of the send keeps no body, the carrier's receipt no payload.
async fn in_flight_notice_keeps_nothing(backend: &str) {
    use pedulicovid::gateway::{ParsedReceipt, ReceiptOutcome};
    use pedulicovid::store::{IncomingReceipt, ReceiptEffect, SendOutcome};

    let db = TestDb::new(backend).await;
    // No dispatcher: this test claims and records by hand.
    let app = start(test_settings(&db), Parts::SERVE).await;
    let store = &app.store;
    assert_eq!(import_text(store, &registry()).await.accepted, 3);
    let id = worker_id(store, &nik()).await;
    let (c, _) = create_campaign(&app, campaign_request("satu")).await;
    let claimed = store
        .claim("test-worker", 10, pedulicovid::store::now_ms() + 60_000)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    let mine = claimed.iter().find(|m| m.worker_id == id).unwrap();
    assert_eq!(mine.full_name, NAME);

    let erased = store
        .erase_worker(
            &pedulicovid::domain::Nik::parse(&nik()).unwrap(),
            &FreeText::staff("ops").unwrap(),
            &FreeText::reason("UU PDP").unwrap(),
        )
        .await
        .unwrap();
    assert_eq!((erased.notices_cancelled, erased.messages), (0, 1));
    // Only the dispatcher's memory holds it now.
    let left = traces(&db.url).await;
    assert!(left.is_empty(), "personal data left:\n{}", left.join("\n"));

    // The sends land (the rendered body names the worker), then receipts
    // that quote number and text.
    let outcomes: Vec<SendOutcome> = claimed
        .iter()
        .map(|m| SendOutcome::Sent {
            id: m.id,
            gateway: "sim".into(),
            gateway_message_id: Some(format!("gw-{}", m.id)),
            body: format!("{} (NIK ****{})", m.full_name, m.nik_last4),
            encoding: "gsm7",
            segments: 1,
        })
        .collect();
    assert_eq!(
        store
            .record_outcomes("test-worker", &outcomes)
            .await
            .unwrap(),
        0
    );
    let receipts: Vec<IncomingReceipt> = claimed
        .iter()
        .map(|m| IncomingReceipt {
            gateway: "sim".into(),
            payload: format!(
                "to={}&text={}&id={}",
                m.phone
                    .as_ref()
                    .map(|p| p.digits().to_string())
                    .unwrap_or_default(),
                m.full_name,
                m.id
            ),
            parsed: ParsedReceipt {
                message_id: Some(m.id),
                gateway_message_id: Some(format!("gw-{}", m.id)),
                raw_status: "1".into(),
                error_code: None,
                outcome: ReceiptOutcome::Delivered,
            },
            signed: false,
        })
        .collect();
    let effects = store.apply_receipts(&receipts).await.unwrap();
    assert!(
        effects.iter().all(|e| *e == ReceiptEffect::Applied),
        "{effects:?}"
    );

    let left = traces(&db.url).await;
    assert!(left.is_empty(), "personal data left:\n{}", left.join("\n"));
    // The erased worker's notice kept its course; the others kept their
    // bodies and payloads.
    let rows: Vec<(i64, String, Option<String>, String)> = sql_rows(
        &db.url,
        "SELECT m.worker_id, m.status, m.body, r.payload FROM messages m \
         JOIN receipts r ON r.message_id = m.id WHERE m.campaign_id = $1 ORDER BY m.id",
        &[c.id],
    )
    .await;
    assert_eq!(rows.len(), 3);
    for (w, status, body, payload) in rows {
        assert_eq!(status, "delivered");
        if w == id {
            assert_eq!((body, payload.as_str()), (None, "[erased]"));
        } else {
            assert!(body.unwrap().contains("Nakes Nomor"));
            assert!(
                payload.contains("Nakes") && payload.contains("to=62812"),
                "{payload}"
            );
        }
    }
    app.stop(Duration::from_secs(5)).await;
}
both_backends!(in_flight_notice_keeps_nothing);
