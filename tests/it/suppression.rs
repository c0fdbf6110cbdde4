//! The suppression list on both databases: campaign creation leaves
//! suppressed workers out and counts them; an entry added mid-campaign
//! cancels the worker's queued notices at once (and housekeeping catches an
//! enqueue that raced the add); a suppressed worker is never flagged, and
//! their open flags are resolved; resends are refused and re-registrations
//! queue nothing; removal and expiry bring the worker back; the CLI's
//! add/list/import/remove; the operator API and the chatbot's opt-out,
//! which can stop the conversation's own number and nothing else.

use std::path::Path;

use crate::common::*;
use pedulicovid::app::{App, Parts};
use pedulicovid::domain::notice::FreeText;
use pedulicovid::domain::{Msisdn, Nik};
use pedulicovid::store::{now_ms, Role, Store, SupportError};
use pedulicovid::suppression::{NewSuppression, SuppressionReason, SuppressionTarget};
use serde_json::{json, Value};

/// Nothing runs but the store: every change below is the test's own.
const STILL: Parts = Parts {
    http: false,
    workers: 0,
    housekeeping: false,
    ..Parts::SERVE
};

fn by_nik(i: u32) -> SuppressionTarget {
    SuppressionTarget::Nik(Nik::parse(&nik_of(i, "31")).unwrap())
}

/// The phone of `row(i, "31", &i.to_string())`, as people type it.
fn phone_of(i: u32) -> String {
    format!("0812{i:0>8}")
}

fn by_phone(i: u32) -> SuppressionTarget {
    SuppressionTarget::Phone(Msisdn::parse(&phone_of(i)).unwrap())
}

fn entry(target: SuppressionTarget, reason: SuppressionReason) -> NewSuppression {
    NewSuppression {
        target,
        reason,
        note: String::new(),
        expires_at: None,
        added_by: "ops".into(),
    }
}

/// `n` workers, phones ending in their index.
async fn import_workers(store: &Store, n: u32) {
    let csv: String = std::iter::once(HEADER.to_string())
        .chain((0..n).map(|i| row(i, "31", &format!("{i}"))))
        .collect();
    assert_eq!(import_text(store, &csv).await.accepted, u64::from(n));
}

/// (status, last_error) of worker `i`'s messages, oldest first.
async fn messages_of(app: &App, db: &TestDb, i: u32) -> Vec<(String, Option<String>)> {
    let id = worker_id(&app.store, &nik_of(i, "31")).await;
    sql_rows(
        &db.url,
        "SELECT status, last_error FROM messages WHERE worker_id = $1 ORDER BY id",
        &[id],
    )
    .await
}

async fn creation_leaves_suppressed_workers_out(backend: &str) {
    let db = TestDb::new(backend).await;
    let app = start(test_settings(&db), STILL).await;
    import_workers(&app.store, 6).await;
    let s = &app.store;
    s.suppress(&entry(by_nik(1), SuppressionReason::Vaccinated))
        .await
        .unwrap();
    s.suppress(&entry(by_phone(2), SuppressionReason::WrongNumber))
        .await
        .unwrap();
    // Removed: counts for nothing.
    s.suppress(&entry(by_nik(3), SuppressionReason::Other))
        .await
        .unwrap();
    s.unsuppress(&by_nik(3), "ops", "mistake").await.unwrap();
    // Expired (an entry whose time has passed, as the store would hold it).
    let mut gone = entry(by_phone(4), SuppressionReason::Declined);
    gone.expires_at = Some(now_ms() + 300);
    s.suppress(&gone).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;

    let (c, enqueued) = create_campaign(&app, campaign_request("suppressed")).await;
    assert_eq!(enqueued, 4, "workers 1 (NIK) and 2 (number) are left out");
    assert_eq!(c.suppressed, 2);
    let r = s.campaign_report(c.id).await.unwrap();
    assert_eq!((r.enqueued, r.suppressed), (4, 2));
    for (i, expected) in [(0, 1), (1, 0), (2, 0), (3, 1), (4, 1), (5, 1)] {
        assert_eq!(
            messages_of(&app, &db, i).await.len(),
            expected,
            "worker {i}"
        );
    }
    let active = s.suppressions(false).await.unwrap();
    assert_eq!(active.len(), 2, "{active:?}");
    assert!(active.iter().all(|e| !e.value_masked.contains("0000000")));
    let all = s.suppressions(true).await.unwrap();
    assert_eq!(all.len(), 4);
    let actions: Vec<String> = audit_actions(&db.url)
        .await
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    assert_eq!(
        actions.iter().filter(|a| *a == "suppression.add").count(),
        4
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "suppression.remove")
            .count(),
        1
    );
    app.stop(std::time::Duration::from_secs(5)).await;
}
both_backends!(creation_leaves_suppressed_workers_out);

