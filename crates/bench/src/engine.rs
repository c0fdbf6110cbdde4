//! `pedulicovid-bench`: a whole campaign against the in-process simulator,
//! measured, on a fresh database.
//!
//! Phases (each timed on its own):
//!
//! 1. **registry**: `--messages` synthetic health workers, inserted with
//!    [`Store::upsert_workers`] in chunks of 1,000 (no CSV parsing), spread
//!    over every province, all validated and eligible, unique NIKs and phones;
//! 2. **enqueue**: [`campaign::create`] with the window 00:00-24:00;
//! 3. **unlimited run**: a `serve` (HTTP callbacks, housekeeping) and a
//!    `worker` (dispatch loops) with the simulator answering at once and
//!    calling back `delivered` after ~0 ms, each on a runtime of its own
//!    (or the simulator in a process of its own, `--simulator external`) so
//!    their CPU per message is told apart ([`crate::parts`]), from the
//!    campaign's creation until every message has `sent_at` and then until
//!    every message is final; PostgreSQL's transactions and statements per
//!    message; then the wake-up latency (20 resends to idle workers);
//! 4. **rate run** (`--rate R`, 0 skips it): a second campaign over enough
//!    provinces, a fresh [`App`] whose gateway is limited to `R` messages/s,
//!    sampled at the simulator every millisecond for `--rate-secs`, then
//!    cancelled;
//! 5. **claim ceiling** (`--claim-ceiling`): the same claim and record
//!    statements the workers use, looped with no gateway and no HTTP, then
//!    receipts applied straight to the store, one per transaction and in
//!    batches: the raw database ceiling to compare the real run with.
//!
//! PostgreSQL: `--database-url` names a server whose user may create
//! databases; the benchmark creates `pedulicovid_bench_<random>` there, runs
//! in it and drops it at the end (`--keep-database` keeps it for a look).
//! SQLite: a file in a temporary directory, removed at the end.
//!
//! `--gateway kannel` sends the unlimited run's campaign through a running
//! Kannel (the carrier harness) instead of the simulator: see
//! [`crate::kannel`].

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::{StreamExt, TryStreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::parts::{PartsCpu, RunParts, SimulatorPlace};
use carrier_sim::{OutcomeMix, SimHandle};
use pedulicovid::app::{App, Parts};
use pedulicovid::campaign::{self, CampaignRequest, Window};
use pedulicovid::config::{GatewayDialect, GatewaySettings, Settings};
use pedulicovid::demo::PROFESSIONS;
use pedulicovid::domain::{Msisdn, Nik, ProvinceCode};
use pedulicovid::gateway::kannel::{KannelConfig, KannelMethod};
use pedulicovid::gateway::{ParsedReceipt, ReceiptOutcome};
use pedulicovid::metrics::{self, METRICS};
use pedulicovid::render::Renderer;
use pedulicovid::status::Status;
use pedulicovid::store::{
    now_ms, redact_url, Backend, Campaign, CampaignAction, CampaignTimes, CreatedCampaign,
    IncomingReceipt, NewWorker, ScratchDatabase, SendOutcome, Store,
};

/// Rows per `upsert_workers` call.
const REGISTRY_CHUNK: usize = 1_000;
/// Receipts applied one per transaction in the ceiling measurement.
const CEILING_SINGLE_RECEIPTS: usize = 20_000;
/// Receipts applied in batches in the ceiling measurement.
const CEILING_BATCHED_RECEIPTS: usize = 100_000;
/// Receipts per `apply_receipts` call in the ceiling measurement (what the
/// HTTP receipt batcher aims for).
const CEILING_RECEIPT_BATCH: usize = 100;
/// A measured rate may exceed the burst by this many messages per 100 ms
/// bucket: the simulator's counter is sampled about every millisecond (one
/// message is ~2 ms at 500/s), so each bucket edge can be off by one.
const BURST_TOLERANCE: u64 = 2;

/// Where the benchmark's campaign goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchGateway {
    /// The in-process simulator (every phase).
    Sim,
    /// A running Kannel `smsbox` (the carrier harness): registry and the
    /// unlimited run only.
    Kannel,
}

/// Options of `pedulicovid-bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// The carrier: `sim` (in-process simulator) or `kannel` (a running
    /// Kannel; see the `--kannel-*` options and `scripts/bench-kannel.sh`).
    #[arg(long, value_enum, default_value_t = BenchGateway::Sim)]
    pub gateway: BenchGateway,
    #[command(flatten)]
    pub kannel: crate::kannel::KannelArgs,
    /// Messages in the campaign (= synthetic health workers); 30,000 with
    /// `--gateway kannel`.
    #[arg(
        long,
        default_value_t = 100_000,
        default_value_if("gateway", "kannel", "30000")
    )]
    pub messages: usize,
    /// Print exactly one JSON object on stdout (no progress on stderr).
    #[arg(long)]
    pub json: bool,
    /// Gateway rate of the rate-limited run, messages per second (0 skips
    /// that run; 0 by default with `--gateway kannel`, which has no rate run).
    #[arg(
        long,
        default_value_t = 500,
        default_value_if("gateway", "kannel", "0")
    )]
    pub rate: u32,
    /// Length of the rate-limited run in seconds (the first is not measured).
    #[arg(long, default_value_t = 10)]
    pub rate_secs: u64,
    /// Dispatch loops in the process (`Parts::workers`).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Rows claimed per batch (`worker.batch_size`).
    #[arg(long, default_value_t = 500)]
    pub batch_size: u32,
    /// Gateway requests in flight per dispatch loop (`worker.concurrency`).
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// Where the simulator runs: `internal` (a runtime of its own in this
    /// process) or `external` (a `carrier-sim` process beside it).
    #[arg(long, value_enum, default_value_t = SimulatorPlace::Internal)]
    pub simulator: SimulatorPlace,
    /// How the Kannel gateway sends: `GET` (the product's default) or
    /// `POST` (Kannel's POST mode, `[gateways.kannel] method`), to the
    /// simulator and with `--gateway kannel` alike.
    #[arg(long, value_parser = parse_kannel_method, default_value = "GET")]
    pub kannel_method: KannelMethod,
    /// Base delay of the simulator's receipts, ms.
    #[arg(long, default_value_t = 0)]
    pub receipt_delay_ms: u64,
    /// Jitter of the simulator's receipts, ± ms.
    #[arg(long, default_value_t = 5)]
    pub receipt_jitter_ms: u64,
    /// Also measure the raw claim + record (and receipt) ceiling of the same
    /// statements, with no gateway and no HTTP.
    #[arg(long)]
    pub claim_ceiling: bool,
    /// Skip the unlimited run (registry, then the rate run and/or ceiling).
    #[arg(long)]
    pub no_unlimited: bool,
    /// Stop the unlimited run after this many seconds and report the part
    /// that ran (`completed: false`).
    #[arg(long, default_value_t = 900)]
    pub timeout_secs: u64,
    /// PostgreSQL: keep the benchmark database instead of dropping it.
    #[arg(long)]
    pub keep_database: bool,
    /// PostgreSQL: run `ANALYZE` on `health_workers`, `messages` and
    /// `campaigns` right after each enqueue, as autovacuum would (or as the
    /// engine could): without statistics PostgreSQL's claim sorts the whole
    /// queue and scans the whole registry on every claim. The clock is not
    /// stopped for it. Nothing on SQLite.
    #[arg(long)]
    pub analyze: bool,
    /// Seed of the synthetic registry and the simulator.
    #[arg(long, default_value_t = 2021)]
    pub seed: u64,
    /// Before the unlimited run, store this many messages of a campaign
    /// that finished 200 days ago, each with its attempt and receipt, all
    /// past their retention periods: housekeeping purges them (bounded
    /// batches, `[retention]` defaults) while the campaign sends. At most
    /// `--messages`.
    #[arg(long, default_value_t = 0)]
    pub purge_backlog: usize,
    /// With `--purge-backlog`: keep everything (retention off), for the
    /// same tables without a purge running.
    #[arg(long)]
    pub no_purge: bool,
}

/// `--kannel-method`: `GET` or `POST`, in any case.
pub(crate) fn parse_kannel_method(s: &str) -> Result<KannelMethod, String> {
    match s.to_ascii_uppercase().as_str() {
        "GET" => Ok(KannelMethod::Get),
        "POST" => Ok(KannelMethod::Post),
        _ => Err(format!("{s:?}: GET or POST")),
    }
}

