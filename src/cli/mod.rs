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
use clap::{ColorChoice, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::app::Parts;
use crate::config::{LogFormat, Settings};
use crate::render::Renderer;
use crate::store::{redact_url, Store};

mod campaign;
pub mod doc;
mod erase;
mod flags;
mod gateways;
mod import;
mod outcomes;
mod reregistrations;
mod retention;
mod serve;
mod support;
mod suppress;
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
    /// Database URL: sqlite://FILE or postgres://… (overrides the settings
    /// file and PEDULICOVID__DATABASE_URL).
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    /// Log lines as text or JSON (overrides `[log] format`).
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    /// Colour in text logs: auto (a terminal, and NO_COLOR unset), always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    color: ColorChoice,
    /// Print the command's result as one line of JSON on standard output
    /// (README, "Command-line conventions", has each shape).
    #[arg(long, global = true)]
    json: bool,
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
        /// Dispatch loops in this process (default 1), each claiming its
        /// own batches with up to `worker.concurrency` requests in flight.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        loops: Option<u32>,
        /// The old name of `--loops`, which read as `worker.concurrency`
        /// (requests in flight per loop): still accepted, with a warning.
        #[arg(long, hide = true, value_name = "N", conflicts_with = "loops",
              value_parser = clap::value_parser!(u32).range(1..))]
        concurrency: Option<u32>,
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
        /// Reconnect a NIK of an erased worker to that worker (name and
        /// phone restored from the file, audited) instead of creating a new
        /// worker (README, "Erasure").
        #[arg(long)]
        revive_erased: bool,
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
    /// Erase a worker's personal data (NIK, name, phone) everywhere it is
    /// stored, audited under the worker's id (UU PDP; README, "Erasure").
    Erase(erase::EraseArgs),
    /// Chatbot re-registrations waiting for One Data validation.
    #[command(subcommand)]
    Reregistrations(reregistrations::ReregistrationsCmd),
    /// Numbers and NIKs that must not be messaged (declined, vaccinated,
    /// deceased, wrong number).
    #[command(subcommand)]
    Suppress(suppress::SuppressCmd),
    /// How long records are kept: what is due for purging, and a purge now.
    #[command(subcommand)]
    Retention(retention::RetentionCmd),
    /// The settings as this command line would run with them.
    #[command(subcommand)]
    Config(ConfigCmd),
}

#[derive(Debug, Subcommand)]
enum ConfigCmd {
    /// Every effective setting, secrets redacted, with where it came from
    /// (default, file or environment).
    Show,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet = matches!(cli.command, Command::Demo(_) | Command::Gateways(_));
    // Settings before logging, which they configure; a command reports
    // settings that do not load (after logging is set up as asked).
    let loaded = settings(&cli);
    let format = cli
        .log_format
        .or_else(|| loaded.as_ref().ok().map(|s| s.log.format))
        .unwrap_or_default();
    init_tracing(quiet, format, cli.color);
    let loaded = loaded.map(|mut s| {
        s.log.format = format;
        s
    });
    raise_open_files_limit();
    // The long-running processes take `[runtime] threads` (default one);
    // a command that ends runs on one thread per core. One thread stays
    // the multi-thread scheduler with one worker: tokio's current-thread
    // scheduler, tried, ran 1 % fewer instructions and no CPU a notice or
    // receipt pace the machine could tell apart (BENCHMARKS.md, "eleventh
    // pass"): not worth changing every deployment's scheduler for.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let (Command::Run | Command::Serve | Command::Worker { .. }, Ok(s)) = (&cli.command, &loaded)
    {
        builder.worker_threads(s.runtime.worker_threads());
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli, loaded)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Lifts this process's soft limit on open files to its hard limit, as Go's
/// runtime and most servers do. systemd starts a service with a soft limit
/// of 1,024 (hard 524,288), and many login shells give the same: a carrier
/// keeping Kannel's default of 512 receipt callbacks in flight, beside the
/// worker's connections to its gateways and the database pools (all of
/// them in one process for `run` and `demo`), comes close to it, and past
/// it callbacks wait for a descriptor or fail. Not fatal when refused: the
/// limit stays as it was, and the process says so.
pub fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let (Some(soft), Some(hard)) = (current, maximum) else {
        return; // unlimited already (or no hard limit to go to)
    };
    if soft >= hard {
        return;
    }
    let raised = Rlimit {
        current: Some(hard),
        maximum: Some(hard),
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::debug!(from = soft, to = hard, "open files limit raised"),
        Err(e) => tracing::warn!(
            limit = soft,
            error = %e,
            "could not raise the open files limit; many carrier callbacks at once may wait"
        ),
    }
}