async fn an_entry_cancels_queued_notices_and_flags_never_follow(backend: &str) {
    let db = TestDb::new(backend).await;
    let app = start(test_settings(&db), STILL).await;
    import_workers(&app.store, 4).await;
    let (c, _) = create_campaign(&app, campaign_request("mid-campaign")).await;
    let s = &app.store;

    // Worker 0 by NIK, worker 1 by number: queued notices cancelled in the
    // adding transaction; worker 2's stays.
    let done = s
        .suppress(&entry(by_nik(0), SuppressionReason::Deceased))
        .await
        .unwrap();
    assert!(done.created);
    assert_eq!(done.cancelled, 1);
    let done = s
        .suppress(&entry(by_phone(1), SuppressionReason::Declined))
        .await
        .unwrap();
    assert_eq!(done.cancelled, 1);
    for i in [0, 1] {
        assert_eq!(
            messages_of(&app, &db, i).await,
            [("cancelled".to_string(), Some("suppressed".to_string()))]
        );
    }
    assert_eq!(messages_of(&app, &db, 2).await[0].0, "queued");
    // Adding again keeps the entry (and its reason) as it was.
    let again = s
        .suppress(&entry(by_phone(1), SuppressionReason::Other))
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.entry.reason, SuppressionReason::Declined);
    assert_eq!(s.campaign_report(c.id).await.unwrap().suppressed, 2);

    // Workers 2 and 3 were sent to and never got a receipt; worker 3 is
    // suppressed before the sweep: only worker 2 becomes a non-recipient.
    let _: Vec<(i64,)> = sql_rows(
        &db.url,
        "UPDATE messages SET status = 'sent', sent_at = 1 WHERE status = 'queued' RETURNING id",
        &[],
    )
    .await;
    s.suppress(&entry(by_nik(3), SuppressionReason::Vaccinated))
        .await
        .unwrap();
    assert_eq!(s.sweep_no_receipt(now_ms()).await.unwrap(), 2);
    let flagged: Vec<(i64, Option<String>)> = sql_rows(
        &db.url,
        "SELECT worker_id, resolution FROM non_recipients ORDER BY id",
        &[],
    )
    .await;
    let w2 = worker_id(s, &nik_of(2, "31")).await;
    assert_eq!(
        flagged,
        [(w2, None)],
        "the suppressed worker is not flagged"
    );

    // Suppressing worker 2 now resolves the open flag.
    let done = s
        .suppress(&entry(by_phone(2), SuppressionReason::WrongNumber))
        .await
        .unwrap();
    assert_eq!(done.flags_resolved, 1);
    assert!(s.flags(Some(c.id), false).await.unwrap().is_empty());
    app.stop(std::time::Duration::from_secs(5)).await;
}
both_backends!(an_entry_cancels_queued_notices_and_flags_never_follow);

