//! Test helpers: a fresh database per test on SQLite or PostgreSQL, and the
//! real application started on random ports.
#![allow(dead_code)]

pub mod carrier;
pub mod workers;

use std::time::{Duration, Instant};

use carrier_sim::{parse_rules, OutcomeMix};
use pedulicovid::app::{App, Parts};
use pedulicovid::campaign::{self, CampaignRequest};
use pedulicovid::config::{GatewaySettings, Settings};
use pedulicovid::store::{Campaign, CampaignReport, Store};

/// Where PostgreSQL test databases are created. CI and the README's test
/// command start PostgreSQL on 127.0.0.1:5432 with trust auth.
pub fn pg_admin_url() -> String {
    std::env::var("PEDULICOVID_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh, empty database for one test. SQLite files live in a temporary
/// directory; PostgreSQL databases get a unique name and are dropped when
/// the guard is dropped.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl TestDb {
    pub async fn new(backend: &str) -> TestDb {
        match backend {
            "sqlite" => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("test.db").display());
                TestDb {
                    url,
                    _dir: Some(dir),
                    pg_name: None,
                }
            }
            "postgres" => {
                let name = format!("pedulicovid_test_{}", uuid::Uuid::new_v4().simple());
                let admin = sqlx::PgPool::connect(&pg_admin_url())
                    .await
                    .expect("PostgreSQL must be running for the test suite (see README)");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await
                    .expect("create test database");
                admin.close().await;
                let mut u = url::Url::parse(&pg_admin_url()).expect("PG URL");
                u.set_path(&name);
                TestDb {
                    url: u.to_string(),
                    _dir: None,
                    pg_name: Some(name),
                }
            }
            other => panic!("unknown backend {other}"),
        }
    }

    pub async fn store(&self) -> Store {
        let s = Store::connect(&self.url).await.expect("connect");
        s.migrate().await.expect("migrate");
        s
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            // Best effort, on a thread of its own: Drop cannot be async.
            let url = pg_admin_url();
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                rt.block_on(async {
                    let admin = sqlx::PgPool::connect(&url).await.ok()?;
                    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&admin)
                        .await
                        .ok()?;
                    Some(())
                })
            })
            .join();
        }
    }
}

/// Settings for a test: random ports, fast retries, and one gateway, "sim",
/// that asks for the in-process simulator by name (`dialect = "simulator"`;
/// nothing else ever starts it). Tests that send elsewhere set that
/// gateway's dialect and URL, or replace the gateways.
pub fn test_settings(db: &TestDb) -> Settings {
    let mut s = Settings {
        database_url: db.url.clone(),
        gateways: vec![GatewaySettings::simulator("sim")],
        ..Default::default()
    };
    s.http.listen = "127.0.0.1:0".into();
    s.simulator.listen = "127.0.0.1:0".into();
    // A worker's own metrics listener: any free port, tests run in parallel.
    s.metrics.listen = "127.0.0.1:0".into();
    s.simulator.receipt_delay_ms = 5;
    s.simulator.receipt_jitter_ms = 5;
    s.simulator.callback_retry_delay_ms = 100;
    s.worker.poll_ms = 50;
    s.worker.backoff_initial_ms = 50;
    s.worker.backoff_max_ms = 200;
    s
}

/// Every number delivered: outcomes are then exact, not a random mix.
pub fn all_delivered() -> OutcomeMix {
    OutcomeMix {
        delivered: 1.0,
        undelivered: 0.0,
        rejected: 0.0,
        expired: 0.0,
        invalid: 0.0,
    }
}

/// [`test_settings`] with the simulator answering by `rules` (last digits
/// of the phone → outcome, see `parse_rules`) and delivering every other
/// number.
pub fn ruled_settings(db: &TestDb, rules: &str) -> Settings {
    let mut s = test_settings(db);
    s.simulator.rules = parse_rules(rules).unwrap();
    s.simulator.mix = all_delivered();
    s
}

pub async fn start(settings: Settings, parts: Parts) -> App {
    App::start(settings, parts).await.expect("app starts")
}

