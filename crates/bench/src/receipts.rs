//! `pedulicovid-bench receipts`: receipt-callback ingest, measured.
//!
//! 1. **prepare** (not timed as ingest): `--callbacks` synthetic health
//!    workers through the bench's registry insert, one campaign enqueued
//!    with [`campaign::create`], then every message claimed and recorded
//!    `sent` through gateway `sim` with a gateway message id (`F<id>`), as
//!    a worker does (`Store::claim`, `Store::record_outcomes`); PostgreSQL
//!    then gets `VACUUM ANALYZE messages` (this server runs without
//!    autovacuum);
//! 2. **ingest**: only the HTTP part of [`App`] (no dispatch loops, no
//!    housekeeping, no simulator) on 127.0.0.1 with an ephemeral port, and
//!    `--callbacks` distinct Kannel DLR callbacks (`status=1`, final
//!    delivered), one per message, sent over `--connections` keep-alive
//!    connections by a minimal HTTP/1.1 client on a thread of its own
//!    (`loadgen`), so its CPU is counted apart from the server's;
//!    `--external` instead waits for another load generator (wrk, see
//!    `scripts/bench_receipts_wrk.sh`) and times the server's side;
//! 3. **check**: receipts stored and messages `delivered` in the database
//!    (both must equal `--callbacks`), the receipt queue's deepest point
//!    against its bound.
//!
//! Databases as in `pedulicovid-bench`: a temporary SQLite file by default,
//! a throw-away `pedulicovid_bench_<hex>` on a PostgreSQL server given by an
//! admin URL.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::engine::{
    create_campaign, current_rss_mb, insert_registry, load_avg, postgres_cpu_s, proc_cpu_s,
    process_cpu_s, round1, round2, round3, BenchDatabase,
};
use pedulicovid::app::{App, Parts};
use pedulicovid::config::{GatewaySettings, Settings};
use pedulicovid::gateway::callback::message_token;
use pedulicovid::gateway::kannel::KannelConfig;
use pedulicovid::http::ReceiptBatcher;
use pedulicovid::metrics::{self, Histogram, METRICS};
use pedulicovid::render::Renderer;
use pedulicovid::status::Status;
use pedulicovid::store::{now_ms, redact_url, SendOutcome, Store};

/// The gateway the receipts come from.
const GATEWAY: &str = "sim";
/// Name of the load generator's thread (its CPU is counted apart).
const LOADGEN_THREAD: &str = "loadgen";

/// Options of `pedulicovid-bench receipts`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReceiptBenchArgs {
    /// Distinct receipt callbacks (= messages prepared as `sent`).
    #[arg(long, default_value_t = 100_000)]
    pub callbacks: usize,
    /// Keep-alive connections of the load generator, each with one request
    /// in flight.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Print exactly one JSON object on stdout (no progress on stderr).
    #[arg(long)]
    pub json: bool,
    /// Receipt batcher tasks (`http.receipt_batchers`; 0 = the default:
    /// 1 on SQLite, 2 on PostgreSQL).
    #[arg(long)]
    pub batchers: Option<usize>,
    /// Most receipts per transaction (`http.receipt_max_batch`).
    #[arg(long)]
    pub max_batch: Option<usize>,
    /// Bound of the receipt queue (`http.receipt_queue`).
    #[arg(long)]
    pub queue: Option<usize>,
    /// Threads of the built-in load generator.
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
    /// Do not send the callbacks: wait for an external load generator
    /// (wrk) and time the server's side. The callback URL, first message id
    /// and count are written to `--ready-file` as shell variables.
    #[arg(long, requires = "ready_file")]
    pub external: bool,
    /// With `--external`: where to write `URL=…`, `CALLBACK_PATH=…`,
    /// `FIRST_ID=…`, `COUNT=…` once the server listens.
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
    /// Give up when no callback arrived for this many seconds.
    #[arg(long, default_value_t = 60)]
    pub idle_timeout_secs: u64,
    /// PostgreSQL: keep the benchmark database instead of dropping it.
    #[arg(long)]
    pub keep_database: bool,
    /// Seed of the synthetic registry.
    #[arg(long, default_value_t = 2021)]
    pub seed: u64,
}