/// An enqueue that committed after an add had looked for notices: the add
/// cancelled nothing, housekeeping cancels the notice on its next round.
async fn housekeeping_cancels_what_a_racing_enqueue_queued(backend: &str) {
    let db = TestDb::new(backend).await;
    let app = start(test_settings(&db), STILL).await;
    import_workers(&app.store, 2).await;
    create_campaign(&app, campaign_request("race")).await;
    // The entry as the add would have stored it, without its cancel.
    let nik = nik_of(1, "31");
    let _: Vec<(i64,)> = sql_rows(
        &db.url,
        &format!(
            "INSERT INTO suppressions (kind, value, reason, added_by, added_at) \
             VALUES ('nik', '{nik}', 'declined', 'ops', $1) RETURNING id"
        ),
        &[now_ms()],
    )
    .await;
    assert_eq!(app.store.cancel_recently_suppressed().await.unwrap(), 1);
    assert_eq!(messages_of(&app, &db, 1).await[0].0, "cancelled");
    assert_eq!(messages_of(&app, &db, 0).await[0].0, "queued");
    assert_eq!(app.store.cancel_recently_suppressed().await.unwrap(), 0);
    app.stop(std::time::Duration::from_secs(5)).await;
}
both_backends!(housekeeping_cancels_what_a_racing_enqueue_queued);

async fn resends_are_refused_until_removed(backend: &str) {
    let db = TestDb::new(backend).await;
    let app = start(test_settings(&db), STILL).await;
    import_workers(&app.store, 1).await;
    create_campaign(&app, campaign_request("resend")).await;
    let _: Vec<(i64,)> = sql_rows(
        &db.url,
        "UPDATE messages SET status = 'undelivered', final_at = 1 RETURNING id",
        &[],
    )
    .await;
    let s = &app.store;
    let id = worker_id(s, &nik_of(0, "31")).await;
    let staff = FreeText::staff("Sari").unwrap();
    let reason = FreeText::reason("called").unwrap();
    s.suppress(&entry(by_phone(0), SuppressionReason::Declined))
        .await
        .unwrap();
    match s.resend(id, &staff, &reason).await {
        Err(SupportError::NotEligible(why)) => assert!(why.contains("suppressed"), "{why}"),
        other => panic!("resend of a suppressed worker: {other:?}"),
    }
    assert_eq!(messages_of(&app, &db, 0).await.len(), 1);
    // Support staff see why on the worker's timeline.
    let t = s.timeline(id).await.unwrap();
    assert_eq!(t.suppressions.len(), 1);
    assert!(t.suppressions[0].active);
    s.unsuppress(&by_phone(0), "ops", "asked again")
        .await
        .unwrap();
    let t = s.timeline(id).await.unwrap();
    assert_eq!(t.suppressions[0].removed_by.as_deref(), Some("ops"));
    assert!(!t.suppressions[0].active);
    s.resend(id, &staff, &reason)
        .await
        .expect("resend after removal");
    assert_eq!(messages_of(&app, &db, 0).await.len(), 2);
    app.stop(std::time::Duration::from_secs(5)).await;
}
both_backends!(resends_are_refused_until_removed);

