//! What happens with bad input: broken registry files, an unknown template,
//! gateways that answer nonsense or refuse a number, command-line mistakes,
//! and whether logs leak personal data. Storage-backed tests run on both
//! databases; the binary is exercised as a user would run it.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use axum::http::StatusCode;
use pedulicovid::app::Parts;
use pedulicovid::campaign::{self, CampaignError, CampaignRequest};
use pedulicovid::gateway::kannel::KannelConfig;
use pedulicovid::registry::{import_csv, ImportError, ImportReport};
use pedulicovid::render::TemplateError;
use pedulicovid::status::Status;
use pedulicovid::store::Store;

async fn import_bytes(store: &Store, bytes: &[u8]) -> Result<ImportReport, ImportError> {
    import_csv(store, bytes, |_| {}).await
}

/// The first 16 characters of a row already made: its NIK (see also
/// [`nik_of`] for a row by number).
fn nik_in(row: &str) -> &str {
    &row[..16]
}

// ---------------------------------------------------------------- registry

async fn csv_header_errors_name_the_columns(backend: &str) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;

    // `eligible` missing, `elig` unknown.
    let header = HEADER.replace(",eligible", ",elig");
    let csv = format!("{header}{}", row(1, "31", "11111111"));
    match import_bytes(&store, csv.as_bytes()).await {
        Err(ImportError::Header(msg)) => {
            assert!(msg.contains("missing column(s) eligible"), "{msg}");
            assert!(msg.contains("unknown column(s) elig"), "{msg}");
        }
        other => panic!("expected a header error, got {other:?}"),
    }

    // Two columns missing, nothing unknown.
    let header = "nik,full_name,profession,facility_code,regency_code,province_code,validated\n";
    match import_bytes(&store, header.as_bytes()).await {
        Err(ImportError::Header(msg)) => {
            assert!(msg.contains("missing column(s) phone, eligible"), "{msg}");
            assert!(!msg.contains("unknown"), "{msg}");
        }
        other => panic!("expected a header error, got {other:?}"),
    }

    // A header-less file: the first data row is read as a header.
    match import_bytes(&store, row(1, "31", "11111111").as_bytes()).await {
        Err(ImportError::Header(msg)) => assert!(msg.contains("missing column(s) nik"), "{msg}"),
        other => panic!("expected a header error, got {other:?}"),
    }
    assert_eq!(store.count_workers().await.unwrap(), 0, "nothing imported");
}
both_backends!(csv_header_errors_name_the_columns);

async fn csv_empty_file_and_header_only(backend: &str) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let err = import_bytes(&store, b"").await.unwrap_err();
    assert!(matches!(err, ImportError::Empty), "{err:?}");
    assert!(err.to_string().contains("nik,full_name,phone"), "{err}");

    let r = import_bytes(&store, HEADER.as_bytes()).await.unwrap();
    assert_eq!((r.rows, r.accepted, r.rejected_rows), (0, 0, 0));
    assert_eq!(store.count_workers().await.unwrap(), 0);
}
both_backends!(csv_empty_file_and_header_only);

