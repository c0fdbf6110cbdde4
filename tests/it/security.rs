//! Hostile input: SQL injection strings in every search field, template and
//! HTML syntax in names, what a name with control characters becomes, and a
//! client that sends half a request header and stops.

use std::time::{Duration, Instant};

use crate::common::*;
use pedulicovid::app::Parts;
use pedulicovid::store::Role;
use reqwest::StatusCode;
use serde_json::{json, Value};

const INJECTIONS: &[&str] = &[
    "' OR '1'='1",
    "'; DROP TABLE health_workers; --",
    "\" OR \"\"=\"",
    "%",
    "_",
    "\\",
    "x' UNION SELECT nik, full_name, phone FROM health_workers --",
    "3171014505900001' --",
    "0812' OR 1=1 --",
    "\u{0}",
];

async fn injection_strings_are_harmless_in_every_search_field(backend: &str) {
    let db = TestDb::new(backend).await;
    let parts = Parts {
        http: true,
        workers: 0,
        housekeeping: false,
        simulator: false,
    };
    let app = start(test_settings(&db), parts).await;
    let csv = format!(
        "{HEADER}{}{}",
        row(1, "31", "11111111"),
        row(2, "73", "22222222")
    );
    import_text(&app.store, &csv).await;
    let base = base_url(&app);
    let support = app
        .store
        .create_token("desk", Role::Support)
        .await
        .unwrap()
        .secret;
    let chatbot = app
        .store
        .create_token("bot", Role::Chatbot)
        .await
        .unwrap()
        .secret;
    let http = reqwest::Client::new();
    for bad in INJECTIONS {
        // Support search by NIK, phone or name: no match, no error, no dump.
        let r = http
            .post(format!("{base}/api/v1/support/search"))
            .bearer_auth(&support)
            .json(&json!({ "query": bad }))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert!(
            status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
            "{bad:?}: {status} {body}"
        );
        if status == StatusCode::OK {
            let n = body
                .get("results")
                .and_then(|r| r.as_array())
                .map(|a| a.len())
                .unwrap_or(0);
            assert_eq!(n, 0, "{bad:?} matched workers: {body}");
        }
        // The same search in store form (the UI and CLI use it).
        let found = app
            .store
            .search_workers(bad)
            .await
            .map(|r| r.workers.len())
            .unwrap_or(0);
        assert_eq!(found, 0, "{bad:?}");
        // Chatbot look-ups by every key.
        for payload in [
            json!({ "phone": bad }),
            json!({ "nik": bad }),
            json!({ "nik_last6": bad, "phone": "081211111111" }),
        ] {
            let r = http
                .post(format!("{base}/api/v1/chatbot/lookup"))
                .bearer_auth(&chatbot)
                .json(&payload)
                .send()
                .await
                .unwrap();
            // Stay under the chatbot's per-token rate limit (20/s).
            tokio::time::sleep(Duration::from_millis(60)).await;
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            assert!(
                status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
                "{payload}: {status}"
            );
            assert_ne!(
                body.get("found"),
                Some(&Value::Bool(true)),
                "{payload}: {body}"
            );
        }
    }
    // The tables are intact.
    assert_eq!(app.store.count_workers().await.unwrap(), 2);
    app.stop(Duration::from_secs(5)).await;
}
both_backends!(injection_strings_are_harmless_in_every_search_field);

async fn names_with_template_and_html_syntax_are_sent_literally(backend: &str) {
    let db = TestDb::new(backend).await;
    let mut s = test_settings(&db);
    s.simulator.mix = all_delivered();
    let app = start(s, Parts::ALL).await;
    let names = [
        "{{ nik_akhir }}",
        "{% if true %}X{% endif %}",
        "<b>Siti</b> &amp;",
        "Ma'ruf \"Dok\"",
        "Tab\tNama\u{7}Bel",
    ];
    let mut csv = String::from(HEADER);
    for (i, n) in names.iter().enumerate() {
        let quoted = format!("\"{}\"", n.replace('"', "\"\""));
        let line = row(i as u32, "31", &format!("{:07}1", i));
        csv.push_str(&line.replace(&format!("Nakes Nomor {i}"), &quoted));
    }
    let imported = import_text(&app.store, &csv).await;
    // A name with control characters is refused at import, with its line;
    // the others are kept exactly as written.
    assert_eq!(imported.accepted, 4, "{:?}", imported.rejections);
    assert_eq!(imported.rejections[0].field, "full_name");
    let (c, n) = create_campaign(&app, campaign_request("literal")).await;
    assert_eq!(n, 4);
    wait_done(&app.store, c.id, Duration::from_secs(20)).await;
    let bodies = message_bodies(backend, &db.url).await;
    assert_eq!(bodies.len(), 4);
    for name in &names[..4] {
        // The name as written (`nama_pendek` shortens at a word boundary
        // under 20 characters: compare the start), never evaluated: no NIK
        // digits for `{{ nik_akhir }}`, no bare "X" for the `if`.
        let short: String = name.chars().take(12).collect();
        assert!(
            bodies.iter().any(|b| b.starts_with(&short)),
            "{name:?} not sent literally: {bodies:?}"
        );
    }
    app.stop(Duration::from_secs(5)).await;
}
both_backends!(names_with_template_and_html_syntax_are_sent_literally);

async fn message_bodies(backend: &str, url: &str) -> Vec<String> {
    let sql = "SELECT body FROM messages ORDER BY id";
    match backend {
        "sqlite" => {
            let p = sqlx::SqlitePool::connect(url).await.unwrap();
            sqlx::query_scalar(sql).fetch_all(&p).await.unwrap()
        }
        _ => {
            let p = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query_scalar(sql).fetch_all(&p).await.unwrap()
        }
    }
}

/// Reads until the server closes the connection; returns what it sent.
async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut got = vec![];
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

async fn a_partial_header_is_cut_off_after_the_header_timeout(backend: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    let db = TestDb::new(backend).await;
    let mut s = test_settings(&db);
    s.http.header_read_timeout_ms = 600;
    let parts = Parts {
        http: true,
        workers: 0,
        housekeeping: false,
        simulator: false,
    };
    let app = start(s, parts).await;
    let addr = format!("127.0.0.1:{}", app.port().unwrap());

    // Half a header, then silence.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();

    // Meanwhile another connection is served, twice (kept alive).
    let mut good = TcpStream::connect(&addr).await.unwrap();
    for _ in 0..2 {
        good.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), good.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("ok"), "{answer}");
    }

    // The slow one is closed once its time is up, not before, and never
    // gets an answer to the request it did not finish.
    let sent = tokio::time::timeout(Duration::from_secs(5), read_until_closed(&mut slow))
        .await
        .expect("the server closes a connection stuck in its header");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(500),
        "closed after {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "closed after {waited:?}");
    assert!(
        !String::from_utf8_lossy(&sent).contains(" 200 "),
        "{}",
        String::from_utf8_lossy(&sent)
    );
    // The server is still fine.
    let r = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    app.stop(Duration::from_secs(5)).await;
}
both_backends!(a_partial_header_is_cut_off_after_the_header_timeout);