/// Runs the binary against `url` as user `ops-cli`; (exit code, stdout, stderr).
async fn cli(dir: &Path, url: &str, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pedulicovid"))
        .arg("--database-url")
        .arg(url)
        .args(args)
        .current_dir(dir)
        .env("USER", "ops-cli")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or("").as_bytes())
        .await
        .unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn the_command_line_adds_imports_lists_and_removes(backend: &str) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let store = db.store().await;
    import_workers(&store, 3).await;
    let url = db.url.as_str();
    let d = dir.path();

    let (code, out, err) = cli(
        d,
        url,
        &[
            "--json",
            "suppress",
            "add",
            "--phone",
            "-",
            "--reason",
            "declined",
            "--until",
            "2099-12-31",
            "--note",
            "asked by phone",
        ],
        Some(&phone_of(0)),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["created"], true);
    assert_eq!(v["reason"], "declined");
    assert!(
        !out.contains(&phone_of(0)[1..]),
        "the number is masked: {out}"
    );

    // The same NIK twice, a bad reason, a bad number, no target: each row
    // refused with its line; the good row lands; exit 3.
    let file = d.join("suppress.csv");
    std::fs::write(
        &file,
        format!(
            "nik,phone,reason,note\n{n1},,vaccinated,One Data\n{n1},,deceased,\n,{p2},sleepy,\n,0812,other,\n,,other,\n",
            n1 = nik_of(1, "31"),
            p2 = phone_of(2)
        ),
    )
    .unwrap();
    let (code, out, _) = cli(
        d,
        url,
        &["suppress", "import", file.to_str().unwrap()],
        None,
    )
    .await;
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("1 added"), "{out}");
    for line in [
        "line 3: nik",
        "line 4: reason",
        "line 5: phone",
        "line 6: phone",
    ] {
        assert!(out.contains(line), "{line} in {out}");
    }
    let (code, out, _) = cli(d, url, &["--json", "suppress", "list"], None).await;
    assert_eq!(code, 0);
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.len(), 2);
    assert!(!out.contains(&nik_of(1, "31")), "NIKs are masked: {out}");

    let (code, _, err) = cli(
        d,
        url,
        &["suppress", "remove", "--nik", &nik_of(1, "31")],
        None,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli(
        d,
        url,
        &["suppress", "remove", "--nik", &nik_of(1, "31")],
        None,
    )
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("not found"), "{err}");
    // Exactly one target.
    let (code, _, _) = cli(d, url, &["suppress", "add", "--reason", "other"], None).await;
    assert_eq!(code, 2);
    let actors: Vec<(String, String)> = audit_actions(url).await;
    assert!(actors
        .iter()
        .any(|(a, who)| a == "suppression.remove" && who == "ops-cli"));
    store.close().await;
}
both_backends!(the_command_line_adds_imports_lists_and_removes);