async fn csv_bad_rows_are_rejected_the_rest_imported(backend: &str) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;

    let good1 = row(1, "31", "11111111"); // line 2
                                          // line 3: "José" in Latin-1 (0xE9), not UTF-8.
    let latin1 = {
        let r = row(2, "31", "22222222");
        let mut b = r.as_bytes().to_vec();
        let at = r.find("Nakes Nomor 2").unwrap();
        b.splice(
            at..at + "Nakes Nomor 2".len(),
            b"Jos\xe9 Rizal".iter().copied(),
        );
        b
    };
    let short = format!(
        "{}\n",
        row(3, "31", "33333333")
            .trim_end()
            .rsplit_once(',')
            .unwrap()
            .0
    ); // line 4
    let long = format!("{},extra\n", row(4, "31", "44444444").trim_end()); // line 5
    let first = row(5, "31", "55555555"); // line 6
    let good2 = row(6, "31", "66666666"); // line 7
    let dup = row(5, "31", "77777777"); // line 8: same NIK as line 6
    assert_eq!(nik_in(&first), nik_in(&dup));

    let mut bytes = HEADER.as_bytes().to_vec();
    bytes.extend_from_slice(good1.as_bytes());
    bytes.extend_from_slice(&latin1);
    bytes.extend_from_slice(short.as_bytes());
    bytes.extend_from_slice(long.as_bytes());
    bytes.extend_from_slice(first.as_bytes());
    bytes.extend_from_slice(good2.as_bytes());
    bytes.extend_from_slice(dup.as_bytes());
    let r = import_bytes(&store, &bytes).await.expect("import runs");

    assert_eq!(r.rows, 7, "{r:?}");
    assert_eq!(r.accepted, 3, "{r:?}");
    assert_eq!(r.rejected_rows, 4, "{r:?}");
    let by_line = |line: u64| {
        r.rejections
            .iter()
            .filter(|x| x.line == line)
            .collect::<Vec<_>>()
    };
    let l3 = by_line(3);
    assert_eq!(l3.len(), 1, "{l3:?}");
    assert_eq!(l3[0].field, "full_name");
    assert!(l3[0].reason.contains("UTF-8"), "{}", l3[0].reason);
    let l4 = by_line(4);
    assert_eq!(
        (l4[0].field.as_str(), l4[0].reason.as_str()),
        ("row", "expected 9 fields, found 8")
    );
    let l5 = by_line(5);
    assert_eq!(
        (l5[0].field.as_str(), l5[0].reason.as_str()),
        ("row", "expected 9 fields, found 10")
    );
    let l8 = by_line(8);
    assert_eq!(l8.len(), 1, "{l8:?}");
    assert_eq!(l8[0].field, "nik");
    assert!(l8[0].reason.contains("line 6"), "{}", l8[0].reason);

    assert_eq!(store.count_workers().await.unwrap(), 3);
    for ok in [&good1, &first, &good2] {
        assert!(store.worker_by_nik(nik_in(ok)).await.unwrap().is_some());
    }
    // The first of the duplicates is the one kept.
    let kept = store.worker_by_nik(nik_in(&first)).await.unwrap().unwrap();
    assert_eq!(kept.phone.as_e164(), "+6281255555555");
    assert!(store
        .worker_by_nik(&nik_of(2, "31"))
        .await
        .unwrap()
        .is_none());
}
both_backends!(csv_bad_rows_are_rejected_the_rest_imported);

async fn csv_bom_is_accepted(backend: &str) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let csv = format!("\u{feff}{HEADER}{}", row(1, "31", "11111111"));
    let r = import_bytes(&store, csv.as_bytes())
        .await
        .expect("BOM accepted");
    assert_eq!(r.accepted, 1, "{:?}", r.rejections);
    assert!(r.rejections.is_empty(), "{:?}", r.rejections);

    // Columns in another order, in capitals, after a BOM: still read by name.
    let header = "\u{feff}PHONE,NIK,full_name,profession,facility_code,regency_code,province_code,validated,eligible\n";
    let r2 = row(2, "31", "22222222");
    let f: Vec<&str> = r2.trim_end().split(',').collect();
    let reordered = format!("{},{},{},{}\n", f[2], f[0], f[1], f[3..].join(","));
    let r = import_bytes(&store, format!("{header}{reordered}").as_bytes())
        .await
        .unwrap();
    assert_eq!(r.accepted, 1, "{:?}", r.rejections);
    let w = store.worker_by_nik(f[0]).await.unwrap().expect("imported");
    assert_eq!(w.phone.as_e164(), "+6281222222222");
    assert_eq!(store.count_workers().await.unwrap(), 2);
}
both_backends!(csv_bom_is_accepted);