/// Everything `pedulicovid-bench receipts` measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReceiptBenchReport {
    pub backend: &'static str,
    pub database: String,
    pub callbacks: u64,
    pub connections: usize,
    /// `builtin` (this process, thread `loadgen`) or `external`.
    pub load_generator: &'static str,
    /// Registry insert, seconds.
    pub registry_s: f64,
    /// Campaign enqueue, seconds.
    pub enqueue_s: f64,
    /// Claiming and recording every message as sent (plus `VACUUM ANALYZE`
    /// on PostgreSQL), seconds.
    pub mark_sent_s: f64,
    /// First request sent → last answer received (builtin); first → last
    /// receipt taken by the server (external), seconds.
    pub wall_s: f64,
    /// `callbacks` / `wall_s`.
    pub callbacks_per_s: f64,
    /// Answer latency seen by the load generator (builtin only), ms.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Answers by HTTP status (builtin only).
    pub by_status: BTreeMap<String, u64>,
    /// Connections that failed mid-request (builtin only; the callback is
    /// not retried).
    pub transport_errors: u64,
    /// Callbacks the server took (`pedulicovid_receipts_total`, all outcomes
    /// but `malformed` and `unavailable`).
    pub receipts_taken: u64,
    /// Rows in `receipts` after the run.
    pub receipts_stored: i64,
    /// Stored receipts by effect.
    pub receipts_by_effect: BTreeMap<String, i64>,
    /// Messages of the campaign now `delivered`.
    pub delivered: i64,
    /// `receipts_stored == delivered == callbacks`.
    pub all_stored: bool,
    pub batcher_tasks: usize,
    pub batcher_max_batch: usize,
    /// The receipt queue's bound (`http.receipt_queue`).
    pub queue_bound: usize,
    /// Deepest the queue was seen (never above `queue_bound`).
    pub queue_peak: u64,
    /// Group commits during the run and their mean size.
    pub batches: u64,
    pub mean_batch: f64,
    /// Peak resident set during the ingest (VmHWM reset before it), MiB.
    pub peak_rss_mb: Option<f64>,
    /// Resident set just before the ingest, MiB.
    pub rss_before_mb: Option<f64>,
    /// CPU seconds of this process during the ingest, and as cores.
    pub process_cpu_s: f64,
    pub process_cores: f64,
    /// Of which the load generator's thread(s) (builtin).
    pub client_cpu_s: f64,
    /// The rest: HTTP server, batchers, sqlx.
    pub server_cpu_s: f64,
    /// Every `postgres` process on the machine (PostgreSQL only; other
    /// sessions' work included, and it can even fall when their backends
    /// exit).
    pub db_cpu_s: Option<f64>,
    /// The backends serving the benchmark's own database, plus the server's
    /// background processes (WAL writer, checkpointer, …) (PostgreSQL only).
    pub db_own_cpu_s: Option<f64>,
    pub load_avg_at_start: Option<f64>,
}

/// Runs the benchmark and prints its report (JSON with `--json`).
pub async fn run(
    settings: Settings,
    args: ReceiptBenchArgs,
    database_url_given: bool,
) -> anyhow::Result<()> {
    if args.callbacks == 0 || args.connections == 0 || args.client_threads == 0 {
        bail!("--callbacks, --connections and --client-threads must be at least 1");
    }
    let mut s = settings;
    let db = BenchDatabase::prepare(&mut s, database_url_given).await?;
    let description = db.description.clone();
    let report = db
        .around(args.keep_database, run_in(s, &args, description))
        .await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    if !report.all_stored {
        bail!(
            "{} callbacks, {} receipts stored, {} messages delivered",
            report.callbacks,
            report.receipts_stored,
            report.delivered
        );
    }
    Ok(())
}

