//! `pedulicovid-bench chatbot`: what one `serve` process holds for the
//! chatbot's look-ups after a national blast: a registry of `--workers`
//! (default 1.5 M) on a fresh database, then `--connections` clients
//! asking `POST /api/v1/chatbot/lookup` for `--secs` seconds, half by a
//! worker's phone number, half by NIK with that worker's WhatsApp number,
//! every one naming a registered worker. Reports requests per second,
//! latency quantiles, answers by status and CPU (this process, PostgreSQL).
//! The per-token rate limit is lifted for the run (it is what is measured
//! against, `limits.chatbot_rate_per_sec`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use crate::engine::{
    insert_registry, load_avg, postgres_cpu_s, process_cpu_s, round1, round2, round3,
    sample_registry, BenchDatabase,
};
use pedulicovid::app::{App, Parts};
use pedulicovid::config::Settings;
use pedulicovid::metrics::Histogram;
use pedulicovid::store::{redact_url, NewToken, Role, Store};

#[derive(Debug, Clone, clap::Args)]
pub struct ChatbotBenchArgs {
    /// Health workers in the registry.
    #[arg(long, default_value_t = 1_500_000)]
    pub workers: usize,
    /// Concurrent clients (keep-alive connections).
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// How long the look-ups run, seconds.
    #[arg(long, default_value_t = 30)]
    pub secs: u64,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Keep the benchmark's database afterwards.
    #[arg(long)]
    pub keep_database: bool,
    /// Random seed for the registry.
    #[arg(long, default_value_t = 2021)]
    pub seed: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct ChatbotBenchReport {
    pub backend: &'static str,
    pub database: String,
    pub workers: u64,
    pub connections: usize,
    pub registry_s: f64,
    pub secs: f64,
    pub requests: u64,
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Answers by HTTP status (`0`: a transport error).
    pub by_status: BTreeMap<u16, u64>,
    /// Looked-up workers found (`found: true`), of the 200 answers.
    pub found: u64,
    /// CPU seconds of this process (server and clients) during the run.
    pub process_cpu_s: f64,
    /// Every `postgres` process on the machine (PostgreSQL only).
    pub db_cpu_s: Option<f64>,
    pub load_avg_at_start: Option<f64>,
}

pub async fn run(
    settings: Settings,
    args: ChatbotBenchArgs,
    database_url_given: bool,
) -> anyhow::Result<()> {
    if args.workers == 0 || args.connections == 0 || args.secs == 0 {
        bail!("--workers, --connections and --secs must be at least 1");
    }
    let mut s = settings;
    let db = BenchDatabase::prepare(&mut s, database_url_given).await?;
    let result = run_in(s, &args, db.description.clone()).await;
    db.finish(args.keep_database).await;
    let r = result?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "chatbot look-ups, {} backend, {} workers, {} connections, {:.0} s:\n  \
             {} requests, {:.0}/s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n  \
             by status {:?}, found {}\n  CPU: this process {:.1} s, PostgreSQL {}",
            r.backend,
            r.workers,
            r.connections,
            r.secs,
            r.requests,
            r.requests_per_s,
            r.p50_ms,
            r.p99_ms,
            r.max_ms,
            r.by_status,
            r.found,
            r.process_cpu_s,
            r.db_cpu_s
                .map_or_else(|| "-".to_string(), |c| format!("{c:.1} s"))
        );
    }
    if r.by_status.keys().any(|s| *s != 200) {
        bail!("answers other than 200: {:?}", r.by_status);
    }
    Ok(())
}

