//! Personal data at rest and in process lists (issue 10, point 7), on both
//! databases where storage is involved:
//! - files holding personal data are created owner-only (`0600`): the
//!   SQLite database with its `-wal`/`-shm`, `flags export`, the import's
//!   rejects file;
//! - the support CLI reads a NIK (or a search query) from standard input
//!   when given `-`, through the real binary;
//! - the UI's cookies are `Secure` when the settings say so, and not over
//!   plain HTTP on a loopback listener by default.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use crate::common::*;
use pedulicovid::app::Parts;
use pedulicovid::store::{Role, Store};
use reqwest::header::{HeaderMap, SET_COOKIE};
use reqwest::StatusCode;
use tokio::io::AsyncWriteExt;

/// A umask that leaves files group- and world-readable (the usual 022), so
/// a file created without an explicit mode would show it: without this a
/// strict umask in the test environment could hide a regression.
fn usual_umask() {
    // SAFETY: umask(2) cannot fail; it only sets the process's mask.
    unsafe {
        libc::umask(0o022);
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// `path` + `suffix` (`test.db` → `test.db-wal`).
fn sibling(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    s.into()
}

/// Runs the binary against `url` with `stdin` on its standard input;
/// returns (success, stdout, stderr).
async fn cli(url: &str, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pedulicovid"))
        .arg("--database-url")
        .arg(url)
        .args(args)
        .env_remove("DATABASE_URL")
        .env("USER", "desk-cli")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("write stdin");
    drop(input);
    let out = child.wait_with_output().await.expect("the binary ends");
    (
        out.status.success(),
        String::from_utf8(out.stdout).expect("UTF-8 output"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ------------------------------------------------------------ file modes

#[tokio::test]
async fn the_sqlite_database_and_its_wal_are_owner_only() {
    usual_umask();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fresh.db");
    let store = Store::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    import_text(&store, &format!("{HEADER}{}", row(1, "31", "00000011"))).await;
    // WAL mode: the write above lives in -wal until a checkpoint, and the
    // connection keeps -shm open.
    for p in [db.clone(), sibling(&db, "-wal"), sibling(&db, "-shm")] {
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    store.close().await;

    // A database an older version left world-readable is narrowed, its
    // -wal too (an empty one if the close checkpointed it away), and keeps
    // its data.
    let wal = sibling(&db, "-wal");
    if !wal.exists() {
        std::fs::write(&wal, b"").unwrap();
    }
    for p in [db.clone(), wal.clone()] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let store = Store::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    assert!(store
        .worker_by_nik(&nik_of(1, "31"))
        .await
        .unwrap()
        .is_some());
    for p in [db.clone(), wal, sibling(&db, "-shm")] {
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    store.close().await;
}

async fn exports_and_rejects_are_owner_only(backend: &str) {
    usual_umask();
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("registry.csv");
    std::fs::write(
        &csv,
        format!(
            "{HEADER}{}{}",
            row(1, "31", "00000011"),
            // A bad NIK: one rejected row.
            row(2, "31", "00000021").replacen("3101", "31x1", 1)
        ),
    )
    .unwrap();
    let rejects = dir.path().join("rejects.csv");
    let (ok, out, err) = cli(
        &db.url,
        &[
            "import",
            csv.to_str().unwrap(),
            "--rejects",
            rejects.to_str().unwrap(),
            "--json",
        ],
        "",
    )
    .await;
    // Exit 3 (finished, with rejected rows): not a success.
    assert!(!ok, "{err}");
    assert!(out.contains("\"rejected_rows\":1"), "{out}");
    assert_eq!(mode(&rejects), 0o600);
    assert_eq!(
        std::fs::read_to_string(&rejects).unwrap().lines().count(),
        2
    );

    // The flags export, new and over an existing world-readable file.
    let export = dir.path().join("flags.csv");
    for _ in 0..2 {
        let (ok, _, err) = cli(
            &db.url,
            &["flags", "export", "--output", export.to_str().unwrap()],
            "",
        )
        .await;
        assert!(ok, "{err}");
        assert_eq!(mode(&export), 0o600);
        assert!(std::fs::read_to_string(&export)
            .unwrap()
            .starts_with("flag_id,"));
        std::fs::set_permissions(&export, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    store.close().await;
}
both_backends!(exports_and_rejects_are_owner_only);

// ------------------------------------------------------------ NIK on stdin

async fn support_cli_reads_the_nik_from_stdin(backend: &str) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    import_text(
        &store,
        &format!(
            "{HEADER}{}{}",
            row(1, "31", "00000011"),
            row(2, "31", "00000021")
        ),
    )
    .await;
    let nik = nik_of(1, "31");
    let other = nik_of(2, "31");
    let id = worker_id(&store, &nik).await;

    // `-` reads the NIK from stdin: the same timeline as the argument, of
    // that worker and not the other.
    let (ok, by_stdin, err) = cli(
        &db.url,
        &["support", "timeline", "-", "--json"],
        &format!("{nik}\n"),
    )
    .await;
    assert!(ok, "{err}");
    let (ok, by_arg, err) = cli(&db.url, &["support", "timeline", &nik, "--json"], "").await;
    assert!(ok, "{err}");
    let t: serde_json::Value = serde_json::from_str(&by_stdin).unwrap();
    assert_eq!(t["worker"]["id"], id, "{by_stdin}");
    assert_eq!(by_stdin, by_arg);
    assert!(!by_stdin.contains(&nik), "the timeline is masked");

    // Search: the query from stdin too.
    let (ok, out, err) = cli(
        &db.url,
        &["support", "search", "-", "--json"],
        &format!("  {nik}  \n"),
    )
    .await;
    assert!(ok, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["kind"], "nik");
    let ids: Vec<i64> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![id]);

    // Resend reads it the same way: it reaches the worker (no campaign
    // includes them, so it is refused for that reason, naming nothing).
    let (ok, _, err_stdin) = cli(
        &db.url,
        &[
            "support", "resend", "-", "--reason", "called", "--staff", "Siti",
        ],
        &format!("{other}\n"),
    )
    .await;
    let (ok_arg, _, err_arg) = cli(
        &db.url,
        &[
            "support", "resend", &other, "--reason", "called", "--staff", "Siti",
        ],
        "",
    )
    .await;
    assert_eq!((ok, err_stdin.trim()), (ok_arg, err_arg.trim()));
    assert!(!err_stdin.contains(&other), "{err_stdin}");

    // Empty stdin and a bad NIK are clear errors that do not echo input.
    let (ok, _, err) = cli(&db.url, &["support", "timeline", "-"], "").await;
    assert!(!ok);
    assert!(err.contains("standard input was empty"), "{err}");
    let (ok, _, err) = cli(&db.url, &["support", "timeline", "-"], "12345\n").await;
    assert!(!ok);
    assert!(err.contains("NIK"), "{err}");
    // Nothing changed: no resend was queued, no audit entry written.
    let actions = audit_actions(&db.url).await;
    assert!(
        actions.iter().all(|(a, _)| !a.contains("resend")),
        "{actions:?}"
    );
    store.close().await;
}
both_backends!(support_cli_reads_the_nik_from_stdin);

// ------------------------------------------------------------ cookies

fn set_cookie(h: &HeaderMap, name: &str) -> Option<String> {
    h.get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

fn is_secure(c: &str) -> bool {
    c.split(';').any(|a| a.trim() == "Secure")
}

/// Signs in over plain HTTP (optionally claiming a TLS proxy in front)
/// and returns the session and sign-in nonce `Set-Cookie` values.
async fn sign_in(base: &str, token: &str, forwarded_https: bool) -> (String, String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http.get(format!("{base}/ui/login")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let nonce_cookie = set_cookie(r.headers(), "pcv_ui_login").expect("nonce cookie");
    let html = r.text().await.unwrap();
    let start = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    let nonce = html[start..].split('"').next().unwrap().to_string();
    let mut req = http
        .post(format!("{base}/ui/login"))
        .header("cookie", nonce_cookie.split(';').next().unwrap())
        .header("origin", base)
        .form(&[("csrf", nonce.as_str()), ("token", token)]);
    if forwarded_https {
        req = req.header("x-forwarded-proto", "https");
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    (
        set_cookie(r.headers(), "pcv_ui").expect("session cookie"),
        nonce_cookie,
    )
}

async fn ui_cookie_secure_by_setting_and_listener(backend: &str) {
    for (setting, forwarded, want) in [
        // Loopback listener, no setting: not over plain HTTP, yes behind a
        // TLS proxy.
        (None, false, false),
        (None, true, true),
        // Forced on: even over plain HTTP on loopback.
        (Some(true), false, true),
        // Turned off: only requests over HTTPS get it.
        (Some(false), false, false),
        (Some(false), true, true),
    ] {
        let db = TestDb::new(backend).await;
        let mut s = test_settings(&db);
        s.http.ui_secure_cookies = setting;
        let app = start(s, Parts::ALL).await;
        let token = app
            .store
            .create_token("desk-1", Role::Support)
            .await
            .unwrap()
            .secret;
        let base = base_url(&app);
        let (session, nonce) = sign_in(&base, &token, forwarded).await;
        assert_eq!(
            is_secure(&session),
            want,
            "{setting:?} forwarded={forwarded}: {session}"
        );
        if setting == Some(true) {
            assert!(is_secure(&nonce), "{nonce}");
        }
        app.stop(std::time::Duration::from_secs(5)).await;
    }
}
both_backends!(ui_cookie_secure_by_setting_and_listener);
