//! `pedulicovid worker` serves its own `/metrics` (`[metrics] listen`): the
//! sends, failures and latencies of a process without the HTTP server reach
//! Prometheus too, and only its own counters (the database gauges are the
//! `serve` process's, so a sum over processes counts each message once).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::{row, Served, HEADER};

#[tokio::test]
async fn a_worker_serves_its_own_counters() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = format!("sqlite://{}", d.join("db.sqlite").display());
    let cli = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_pedulicovid"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("RUST_LOG")
            .env("PEDULICOVID__DATABASE_URL", &db)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {o:?}");
    };
    let csv = d.join("r.csv");
    let rows: String = (1..=3)
        .map(|i| row(i, "31", &format!("0000{i:04}")))
        .collect();
    std::fs::write(&csv, format!("{HEADER}{rows}")).unwrap();
    cli(&["import", csv.to_str().unwrap()]);
    cli(&[
        "campaign",
        "create",
        "--name",
        "Uji metrik",
        "--template",
        "undangan_registrasi",
        "--window",
        "00:00-24:00",
    ]);

    let mut child = Command::new(env!("CARGO_BIN_EXE_pedulicovid"))
        .arg("worker")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "info")
        .env("PEDULICOVID__DATABASE_URL", &db)
        .env("PEDULICOVID__METRICS__LISTEN", "127.0.0.1:0")
        .env("PEDULICOVID__GATEWAYS__0__NAME", "sim")
        .env("PEDULICOVID__GATEWAYS__0__DIALECT", "simulator")
        .env("PEDULICOVID__SIMULATOR__LISTEN", "127.0.0.1:0")
        // Receipts have nowhere to go: this process serves no callbacks.
        .env("PEDULICOVID__HTTP__PUBLIC_URL", "http://127.0.0.1:9")
        .env("PEDULICOVID__WORKER__POLL_MS", "50")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = String::new();
    let url = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("no metrics listener ({e}):\n{log}"));
        log.push_str(&line);
        log.push('\n');
        if let Some(at) = line.find("worker metrics on http://") {
            break line[at + "worker metrics on ".len()..]
                .split_whitespace()
                .next()
                .unwrap()
                .to_string();
        }
    };

    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let r = client.get(&url).send().await.expect("worker /metrics");
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4"),
            "{r:?}"
        );
        let body = r.text().await.unwrap();
        if body.contains("pedulicovid_sends_total{gateway=\"sim\"} 3") {
            break body;
        }
        assert!(Instant::now() < deadline, "3 sends never counted:\n{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        body.contains("pedulicovid_send_latency_seconds_count{gateway=\"sim\"} 3"),
        "{body}"
    );
    // A worker's tasks run on one thread unless `[runtime] threads` says more.
    assert!(
        body.lines().any(|l| l == "pedulicovid_runtime_threads 1"),
        "{body}"
    );
    for gauge in [
        "pedulicovid_database_up",
        "pedulicovid_queue_depth",
        "pedulicovid_messages{",
    ] {
        assert!(!body.contains(gauge), "{gauge} is serve's: {body}");
    }
    let health = client
        .get(url.replace("/metrics", "/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// `[runtime] threads`: `serve` runs its tasks on one thread unless told
/// otherwise, and `/metrics` says how many it runs them on.
#[tokio::test]
async fn serve_runs_on_the_runtime_threads_it_is_given() {
    for (threads, want) in [(None, "1"), (Some("3"), "3")] {
        let dir = tempfile::tempdir().unwrap();
        let env: Vec<_> = threads
            .map(|t| ("PEDULICOVID__RUNTIME__THREADS", t))
            .into_iter()
            .collect();
        let served = Served::start(dir.path(), &[], &env);
        let body = served.metrics().await;
        served.stop();
        let line = body
            .lines()
            .find(|l| l.starts_with("pedulicovid_runtime_threads "))
            .unwrap_or_else(|| panic!("no runtime threads gauge:\n{body}"));
        assert_eq!(
            line,
            format!("pedulicovid_runtime_threads {want}"),
            "{threads:?}"
        );
    }
}

/// (soft, hard) limit on open files of process `pid`, from
/// `/proc/PID/limits`.
fn open_files_limits(pid: &str) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no open files line:\n{limits}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].parse().unwrap(), fields[4].parse().unwrap())
}

/// systemd starts a service with a soft limit of 1,024 open files (and a
/// far higher hard one): `serve` lifts its soft limit to the hard one, so
/// a carrier's 512 callbacks in flight do not wait for descriptors, and
/// `/metrics` shows the limit it runs with.
#[tokio::test]
async fn serve_lifts_its_open_files_limit_to_the_hard_one() {
    let (_, hard) = open_files_limits("self");
    assert!(
        hard > 256,
        "this test needs a hard limit above 256, not {hard}"
    );
    let dir = tempfile::tempdir().unwrap();
    let nofile = format!("--nofile=256:{hard}");
    let served = Served::start_under(&["prlimit", &nofile, "--"], dir.path(), &[], &[]);
    let running = open_files_limits(&served.child.id().to_string());
    let body = served.metrics().await;
    served.stop();
    assert_eq!(running, (hard, hard), "started with 256 of {hard}");
    assert!(
        body.lines().any(|l| l == format!("process_max_fds {hard}")),
        "process_max_fds is not {hard}:\n{body}"
    );
}
