//! `pedulicovid-bench --gateway kannel`: the unlimited run through a REAL
//! Kannel (the carrier harness in `shared/carrier`: bearerbox + smsbox on
//! loopback and an SMPP SMSC simulator sending real receipts) instead of the
//! in-process simulator.
//!
//! * Kannel's sendsms URL, user and password come from `--kannel-url`,
//!   `--kannel-user`, `--kannel-password`, else from `carrier.env` in
//!   `--carrier-run-dir` (`$CARRIER_RUN_DIR`, default
//!   `/tmp/pedulicovid-carrier`), which `start.sh` writes.
//! * The synthetic registry's numbers all end in 1-6, which the harness's
//!   SMSC simulator delivers (`stat:DELIVRD`, Kannel `%d` = 1).
//! * Our HTTP server listens on `127.0.0.1:<free port>`; every message's
//!   `dlr-url` points there (`/callbacks/kannel/<token>?id=…&status=%d…`).
//! * Measured as in the simulator run (from the messages' `sent_at` and
//!   `final_at`), plus the Kannel side: `submit_sm` and receipts counted by
//!   the SMSC simulator (`smsc_stats.json`) and the CPU time of bearerbox,
//!   smsbox, the simulator, this process and PostgreSQL during the run,
//!   read from `/proc/<pid>/stat` (pids from the harness's pid files).
//!
//! `scripts/bench-kannel.sh` starts the harness, measures Kannel's own intake
//! with wrk, runs this on SQLite and PostgreSQL and prints the ratio.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use crate::engine::{
    create_campaign, load_avg, postgres_cpu_s, proc_cpu_s, process_cpu_s, round2, round3,
    wait_campaign, BenchArgs, RunFigures, UnlimitedReport, Wait, TICKS_PER_S,
};
use pedulicovid::app::{App, Parts};
use pedulicovid::config::{GatewaySettings, Settings};
use pedulicovid::gateway::kannel::KannelConfig;
use pedulicovid::metrics::METRICS;
use pedulicovid::secret::Secret;
use pedulicovid::store::now_ms;

/// Name of the one gateway in the Kannel run (`messages.gateway`, callback
/// path).
const GATEWAY: &str = "kannel";

/// `--kannel-*` options of `pedulicovid-bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct KannelArgs {
    /// Kannel's sendsms URL (default: `KANNEL_SENDSMS_URL` in carrier.env).
    #[arg(long)]
    pub kannel_url: Option<String>,
    /// sendsms-user username (default: `KANNEL_SENDSMS_USER` in carrier.env).
    #[arg(long)]
    pub kannel_user: Option<String>,
    /// sendsms-user password (default: `KANNEL_SENDSMS_PASS` in carrier.env).
    #[arg(
        long,
        env = "PEDULICOVID_BENCH_KANNEL_PASSWORD",
        hide_env_values = true
    )]
    pub kannel_password: Option<String>,
    /// The harness's run directory: carrier.env, pid files, smsc_stats.json.
    #[arg(
        long,
        env = "CARRIER_RUN_DIR",
        default_value = "/tmp/pedulicovid-carrier"
    )]
    pub carrier_run_dir: PathBuf,
}

/// The Kannel to send through.
#[derive(Debug, Clone)]
struct Carrier {
    sendsms_url: String,
    username: String,
    password: String,
    run_dir: PathBuf,
}

impl Carrier {
    /// Flags first, then `carrier.env` in the run directory.
    fn resolve(a: &KannelArgs) -> anyhow::Result<Carrier> {
        let env_file = a.carrier_run_dir.join("carrier.env");
        let vars: HashMap<String, String> = match std::fs::read_to_string(&env_file) {
            Ok(text) => parse_env(&text),
            Err(_) => HashMap::new(),
        };
        let pick = |flag: &Option<String>, key: &str| -> anyhow::Result<String> {
            flag.clone()
                .or_else(|| vars.get(key).cloned())
                .with_context(|| {
                    format!(
                    "no --{} and no {key} in {} (start the harness: bash shared/carrier/start.sh)",
                    key.to_lowercase().replace('_', "-"),
                    env_file.display()
                )
                })
        };
        Ok(Carrier {
            sendsms_url: pick(&a.kannel_url, "KANNEL_SENDSMS_URL")?,
            username: pick(&a.kannel_user, "KANNEL_SENDSMS_USER")?,
            password: pick(&a.kannel_password, "KANNEL_SENDSMS_PASS")?,
            run_dir: a.carrier_run_dir.clone(),
        })
    }
}