/// `http://127.0.0.1:PORT` of the app's HTTP server.
pub fn base_url(app: &App) -> String {
    format!("http://127.0.0.1:{}", app.port().expect("http runs"))
}

/// Writes CSV text to a temporary file and imports it.
pub async fn import_text(store: &Store, csv: &str) -> pedulicovid::registry::ImportReport {
    pedulicovid::registry::import_csv(store, csv.as_bytes(), |_| {})
        .await
        .expect("import runs")
}

pub const HEADER: &str =
    "nik,full_name,phone,profession,facility_code,regency_code,province_code,validated,eligible\n";

/// A valid registry row for worker `i` in province `prov` with a phone
/// ending in `last` (the simulator's rules key on the last digit).
pub fn row(i: u32, prov: &str, phone_tail: &str) -> String {
    format!(
        "{prov}0101{:02}0190{:04},Nakes Nomor {i},0812{:0>8},perawat,FKS{i},{prov}01,{prov},true,true\n",
        (i % 28) + 1,
        i + 1,
        phone_tail
    )
}

/// The NIK of `row(i, prov, _)`.
pub fn nik_of(i: u32, prov: &str) -> String {
    row(i, prov, "0")[..16].to_string()
}

/// A campaign open around the clock with the default template and no
/// filters; tests that differ use struct-update syntax on it.
pub fn campaign_request(name: &str) -> CampaignRequest {
    CampaignRequest {
        name: name.into(),
        template: "undangan_registrasi".into(),
        at: None,
        window: "00:00-24:00".parse().unwrap(),
        provinces: vec![],
        professions: vec![],
        created_by: "test".into(),
        deadline: None,
    }
}

/// Creates the campaign in the running app (one SMS segment at most);
/// returns it and the number of messages enqueued.
pub async fn create_campaign(app: &App, req: CampaignRequest) -> (Campaign, u64) {
    let created = campaign::create(&app.store, &app.renderer, 1, req)
        .await
        .expect("campaign created");
    (created.campaign, created.enqueued)
}

/// Creates a campaign open only in `window` (WIB); returns its id.
pub async fn run_campaign(app: &App, name: &str, window: &str) -> i64 {
    let req = CampaignRequest {
        window: window.parse().unwrap(),
        ..campaign_request(name)
    };
    create_campaign(app, req).await.0.id
}

/// A one-hour window that is closed now in WIB, so a worker's notice stays
/// queued.
pub fn closed_window_now() -> String {
    let m = ((pedulicovid::store::now_ms() / 60_000) + 7 * 60) % 1440;
    let start = (m + 360) % 1380;
    format!(
        "{:02}:{:02}-{:02}:{:02}",
        start / 60,
        start % 60,
        (start + 60) / 60,
        (start + 60) % 60
    )
}

/// The registry id of the worker with this NIK.
pub async fn worker_id(store: &Store, nik: &str) -> i64 {
    store.worker_by_nik(nik).await.unwrap().unwrap().id
}

/// (action, actor) of every audit entry, read with SQL (the store has no
/// general audit reader; timelines read it per worker).
pub async fn audit_actions(url: &str) -> Vec<(String, String)> {
    sql_rows(url, "SELECT action, actor FROM audit_log ORDER BY id", &[]).await
}

/// Plain SQL on a test database, for what the store has no method for:
/// every query binds `args` to `$1`, `$2`, … and panics with its SQL on
/// error.
pub enum Raw {
    Sqlite(sqlx::SqlitePool),
    Pg(sqlx::PgPool),
}

macro_rules! on_raw_pool {
    ($raw:expr, $p:ident => $body:expr) => {
        match $raw {
            Raw::Sqlite($p) => $body,
            Raw::Pg($p) => $body,
        }
    };
}

impl Raw {
    pub async fn connect(url: &str) -> Raw {
        if url.starts_with("sqlite:") {
            Raw::Sqlite(sqlx::SqlitePool::connect(url).await.expect("raw sqlite"))
        } else {
            Raw::Pg(sqlx::PgPool::connect(url).await.expect("raw postgres"))
        }
    }