/// Logs go to standard error, filtered by `RUST_LOG` (default `info`, or
/// `warn` for the commands whose output is a report). Text lines are for
/// people; JSON lines carry the timestamp, level, target, the event's
/// fields and the spans it happened in (`request_id`, `route`, …) for a
/// log store. Either way personal data is masked where it is logged.
fn init_tracing(quiet: bool, format: LogFormat, color: ColorChoice) {
    let default = if quiet { "warn" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(color_on(color))
            .with_target(false)
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
}

/// `--color`: `auto` colours a terminal unless `NO_COLOR` is set to
/// anything non-empty (no-color.org).
fn color_on(color: ColorChoice) -> bool {
    match color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    }
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
    s.limits.check()?;
    Ok(store.with_limits(s.limits.store()))
}

/// Runs the command with the settings [`main`] loaded (an error if they
/// did not load).
async fn execute(cli: Cli, loaded: anyhow::Result<Settings>) -> anyhow::Result<ExitCode> {
    let json = cli.json;
    match &cli.command {
        Command::Run | Command::Serve | Command::Worker { .. } | Command::CarrierSim(_) if json => {
            Ok(usage(
                "--json: a long-running process prints no result; \
                 for JSON logs use --log-format json",
            ))
        }
        Command::Demo(a) => tools::demo(loaded?, cli.database_url.is_some(), a, json).await,
        Command::CarrierSim(a) => tools::carrier_sim(&loaded?, a).await,
        Command::Run => serve::until_signal(loaded?, Parts::ALL).await,
        Command::Serve => serve::until_signal(loaded?, Parts::SERVE).await,
        Command::Worker { loops, concurrency } => {
            if concurrency.is_some() {
                tracing::warn!(
                    "`worker --concurrency` is now `worker --loops`: it counts dispatch loops; \
                     requests in flight per loop are `worker.concurrency` in the settings"
                );
            }
            let parts = Parts {
                workers: loops.or(*concurrency).unwrap_or(1) as usize,
                ..Parts::WORKER
            };
            serve::until_signal(loaded?, parts).await
        }
        Command::Migrate => {
            let s = loaded?;
            let store = open_store(&s).await?;
            let backend = store.backend().as_str();
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "migrated": true, "backend": backend })
                );
            } else {
                println!("migrations applied ({backend})");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Import {
            file,
            rejects,
            revive_erased,
        } => import::run(&loaded?, file, rejects.as_deref(), *revive_erased, json).await,
        Command::Campaign(c) => campaign::run(&loaded?, c, json).await,
        Command::Flags(f) => flags::run(&loaded?, f, json).await,
        Command::Template { name } => template(&loaded?, name.as_deref(), json),
        Command::Gateways(g) => gateways::run(&loaded?, g, json).await,
        Command::Token(t) => token::run(&loaded?, t, json).await,
        Command::Support(c) => support::run(&loaded?, c, json).await,
        Command::Reregistrations(c) => reregistrations::run(&loaded?, c, json).await,
        Command::Suppress(c) => suppress::run(&loaded?, c, json).await,
        Command::Retention(c) => retention::run(&loaded?, c, json).await,
        Command::Erase(a) => erase::run(&loaded?, a, json).await,
        Command::Config(ConfigCmd::Show) => config_show(&cli, loaded?, json),
    }
}