/// Loopback only, the HTTP part only, gateway `sim` in the Kannel dialect
/// with a token generated in the database.
fn receipt_settings(mut s: Settings, args: &ReceiptBenchArgs) -> Settings {
    s.http.listen = "127.0.0.1:0".into();
    s.http.public_url = None;
    // Only callbacks are measured (no worker sends): one Kannel-dialect
    // gateway whose send URL is never used.
    s.gateways = vec![GatewaySettings {
        name: GATEWAY.into(),
        dialect: KannelConfig::default().into(),
        ..GatewaySettings::default()
    }];
    if let Some(b) = args.batchers {
        s.http.receipt_batchers = b;
    }
    if let Some(b) = args.max_batch {
        s.http.receipt_max_batch = b;
    }
    if let Some(q) = args.queue {
        s.http.receipt_queue = q;
    }
    s
}

async fn run_in(
    s: Settings,
    args: &ReceiptBenchArgs,
    database: String,
) -> anyhow::Result<ReceiptBenchReport> {
    let s = receipt_settings(s, args);
    let say = |m: &str| {
        if !args.json {
            eprintln!("{m}");
        }
    };
    let n = args.callbacks;
    let mut report = ReceiptBenchReport {
        database,
        callbacks: n as u64,
        connections: args.connections,
        load_generator: if args.external { "external" } else { "builtin" },
        load_avg_at_start: load_avg(),
        ..Default::default()
    };

    // Prepare: n messages `sent` with gateway ids.
    let store = Store::connect(&s.database_url)
        .await
        .with_context(|| format!("opening database {}", redact_url(&s.database_url)))?;
    store.migrate().await.context("applying migrations")?;
    report.backend = store.backend().as_str();
    say(&format!(
        "bench receipts: {} backend, {n} callbacks over {} connections",
        report.backend, args.connections
    ));
    let t = Instant::now();
    insert_registry(&store, n, args.seed, !args.json, false).await?;
    report.registry_s = round3(t.elapsed().as_secs_f64());
    let renderer = Renderer::load(Some(Path::new(&s.sms.templates_dir)))?;
    let (c, enqueued, enqueue_s) =
        create_campaign(&store, &renderer, &s, "Bench: receipts", vec![]).await?;
    report.enqueue_s = enqueue_s;
    if enqueued != n as u64 {
        bail!("{enqueued} messages enqueued, expected {n}");
    }
    let t = Instant::now();
    let ids = mark_sent(&store).await?;
    report.mark_sent_s = round3(t.elapsed().as_secs_f64());
    if ids.len() != n {
        bail!("{} messages marked sent, expected {n}", ids.len());
    }
    store.close().await;
    say(&format!(
        "prepared: registry {:.2} s, enqueue {:.2} s, marked sent {:.2} s",
        report.registry_s, report.enqueue_s, report.mark_sent_s
    ));

    // Ingest.
    let parts = Parts {
        http: true,
        workers: 0,
        housekeeping: false,
        simulator: false,
    };
    let app = App::start(s.clone(), parts).await?;
    let addr = app.http_addr.context("the HTTP server did not start")?;
    let token = app.store.gateway_secret(GATEWAY).await?;
    // Each message's own callback path, as its gateway would have been
    // handed it (`{id}.{mac}`), made before anything is timed.
    let targets: Vec<(i64, String)> = ids
        .iter()
        .map(|&id| {
            let t = message_token(&token, GATEWAY, id);
            (id, format!("/callbacks/{GATEWAY}/{t}"))
        })
        .collect();
    report.batcher_tasks = match s.http.receipt_batchers {
        0 => ReceiptBatcher::default_tasks(app.store.backend()),
        b => b,
    };
    report.batcher_max_batch = s.http.receipt_max_batch;
    report.queue_bound = s.http.receipt_queue.max(1);

    report.rss_before_mb = current_rss_mb().map(round1);
    // Writing 5 to clear_refs resets VmHWM: the peak then covers the ingest
    // only, not the preparation.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let taken0 = METRICS.receipts.load(Ordering::Relaxed);
    let batches0 = METRICS.receipt_batches.load(Ordering::Relaxed);
    let rows0 = METRICS.receipt_batch_rows.load(Ordering::Relaxed);
    METRICS.receipt_queue_peak.store(0, Ordering::Relaxed);
    let cpu0 = process_cpu_s();
    let db_cpu0 = postgres_cpu_s(app.store.backend());
    let own0 = own_postgres_cpu(&app.store).await;

    let wall = if args.external {
        external(args, addr, &targets, taken0, &say).await
    } else {
        say(&format!(
            "sending {n} callbacks to 127.0.0.1:{} over {} connections…",
            addr.port(),
            args.connections
        ));
        let load = builtin(addr, targets, args).await?;
        report.p50_ms = Some(load.latency.quantile_ms(0.50));
        report.p99_ms = Some(load.latency.quantile_ms(0.99));
        report.max_ms = Some(round3(load.max_us as f64 / 1000.0));
        report.by_status = load
            .by_status
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        report.transport_errors = load.errors;
        report.client_cpu_s = round2(load.cpu_s);
        Ok(load.wall_s)
    };
    let cpu = process_cpu_s().zip(cpu0).map(|(a, b)| a - b);
    let db_cpu = postgres_cpu_s(app.store.backend())
        .zip(db_cpu0)
        .map(|(a, b)| round2(a - b));
    let own1 = own_postgres_cpu(&app.store).await;
    report.db_own_cpu_s = own1.as_ref().zip(own0.as_ref()).map(|(a, b)| {
        // A backend that appeared during the run counts from zero.
        round2(
            a.iter()
                .map(|(pid, c)| c - b.get(pid).copied().unwrap_or(0.0))
                .sum(),
        )
    });
    report.peak_rss_mb = metrics::peak_rss_mb().map(round1);
    let wall = match wall {
        Ok(w) => w,
        Err(e) => {
            app.stop(Duration::from_secs(10)).await;
            return Err(e);
        }
    };
    report.wall_s = round3(wall);
    report.callbacks_per_s = round1(n as f64 / wall.max(1e-9));
    report.receipts_taken = METRICS.receipts.load(Ordering::Relaxed) - taken0;
    report.batches = METRICS.receipt_batches.load(Ordering::Relaxed) - batches0;
    let rows = METRICS.receipt_batch_rows.load(Ordering::Relaxed) - rows0;
    report.mean_batch = round1(rows as f64 / report.batches.max(1) as f64);
    report.queue_peak = METRICS.receipt_queue_peak.load(Ordering::Relaxed);
    report.process_cpu_s = cpu.map(round2).unwrap_or(0.0);
    report.process_cores = cpu.map(|c| round2(c / wall.max(1e-9))).unwrap_or(0.0);
    report.server_cpu_s = round2(report.process_cpu_s - report.client_cpu_s);
    report.db_cpu_s = db_cpu;

    let effects = app.store.receipt_effects().await?;
    // Every receipt has one effect (or none): the counts add up to all.
    report.receipts_stored = effects.iter().map(|e| e.count).sum();
    report.receipts_by_effect = effects
        .into_iter()
        .map(|e| (e.effect.unwrap_or_else(|| "none".into()), e.count))
        .collect();
    report.delivered = app
        .store
        .campaign_report(c.id)
        .await?
        .status(Status::Delivered);
    report.all_stored = report.receipts_stored == n as i64 && report.delivered == n as i64;
    app.stop(Duration::from_secs(10)).await;
    Ok(report)
}