async fn the_api_and_the_chatbots_opt_out(backend: &str) {
    let db = TestDb::new(backend).await;
    let app = start(
        test_settings(&db),
        Parts {
            workers: 0,
            ..Parts::SERVE
        },
    )
    .await;
    import_workers(&app.store, 3).await;
    let c = run_campaign(&app, "api", &closed_window_now()).await;
    let base = base_url(&app);
    let http = reqwest::Client::new();
    let operator = app
        .store
        .create_token("ops", Role::Operator)
        .await
        .unwrap()
        .secret;
    let chatbot = app
        .store
        .create_token("bot", Role::Chatbot)
        .await
        .unwrap()
        .secret;
    let post = |path: &str, token: &str, body: Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth(token)
            .json(&body)
            .send()
    };

    // The chatbot stops its own conversation's number, as `declined`.
    let r = post(
        "/api/v1/chatbot/opt-out",
        &chatbot,
        json!({"whatsapp_phone": format!("+62812{:0>8}", 0)}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["suppressed"], true);
    assert_eq!(messages_of(&app, &db, 0).await[0].0, "cancelled");
    // A later look-up offers no re-registration to the number that said no.
    let r = post(
        "/api/v1/chatbot/lookup",
        &chatbot,
        json!({"phone": phone_of(0)}),
    )
    .await
    .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["suppressed"], true, "{v}");
    assert_eq!(
        v["advice"],
        pedulicovid::http::api::chatbot::ADVICE_SUPPRESSED,
        "{v}"
    );
    // It can name nothing else: no NIK, no reason, no expiry.
    for body in [
        json!({"whatsapp_phone": phone_of(1), "nik": nik_of(1, "31")}),
        json!({"whatsapp_phone": phone_of(1), "reason": "deceased"}),
        json!({"nik": nik_of(1, "31")}),
    ] {
        let r = post("/api/v1/chatbot/opt-out", &chatbot, body)
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }
    assert_eq!(messages_of(&app, &db, 1).await[0].0, "queued");
    // Nor use the operator's list.
    let r = post(
        "/api/v1/suppressions",
        &chatbot,
        json!({"nik": nik_of(1, "31"), "reason": "deceased"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    // An opt-out does not soften what an operator set: the entry stays.
    let r = post(
        "/api/v1/suppressions",
        &operator,
        json!({"phone": phone_of(2), "reason": "deceased", "until": "2099-01-01"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let r = post(
        "/api/v1/chatbot/opt-out",
        &chatbot,
        json!({"whatsapp_phone": phone_of(2)}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let entry = app
        .store
        .suppression_of(&by_phone(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.reason, SuppressionReason::Deceased);
    assert!(entry.expires_at.is_some());

    // Operators: bad fields named, import, list, remove, campaign figures.
    let r = post(
        "/api/v1/suppressions",
        &operator,
        json!({"phone": "0812", "reason": "other"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["field"], "phone");
    let r = http
        .post(format!("{base}/api/v1/suppressions/import"))
        .bearer_auth(&operator)
        .header("content-type", "text/csv")
        .body(format!(
            "nik,reason\n{},vaccinated\nx,other\n",
            nik_of(1, "31")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["added"].as_u64(), v["rejected_rows"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(v["rejections"][0]["line"], 3);
    let list: Vec<Value> = http
        .get(format!("{base}/api/v1/suppressions"))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 3);
    let show: Value = http
        .get(format!("{base}/api/v1/campaigns/{c}"))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(show["suppressed"], 3, "{show}");
    // The campaign page says it too.
    let page = crate::outcomes::campaign_page(&app, &operator, c).await;
    let card = &page[page.find("id=\"ditahan\"").expect("the suppressed card")..];
    assert!(card[..120].contains(">3<"), "{}", &card[..120]);
    // The worker's page in the support UI lists the entry.
    let support = app
        .store
        .create_token("desk", Role::Support)
        .await
        .unwrap()
        .secret;
    let w2 = worker_id(&app.store, &nik_of(2, "31")).await;
    let page = crate::outcomes::ui_page(&app, &support, &format!("/ui/nakes/{w2}")).await;
    let section = &page[page.find("id=\"tahan\"").expect("the suppression section")..];
    assert!(section.contains("Daftar tahan (1)"), "{}", &section[..300]);
    assert!(section.contains("deceased") && section.contains("berlaku sampai"));
    let r = post(
        "/api/v1/suppressions/remove",
        &operator,
        json!({"nik": nik_of(1, "31"), "note": "not vaccinated after all"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let actors = audit_actions(&db.url).await;
    assert!(actors
        .iter()
        .any(|(a, who)| a == "suppression.add" && who == "chatbot:bot"));
    app.stop(std::time::Duration::from_secs(5)).await;
}
both_backends!(the_api_and_the_chatbots_opt_out);

/// Outreach learns the worker declined: their NIK goes on the list, so
/// the next campaign leaves them out.
async fn a_declined_outcome_suppresses_the_worker(backend: &str) {
    let db = TestDb::new(backend).await;
    let app = start(test_settings(&db), STILL).await;
    import_workers(&app.store, 2).await;
    create_campaign(&app, campaign_request("first")).await;
    let _: Vec<(i64,)> = sql_rows(
        &db.url,
        "UPDATE messages SET status = 'sent', sent_at = 1 RETURNING id",
        &[],
    )
    .await;
    let s = &app.store;
    assert_eq!(s.sweep_no_receipt(now_ms()).await.unwrap(), 2);
    let w0 = worker_id(s, &nik_of(0, "31")).await;
    let flag = s
        .flags(None, false)
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.worker_id == w0)
        .unwrap();
    let staff = FreeText::staff("Tim Penjangkauan").unwrap();
    s.record_flag_outcome(
        &pedulicovid::store::NewOutcome {
            flag_id: flag.id,
            outcome: pedulicovid::domain::outcome::Outcome::Declined,
            note: None,
        },
        None,
        &staff,
    )
    .await
    .unwrap();
    let entry = s
        .suppression_of(&by_nik(0))
        .await
        .unwrap()
        .expect("suppressed");
    assert_eq!(entry.reason, SuppressionReason::Declined);
    assert_eq!(entry.added_by, "Tim Penjangkauan");
    assert!(s.suppression_of(&by_nik(1)).await.unwrap().is_none());
    let (c, enqueued) = create_campaign(&app, campaign_request("second")).await;
    assert_eq!((enqueued, c.suppressed), (1, 1));
    app.stop(std::time::Duration::from_secs(5)).await;
}
both_backends!(a_declined_outcome_suppresses_the_worker);
