//! A gateway configured through the environment alone is the carrier the
//! messages go to, and the built-in simulator never stands in for it.
//!
//! * On both databases: `PEDULICOVID__GATEWAYS__0__…` (loaded with
//!   `Settings::load_from`, as `pedulicovid run` does) sends through the REAL
//!   Kannel harness (`shared/carrier`), counted at its SMPP SMSC simulator
//!   (`smsc_events.jsonl`, one line per `submit_sm`) — even when the gateway
//!   is named `sim`, the name the simulator used to take over.
//! * A gateway with `dialect = "simulator"` beside it starts the simulator
//!   and leaves the Kannel gateway alone.
//! * `run` and `worker` refuse to start without a gateway (the error names
//!   what to add and points to `demo`); `serve` starts.
//! * At start a process logs each gateway's name, dialect and host, never
//!   its credentials, path or query, and warns of plain http to a public
//!   host.
//!
//! The harness is started if it is not up and left running (see
//! `tests/it/kannel_harness.rs`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::common::carrier::{carrier, Carrier};
use crate::common::*;
use pedulicovid::app::{App, Parts};
use pedulicovid::config::{Dialect, DialectSettings, GatewayDialect, Settings};
use pedulicovid::status::Status;

/// A numeric sender id, with the look of a short code: it must reach the
/// SMSC as text (the old loader read it as an integer and refused it).
const SENDER: &str = "1500567";