async fn csv_unclosed_quote_costs_only_its_own_line(backend: &str) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    // Line 3 opens a quote in the name and never closes it. A CSV parser
    // would read lines 3 to 5 as one field; the import rejects line 3 alone
    // and imports the rows around it, with their own line numbers.
    let broken = row(2, "31", "22222222").replacen("Nakes Nomor 2", "\"Nakes Nomor 2", 1);
    let csv = format!(
        "{HEADER}{}{broken}{}{}",
        row(1, "31", "11111111"),
        row(3, "31", "33333333").replacen("0101", "01X1", 1),
        row(4, "31", "44444444")
    );
    let r = import_bytes(&store, csv.as_bytes())
        .await
        .expect("import runs");
    assert_eq!((r.rows, r.accepted, r.rejected_rows), (4, 2, 2), "{r:?}");
    let lines: Vec<(u64, &str)> = r
        .rejections
        .iter()
        .map(|x| (x.line, x.field.as_str()))
        .collect();
    assert_eq!(lines, [(3, "full_name"), (4, "nik")], "{r:?}");
    assert!(
        r.rejections[0].reason.contains("not closed on this line"),
        "{}",
        r.rejections[0].reason
    );
    assert_eq!(store.count_workers().await.unwrap(), 2);
    for kept in [1, 4] {
        let w = store.worker_by_nik(&nik_of(kept, "31")).await.unwrap();
        assert!(w.is_some(), "row {kept} is imported");
    }

    // The last row of a file with CRLF line ends (as spreadsheets on
    // Windows write), and a quoted name with an escaped quote that is fine.
    let crlf = |r: String| r.replace('\n', "\r\n");
    let csv = format!(
        "{}{}{}{}",
        crlf(HEADER.to_string()),
        crlf(row(5, "31", "55555555").replacen("Nakes Nomor 5", "\"Nakes \"\"Ani\"\" 5\"", 1)),
        crlf(row(6, "31", "66666666")),
        crlf(row(7, "31", "77777777").replacen("Nakes Nomor 7", "\"Nakes Nomor 7", 1)),
    );
    let r = import_bytes(&store, csv.as_bytes())
        .await
        .expect("import runs");
    assert_eq!((r.rows, r.rejected_rows), (3, 1), "{r:?}");
    assert_eq!(
        (r.rejections[0].line, r.rejections[0].field.as_str()),
        (4, "full_name"),
        "{r:?}"
    );

    // Empty lines count as lines.
    let csv = format!(
        "{HEADER}\n{}\r\n{}",
        row(10, "31", "10101010"),
        row(11, "31", "11111112").replacen("0101", "01X1", 1),
    );
    let r = import_bytes(&store, csv.as_bytes())
        .await
        .expect("import runs");
    assert_eq!((r.rows, r.rejected_rows), (2, 1), "{r:?}");
    assert_eq!(r.rejections[0].line, 5, "{r:?}");

    // An ordinary bad row in a CRLF file is named by its own line.
    let csv = format!(
        "{}{}{}",
        crlf(HEADER.to_string()),
        crlf(row(8, "31", "88888888")),
        crlf(row(9, "31", "99999999").replacen("0101", "01X1", 1)),
    );
    let r = import_bytes(&store, csv.as_bytes())
        .await
        .expect("import runs");
    assert_eq!((r.rows, r.accepted, r.rejected_rows), (2, 1, 1), "{r:?}");
    assert_eq!(
        (r.rejections[0].line, r.rejections[0].field.as_str()),
        (3, "nik"),
        "{r:?}"
    );
}
both_backends!(csv_unclosed_quote_costs_only_its_own_line);

/// A file that cannot be read to its end (a disk error, a dropped network
/// mount) fails the import, naming where; it does not pass for a short file.
async fn csv_read_error_fails_the_import(backend: &str) {
    struct Broken<'a>(&'a [u8]);
    impl std::io::Read for Broken<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let text = format!(
        "{HEADER}{}{}",
        row(1, "31", "11111111"),
        row(2, "31", "22222222")
    );
    let err = import_csv(&store, Broken(text.as_bytes()), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ImportError::Read(_)), "{err:?}");
    assert!(err.to_string().contains("after line 3"), "{err}");
    assert!(err.to_string().contains("disk on fire"), "{err}");
}
both_backends!(csv_read_error_fails_the_import);