/// `pedulicovid config show`: [`Settings::shown`], and `--database-url` /
/// `--log-format` where the command line overrides.
fn config_show(cli: &Cli, s: Settings, json: bool) -> anyhow::Result<ExitCode> {
    let mut shown = Settings::shown(cli.config.as_deref(), std::env::vars())?;
    for line in &mut shown {
        let flag = match line.key.as_str() {
            "database_url" if cli.database_url.is_some() => {
                line.value = format!("{:?}", redact_url(&s.database_url));
                true
            }
            "log.format" if cli.log_format.is_some() => {
                line.value = format!("{:?}", format!("{:?}", s.log.format).to_lowercase());
                true
            }
            _ => false,
        };
        if flag {
            line.source = "command line";
        } else if line.key == "database_url" {
            // A password in the URL stays out of the listing.
            line.value = format!("{:?}", redact_url(line.value.trim_matches('"')));
        }
    }
    if json {
        println!("{}", serde_json::to_string(&shown)?);
    } else {
        let width = shown.iter().map(|l| l.key.len()).max().unwrap_or(0);
        for l in &shown {
            println!("{:<width$} = {}  # {}", l.key, l.value, l.source);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Exit codes (README, "Command-line conventions").
pub mod exit {
    /// Done.
    pub const OK: u8 = 0;
    /// An error: bad input, settings, database, … (the message says which).
    pub const ERROR: u8 = 1;
    /// The command line itself is wrong (as clap exits for a bad flag).
    pub const USAGE: u8 = 2;
    /// `import` (or `suppress import`) finished and committed the good
    /// rows, but rejected some.
    pub const REJECTED_ROWS: u8 = 3;
}

/// A usage error found after parsing: said on standard error, exit 2.
fn usage(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(exit::USAGE)
}

/// `pedulicovid template [NAME]`: the template names, or one rendered for a
/// sample worker, then its length and encoding on a line of their own.
fn template(s: &Settings, name: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let r = Renderer::load(Some(std::path::Path::new(&s.sms.templates_dir)))?;
    match name {
        None if json => println!("{}", serde_json::json!({ "templates": r.names() })),
        None => {
            for n in r.names() {
                println!("{n}");
            }
        }
        Some(n) => {
            let text = r.validate(n, s.sms.max_segments)?;
            let (units, encoding, segments) =
                (text.units(), text.encoding().as_str(), text.segments());
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "template": n,
                        "text": text.as_str(),
                        "units": units,
                        "encoding": encoding,
                        "segments": segments,
                    })
                );
            } else {
                println!("{}", text.as_str());
                println!("-- {units} units, {encoding}, {segments} segment(s)");
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn worker(args: &[&str]) -> Result<(Option<u32>, Option<u32>), clap::Error> {
        let cli = Cli::try_parse_from(["pedulicovid", "worker"].iter().chain(args))?;
        match cli.command {
            Command::Worker { loops, concurrency } => Ok((loops, concurrency)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn worker_loops_are_loops_and_the_old_flag_still_parses() {
        assert_eq!(worker(&[]).unwrap(), (None, None));
        assert_eq!(worker(&["--loops", "4"]).unwrap(), (Some(4), None));
        // The old name, kept for deployments that use it (warned at start).
        assert_eq!(worker(&["--concurrency", "2"]).unwrap(), (None, Some(2)));
        for bad in [&["--loops", "0"][..], &["--concurrency", "0"][..]] {
            let e = worker(bad).expect_err("no loops is refused");
            assert!(e.to_string().contains(bad[0]), "{e}");
        }
        let e = worker(&["--loops", "2", "--concurrency", "2"]).expect_err("one or the other");
        assert!(e.to_string().contains("--loops"), "{e}");
        // The help names the new flag only.
        let help = Cli::command()
            .find_subcommand_mut("worker")
            .expect("worker")
            .render_long_help()
            .to_string();
        assert!(
            help.contains("--loops") && !help.contains("--concurrency"),
            "{help}"
        );
    }
}
