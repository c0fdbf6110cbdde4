//! Outreach outcomes on both databases: flags from a real failing run (the
//! simulator answers `undelivered` and `expired`), outcomes recorded one by
//! one through the API and the CLI and in bulk from CSV (bad rows reported
//! with their line and reason while the good ones land, a flag of another
//! campaign refused), the campaign's "finally reached" figures by reason
//! and by province (an outcome, a resend delivered in a later campaign), in
//! the API, `campaign show` and the campaign page; roles; audit.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use pedulicovid::app::{App, Parts};
use pedulicovid::campaign::CampaignRequest;
use pedulicovid::domain::notice::FreeText;
use pedulicovid::store::{OutreachReport, Role, Store};
use reqwest::StatusCode;
use serde_json::{json, Value};

const CLI_USER: &str = "outreach-cli";

/// Runs the binary against `url` with `stdin`; (exit code, stdout, stderr).
async fn cli(dir: &Path, url: &str, args: &[&str], stdin: &str) -> (i32, String, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pedulicovid"))
        .arg("--database-url")
        .arg(url)
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env("USER", CLI_USER)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The open-or-not flags of campaign `c`, by the worker's phone tail.
async fn flags_by_tail(store: &Store, c: i64) -> HashMap<String, i64> {
    store
        .flags(Some(c), true)
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.phone[f.phone.len() - 2..].to_string(), f.id))
        .collect()
}

/// (name, flagged, reached) rows.
type Figures = Vec<(String, i64, i64)>;

/// (flagged, reached) of every reason and of every province.
fn figures(r: &OutreachReport) -> (Figures, Figures) {
    (
        r.by_reason
            .iter()
            .map(|x| (x.reason.clone(), x.flagged, x.reached))
            .collect(),
        r.by_province
            .iter()
            .map(|x| (x.province_name.clone(), x.flagged, x.reached))
            .collect(),
    )
}

fn s(x: &str) -> String {
    x.to_string()
}

/// The value of `name=` in a `Set-Cookie` header of `r`.
fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .map(|c| c.split(';').next().unwrap().to_string())
}

/// The campaign page, signed in with `token`.
pub(crate) async fn campaign_page(app: &App, token: &str, id: i64) -> String {
    ui_page(app, token, &format!("/ui/kampanye/{id}")).await
}

