//! The support web UI (`/ui`) through the real app.
//!
//! - `browser_*`: a real headless Chromium, driven over WebDriver
//!   (chromedriver, started here on a free port): sign in, search a worker
//!   by NIK (a POST: the NIK lands in no URL), open the timeline, resend with a reason, see generation 2
//!   after a reload, the dashboard, escaping, a form without its CSRF token
//!   refused, sign-out. Screenshots go to `test-artifacts/`.
//! - The rest use plain HTTP (reqwest, no redirects followed) on both
//!   databases: sign-in refusals, cookie flags, CSRF and Origin checks,
//!   escaping, refusals in Indonesian, the per-province rates, search that
//!   keeps NIKs and phone numbers out of URLs.
//!
//! Chromium and chromedriver come from Debian (`chromium`,
//! `chromium-driver`); `scripts/test.sh` installs them. Without them the
//! browser test fails, on purpose: it never skips silently.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use pedulicovid::app::{App, Parts};
use pedulicovid::status::Status;
use pedulicovid::store::{CampaignAction, Role, Store};
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::json;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

const SCRIPT_NAME: &str = "<script>alert(1)</script>";
const BRACES_NAME: &str = "{{ x }}";

// ------------------------------------------------------------ the app

/// The running app and a client that does not follow redirects.
struct UiApp {
    app: App,
    base: String,
    http: reqwest::Client,
    // Dropped last: the database outlives the app.
    _db: TestDb,
}

/// A signed-in session as a plain HTTP client sees it.
struct Session {
    /// `pcv_ui=…`, ready for a `Cookie` header.
    cookie: String,
    csrf: String,
}

impl UiApp {
    /// Phones ending in 0 are undelivered, everything else delivered.
    async fn start(backend: &str) -> UiApp {
        let db = TestDb::new(backend).await;
        let app = start(ruled_settings(&db, "0=undelivered"), Parts::ALL).await;
        let base = base_url(&app);
        UiApp {
            app,
            base,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            _db: db,
        }
    }

