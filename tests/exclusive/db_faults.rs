//! Database faults.
//!
//! - **PostgreSQL restarted mid-campaign** (`pg_ctlcluster … restart`, so
//!   root): `pedulicovid run` and a `pedulicovid worker`, as child processes,
//!   send a rate-limited campaign; the server and the workers reconnect on
//!   their own and finish it; nothing is lost, duplicates stay within what
//!   was in flight. A guard starts PostgreSQL again whatever happens.
//!   It lives in the `exclusive` binary and holds its lock ([`crate::SERIAL`]):
//!   cargo runs test binaries one after another, so the restart disturbs no
//!   other test of the suite.
//! - **SQLite `database is locked`**: another connection holds an exclusive
//!   write transaction for 2 s while the app imports and sends; everything
//!   waits (busy timeout) and completes, and not one warning is logged.
//!
//! `RELIABILITY.md` has the figures.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use carrier_sim::{Simulator, SimulatorConfig};
use pedulicovid::app::Parts;
use pedulicovid::campaign;
use pedulicovid::render::Renderer;
use pedulicovid::status::Status;
use pedulicovid::store::{CampaignReport, Store};
use sqlx::Connection;

/// One test at a time (timings, and the captured log).
use crate::SERIAL;

fn workers_csv(first: u32, n: u32, tail_base: u32) -> String {
    let mut csv = String::from(HEADER);
    for i in first..first + n {
        csv.push_str(&row(i, "31", &format!("{:08}", tail_base + i)));
    }
    csv
}

// ---------------------------------------------------------------------------
// Captured log (the SQLite test checks that nothing was logged at WARN)
// ---------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn take(&self) -> String {
        let mut b = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&std::mem::take(&mut *b)).into_owned()
    }
}

/// Everything pedulicovid logs at WARN or above in this test binary.
fn captured_log() -> &'static Captured {
    static LOG: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let c = Captured::default();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("pedulicovid=warn"))
            .with_writer(c.clone())
            .with_ansi(false)
            .try_init();
        c
    })
}

// ---------------------------------------------------------------------------
// (a) PostgreSQL restarted mid-campaign
// ---------------------------------------------------------------------------

const PG_RESTART_MESSAGES: u32 = 1_500;
/// All processes together: 1,500 messages take ~10 s.
const PG_RESTART_RATE: u32 = 150;

/// The cluster to restart: the one in /etc/postgresql (as `scripts/test.sh`
/// finds it).
fn pg_cluster() -> String {
    let mut versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by_key(|v| v.parse::<u32>().unwrap_or(0));
    versions
        .pop()
        .expect("a PostgreSQL cluster in /etc/postgresql (this test restarts it)")
}