/// Every queued message → `sent` through [`GATEWAY`] with gateway id
/// `F<id>` (normalised `f<id>`), the way a worker does it: claimed in
/// batches and recorded as accepted ([`Store::claim`],
/// [`Store::record_outcomes`]), so each status change goes through the
/// status machine as in production. PostgreSQL then gets `VACUUM ANALYZE
/// messages` ([`Store::vacuum_messages`]: the two updates per row left dead
/// versions, and this server runs without autovacuum). Returns the ids, in
/// order.
async fn mark_sent(store: &Store) -> anyhow::Result<Vec<i64>> {
    const OWNER: &str = "bench-receipts";
    let mut ids = Vec::new();
    loop {
        let batch = store.claim(OWNER, 1_000, now_ms() + 600_000).await?;
        if batch.is_empty() {
            break;
        }
        let outcomes: Vec<SendOutcome> = batch
            .iter()
            .map(|m| SendOutcome::Sent {
                id: m.id,
                gateway: GATEWAY.into(),
                gateway_message_id: Some(format!("F{}", m.id)),
                body: "PEDULICOVID: bench".into(),
                encoding: "gsm7",
                segments: 1,
            })
            .collect();
        store.record_outcomes(OWNER, &outcomes).await?;
        ids.extend(batch.iter().map(|m| m.id));
    }
    store.vacuum_messages().await?;
    ids.sort_unstable();
    Ok(ids)
}