    /// One BIGINT from the first row (cast in SQL where needed).
    pub async fn int(&self, sql: &str, args: &[i64]) -> i64 {
        first(self.scalars(sql, args).await, sql)
    }

    /// One TEXT from the first row.
    pub async fn text(&self, sql: &str, args: &[i64]) -> String {
        first(self.scalars(sql, args).await, sql)
    }

    /// Every BIGINT of the first column.
    pub async fn ints(&self, sql: &str, args: &[i64]) -> Vec<i64> {
        self.scalars(sql, args).await
    }

    /// Every TEXT of the first column.
    pub async fn texts(&self, sql: &str, args: &[i64]) -> Vec<String> {
        self.scalars(sql, args).await
    }

    /// The first column of every row.
    async fn scalars<T>(&self, sql: &str, args: &[i64]) -> Vec<T>
    where
        T: sqlx::Type<sqlx::Sqlite>
            + for<'r> sqlx::Decode<'r, sqlx::Sqlite>
            + sqlx::Type<sqlx::Postgres>
            + for<'r> sqlx::Decode<'r, sqlx::Postgres>
            + Send
            + Unpin,
    {
        let rows: Vec<(T,)> = self.rows(sql, args).await;
        rows.into_iter().map(|(v,)| v).collect()
    }

    /// Every row, as a tuple or a `FromRow` type.
    pub async fn rows<T>(&self, sql: &str, args: &[i64]) -> Vec<T>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
            + Send
            + Unpin,
    {
        on_raw_pool!(self, p => {
            let mut q = sqlx::query_as::<_, T>(sql);
            for a in args {
                q = q.bind(*a);
            }
            q.fetch_all(p).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
        })
    }

    /// Runs a statement.
    pub async fn exec(&self, sql: &str, args: &[i64]) {
        on_raw_pool!(self, p => {
            let mut q = sqlx::query(sql);
            for a in args {
                q = q.bind(*a);
            }
            q.execute(p).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        })
    }

    pub async fn close(self) {
        on_raw_pool!(self, p => p.close().await)
    }
}

/// The first of `rows`, or a panic naming the query that found none.
fn first<T>(rows: Vec<T>, sql: &str) -> T {
    rows.into_iter()
        .next()
        .unwrap_or_else(|| panic!("{sql}: no rows"))
}

/// Makes every insert into `audit_log` fail, as a full disk or a revoked
/// grant would.
pub async fn break_audit_log(url: &str) {
    let raw = Raw::connect(url).await;
    match raw {
        Raw::Sqlite(_) => {
            raw.exec(
                "CREATE TRIGGER audit_down BEFORE INSERT ON audit_log \
                 BEGIN SELECT RAISE(ABORT, 'audit down'); END",
                &[],
            )
            .await
        }
        Raw::Pg(_) => {
            raw.exec(
                "CREATE FUNCTION audit_down() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'audit down'; END $$",
                &[],
            )
            .await;
            raw.exec(
                "CREATE TRIGGER audit_down BEFORE INSERT ON audit_log \
                 FOR EACH ROW EXECUTE FUNCTION audit_down()",
                &[],
            )
            .await
        }
    }
    raw.close().await;
}

/// Every row of `sql` (its `$1`, `$2`, … bound to `args`), read directly
/// from the database `url` names.
pub async fn sql_rows<T>(url: &str, sql: &str, args: &[i64]) -> Vec<T>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + Send
        + Unpin,
{
    if url.starts_with("sqlite:") {
        let p = sqlx::SqlitePool::connect(url).await.unwrap();
        let mut q = sqlx::query_as(sql);
        for a in args {
            q = q.bind(*a);
        }
        let rows = q.fetch_all(&p).await.unwrap();
        p.close().await;
        rows
    } else {
        let p = sqlx::PgPool::connect(url).await.unwrap();
        let mut q = sqlx::query_as(sql);
        for a in args {
            q = q.bind(*a);
        }
        let rows = q.fetch_all(&p).await.unwrap();
        p.close().await;
        rows
    }
}