/// A page of the support UI at `path`, signed in with `token`.
pub(crate) async fn ui_page(app: &App, token: &str, path: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let origin = base_url(app);
    let r = http.get(format!("{origin}/ui/login")).send().await.unwrap();
    let nonce = set_cookie(&r, "pcv_ui_login").unwrap();
    let html = r.text().await.unwrap();
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    let csrf = html[at..].split('"').next().unwrap().to_string();
    let r = http
        .post(format!("{origin}/ui/login"))
        .header("origin", &origin)
        .header("cookie", format!("pcv_ui_login={nonce}"))
        .form(&[("csrf", csrf.as_str()), ("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let session = format!("pcv_ui={}", set_cookie(&r, "pcv_ui").unwrap());
    let r = http
        .get(format!("{origin}{path}"))
        .header("cookie", session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.text().await.unwrap()
}

async fn outreach_outcomes_reach_the_reports(backend: &str) {
    let db = TestDb::new(backend).await;
    let app = start(ruled_settings(&db, "0=undelivered,9=expired"), Parts::ALL).await;
    let base = base_url(&app);
    let store = app.store.clone();
    let http = reqwest::Client::new();
    let token = |name: &'static str, role| {
        let store = store.clone();
        async move { store.create_token(name, role).await.unwrap().secret }
    };
    let (op, desk, bot, carrier) = (
        token("ops-desk", Role::Operator).await,
        token("help-desk", Role::Support).await,
        token("bot", Role::Chatbot).await,
        token("carrier", Role::Carrier).await,
    );

    // Jakarta: two undelivered, one delivered. Papua: one undelivered, two
    // expired.
    let csv = format!(
        "{HEADER}{}{}{}{}{}{}",
        row(1, "31", "00000010"),
        row(2, "31", "00000020"),
        row(3, "31", "00000011"),
        row(4, "94", "00000030"),
        row(5, "94", "00000019"),
        row(6, "94", "00000029"),
    );
    assert_eq!(import_text(&store, &csv).await.accepted, 6);
    let (c1, n) = create_campaign(&app, campaign_request("outreach satu")).await;
    assert_eq!(n, 6);
    let c1 = c1.id;
    wait_done(&store, c1, Duration::from_secs(30)).await;
    let flags = flags_by_tail(&store, c1).await;
    assert_eq!(flags.len(), 5, "{flags:?}");
    let f = |tail: &str| flags[tail];
    // A second campaign, Papua only: its own flags.
    let req = CampaignRequest {
        provinces: vec!["94".into()],
        ..campaign_request("outreach dua")
    };
    let (c2, _) = create_campaign(&app, req).await;
    let c2 = c2.id;
    wait_done(&store, c2, Duration::from_secs(30)).await;
    let other = flags_by_tail(&store, c2).await["30"];

    let report = store.outreach_report(c1).await.unwrap();
    assert_eq!((report.flagged, report.reached), (5, 0));

    // One by one through the API.
    let post = |path: String, token: String, body: Value| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let r = http
                .post(format!("{base}{path}"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let one = |flag: i64| format!("/api/v1/flags/{flag}/outcome");
    let (st, v) = post(
        one(f("10")),
        op.clone(),
        json!({"outcome": "reached_by_phone", "note": "ditelepon Senin"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["outcome"], "reached_by_phone");
    assert_eq!(v["flag_change"], "resolved");
    assert_eq!(v["resolution"], "outreach");
    assert_eq!(v["resolved_by"], "ops-desk");
    assert_eq!(v["campaign_id"], c1);
    // Support staff may record one; `unreachable` leaves the flag open.
    let (st, v) = post(
        one(f("30")),
        desk.clone(),
        json!({"outcome": "unreachable", "staff": "Rina"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["flag_change"], "unchanged");
    assert_eq!(v["resolved_at"], Value::Null);
    assert_eq!(v["outcome_by"], "Rina (via help-desk)");
    // Refusals: roles, an unknown outcome, an unknown flag, a stray field.
    for t in [&bot, &carrier] {
        let (st, _) = post(one(f("20")), t.clone(), json!({"outcome": "declined"})).await;
        assert_eq!(st, StatusCode::FORBIDDEN);
    }
    let (st, v) = post(one(f("20")), op.clone(), json!({"outcome": "reached"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(v["field"], "outcome", "{v}");
    let (st, _) = post(one(999_999), op.clone(), json!({"outcome": "declined"})).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = post(
        one(f("20")),
        op.clone(),
        json!({"outcome": "declined", "resolution": "support"}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // A later outcome replaces an earlier one: `unreachable` opens the
    // flag `outreach` resolved, and it closes again.
    let (_, v) = post(one(f("10")), op.clone(), json!({"outcome": "unreachable"})).await;
    assert_eq!(v["flag_change"], "reopened", "{v}");
    assert_eq!(v["previous_outcome"], "reached_by_phone");
    let w1 = store
        .worker_by_nik(&nik_of(1, "31"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.worker_status(w1.clone()).await.unwrap().open_flags,
        ["undelivered"]
    );
    let (_, v) = post(
        one(f("10")),
        op.clone(),
        json!({"outcome": "reached_by_phone"}),
    )
    .await;
    assert_eq!(v["flag_change"], "resolved", "{v}");
    // The chatbot no longer offers re-registration to a reached worker.
    assert!(store.worker_status(w1).await.unwrap().open_flags.is_empty());

    // In bulk: the outreach team's file, bound to campaign 1.
    let upload = |id: i64, token: String, body: String| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let r = http
                .post(format!("{base}/api/v1/campaigns/{id}/outcomes"))
                .bearer_auth(token)
                .header("content-type", "text/csv")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let file = format!(
        "flag_id,outcome,note\n\
         {},reregistered,lewat puskesmas\n\
         999999,declined,\n\
         {},maybe,\n\
         {}\n\
         {},declined,\n\
         {},declined,tidak mau\n\
         {other},reregistered,\n",
        f("20"),
        f("19"),
        f("29"),
        f("20"),
        f("29"),
    );
    for t in [&bot, &carrier, &desk] {
        let (st, _) = upload(c1, t.clone(), file.clone()).await;
        assert_eq!(st, StatusCode::FORBIDDEN);
    }
    let (st, v) = upload(c1, op.clone(), "flag_id,note\n1,x\n".into()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("missing column(s) outcome"),
        "{v}"
    );
    let (st, _) = upload(999_999, op.clone(), file.clone()).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, v) = upload(c1, op.clone(), file.clone()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["rows"], 7, "{v}");
    assert_eq!(v["recorded"], 2, "{v}");
    assert_eq!(v["flags_resolved"], 2, "{v}");
    assert_eq!(v["rejected_rows"], 5, "{v}");
    let rejections: Vec<(u64, String, String)> = v["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                s(r["field"].as_str().unwrap()),
                s(r["reason"].as_str().unwrap()),
            )
        })
        .collect();
    assert_eq!(
        rejections,
        [
            (3, s("flag_id"), s("flag 999999 does not exist")),
            (
                4,
                s("outcome"),
                s("\"maybe\" is not an outcome: one of reregistered, reached_by_phone, unreachable, declined")
            ),
            (5, s("row"), s("expected 3 fields, found 1")),
            (
                6,
                s("flag_id"),
                s("duplicate flag_id: line 2 has the same flag (one outcome per flag)")
            ),
            (
                8,
                s("flag_id"),
                format!("flag {other} belongs to campaign {c2}, not campaign {c1}")
            ),
        ]
    );
    // Nothing of the rejected rows was written.
    let untouched: Vec<(Option<String>,)> = sql_rows(
        &db.url,
        "SELECT outcome FROM non_recipients WHERE id = $1 OR id = $2",
        &[f("19"), other],
    )
    .await;
    assert_eq!(untouched, [(None,), (None,)]);

    let report = store.outreach_report(c1).await.unwrap();
    assert_eq!((report.flagged, report.reached), (5, 2));
    assert_eq!(
        figures(&report),
        (
            vec![(s("expired"), 2, 0), (s("undelivered"), 3, 2)],
            vec![(s("DKI Jakarta"), 2, 2), (s("Papua Tengah"), 3, 0)]
        )
    );
    let outcomes: Vec<(String, i64)> = report
        .by_outcome
        .iter()
        .map(|c| (c.outcome.clone(), c.count))
        .collect();
    assert_eq!(
        outcomes,
        [
            (s("reregistered"), 1),
            (s("reached_by_phone"), 1),
            (s("unreachable"), 1),
            (s("declined"), 1),
            (s("none"), 1)
        ]
    );

    // Reached by a later delivery: worker 5 gets a number that works and a
    // resend, which goes to the later campaign (2) and is delivered there.
    let moved = format!("{HEADER}{}", row(5, "94", "00000021"));
    assert_eq!(import_text(&store, &moved).await.counts.phone_changes, 1);
    let w5 = worker_id(&store, &nik_of(5, "94")).await;
    let staff = FreeText::staff("Rina").unwrap();
    let notice = store
        .resend(w5, &staff, &FreeText::reason("nomor baru").unwrap())
        .await
        .unwrap();
    assert_eq!(notice.campaign_id, c2);
    wait_done(&store, c2, Duration::from_secs(30)).await;
    let report = store.outreach_report(c1).await.unwrap();
    assert_eq!(
        figures(&report),
        (
            vec![(s("expired"), 2, 1), (s("undelivered"), 3, 2)],
            vec![(s("DKI Jakarta"), 2, 2), (s("Papua Tengah"), 3, 1)]
        )
    );
    assert_eq!(report.reached, 3);
    // Campaign 2: worker 5's later generation there reached them.
    let r2 = store.outreach_report(c2).await.unwrap();
    assert_eq!((r2.flagged, r2.reached), (3, 1));

    // The operator API and the campaign page carry the same figures.
    let v: Value = http
        .get(format!("{base}/api/v1/campaigns/{c1}"))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["outreach"]["flagged"], 5, "{v}");
    assert_eq!(v["outreach"]["reached"], 3, "{v}");
    assert_eq!(
        v["outreach"]["by_province"][1],
        json!({"province_code": "94", "province_name": "Papua Tengah", "flagged": 3, "reached": 1})
    );
    assert_eq!(
        v["outreach"]["by_reason"][0],
        json!({"reason": "expired", "flagged": 2, "reached": 1})
    );
    let html = campaign_page(&app, &op, c1).await;
    assert!(html.contains("Terjangkau setelah penjangkauan"), "{html}");
    assert!(
        html.contains("<strong id=\"terjangkau\">3 dari 5</strong> (60,0 %)"),
        "{html}"
    );
    assert!(
        html.contains(
            "<tr data-reason=\"undelivered\"><td>SMS tidak sampai</td><td class=\"num\">3</td><td class=\"num\">2</td></tr>"
        ),
        "{html}"
    );
    assert!(
        html.contains(
            "<tr data-reason=\"expired\"><td>kedaluwarsa di jaringan</td><td class=\"num\">2</td><td class=\"num\">1</td></tr>"
        ),
        "{html}"
    );
    assert!(
        html.contains(
            "<tr data-province=\"94\"><th scope=\"row\">Papua Tengah <span class=\"mono muted\">(94)</span></th><td class=\"num\">3</td><td class=\"num\">1</td></tr>"
        ),
        "{html}"
    );

    // The command line: one outcome, a file from standard input, and
    // `campaign show`.
    let dir = tempfile::tempdir().unwrap();
    let (dir, url) = (dir.path(), db.url.as_str());
    let flag4 = f("30").to_string();
    let (code, out, err) = cli(
        dir,
        url,
        &[
            "flags",
            "outcome",
            &flag4,
            "reached_by_phone",
            "--note",
            "ditelepon",
            "--json",
        ],
        "",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["recorded"]["outcome"], "reached_by_phone");
    assert_eq!(v["recorded"]["previous_outcome"], "unreachable");
    assert_eq!(v["recorded"]["flag_change"], "resolved");
    assert_eq!(v["recorded"]["outcome_by"], CLI_USER);
    let (code, _, err) = cli(dir, url, &["flags", "outcome", &flag4, "reached"], "").await;
    assert_eq!(code, 2, "a usage error: {err}");
    assert!(err.contains("\"reached\" is not an outcome"), "{err}");
    let (code, _, err) = cli(dir, url, &["flags", "outcome", "999999", "declined"], "").await;
    assert_eq!(code, 1);
    assert!(err.contains("flag 999999 not found"), "{err}");
    let file = format!(
        "flag_id,outcome\n{},reregistered\n{other},declined\n",
        f("29")
    );
    let (code, out, err) = cli(
        dir,
        url,
        &[
            "flags",
            "import-outcomes",
            "-",
            "--campaign",
            &c1.to_string(),
            "--json",
        ],
        &file,
    )
    .await;
    assert_eq!(code, 3, "rejected rows: exit 3 ({err})");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["recorded"].as_u64(), v["rejected_rows"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    assert_eq!(v["rejections"][0]["line"], 3);
    assert_eq!(
        v["flags_resolved"], 0,
        "the declined flag was resolved already: {v}"
    );
    let (code, out, err) = cli(dir, url, &["campaign", "show", &c1.to_string()], "").await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("outreach: 5 non-recipient(s), 5 finally reached"),
        "{out}"
    );
    assert!(out.contains("Papua"), "{out}");

    // Every outcome is in the audit trail, with who recorded it.
    let audit: Vec<(String, String)> = sql_rows(
        &db.url,
        "SELECT actor, detail FROM audit_log WHERE action = 'flag.outcome' ORDER BY id",
        &[],
    )
    .await;
    let actors: Vec<&str> = audit.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        actors,
        [
            "ops-desk",
            "Rina (via help-desk)",
            "ops-desk",
            "ops-desk",
            "ops-desk",
            "ops-desk",
            CLI_USER,
            CLI_USER
        ]
    );
    assert!(
        audit[2]
            .1
            .contains("outcome unreachable (was reached_by_phone); flag open again"),
        "{audit:?}"
    );
    // No phone number, NIK or name in an outcome's audit entry.
    for (_, detail) in &audit {
        assert!(
            !detail.contains("+62") && !detail.contains("Nakes"),
            "{detail}"
        );
    }
    app.stop(Duration::from_secs(5)).await;
}
both_backends!(outreach_outcomes_reach_the_reports);