/// CPU seconds by pid of the PostgreSQL processes serving this database and
/// of the server's background processes (`None` on SQLite).
async fn own_postgres_cpu(store: &Store) -> Option<std::collections::HashMap<i32, f64>> {
    let pids = store.server_pids().await.ok()??;
    Some(
        pids.into_iter()
            .filter_map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                Some((pid, proc_cpu_s(&stat)?))
            })
            .collect(),
    )
}

/// The query of one Kannel DLR callback: final, delivered (`status=1`).
fn dlr_query(id: i64) -> String {
    format!(
        "id={id}&status=1&fid=F{id}&answer=id%3AF{id}+sub%3A001+dlvrd%3A001+submit+date%3A2101140800+\
         done+date%3A2101140800+stat%3ADELIVRD+err%3A000+text%3APEDULICOVID&ts=1610611200"
    )
}

/// `--external`: announce the URL, then wait until the server took every
/// callback. Returns first → last receipt taken, seconds.
async fn external(
    args: &ReceiptBenchArgs,
    addr: SocketAddr,
    targets: &[(i64, String)],
    taken0: u64,
    say: &impl Fn(&str),
) -> anyhow::Result<f64> {
    let file = args.ready_file.as_deref().context("--ready-file")?;
    // Each message has its own signed callback path: the load generator
    // reads them from a file beside the ready file, one `id path` a line,
    // written before the ready file announces it.
    let paths_file = file.with_extension("paths");
    let mut paths = String::with_capacity(targets.len() * 64);
    for (id, path) in targets {
        paths.push_str(&format!("{id} {path}\n"));
    }
    std::fs::write(&paths_file, paths)
        .with_context(|| format!("writing {}", paths_file.display()))?;
    let ready = format!(
        "URL=http://{addr}\nPATHS_FILE={}\nCOUNT={}\n",
        paths_file.display(),
        targets.len()
    );
    std::fs::write(file, ready).with_context(|| format!("writing {}", file.display()))?;
    say(&format!(
        "waiting for {} callbacks on http://{addr}; variables in {}",
        targets.len(),
        file.display()
    ));
    let n = targets.len() as u64;
    let mut start: Option<Instant> = None;
    let mut last_change = (Instant::now(), 0u64);
    loop {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let taken = METRICS.receipts.load(Ordering::Relaxed) - taken0;
        if taken > 0 && start.is_none() {
            start = Some(Instant::now());
        }
        if taken >= n {
            return Ok(start.map_or(0.0, |s| s.elapsed().as_secs_f64()));
        }
        if taken != last_change.1 {
            last_change = (Instant::now(), taken);
        } else if last_change.0.elapsed() > Duration::from_secs(args.idle_timeout_secs) {
            bail!(
                "no callback for {} s ({taken} of {n} taken)",
                args.idle_timeout_secs
            );
        }
    }
}

/// What the built-in load generator saw.
struct Load {
    wall_s: f64,
    latency: Arc<Histogram>,
    max_us: u64,
    by_status: BTreeMap<u16, u64>,
    errors: u64,
    /// CPU seconds of the load generator's threads (each reads its own
    /// just before it ends).
    cpu_s: f64,
}