/// The unlimited run: as fast as the engine goes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UnlimitedReport {
    /// Campaign creation returned → last `sent_at`, seconds.
    pub sends_s: f64,
    /// Messages sent / `sends_s`.
    pub sends_per_s: f64,
    /// Campaign creation returned → every message final (last `final_at`
    /// or last `sent_at`, whichever is later), seconds.
    pub end_to_end_s: f64,
    /// Messages final / `end_to_end_s`.
    pub end_to_end_per_s: f64,
    /// False when `--timeout-secs` stopped the run: the figures then cover
    /// the part that ran.
    pub completed: bool,
    /// Messages with `sent_at` at the end of the run.
    pub sent: i64,
    /// Messages with `final_at` at the end of the run.
    pub finals: i64,
    /// Final receipts applied / (last `final_at` − first `final_at`).
    pub receipts_per_s: f64,
    /// Campaign creation returned → first `sent_at` (start-up lag), seconds.
    pub first_send_s: f64,
    /// Campaign creation returned → first `final_at`, seconds.
    pub first_receipt_s: f64,
    /// Messages per final status.
    pub by_status: BTreeMap<String, i64>,
    /// Gateway request latency, all sends of the run.
    pub p50_send_ms: f64,
    pub p99_send_ms: f64,
    /// CPU seconds of this process (engine + HTTP server + simulator).
    pub process_cpu_s: f64,
    /// `process_cpu_s` / wall time: cores busy in this process (2 max here).
    pub process_cores: f64,
    /// CPU seconds of every `postgres` process on the machine during the
    /// run (PostgreSQL only; includes anything else the server did).
    pub db_cpu_s: Option<f64>,
    /// Messages the gateway accepted in each second of the run.
    pub sends_by_second: Vec<u64>,
    /// Receipt callbacks answered in each second of the run.
    pub receipts_by_second: Vec<u64>,
    /// Simulator submits to a number already submitted (0 = exactly once).
    pub duplicates: u64,
    /// Resend committed → sent, with every worker idle (none when the run
    /// timed out).
    pub wake_latency_ms: Option<WakeLatency>,
    /// CPU seconds of each part of the run (`parts`: dispatcher, server,
    /// simulator, database, other).
    pub cpu_s: Option<PartsCpu>,
    /// The same per final message, µs.
    pub cpu_us_per_message: Option<PartsCpu>,
    /// PostgreSQL transactions per message (`pg_stat_database`).
    pub transactions_per_message: Option<f64>,
    /// PostgreSQL statements per message (`pg_stat_statements`, when the
    /// server loads it).
    pub statements_per_message: Option<f64>,
    /// SMS segments per sent message.
    pub segments_per_message: Option<f64>,
    /// Receipts the server's group commit stored per transaction
    /// (`http.receipt_batchers`), on average over the run.
    pub receipts_per_batch: Option<f64>,
}

/// Receipt batches the server's batchers committed so far, and the
/// receipts in them (this process's counters).
fn receipt_batches() -> (u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    (
        METRICS.receipt_batches.load(Relaxed),
        METRICS.receipt_batch_rows.load(Relaxed),
    )
}

/// How soon idle workers act on new work ([`wake_latency`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct WakeLatency {
    pub samples: u64,
    pub p50: f64,
    pub p90: f64,
    pub max: f64,
}

/// Resends timed by [`wake_latency`].
const WAKE_SAMPLES: u64 = 20;

/// Times `samples` resends (to workers 1, 2, …, whose campaign notices are
/// final) from the store's answer to the gateway's acceptance, each after
/// a random 100 to 400 ms of idleness so polling, had it the only say,
/// would show its average (half the poll interval) rather than luck.
async fn wake_latency(store: &Store, samples: u64) -> anyhow::Result<WakeLatency> {
    use pedulicovid::domain::notice::FreeText;
    let staff = FreeText::parse("staff", "bench", 100)?;
    let reason = FreeText::parse("reason", "wake-up latency", 200)?;
    let mut rng = StdRng::seed_from_u64(7);
    let mut ms = vec![];
    for worker in 1..=samples as i64 {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(100..400))).await;
        let sent0 = METRICS.sent.load(Ordering::Relaxed);
        store
            .resend(worker, &staff, &reason)
            .await
            .with_context(|| format!("resend to worker {worker}"))?;
        let t = Instant::now();
        while METRICS.sent.load(Ordering::Relaxed) == sent0 {
            if t.elapsed() > Duration::from_secs(10) {
                bail!("a resend to worker {worker} was not sent within 10 s");
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    let q = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    Ok(WakeLatency {
        samples: ms.len() as u64,
        p50: round2(q(0.5)),
        p90: round2(q(0.9)),
        max: round2(q(1.0)),
    })
}

/// What an unlimited run measured, before the rates are worked out.
pub(crate) struct RunFigures {
    /// When the clock started (campaign created), Unix ms.
    pub t0_ms: i64,
    pub times: CampaignTimes,
    pub completed: bool,
    pub by_status: Vec<(String, i64)>,
    pub p50_send_ms: f64,
    pub p99_send_ms: f64,
    /// CPU seconds of this process during the run, and its wall time.
    pub cpu: Option<f64>,
    pub wall: f64,
    pub db_cpu: Option<f64>,
    pub sends_by_second: Vec<u64>,
    pub receipts_by_second: Vec<u64>,
    pub duplicates: u64,
    pub wake: Option<WakeLatency>,
}

impl UnlimitedReport {
    /// Rates from the message times: sends until the last `sent_at`,
    /// end-to-end until the last of `sent_at` and `final_at`, receipts over
    /// the span of `final_at`s.
    pub(crate) fn from_run(f: RunFigures) -> UnlimitedReport {
        let times = &f.times;
        let secs = |ms: Option<i64>| ms.map(|m| (m - f.t0_ms) as f64 / 1000.0).unwrap_or(0.0);
        let sends_s = secs(times.last_sent);
        let end_s = secs(times.last_sent.max(times.last_final));
        let receipt_span = match (times.first_final, times.last_final) {
            (Some(a), Some(b)) => (b - a) as f64 / 1000.0,
            _ => 0.0,
        };
        UnlimitedReport {
            sends_s: round3(sends_s),
            sends_per_s: round1(times.sent as f64 / sends_s.max(1e-3)),
            end_to_end_s: round3(end_s),
            end_to_end_per_s: round1(times.finals as f64 / end_s.max(1e-3)),
            completed: f.completed,
            sent: times.sent,
            finals: times.finals,
            receipts_per_s: round1(times.finals as f64 / receipt_span.max(1e-3)),
            first_send_s: round3(secs(times.first_sent)),
            first_receipt_s: round3(secs(times.first_final)),
            by_status: f.by_status.into_iter().filter(|(_, v)| *v > 0).collect(),
            p50_send_ms: f.p50_send_ms,
            p99_send_ms: f.p99_send_ms,
            process_cpu_s: f.cpu.map(round2).unwrap_or(0.0),
            process_cores: f.cpu.map(|c| round2(c / f.wall)).unwrap_or(0.0),
            db_cpu_s: f.db_cpu,
            sends_by_second: f.sends_by_second,
            receipts_by_second: f.receipts_by_second,
            duplicates: f.duplicates,
            wake_latency_ms: f.wake,
            ..Default::default()
        }
    }
}

/// The rate-limited run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RateReport {
    pub rate_target: u32,
    pub rate_secs: u64,
    /// Messages the simulator took between 1 s and the end, per second.
    pub rate_achieved: f64,
    /// (achieved − target) / target, percent.
    pub rate_error_pct: f64,
    /// The limiter's burst: a tenth of a second's worth, rounded up.
    pub burst: u64,
    /// Most submits in one 100 ms bucket (buckets aligned at 1 s).
    pub max_per_100ms: u64,
    /// Most submits in any 100 ms window (sliding, sample to sample).
    pub max_per_100ms_sliding: u64,
    /// `max_per_100ms <= burst + 2` (sampling tolerance): the strict reading
    /// of "never above the burst", as if the carrier counted fixed 100 ms
    /// windows against a tenth of the rate.
    pub within_burst: bool,
    /// The token-bucket reading: over any window of length T, submits − rate
    /// × T. A limiter with burst b guarantees at most b; this is what a
    /// carrier's policer measures.
    pub max_excess_over_rate: f64,
    /// `max_excess_over_rate <= burst + 2` (sampling tolerance).
    pub within_token_bucket: bool,
    /// 100 ms buckets holding more than the burst + 2 (sampling tolerance).
    pub buckets_over_burst: u64,
    /// 100 ms buckets measured.
    pub buckets: u64,
    /// Longest pause between two samples of the simulator's counter, ms.
    pub max_sample_gap_ms: f64,
    /// Most submits in any whole second (sliding).
    pub max_per_1s_sliding: u64,
    /// Submits in each 100 ms bucket, from 1 s on.
    pub per_100ms: Vec<u64>,
    /// Submits counted in the measuring interval.
    pub measured_sends: u64,
    /// Length of the measuring interval, seconds.
    pub measured_s: f64,
    pub enqueued: u64,
    pub p50_send_ms: f64,
    pub p99_send_ms: f64,
}

