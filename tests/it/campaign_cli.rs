//! The operator's command line against a running app, on both databases:
//! `campaign show` prints the same throughput and ETA as
//! `GET /api/v1/campaigns/{id}` (one computation), `campaign schedule`
//! moves a campaign's start and refuses bad times and finished campaigns,
//! `campaign resume` returns a campaign whose start is ahead to
//! `scheduled`, and `flags export` writes a formula-guarded CSV; every
//! change audited by the CLI's user. Workers whose names carry emoji, curly
//! quotes or accents get GSM-7, one-segment notices, and `campaign show`
//! and the API report `segments_per_message`.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use pedulicovid::app::Parts;
use pedulicovid::campaign::{self, CampaignRequest};
use pedulicovid::status::Status;
use pedulicovid::store::{now_ms, Role, Store};
use serde_json::Value;

/// The `USER` the CLI runs as: its actor in the audit trail.
const CLI_USER: &str = "ops-cli";

/// Runs the binary in `dir` against `url`; returns (success, stdout, stderr).
async fn cli(dir: &Path, url: &str, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pedulicovid"))
        .arg("--database-url")
        .arg(url)
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env("USER", CLI_USER)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8(out.stdout).expect("UTF-8 output"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the binary and insists it succeeds; returns stdout.
async fn cli_ok(dir: &Path, url: &str, args: &[&str]) -> String {
    let (ok, out, err) = cli(dir, url, args).await;
    assert!(ok, "{args:?} failed: {err}");
    out
}

/// A window open now in WIT (UTC+9) and closed now in WIB (UTC+7): Papua's
/// notices go out at once, Jakarta's wait.
fn open_in_wit_only() -> String {
    let wit = ((now_ms() / 60_000) + 9 * 60) % 1440;
    let (start, end) = ((wit - 60).max(0), (wit + 60).min(1440));
    format!(
        "{:02}:{:02}-{:02}:{:02}",
        start / 60,
        start % 60,
        end / 60,
        end % 60
    )
}

/// Waits until the campaign has `queued` messages queued and nothing else
/// in flight.
async fn wait_queued_only(store: &Store, id: i64, queued: i64) {
    let start = Instant::now();
    loop {
        let r = store.campaign_report(id).await.unwrap();
        let q = r.status(pedulicovid::status::Status::Queued);
        if q == queued && r.in_flight() == queued {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn campaign_cli_matches_the_api(backend: &str) {
    let db = TestDb::new(backend).await;
    let app = start(ruled_settings(&db, "0=undelivered"), Parts::ALL).await;
    let base = base_url(&app);
    let dir = tempfile::tempdir().unwrap();
    let (dir, url) = (dir.path(), db.url.as_str());

    // Papua: one delivered, one undelivered (a name a spreadsheet would run
    // as a formula); Jakarta: one waiting for its window.
    let csv = format!(
        "{HEADER}{}{}{}",
        row(1, "94", "00000011"),
        row(2, "94", "00000020").replacen("Nakes Nomor 2,", "@SUM(1+1) Dewi,", 1),
        row(3, "31", "00000031"),
    );
    assert_eq!(import_text(&app.store, &csv).await.accepted, 3);
    let req = CampaignRequest {
        window: open_in_wit_only().parse().unwrap(),
        ..campaign_request("papua dulu")
    };
    let (c, n) = create_campaign(&app, req).await;
    assert_eq!(n, 3);
    let id = c.id.to_string();
    wait_queued_only(&app.store, c.id, 1).await;

    // `campaign show --json` and the API agree on throughput and ETA: two
    // sends in the last minute, one message queued → 30 s.
    let shown: Value =
        serde_json::from_str(&cli_ok(dir, url, &["campaign", "show", &id, "--json"]).await)
            .unwrap();
    let op = app
        .store
        .create_token("ops", Role::Operator)
        .await
        .unwrap()
        .secret;
    let api: Value = reqwest::Client::new()
        .get(format!("{base}/api/v1/campaigns/{id}"))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pace = &shown["pace"];
    assert_eq!(pace["throughput_per_sec"], 2.0 / 60.0, "{shown}");
    assert_eq!(pace["eta_seconds"], 30.0, "{shown}");
    assert!(pace["eta_wib"].as_str().unwrap().ends_with("WIB"));
    assert_eq!(
        api["throughput_per_sec"], pace["throughput_per_sec"],
        "{api}"
    );
    assert_eq!(api["eta_seconds"], pace["eta_seconds"], "{api}");
    let text = cli_ok(dir, url, &["campaign", "show", &id]).await;
    assert!(text.contains("throughput 0.03/s (last 60 s)"), "{text}");
    assert!(text.contains("WIB (in 30 s)"), "{text}");

    // Paused: no ETA.
    let out = cli_ok(dir, url, &["campaign", "pause", &id, "--reason", "cek"]).await;
    assert!(out.contains("is now paused"), "{out}");
    let shown: Value =
        serde_json::from_str(&cli_ok(dir, url, &["campaign", "show", &id, "--json"]).await)
            .unwrap();
    assert_eq!(shown["pace"]["eta_seconds"], Value::Null, "{shown}");
    assert!(cli_ok(dir, url, &["campaign", "show", &id])
        .await
        .contains("ETA -"));

    // Reschedule: bad times refused, a paused campaign stays paused, and
    // resumed with its start ahead it is scheduled.
    for (bad, why) in [
        ("besok", "is not a time"),
        ("2020-01-01 08:00", "is in the past"),
    ] {
        let (ok, _, err) = cli(dir, url, &["campaign", "schedule", &id, "--at", bad]).await;
        assert!(!ok && err.contains(why), "{bad}: {err}");
    }
    let out = cli_ok(
        dir,
        url,
        &["campaign", "schedule", &id, "--at", "2099-01-01 07:00"],
    )
    .await;
    assert!(
        out.contains("is paused, starts 2099-01-01 07:00:00 WIB"),
        "{out}"
    );
    assert!(out.contains("1 queued message(s) re-timed"), "{out}");
    let c = app.store.campaign(c.id).await.unwrap();
    assert_eq!(
        c.scheduled_at,
        campaign::parse_time("2099-01-01 07:00").unwrap()
    );
    let out = cli_ok(dir, url, &["campaign", "resume", &id]).await;
    assert!(out.contains("is now scheduled"), "{out}");

    // The outreach export: the name guarded, our phone untouched.
    let file = dir.join("nonrecipients.csv");
    cli_ok(
        dir,
        url,
        &[
            "flags",
            "export",
            "--campaign",
            &id,
            "-o",
            file.to_str().unwrap(),
        ],
    )
    .await;
    let exported = std::fs::read_to_string(&file).unwrap();
    let mut rd = csv::Reader::from_reader(exported.as_bytes());
    let rows: Vec<csv::StringRecord> = rd.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1, "{exported}");
    assert_eq!(&rows[0][4], "'@SUM(1+1) Dewi");
    assert_eq!(&rows[0][5], "+6281200000020");

    // Finished: refused.
    cli_ok(dir, url, &["campaign", "cancel", &id]).await;
    let (ok, _, err) = cli(
        dir,
        url,
        &["campaign", "schedule", &id, "--at", "2099-02-01 08:00"],
    )
    .await;
    assert!(!ok && err.contains("cancelled"), "{err}");

    let audits = audit_actions(url).await;
    for action in [
        "campaign.pause",
        "campaign.schedule",
        "campaign.resume",
        "campaign.export_nonrecipients",
        "campaign.cancel",
    ] {
        let n = audits
            .iter()
            .filter(|(a, actor)| a == action && actor == CLI_USER)
            .count();
        assert_eq!(n, 1, "{action}: {audits:?}");
    }
    assert!(audits.contains(&("campaign.create".into(), "test".into())));
    app.stop(Duration::from_secs(5)).await;
}
both_backends!(campaign_cli_matches_the_api);

/// Names as they arrive from WhatsApp, Word and phone keyboards, with the
/// name each notice prints (`nama_pendek`).
const REAL_NAMES: [(&str, &str); 7] = [
    ("Dewi Lestari \u{1F60A}\u{1F489}", "Dewi Lestari"),
    ("Muhammad Ma\u{2019}ruf", "Muhammad Ma'ruf"),
    (
        "\u{201C}Ucok\u{201D} Siregar \u{2013} Perawat",
        "\"Ucok\" Siregar",
    ),
    (
        "Siti Rahayu\u{2026}\u{00A0}\u{1F469}\u{200D}\u{2695}\u{FE0F}",
        "Siti Rahayu...",
    ),
    (
        "Fran\u{00E7}ois \u{00C7}ak\u{0131}r",
        "Francois \u{00C7}akir",
    ),
    ("Budi [Puskesmas]", "Budi [Puskesmas]"),
    ("\u{1F600}\u{1F600}", pedulicovid::render::NAME_FALLBACK),
];

/// The segments figures `campaign show --json` and the API report.
async fn segments_shown(dir: &Path, url: &str, base: &str, op: &str, id: i64) -> (Value, Value) {
    let id = id.to_string();
    let shown: Value =
        serde_json::from_str(&cli_ok(dir, url, &["campaign", "show", &id, "--json"]).await)
            .unwrap();
    let api: Value = reqwest::Client::new()
        .get(format!("{base}/api/v1/campaigns/{id}"))
        .bearer_auth(op)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        shown["report"]["segments_per_message"].clone(),
        api["segments_per_message"].clone(),
    )
}

/// A name never makes a notice cost more: workers whose names carry emoji,
/// curly quotes, dashes, an ellipsis, a no-break space, accents and GSM-7
/// extension characters all get a GSM-7, one-segment notice, and
/// `campaign show` (text and JSON) and the API report 1.0 segment per
/// message (nothing before the first send).
async fn real_world_names_cost_one_segment(backend: &str) {
    let db = TestDb::new(backend).await;
    let mut settings = test_settings(&db);
    settings.simulator.mix = all_delivered();
    let app = start(settings, Parts::ALL).await;
    let base = base_url(&app);
    let dir = tempfile::tempdir().unwrap();
    let (dir, url) = (dir.path(), db.url.as_str());
    let op = app
        .store
        .create_token("ops", Role::Operator)
        .await
        .unwrap()
        .secret;

    let mut csv = String::from(HEADER);
    for (i, (name, _)) in REAL_NAMES.iter().enumerate() {
        let i = i as u32;
        csv.push_str(
            &row(i, "31", &format!("{:08}", 700 + i))
                .replace(&format!("Nakes Nomor {i},"), &format!("{name},")),
        );
    }
    let n = REAL_NAMES.len() as i64;
    let imported = import_text(&app.store, &csv).await;
    assert_eq!(imported.accepted, n as u64, "{:?}", imported.rejections);

    // Queued behind a closed window: nothing sent, no figure.
    let id = run_campaign(&app, "nama asli", &closed_window_now()).await;
    wait_queued_only(&app.store, id, n).await;
    let (shown, api) = segments_shown(dir, url, &base, &op, id).await;
    assert_eq!((shown, api), (Value::Null, Value::Null));
    let text = cli_ok(dir, url, &["campaign", "show", &id.to_string()]).await;
    assert!(
        text.contains("sent 0, suppressed 0, segments per message -"),
        "{text}"
    );

    open_windows_now(url).await;
    let mut r = wait_done(&app.store, id, Duration::from_secs(30)).await;
    // A fast receipt can make a message final just before its send is
    // recorded; the record follows right after.
    let limit = Instant::now() + Duration::from_secs(10);
    while r.sent < n && Instant::now() < limit {
        tokio::time::sleep(Duration::from_millis(50)).await;
        r = app.store.campaign_report(id).await.unwrap();
    }
    assert_eq!((r.sent, r.status(Status::Delivered)), (n, n), "{r:?}");

    // (phone, encoding, segments, body) of every message.
    type Sent = (String, Option<String>, Option<i32>, Option<String>);
    let messages: Vec<Sent> = sql_rows(
        url,
        "SELECT phone, encoding, segments, body FROM messages WHERE campaign_id = $1 ORDER BY id",
        &[id],
    )
    .await;
    assert_eq!(messages.len(), n as usize);
    for (i, (_, shown)) in REAL_NAMES.iter().enumerate() {
        let phone = format!("+62812{:08}", 700 + i);
        let (_, encoding, segments, body) = messages
            .iter()
            .find(|m| m.0 == phone)
            .unwrap_or_else(|| panic!("a message to worker {i}"));
        let body = body.as_deref().unwrap_or_default();
        assert_eq!(encoding.as_deref(), Some("gsm7"), "worker {i}: {body}");
        assert_eq!(*segments, Some(1), "worker {i}: {body}");
        assert!(
            body.starts_with(&format!("{shown} (NIK ****")),
            "worker {i}: {body}"
        );
    }

    let (shown, api) = segments_shown(dir, url, &base, &op, id).await;
    assert_eq!((shown.as_f64(), api.as_f64()), (Some(1.0), Some(1.0)));
    let text = cli_ok(dir, url, &["campaign", "show", &id.to_string()]).await;
    assert!(text.contains("segments per message 1.00"), "{text}");
    app.stop(Duration::from_secs(5)).await;
}
both_backends!(real_world_names_cost_one_segment);