/// Sends one callback per (id, path) over `connections` keep-alive connections,
/// from `client_threads` threads named [`LOADGEN_THREAD`], each running a
/// single-threaded runtime.
async fn builtin(
    addr: SocketAddr,
    targets: Vec<(i64, String)>,
    args: &ReceiptBenchArgs,
) -> anyhow::Result<Load> {
    let targets = Arc::new(targets);
    let next = Arc::new(AtomicUsize::new(0));
    let latency = Arc::new(Histogram::default());
    let threads = args.client_threads.min(args.connections);
    let start = Instant::now();
    let mut waits = vec![];
    for t in 0..threads {
        // Connections spread over the threads.
        let conns = args.connections / threads + usize::from(t < args.connections % threads);
        let (targets, next, latency) = (targets.clone(), next.clone(), latency.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(LOADGEN_THREAD.into())
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(anyhow::Error::from)
                    .map(|rt| {
                        rt.block_on(async {
                            let tasks: Vec<_> = (0..conns)
                                .map(|_| {
                                    tokio::spawn(connection(
                                        addr,
                                        targets.clone(),
                                        next.clone(),
                                        latency.clone(),
                                    ))
                                })
                                .collect();
                            let mut out = vec![];
                            for t in tasks {
                                out.push(t.await);
                            }
                            out
                        })
                    });
                let cpu = std::fs::read_to_string("/proc/thread-self/stat")
                    .ok()
                    .and_then(|s| proc_cpu_s(&s))
                    .unwrap_or(0.0);
                let _ = tx.send(result.map(|r| (r, cpu)));
            })
            .context("starting the load generator thread")?;
        waits.push(rx);
    }
    let mut load = Load {
        wall_s: 0.0,
        latency: latency.clone(),
        max_us: 0,
        by_status: BTreeMap::new(),
        errors: 0,
        cpu_s: 0.0,
    };
    for w in waits {
        let (results, cpu) = w.await.context("load generator thread died")??;
        load.cpu_s += cpu;
        for r in results {
            let c = r.context("load generator connection panicked")?;
            for (k, v) in c.by_status {
                *load.by_status.entry(k).or_default() += v;
            }
            load.errors += c.errors;
            load.max_us = load.max_us.max(c.max_us);
        }
    }
    load.wall_s = start.elapsed().as_secs_f64();
    Ok(load)
}

/// What one connection saw.
#[derive(Default)]
struct ConnStats {
    by_status: BTreeMap<u16, u64>,
    errors: u64,
    max_us: u64,
}

/// One keep-alive connection: takes the next id until none is left, one
/// request in flight, reconnecting after an error or a `Connection: close`.
async fn connection(
    addr: SocketAddr,
    targets: Arc<Vec<(i64, String)>>,
    next: Arc<AtomicUsize>,
    latency: Arc<Histogram>,
) -> ConnStats {
    use std::fmt::Write as _;
    let mut stats = ConnStats::default();
    let mut stream: Option<TcpStream> = None;
    let mut req = String::with_capacity(512);
    let mut buf = vec![0u8; 4096];
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some((id, path)) = targets.get(i) else {
            break;
        };
        req.clear();
        let _ = write!(
            req,
            "GET {path}?{} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: pedulicovid-bench\r\n\r\n",
            dlr_query(*id)
        );
        let t = Instant::now();
        let result = async {
            if stream.is_none() {
                let s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                stream = Some(s);
            }
            let s = stream.as_mut().expect("connected above");
            exchange(s, req.as_bytes(), &mut buf).await
        }
        .await;
        match result {
            Ok((status, close)) => {
                let el = t.elapsed();
                latency.record(el);
                stats.max_us = stats.max_us.max(el.as_micros() as u64);
                *stats.by_status.entry(status).or_default() += 1;
                if close {
                    stream = None;
                }
            }
            Err(_) => {
                stats.errors += 1;
                stream = None;
            }
        }
    }
    stats
}