/// The raw ceiling of the claim and record statements (no gateway, no HTTP).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CeilingReport {
    pub enqueue_s: f64,
    /// Concurrent claim → record loops.
    pub loops: usize,
    pub batch_size: u32,
    pub rows: u64,
    pub claim_record_per_s: f64,
    /// Mean wall time of one `claim` call, ms.
    pub claim_ms_per_batch: f64,
    /// Mean `claim` time over the first tenth of the batches (full queue), ms.
    pub claim_ms_first_tenth: f64,
    /// Mean `claim` time over the last tenth (queue nearly drained), ms.
    pub claim_ms_last_tenth: f64,
    /// Mean wall time of one `record_outcomes` call, ms.
    pub record_ms_per_batch: f64,
    /// Receipts applied with `apply_receipt` (one transaction each).
    pub receipts_single: u64,
    pub receipts_single_per_s: f64,
    /// Tasks applying single receipts at once.
    pub receipts_single_tasks: usize,
    /// Receipts applied with `apply_receipts` in batches of 100.
    pub receipts_batched: u64,
    pub receipts_batched_per_s: f64,
    pub receipts_batched_tasks: usize,
}

/// Everything `pedulicovid-bench` measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BenchReport {
    pub backend: &'static str,
    /// Where the data lived (redacted URL or "temporary SQLite file").
    pub database: String,
    pub messages: u64,
    pub workers: usize,
    pub batch_size: u32,
    pub concurrency: usize,
    /// Threads of the server's and of the worker's runtime each
    /// (`[runtime] threads`, as `serve` and `worker` would start).
    pub runtime_threads: usize,
    /// Receipt callbacks the carrier simulator keeps in flight at most
    /// (`[simulator] callback_concurrency`; Kannel's `max-pending-requests`):
    /// with too few, receipts trail the sends at any speed of ours. None
    /// with `--gateway kannel`, whose own setting applies.
    pub callback_concurrency: Option<usize>,
    /// `--analyze`: statistics refreshed after each enqueue.
    pub analyze: bool,
    /// `--kannel-method`: how the gateway sent (`GET`, `POST`).
    pub kannel_method: KannelMethod,
    pub registry_s: f64,
    pub registry_rows_per_s: f64,
    pub enqueue_s: f64,
    pub enqueued: u64,
    pub sends_per_s: Option<f64>,
    pub receipts_per_s: Option<f64>,
    pub end_to_end_per_s: Option<f64>,
    pub p50_send_ms: Option<f64>,
    pub p99_send_ms: Option<f64>,
    /// `--gateway kannel`: the Kannel side of the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kannel: Option<crate::kannel::KannelReport>,
    /// Highest resident set of this process so far (VmHWM), MiB, read after
    /// the unlimited run: the in-process simulator and HTTP server included.
    pub peak_rss_mb: Option<f64>,
    pub rate_target: Option<u32>,
    pub rate_achieved: Option<f64>,
    pub max_per_100ms: Option<u64>,
    pub unlimited: Option<UnlimitedReport>,
    pub rate: Option<RateReport>,
    pub claim_ceiling: Option<CeilingReport>,
    /// 1-minute load average when the benchmark started.
    pub load_avg_at_start: Option<f64>,
    /// The log filter the run used (`RUST_LOG`, or the benchmark's `warn`):
    /// the product's commands run at `info`, which a figure may or may not
    /// include.
    pub log_filter: String,
    /// VmHWM at the very end, MiB.
    pub peak_rss_mb_end: Option<f64>,
    /// `--purge-backlog`: per kind, rows purged during the run and still
    /// due after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<Vec<pedulicovid::store::KindStatus>>,
}

