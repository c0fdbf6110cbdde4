//! The command line: `pedulicovid <command>`.

use crate::domain::notice::FreeText;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::app::{App, Parts};
use crate::campaign::{self, fmt_wib, CampaignRequest, Pace, Window};
use crate::config::{Dialect, Settings};
use crate::demo;
use crate::domain::{mask_name, mask_nik, mask_phone};
use crate::registry;
use crate::render::Renderer;
use crate::simulator::{parse_rules, OutcomeMix, Simulator};
use crate::store::{redact_url, CampaignAction, Store};

/// SMS PEDULICOVID notification dispatcher.
#[derive(Debug, Parser)]
#[command(name = "pedulicovid", version, about, propagate_version = true)]
pub struct Cli {
    /// Settings file (default: ./pedulicovid.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Database URL: sqlite://FILE or postgres://… (overrides settings).
    #[arg(long, global = true, value_name = "URL", env = "DATABASE_URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A whole campaign on a synthetic registry, for a first look.
    Demo(DemoArgs),
    /// Migrations + HTTP server + worker + housekeeping in one process.
    Run,
    /// HTTP server (receipts, API) and housekeeping only.
    Serve,
    /// Dispatch worker only (run several against one PostgreSQL).
    Worker {
        /// Worker loops in this process.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Import health workers from the One Data CSV export.
    Import {
        /// The CSV file (header line required; see the README for columns).
        file: PathBuf,
        /// Write every rejected row (line, field, reason) to this CSV file.
        #[arg(long, value_name = "FILE")]
        rejects: Option<PathBuf>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create and inspect campaigns.
    #[command(subcommand)]
    Campaign(CampaignCmd),
    /// Non-recipients: workers whose notice did not arrive.
    #[command(subcommand)]
    Flags(FlagsCmd),
    /// Render a template for a sample worker.
    Template {
        /// Template name (without .tera); omit to list them.
        name: Option<String>,
    },
    /// The built-in carrier simulator (speaks Kannel's sendsms dialect).
    CarrierSim(SimArgs),
    /// Measure a campaign against the in-process simulator (`bench
    /// receipts`: receipt-callback ingest over HTTP).
    #[command(args_conflicts_with_subcommands = true)]
    Bench {
        #[command(subcommand)]
        what: Option<BenchCmd>,
        #[command(flatten)]
        args: crate::bench::BenchArgs,
    },
    /// Carrier gateways as configured and as the workers last saw them.
    #[command(subcommand)]
    Gateways(GatewaysCmd),
    /// API tokens (create prints the token once; only its hash is kept).
    #[command(subcommand)]
    Token(TokenCmd),
    /// Help-desk work: search, a worker's timeline, resend.
    #[command(subcommand)]
    Support(SupportCmd),
    /// Chatbot re-registrations waiting for One Data validation.
    #[command(subcommand)]
    Reregistrations(ReregistrationsCmd),
}

#[derive(Debug, Subcommand)]
enum ReregistrationsCmd {
    /// Re-registrations, newest first (NIKs, names and numbers masked).
    List {
        /// pending, confirmed, approved, superseded, applied, or all.
        #[arg(long, default_value = "pending")]
        status: String,
    },
    /// Export the pending ones in full (NIK, name, old and new number) as
    /// CSV for One Data validation (audited; names guarded against
    /// spreadsheet formulas; the file is created readable by its owner
    /// only). A later import that carries the new number for the NIK
    /// confirms the re-registration and sends the notice.
    Export {
        /// Output file (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Approve a pending re-registration after validating the new number
    /// another way (audited): the notice goes to the new number.
    Approve {
        /// The re-registration's id (from `reregistrations list`).
        id: i64,
        /// How the number was validated (kept in the audit trail).
        #[arg(long)]
        note: String,
        /// The staff member's name, for the audit trail.
        #[arg(long)]
        staff: String,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCmd {
    /// Receipt-callback ingest: N distinct Kannel DLR callbacks over C
    /// keep-alive connections to the HTTP server alone, every one checked in
    /// the database.
    Receipts(crate::bench_receipts::ReceiptBenchArgs),
}

#[derive(Debug, Subcommand)]
enum GatewaysCmd {
    /// Each configured gateway: circuit-breaker state and since when, the
    /// last error recorded, its rates and routes (never used = closed).
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Replace a gateway's generated callback secret (audited). The old one
    /// keeps verifying for `callback_secret_grace_secs`, so receipts for
    /// messages already sent still land; running processes pick the new one
    /// up within half a minute.
    RotateSecret {
        /// The gateway's configured name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCmd {
    /// Create a token and print it once.
    Create {
        /// Unique name (letters, digits, '.', '-', '_', '@'), e.g. chatbot-kominfo.
        #[arg(long)]
        name: String,
        /// operator, support, chatbot or carrier.
        #[arg(long)]
        role: String,
    },
    /// All tokens (never the tokens themselves).
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by name or id; it stops working at once.
    Revoke {
        /// The token's name or its numeric id (from `token list`).
        id_or_name: String,
    },
}

#[derive(Debug, Subcommand)]
enum SupportCmd {
    /// Find workers by full NIK, phone number or part of a name (masked output).
    Search {
        /// A full NIK, a phone number in any common format, or 3+ letters of a
        /// name; `-` reads it from standard input (keeps a NIK out of `ps`
        /// and shell history).
        query: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Everything that happened to one worker, oldest first.
    Timeline {
        /// The worker's full NIK; `-` reads it from standard input (keeps it
        /// out of `ps` and shell history).
        nik: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Queue the worker's notice again (audited; at most 3 per number per day).
    Resend {
        /// The worker's full NIK; `-` reads it from standard input (keeps it
        /// out of `ps` and shell history).
        nik: String,
        /// Why (kept in the audit trail), e.g. "called the help desk".
        #[arg(long)]
        reason: String,
        /// The staff member's name, for the audit trail.
        #[arg(long)]
        staff: String,
    },
}

#[derive(Debug, Subcommand)]
enum CampaignCmd {
    /// Validate the template and enqueue every eligible, validated worker.
    Create {
        /// A name operators recognise, e.g. "Undangan nakes tahap 1".
        #[arg(long)]
        name: String,
        /// A template in templates/sms/ without `.tera`, e.g. undangan_registrasi.
        #[arg(long)]
        template: String,
        /// Start time: RFC 3339, or "YYYY-MM-DD HH:MM" in WIB. Default: now.
        #[arg(long)]
        at: Option<String>,
        /// Local send window, applied in each recipient's time zone.
        #[arg(long, default_value = "08:00-20:00")]
        window: String,
        /// Only these province codes (repeat or comma-separate).
        #[arg(long, value_delimiter = ',')]
        province: Vec<String>,
        /// Only these professions (repeat or comma-separate; case-insensitive).
        #[arg(long, value_delimiter = ',')]
        profession: Vec<String>,
        /// Unsent by then: expired and flagged `deadline` (same formats as --at).
        #[arg(long)]
        deadline: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Move the start of a campaign that has not finished (audited): its
    /// queued messages become due when each recipient's window opens after
    /// the new time. A paused campaign stays paused.
    Schedule {
        /// Campaign id (from `campaign list`).
        id: i64,
        /// New start: RFC 3339, or "YYYY-MM-DD HH:MM" in WIB (as for create).
        #[arg(long)]
        at: String,
    },
    /// Stop sending (effective within a second; the batch in flight finishes).
    Pause {
        /// Campaign id.
        id: i64,
        /// Why (shown with the campaign and kept in the audit trail).
        #[arg(long, default_value = "paused by operator")]
        reason: String,
    },
    /// Continue a paused campaign (nothing already sent is sent again);
    /// it is `scheduled` again while its start is still ahead.
    Resume {
        /// Campaign id.
        id: i64,
    },
    /// End every unsent message `cancelled`.
    Cancel {
        /// Campaign id.
        id: i64,
    },
    /// All campaigns.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// One campaign with counts per status, open flags per reason,
    /// throughput and ETA.
    Show {
        /// Campaign id.
        id: i64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum FlagsCmd {
    /// Open flags (names, NIKs and numbers masked).
    List {
        /// Only this campaign's flags.
        #[arg(long)]
        campaign: Option<i64>,
        /// Include resolved flags.
        #[arg(long)]
        all: bool,
    },
    /// Export flags with full contact data, for re-registration outreach
    /// (audited; names guarded against spreadsheet formulas).
    Export {
        /// Only this campaign's flags.
        #[arg(long)]
        campaign: Option<i64>,
        /// CSV (the only format for now).
        #[arg(long, default_value_t = true)]
        csv: bool,
        /// Output file (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Include resolved flags.
        #[arg(long)]
        all: bool,
    },
    /// Mark a flag resolved by hand, with a note (audited).
    Resolve {
        /// The flag's id (from `flags list`).
        flag_id: i64,
        /// What was done (kept in the audit trail).
        #[arg(long)]
        note: String,
        /// The staff member's name, for the audit trail.
        #[arg(long)]
        staff: String,
    },
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Health workers in the synthetic registry.
    #[arg(long, default_value_t = 10_000)]
    workers: usize,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Random seed for the registry and outcomes.
    #[arg(long, default_value_t = 2021)]
    seed: u64,
}

#[derive(Debug, Args)]
struct SimArgs {
    /// Listen address.
    #[arg(long)]
    listen: Option<String>,
    /// Outcome by number suffix, e.g. "0=undelivered,9=expired,8=rejected,7=invalid".
    #[arg(long)]
    rules: Option<String>,
    /// Outcome proportions, e.g. "delivered=0.9,undelivered=0.05,rejected=0.05".
    #[arg(long)]
    mix: Option<String>,
    /// Delay before each sendsms answer (ms).
    #[arg(long)]
    answer_latency_ms: Option<u64>,
    /// Delay before each receipt callback (ms).
    #[arg(long)]
    receipt_delay_ms: Option<u64>,
    /// Which carrier API to speak: kannel, jasmin or json.
    #[arg(long)]
    dialect: Option<crate::simulator::SimDialect>,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet = matches!(
        cli.command,
        Command::Demo(_) | Command::Bench { .. } | Command::Gateways(_)
    );
    init_tracing(quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

fn settings(cli: &Cli) -> anyhow::Result<Settings> {
    let mut s = Settings::load(cli.config.as_deref())?;
    if let Some(url) = &cli.database_url {
        s.database_url = url.clone();
    }
    Ok(s)
}

async fn open_store(s: &Settings) -> anyhow::Result<Store> {
    let store = Store::connect(&s.database_url)
        .await
        .with_context(|| format!("opening database {}", redact_url(&s.database_url)))?;
    store.migrate().await.context("applying migrations")?;
    Ok(store)
}

async fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Demo(a) => {
            let mut s = settings(&cli)?;
            if cli.database_url.is_none() {
                s.database_url = String::new(); // demo picks a fresh temporary SQLite file
            }
            demo::run(s, a.workers, a.seed, a.json).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { what, args } => {
            let s = settings(&cli)?;
            match what {
                None => crate::bench::run(s, args.clone(), cli.database_url.is_some()).await?,
                Some(BenchCmd::Receipts(a)) => {
                    crate::bench_receipts::run(s, a.clone(), cli.database_url.is_some()).await?
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Gateways(GatewaysCmd::Status { json }) => {
            gateways_status(&settings(&cli)?, *json).await
        }
        Command::Gateways(GatewaysCmd::RotateSecret { name }) => {
            rotate_secret(&settings(&cli)?, name).await
        }
        Command::Run => serve_until_signal(settings(&cli)?, Parts::ALL).await,
        Command::Serve => serve_until_signal(settings(&cli)?, Parts::SERVE).await,
        Command::Worker { concurrency } => {
            let parts = Parts {
                workers: (*concurrency).max(1),
                ..Parts::WORKER
            };
            serve_until_signal(settings(&cli)?, parts).await
        }
        Command::Migrate => {
            let s = settings(&cli)?;
            let store = open_store(&s).await?;
            println!("migrations applied ({})", store.backend().as_str());
            Ok(ExitCode::SUCCESS)
        }
        Command::Import {
            file,
            rejects,
            json,
        } => import(&settings(&cli)?, file, rejects.as_deref(), *json).await,
        Command::Campaign(c) => campaign_cmd(&settings(&cli)?, c).await,
        Command::Flags(f) => flags_cmd(&settings(&cli)?, f).await,
        Command::Token(t) => token_cmd(&settings(&cli)?, t).await,
        Command::Support(c) => support_cmd(&settings(&cli)?, c).await,
        Command::Reregistrations(c) => reregistrations_cmd(&settings(&cli)?, c).await,
        Command::Template { name } => {
            let s = settings(&cli)?;
            let r = Renderer::load(Some(std::path::Path::new(&s.sms.templates_dir)))?;
            match name {
                None => {
                    for n in r.names() {
                        println!("{n}");
                    }
                }
                Some(n) => {
                    let text = r.validate(n, s.sms.max_segments)?;
                    println!("{}", text.as_str());
                    eprintln!(
                        "{} units, {}, {} segment(s)",
                        text.units(),
                        text.encoding().as_str(),
                        text.segments()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::CarrierSim(a) => {
            let s = settings(&cli)?;
            let mut cfg = s.simulator.clone();
            if let Some(l) = &a.listen {
                cfg.listen = l.clone();
            }
            if let Some(r) = &a.rules {
                cfg.rules = parse_rules(r).map_err(anyhow::Error::msg)?;
            }
            if let Some(m) = &a.mix {
                cfg.mix = parse_mix(m)?;
            }
            if let Some(v) = a.answer_latency_ms {
                cfg.answer_latency_ms = v;
            }
            if let Some(v) = a.receipt_delay_ms {
                cfg.receipt_delay_ms = v;
            }
            if let Some(d) = a.dialect {
                cfg.dialect = d;
            }
            let sim = Simulator::bind(cfg).await?;
            println!(
                "carrier-sim ({}): {}",
                sim.handle().dialect().as_str(),
                sim.send_url()
            );
            sim.run(async {
                shutdown_signal().await;
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One gateway in `gateways status`.
#[derive(Debug, serde::Serialize)]
struct GatewayStatus {
    name: String,
    /// In the settings (false: only a `gateway_health` row is left of it).
    configured: bool,
    dialect: Option<String>,
    /// Place in the routing order (1 = first), when configured.
    position: Option<usize>,
    /// Operators routed here first; empty = a default route (any operator).
    operators: Vec<String>,
    /// Messages and segments per second, all workers together (0 = unlimited).
    rate_per_sec: Option<u32>,
    segments_per_sec: Option<u32>,
    breaker_threshold: Option<u32>,
    breaker_cool_down_secs: Option<u64>,
    /// `closed`, `open` or `half_open`; `closed` when never recorded.
    state: String,
    /// When the state was recorded (ms since the epoch, and in WIB).
    since_ms: Option<i64>,
    since: Option<String>,
    /// What the worker recorded with it (e.g. "20 consecutive failures").
    last_error: Option<String>,
    /// The worker process that recorded it.
    worker: Option<String>,
    /// Open: when the next probe request may go out.
    probe_after: Option<String>,
    /// No state recorded yet: the breaker never moved (or the gateway was
    /// never used).
    never_recorded: bool,
    /// `dialect = "simulator"`: the built-in simulator, which delivers to
    /// nobody.
    simulator: bool,
}

async fn rotate_secret(s: &Settings, name: &str) -> anyhow::Result<ExitCode> {
    let Some(g) = s.gateways.iter().find(|g| g.name == name) else {
        anyhow::bail!(
            "no gateway named {name:?} in the settings (configured: {})",
            s.gateways
                .iter()
                .map(|g| g.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    if !g.callback_secret.is_empty() {
        anyhow::bail!(
            "gateway {name:?} has a configured callback_secret: rotate it in the settings \
             (move the old value to callback_secret_previous with callback_secret_previous_until)"
        );
    }
    let store = open_store(s).await?;
    let at = store.rotate_gateway_secret(name, &cli_actor()).await;
    store.close().await;
    let at = at?;
    let grace =
        i64::try_from(g.callback_secret_grace_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    println!(
        "gateway {name}: callback secret rotated; the previous one verifies until {}",
        fmt_wib(at.saturating_add(grace))
    );
    Ok(ExitCode::SUCCESS)
}

async fn gateways_status(s: &Settings, json: bool) -> anyhow::Result<ExitCode> {
    let store = open_store(s).await?;
    let mut rows: std::collections::BTreeMap<String, (String, String, String, i64)> = store
        .gateway_states()
        .await?
        .into_iter()
        .map(|g| (g.gateway, (g.state, g.detail, g.worker, g.changed_at)))
        .collect();
    store.close().await;
    let mut out = vec![];
    for (i, g) in s.gateways.iter().enumerate() {
        let row = rows.remove(&g.name);
        let probe_after = row.as_ref().and_then(|(state, _, _, at)| {
            (state == "open").then(|| {
                let cool_down = i64::try_from(g.breaker_cool_down_secs).unwrap_or(i64::MAX);
                fmt_wib(at.saturating_add(cool_down.saturating_mul(1000)))
            })
        });
        out.push(GatewayStatus {
            name: g.name.clone(),
            configured: true,
            dialect: Some(g.dialect.to_string()),
            position: Some(i + 1),
            operators: g.operators.clone(),
            rate_per_sec: Some(g.rate_per_sec),
            segments_per_sec: Some(g.segments_per_sec),
            breaker_threshold: Some(g.breaker_threshold),
            breaker_cool_down_secs: Some(g.breaker_cool_down_secs),
            state: row
                .as_ref()
                .map_or_else(|| "closed".to_string(), |r| r.0.clone()),
            since_ms: row.as_ref().map(|r| r.3),
            since: row.as_ref().map(|r| fmt_wib(r.3)),
            last_error: row.as_ref().map(|r| r.1.clone()).filter(|d| !d.is_empty()),
            worker: row.as_ref().map(|r| r.2.clone()),
            probe_after,
            never_recorded: row.is_none(),
            simulator: g.dialect == Dialect::Simulator,
        });
    }
    // States of gateways no longer in the settings, so nothing is hidden.
    for (name, (state, detail, worker, at)) in rows {
        out.push(GatewayStatus {
            name,
            configured: false,
            dialect: None,
            position: None,
            operators: vec![],
            rate_per_sec: None,
            segments_per_sec: None,
            breaker_threshold: None,
            breaker_cool_down_secs: None,
            state,
            since_ms: Some(at),
            since: Some(fmt_wib(at)),
            last_error: Some(detail).filter(|d| !d.is_empty()),
            worker: Some(worker),
            probe_after: None,
            never_recorded: false,
            simulator: false,
        });
    }
    if json {
        println!(
            "{}",
            serde_json::json!({
                "global_rate_per_sec": s.worker.global_rate_per_sec,
                "gateways": out,
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    let rate = |r: Option<u32>| match r {
        None => "-".to_string(),
        Some(0) => "unlimited".to_string(),
        Some(r) => format!("{r}/s"),
    };
    println!(
        "{:<3} {:<14} {:<9} {:<10} {:<24} {:<10} {:<10} {:<10} {:<26} last error",
        "#", "gateway", "dialect", "state", "since", "rate", "segments", "breaker", "routes"
    );
    for g in &out {
        let routes = if !g.configured {
            "(not in the settings)".to_string()
        } else if g.operators.is_empty() {
            "default (any operator)".to_string()
        } else {
            g.operators.join(",")
        };
        let since = g.since.clone().unwrap_or_else(|| "never used".into());
        let breaker = match (g.breaker_threshold, g.breaker_cool_down_secs) {
            (Some(0), _) => "never".to_string(),
            (Some(t), Some(c)) => format!("{t} / {c}s"),
            _ => "-".to_string(),
        };
        let mut last = g.last_error.clone().unwrap_or_else(|| "-".into());
        if let Some(p) = &g.probe_after {
            last.push_str(&format!(" (probe after {p})"));
        }
        if g.simulator {
            last.push_str(" (WARNING: the built-in simulator: messages sent here reach nobody)");
        }
        println!(
            "{:<3} {:<14} {:<9} {:<10} {:<24} {:<10} {:<10} {:<10} {:<26} {last}",
            g.position.map_or_else(|| "-".into(), |p| p.to_string()),
            g.name,
            g.dialect.as_deref().unwrap_or("-"),
            g.state,
            since,
            rate(g.rate_per_sec),
            rate(g.segments_per_sec),
            breaker,
            routes,
        );
    }
    println!(
        "global rate: {}; breaker = consecutive failures that open it / cool-down before \
         one probe; routes: a number's operator first, then default routes, then the rest",
        rate(Some(s.worker.global_rate_per_sec))
    );
    Ok(ExitCode::SUCCESS)
}

/// `delivered=0.9,undelivered=0.1` → an [`OutcomeMix`] (unnamed outcomes 0).
fn parse_mix(s: &str) -> anyhow::Result<OutcomeMix> {
    let mut mix = OutcomeMix {
        delivered: 0.0,
        undelivered: 0.0,
        rejected: 0.0,
        expired: 0.0,
        invalid: 0.0,
    };
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .with_context(|| format!("mix {part:?}: expected OUTCOME=WEIGHT"))?;
        let v: f64 = v
            .trim()
            .parse()
            .with_context(|| format!("mix {part:?}: weight is not a number"))?;
        match k.trim() {
            "delivered" => mix.delivered = v,
            "undelivered" => mix.undelivered = v,
            "rejected" => mix.rejected = v,
            "expired" => mix.expired = v,
            "invalid" => mix.invalid = v,
            other => anyhow::bail!(
                "mix: unknown outcome {other:?} (delivered, undelivered, rejected, expired, invalid)"
            ),
        }
    }
    Ok(mix)
}

async fn serve_until_signal(s: Settings, parts: Parts) -> anyhow::Result<ExitCode> {
    // `run`, `serve`, `worker` are production commands (`demo` is not): a
    // simulator gateway here is almost surely a settings mistake.
    for g in s
        .gateways
        .iter()
        .filter(|g| g.dialect == Dialect::Simulator)
    {
        let msg = format!(
            "gateway {:?} is the built-in simulator: messages sent here reach nobody \
             (set its dialect and URL to a real gateway; use `pedulicovid demo` for a trial)",
            g.name
        );
        tracing::warn!(gateway = %g.name, "{msg}");
        eprintln!("WARNING: {msg}");
    }
    let app = App::start(s, parts).await?;
    if let Some(addr) = app.http_addr {
        eprintln!("pedulicovid listening on http://{addr}");
    }
    if let Some(sim) = &app.simulator {
        eprintln!("built-in carrier simulator on {}", sim.sendsms_url());
    }
    shutdown_signal().await;
    eprintln!("shutting down: finishing the batch in hand");
    app.stop(Duration::from_secs(30)).await;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Rejections `pedulicovid import` prints (without `--json`).
const SHOWN_REJECTIONS: usize = 20;

async fn import(
    s: &Settings,
    file: &std::path::Path,
    rejects: Option<&std::path::Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = open_store(s).await?;
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress_bar(size, "importing");
    // Rejections go to the rejects file as they are found; the report keeps
    // only what is printed, so memory does not grow with the bad rows.
    let mut out = match rejects {
        Some(path) => {
            let f = crate::export::create_private_file(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let mut w = csv::Writer::from_writer(std::io::BufWriter::new(f));
            w.write_record(["line", "field", "reason"])?;
            Some(w)
        }
        None => None,
    };
    let keep = if json {
        registry::KEPT_REJECTIONS
    } else {
        SHOWN_REJECTIONS
    };
    let report = registry::import_csv_streaming(
        &store,
        std::io::BufReader::new(f),
        keep,
        |r| match out.as_mut() {
            Some(w) => w
                .write_record([r.line.to_string().as_str(), &r.field, &r.reason])
                .map_err(std::io::Error::other),
            None => Ok(()),
        },
        |pos| bar.set_position(pos.min(size)),
    )
    .await?;
    bar.finish_and_clear();
    if let (Some(mut w), Some(path)) = (out, rejects) {
        w.flush()
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} rows: {} accepted ({} new, {} updated, {} unchanged, {} phone changes), {} rejected",
            report.rows,
            report.accepted,
            report.counts.inserted,
            report.counts.updated,
            report.counts.unchanged,
            report.counts.phone_changes,
            report.rejected_rows
        );
        if report.counts.reregistrations_confirmed > 0 {
            println!(
                "{} pending chatbot re-registration(s) confirmed (notices queued to the new numbers)",
                report.counts.reregistrations_confirmed
            );
        }
        for r in report.rejections.iter().take(SHOWN_REJECTIONS) {
            println!("  line {}: {}: {}", r.line, r.field, r.reason);
        }
        if report.rejections_total > SHOWN_REJECTIONS as u64 {
            println!(
                "  … {} more{}",
                report.rejections_total - SHOWN_REJECTIONS as u64,
                if rejects.is_some() {
                    " (see the rejects file)"
                } else {
                    " (use --rejects FILE for all)"
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A progress bar on a terminal, nothing otherwise.
pub fn progress_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>10} [{bar:40}] {percent:>3}% {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

async fn campaign_cmd(s: &Settings, c: &CampaignCmd) -> anyhow::Result<ExitCode> {
    let store = open_store(s).await?;
    match c {
        CampaignCmd::Create {
            name,
            template,
            at,
            window,
            province,
            profession,
            deadline,
            json,
        } => {
            let renderer = Renderer::load(Some(std::path::Path::new(&s.sms.templates_dir)))?;
            let req = CampaignRequest {
                name: name.clone(),
                template: template.clone(),
                at: at
                    .as_deref()
                    .map(campaign::parse_time)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("--at: {e}"))?,
                window: window
                    .parse::<Window>()
                    .map_err(|e| anyhow::anyhow!("--window: {e}"))?,
                provinces: province.clone(),
                professions: profession.clone(),
                created_by: cli_actor(),
                deadline: deadline
                    .as_deref()
                    .map(campaign::parse_time)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("--deadline: {e}"))?,
            };
            // Audited (`campaign.create`) in the creating transaction.
            let crate::store::CreatedCampaign {
                campaign: c,
                enqueued: n,
            } = campaign::create(&store, &renderer, s.sms.max_segments, req).await?;
            if *json {
                println!("{}", serde_json::json!({"campaign": c, "enqueued": n}));
            } else {
                println!(
                    "campaign {} {:?}: {} messages enqueued, starts {}",
                    c.id,
                    c.name,
                    n,
                    fmt_wib(c.scheduled_at)
                );
            }
        }
        CampaignCmd::Schedule { id, at } => {
            let at = campaign::parse_time(at.trim()).map_err(|e| anyhow::anyhow!("--at: {e}"))?;
            let crate::store::RescheduledCampaign {
                campaign: c,
                retimed: n,
            } = campaign::reschedule(&store, *id, at, &cli_actor()).await?;
            println!(
                "campaign {} is {}, starts {}; {n} queued message(s) re-timed",
                c.id,
                c.status,
                fmt_wib(c.scheduled_at)
            );
        }
        CampaignCmd::Pause { id, reason } => {
            control(&store, *id, CampaignAction::Pause, reason).await?
        }
        CampaignCmd::Resume { id } => control(&store, *id, CampaignAction::Resume, "").await?,
        CampaignCmd::Cancel { id } => control(&store, *id, CampaignAction::Cancel, "").await?,
        CampaignCmd::List { json } => {
            let all = store.campaigns().await?;
            if *json {
                println!("{}", serde_json::to_string(&all)?);
            } else {
                println!(
                    "{:>4}  {:<10} {:>9}  {:<22} {:<11} name",
                    "id", "status", "enqueued", "starts", "window"
                );
                for c in all {
                    let w = Window {
                        start_min: c.window_start,
                        end_min: c.window_end,
                    };
                    println!(
                        "{:>4}  {:<10} {:>9}  {:<22} {:<11} {} ({})",
                        c.id,
                        c.status,
                        c.enqueued,
                        fmt_wib(c.scheduled_at),
                        w.to_string(),
                        c.name,
                        c.template
                    );
                }
            }
        }
        CampaignCmd::Show { id, json } => {
            let c = store.campaign(*id).await?;
            let r = store.campaign_report(*id).await?;
            let pace = Pace::of(&store, &c, &r).await?;
            if *json {
                println!(
                    "{}",
                    serde_json::json!({"campaign": c, "report": r, "pace": pace})
                );
            } else {
                println!(
                    "campaign {} {:?} [{}], template {}, starts {}",
                    c.id,
                    c.name,
                    c.status,
                    c.template,
                    fmt_wib(c.scheduled_at)
                );
                println!("  enqueued {}, sent {}", r.enqueued, r.sent);
                println!(
                    "  throughput {:.2}/s (last {} s), ETA {}",
                    pace.throughput_per_sec,
                    campaign::THROUGHPUT_WINDOW_SECS,
                    match (pace.eta_seconds, &pace.eta_wib) {
                        (Some(secs), Some(at)) => format!("{at} (in {:.0} s)", secs),
                        _ => "-".into(),
                    }
                );
                for (k, v) in &r.by_status {
                    if *v > 0 {
                        println!("  {k:<12} {v}");
                    }
                }
                if !r.flagged_by_reason.is_empty() {
                    println!("  flagged (open):");
                    for (k, v) in &r.flagged_by_reason {
                        println!("    {k:<18} {v}");
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn control(
    store: &Store,
    id: i64,
    action: CampaignAction,
    reason: &str,
) -> anyhow::Result<()> {
    // Audited in the transaction that makes the change.
    let c = store
        .control_campaign(id, action, reason, &cli_actor())
        .await?;
    let r = store.campaign_report(id).await?;
    println!(
        "campaign {id} is now {}{}; {} queued, {} cancelled",
        c.status,
        c.pause_reason
            .map(|r| format!(" ({r})"))
            .unwrap_or_default(),
        r.status(crate::status::Status::Queued),
        r.status(crate::status::Status::Cancelled)
    );
    Ok(())
}

async fn flags_cmd(s: &Settings, f: &FlagsCmd) -> anyhow::Result<ExitCode> {
    let store = open_store(s).await?;
    match f {
        FlagsCmd::List { campaign, all } => {
            let rows = store.flags(*campaign, *all).await?;
            println!(
                "{:>6} {:>8} {:<18} {:<16} {:<14} {:<4} name",
                "id", "campaign", "reason", "nik", "phone", "prov"
            );
            for r in &rows {
                println!(
                    "{:>6} {:>8} {:<18} {:<16} {:<14} {:<4} {}{}",
                    r.id,
                    r.campaign_id,
                    r.reason,
                    mask_nik(&r.nik),
                    mask_phone(&r.phone),
                    r.province_code,
                    mask_name(&r.full_name),
                    r.resolution
                        .as_deref()
                        .map(|x| format!(" (resolved: {x})"))
                        .unwrap_or_default()
                );
            }
            eprintln!("{} flag(s)", rows.len());
        }
        FlagsCmd::Export {
            campaign,
            output,
            all,
            ..
        } => {
            // The file first: an export that cannot be written is not
            // recorded as made.
            let out: Box<dyn std::io::Write> = match output {
                Some(p) => Box::new(
                    crate::export::create_private_file(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                ),
                None => Box::new(std::io::stdout()),
            };
            // Read in the transaction that writes its audit entry.
            let rows = store.export_flags(*campaign, *all, &cli_actor()).await?;
            crate::export::write_nonrecipients(out, &rows)?.flush()?;
            eprintln!("{} flag(s) exported", rows.len());
        }
        FlagsCmd::Resolve {
            flag_id,
            note,
            staff,
        } => {
            let f = store
                .resolve_flag(*flag_id, &FreeText::staff(staff)?, &FreeText::note(note)?)
                .await?;
            println!(
                "flag {} ({}) resolved by {}",
                f.id,
                f.reason,
                f.resolved_by.as_deref().unwrap_or(staff)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Creates (or truncates) `path` readable and writable by its owner only:
/// it holds personal data.
fn create_private(path: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        o.mode(0o600);
        let f = o
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        // An existing file keeps its mode through `open`: narrow it.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
        Ok(f)
    }
    #[cfg(not(unix))]
    {
        o.open(path)
            .with_context(|| format!("creating {}", path.display()))
    }
}

async fn reregistrations_cmd(s: &Settings, c: &ReregistrationsCmd) -> anyhow::Result<ExitCode> {
    let store = open_store(s).await?;
    match c {
        ReregistrationsCmd::List { status } => {
            let status = (status != "all").then_some(status.as_str());
            let rows = store.reregistrations(status, None, 10_000).await?;
            println!(
                "{:>6} {:>7} {:<11} {:<16} {:<14} {:<14} {:<20} name",
                "id", "worker", "status", "nik", "old phone", "new phone", "requested (WIB)"
            );
            for r in &rows {
                println!(
                    "{:>6} {:>7} {:<11} {:<16} {:<14} {:<14} {:<20} {}",
                    r.id,
                    r.worker_id,
                    r.status,
                    r.nik_masked,
                    r.old_phone_masked,
                    r.new_phone_masked,
                    fmt_wib(r.requested_at),
                    r.name_masked
                );
            }
            eprintln!("{} re-registration(s)", rows.len());
        }
        ReregistrationsCmd::Export { output } => {
            // The file first: an export that cannot be written is not
            // recorded as made.
            let out: Box<dyn std::io::Write> = match output {
                Some(p) => Box::new(create_private(p)?),
                None => Box::new(std::io::stdout()),
            };
            let rows = store.export_pending_reregistrations(&cli_actor()).await?;
            crate::export::write_reregistrations(out, &rows)?.flush()?;
            eprintln!("{} pending re-registration(s) exported", rows.len());
        }
        ReregistrationsCmd::Approve { id, note, staff } => {
            let o = store
                .approve_reregistration(*id, &FreeText::staff(staff)?, &FreeText::note(note)?)
                .await?;
            println!(
                "re-registration {} approved: {} on file{}",
                o.reregistration_id,
                o.phone_masked,
                o.notice
                    .as_ref()
                    .map(|n| format!(
                        "; notice (message {}) due {}",
                        n.message_id, n.next_attempt_wib
                    ))
                    .unwrap_or_else(|| "; no notice (not validated or not eligible)".into())
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Who runs a CLI command, for the audit trail.
fn cli_actor() -> String {
    std::env::var("USER").unwrap_or_else(|_| "cli".into())
}

async fn token_cmd(s: &Settings, t: &TokenCmd) -> anyhow::Result<ExitCode> {
    let store = open_store(s).await?;
    match t {
        TokenCmd::Create { name, role } => {
            let role: crate::store::Role = role.parse().map_err(anyhow::Error::msg)?;
            let crate::store::NewToken { token: tok, secret } =
                store.create_token(name, role).await?;
            store
                .audit(
                    &cli_actor(),
                    "token.create",
                    &format!("token:{}", tok.id),
                    &format!("{} ({})", tok.name, tok.role),
                )
                .await?;
            eprintln!(
                "token {} {:?} ({}) created; it is shown once, store it now:",
                tok.id, tok.name, tok.role
            );
            println!("{secret}");
        }
        TokenCmd::List { json } => {
            let all = store.tokens().await?;
            if *json {
                println!("{}", serde_json::to_string(&all)?);
            } else {
                println!(
                    "{:>4}  {:<24} {:<9} {:<23} {:<23} revoked",
                    "id", "name", "role", "created", "last used"
                );
                for t in all {
                    println!(
                        "{:>4}  {:<24} {:<9} {:<23} {:<23} {}",
                        t.id,
                        t.name,
                        t.role,
                        fmt_wib(t.created_at),
                        t.last_used_at.map(fmt_wib).unwrap_or_else(|| "-".into()),
                        t.revoked_at.map(fmt_wib).unwrap_or_else(|| "-".into())
                    );
                }
            }
        }
        TokenCmd::Revoke { id_or_name } => {
            let tok = store.revoke_token(id_or_name).await?;
            store
                .audit(
                    &cli_actor(),
                    "token.revoke",
                    &format!("token:{}", tok.id),
                    &tok.name,
                )
                .await?;
            println!("token {} {:?} revoked", tok.id, tok.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Where a command line argument may be `-`: the value read from standard
/// input instead (its first line, trimmed), so a NIK, phone number or name
/// stays out of the process list (`ps`, `/proc/*/cmdline`) and the shell's
/// history. Any other value is returned as given. `what` names the value in
/// the prompt (shown only when standard input is a terminal) and in errors.
pub fn arg_or_stdin(arg: &str, what: &str) -> anyhow::Result<String> {
    if arg != "-" {
        return Ok(arg.to_string());
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("{what}: ");
    }
    let mut line = String::new();
    stdin
        .read_line(&mut line)
        .with_context(|| format!("reading the {what} from standard input"))?;
    let value = line.trim();
    if value.is_empty() {
        anyhow::bail!("{what}: `-` was given but standard input was empty");
    }
    Ok(value.to_string())
}

async fn worker_id_by_nik(store: &Store, nik: &str) -> anyhow::Result<i64> {
    let nik = arg_or_stdin(nik, "NIK")?;
    let nik = crate::domain::Nik::parse(&nik).map_err(|e| anyhow::anyhow!("NIK {e}"))?;
    store
        .worker_by_nik(nik.as_str())
        .await?
        .map(|w| w.id)
        .with_context(|| format!("no worker with NIK {}", nik.masked()))
}

async fn support_cmd(s: &Settings, c: &SupportCmd) -> anyhow::Result<ExitCode> {
    let store = open_store(s).await?;
    match c {
        SupportCmd::Search { query, json } => {
            let query = arg_or_stdin(query, "query")?;
            let crate::store::SearchResults {
                kind,
                workers: rows,
            } = store.search_workers(&query).await?;
            if *json {
                println!("{}", serde_json::json!({"kind": kind, "results": rows}));
            } else {
                println!(
                    "{:>8} {:<16} {:<14} {:<4} {:<10} {:>5} {:<11} name",
                    "id", "nik", "phone", "prov", "valid/elig", "flags", "last"
                );
                for r in &rows {
                    println!(
                        "{:>8} {:<16} {:<14} {:<4} {:<10} {:>5} {:<11} {}",
                        r.id,
                        r.nik_masked,
                        r.phone_masked,
                        r.province_code,
                        format!("{}/{}", yes_no(r.validated), yes_no(r.eligible)),
                        r.open_flags,
                        r.last_status.as_deref().unwrap_or("-"),
                        r.name_masked
                    );
                }
                eprintln!(
                    "{} match(es) by {:?}{}",
                    rows.len(),
                    kind,
                    if rows.len() as i64 >= crate::store::SEARCH_LIMIT {
                        " (limit reached: narrow the query)"
                    } else {
                        ""
                    }
                );
            }
        }
        SupportCmd::Timeline { nik, json } => {
            let id = worker_id_by_nik(&store, nik).await?;
            let t = store.timeline(id).await?;
            if *json {
                println!("{}", serde_json::to_string(&t)?);
            } else {
                print_timeline(&t);
            }
        }
        SupportCmd::Resend { nik, reason, staff } => {
            let id = worker_id_by_nik(&store, nik).await?;
            let n = store
                .resend(id, &FreeText::staff(staff)?, &FreeText::reason(reason)?)
                .await?;
            println!(
                "message {} (generation {}) queued in campaign {} {:?} to {}, due {}",
                n.message_id,
                n.generation,
                n.campaign_id,
                n.campaign_name,
                n.phone_masked,
                n.next_attempt_wib
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// A worker's timeline as text, every event in time order.
fn print_timeline(t: &crate::store::Timeline) {
    let w = &t.worker;
    println!(
        "worker {}: {} NIK {} phone {} province {} {} (validated {}, eligible {}), {} open flag(s)",
        w.id,
        w.name_masked,
        w.nik_masked,
        w.phone_masked,
        w.province_code,
        w.profession,
        yes_no(w.validated),
        yes_no(w.eligible),
        w.open_flags
    );
    let mut events: Vec<(i64, String)> = vec![];
    for m in &t.messages {
        events.push((
            m.created_at,
            format!(
                "message {} queued: campaign {} {:?}, generation {}, to {} (now {}, {} attempt(s){})",
                m.id,
                m.campaign_id,
                m.campaign_name,
                m.generation,
                m.phone_masked,
                m.status,
                m.attempts,
                m.last_error
                    .as_deref()
                    .map(|e| format!(", last error: {e}"))
                    .unwrap_or_default()
            ),
        ));
        for a in &m.attempt_log {
            events.push((
                a.at,
                format!(
                    "  message {} attempt {} via {}: {}{}",
                    m.id,
                    a.attempt,
                    a.gateway.as_deref().unwrap_or("-"),
                    a.outcome,
                    a.detail
                        .as_deref()
                        .filter(|d| !d.is_empty())
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                ),
            ));
        }
        for r in &m.receipts {
            events.push((
                r.received_at,
                format!(
                    "  message {} receipt from {}: {} (raw {}, {})",
                    m.id,
                    r.gateway,
                    r.outcome.as_deref().unwrap_or("-"),
                    r.raw_status.as_deref().unwrap_or("-"),
                    r.effect.as_deref().unwrap_or("-")
                ),
            ));
        }
    }
    for f in &t.flags {
        events.push((
            f.flagged_at,
            format!(
                "flag {} raised: {} (message {})",
                f.id, f.reason, f.message_id
            ),
        ));
        if let Some(at) = f.resolved_at {
            events.push((
                at,
                format!(
                    "flag {} resolved {} by {}{}",
                    f.id,
                    f.resolution.as_deref().unwrap_or("-"),
                    f.resolved_by.as_deref().unwrap_or("-"),
                    f.note
                        .as_deref()
                        .map(|n| format!(": {n}"))
                        .unwrap_or_default()
                ),
            ));
        }
    }
    for p in &t.phone_changes {
        events.push((
            p.changed_at,
            format!(
                "phone {} -> {} ({})",
                p.old_phone_masked.as_deref().unwrap_or("-"),
                p.new_phone_masked,
                p.source
            ),
        ));
    }
    for a in &t.audit {
        events.push((a.at, format!("{} by {}: {}", a.action, a.actor, a.detail)));
    }
    events.sort_by_key(|(at, _)| *at);
    for (at, line) in events {
        println!("{}  {line}", fmt_wib(at));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_keeps_its_flags_and_gains_receipts() {
        let cli = Cli::try_parse_from(["pedulicovid", "bench", "--messages", "10", "--rate", "0"])
            .expect("the old usage parses");
        match cli.command {
            Command::Bench { what: None, args } => {
                assert_eq!(args.messages, 10);
                assert_eq!(args.rate, 0);
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from([
            "pedulicovid",
            "bench",
            "receipts",
            "--callbacks",
            "5",
            "--connections",
            "2",
            "--json",
        ])
        .expect("bench receipts parses");
        match cli.command {
            Command::Bench {
                what: Some(BenchCmd::Receipts(a)),
                ..
            } => {
                assert_eq!((a.callbacks, a.connections, a.json), (5, 2, true));
                assert!(!a.external);
            }
            other => panic!("{other:?}"),
        }
        // Campaign flags do not mix with the receipts subcommand.
        assert!(
            Cli::try_parse_from(["pedulicovid", "bench", "--messages", "10", "receipts"]).is_err()
        );
    }
}