/// Writes one request and reads one response (status line, headers, a
/// `Content-Length` body). Returns the status and whether the server will
/// close the connection.
async fn exchange(
    s: &mut TcpStream,
    req: &[u8],
    buf: &mut Vec<u8>,
) -> std::io::Result<(u16, bool)> {
    use std::io::{Error, ErrorKind};
    s.write_all(req).await?;
    let mut filled = 0;
    let (head_end, status, len, close) = loop {
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let k = s.read(&mut buf[filled..]).await?;
        if k == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        filled += k;
        let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = std::str::from_utf8(&buf[..end])
            .map_err(|_| Error::new(ErrorKind::InvalidData, "response head is not UTF-8"))?;
        let status: u16 = head
            .get(9..12)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| Error::new(ErrorKind::InvalidData, "no status"))?;
        let mut len = None;
        let mut close = false;
        for line in head.lines().skip(1) {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse::<usize>().ok();
            } else if k.eq_ignore_ascii_case("connection") {
                close = v.trim().eq_ignore_ascii_case("close");
            }
        }
        let len = len
            .ok_or_else(|| Error::new(ErrorKind::InvalidData, "response without Content-Length"))?;
        break (end + 4, status, len, close);
    };
    let total = head_end + len;
    if buf.len() < total {
        buf.resize(total, 0);
    }
    while filled < total {
        let k = s.read(&mut buf[filled..total]).await?;
        if k == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        filled += k;
    }
    Ok((status, close))
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn print_report(r: &ReceiptBenchReport) {
    println!();
    println!("PEDULICOVID bench receipts ({}: {})", r.backend, r.database);
    println!(
        "  callbacks           {:>10}   {} connections, load generator {}",
        r.callbacks, r.connections, r.load_generator
    );
    println!(
        "  prepare             {:>10.2} s registry, {:.2} s enqueue, {:.2} s marked sent",
        r.registry_s, r.enqueue_s, r.mark_sent_s
    );
    println!(
        "  ingest              {:>10.2} s  → {:>9.0} callbacks/s",
        r.wall_s, r.callbacks_per_s
    );
    println!(
        "  answer latency      {:>10} ms p50, {} ms p99, {} ms max",
        opt(r.p50_ms),
        opt(r.p99_ms),
        opt(r.max_ms)
    );
    for (k, v) in &r.by_status {
        println!("    HTTP {k:<13}{v:>10}");
    }
    println!("    transport errors  {:>10}", r.transport_errors);
    println!(
        "  stored              {:>10}   receipts ({} taken), {} messages delivered: {}",
        r.receipts_stored,
        r.receipts_taken,
        r.delivered,
        if r.all_stored { "all" } else { "MISSING" }
    );
    println!(
        "  batcher             {:>10}   tasks × ≤ {} per commit; {} commits, mean {:.1}",
        r.batcher_tasks, r.batcher_max_batch, r.batches, r.mean_batch
    );
    println!(
        "  queue               {:>10}   deepest of a bound of {}",
        r.queue_peak, r.queue_bound
    );
    println!(
        "  CPU                 {:>10.2} s in this process ({:.2} cores): server {:.2} s, load generator {:.2} s{}",
        r.process_cpu_s,
        r.process_cores,
        r.server_cpu_s,
        r.client_cpu_s,
        r.db_own_cpu_s
            .zip(r.db_cpu_s)
            .map(|(o, d)| format!(
                ", postgres {o:.2} s for this database ({d:.2} s all postgres processes)"
            ))
            .unwrap_or_default()
    );
    println!(
        "  RSS                 {:>10} MB before, {} MB peak during the ingest (load average at start {})",
        opt(r.rss_before_mb),
        opt(r.peak_rss_mb),
        opt(r.load_avg_at_start)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dlr_callbacks_read_as_final_delivered() {
        let q = dlr_query(42);
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect();
        let r = pedulicovid::gateway::kannel::parse_receipt(&pairs).expect("parses");
        assert_eq!(r.message_id, Some(42));
        assert_eq!(r.gateway_message_id.as_deref(), Some("F42"));
        assert_eq!(r.outcome, pedulicovid::gateway::ReceiptOutcome::Delivered);
    }
}