/// `KEY=value` lines.
fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Settings of the Kannel run: loopback HTTP server on a free port, no
/// simulator, one Kannel gateway with no rate limit.
pub(crate) fn settings(mut s: Settings, args: &BenchArgs) -> anyhow::Result<Settings> {
    let c = Carrier::resolve(&args.kannel)?;
    let url = url::Url::parse(&c.sendsms_url).context("parsing the Kannel sendsms URL")?;
    match url.host() {
        Some(url::Host::Ipv4(ip)) if ip.is_loopback() => {}
        Some(url::Host::Ipv6(ip)) if ip.is_loopback() => {}
        Some(url::Host::Domain("localhost")) => {}
        _ => bail!("the benchmark sends only to a Kannel on loopback, not {url}"),
    }
    s.http.listen = "127.0.0.1:0".into();
    s.http.public_url = None;
    s.gateways = vec![GatewaySettings {
        name: GATEWAY.into(),
        dialect: KannelConfig {
            sendsms_url: c.sendsms_url,
            username: c.username,
            password: Secret::new(c.password),
            method: args.kannel_method,
            ..KannelConfig::default()
        }
        .into(),
        rate_per_sec: 0,
        segments_per_sec: 0,
        ..GatewaySettings::default()
    }];
    s.worker.global_rate_per_sec = 0;
    s.worker.batch_size = args.batch_size;
    s.worker.concurrency = args.concurrency;
    s.worker.poll_ms = 50;
    s.worker.backoff_initial_ms = 200;
    Ok(s)
}

/// The Kannel side of the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KannelReport {
    /// sendsms URL (no credentials: they travel as query parameters).
    pub sendsms_url: String,
    pub run_dir: String,
    /// `submit_sm` the SMSC simulator received during the run (everything
    /// else sending through the same harness included).
    pub smsc_submit_sm: Option<u64>,
    /// Receipts (`deliver_sm`) the SMSC simulator sent during the run.
    pub smsc_dlr_sent: Option<u64>,
    /// Wall time the CPU figures cover: campaign created → all final, s.
    pub wall_s: f64,
    /// CPU seconds (utime + stime) during the run: `bearerbox`, `smsbox`,
    /// `smsc_sim`, `dlr_listener` (when running), `pedulicovid` (this
    /// process), `postgres` (every postgres process on the machine).
    pub cpu_s: BTreeMap<String, f64>,
    /// All CPUs' non-idle time / wall time (other sessions included).
    pub machine_busy_cores: Option<f64>,
    pub cores: usize,
}

/// utime + stime of the harness's processes, by pid file.
fn harness_cpu(run_dir: &Path) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for name in ["bearerbox", "smsbox", "smsc_sim", "dlr_listener"] {
        let Ok(pid) = std::fs::read_to_string(run_dir.join(format!("{name}.pid"))) else {
            continue;
        };
        if let Some(c) = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
            .ok()
            .and_then(|s| proc_cpu_s(&s))
        {
            out.insert(name.to_string(), c);
        }
    }
    out
}

/// (busy, total) CPU seconds of the machine since boot (`/proc/stat`).
fn machine_cpu() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: f64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?; // idle + iowait
    Some(((total - idle) / TICKS_PER_S, total / TICKS_PER_S))
}