async fn run_in(
    mut s: Settings,
    args: &ChatbotBenchArgs,
    database: String,
) -> anyhow::Result<ChatbotBenchReport> {
    s.http.listen = "127.0.0.1:0".into();
    s.http.public_url = None;
    s.gateways = vec![];
    // The per-token limit is what this measures against: out of the way.
    s.limits.chatbot_rate_per_sec = 1_000_000;
    let say = |m: &str| {
        if !args.json {
            eprintln!("{m}");
        }
    };
    let mut report = ChatbotBenchReport {
        database,
        workers: args.workers as u64,
        connections: args.connections,
        load_avg_at_start: load_avg(),
        ..Default::default()
    };
    let store = Store::connect(&s.database_url)
        .await
        .with_context(|| format!("opening database {}", redact_url(&s.database_url)))?;
    store.migrate().await.context("applying migrations")?;
    report.backend = store.backend().as_str();
    say(&format!(
        "bench chatbot: {} backend, {} workers",
        report.backend, args.workers
    ));
    let t = Instant::now();
    insert_registry(&store, args.workers, args.seed, !args.json, false).await?;
    report.registry_s = round3(t.elapsed().as_secs_f64());
    crate::engine::analyze(&store).await;
    let NewToken { secret, .. } = store.create_token("bench-chatbot", Role::Chatbot).await?;
    store.close().await;
    // About 20,000 distinct workers spread over the whole registry.
    let sample = sample_registry(
        args.workers,
        args.seed,
        false,
        (args.workers / 20_000).max(1),
    )?;
    let bodies: Arc<Vec<String>> = Arc::new(
        sample
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let phone = w.phone.as_e164();
                if i % 2 == 0 {
                    serde_json::json!({ "phone": phone }).to_string()
                } else {
                    serde_json::json!({ "nik": w.nik.as_str(), "whatsapp_phone": phone })
                        .to_string()
                }
            })
            .collect(),
    );
    say(&format!(
        "registry {:.1} s; {} look-up bodies; {} connections for {} s",
        report.registry_s,
        bodies.len(),
        args.connections,
        args.secs
    ));

    let parts = Parts {
        http: true,
        workers: 0,
        housekeeping: false,
        simulator: false,
    };
    let app = App::start(s, parts).await?;
    let url = format!(
        "http://{}/api/v1/chatbot/lookup",
        app.http_addr.context("the HTTP server did not start")?
    );
    let latency = Arc::new(Histogram::default());
    let max_us = Arc::new(AtomicU64::new(0));
    let found = Arc::new(AtomicU64::new(0));
    let statuses = Arc::new(std::sync::Mutex::new(BTreeMap::<u16, u64>::new()));
    let cpu0 = process_cpu_s();
    let db0 = postgres_cpu_s(app.store.backend());
    let start = Instant::now();
    let until = start + Duration::from_secs(args.secs);
    let mut tasks = vec![];
    for c in 0..args.connections {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()?;
        let (url, secret, bodies) = (url.clone(), secret.clone(), bodies.clone());
        let (latency, max_us, found, statuses) = (
            latency.clone(),
            max_us.clone(),
            found.clone(),
            statuses.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = c;
            let mut mine = BTreeMap::<u16, u64>::new();
            while Instant::now() < until {
                let body = &bodies[i % bodies.len()];
                i += args_step(c);
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .bearer_auth(&secret)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                let status = match r {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let text = r.text().await.unwrap_or_default();
                        if status == 200 && text.contains("\"found\":true") {
                            found.fetch_add(1, Ordering::Relaxed);
                        }
                        status
                    }
                    Err(_) => 0,
                };
                let took = t.elapsed();
                latency.record(took);
                max_us.fetch_max(took.as_micros() as u64, Ordering::Relaxed);
                *mine.entry(status).or_default() += 1;
            }
            let mut all = statuses.lock().unwrap_or_else(|p| p.into_inner());
            for (k, v) in mine {
                *all.entry(k).or_default() += v;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let wall = start.elapsed().as_secs_f64();
    report.process_cpu_s = round2(process_cpu_s().zip(cpu0).map_or(0.0, |(b, a)| b - a));
    report.db_cpu_s = postgres_cpu_s(app.store.backend())
        .zip(db0)
        .map(|(b, a)| round2(b - a));
    app.stop(Duration::from_secs(10)).await;
    report.by_status = statuses.lock().unwrap_or_else(|p| p.into_inner()).clone();
    report.requests = report.by_status.values().sum();
    report.secs = round3(wall);
    report.requests_per_s = round1(report.requests as f64 / wall.max(1e-9));
    report.p50_ms = round2(latency.quantile_ms(0.50));
    report.p99_ms = round2(latency.quantile_ms(0.99));
    report.max_ms = round2(max_us.load(Ordering::Relaxed) as f64 / 1000.0);
    report.found = found.load(Ordering::Relaxed);
    Ok(report)
}

/// Each client walks the bodies with its own odd stride, so clients ask for
/// different workers.
fn args_step(client: usize) -> usize {
    2 * client + 1
}