/// Opens every campaign's window around the clock and makes queued
/// notices due: the standing campaigns (re-registration notices) send
/// 08:00-20:00 local time, and a test must not depend on the hour it runs.
pub async fn open_windows_now(url: &str) {
    let _: Vec<(i64,)> = sql_rows(
        url,
        "UPDATE campaigns SET window_start = 0, window_end = 1440 RETURNING id",
        &[],
    )
    .await;
    let _: Vec<(i64,)> = sql_rows(
        url,
        "UPDATE messages SET next_attempt_at = 0 WHERE status = 'queued' RETURNING id",
        &[],
    )
    .await;
}

/// Imports `n` valid workers (province 31, phones ending 0, 1, …) into the
/// running app and creates a campaign for all of them; returns its id.
pub async fn campaign_of(app: &App, n: u32, name: &str) -> i64 {
    let csv: String = std::iter::once(HEADER.to_string())
        .chain((0..n).map(|i| row(i, "31", &format!("{i}"))))
        .collect();
    assert_eq!(import_text(&app.store, &csv).await.accepted, u64::from(n));
    let (c, enqueued) = create_campaign(app, campaign_request(name)).await;
    assert_eq!(enqueued, u64::from(n));
    c.id
}

/// Polls until the campaign's status is `status`, or panics after `limit`.
pub async fn wait_status(store: &Store, campaign: i64, status: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let now = store.campaign(campaign).await.expect("campaign").status;
        if now.as_str() == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "campaign {campaign} still {now}, not {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until the campaign has nothing in flight, or panics after `limit`.
pub async fn wait_done(store: &Store, campaign: i64, limit: Duration) -> CampaignReport {
    let start = Instant::now();
    loop {
        let r = store.campaign_report(campaign).await.expect("report");
        if r.enqueued > 0 && r.in_flight() == 0 {
            return r;
        }
        if start.elapsed() > limit {
            panic!("campaign {campaign} not done after {limit:?}: {r:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Declares `#[tokio::test]` functions `sqlite` and `postgres` in a module
/// named after the test, each running `$f(backend)`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name("sqlite").await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name("postgres").await
            }
        }
    };
}

/// A `pedulicovid serve` process on a free loopback port, its database a
/// SQLite file in `dir`, with `args` after `serve` and `env` added; its
/// standard error read line by line.
pub struct Served {
    pub child: std::process::Child,
    /// `http://127.0.0.1:PORT`, from its "listening on" line.
    pub url: String,
    /// What it logged up to that line.
    pub lines: Vec<String>,
    rx: std::sync::mpsc::Receiver<String>,
}

impl Served {
    pub fn start(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Served {
        Served::start_under(&[], dir, args, env)
    }

    /// As [`Served::start`], run by `wrapper` (a program and its
    /// arguments that execs the rest, such as `prlimit --nofile=…`).
    pub fn start_under(
        wrapper: &[&str],
        dir: &std::path::Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Served {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let bin = env!("CARGO_BIN_EXE_pedulicovid");
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let mut child = command
            .arg("serve")
            .args(args)
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .env(
                "PEDULICOVID__DATABASE_URL",
                format!("sqlite://{}", dir.join("x.db").display()),
            )
            .env("PEDULICOVID__HTTP__LISTEN", "127.0.0.1:0")
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("the binary runs");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = vec![];
        let url = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("serve did not start ({e}): {lines:#?}"));
            let url = line.find("listening on http://").map(|at| {
                line[at + "listening on ".len()..]
                    .split(['"', ' '])
                    .next()
                    .unwrap()
                    .to_string()
            });
            lines.push(line);
            if let Some(url) = url {
                break url;
            }
        };
        Served {
            child,
            url,
            lines,
            rx,
        }
    }

    /// Its `/metrics` text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.url))
            .await
            .expect("/metrics answers")
            .text()
            .await
            .expect("/metrics has a body")
    }

    /// SIGTERM, then every line it logged, once it has exited.
    pub fn stop(mut self) -> Vec<String> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
        self.lines.extend(self.rx.iter());
        self.lines
    }
}
