//! The command line: `pedulicovid <command>`, one file per command group.
//!
//! This module owns the parsing ([`Cli`]), logging set-up, the settings and
//! database every command opens, and the few helpers commands share
//! ([`arg_or_stdin`], [`progress_bar`], the audit actor). A command group's
//! file holds its `clap` definitions, what it prints, and nothing else: the
//! decisions are the library's (`campaign`, `registry`, `store`, …).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::app::Parts;
use crate::config::Settings;
use crate::render::Renderer;
use crate::store::{redact_url, Store};

mod campaign;
pub mod doc;
mod flags;
mod gateways;
mod import;
mod reregistrations;
mod serve;
mod support;
mod token;
mod tools;

/// The import's and the demo's progress bar (the demo, below the CLI,
/// owns it).
pub use crate::demo::progress_bar;
pub use serve::shutdown_signal;

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
    Demo(tools::DemoArgs),
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
    Campaign(campaign::CampaignCmd),
    /// Non-recipients: workers whose notice did not arrive.
    #[command(subcommand)]
    Flags(flags::FlagsCmd),
    /// Render a template for a sample worker.
    Template {
        /// Template name (without .tera); omit to list them.
        name: Option<String>,
    },
    /// The built-in carrier simulator (speaks Kannel's sendsms dialect).
    CarrierSim(carrier_sim::SimArgs),
    /// Carrier gateways as configured and as the workers last saw them.
    #[command(subcommand)]
    Gateways(gateways::GatewaysCmd),
    /// API tokens (create prints the token once; only its hash is kept).
    #[command(subcommand)]
    Token(token::TokenCmd),
    /// Help-desk work: search, a worker's timeline, resend.
    #[command(subcommand)]
    Support(support::SupportCmd),
    /// Chatbot re-registrations waiting for One Data validation.
    #[command(subcommand)]
    Reregistrations(reregistrations::ReregistrationsCmd),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet = matches!(cli.command, Command::Demo(_) | Command::Gateways(_));
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
        Command::Demo(a) => tools::demo(&cli, a).await,
        Command::CarrierSim(a) => tools::carrier_sim(&settings(&cli)?, a).await,
        Command::Run => serve::until_signal(settings(&cli)?, Parts::ALL).await,
        Command::Serve => serve::until_signal(settings(&cli)?, Parts::SERVE).await,
        Command::Worker { concurrency } => {
            let parts = Parts {
                workers: (*concurrency).max(1),
                ..Parts::WORKER
            };
            serve::until_signal(settings(&cli)?, parts).await
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
        } => import::run(&settings(&cli)?, file, rejects.as_deref(), *json).await,
        Command::Campaign(c) => campaign::run(&settings(&cli)?, c).await,
        Command::Flags(f) => flags::run(&settings(&cli)?, f).await,
        Command::Template { name } => template(&settings(&cli)?, name.as_deref()),
        Command::Gateways(g) => gateways::run(&settings(&cli)?, g).await,
        Command::Token(t) => token::run(&settings(&cli)?, t).await,
        Command::Support(c) => support::run(&settings(&cli)?, c).await,
        Command::Reregistrations(c) => reregistrations::run(&settings(&cli)?, c).await,
    }
}

/// `pedulicovid template [NAME]`: the template names, or one rendered for a
/// sample worker with its length and encoding.
fn template(s: &Settings, name: Option<&str>) -> anyhow::Result<ExitCode> {
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

/// Who runs a CLI command, for the audit trail.
fn cli_actor() -> String {
    std::env::var("USER").unwrap_or_else(|_| "cli".into())
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