/// Runs the benchmark and prints its report (JSON with `--json`).
pub async fn run(
    settings: Settings,
    args: BenchArgs,
    database_url_given: bool,
) -> anyhow::Result<()> {
    if args.messages == 0 {
        bail!("--messages must be at least 1");
    }
    if args.workers == 0 || args.batch_size == 0 || args.concurrency == 0 {
        bail!("--workers, --batch-size and --concurrency must be at least 1");
    }
    if args.gateway == BenchGateway::Kannel
        && (args.rate > 0 || args.claim_ceiling || args.no_unlimited)
    {
        bail!("--gateway kannel runs the registry and the unlimited run only: no --rate, --claim-ceiling or --no-unlimited");
    }
    if args.rate > 0 && args.rate_secs < 2 {
        bail!("--rate-secs must be at least 2 (the first second is not measured)");
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
    Ok(())
}

/// The database a benchmark runs in: a fresh SQLite file in a temporary
/// directory (no URL given), a fresh database created on the given
/// PostgreSQL server, or a SQLite file named by the URL that must not exist
/// yet. `prepare` points `settings.database_url` at it.
pub(crate) struct BenchDatabase {
    /// Holds the temporary SQLite file until the run is over.
    _dir: tempfile::TempDir,
    pg: Option<ScratchDatabase>,
    /// What the report says the database was (credentials redacted).
    pub description: String,
}

impl BenchDatabase {
    pub(crate) async fn prepare(
        s: &mut Settings,
        database_url_given: bool,
    ) -> anyhow::Result<BenchDatabase> {
        let dir = tempfile::tempdir().context("creating a temporary directory")?;
        let mut pg = None;
        let description = if !database_url_given {
            s.database_url = format!("sqlite://{}", dir.path().join("bench.db").display());
            "temporary SQLite file".to_string()
        } else if s.database_url.starts_with("postgres:")
            || s.database_url.starts_with("postgresql:")
        {
            let db = ScratchDatabase::create(&s.database_url, "pedulicovid_bench")
                .await
                .with_context(|| {
                    format!("creating a database on {}", redact_url(&s.database_url))
                })?;
            s.database_url = db.url.clone();
            let d = format!(
                "{} (fresh database on the given server)",
                redact_url(&db.url)
            );
            pg = Some(db);
            d
        } else {
            let path = s
                .database_url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let path = path.split('?').next().unwrap_or(path);
            if std::fs::metadata(path)
                .map(|m| m.len() > 0)
                .unwrap_or(false)
            {
                bail!("{path} exists: the benchmark needs a fresh database (give a new file name)");
            }
            redact_url(&s.database_url)
        };
        Ok(BenchDatabase {
            _dir: dir,
            pg,
            description,
        })
    }

    /// Runs `run` in this database, then drops it unless `keep`: after a
    /// run that succeeded, failed, or was interrupted (Ctrl-C, SIGTERM;
    /// the run is then abandoned where it stands). A 1.5 M campaign's
    /// database is gigabytes, and an interrupted run left it behind.
    pub(crate) async fn around<T>(
        self,
        keep: bool,
        run: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        let result = until_interrupted(run).await;
        self.finish(keep).await;
        result
    }

    /// Drops the PostgreSQL database, unless `keep`.
    async fn finish(self, keep: bool) {
        if let Some(db) = self.pg {
            if keep {
                eprintln!("kept database {}", db.name);
            } else {
                let name = db.name.clone();
                if let Err(e) = db.drop_database().await {
                    eprintln!("warning: could not drop database {name}: {e:#}");
                }
            }
        }
    }
}

/// `run`, or an error once the benchmark is interrupted (Ctrl-C) or told
/// to stop (SIGTERM), whichever comes first: the signals `serve` and
/// `worker` stop on.
async fn until_interrupted<T>(
    run: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::select! {
        result = run => result,
        _ = pedulicovid::cli::shutdown_signal() => bail!("interrupted (Ctrl-C or SIGTERM)"),
    }
}

/// Settings every phase shares: loopback only, the simulator as the one
/// gateway, answering at once and reporting `delivered`.
fn bench_settings(mut s: Settings, args: &BenchArgs) -> Settings {
    s.http.listen = "127.0.0.1:0".into();
    s.http.public_url = None;
    s.simulator.listen = "127.0.0.1:0".into();
    s.simulator.seed = Some(args.seed);
    s.simulator.answer_latency_ms = 0;
    s.simulator.receipt_delay_ms = args.receipt_delay_ms;
    s.simulator.receipt_jitter_ms = args.receipt_jitter_ms;
    // Only the exactly-once counts, not a log of every request: the
    // simulator's memory is not the engine's.
    s.simulator.record_attempts = false;
    s.simulator.rules = vec![];
    s.simulator.mix = OutcomeMix {
        delivered: 1.0,
        undelivered: 0.0,
        rejected: 0.0,
        expired: 0.0,
        invalid: 0.0,
    };
    // The simulator, asked for by name, is the one gateway: a benchmark
    // never reaches a configured carrier.
    s.gateways = vec![GatewaySettings {
        dialect: GatewayDialect::Simulator(Some(
            KannelConfig {
                method: args.kannel_method,
                ..KannelConfig::default()
            }
            .into(),
        )),
        ..GatewaySettings::simulator("sim")
    }];
    for g in &mut s.gateways {
        g.rate_per_sec = 0;
        g.segments_per_sec = 0;
        g.operators.clear();
    }
    s.worker.global_rate_per_sec = 0;
    s.worker.batch_size = args.batch_size;
    s.worker.concurrency = args.concurrency;
    // Polling as deployed (`worker.poll_ms`): idle workers are woken when
    // work comes (the wake-up figure measures how soon).
    s.worker.backoff_initial_ms = 200;
    if args.no_purge {
        s.retention.receipt_payloads_days = 0;
        s.retention.message_data_days = 0;
        s.retention.attempts_days = 0;
        s.retention.audit_days = 0;
    }
    s
}

/// `--purge-backlog`: a campaign finished 200 days ago (every kind past its
/// default retention but the audit trail) with `n` delivered messages.
async fn seed_backlog(store: &Store, n: usize) -> anyhow::Result<()> {
    let old = now_ms() - 200 * 24 * 3600 * 1000;
    store.seed_finished_campaign(n as i64, old).await?;
    Ok(())
}

async fn run_in(s: Settings, args: &BenchArgs, database: String) -> anyhow::Result<BenchReport> {
    let kannel = args.gateway == BenchGateway::Kannel;
    let s = if kannel {
        crate::kannel::settings(s, args)?
    } else {
        bench_settings(s, args)
    };
    let say = |m: &str| {
        if !args.json {
            eprintln!("{m}");
        }
    };
    let n = args.messages;
    let mut report = BenchReport {
        database,
        messages: n as u64,
        workers: args.workers,
        batch_size: args.batch_size,
        concurrency: args.concurrency,
        runtime_threads: s.runtime.worker_threads(),
        callback_concurrency: (!kannel).then_some(s.simulator.callback_concurrency.max(1)),
        analyze: args.analyze,
        kannel_method: args.kannel_method,
        load_avg_at_start: load_avg(),
        log_filter: crate::log_filter(),
        ..Default::default()
    };

    // Registry.
    let store = Store::connect(&s.database_url)
        .await
        .with_context(|| format!("opening database {}", redact_url(&s.database_url)))?;
    store.migrate().await.context("applying migrations")?;
    report.backend = store.backend().as_str();
    say(&format!(
        "bench: {} backend, {n} messages, {} dispatch loops × {} in flight, batches of {}, \
         {} runtime thread(s) each for server and worker",
        report.backend, args.workers, args.concurrency, args.batch_size, report.runtime_threads
    ));
    let t = Instant::now();
    insert_registry(&store, n, args.seed, !args.json, kannel).await?;
    report.registry_s = round3(t.elapsed().as_secs_f64());
    if args.purge_backlog > 0 {
        let t = Instant::now();
        seed_backlog(&store, args.purge_backlog.min(n)).await?;
        say(&format!(
            "purge backlog: a campaign finished 200 days ago, {} messages with attempts and receipts, in {:.1} s; retention {}",
            args.purge_backlog.min(n),
            t.elapsed().as_secs_f64(),
            if args.no_purge { "off (--no-purge)" } else { "on" }
        ));
    }
    report.registry_rows_per_s = round1(n as f64 / report.registry_s.max(1e-9));
    say(&format!(
        "registry: {n} workers in {:.2} s ({:.0} rows/s)",
        report.registry_s, report.registry_rows_per_s
    ));
    store.close().await;

    if !args.no_unlimited {
        let (u, enqueue_s, enqueued) = if kannel {
            let (u, k, enqueue_s, enqueued) = crate::kannel::unlimited_run(&s, args).await?;
            report.kannel = Some(k);
            (u, enqueue_s, enqueued)
        } else {
            unlimited_run(&s, args).await?
        };
        report.enqueue_s = enqueue_s;
        report.enqueued = enqueued;
        report.sends_per_s = Some(u.sends_per_s);
        report.receipts_per_s = Some(u.receipts_per_s);
        report.end_to_end_per_s = Some(u.end_to_end_per_s);
        report.p50_send_ms = Some(u.p50_send_ms);
        report.p99_send_ms = Some(u.p99_send_ms);
        report.peak_rss_mb = metrics::peak_rss_mb().map(round1);
        report.unlimited = Some(u);
        if args.purge_backlog > 0 {
            let store = Store::connect(&s.database_url).await?;
            report.retention = Some(
                store
                    .retention_status(&s.retention.policy(&s.worker))
                    .await?,
            );
            store.close().await;
        }
    }
    if args.rate > 0 {
        let r = rate_run(&s, args).await?;
        report.rate_target = Some(r.rate_target);
        report.rate_achieved = Some(r.rate_achieved);
        report.max_per_100ms = Some(r.max_per_100ms);
        report.rate = Some(r);
    }
    if args.claim_ceiling {
        let c = claim_ceiling(&s, args).await?;
        if args.no_unlimited {
            report.enqueue_s = c.enqueue_s;
            report.enqueued = c.rows;
        }
        report.claim_ceiling = Some(c);
    }
    report.peak_rss_mb_end = metrics::peak_rss_mb().map(round1);
    Ok(report)
}

/// Mobile prefixes spread over the operators (as in the demo registry).
const PREFIXES: [&str; 12] = [
    "811", "812", "813", "821", "852", "814", "856", "817", "859", "838", "896", "881",
];

/// Synthetic worker number `i`: province `i mod 38`, a NIK made unique by
/// encoding `i / 38` in regency, district and serial, a phone number unique
/// by `i` in its subscriber part.
///
/// `deliverable`: the number ends in 1-6 (`…{i / 6:07}{i % 6 + 1}`), the
/// digits the carrier harness's SMSC simulator delivers (its default rules
/// make 0, 7, 8 and 9 fail).
fn synthetic_worker(
    i: usize,
    operators: &[String],
    rng: &mut StdRng,
    deliverable: bool,
) -> NewWorker {
    let provinces = ProvinceCode::all();
    let p = provinces[i % provinces.len()];
    let j = i / provinces.len();
    let serial = j % 9999 + 1;
    let rest = j / 9999;
    let district = rest % 99 + 1;
    let regency = (rest / 99) % 99 + 1;
    let mut day: u32 = rng.gen_range(1..=28);
    if rng.gen_bool(0.6) {
        day += 40;
    }
    let month: u32 = rng.gen_range(1..=12);
    let year: u32 = rng.gen_range(60..=99);
    let code = p.code_str();
    let k = i % PREFIXES.len();
    NewWorker {
        nik: Nik::parse(&format!(
            "{code}{regency:02}{district:02}{day:02}{month:02}{year:02}{serial:04}"
        ))
        .expect("synthetic NIKs are valid (checked by the test below)"),
        full_name: format!(
            "{} {}",
            GIVEN[rng.gen_range(0..GIVEN.len())],
            FAMILY[rng.gen_range(0..FAMILY.len())]
        ),
        phone: Msisdn::parse(&if deliverable {
            format!("+62{}{:07}{}", PREFIXES[k], i / 6, i % 6 + 1)
        } else {
            format!("+62{}{:08}", PREFIXES[k], i)
        })
        .expect("synthetic numbers are valid (checked by the test below)"),
        operator: operators[k].clone(),
        profession: PROFESSIONS[(i / 3) % PROFESSIONS.len()].to_string(),
        facility_code: format!("FKS{code}{:05}", rng.gen_range(1..99999)),
        regency_code: format!("{code}{regency:02}"),
        province_code: p,
        validated: true,
        eligible: true,
    }
}

const GIVEN: [&str; 8] = [
    "Siti",
    "Dewi",
    "Agus",
    "Budi",
    "Made",
    "Ketut",
    "Yohanes",
    "Fransiska",
];
const FAMILY: [&str; 8] = [
    "Rahayu",
    "Lestari",
    "Santoso",
    "Saragih",
    "Nainggolan",
    "Wonda",
    "Ma'ruf",
    "Tanjung",
];

/// Inserts `n` synthetic workers through the import's own upsert, in chunks
/// of [`REGISTRY_CHUNK`], generated as they go (never all in memory).
/// PostgreSQL takes four chunks at once; SQLite has one writer.
/// `deliverable`: see [`synthetic_worker`].
pub(crate) async fn insert_registry(
    store: &Store,
    n: usize,
    seed: u64,
    progress: bool,
    deliverable: bool,
) -> anyhow::Result<()> {
    let operators = PREFIXES
        .iter()
        .map(|p| {
            Msisdn::parse(&format!("0{p}12345678"))
                .map(|m| m.operator().as_str().to_string())
                .map_err(|e| anyhow::anyhow!("prefix {p}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let parallel = match store.backend() {
        Backend::Postgres => 4,
        Backend::Sqlite => 1,
    };
    let done = AtomicU64::new(0);
    let started = Instant::now();
    let last = std::sync::Mutex::new(Instant::now());
    futures::stream::iter((0..n).step_by(REGISTRY_CHUNK))
        .map(|from| {
            let to = (from + REGISTRY_CHUNK).min(n);
            let mut rng = StdRng::seed_from_u64(seed ^ from as u64);
            let chunk: Vec<NewWorker> = (from..to)
                .map(|i| synthetic_worker(i, &operators, &mut rng, deliverable))
                .collect();
            let done = &done;
            let last = &last;
            async move {
                let counts = store.upsert_workers(&chunk, "bench").await?;
                if counts.inserted != chunk.len() as u64 {
                    bail!(
                        "registry chunk at {from}: {} of {} rows inserted (NIK collision?)",
                        counts.inserted,
                        chunk.len()
                    );
                }
                let total =
                    done.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
                if progress {
                    let mut l = last.lock().unwrap_or_else(|p| p.into_inner());
                    if l.elapsed() >= Duration::from_secs(1) {
                        *l = Instant::now();
                        eprintln!(
                            "  registry [{:>5.1}s] {total}/{n}",
                            started.elapsed().as_secs_f64()
                        );
                    }
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(parallel)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Every `every`-th worker of the registry [`insert_registry`] writes with
/// these `n`, `seed` and `deliverable`: generated again the same way, chunk
/// by chunk (for load generators that need real NIKs and numbers).
pub(crate) fn sample_registry(
    n: usize,
    seed: u64,
    deliverable: bool,
    every: usize,
) -> anyhow::Result<Vec<NewWorker>> {
    let operators = PREFIXES
        .iter()
        .map(|p| {
            Msisdn::parse(&format!("0{p}12345678"))
                .map(|m| m.operator().as_str().to_string())
                .map_err(|e| anyhow::anyhow!("prefix {p}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let every = every.max(1);
    let mut out = vec![];
    for from in (0..n).step_by(REGISTRY_CHUNK) {
        let mut rng = StdRng::seed_from_u64(seed ^ from as u64);
        for i in from..(from + REGISTRY_CHUNK).min(n) {
            let w = synthetic_worker(i, &operators, &mut rng, deliverable);
            if i % every == 0 {
                out.push(w);
            }
        }
    }
    Ok(out)
}

/// Creates a benchmark campaign (every validated, eligible worker of
/// `provinces`, or of all provinces; round the clock) and times its
/// enqueue: the campaign, the messages enqueued and the seconds taken.
pub(crate) async fn create_campaign(
    store: &Store,
    renderer: &Renderer,
    s: &Settings,
    name: &str,
    provinces: Vec<String>,
) -> anyhow::Result<(Campaign, u64, f64)> {
    let request = CampaignRequest {
        name: name.into(),
        template: "undangan_registrasi".into(),
        at: None,
        window: Window::from_str("00:00-24:00").map_err(anyhow::Error::msg)?,
        provinces,
        professions: vec![],
        created_by: "bench".into(),
        deadline: None,
    };
    let t = Instant::now();
    let CreatedCampaign {
        campaign, enqueued, ..
    } = campaign::create(store, renderer, s.sms.max_segments, request).await?;
    Ok((campaign, enqueued, round3(t.elapsed().as_secs_f64())))
}

/// Phase 3. Returns the report, the enqueue time and the messages enqueued.
async fn unlimited_run(
    s: &Settings,
    args: &BenchArgs,
) -> anyhow::Result<(UnlimitedReport, f64, u64)> {
    let say = |m: &str| {
        if !args.json {
            eprintln!("{m}");
        }
    };
    let parts = RunParts::start(s, args.workers, args.simulator).await?;
    // The driver's own connections: its look-ups are not the server's.
    let store = Store::connect(&s.database_url).await?;
    let activity0 = store.activity().await?;
    let batches0 = receipt_batches();
    let (c, enqueued, enqueue_s) = create_campaign(
        &store,
        &parts.worker.renderer,
        s,
        "Bench: unlimited",
        vec![],
    )
    .await?;
    // The campaign is claimable from its commit, just before create returns.
    let t0 = Instant::now();
    let t0_ms = now_ms();
    if args.analyze {
        let a = analyze(&store).await;
        say(&format!(
            "ANALYZE health_workers, messages, campaigns: {a:.2} s (the clock runs)"
        ));
    }
    let cpu0 = parts.cpu();
    METRICS.send_latency.reset();
    say(&format!(
        "enqueue: {enqueued} messages in {enqueue_s:.2} s ({:.0} rows/s); sending…",
        enqueued as f64 / enqueue_s.max(1e-9)
    ));
    let n = enqueued;
    let sent0 = METRICS.sent.load(Ordering::Relaxed);
    let receipts0 = METRICS.receipts.load(Ordering::Relaxed);

    let mut sends_by_second = vec![];
    let mut receipts_by_second = vec![];
    let waited = wait_campaign(
        &store,
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
        |elapsed, (sent, cb), (sent_1s, cb_1s)| {
            sends_by_second.push(sent_1s);
            receipts_by_second.push(cb_1s);
            say(&format!(
                "  [{:>5.1}s] sent {sent:>9}/{n} ({sent_1s:>6}/s)  receipts {cb:>9} ({cb_1s:>6}/s)  rss {:.0} MB",
                elapsed.as_secs_f64(),
                current_rss_mb().unwrap_or(0.0)
            ));
        },
    )
    .await;
    let completed = match waited {
        Ok(Wait::Done) => true,
        Ok(Wait::TimedOut { sent, receipts }) => {
            say(&format!(
                "unlimited run stopped after {} s (--timeout-secs): sent {sent}, receipts {receipts} of {n}; \
                 rates are over the part that ran",
                args.timeout_secs
            ));
            false
        }
        Err(e) => {
            parts.stop().await;
            return Err(e);
        }
    };
    let wall = t0.elapsed().as_secs_f64();
    let cpu = parts.cpu().since(&cpu0);
    let snap = METRICS.snapshot();
    let times = store.campaign_times(c.id).await?;
    let cr = store.campaign_report(c.id).await?;
    let duplicates = parts.sim().map_or(0, |h| h.stats().duplicates);
    // Wake-ups go through the worker's own store: on SQLite the signal is
    // in-process only, on PostgreSQL a NOTIFY would reach it from anywhere.
    let wake = if completed {
        Some(wake_latency(&parts.worker.store, n.min(WAKE_SAMPLES)).await?)
    } else {
        None
    };
    parts.stop().await;
    // Every connection of the run is closed: the server's counts are final.
    let activity = store.activity().await?;
    store.close().await;

    let mut u = UnlimitedReport::from_run(RunFigures {
        t0_ms,
        times,
        completed,
        by_status: cr.by_status,
        p50_send_ms: snap.p50_send_ms,
        p99_send_ms: snap.p99_send_ms,
        cpu: Some(cpu.dispatcher + cpu.server + cpu.simulator + cpu.other),
        wall,
        db_cpu: (s.database_url.starts_with("postgres")).then(|| round2(cpu.database)),
        sends_by_second,
        receipts_by_second,
        duplicates,
        wake,
    });
    let finals = u.finals.max(1) as u64;
    u.cpu_s = Some(cpu.rounded());
    u.cpu_us_per_message = Some(cpu.per_message_us(finals));
    if let (Some(a), Some(b)) = (activity, activity0) {
        // The wake-up resends are messages too.
        let messages = (finals + u.wake_latency_ms.as_ref().map_or(0, |w| w.samples)) as f64;
        u.transactions_per_message =
            Some(round2((a.transactions - b.transactions) as f64 / messages));
        u.statements_per_message = a
            .statements
            .zip(b.statements)
            .map(|(a, b)| round2((a - b) as f64 / messages));
    }
    u.segments_per_message = cr.segments_per_message;
    let (batches, rows) = receipt_batches();
    u.receipts_per_batch = (batches > batches0.0)
        .then(|| round2((rows - batches0.1) as f64 / (batches - batches0.0) as f64));
    say(&format!(
        "unlimited run: all sent after {:.2} s, all final after {:.2} s",
        u.sends_s, u.end_to_end_s
    ));
    if let Some(c) = &u.cpu_us_per_message {
        say(&format!(
            "CPU per message: dispatcher {:.1} µs, server {:.1} µs, database {:.1} µs, simulator {:.1} µs, other {:.1} µs; \
             transactions/message {}, statements/message {}",
            c.dispatcher,
            c.server,
            c.database,
            c.simulator,
            c.other,
            u.transactions_per_message.map_or("-".into(), |v| v.to_string()),
            u.statements_per_message.map_or("-".into(), |v| v.to_string()),
        ));
    }
    if let Some(w) = &u.wake_latency_ms {
        say(&format!(
            "wake-up: a resend to an idle worker sent after p50 {:.1} ms, max {:.1} ms ({} samples)",
            w.p50, w.max, w.samples
        ));
    }
    Ok((u, enqueue_s, enqueued))
}

/// Fresh planner statistics of `health_workers`, `messages` and `campaigns`
/// (PostgreSQL; SQLite's planner does not use them), as the engine refreshes
/// them after an import or an enqueue; returns the seconds it took.
pub(crate) async fn analyze(store: &Store) -> f64 {
    let t = Instant::now();
    store
        .refresh_statistics(&["health_workers", "messages", "campaigns"])
        .await;
    t.elapsed().as_secs_f64()
}

/// How [`wait_campaign`] ended (a stall is an error).
pub(crate) enum Wait {
    /// Nothing of the campaign is in flight any more.
    Done,
    /// `--timeout-secs` ran out first; the counts then.
    TimedOut { sent: u64, receipts: u64 },
}

/// Waits for a campaign of `n` messages started at `t0` to have nothing in
/// flight, polling `counts` (sent, receipts so far) every 50 ms and handing
/// `tick` the totals and the last second's increase once a second. The
/// database is asked whenever the counts say it may be done, and every 5 s
/// regardless. An error after 60 s without progress; [`Wait::TimedOut`]
/// after `timeout_secs`.
pub(crate) async fn wait_campaign(
    store: &Store,
    campaign_id: i64,
    n: u64,
    t0: Instant,
    timeout_secs: u64,
    mut counts: impl FnMut() -> (u64, u64),
    mut tick: impl FnMut(Duration, (u64, u64), (u64, u64)),
) -> anyhow::Result<Wait> {
    let mut prev = (0u64, 0u64);
    let mut next_tick = Duration::from_secs(1);
    let mut last_db_check = Instant::now();
    let mut last_progress = (Instant::now(), 0u64);
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (sent, receipts) = counts();
        let elapsed = t0.elapsed();
        if elapsed >= next_tick {
            next_tick += Duration::from_secs(1);
            tick(
                elapsed,
                (sent, receipts),
                (sent.saturating_sub(prev.0), receipts.saturating_sub(prev.1)),
            );
            prev = (sent, receipts);
        }
        if sent + receipts > last_progress.1 {
            last_progress = (Instant::now(), sent + receipts);
        } else if last_progress.0.elapsed() > Duration::from_secs(60) {
            bail!("no progress for 60 s (sent {sent}, receipts {receipts} of {n})");
        }
        if elapsed > Duration::from_secs(timeout_secs) {
            return Ok(Wait::TimedOut { sent, receipts });
        }
        let maybe_done = sent >= n && receipts >= n;
        // The database's count reads the whole campaign (at 1.5 M, 0.7 s
        // of PostgreSQL's CPU, which the run's cost would count): only
        // when the counters say done, or as a fallback twice a minute.
        if maybe_done || last_db_check.elapsed() > Duration::from_secs(30) {
            last_db_check = Instant::now();
            if in_flight(store, campaign_id).await? == 0 {
                return Ok(Wait::Done);
            }
        }
    }
}

/// Messages of campaign `id` not final yet, or final but whose send is not
/// recorded yet.
pub(crate) async fn in_flight(store: &Store, id: i64) -> anyhow::Result<i64> {
    Ok(store.campaign_report(id).await?.in_flight())
}

/// Phase 4: a fresh App whose gateway is limited to `--rate`.
async fn rate_run(s: &Settings, args: &BenchArgs) -> anyhow::Result<RateReport> {
    let say = |m: &str| {
        if !args.json {
            eprintln!("{m}");
        }
    };
    let rate = args.rate;
    let mut s = s.clone();
    for g in &mut s.gateways {
        g.rate_per_sec = rate;
    }
    // Enough provinces for the whole run plus a margin, so the queue never
    // runs dry (workers are spread evenly over the provinces).
    let provinces = ProvinceCode::all();
    let per_province = (args.messages / provinces.len()).max(1) as u64;
    let need = rate as u64 * (args.rate_secs + 5);
    let k = need.div_ceil(per_province).min(provinces.len() as u64) as usize;
    let chosen: Vec<String> = if k >= provinces.len() {
        vec![]
    } else {
        provinces[..k].iter().map(|p| p.code_str()).collect()
    };
    let parts = Parts {
        workers: args.workers,
        ..Parts::ALL
    };
    let app = App::start(s.clone(), parts).await?;
    let sim = app
        .simulator
        .clone()
        .context("the in-process simulator did not start")?;
    let (c, enqueued, _) =
        create_campaign(&app.store, &app.renderer, &s, "Bench: rate limited", chosen).await?;
    if args.analyze {
        analyze(&app.store).await;
    }
    if enqueued < need {
        say(&format!(
            "warning: only {enqueued} messages for {} s at {rate}/s: the queue may run dry",
            args.rate_secs
        ));
    }
    METRICS.send_latency.reset();
    say(&format!(
        "rate run: {enqueued} messages enqueued, gateway limited to {rate}/s, measuring {} s…",
        args.rate_secs
    ));
    let t0 = Instant::now();
    let total = Duration::from_secs(args.rate_secs);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let sim = sim.clone();
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || sample_submits(&sim, t0, total, &stop))
    };
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let base = sim.stats().submits_total;
    let mut prev = 0;
    while t0.elapsed() < total {
        tick.tick().await;
        let now = sim.stats().submits_total - base;
        say(&format!(
            "  [{:>5.1}s] submitted {now:>8} ({:>5}/s)",
            t0.elapsed().as_secs_f64(),
            now - prev
        ));
        prev = now;
    }
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.await.context("rate sampler")?;
    let snap = METRICS.snapshot();
    let cancel = app
        .store
        .control_campaign(c.id, CampaignAction::Cancel, "", "bench")
        .await;
    // The batches in hand are still sent (at the limited rate): let them
    // finish before the simulator stops with the app.
    let drain = Instant::now();
    while cancel.is_ok() && drain.elapsed() < Duration::from_secs(30) {
        // Sending, or leased under any other status (final before its
        // send was recorded).
        let r = app.store.campaign_report(c.id).await?;
        let sending = r.status(Status::Sending) + r.unrecorded;
        if sending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop(Duration::from_secs(15)).await;
    cancel.context("cancelling the rate campaign")?;

    let burst = (rate as u64).div_ceil(10).max(1);
    let m = measure_rate(&samples, Duration::from_secs(1));
    let excess = max_excess_over_rate(&samples, Duration::from_secs(1), f64::from(rate));
    let achieved = round2(m.sends as f64 / m.secs.max(1e-9));
    let r = RateReport {
        rate_target: rate,
        rate_secs: args.rate_secs,
        rate_achieved: achieved,
        rate_error_pct: round2((achieved - rate as f64) / rate as f64 * 100.0),
        burst,
        max_per_100ms: m.max_fixed,
        max_per_100ms_sliding: m.max_sliding,
        within_burst: m.max_fixed <= burst + BURST_TOLERANCE,
        max_excess_over_rate: round2(excess),
        within_token_bucket: excess <= (burst + BURST_TOLERANCE) as f64,
        buckets_over_burst: m
            .buckets
            .iter()
            .filter(|b| **b > burst + BURST_TOLERANCE)
            .count() as u64,
        buckets: m.buckets.len() as u64,
        max_sample_gap_ms: round2(m.max_gap_us as f64 / 1000.0),
        max_per_1s_sliding: m.max_sliding_1s,
        per_100ms: m.buckets.clone(),
        measured_sends: m.sends,
        measured_s: round3(m.secs),
        enqueued,
        p50_send_ms: snap.p50_send_ms,
        p99_send_ms: snap.p99_send_ms,
    };
    say(&format!(
        "rate run: {:.2}/s achieved of {rate}/s ({:+.2} %), at most {} per 100 ms (burst {burst})",
        r.rate_achieved, r.rate_error_pct, r.max_per_100ms
    ));
    Ok(r)
}

/// Reads the simulator's submit counter about every millisecond until
/// `total` has passed (or `stop`): (µs since `t0`, submits since the start).
fn sample_submits(
    sim: &SimHandle,
    t0: Instant,
    total: Duration,
    stop: &AtomicBool,
) -> Vec<(u64, u64)> {
    let base = sim.stats().submits_total;
    let mut out = Vec::with_capacity(total.as_millis() as usize + 1000);
    while !stop.load(Ordering::Relaxed) {
        let c = sim.stats().submits_total - base;
        let t = t0.elapsed();
        out.push((t.as_micros() as u64, c));
        if t >= total {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    out
}

/// What the samples say about the rate after `skip`.
#[derive(Debug, Default, PartialEq)]
struct RateMeasure {
    sends: u64,
    secs: f64,
    max_fixed: u64,
    max_sliding: u64,
    /// Submits per 100 ms bucket, in order.
    buckets: Vec<u64>,
    /// Longest pause between two samples (a starved sampler thread makes a
    /// bucket edge late and the next bucket look fuller).
    max_gap_us: u64,
    /// Most submits in any one-second window.
    max_sliding_1s: u64,
}

/// The most submits beyond `rate` × T over any window T after `skip`:
/// max over sample pairs i < j of (c_j − c_i) − rate × (t_j − t_i), in one
/// pass by keeping the smallest c_i − rate × t_i seen so far.
fn max_excess_over_rate(samples: &[(u64, u64)], skip: Duration, rate: f64) -> f64 {
    let skip_us = skip.as_micros() as u64;
    let start = samples.partition_point(|(t, _)| *t < skip_us);
    let per_us = rate / 1e6;
    let mut lowest = f64::INFINITY;
    let mut excess = 0.0f64;
    for &(t, c) in &samples[start..] {
        let level = c as f64 - per_us * t as f64;
        lowest = lowest.min(level);
        excess = excess.max(level - lowest);
    }
    excess
}

fn measure_rate(samples: &[(u64, u64)], skip: Duration) -> RateMeasure {
    let skip_us = skip.as_micros() as u64;
    let start = samples.partition_point(|(t, _)| *t < skip_us);
    let (Some(&(ta, ca)), Some(&(tb, cb))) = (samples.get(start), samples.last()) else {
        return RateMeasure::default();
    };
    if tb <= ta {
        return RateMeasure::default();
    }
    let at = |t: u64| -> u64 {
        // Count at time t: the last sample taken at or before t.
        let i = samples.partition_point(|(st, _)| *st <= t);
        if i == 0 {
            0
        } else {
            samples[i - 1].1
        }
    };
    const W: u64 = 100_000;
    let mut buckets = vec![];
    let mut b = ta;
    while b + W <= tb {
        buckets.push(at(b + W) - at(b));
        b += W;
    }
    let max_fixed = buckets.iter().copied().max().unwrap_or(0);
    let max_gap_us = samples[start..]
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .max()
        .unwrap_or(0);
    let max_sliding = sliding_max(&samples[start..], W);
    let max_sliding_1s = sliding_max(&samples[start..], 10 * W);
    RateMeasure {
        sends: cb - ca,
        secs: (tb - ta) as f64 / 1e6,
        max_fixed,
        max_sliding,
        buckets,
        max_gap_us,
        max_sliding_1s,
    }
}

/// Most submits in any window of `w` µs that lies within the samples.
fn sliding_max(samples: &[(u64, u64)], w: u64) -> u64 {
    let mut max = 0;
    let mut j = 0;
    for i in 0..samples.len() {
        j = j.max(i);
        while j + 1 < samples.len() && samples[j + 1].0 <= samples[i].0 + w {
            j += 1;
        }
        if samples[j].0 < samples[i].0 + w && j + 1 == samples.len() {
            break; // the window runs past the last sample
        }
        max = max.max(samples[j].1 - samples[i].1);
    }
    max
}

/// Phase 5: claim → record with no gateway, then receipts straight into the
/// store.
async fn claim_ceiling(s: &Settings, args: &BenchArgs) -> anyhow::Result<CeilingReport> {
    let say = |m: &str| {
        if !args.json {
            eprintln!("{m}");
        }
    };
    let store = Store::connect(&s.database_url).await?;
    let renderer = Renderer::load(Some(Path::new(&s.sms.templates_dir)))?;
    let (_, enqueued, enqueue_s) =
        create_campaign(&store, &renderer, s, "Bench: claim ceiling", vec![]).await?;
    if args.analyze {
        analyze(&store).await;
    }
    say(&format!(
        "claim ceiling: {enqueued} messages enqueued in {enqueue_s:.2} s; {} loops claiming {} and recording…",
        args.workers, args.batch_size
    ));
    let body = "PEDULICOVID: Yth. Siti Rahayu (NIK ..1234), Anda terdaftar sebagai sasaran \
                vaksinasi COVID-19 nakes. Registrasi ulang: pedulilindungi.id";
    let claim_us = AtomicU64::new(0);
    let claim_times = std::sync::Mutex::new(Vec::<u64>::new());
    let record_us = AtomicU64::new(0);
    let batches = AtomicU64::new(0);
    let rows = AtomicU64::new(0);
    // Every id recorded, for the receipts below (the store's own order is
    // not kept: they are sorted after the loops).
    let recorded = std::sync::Mutex::new(Vec::<i64>::new());
    let t = Instant::now();
    let loops = (0..args.workers).map(|i| {
        let (store, claim_us, record_us, batches, rows) =
            (&store, &claim_us, &record_us, &batches, &rows);
        let (claim_times, recorded) = (&claim_times, &recorded);
        async move {
            let owner = format!("bench-ceiling-{i}");
            loop {
                let tc = Instant::now();
                let batch = store
                    .claim(&owner, args.batch_size, now_ms() + 300_000)
                    .await?;
                let us = tc.elapsed().as_micros() as u64;
                claim_us.fetch_add(us, Ordering::Relaxed);
                if !batch.is_empty() {
                    claim_times
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(us);
                }
                if batch.is_empty() {
                    return anyhow::Ok(());
                }
                let outcomes: Vec<SendOutcome> = batch
                    .iter()
                    .map(|m| SendOutcome::Sent {
                        id: m.id,
                        gateway: "sim".into(),
                        gateway_message_id: None,
                        body: body.to_string(),
                        encoding: "gsm7",
                        segments: 1,
                    })
                    .collect();
                let tr = Instant::now();
                store.record_outcomes(&owner, &outcomes).await?;
                record_us.fetch_add(tr.elapsed().as_micros() as u64, Ordering::Relaxed);
                recorded
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(batch.iter().map(|m| m.id));
                batches.fetch_add(1, Ordering::Relaxed);
                rows.fetch_add(outcomes.len() as u64, Ordering::Relaxed);
            }
        }
    });
    futures::future::try_join_all(loops).await?;
    let secs = t.elapsed().as_secs_f64();
    let rows = rows.load(Ordering::Relaxed);
    let batches = batches.load(Ordering::Relaxed).max(1);
    let mut out = CeilingReport {
        enqueue_s,
        loops: args.workers,
        batch_size: args.batch_size,
        rows,
        claim_record_per_s: round1(rows as f64 / secs.max(1e-9)),
        claim_ms_per_batch: round3(
            claim_us.load(Ordering::Relaxed) as f64 / 1000.0 / batches as f64,
        ),
        record_ms_per_batch: round3(
            record_us.load(Ordering::Relaxed) as f64 / 1000.0 / batches as f64,
        ),
        ..Default::default()
    };
    let times = claim_times.into_inner().unwrap_or_else(|p| p.into_inner());
    let tenth = (times.len() / 10).max(1).min(times.len());
    let mean_ms = |t: &[u64]| {
        if t.is_empty() {
            0.0
        } else {
            round3(t.iter().sum::<u64>() as f64 / t.len() as f64 / 1000.0)
        }
    };
    out.claim_ms_first_tenth = mean_ms(&times[..tenth]);
    out.claim_ms_last_tenth = mean_ms(&times[times.len() - tenth..]);
    say(&format!(
        "claim ceiling: {rows} rows in {secs:.2} s = {:.0} rows/s (claim {:.1} ms, record {:.1} ms per batch)",
        out.claim_record_per_s, out.claim_ms_per_batch, out.record_ms_per_batch
    ));

    // Receipts: the first ids one per transaction, the next ones batched.
    let single = CEILING_SINGLE_RECEIPTS.min(rows as usize / 2);
    let batched = CEILING_BATCHED_RECEIPTS.min(rows as usize - single);
    // The campaign's first ids, as recorded by the loops above.
    let mut ids = recorded.into_inner().unwrap_or_else(|p| p.into_inner());
    ids.sort_unstable();
    ids.truncate(single + batched);
    let receipt = |id: i64| {
        IncomingReceipt {
        gateway: "sim".into(),
        // The claim loop above recorded every send through "sim".
        signed: false,
        payload: format!(
            "id={id}&status=1&fid=94A1B2C3D4&answer=id%3A94A1B2C3D4+sub%3A001+dlvrd%3A001+\
             submit+date%3A2101140800+done+date%3A2101140800+stat%3ADELIVRD+err%3A000+text%3APEDULICOVID&ts=1610611200"
        ),
        parsed: ParsedReceipt {
            message_id: Some(id),
            gateway_message_id: Some("94A1B2C3D4".into()),
            raw_status: "1".into(),
            error_code: Some("000".into()),
            outcome: ReceiptOutcome::Delivered,
        },
    }
    };
    let tasks = 8;
    let t = Instant::now();
    futures::stream::iter(ids[..single.min(ids.len())].iter().copied())
        .map(|id| {
            let r = receipt(id);
            let store = &store;
            async move { store.apply_receipt(&r.gateway, &r.payload, &r.parsed).await }
        })
        .buffer_unordered(tasks)
        .try_collect::<Vec<_>>()
        .await?;
    let single_s = t.elapsed().as_secs_f64();
    out.receipts_single = single.min(ids.len()) as u64;
    out.receipts_single_per_s = round1(out.receipts_single as f64 / single_s.max(1e-9));
    out.receipts_single_tasks = tasks;

    let rest = &ids[single.min(ids.len())..];
    let batch_tasks = 4;
    let t = Instant::now();
    futures::stream::iter(rest.chunks(CEILING_RECEIPT_BATCH))
        .map(|chunk| {
            let batch: Vec<IncomingReceipt> = chunk.iter().map(|id| receipt(*id)).collect();
            let store = &store;
            async move { store.apply_receipts(&batch).await }
        })
        .buffer_unordered(batch_tasks)
        .try_collect::<Vec<_>>()
        .await?;
    let batched_s = t.elapsed().as_secs_f64();
    out.receipts_batched = rest.len() as u64;
    out.receipts_batched_per_s = round1(rest.len() as f64 / batched_s.max(1e-9));
    out.receipts_batched_tasks = batch_tasks;
    say(&format!(
        "receipt ceiling: {:.0}/s one per transaction ({tasks} tasks), {:.0}/s in batches of {CEILING_RECEIPT_BATCH} ({batch_tasks} tasks)",
        out.receipts_single_per_s, out.receipts_batched_per_s
    ));
    store.close().await;
    Ok(out)
}

pub(crate) fn load_avg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Linux reports CPU times in clock ticks of 1/100 s (USER_HZ on x86-64).
pub(crate) const TICKS_PER_S: f64 = 100.0;

/// utime + stime of one process, seconds.
pub(crate) fn proc_cpu_s(stat: &str) -> Option<f64> {
    // Fields after the parenthesised command name: state is field 3, utime
    // field 14, stime field 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_S)
}

pub(crate) fn process_cpu_s() -> Option<f64> {
    proc_cpu_s(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// CPU seconds of every process named `postgres` (PostgreSQL only).
pub(crate) fn postgres_cpu_s(backend: Backend) -> Option<f64> {
    if backend != Backend::Postgres {
        return None;
    }
    let mut total = 0.0;
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let path = e.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim() != "postgres" {
            continue;
        }
        if let Some(c) = std::fs::read_to_string(path.join("stat"))
            .ok()
            .and_then(|s| proc_cpu_s(&s))
        {
            total += c;
        }
    }
    Some(total)
}

pub(crate) fn current_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub(crate) fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn print_report(r: &BenchReport) {
    println!();
    println!("PEDULICOVID bench ({}: {})", r.backend, r.database);
    println!(
        "  messages            {:>10}   workers {} × concurrency {}, batch {}, runtime threads {}, \
         receipt callbacks in flight ≤ {}",
        r.messages,
        r.workers,
        r.concurrency,
        r.batch_size,
        r.runtime_threads,
        opt(&r.callback_concurrency)
    );
    println!(
        "  registry            {:>10.2} s  ({:.0} rows/s)",
        r.registry_s, r.registry_rows_per_s
    );
    println!(
        "  enqueue             {:>10.2} s  ({} messages)",
        r.enqueue_s, r.enqueued
    );
    if let Some(u) = &r.unlimited {
        if u.completed {
            println!("  unlimited run");
        } else {
            println!(
                "  unlimited run (stopped by --timeout-secs: figures cover the part that ran)"
            );
        }
        println!(
            "    all sent after    {:>10.2} s  → {:>9.0} sends/s",
            u.sends_s, u.sends_per_s
        );
        println!(
            "    all final after   {:>10.2} s  → {:>9.0} end-to-end/s",
            u.end_to_end_s, u.end_to_end_per_s
        );
        println!(
            "    receipts          {:>10.0} /s (first receipt at {:.2} s)",
            u.receipts_per_s, u.first_receipt_s
        );
        println!(
            "    send latency      {:>10.2} ms p50, {:.2} ms p99",
            u.p50_send_ms, u.p99_send_ms
        );
        println!(
            "    CPU               {:>10.1} s in this process ({:.2} cores){}",
            u.process_cpu_s,
            u.process_cores,
            u.db_cpu_s
                .map(|d| format!(", {d:.1} s in postgres"))
                .unwrap_or_default()
        );
        for (k, v) in &u.by_status {
            println!("    {k:<18}{v:>10}");
        }
        println!("    duplicates        {:>10}", u.duplicates);
        println!("    peak RSS          {:>10} MB", opt(&r.peak_rss_mb));
    }
    if let Some(k) = &r.kannel {
        crate::kannel::print_report(k);
    }
    if let Some(q) = &r.rate {
        println!("  rate run ({} s)", q.rate_secs);
        println!(
            "    achieved          {:>10.2} /s of {} ({:+.2} %)",
            q.rate_achieved, q.rate_target, q.rate_error_pct
        );
        println!(
            "    max per 100 ms    {:>10}   (burst {}, sliding max {}) {}",
            q.max_per_100ms,
            q.burst,
            q.max_per_100ms_sliding,
            if q.within_burst { "ok" } else { "OVER BURST" }
        );
        println!(
            "    buckets > burst+2 {:>10}   of {} (longest sampling pause {:.1} ms)",
            q.buckets_over_burst, q.buckets, q.max_sample_gap_ms
        );
        println!(
            "    excess over rate  {:>10.1}   (token bucket of {}: any window holds ≤ rate × T + burst) {}",
            q.max_excess_over_rate,
            q.burst,
            if q.within_token_bucket { "ok" } else { "OVER BURST" }
        );
    }
    if let Some(c) = &r.claim_ceiling {
        println!(
            "  claim ceiling ({} loops, batches of {})",
            c.loops, c.batch_size
        );
        println!(
            "    claim + record    {:>10.0} rows/s  (claim {:.2} ms, record {:.2} ms per batch)",
            c.claim_record_per_s, c.claim_ms_per_batch, c.record_ms_per_batch
        );
        println!(
            "    claim, full queue {:>10.2} ms per batch; nearly drained {:.2} ms",
            c.claim_ms_first_tenth, c.claim_ms_last_tenth
        );
        println!(
            "    receipts single   {:>10.0} /s ({} tasks)",
            c.receipts_single_per_s, c.receipts_single_tasks
        );
        println!(
            "    receipts batched  {:>10.0} /s ({} tasks, {} per batch)",
            c.receipts_batched_per_s, c.receipts_batched_tasks, CEILING_RECEIPT_BATCH
        );
    }
    println!(
        "  peak RSS at end     {:>10} MB   (load average at start {}, logs at {})",
        opt(&r.peak_rss_mb_end),
        opt(&r.load_avg_at_start),
        r.log_filter
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_workers_are_unique_and_valid() {
        for deliverable in [false, true] {
            let ops = vec!["telkomsel".to_string(); PREFIXES.len()];
            let mut rng = StdRng::seed_from_u64(1);
            let mut niks = std::collections::HashSet::new();
            let mut phones = std::collections::HashSet::new();
            let mut seen = std::collections::HashSet::new();
            for i in (0..2_000_000).step_by(997).chain(0..5_000) {
                seen.insert(i);
                // Parses its NIK and number, and panics on an invalid one.
                let w = synthetic_worker(i, &ops, &mut rng, deliverable);
                assert!(ProvinceCode::all().contains(&w.province_code), "{i}");
                if deliverable {
                    // The harness's SMSC simulator delivers numbers ending in 1-6.
                    assert!(
                        w.phone.as_e164().ends_with(['1', '2', '3', '4', '5', '6']),
                        "{i}"
                    );
                }
                let nik = w.nik.as_str();
                niks.insert(nik[..6].to_string() + &nik[12..]);
                phones.insert(w.phone.as_e164().to_string());
            }
            assert_eq!(niks.len(), seen.len());
            assert_eq!(phones.len(), seen.len(), "deliverable {deliverable}");
        }
    }

    #[test]
    fn rate_is_measured_after_the_first_second() {
        // 500/s: one submit every 2 ms, a burst of 50 at the start.
        let mut samples = vec![];
        let mut c = 50;
        for t in 0..=10_000u64 {
            if t % 2 == 0 && t > 0 {
                c += 1;
            }
            samples.push((t * 1000, c));
        }
        let m = measure_rate(&samples, Duration::from_secs(1));
        assert_eq!(m.sends, 4500);
        assert!((m.secs - 9.0).abs() < 1e-9);
        assert_eq!(m.max_fixed, 50);
        assert!(m.max_sliding <= 51, "{}", m.max_sliding);
        assert!(
            (500..=501).contains(&m.max_sliding_1s),
            "{}",
            m.max_sliding_1s
        );
        assert_eq!(m.buckets.len(), 90);
    }

    #[test]
    fn excess_over_rate_is_the_token_bucket_burst() {
        // 500/s steady; at 5 s a 60 ms gap, then 60 submits at once.
        let mut samples = vec![];
        let mut c = 0u64;
        for t in 0..=10_000u64 {
            let gap = (5_000..5_060).contains(&t);
            if t % 2 == 0 && t > 0 && !gap {
                c += 1;
            }
            if t == 5_060 {
                c += 30 + 30;
            }
            samples.push((t * 1000, c));
        }
        let steady = max_excess_over_rate(&samples[..4_000], Duration::from_secs(1), 500.0);
        assert!(steady <= 1.0, "{steady}");
        let burst = max_excess_over_rate(&samples, Duration::from_secs(1), 500.0);
        // 60 at once: within 1 ms nothing of the rate is due, so all of it
        // is excess (a limiter with burst 50 would never allow it).
        assert!((59.0..=60.5).contains(&burst), "{burst}");
    }

    #[test]
    fn cpu_time_parses() {
        let stat = "123 (tokio (rt)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        assert_eq!(proc_cpu_s(stat), Some(3.0));
    }
}