/// Lines ending in a lone CR (classic Mac OS) make the whole file one line;
/// small or large, the error says why.
async fn csv_with_cr_only_line_ends_is_named(backend: &str) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    for rows in [2, 20_000] {
        let mut text = HEADER.to_string();
        for i in 0..rows {
            text.push_str(&row(i, "31", &format!("{:08}", 10_000_000 + i)));
        }
        let text = text.replace('\n', "\r");
        let err = import_bytes(&store, text.as_bytes()).await.unwrap_err();
        assert!(
            err.to_string().contains("carriage return alone"),
            "{rows} rows: {err}"
        );
    }
    assert_eq!(store.count_workers().await.unwrap(), 0);
}
both_backends!(csv_with_cr_only_line_ends_is_named);

async fn csv_in_utf16_is_named(backend: &str) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let text = format!("{HEADER}{}", row(1, "31", "11111111"));
    for bom in [[0xff, 0xfe], [0xfe, 0xff]] {
        let mut bytes = bom.to_vec();
        for u in text.encode_utf16() {
            let b = if bom[0] == 0xff {
                u.to_le_bytes()
            } else {
                u.to_be_bytes()
            };
            bytes.extend_from_slice(&b);
        }
        let err = import_bytes(&store, &bytes).await.unwrap_err();
        assert!(matches!(err, ImportError::Header(_)), "{err:?}");
        assert!(err.to_string().contains("UTF-16"), "{err}");
    }
    assert_eq!(store.count_workers().await.unwrap(), 0);
}
both_backends!(csv_in_utf16_is_named);

// ---------------------------------------------------------------- campaigns

async fn unknown_template_creates_nothing(backend: &str) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let csv = format!(
        "{HEADER}{}{}",
        row(1, "31", "11111111"),
        row(2, "73", "22222222")
    );
    assert_eq!(import_text(&store, &csv).await.accepted, 2);
    let renderer = pedulicovid::render::Renderer::builtin();
    let got = campaign::create(
        &store,
        &renderer,
        1,
        CampaignRequest {
            template: "nope".into(),
            ..campaign_request("typo")
        },
    )
    .await;
    match got {
        Err(CampaignError::Template(TemplateError::Unknown { name, available })) => {
            assert_eq!(name, "nope");
            assert!(available.contains("undangan_registrasi"), "{available}");
        }
        other => panic!("expected an unknown-template error, got {other:?}"),
    }
    assert!(store.campaigns().await.unwrap().is_empty());
    let raw = Raw::connect(&db.url).await;
    assert_eq!(raw.int("SELECT COUNT(*) FROM messages", &[]).await, 0);
    raw.close().await;
}
both_backends!(unknown_template_creates_nothing);

// ---------------------------------------------------------------- gateways