/// Settings from nothing but `PEDULICOVID__*` variables (and an empty
/// settings file, so a `pedulicovid.toml` in the working directory cannot
/// interfere).
fn from_env(vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("empty.toml");
    std::fs::write(&file, "").unwrap();
    Settings::load_from(
        Some(&file),
        vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

/// The environment of a test app whose gateway 0 is the harness's Kannel.
fn kannel_env(db: &TestDb, carrier: &Carrier, name: &str) -> Vec<(String, String)> {
    [
        ("PEDULICOVID__DATABASE_URL", db.url.as_str()),
        ("PEDULICOVID__HTTP__LISTEN", "127.0.0.1:0"),
        ("PEDULICOVID__WORKER__POLL_MS", "50"),
        ("PEDULICOVID__GATEWAYS__0__NAME", name),
        (
            "PEDULICOVID__GATEWAYS__0__KANNEL__SENDSMS_URL",
            carrier.sendsms_url.as_str(),
        ),
        (
            "PEDULICOVID__GATEWAYS__0__KANNEL__USERNAME",
            carrier.username.as_str(),
        ),
        (
            "PEDULICOVID__GATEWAYS__0__KANNEL__PASSWORD",
            carrier.password.as_str(),
        ),
        ("PEDULICOVID__GATEWAYS__0__KANNEL__SENDER", SENDER),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// `(sender, count)` of the `submit_sm` the SMSC simulator received for
/// each destination containing `needle`.
fn smsc_submits(carrier: &Carrier, needle: &str) -> HashMap<String, (String, usize)> {
    let text =
        std::fs::read_to_string(carrier.run_dir.join("smsc_events.jsonl")).unwrap_or_default();
    let mut out: HashMap<String, (String, usize)> = HashMap::new();
    for line in text.lines() {
        let Ok(ev) = serde_json::from_str::<serde_json::Value>(line) else {
            continue; // a line being written
        };
        if ev["ev"] != "submit" {
            continue;
        }
        let to = ev["to"].as_str().unwrap_or_default().to_string();
        if to.contains(needle) {
            let from = ev["frm"].as_str().unwrap_or_default().to_string();
            let e = out.entry(to).or_insert((from, 0));
            e.1 += 1;
        }
    }
    out
}

/// Imports `n` workers with numbers unique to this run (every one ending in
/// 1..=6: the SMSC delivers them), runs a campaign, and checks that every
/// message went through `gateway` to the SMSC, once, from [`SENDER`].
async fn campaign_reaches_the_smsc(app: &App, carrier: &Carrier, backend: &str, gateway: &str) {
    let b = if backend == "sqlite" { 1 } else { 2 };
    // The last digit stays for the outcome; the 5 digits before it are this
    // run's, and the SMSC's events are matched on them.
    let run = format!("{b}{:04}", uuid::Uuid::new_v4().as_u128() % 10_000);
    let n = 6u32;
    let mut csv = String::from(HEADER);
    for i in 0..n {
        csv.push_str(&row(i, "31", &format!("00{run}{}", i + 1)));
    }
    let imported = import_text(&app.store, &csv).await;
    assert_eq!(imported.accepted, u64::from(n), "{:?}", imported.rejections);
    let (c, enqueued) = create_campaign(app, campaign_request("env gateway")).await;
    assert_eq!(enqueued, u64::from(n));
    let r = wait_done(&app.store, c.id, Duration::from_secs(60)).await;
    assert_eq!(r.status(Status::Delivered), i64::from(n), "{r:?}");

    let gateways: Vec<(Option<String>,)> = sql_rows(
        &app.settings.database_url,
        "SELECT gateway FROM messages WHERE campaign_id = $1",
        &[c.id],
    )
    .await;
    assert!(
        gateways.iter().all(|g| g.0.as_deref() == Some(gateway)),
        "{gateways:?}"
    );

    // Counted at the SMSC: the simulator writes its events file at least
    // once a second, so wait for it to catch up.
    let limit = Instant::now() + Duration::from_secs(15);
    let submits = loop {
        // 0812 + 00 + run + digit, as E.164 digits.
        let s = smsc_submits(carrier, &format!("81200{run}"));
        if s.len() >= n as usize || Instant::now() > limit {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        submits.len(),
        n as usize,
        "every worker's number reached the SMSC: {submits:?}"
    );
    for (to, (from, count)) in &submits {
        assert_eq!(*count, 1, "{to}: one submit_sm each");
        assert_eq!(from, SENDER, "{to}: the sender id arrived as written");
    }
}

async fn env_only_gateway_sends_through_the_real_kannel(backend: &str) {
    let carrier = carrier().await;
    let db = TestDb::new(backend).await;
    // Named "sim" on purpose: the name the simulator used to take over.
    let env = kannel_env(&db, &carrier, "sim");
    let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let s = from_env(&vars).expect("settings load");
    assert_eq!(s.gateways.len(), 1);
    assert_eq!(s.gateways[0].dialect, Dialect::Kannel);
    let GatewayDialect::Carrier(DialectSettings::Kannel(kannel)) = &s.gateways[0].dialect else {
        panic!("a kannel gateway: {:?}", s.gateways[0].dialect);
    };
    assert_eq!(kannel.sender, SENDER);
    let app = start(s, Parts::ALL).await;
    assert!(app.simulator.is_none(), "no simulator unless asked for");
    campaign_reaches_the_smsc(&app, &carrier, backend, "sim").await;
    app.stop(Duration::from_secs(5)).await;
}
both_backends!(env_only_gateway_sends_through_the_real_kannel);

/// A second gateway asking for the simulator starts it, and changes
/// nothing about the Kannel gateway: Telkomsel numbers still go to Kannel.
async fn a_simulator_gateway_leaves_the_real_one_alone(backend: &str) {
    let carrier = carrier().await;
    let db = TestDb::new(backend).await;
    let mut env = kannel_env(&db, &carrier, "kannel");
    for (k, v) in [
        ("PEDULICOVID__GATEWAYS__0__OPERATORS", r#"["telkomsel"]"#),
        ("PEDULICOVID__GATEWAYS__1__NAME", "trial"),
        ("PEDULICOVID__GATEWAYS__1__DIALECT", "simulator"),
        ("PEDULICOVID__SIMULATOR__LISTEN", "127.0.0.1:0"),
    ] {
        env.push((k.into(), v.into()));
    }
    let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let s = from_env(&vars).expect("settings load");
    let app = start(s, Parts::ALL).await;
    let sim = app.simulator.clone().expect("asked for by name: it runs");
    assert_ne!(
        sim.sendsms_url(),
        carrier.sendsms_url,
        "the simulator has an address of its own"
    );
    campaign_reaches_the_smsc(&app, &carrier, backend, "kannel").await;
    assert_eq!(
        sim.stats().submits_total,
        0,
        "nothing went to the simulator"
    );
    app.stop(Duration::from_secs(5)).await;
}
both_backends!(a_simulator_gateway_leaves_the_real_one_alone);

/// Settings files and the environment never yield the simulator, whatever
/// the gateway is called and whatever `[simulator]` holds, unless a gateway
/// says `dialect = "simulator"`.
#[test]
fn only_a_gateway_naming_it_asks_for_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(
        &file,
        r#"
[simulator]
listen = "127.0.0.1:0"
mix = { delivered = 1.0 }

[[gateways]]
name = "sim"
[gateways.kannel]
sendsms_url = "http://10.9.8.7:13013/cgi-bin/sendsms"
"#,
    )
    .unwrap();
    let s = Settings::load_from(Some(&file), vec![]).unwrap();
    assert_eq!(s.gateways[0].dialect, Dialect::Kannel);
    assert_eq!(
        s.gateways[0].dialect.send_url(),
        "http://10.9.8.7:13013/cgi-bin/sendsms"
    );
    assert!(from_env(&[]).unwrap().gateways.is_empty());
    // Each with its own dialect's URL only: another dialect's table is
    // refused (config: `GatewayDialect::from_tables`).
    for (name, dialect, url) in [
        (
            "sim",
            "kannel",
            "PEDULICOVID__GATEWAYS__0__KANNEL__SENDSMS_URL",
        ),
        ("simulator", "json", "PEDULICOVID__GATEWAYS__0__JSON__URL"),
    ] {
        let s = from_env(&[
            ("PEDULICOVID__GATEWAYS__0__NAME", name),
            ("PEDULICOVID__GATEWAYS__0__DIALECT", dialect),
            (url, "http://127.0.0.1:1/x"),
        ])
        .unwrap();
        assert_ne!(s.gateways[0].dialect, Dialect::Simulator, "{name}");
    }
}

async fn run_and_worker_refuse_without_a_gateway(backend: &str) {
    let db = TestDb::new(backend).await;
    let mut s = test_settings(&db);
    s.gateways.clear();
    for parts in [Parts::ALL, Parts::WORKER] {
        let e = match App::start(s.clone(), parts).await {
            Ok(app) => {
                app.stop(Duration::from_secs(5)).await;
                panic!("{parts:?} started without a gateway");
            }
            Err(e) => format!("{e:#}"),
        };
        for says in [
            "no gateway configured",
            "[[gateways]]",
            "sendsms_url",
            "PEDULICOVID__GATEWAYS__0__KANNEL__SENDSMS_URL",
            "pedulicovid demo",
        ] {
            assert!(e.contains(says), "{parts:?}: {says:?} missing from: {e}");
        }
    }
    // `serve` starts: the API and the UI are useful without a carrier.
    let app = start(s, Parts::SERVE).await;
    assert!(app.simulator.is_none());
    let health = reqwest::get(format!("{}/healthz", base_url(&app)))
        .await
        .unwrap();
    assert!(health.status().is_success());
    app.stop(Duration::from_secs(5)).await;
}
both_backends!(run_and_worker_refuse_without_a_gateway);

/// The binary itself: `run` with nothing configured exits with the error,
/// before it sends anything or opens a database.
#[test]
fn the_run_command_refuses_without_a_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pedulicovid"))
        .arg("run")
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env(
            "PEDULICOVID__DATABASE_URL",
            format!("sqlite://{}", dir.path().join("x.db").display()),
        )
        .env("PEDULICOVID__HTTP__LISTEN", "127.0.0.1:0")
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("no gateway configured") && stderr.contains("pedulicovid demo"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("x.db").exists(),
        "refused before opening the database"
    );
}

/// `serve` logs each gateway: name, dialect, host; never the password, the
/// path or the query; and warns once of plain http to a public host.
#[test]
fn start_up_logs_name_dialect_and_host_only() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pedulicovid"))
        .arg("serve")
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
        .env(
            "PEDULICOVID__DATABASE_URL",
            format!("sqlite://{}", dir.path().join("x.db").display()),
        )
        .env("PEDULICOVID__HTTP__LISTEN", "127.0.0.1:0")
        .env("PEDULICOVID__GATEWAYS__0__NAME", "tsel")
        .env(
            "PEDULICOVID__GATEWAYS__0__KANNEL__SENDSMS_URL",
            "http://kuser:urlpass42@127.0.0.1:13913/cgi-bin/sendsms?password=qpass42",
        )
        .env("PEDULICOVID__GATEWAYS__0__KANNEL__PASSWORD", "55501234567")
        .env("PEDULICOVID__GATEWAYS__1__NAME", "far")
        .env("PEDULICOVID__GATEWAYS__1__DIALECT", "json")
        // A documentation address (RFC 5737): serve sends nothing to it.
        .env(
            "PEDULICOVID__GATEWAYS__1__JSON__URL",
            "http://203.0.113.7:8080/v1/messages",
        )
        .env("PEDULICOVID__GATEWAYS__1__JSON__AUTH__TYPE", "bearer")
        .env("PEDULICOVID__GATEWAYS__1__JSON__AUTH__TOKEN", "tok987654")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the binary runs");
    let stderr = child.stderr.take().unwrap();
    let mut log = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap_or_default();
        log.push_str(&line);
        log.push('\n');
        if line.contains("listening") || Instant::now() > deadline {
            break;
        }
    }
    // Our own child, by its handle.
    let _ = child.kill();
    let _ = child.wait();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("gateway configured"))
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(
        lines[0].contains("tsel")
            && lines[0].contains("kannel")
            && lines[0].contains("127.0.0.1:13913"),
        "{log}"
    );
    assert!(
        lines[1].contains("far") && lines[1].contains("json") && lines[1].contains("203.0.113.7"),
        "{log}"
    );
    for secret in [
        "urlpass42",
        "qpass42",
        "kuser",
        "55501234567",
        "tok987654",
        "cgi-bin",
        "/v1/messages",
    ] {
        assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
    }
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("plain http")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("far"), "{log}");
}

/// `serve` with no gateway starts (the API and the UI work) and warns that
/// no receipt can be taken.
#[test]
fn serve_without_a_gateway_starts_and_warns() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pedulicovid"))
        .arg("serve")
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
        .env(
            "PEDULICOVID__DATABASE_URL",
            format!("sqlite://{}", dir.path().join("x.db").display()),
        )
        .env("PEDULICOVID__HTTP__LISTEN", "127.0.0.1:0")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the binary runs");
    let stderr = child.stderr.take().unwrap();
    let mut log = String::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap_or_default();
        log.push_str(&line);
        log.push('\n');
        if line.contains("listening on http://") {
            break;
        }
    }
    // Still running: it did not refuse.
    let running = child.try_wait().unwrap().is_none();
    // Our own child, by its handle.
    let _ = child.kill();
    let _ = child.wait();
    assert!(running, "{log}");
    assert!(log.contains("listening on http://"), "{log}");
    let warning = log
        .lines()
        .find(|l| l.contains("no gateway configured"))
        .unwrap_or_else(|| panic!("no warning:\n{log}"));
    assert!(
        warning.contains("WARN") && warning.contains("no receipt"),
        "{log}"
    );
}
