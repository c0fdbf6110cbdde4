//! `pedulicovid-bench chatbot`: what one `serve` process holds for the
//! chatbot's look-ups after a national blast: a registry of `--workers`
//! (default 1.5 M) on a fresh database, then `--connections` clients
//! asking `POST /api/v1/chatbot/lookup` for `--secs` seconds, half by a
//! worker's phone number, half by NIK with that worker's WhatsApp number,
//! every one naming a registered worker. With `--reregister P`, P % of the
//! requests are instead `POST /api/v1/chatbot/reregister` (the worker's NIK
//! and full name, a WhatsApp number never used before and a fresh
//! `Idempotency-Key`): in the default `validated` mode each is stored
//! pending One Data validation, one transaction with its audit row. Distinct
//! numbers keep the per-number limits (3 requests a day, 5 failures lock)
//! out of the figure: they guard one conversation, not the server.
//! Reports requests per second, latency quantiles (all requests, and each
//! kind), answers by status and CPU (this process, PostgreSQL). The
//! per-token rate limit is lifted for the run (it is what is measured
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
    /// Share of the requests that are re-registrations, percent (0 to 100).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub reregister: u8,
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
    /// Share of re-registrations among the requests, percent.
    pub reregister_percent: u8,
    pub registry_s: f64,
    pub secs: f64,
    pub requests: u64,
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Look-ups and their latency.
    pub lookups: KindReport,
    /// Re-registrations and their latency.
    pub reregistrations: KindReport,
    /// Answers by HTTP status (`0`: a transport error).
    pub by_status: BTreeMap<u16, u64>,
    /// Looked-up workers found (`found: true`), of the 200 answers.
    pub found: u64,
    /// Re-registrations answered `pending_validation`.
    pub pending: u64,
    /// CPU seconds of this process (server and clients) during the run.
    pub process_cpu_s: f64,
    /// Every `postgres` process on the machine (PostgreSQL only).
    pub db_cpu_s: Option<f64>,
    pub load_avg_at_start: Option<f64>,
}

/// One kind of request: how many, how fast.
#[derive(Debug, Default, Serialize)]
pub struct KindReport {
    pub requests: u64,
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Latencies of one kind of request.
#[derive(Default)]
struct Kind {
    latency: Histogram,
    count: AtomicU64,
}

impl Kind {
    fn record(&self, took: Duration) {
        self.latency.record(took);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn report(&self, wall: f64) -> KindReport {
        let requests = self.count.load(Ordering::Relaxed);
        KindReport {
            requests,
            requests_per_s: round1(requests as f64 / wall.max(1e-9)),
            p50_ms: round2(self.latency.quantile_ms(0.50)),
            p99_ms: round2(self.latency.quantile_ms(0.99)),
        }
    }
}

/// A request of the mix.
enum Body {
    Lookup(String),
    /// NIK and full name of a registered worker.
    Reregister {
        nik: String,
        full_name: String,
    },
}

/// The first number handed to a re-registration: `+62813` and eight
/// digits, a range the synthetic registry never uses for a worker.
const FIRST_NEW_NUMBER: u64 = 90_000_000;

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
    let description = db.description.clone();
    let r = db
        .around(args.keep_database, run_in(s, &args, description))
        .await?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "chatbot, {} backend, {} workers, {} connections, {:.0} s, {} % re-registrations:\n  \
             {} requests, {:.0}/s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n  \
             look-ups {:.0}/s (p99 {:.1} ms), re-registrations {:.0}/s (p99 {:.1} ms)\n  \
             by status {:?}, found {}, pending {}\n  CPU: this process {:.1} s, PostgreSQL {}",
            r.backend,
            r.workers,
            r.connections,
            r.secs,
            r.reregister_percent,
            r.requests,
            r.requests_per_s,
            r.p50_ms,
            r.p99_ms,
            r.max_ms,
            r.lookups.requests_per_s,
            r.lookups.p99_ms,
            r.reregistrations.requests_per_s,
            r.reregistrations.p99_ms,
            r.by_status,
            r.found,
            r.pending,
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
        reregister_percent: args.reregister,
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
    // Every 100 consecutive bodies hold `--reregister` re-registrations,
    // spread evenly (Bresenham), the rest look-ups alternating by phone
    // and by NIK.
    let share = u64::from(args.reregister);
    let bodies: Arc<Vec<Body>> = Arc::new(
        sample
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let phone = w.phone.as_e164();
                let slot = i as u64 % 100;
                if (slot + 1) * share / 100 > slot * share / 100 {
                    Body::Reregister {
                        nik: w.nik.as_str().to_string(),
                        full_name: w.full_name.clone(),
                    }
                } else if i % 2 == 0 {
                    Body::Lookup(serde_json::json!({ "phone": phone }).to_string())
                } else {
                    Body::Lookup(
                        serde_json::json!({ "nik": w.nik.as_str(), "whatsapp_phone": phone })
                            .to_string(),
                    )
                }
            })
            .collect(),
    );
    say(&format!(
        "registry {:.1} s; {} request bodies; {} connections for {} s",
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
    let base = format!(
        "http://{}/api/v1/chatbot",
        app.http_addr.context("the HTTP server did not start")?
    );
    let latency = Arc::new(Histogram::default());
    let kinds = Arc::new([Kind::default(), Kind::default()]);
    let max_us = Arc::new(AtomicU64::new(0));
    let found = Arc::new(AtomicU64::new(0));
    let pending = Arc::new(AtomicU64::new(0));
    let next_number = Arc::new(AtomicU64::new(FIRST_NEW_NUMBER));
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
        let (base, secret, bodies) = (base.clone(), secret.clone(), bodies.clone());
        let (latency, kinds, max_us, found, pending, statuses, next_number) = (
            latency.clone(),
            kinds.clone(),
            max_us.clone(),
            found.clone(),
            pending.clone(),
            statuses.clone(),
            next_number.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = c;
            let mut mine = BTreeMap::<u16, u64>::new();
            while Instant::now() < until {
                let body = &bodies[i % bodies.len()];
                i += args_step(c);
                let request = match body {
                    Body::Lookup(json) => client.post(format!("{base}/lookup")).body(json.clone()),
                    Body::Reregister { nik, full_name } => {
                        let n = next_number.fetch_add(1, Ordering::Relaxed);
                        let json = serde_json::json!({
                            "nik": nik,
                            "full_name": full_name,
                            "whatsapp_phone": format!("+62813{n:08}"),
                        });
                        client
                            .post(format!("{base}/reregister"))
                            .header("idempotency-key", format!("bench-{n}"))
                            .body(json.to_string())
                    }
                };
                let t = Instant::now();
                let r = request
                    .bearer_auth(&secret)
                    .header("content-type", "application/json")
                    .send()
                    .await;
                let status = match r {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let text = r.text().await.unwrap_or_default();
                        if status == 200 && text.contains("\"found\":true") {
                            found.fetch_add(1, Ordering::Relaxed);
                        }
                        if status == 200 && text.contains("\"status\":\"pending_validation\"") {
                            pending.fetch_add(1, Ordering::Relaxed);
                        }
                        status
                    }
                    Err(_) => 0,
                };
                let took = t.elapsed();
                latency.record(took);
                kinds[usize::from(matches!(body, Body::Reregister { .. }))].record(took);
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
    report.pending = pending.load(Ordering::Relaxed);
    report.lookups = kinds[0].report(wall);
    report.reregistrations = kinds[1].report(wall);
    Ok(report)
}

/// Each client walks the bodies with its own odd stride, so clients ask for
/// different workers.
fn args_step(client: usize) -> usize {
    2 * client + 1
}