    fn store(&self) -> &Store {
        &self.app.store
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn token(&self, name: &str, role: Role) -> String {
        self.store().create_token(name, role).await.unwrap().secret
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> reqwest::Response {
        let mut r = self.http.get(self.url(path));
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        r.send().await.expect("GET")
    }

    async fn post(
        &self,
        path: &str,
        cookie: Option<&str>,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut r = self.http.post(self.url(path)).form(fields);
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().await.expect("POST")
    }

    /// The sign-in form's nonce cookie (`pcv_ui_login=…`) and field.
    async fn login_nonce(&self) -> (String, String) {
        let r = self.get("/ui/login", None).await;
        assert_eq!(r.status(), StatusCode::OK);
        let cookie = set_cookie(r.headers(), "pcv_ui_login").expect("nonce cookie");
        let html = r.text().await.unwrap();
        (first_pair(&cookie), hidden_csrf(&html))
    }

    /// Posts the sign-in form with `token`.
    async fn try_sign_in(&self, token: &str) -> reqwest::Response {
        let (cookie, nonce) = self.login_nonce().await;
        self.post(
            "/ui/login",
            Some(&cookie),
            &[("csrf", &nonce), ("token", token)],
            &[],
        )
        .await
    }

    async fn sign_in(&self, token: &str) -> Session {
        let r = self.try_sign_in(token).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let cookie = first_pair(&set_cookie(r.headers(), "pcv_ui").expect("session cookie"));
        let page = self.get("/ui/kampanye", Some(&cookie)).await;
        assert_eq!(page.status(), StatusCode::OK);
        let csrf = hidden_csrf(&page.text().await.unwrap());
        Session { cookie, csrf }
    }

    /// Posts the search form as the session.
    async fn search(&self, s: &Session, q: &str) -> reqwest::Response {
        self.post(
            "/ui/cari",
            Some(&s.cookie),
            &[("q", q), ("csrf", &s.csrf)],
            &[],
        )
        .await
    }

    async fn stop(self) {
        self.app.stop(Duration::from_secs(5)).await;
    }
}

/// Asserts the response's status and that its body contains `text`.
async fn assert_answer(r: reqwest::Response, status: StatusCode, text: &str) {
    assert_eq!(r.status(), status);
    let body = r.text().await.unwrap();
    assert!(body.contains(text), "{text:?} not in {body}");
}

/// The `Set-Cookie` header setting `name`.
fn set_cookie(h: &HeaderMap, name: &str) -> Option<String> {
    h.get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

/// `a=b` of `a=b; Path=…`.
fn first_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().trim().to_string()
}

/// The value of the first hidden `csrf` field on a page.
fn hidden_csrf(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[start..]
        .split('"')
        .next()
        .expect("closing quote")
        .to_string()
}

/// A registry row for worker `i` with the given name.
fn named_row(i: u32, prov: &str, phone_tail: &str, name: &str) -> String {
    row(i, prov, phone_tail).replacen(&format!("Nakes Nomor {i},"), &format!("{name},"), 1)
}

/// Waits until none of the worker's messages is in flight.
async fn settle(store: &Store, worker: i64) {
    let start = Instant::now();
    loop {
        let t = store.timeline(worker).await.unwrap();
        if t.messages
            .iter()
            .all(|m| !matches!(m.status.as_str(), "queued" | "sending" | "sent"))
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "worker {worker} still has a message in flight: {:?}",
            t.messages
                .iter()
                .map(|m| (m.id, m.generation, m.status.as_str(), m.attempts))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Four workers in two provinces, one campaign run to the end. Worker 4's
/// phone ends in 0: undelivered, flagged.
async fn seeded(backend: &str) -> (UiApp, i64) {
    let ui = UiApp::start(backend).await;
    let csv = format!(
        "{HEADER}{}{}{}{}",
        named_row(1, "31", "00000011", "Siti Rahayu"),
        named_row(2, "32", "00000021", SCRIPT_NAME),
        named_row(3, "32", "00000031", BRACES_NAME),
        named_row(4, "31", "00000040", "Budi Santoso"),
    );
    let report = import_text(ui.store(), &csv).await;
    assert_eq!(report.rejected_rows, 0, "{report:?}");
    let c = run_campaign(&ui.app, "Undangan Januari", "00:00-24:00").await;
    wait_done(ui.store(), c, Duration::from_secs(30)).await;
    (ui, c)
}

// ------------------------------------------------------------ browser

/// chromedriver on a free port, killed (with the Chromium it started) when
/// dropped, whatever happened in between.
struct ChromeDriver {
    child: Child,
    port: u16,
    /// Chromium's profile directory.
    profile: tempfile::TempDir,
}

impl ChromeDriver {
    async fn start() -> ChromeDriver {
        for bin in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: the browser test needs Debian's chromium and chromium-driver. \
                 Run `bash scripts/test.sh` (it installs them), or \
                 `apt-get install -y --no-install-recommends chromium chromium-driver`."
            );
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut cmd = Command::new(CHROMEDRIVER);
        cmd.arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group, so Drop can end Chromium with it.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().expect("chromedriver starts");
        let driver = ChromeDriver {
            child,
            port,
            profile: tempfile::tempdir().unwrap(),
        };
        let status = format!("http://127.0.0.1:{port}/status");
        let start = Instant::now();
        loop {
            if let Ok(r) = reqwest::get(&status).await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "chromedriver did not answer on port {port}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        driver
    }

    /// A headless Chromium session.
    async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-crash-reporter",
                    "--hide-scrollbars",
                    "--window-size=1366,900",
                    format!("--user-data-dir={}", self.profile.path().display()),
                ],
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a Chromium session")
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // chromedriver leads its own process group (see `start`), which
        // holds the Chromium it started: signal that group, by its id, with
        // the kill(2) call itself. Never shell out to `kill` with a
        // negative number: procps `kill -KILL -<pid>` can be read as
        // "every process".
        if let Ok(pgid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: getpgid(2) and kill(2) have no memory-safety
            // preconditions. The child is not yet reaped, so its pid is
            // still ours; the group is signalled only if the child leads
            // it, i.e. it is the group `start` created.
            unsafe {
                if pgid > 1 && libc::getpgid(pgid) == pgid {
                    libc::kill(-pgid, libc::SIGKILL);
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Saves a screenshot at this window size; `None` (a run whose twin on
/// the other database saves them) only exercises the resizing.
async fn screenshot(b: &Client, width: u32, height: u32, file: Option<&str>) {
    b.set_window_size(width, height).await.unwrap();
    let png = b.screenshot().await.unwrap();
    if let Some(file) = file {
        std::fs::write(artifacts().join(file), png).unwrap();
    }
}

async fn text_of(b: &Client, css: &str) -> String {
    // The page may still be replacing itself (a submit, a reload) between
    // finding the element and reading it: a stale element is looked up again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match wait_for(b, Locator::Css(css)).await.text().await {
            Ok(t) => return t,
            Err(e) if Instant::now() > deadline => {
                panic!("{css}: element kept going stale: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The text of `css` once it reads `want`, or what it read last after
/// 10 s: after a click the old page may still be the one shown.
async fn text_becomes(b: &Client, css: &str, want: &str) -> String {
    let start = Instant::now();
    loop {
        let text = text_of(b, css).await;
        if text == want || start.elapsed() > Duration::from_secs(10) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Types `text` into the field with this id.
async fn type_into(b: &Client, id: &str, text: &str) {
    wait_for(b, Locator::Id(id))
        .await
        .send_keys(text)
        .await
        .unwrap();
}

/// Clicks the element `css` finds.
async fn click(b: &Client, css: &str) {
    wait_for(b, Locator::Css(css)).await.click().await.unwrap();
}

/// The element `at` finds, waiting up to 10 s for the page to show it.
/// A lookup the page aborts by replacing itself (a submit, a reload:
/// "aborted by navigation") is made again on the page that replaced it.
async fn wait_for(b: &Client, at: Locator<'_>) -> fantoccini::elements::Element {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match b.wait().at_most(left).for_element(at).await {
            Ok(el) => return el,
            Err(e) if Instant::now() >= deadline => panic!("{at:?}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Searches for `q` with the search form of the page.
async fn search(b: &Client, q: &str) {
    type_into(b, "q", q).await;
    click(b, "form[role=search] button").await;
}

async fn path_of(b: &Client) -> String {
    b.current_url().await.unwrap().path().to_string()
}

async fn browser_scenario(ui: &UiApp, b: &Client, campaign: i64, save_screenshots: bool) {
    let shot = |file: &'static str| save_screenshots.then_some(file);
    let desk = ui.token("desk-ani", Role::Support).await;
    let nik = nik_of(1, "31");
    let w = worker_id(ui.store(), &nik).await;

    // Any page sends a stranger to sign in.
    b.goto(&ui.url("/ui")).await.unwrap();
    assert_eq!(path_of(b).await, "/ui/login");
    assert_eq!(text_of(b, "h1").await, "Masuk ke layanan");
    screenshot(b, 390, 844, shot("ui-login-phone.png")).await;
    b.set_window_size(1366, 900).await.unwrap();
    type_into(b, "token", &desk).await;
    click(b, "main form button[type=submit]").await;
    // The sign-in page has an `h1` too: wait for the next page's.
    assert_eq!(
        text_becomes(b, "h1", "Cari tenaga kesehatan").await,
        "Cari tenaga kesehatan"
    );
    assert_eq!(path_of(b).await, "/ui");
    assert!(text_of(b, "header.site").await.contains("desk-ani"));

    // Search by NIK: one hit, NIK and phone masked, the name shown.
    search(b, &nik).await;
    let table = text_of(b, "section[aria-labelledby=hasil] table").await;
    assert!(table.contains("Siti Rahayu"), "{table}");
    assert!(table.contains("************"), "{table}");
    assert!(!table.contains(&nik), "full NIK in the results: {table}");
    assert!(!table.contains("6281200000011"), "full phone: {table}");
    // The search was a POST: the NIK is in no URL (history, proxy logs).
    let here = b.current_url().await.unwrap();
    assert_eq!(here.path(), "/ui/cari");
    assert_eq!(here.query(), None, "{here}");
    assert!(!here.as_str().contains(&nik), "{here}");
    screenshot(b, 1366, 900, shot("ui-cari.png")).await;
    let link = format!("a[href=\"/ui/nakes/{w}\"]");
    click(b, &link).await;

    // The timeline: one delivered message, with attempt and receipt.
    assert_eq!(text_of(b, "h1").await, "Siti Rahayu");
    let messages = b
        .find_all(Locator::Css("section article.msg[data-generation]"))
        .await
        .unwrap();
    assert_eq!(messages.len(), 1);
    assert!(messages[0].text().await.unwrap().contains("diterima"));

    // Resend with a reason.
    type_into(b, "reason", "Penelepon: HP mati waktu SMS pertama dikirim").await;
    click(b, "form[action$=\"/kirim-ulang\"] button").await;
    let notice = text_of(b, ".notice.ok").await;
    assert!(notice.contains("Pesan dijadwalkan ulang"), "{notice}");
    assert!(notice.contains("generasi 2"), "{notice}");

    // After a reload, generation 2 is on the timeline, newest first; wait
    // for its receipt so the screenshot shows a finished story.
    let start = Instant::now();
    let gen2 = loop {
        b.refresh().await.unwrap();
        let first = b
            .find(Locator::Css("section article.msg[data-generation]"))
            .await
            .unwrap();
        let gen = first.attr("data-generation").await.unwrap();
        let text = first.text().await.unwrap();
        if gen.as_deref() == Some("2") && text.contains("diterima") {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "generation 2 not delivered: {gen:?} {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(gen2.contains("generasi 2"), "{gen2}");
    let audit = text_of(b, "#audit + div table").await;
    assert!(audit.contains("desk-ani"), "{audit}");
    assert!(
        audit.contains("Penelepon: HP mati waktu SMS pertama dikirim"),
        "{audit}"
    );
    assert!(
        b.find(Locator::Css(".notice.ok")).await.is_err(),
        "shown once"
    );
    screenshot(b, 1366, 2600, shot("ui-timeline.png")).await;
    screenshot(b, 390, 4200, shot("ui-timeline-phone.png")).await;
    b.set_window_size(1366, 900).await.unwrap();

    // The browser itself posts the resend form with its CSRF field taken
    // out: refused, in Indonesian, and nothing is queued.
    let before = ui.store().timeline(w).await.unwrap().messages.len();
    b.execute(
        "document.querySelectorAll('input[name=csrf]').forEach(e => e.remove()); \
         return document.querySelectorAll('input[name=csrf]').length;",
        vec![],
    )
    .await
    .map(|left| assert_eq!(left, json!(0), "csrf fields removed"))
    .unwrap();
    type_into(b, "reason", "tanpa token CSRF, dari peramban").await;
    click(b, "form[action$=\"/kirim-ulang\"] button").await;
    // `main` is on the timeline too: wait until the refusal has replaced it.
    let start = Instant::now();
    loop {
        let refusal = text_of(b, "main").await;
        if refusal.contains("token keamanan (CSRF)") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no CSRF refusal: {refusal}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ui.store().timeline(w).await.unwrap().messages.len(), before);

    // The same with the browser's session cookie from outside the browser.
    let cookie = b.get_named_cookie("pcv_ui").await.unwrap();
    assert!(cookie.http_only().unwrap_or(false));
    let jar = format!("pcv_ui={}", cookie.value());
    let before = ui.store().timeline(w).await.unwrap().messages.len();
    let r = ui
        .post(
            &format!("/ui/nakes/{w}/kirim-ulang"),
            Some(&jar),
            &[("reason", "tanpa token CSRF")],
            &[],
        )
        .await;
    assert_answer(r, StatusCode::FORBIDDEN, "token keamanan (CSRF)").await;
    assert_eq!(ui.store().timeline(w).await.unwrap().messages.len(), before);

    // Names that look like markup or template code print as written, and
    // no script runs.
    for (name, q) in [(SCRIPT_NAME, "script"), (BRACES_NAME, "{{ x")] {
        b.goto(&ui.url("/ui")).await.unwrap();
        search(b, q).await;
        // The results page may still be loading after the click.
        let hit = wait_for(b, Locator::Css("table tbody a")).await;
        assert_eq!(hit.text().await.unwrap(), name);
        hit.click().await.unwrap();
        assert_eq!(text_of(b, "h1").await, name);
        assert!(b.get_alert_text().await.is_err(), "an alert opened");
    }

    // The dashboard: progress and per-province rates. Jakarta: Siti twice
    // delivered, Budi undelivered; Jawa Barat: both delivered.
    // A campaign under way (here paused before its start) has a progress
    // bar on the list, at the share its counts say: nothing done yet. The
    // finished one has none.
    let later = pedulicovid::campaign::CampaignRequest {
        at: Some(pedulicovid::store::now_ms() + 86_400_000),
        ..campaign_request("Undangan Februari")
    };
    let (feb, queued) = create_campaign(&ui.app, later).await;
    assert!(queued > 0);
    ui.store()
        .control_campaign(feb.id, CampaignAction::Pause, "uji", "test")
        .await
        .unwrap();
    b.goto(&ui.url("/ui/kampanye")).await.unwrap();
    let bar = wait_for(
        b,
        Locator::Css(&format!(
            "meter.kemajuan[aria-label=\"Kemajuan kampanye {}\"]",
            feb.id
        )),
    )
    .await;
    assert_eq!(bar.attr("value").await.unwrap().as_deref(), Some("0"));
    assert!(b
        .find(Locator::Css(&format!(
            "meter.kemajuan[aria-label=\"Kemajuan kampanye {campaign}\"]"
        )))
        .await
        .is_err());
    click(b, &format!("a[href=\"/ui/kampanye/{campaign}\"]")).await;
    assert!(text_of(b, "h1").await.contains("Undangan Januari"));
    let provinces = text_of(b, "#provinsi ~ div table").await;
    assert!(provinces.contains("DKI Jakarta"), "{provinces}");
    assert!(provinces.contains("66,7 %"), "{provinces}");
    assert!(provinces.contains("Jawa Barat"), "{provinces}");
    assert!(provinces.contains("100,0 %"), "{provinces}");
    // The pictures: progress over time and flags by reason, their numbers
    // those of the campaign's counts.
    let r = ui.store().campaign_report(campaign).await.unwrap();
    let delivered = r.status(Status::Delivered);
    let not_delivered: i64 = r
        .by_status
        .iter()
        .filter_map(|(k, n)| k.parse::<Status>().ok().map(|s| (s, *n)))
        .filter(|(s, _)| s.is_final() && *s != Status::Delivered && *s != Status::Cancelled)
        .map(|(_, n)| n)
        .sum();
    let chart = wait_for(b, Locator::Css("svg#grafik-kemajuan")).await;
    let attr = |name: &'static str| {
        let chart = chart.clone();
        async move { chart.attr(name).await.unwrap().unwrap_or_default() }
    };
    assert_eq!(attr("data-delivered").await, delivered.to_string());
    assert_eq!(attr("data-not-delivered").await, not_delivered.to_string());
    assert_eq!(attr("data-pending").await, (r.in_flight()).to_string());
    assert!(delivered >= 3 && not_delivered >= 1, "{r:?}");
    assert_eq!(
        chart
            .find_all(Locator::Css("path.area"))
            .await
            .unwrap()
            .len(),
        3,
        "three bands"
    );
    let (_, _, w, h) = chart.rectangle().await.unwrap();
    assert!(w > 300.0 && h > 80.0, "the chart is drawn: {w}x{h}");
    let flags = wait_for(b, Locator::Css("svg#grafik-alasan")).await;
    let bars = flags.find_all(Locator::Css("g.bar")).await.unwrap();
    assert_eq!(bars.len(), r.flagged_by_reason.len(), "{r:?}");
    for (bar, (_, n)) in bars.iter().zip(&r.flagged_by_reason) {
        assert_eq!(bar.attr("data-count").await.unwrap(), Some(n.to_string()));
    }
    screenshot(b, 1366, 1800, shot("ui-kampanye.png")).await;
    screenshot(b, 390, 3000, shot("ui-kampanye-phone.png")).await;
    b.set_window_size(1366, 900).await.unwrap();

    // Sign out: the session is gone on the server too.
    click(b, "form.signout button").await;
    assert!(text_of(b, ".notice.ok").await.contains("Anda sudah keluar"));
    assert_eq!(path_of(b).await, "/ui/login");
    let r = ui.get("/ui", Some(&jar)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/ui/login");
}

async fn browser_signs_in_searches_and_resends(backend: &str) {
    let driver = ChromeDriver::start().await;
    let (ui, campaign) = seeded(backend).await;
    let b = driver.browser().await;
    // One run saves the screenshots: two would write the same files.
    let scenario = browser_scenario(&ui, &b, campaign, backend == "sqlite");
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(scenario)).await;
    // Close the session whatever happened, then report.
    let _ = b.close().await;
    ui.stop().await;
    drop(driver);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_sqlite() {
    browser_signs_in_searches_and_resends("sqlite").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_postgres() {
    browser_signs_in_searches_and_resends("postgres").await
}

// ------------------------------------------------------------ plain HTTP

async fn sign_in_refusals_and_roles(backend: &str) {
    let ui = UiApp::start(backend).await;
    let unknown = |r: &str| r.contains("Token tidak dikenal");

    let r = ui.try_sign_in("pcv_support_0000").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(r.headers(), "pcv_ui").is_none());
    assert!(unknown(&r.text().await.unwrap()));

    for role in [Role::Chatbot, Role::Carrier] {
        let t = ui.token(&format!("t-{role}"), role).await;
        let r = ui.try_sign_in(&t).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{role}");
        assert!(set_cookie(r.headers(), "pcv_ui").is_none());
        let html = r.text().await.unwrap();
        assert!(
            html.contains(&format!("Token dengan peran {role} tidak boleh masuk")),
            "{html}"
        );
    }

    let revoked = ui.token("desk-old", Role::Support).await;
    ui.store().revoke_token("desk-old").await.unwrap();
    let r = ui.try_sign_in(&revoked).await;
    assert_answer(r, StatusCode::UNAUTHORIZED, "sudah dicabut").await;

    let r = ui.try_sign_in("   ").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // The sign-in form has CSRF protection too: no nonce, a wrong one, or
    // another site's Origin is 403.
    let desk = ui.token("desk-1", Role::Support).await;
    let r = ui
        .post("/ui/login", None, &[("token", desk.as_str())], &[])
        .await;
    assert_answer(r, StatusCode::FORBIDDEN, "CSRF").await;
    let (cookie, nonce) = ui.login_nonce().await;
    let r = ui
        .post(
            "/ui/login",
            Some(&cookie),
            &[("csrf", "0".repeat(64).as_str()), ("token", desk.as_str())],
            &[],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = ui
        .post(
            "/ui/login",
            Some(&cookie),
            &[("csrf", nonce.as_str()), ("token", desk.as_str())],
            &[("origin", "http://evil.example")],
        )
        .await;
    assert_answer(r, StatusCode::FORBIDDEN, "situs lain").await;

    // Operators get the dashboard only.
    let op = ui.token("ops-1", Role::Operator).await;
    let r = ui.try_sign_in(&op).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/ui/kampanye");
    let s = ui.sign_in(&op).await;
    assert_eq!(
        ui.get("/ui/kampanye", Some(&s.cookie)).await.status(),
        StatusCode::OK
    );
    let r = ui.search(&s, "Siti").await;
    assert_answer(r, StatusCode::FORBIDDEN, "hanya untuk petugas layanan").await;
    let r = ui.get("/ui/nakes/1", Some(&s.cookie)).await;
    assert_answer(r, StatusCode::FORBIDDEN, "hanya untuk petugas layanan").await;
    let r = ui.get("/ui", Some(&s.cookie)).await;
    assert_eq!(r.headers()[LOCATION], "/ui/kampanye");

    // Support staff: everything.
    let s = ui.sign_in(&desk).await;
    let r = ui.get("/ui", Some(&s.cookie)).await;
    assert_eq!(r.status(), StatusCode::OK);
    // No session: pages redirect, forms are refused.
    let r = ui.get("/ui/kampanye", None).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/ui/login");
    let r = ui
        .post("/ui/keluar", Some("pcv_ui=forged"), &[("csrf", "x")], &[])
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Unknown UI paths get an Indonesian 404 page, the stylesheet is
    // public.
    let r = ui.get("/ui/tidak-ada", Some(&s.cookie)).await;
    assert_answer(r, StatusCode::NOT_FOUND, "Halaman tidak ditemukan").await;
    let r = ui.get("/ui/static/app.css", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    ui.stop().await;
}
both_backends!(sign_in_refusals_and_roles);

async fn session_cookie_flags_and_lifetime(backend: &str) {
    let ui = UiApp::start(backend).await;
    let desk = ui.token("desk-1", Role::Support).await;

    let r = ui.try_sign_in(&desk).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/ui");
    let c = set_cookie(r.headers(), "pcv_ui").unwrap();
    let attrs: Vec<&str> = c.split(';').map(str::trim).collect();
    for a in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(attrs.contains(&a), "{a} missing: {c}");
    }
    assert!(!attrs.contains(&"Secure"), "plain http: {c}");
    assert!(!c.contains(&desk), "the cookie carries the API token");
    let value = first_pair(&c)["pcv_ui=".len()..].to_string();
    assert_eq!(value.len(), 64);
    assert!(!desk.contains(&value));
    // The nonce cookie is deleted at sign-in.
    let nonce = set_cookie(r.headers(), "pcv_ui_login").unwrap();
    assert!(nonce.contains("Max-Age=0"), "{nonce}");

    // Behind a TLS proxy the cookie is Secure.
    let (cookie, n) = ui.login_nonce().await;
    let r = ui
        .post(
            "/ui/login",
            Some(&cookie),
            &[("csrf", n.as_str()), ("token", desk.as_str())],
            &[("x-forwarded-proto", "https")],
        )
        .await;
    let c = set_cookie(r.headers(), "pcv_ui").unwrap();
    assert!(c.split(';').any(|a| a.trim() == "Secure"), "{c}");

    // Pages are not cached and allow no script.
    let s = ui.sign_in(&desk).await;
    let r = ui.get("/ui", Some(&s.cookie)).await;
    assert_eq!(r.headers()["cache-control"], "no-store");
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(!csp.contains("script-src"), "{csp}");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let html = r.text().await.unwrap();
    assert!(html.contains("<html lang=\"id\">"));
    assert!(!html.contains("<script"), "no JavaScript");

    // Sign-out ends the session on the server.
    let r = ui
        .post("/ui/keluar", Some(&s.cookie), &[("csrf", &s.csrf)], &[])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(set_cookie(r.headers(), "pcv_ui")
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(
        ui.get("/ui", Some(&s.cookie)).await.status(),
        StatusCode::SEE_OTHER
    );

    // Revoking the token ends its sessions at once.
    let s = ui.sign_in(&desk).await;
    assert_eq!(
        ui.get("/ui", Some(&s.cookie)).await.status(),
        StatusCode::OK
    );
    ui.store().revoke_token("desk-1").await.unwrap();
    let r = ui.get("/ui", Some(&s.cookie)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/ui/login");
    ui.stop().await;
}
both_backends!(session_cookie_flags_and_lifetime);

async fn forms_need_csrf_and_refusals_read_in_indonesian(backend: &str) {
    let (ui, _) = seeded(backend).await;
    let desk = ui.token("desk-1", Role::Support).await;
    let s = ui.sign_in(&desk).await;
    let w = worker_id(ui.store(), &nik_of(1, "31")).await;
    let resend = format!("/ui/nakes/{w}/kirim-ulang");
    let generations = |store: Store| async move { store.timeline(w).await.unwrap().messages.len() };

    // Without the token, with a wrong one, from another origin: 403.
    for (fields, headers) in [
        (vec![("reason", "x")], vec![]),
        (vec![("reason", "x"), ("csrf", "")], vec![]),
        (vec![("reason", "x"), ("csrf", "deadbeef")], vec![]),
        (
            vec![("reason", "x"), ("csrf", s.csrf.as_str())],
            vec![("origin", "http://evil.example")],
        ),
        (
            vec![("reason", "x"), ("csrf", s.csrf.as_str())],
            vec![("referer", "http://evil.example/ui")],
        ),
    ] {
        let r = ui.post(&resend, Some(&s.cookie), &fields, &headers).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{fields:?} {headers:?}");
        let html = r.text().await.unwrap();
        assert!(html.contains("Formulir ditolak"), "{html}");
    }
    // Another session's token is not this session's.
    let other = ui.sign_in(&desk).await;
    assert_ne!(other.csrf, s.csrf);
    let r = ui
        .post(
            &resend,
            Some(&s.cookie),
            &[("reason", "x"), ("csrf", &other.csrf)],
            &[],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(generations(ui.store().clone()).await, 1);

    // A missing reason.
    let r = ui
        .post(
            &resend,
            Some(&s.cookie),
            &[("reason", "  "), ("csrf", &s.csrf)],
            &[],
        )
        .await;
    assert_answer(r, StatusCode::BAD_REQUEST, "Alasan wajib diisi").await;

    // Three resends a day per number, each once the last has an outcome;
    // the same origin is fine.
    let origin = ui.base.clone();
    for i in 1..=3 {
        let reason = format!("permintaan ke-{i}");
        let r = ui
            .post(
                &resend,
                Some(&s.cookie),
                &[("reason", reason.as_str()), ("csrf", &s.csrf)],
                &[("origin", origin.as_str())],
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "resend {i}");
        assert_eq!(r.headers()[LOCATION], format!("/ui/nakes/{w}").as_str());
        let page = ui.get(&format!("/ui/nakes/{w}"), Some(&s.cookie)).await;
        let html = page.text().await.unwrap();
        assert!(
            html.contains(&format!("generasi {}", i + 1)),
            "resend {i}: {html}"
        );
        settle(ui.store(), w).await;
    }
    let r = ui
        .post(
            &resend,
            Some(&s.cookie),
            &[("reason", "keempat <b>tebal</b>"), ("csrf", &s.csrf)],
            &[],
        )
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let html = r.text().await.unwrap();
    assert!(html.contains("Batas harian tercapai"), "{html}");
    assert!(html.contains("WIB"), "{html}");
    // The typed reason is kept, escaped.
    assert!(
        html.contains("keempat &lt;b&gt;tebal&lt;&#x2F;b&gt;"),
        "{html}"
    );
    assert_eq!(generations(ui.store().clone()).await, 4);
    let t = ui.store().timeline(w).await.unwrap();
    let audits: Vec<_> = t
        .audit
        .iter()
        .filter(|a| a.action == "worker.resend")
        .collect();
    assert_eq!(audits.len(), 3);
    assert!(audits.iter().all(|a| a.actor == "desk-1"));

    // A notice waiting for its window is in flight: refused, 409.
    let csv = format!("{HEADER}{}", named_row(5, "31", "00000051", "Dewi Lestari"));
    import_text(ui.store(), &csv).await;
    run_campaign(&ui.app, "tertunda", &closed_window_now()).await;
    let w5 = worker_id(ui.store(), &nik_of(5, "31")).await;
    let r = ui
        .post(
            &format!("/ui/nakes/{w5}/kirim-ulang"),
            Some(&s.cookie),
            &[("reason", "coba"), ("csrf", &s.csrf)],
            &[],
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let html = r.text().await.unwrap();
    assert!(html.contains("masih dalam proses"), "{html}");
    assert!(html.contains("Dewi Lestari"));

    // Resolving a flag: CSRF first, then a note, then done once.
    let w4 = worker_id(ui.store(), &nik_of(4, "31")).await;
    let flag = ui.store().timeline(w4).await.unwrap().flags[0].id;
    let path = format!("/ui/nakes/{w4}/tanda/{flag}/selesai");
    let r = ui
        .post(&path, Some(&s.cookie), &[("note", "sudah")], &[])
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = ui
        .post(
            &path,
            Some(&s.cookie),
            &[("note", ""), ("csrf", &s.csrf)],
            &[],
        )
        .await;
    assert_answer(r, StatusCode::BAD_REQUEST, "Catatan wajib diisi").await;
    let r = ui
        .post(
            &path,
            Some(&s.cookie),
            &[("note", "didaftarkan di puskesmas"), ("csrf", &s.csrf)],
            &[],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let html = ui
        .get(&format!("/ui/nakes/{w4}"), Some(&s.cookie))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("sudah diselesaikan"), "{html}");
    assert!(html.contains("didaftarkan di puskesmas"));
    let r = ui
        .post(
            &path,
            Some(&s.cookie),
            &[("note", "lagi"), ("csrf", &s.csrf)],
            &[],
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    // A flag of another worker is not found under this one.
    let r = ui
        .post(
            &format!("/ui/nakes/{w}/tanda/{flag}/selesai"),
            Some(&s.cookie),
            &[("note", "x"), ("csrf", &s.csrf)],
            &[],
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    ui.stop().await;
}
both_backends!(forms_need_csrf_and_refusals_read_in_indonesian);

async fn pages_escape_data_and_show_rates(backend: &str) {
    let (ui, c) = seeded(backend).await;
    let desk = ui.token("desk-1", Role::Support).await;
    let s = ui.sign_in(&desk).await;

    for (q, name, escaped) in [
        (
            "script",
            SCRIPT_NAME,
            "&lt;script&gt;alert(1)&lt;&#x2F;script&gt;",
        ),
        ("{{ x", BRACES_NAME, "{{ x }}"),
    ] {
        let r = ui.search(&s, q).await;
        assert_eq!(r.status(), StatusCode::OK);
        let html = r.text().await.unwrap();
        assert!(html.contains(escaped), "{name}: {html}");
        assert!(!html.contains("<script>"), "{html}");
        let nik = nik_of(if name == SCRIPT_NAME { 2 } else { 3 }, "32");
        let w = worker_id(ui.store(), &nik).await;
        let html = ui
            .get(&format!("/ui/nakes/{w}"), Some(&s.cookie))
            .await
            .text()
            .await
            .unwrap();
        assert!(html.contains(&format!("<h1>{escaped}</h1>")), "{html}");
        assert!(!html.contains("<script>"));
        assert!(!html.contains(&nik), "full NIK on the page");
    }
    // The search box echoes what was typed, escaped.
    let r = ui.search(&s, "\"><script>x").await;
    let html = r.text().await.unwrap();
    assert!(html.contains("&quot;&gt;&lt;script&gt;x"), "{html}");
    assert!(!html.contains("\"><script>"));
    // Too short a query is a readable 400.
    let r = ui.search(&s, "ab").await;
    assert_answer(r, StatusCode::BAD_REQUEST, "minimal 3 huruf").await;
    // By phone, in another format.
    let r = ui.search(&s, "+62 812 0000 0011").await;
    let html = r.text().await.unwrap();
    assert!(html.contains("Siti Rahayu"), "{html}");
    assert!(html.contains("dicari sebagai nomor telepon"), "{html}");

    // The dashboard: counts per status and rates per province.
    let html = ui
        .get(&format!("/ui/kampanye/{c}"), Some(&s.cookie))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("DKI Jakarta"), "{html}");
    assert!(html.contains("50,0 %"), "Jakarta 1 of 2: {html}");
    assert!(html.contains("Jawa Barat"));
    assert!(html.contains("100,0 %"), "Jawa Barat 2 of 2");
    assert!(html.contains("75,0 %"), "overall 3 of 4");
    assert!(html.contains("SMS tidak sampai"), "flag reason: {html}");
    let rates = ui.store().province_delivery(c).await.unwrap();
    assert_eq!(
        rates
            .iter()
            .map(|p| (p.province_code.as_str(), p.finished, p.delivered))
            .collect::<Vec<_>>(),
        vec![("31", 2, 1), ("32", 2, 2)]
    );
    let r = ui.get("/ui/kampanye/99999", Some(&s.cookie)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = ui.get("/ui/nakes/99999", Some(&s.cookie)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    ui.stop().await;
}
both_backends!(pages_escape_data_and_show_rates);

/// Searching by NIK or phone never puts them in a URL: the form posts
/// (with the CSRF token), the results come in the response, result links
/// carry only the worker's numeric id, and a `?q=` in a URL is not run.
async fn search_keeps_identifiers_out_of_urls(backend: &str) {
    let (ui, _) = seeded(backend).await;
    let desk = ui.token("desk-1", Role::Support).await;
    let s = ui.sign_in(&desk).await;
    let nik = nik_of(1, "31");
    let w = worker_id(ui.store(), &nik).await;

    // The form: POST to /ui/cari, with the CSRF token and a label, in an
    // Indonesian page.
    let html = ui.get("/ui", Some(&s.cookie)).await.text().await.unwrap();
    assert!(html.contains("<html lang=\"id\">"));
    let form = &html[html
        .find("<form class=\"searchbar\"")
        .expect("the search form")..];
    let form = &form[..form.find("</form>").unwrap()];
    assert!(
        form.contains("method=\"post\" action=\"/ui/cari\""),
        "{form}"
    );
    assert!(
        form.contains(&format!("name=\"csrf\" value=\"{}\"", s.csrf)),
        "{form}"
    );
    assert!(form.contains("<label for=\"q\">"), "{form}");
    assert!(form.contains("id=\"q\" name=\"q\""), "{form}");

    // By NIK and by phone: found, and every link out of the results is
    // /ui/nakes/<id>, never the NIK or the number.
    for q in [nik.as_str(), "081200000011"] {
        let r = ui.search(&s, q).await;
        assert_eq!(r.status(), StatusCode::OK, "{q}");
        let html = r.text().await.unwrap();
        assert!(html.contains("Siti Rahayu"), "{q}: {html}");
        let hrefs: Vec<&str> = html
            .split("href=\"")
            .skip(1)
            .map(|h| &h[..h.find('"').unwrap()])
            .collect();
        assert!(
            hrefs.contains(&format!("/ui/nakes/{w}").as_str()),
            "{hrefs:?}"
        );
        for h in &hrefs {
            assert!(!h.contains('?'), "a query in a link: {h}");
            assert!(!h.contains(&nik) && !h.contains("81200000011"), "{h}");
        }
    }

    // Without the CSRF token, or from another site: refused.
    let r = ui
        .post("/ui/cari", Some(&s.cookie), &[("q", nik.as_str())], &[])
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(!r.text().await.unwrap().contains("Siti Rahayu"));
    let r = ui
        .post(
            "/ui/cari",
            Some(&s.cookie),
            &[("q", nik.as_str()), ("csrf", &s.csrf)],
            &[("origin", "http://evil.example")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A query in a URL (an old bookmark) is not run: back to the form.
    let r = ui.get(&format!("/ui/cari?q={nik}"), Some(&s.cookie)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/ui");
    ui.stop().await;
}
both_backends!(search_keeps_identifiers_out_of_urls);