fn pg_ctl(action: &str) -> std::process::Output {
    Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &pg_cluster(), "main", action])
        .env(
            "PATH",
            format!(
                "{}:/usr/sbin:/sbin:/usr/bin",
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .expect("pg_ctlcluster runs (root, Debian PostgreSQL)")
}

fn pg_accepts() -> bool {
    let url = url::Url::parse(&pg_admin_url()).expect("PG URL");
    let addr = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5432)
    );
    std::net::TcpStream::connect_timeout(
        &addr.parse().expect("PG address"),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Starts PostgreSQL again when dropped, if it is down: a failing test must
/// not leave the machine without its database.
struct PgUpGuard;

impl Drop for PgUpGuard {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !pg_accepts() {
            let out = pg_ctl("start");
            if !out.status.success() {
                eprintln!(
                    "PgUpGuard: pg_ctlcluster start: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            if Instant::now() > deadline {
                eprintln!("PgUpGuard: PostgreSQL is still down after 30 s");
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// `pedulicovid run` / `worker` child processes, killed when dropped.
struct Children {
    dir: tempfile::TempDir,
    list: Vec<(String, Child, PathBuf)>,
}

impl Children {
    fn spawn(&mut self, name: &str, args: &[&str], env: &[(&str, String)]) {
        let log = self.dir.path().join(format!("{name}.log"));
        let config = self.dir.path().join("db-faults.toml");
        std::fs::write(&config, "# db fault tests: see the environment\n").expect("config");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pedulicovid"));
        cmd.arg("--config")
            .arg(&config)
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("log file"));
        for (k, _) in std::env::vars() {
            if k.starts_with("PEDULICOVID__") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let child = cmd.spawn().expect("child starts");
        self.list.push((name.to_string(), child, log));
    }

    fn log(&self, name: &str) -> String {
        let (_, _, log) = self.list.iter().find(|(n, _, _)| n == name).expect("child");
        std::fs::read_to_string(log).unwrap_or_default()
    }

    /// None of them exited (a crash on a lost connection would show here).
    fn assert_alive(&mut self) {
        for (name, child, log) in &mut self.list {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!(
                    "{name} exited by itself ({status}):\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (name, child, log) in &mut self.list {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                let text = std::fs::read_to_string(&*log).unwrap_or_default();
                let tail = &text[text.len().saturating_sub(4000)..];
                eprintln!("--- {name} stderr (tail) ---\n{tail}");
            }
        }
    }
}

/// A report, retried while the database is away.
async fn report(store: &Store, id: i64) -> CampaignReport {
    loop {
        match store.campaign_report(id).await {
            Ok(r) => return r,
            Err(e) => {
                eprintln!("report: {e} (retrying)");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_mid_campaign_loses_nothing() {
    let _serial = SERIAL.lock().await;
    assert!(
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0")),
        "this test restarts PostgreSQL with pg_ctlcluster and must run as root \
         (skip it with `cargo test -- --skip postgres_restart`)"
    );
    // Dropped last: PostgreSQL is up again whatever happens below.
    let _pg_up = PgUpGuard;
    let t0 = Instant::now();
    let db = TestDb::new("postgres").await;
    let store = db.store().await;
    let renderer = Renderer::load(Some(Path::new("templates"))).expect("templates");

    // The carrier, in this process. It retries callbacks for 15 s, as a
    // real carrier keeps retrying while our server cannot store receipts.
    let sim = Simulator::bind(SimulatorConfig {
        listen: "127.0.0.1:0".into(),
        answer_latency_ms: 2,
        receipt_delay_ms: 20,
        receipt_jitter_ms: 10,
        callback_retries: 30,
        callback_retry_delay_ms: 500,
        mix: all_delivered(),
        ..Default::default()
    })
    .await
    .expect("simulator");
    let handle = sim.handle();
    sim.spawn(std::future::pending::<()>());
    let sim = handle;

    let imported = import_text(&store, &workers_csv(0, PG_RESTART_MESSAGES, 90_000_000)).await;
    assert_eq!(imported.accepted, u64::from(PG_RESTART_MESSAGES));
    let created = campaign::create(&store, &renderer, 1, campaign_request("pg restart"))
        .await
        .expect("campaign");
    let (id, enqueued) = (created.campaign.id, created.enqueued as i64);

    let mut children = Children {
        dir: tempfile::tempdir().expect("temp dir"),
        list: vec![],
    };
    let common_env = |extra: &[(&'static str, String)]| {
        let mut env: Vec<(&str, String)> = vec![
            ("PEDULICOVID__DATABASE_URL", db.url.clone()),
            ("PEDULICOVID__METRICS__LISTEN", "127.0.0.1:0".into()),
            ("PEDULICOVID__GATEWAYS__0__NAME", "sim".into()),
            (
                "PEDULICOVID__GATEWAYS__0__KANNEL__SENDSMS_URL",
                sim.sendsms_url(),
            ),
            (
                "PEDULICOVID__GATEWAYS__0__RATE_PER_SEC",
                PG_RESTART_RATE.to_string(),
            ),
            ("PEDULICOVID__WORKER__LEASE_SECS", "10".into()),
            ("PEDULICOVID__WORKER__POLL_MS", "100".into()),
            ("RUST_LOG", "warn".into()),
        ];
        env.extend(extra.iter().cloned());
        env
    };
    children.spawn(
        "run",
        &["--database-url", &db.url, "run"],
        &common_env(&[("PEDULICOVID__HTTP__LISTEN", "127.0.0.1:0".into())]),
    );
    // The server prints where it listens; the worker's receipts go there.
    let from = Instant::now();
    let public_url = loop {
        let log = children.log("run");
        if let Some(at) = log.find("listening on http://") {
            let url = log[at + "listening on ".len()..]
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            break url;
        }
        assert!(
            from.elapsed() < Duration::from_secs(20),
            "`pedulicovid run` did not start:\n{log}"
        );
        children.assert_alive();
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    children.spawn(
        "worker",
        &["--database-url", &db.url, "worker"],
        &common_env(&[("PEDULICOVID__HTTP__PUBLIC_URL", public_url.clone())]),
    );

    // Sending for a while: then restart PostgreSQL under it.
    while sim.stats().submits_total < 300 {
        assert!(
            from.elapsed() < Duration::from_secs(30),
            "nothing sent: {:?}",
            sim.stats()
        );
        children.assert_alive();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = sim.stats().submits_total;
    let restart_from = Instant::now();
    // A restart with the database away for 3 s (`pg_ctlcluster restart`
    // alone is back within a second, which a worker claiming once a second
    // may never notice): stop (fast: every connection is cut), wait, start.
    let out = tokio::task::spawn_blocking(|| {
        let stop = pg_ctl("stop");
        std::thread::sleep(Duration::from_secs(3));
        (stop, pg_ctl("start"))
    })
    .await
    .expect("restart task");
    for (what, o) in [("stop", &out.0), ("start", &out.1)] {
        assert!(
            o.status.success(),
            "pg_ctlcluster {what} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let restart_took = restart_from.elapsed();
    let after_restart = sim.stats().submits_total;
    assert!(
        (after_restart as i64) < enqueued,
        "the campaign was done before the restart"
    );

    // Everything finishes without help.
    let settle_from = Instant::now();
    let r = loop {
        let r = report(&store, id).await;
        if r.in_flight() == 0 {
            break r;
        }
        if settle_from.elapsed() > Duration::from_secs(60) {
            panic!("not done 60 s after the restart: {r:?} {:?}", sim.stats());
        }
        children.assert_alive();
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let recovered = settle_from.elapsed();
    children.assert_alive();
    let stats = sim.stats();
    let run_log = children.log("run");
    let worker_log = children.log("worker");
    let noticed = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .map(str::to_string)
            .collect()
    };
    let felt = |log: &str| noticed(log).len();
    for (name, log) in [("run", &run_log), ("worker", &worker_log)] {
        for line in noticed(log).iter().take(4) {
            eprintln!("  {name}: {line}");
        }
    }
    eprintln!(
        "pg restart: {enqueued} messages at {PG_RESTART_RATE}/s; stop, 3 s, start after {before} submits took \
         {restart_took:?}; all final {recovered:?} later; delivered {}, duplicates {}, \
         warnings+errors logged: run {}, worker {}; test {:?}",
        r.status(Status::Delivered),
        stats.duplicates,
        felt(&run_log),
        felt(&worker_log),
        t0.elapsed()
    );
    // The restart was felt by both (otherwise this proves nothing)…
    assert!(
        felt(&run_log) > 0 && felt(&worker_log) > 0,
        "a process did not notice the restart:\n{run_log}\n{worker_log}"
    );
    // … and nothing was lost or sent more than in flight allows: each of
    // the two processes claims at most a second's worth of its share.
    assert_eq!(r.status(Status::Delivered), enqueued, "{r:?}");
    assert!(
        stats.duplicates <= u64::from(PG_RESTART_RATE),
        "{} duplicates: {stats:?}",
        stats.duplicates
    );
    assert_eq!(
        stats.submits_total - stats.duplicates,
        enqueued as u64,
        "{stats:?}"
    );
    assert_eq!(store.leased_count().await.unwrap_or(-1), 0);
    drop(children);
    store.close().await;
}

// ---------------------------------------------------------------------------
// (b) SQLite: database is locked
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_locked_database_waits_and_completes() {
    let _serial = SERIAL.lock().await;
    let log = captured_log();
    let db = TestDb::new("sqlite").await;
    let mut s = test_settings(&db);
    s.simulator.mix = all_delivered();
    s.gateways[0].rate_per_sec = 200;
    let app = start(s, Parts::ALL).await;
    let sim = app.simulator.clone().expect("in-process simulator");
    let imported = import_text(&app.store, &workers_csv(0, 600, 91_000_000)).await;
    assert_eq!(imported.accepted, 600);
    let (id, enqueued) = {
        let (c, n) = create_campaign(&app, campaign_request("locked")).await;
        (c.id, n as i64)
    };
    let from = Instant::now();
    while sim.stats().submits_total < 100 {
        assert!(from.elapsed() < Duration::from_secs(10), "nothing sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Nothing logged so far counts (start-up).
    let _ = log.take();

    // Another process's connection takes the write lock for 2 s.
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(&db.url).expect("sqlite url");
    let mut locker = sqlx::SqliteConnection::connect_with(&opts)
        .await
        .expect("second connection");
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut locker)
        .await
        .expect("exclusive lock");
    sqlx::query("UPDATE campaigns SET name = name WHERE id = $1")
        .bind(id)
        .execute(&mut locker)
        .await
        .expect("write under the lock");
    let locked_at = Instant::now();
    let at_lock = sim.stats().submits_total;

    // While it is held: an import (of 200 more workers) and the campaign.
    let store = app.store.clone();
    let import = tokio::spawn(async move {
        let t = Instant::now();
        let r = pedulicovid::registry::import_csv(
            &store,
            workers_csv(600, 200, 91_000_000).as_bytes(),
            |_| {},
        )
        .await;
        (r, t.elapsed())
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = sim.stats().submits_total;
    sqlx::query("COMMIT")
        .execute(&mut locker)
        .await
        .expect("release");
    let held = locked_at.elapsed();
    locker.close().await.expect("close");

    let (imported, waited) = import.await.expect("import task");
    let imported = imported.expect("the import waited for the lock instead of failing");
    assert_eq!(imported.accepted, 200);
    assert!(
        waited >= Duration::from_millis(1500),
        "the import did not wait for the lock ({waited:?}): was it held?"
    );
    let r = wait_done(&app.store, id, Duration::from_secs(30)).await;
    let stats = sim.stats();
    assert_eq!(r.status(Status::Delivered), enqueued, "{r:?}");
    assert_eq!(stats.duplicates, 0, "{stats:?}");
    assert_eq!(stats.submits_total as i64, enqueued, "{stats:?}");
    let logged = log.take();
    eprintln!(
        "sqlite locked: lock held {held:?}; import of 200 waited {waited:?}; submits {at_lock} at the lock, \
         {during} at its release (in flight finished, claims waited); campaign of {enqueued} all delivered; \
         {} warning lines",
        logged.lines().count()
    );
    assert!(
        logged.trim().is_empty(),
        "warnings or errors while the database was locked:\n{logged}"
    );
    app.stop(Duration::from_secs(5)).await;
}