/// The SMSC simulator's counters (`smsc_stats.json`, rewritten every second).
fn smsc_counts(run_dir: &Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(run_dir.join("smsc_stats.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some((v.get("submit_sm")?.as_u64()?, v.get("dlr_sent")?.as_u64()?))
}

/// The unlimited run through Kannel. Returns the report, the Kannel side,
/// the enqueue time and the messages enqueued.
pub(crate) async fn unlimited_run(
    s: &Settings,
    args: &BenchArgs,
) -> anyhow::Result<(UnlimitedReport, KannelReport, f64, u64)> {
    let say = |m: &str| {
        if !args.json {
            eprintln!("{m}");
        }
    };
    let carrier = Carrier::resolve(&args.kannel)?;
    let run_dir = carrier.run_dir.clone();
    let parts = Parts {
        workers: args.workers,
        simulator: false,
        ..Parts::ALL
    };
    let app = App::start(s.clone(), parts).await?;
    say(&format!(
        "kannel: sending through {} (callbacks to {})",
        redact_query(&carrier.sendsms_url),
        app.http_addr
            .map(|a| format!("http://{a}/callbacks/{GATEWAY}/…"))
            .unwrap_or_default()
    ));
    let (c, enqueued, enqueue_s) = create_campaign(
        &app.store,
        &app.renderer,
        s,
        "Bench: through Kannel",
        vec![],
    )
    .await?;
    let t0 = Instant::now();
    let t0_ms = now_ms();
    let cpu0 = process_cpu_s();
    let db_cpu0 = postgres_cpu_s(app.store.backend());
    let harness0 = harness_cpu(&run_dir);
    let machine0 = machine_cpu();
    let smsc0 = smsc_counts(&run_dir);
    METRICS.send_latency.reset();
    say(&format!(
        "enqueue: {enqueued} messages in {enqueue_s:.2} s; sending through Kannel…"
    ));
    let n = enqueued;
    let sent0 = METRICS.sent.load(Ordering::Relaxed);
    // Receipts taken by our callback server, counted live: with dlr-mask 19
    // every one Kannel sends is final (a duplicate only makes the database
    // check below come sooner).
    let receipts0 = METRICS.receipts.load(Ordering::Relaxed);
    let waited = wait_campaign(
        &app.store,
        c.id,
        n,
        t0,
        args.timeout_secs,
        || {
            (
                METRICS.sent.load(Ordering::Relaxed) - sent0,
                METRICS.receipts.load(Ordering::Relaxed) - receipts0,
            )
        },
        |elapsed, (sent, receipts), (sent_1s, receipts_1s)| {
            let smsc = smsc_counts(&run_dir)
                .zip(smsc0)
                .map(|(a, b)| format!("  smsc submit_sm {} dlr {}", a.0 - b.0, a.1 - b.1))
                .unwrap_or_default();
            say(&format!(
                "  [{:>5.1}s] sent {sent:>8}/{n} ({sent_1s:>5}/s)  receipts {receipts:>8} ({receipts_1s:>5}/s){smsc}",
                elapsed.as_secs_f64(),
            ));
        },
    )
    .await;
    let completed = match waited {
        Ok(Wait::Done) => true,
        Ok(Wait::TimedOut { sent, receipts }) => {
            say(&format!(
                "run stopped after {} s (--timeout-secs): sent {sent}, receipts {receipts} of {n}",
                args.timeout_secs
            ));
            false
        }
        Err(e) => {
            app.stop(Duration::from_secs(10)).await;
            return Err(e);
        }
    };
    let wall = t0.elapsed().as_secs_f64();
    let cpu = process_cpu_s().zip(cpu0).map(|(a, b)| a - b);
    let db_cpu = postgres_cpu_s(app.store.backend())
        .zip(db_cpu0)
        .map(|(a, b)| round2(a - b));
    let harness1 = harness_cpu(&run_dir);
    let machine = machine_cpu()
        .zip(machine0)
        .map(|(a, b)| round2((a.0 - b.0) / wall));
    let smsc = smsc_counts(&run_dir).zip(smsc0);
    let snap = METRICS.snapshot();
    let times = app.store.campaign_times(c.id).await?;
    let cr = app.store.campaign_report(c.id).await?;
    let per_second = app.store.campaign_per_second(c.id, t0_ms).await?;
    let (sends_by_second, receipts_by_second) = (per_second.sent, per_second.finals);
    app.stop(Duration::from_secs(10)).await;

    let u = UnlimitedReport::from_run(RunFigures {
        t0_ms,
        times,
        completed,
        by_status: cr.by_status,
        p50_send_ms: snap.p50_send_ms,
        p99_send_ms: snap.p99_send_ms,
        cpu,
        wall,
        db_cpu,
        sends_by_second,
        receipts_by_second,
        duplicates: 0,
        wake: None,
    });
    let mut cpu_s: BTreeMap<String, f64> = harness1
        .iter()
        .filter_map(|(k, v)| harness0.get(k).map(|b| (k.clone(), round2(v - b))))
        .collect();
    if let Some(c) = cpu {
        cpu_s.insert("pedulicovid".into(), round2(c));
    }
    if let Some(d) = db_cpu {
        cpu_s.insert("postgres".into(), d);
    }
    let k = KannelReport {
        sendsms_url: redact_query(&carrier.sendsms_url),
        run_dir: run_dir.display().to_string(),
        smsc_submit_sm: smsc.map(|(a, b)| a.0 - b.0),
        smsc_dlr_sent: smsc.map(|(a, b)| a.1 - b.1),
        wall_s: round3(wall),
        cpu_s,
        machine_busy_cores: machine,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
    };
    say(&format!(
        "kannel run: all sent after {:.2} s, all final after {:.2} s (load average now {})",
        u.sends_s,
        u.end_to_end_s,
        load_avg().map_or("-".into(), |l| l.to_string())
    ));
    Ok((u, k, enqueue_s, enqueued))
}

/// A URL without its query (credentials travel there).
fn redact_query(u: &str) -> String {
    u.split('?').next().unwrap_or(u).to_string()
}

/// The Kannel part of the human-readable report.
pub(crate) fn print_report(k: &KannelReport) {
    println!("  through Kannel      {}", k.sendsms_url);
    println!(
        "    SMSC simulator    {:>10} submit_sm, {} receipts sent during the run",
        k.smsc_submit_sm.map_or("-".into(), |v| v.to_string()),
        k.smsc_dlr_sent.map_or("-".into(), |v| v.to_string())
    );
    let split: Vec<String> = k
        .cpu_s
        .iter()
        .map(|(name, s)| format!("{name} {s:.1}"))
        .collect();
    println!(
        "    CPU s over {:.1} s  {}; machine busy {} of {} cores",
        k.wall_s,
        split.join(", "),
        k.machine_busy_cores
            .map_or("-".into(), |c| format!("{c:.2}")),
        k.cores
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carrier_env_parses_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("carrier.env"),
            "CARRIER_RUN_DIR=/x\nKANNEL_SENDSMS_URL=http://127.0.0.1:13913/cgi-bin/sendsms\n\
             KANNEL_SENDSMS_USER=pedulicovid\nKANNEL_SENDSMS_PASS=secret\n",
        )
        .unwrap();
        let mut a = KannelArgs {
            kannel_url: None,
            kannel_user: Some("other".into()),
            kannel_password: None,
            carrier_run_dir: dir.path().to_path_buf(),
        };
        let c = Carrier::resolve(&a).unwrap();
        assert_eq!(c.sendsms_url, "http://127.0.0.1:13913/cgi-bin/sendsms");
        assert_eq!(c.username, "other");
        assert_eq!(c.password, "secret");
        a.carrier_run_dir = dir.path().join("missing");
        let e = Carrier::resolve(&a).unwrap_err().to_string();
        assert!(e.contains("KANNEL_SENDSMS_URL"), "{e}");
    }

    #[test]
    fn query_is_redacted() {
        assert_eq!(
            redact_query("http://127.0.0.1:1/cgi-bin/sendsms?password=x"),
            "http://127.0.0.1:1/cgi-bin/sendsms"
        );
    }
}