/// A stand-in gateway on port 0 that answers every sendsms with `answer`;
/// returns its sendsms URL and a request counter.
async fn tiny_gateway(status: StatusCode, body: &'static str) -> (String, Arc<AtomicU64>) {
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().route(
        "/cgi-bin/sendsms",
        axum::routing::get(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                (status, body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/cgi-bin/sendsms"), hits)
}

/// One worker, one message, to `gateway`; returns (status, open flag
/// reasons, attempt outcomes, gateway hits, last_error).
async fn one_message_through(
    backend: &str,
    status: StatusCode,
    body: &'static str,
) -> (String, Vec<String>, Vec<String>, u64, String) {
    let db = TestDb::new(backend).await;
    let (url, hits) = tiny_gateway(status, body).await;
    let mut s = test_settings(&db);
    s.gateways[0].dialect = KannelConfig {
        sendsms_url: url,
        ..Default::default()
    }
    .into();
    s.worker.max_attempts = 2;
    let app = start(s, Parts::ALL).await;
    assert!(app.simulator.is_none());
    let csv = format!("{HEADER}{}", row(1, "31", "11111111"));
    assert_eq!(import_text(&app.store, &csv).await.accepted, 1);
    let (c, n) = create_campaign(&app, campaign_request("bad gateway")).await;
    assert_eq!(n, 1);
    let r = wait_done(&app.store, c.id, Duration::from_secs(30)).await;
    assert_eq!(r.sent, 0, "{r:?}");
    // The worker is still alive and idle: nothing more is sent.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let raw = Raw::connect(&db.url).await;
    let statuses = raw.texts("SELECT status FROM messages", &[]).await;
    let outcomes = raw
        .texts("SELECT outcome FROM attempts ORDER BY attempt, id", &[])
        .await;
    let last_error = raw
        .texts("SELECT COALESCE(last_error, '') FROM messages", &[])
        .await
        .remove(0);
    let flags = app
        .store
        .flags(Some(c.id), false)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.reason)
        .collect();
    raw.close().await;
    let hit_count = hits.load(Ordering::SeqCst);
    app.stop(Duration::from_secs(5)).await;
    assert_eq!(statuses.len(), 1);
    (statuses[0].clone(), flags, outcomes, hit_count, last_error)
}

async fn gateway_answering_garbage_is_retried_then_failed(backend: &str) {
    let (status, flags, attempts, hits, last_error) =
        one_message_through(backend, StatusCode::OK, "<html>hello</html>").await;
    assert_eq!(status, Status::Failed.as_str());
    assert_eq!(flags, ["retries_exhausted"]);
    assert_eq!(
        attempts,
        ["retry", "failed"],
        "exactly max_attempts = 2 attempts"
    );
    assert_eq!(hits, 2);
    assert!(
        last_error.contains("unrecognised gateway answer"),
        "{last_error}"
    );
    assert!(!last_error.contains("<html>"), "{last_error}");
}
both_backends!(gateway_answering_garbage_is_retried_then_failed);

async fn gateway_denying_the_number_fails_at_once(backend: &str) {
    let (status, flags, attempts, hits, last_error) = one_message_through(
        backend,
        StatusCode::BAD_REQUEST,
        "Number(s) has/have been denied by white- and/or black-lists.",
    )
    .await;
    assert_eq!(status, Status::Failed.as_str());
    assert_eq!(flags, ["invalid_number"]);
    assert_eq!(attempts, ["failed"], "a permanent error is not retried");
    assert_eq!(hits, 1);
    assert!(last_error.contains("permanent"), "{last_error}");
}
both_backends!(gateway_denying_the_number_fails_at_once);

// ---------------------------------------------------------------- the binary

fn bin(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pedulicovid"))
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env("NO_COLOR", "1")
        .output()
        .expect("run the pedulicovid binary")
}

#[test]
fn cli_unknown_template_names_it_and_lists_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("x.db").display());
    let out = bin(
        dir.path(),
        &[
            "campaign",
            "create",
            "--name",
            "x",
            "--template",
            "nope",
            "--database-url",
            &url,
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must fail: {stderr}");
    assert!(stderr.contains("\"nope\""), "{stderr}");
    assert!(stderr.contains("available"), "{stderr}");
    assert!(stderr.contains("undangan_registrasi"), "{stderr}");
    // And no campaign exists afterwards.
    let list = bin(
        dir.path(),
        &["campaign", "list", "--json", "--database-url", &url],
    );
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "[]");
}

#[test]
fn cli_import_of_a_missing_file_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("x.db").display());
    let missing = dir.path().join("no-such-export.csv");
    let out = bin(
        dir.path(),
        &["import", missing.to_str().unwrap(), "--database-url", &url],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must fail: {stderr}");
    assert!(stderr.contains("no-such-export.csv"), "{stderr}");
    assert!(
        stderr.to_lowercase().contains("no such file"),
        "the OS reason is given: {stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Removes ANSI colour sequences, in case the logger colours a pipe.
/// `s` with every UUID (8-4-4-4-12 hex digits: request ids, lease owners)
/// replaced by `<uuid>`: its last group may be twelve decimal digits
/// starting `08`, which reads like a phone number and is not one.
fn strip_uuids(s: &str) -> String {
    let b = s.as_bytes();
    let is_uuid_at = |i: usize| {
        let shape = [8usize, 4, 4, 4, 12];
        let mut j = i;
        for (k, n) in shape.iter().enumerate() {
            if j + n > b.len() || !b[j..j + n].iter().all(|c| c.is_ascii_hexdigit()) {
                return false;
            }
            j += n;
            if k < 4 {
                if b.get(j) != Some(&b'-') {
                    return false;
                }
                j += 1;
            }
        }
        // Not part of a longer run of hex digits.
        (i == 0 || !b[i - 1].is_ascii_hexdigit()) && b.get(j).is_none_or(|c| !c.is_ascii_hexdigit())
    };
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if is_uuid_at(i) {
            out.push_str("<uuid>");
            i += 36;
        } else {
            let c = s[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The first run of 16 or more digits (a NIK).
fn long_digit_run(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i - start >= 16 {
                return Some(&s[start..i]);
            }
        } else {
            i += 1;
        }
    }
    None
}

/// The first unmasked Indonesian mobile number: `\+?62 ?8\d{8,}` or
/// `08\d{8,}`, not inside a longer number or a decimal fraction.
fn unmasked_phone(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let digits_from = |j: usize| {
        b[j.min(b.len())..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    for i in 0..b.len() {
        if i > 0 && (b[i - 1].is_ascii_digit() || b[i - 1] == b'.') {
            continue;
        }
        if b[i..].starts_with(b"08") && digits_from(i + 2) >= 8 {
            return Some(s[i..i + 2 + digits_from(i + 2)].to_string());
        }
        if b[i..].starts_with(b"62") {
            let mut j = i + 2;
            if b.get(j) == Some(&b' ') {
                j += 1;
            }
            if b.get(j) == Some(&b'8') && digits_from(j + 1) >= 8 {
                return Some(s[i..j + 1 + digits_from(j + 1)].to_string());
            }
        }
    }
    None
}

#[test]
fn pii_scanners_work() {
    assert_eq!(
        long_digit_run("nik=3171014505900002 x"),
        Some("3171014505900002")
    );
    assert_eq!(long_digit_run("ts=1610470800000"), None);
    assert_eq!(
        unmasked_phone("to=081234567890").as_deref(),
        Some("081234567890")
    );
    assert_eq!(
        unmasked_phone("to=+6281234567890").as_deref(),
        Some("6281234567890")
    );
    assert_eq!(
        unmasked_phone("to=+62 81234567890").as_deref(),
        Some("62 81234567890")
    );
    assert_eq!(unmasked_phone("to=+62812****7890 at=1610470800123"), None);
    assert_eq!(unmasked_phone("elapsed_secs=0.081234567"), None);
    // A request id whose last group is all digits is not a phone number.
    let line = "request_id=1f0e2d3c-4b5a-4697-8887-081984058032 status=200";
    assert!(
        unmasked_phone(line).is_some(),
        "the scanner alone is fooled"
    );
    assert_eq!(unmasked_phone(&strip_uuids(line)), None);
    assert_eq!(
        strip_uuids(&format!("a {line} 081234567890")),
        "a request_id=<uuid> status=200 081234567890"
    );
    assert_eq!(
        strip_ansi("\u{1b}[3mto\u{1b}[0m\u{1b}[2m=\u{1b}[0m1"),
        "to=1"
    );
}

/// In text and in JSON logs alike.
#[test]
fn demo_logs_never_show_personal_data() {
    for format in ["text", "json"] {
        demo_logs_never_show_personal_data_as(format);
    }
}

fn demo_logs_never_show_personal_data_as(format: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pedulicovid"))
        .args(["demo", "--workers", "300", "--json", "--log-format", format])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "debug")
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    let stderr = strip_uuids(&strip_ansi(&String::from_utf8_lossy(&out.stderr)));
    assert!(
        out.status.success(),
        "demo failed: {}",
        &stderr[stderr.len().saturating_sub(4000)..]
    );

    // stdout: exactly one JSON object, on one line.
    assert_eq!(stdout.trim_end().lines().count(), 1, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("stdout is JSON");
    let o = v.as_object().expect("a JSON object");
    for key in [
        "rejected_rows",
        "enqueued",
        "sent",
        "delivered",
        "failed",
        "flagged",
        "flagged_by_reason",
        "duration_s",
        "messages_per_s",
    ] {
        assert!(o.contains_key(key), "missing {key}: {stdout}");
    }
    assert_eq!(o["in_flight"], 0, "{stdout}");
    assert!(
        o["rejected_rows"].as_i64().unwrap() >= 6,
        "the demo's bad rows: {stdout}"
    );
    let enqueued = o["enqueued"].as_i64().unwrap();
    assert!(enqueued > 250, "{stdout}");
    let by_status = o["by_status"].as_object().expect("by_status");
    let finals: i64 = by_status
        .iter()
        .filter(|(k, _)| !["queued", "sending", "sent"].contains(&k.as_str()))
        .map(|(_, n)| n.as_i64().unwrap())
        .sum();
    assert_eq!(finals, enqueued, "{stdout}");
    assert_eq!(
        o["delivered"].as_i64().unwrap() + o["failed"].as_i64().unwrap(),
        enqueued,
        "{stdout}"
    );

    // stderr: debug logs, but no NIK, phone number or name.
    assert!(stderr.contains("DEBUG"), "RUST_LOG=debug took effect");
    if format == "json" {
        let debug_lines = stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["level"] == "DEBUG")
            .count();
        assert!(
            debug_lines > 0,
            "JSON log lines: {}",
            &stderr[..stderr.len().min(2000)]
        );
    }
    // The whole log line is in the message: a finding must say where.
    let line_of = |found: &str| {
        stderr
            .lines()
            .find(|l| l.contains(found))
            .unwrap_or_default()
            .to_string()
    };
    if let Some(nik) = long_digit_run(&stderr) {
        panic!(
            "a 16-digit number (NIK?) in the {format} logs: {nik}\n{}",
            line_of(nik)
        );
    }
    if let Some(phone) = unmasked_phone(&stderr) {
        panic!(
            "an unmasked phone number in the {format} logs: {phone}\n{}",
            line_of(&phone)
        );
    }
    for name in [
        "Rahayu",
        "Lestari",
        "Santoso",
        "Wibowo",
        "Hidayat",
        "Saragih",
        "Nainggolan",
        "Wati",
        "Pratama",
        "Kurniawan",
        "Manurung",
        "Setiawan",
        "Ma'ruf",
        "Sitompul",
        "Wonda",
        "Tanjung",
        "Yohanes",
        "Fransiska",
        "Muhammad",
        "Ketut",
        "Putri",
        "Ahmad",
        // The demo's deliberately bad rows.
        "Nik Pendek",
        "Nomor Rumah",
        "Provinsi Salah",
        "Regensi Lain",
        "Belum Jelas",
    ] {
        assert!(
            !stderr.contains(name),
            "the name {name:?} appears in the logs"
        );
    }
}

/// The demo's outcomes follow the simulator's configured mix: a skewed mix
/// set through the environment shows up in the report, each share within
/// five standard deviations of its weight.
#[test]
fn demo_outcomes_follow_the_simulator_mix() {
    let dir = tempfile::tempdir().unwrap();
    let mix = [
        ("delivered", 0.60, "DELIVERED"),
        ("undelivered", 0.16, "UNDELIVERED"),
        ("rejected", 0.08, "REJECTED"),
        ("expired", 0.10, "EXPIRED"),
        ("invalid_number", 0.06, "INVALID"),
    ];
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pedulicovid"));
    cmd.args(["demo", "--workers", "2000", "--json", "--seed", "7"])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL");
    for (_, weight, key) in mix {
        cmd.env(
            format!("PEDULICOVID__SIMULATOR__MIX__{key}"),
            weight.to_string(),
        );
    }
    let out = cmd.output().expect("run the demo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let enqueued = v["enqueued"].as_f64().unwrap();
    assert!(enqueued > 1800.0, "{v}");
    assert_eq!(v["in_flight"], 0, "{v}");
    for (outcome, weight, _) in mix {
        let n = if outcome == "delivered" {
            v["delivered"].as_f64()
        } else {
            v["flagged_by_reason"][outcome].as_f64()
        }
        .unwrap_or(0.0);
        let share = n / enqueued;
        let sigma = (weight * (1.0 - weight) / enqueued).sqrt();
        assert!(
            (share - weight).abs() <= 5.0 * sigma,
            "{outcome}: {share:.4} of {enqueued}, configured {weight} (5σ = {:.4}): {v}",
            5.0 * sigma
        );
    }
    assert_eq!(
        v["delivered"].as_f64().unwrap() + v["flagged"].as_f64().unwrap(),
        enqueued,
        "every message delivered or flagged: {v}"
    );
}
