//! `pedulicovid-bench`: pedulicovid's benchmarks, a binary beside the
//! product (BENCHMARKS.md has the method and the figures).
//!
//! **What it owns and what it may not touch.** This crate owns the
//! measuring: synthetic registries, timed phases, load generators, the
//! reports. It uses the product only through the `pedulicovid` library's
//! public API (`App`, `campaign`, `Store`, `metrics`, settings), the way any
//! user of the library could, and runs no SQL of its own: what it reads
//! from or prepares in the database goes through `Store`'s public methods
//! (so a message is made `sent` by claiming and recording it, as a worker
//! does, never by writing its status). It never depends on the product's
//! private items, and nothing in the product depends on it.
//!
//! - [`engine`]: `pedulicovid-bench [OPTIONS]`, a whole campaign against
//!   the in-process simulator (or, `--gateway kannel`, the real Kannel
//!   harness: [`kannel`]);
//! - [`receipts`]: `pedulicovid-bench receipts`, receipt-callback ingest
//!   over HTTP;
//! - [`floor`]: `pedulicovid-bench http-floor`, a notice's two HTTP
//!   exchanges through the product's client and server stack alone.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use pedulicovid::config::Settings;

/// The product's allocator (src/main.rs): the benchmarks measure what ships.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod chatbot;
mod engine;
mod floor;
mod kannel;
mod parts;
mod receipts;

/// Measure pedulicovid: a whole campaign against the in-process simulator
/// (`receipts`: receipt-callback ingest over HTTP).
#[derive(Debug, Parser)]
#[command(name = "pedulicovid-bench", version, about)]
struct Cli {
    /// Settings file (default: ./pedulicovid.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Database URL: sqlite://FILE or postgres://… (a server the benchmark
    /// creates a throw-away database on). Default: a temporary SQLite file.
    #[arg(long, global = true, value_name = "URL", env = "DATABASE_URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    what: Option<BenchCmd>,
    #[command(flatten)]
    args: engine::BenchArgs,
}

#[derive(Debug, Subcommand)]
enum BenchCmd {
    /// Receipt-callback ingest: N distinct Kannel DLR callbacks over C
    /// keep-alive connections to the HTTP server alone, every one checked in
    /// the database.
    Receipts(receipts::ReceiptBenchArgs),
    /// Chatbot look-ups against one HTTP server on a registry of (by
    /// default) 1.5 M workers: requests per second and latency.
    Chatbot(chatbot::ChatbotBenchArgs),
    /// The floor under a notice's cost: its two HTTP exchanges (the send to
    /// the carrier, the receipt callback to us) through the product's own
    /// client and server stack, N times, with nothing of ours in between.
    HttpFloor(floor::FloorArgs),
}

impl Cli {
    /// Parses, and refuses the campaign benchmark's options with
    /// `receipts` (clap's `args_conflicts_with_subcommands` would refuse
    /// `--database-url` and `--config` before the subcommand too, though
    /// both are for either benchmark).
    fn try_parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Cli::command().try_get_matches_from(args)?;
        let cli = Cli::from_arg_matches(&matches)?;
        if cli.what.is_some() {
            let given = matches.ids().find(|id| {
                !["config", "database_url"].contains(&id.as_str())
                    && matches.value_source(id.as_str()) == Some(ValueSource::CommandLine)
            });
            if let Some(id) = given {
                return Err(Cli::command().error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!(
                        "`{id}` belongs to the campaign benchmark, not to `{}`",
                        matches.subcommand_name().unwrap_or_default()
                    ),
                ));
            }
        }
        Ok(cli)
    }
}

/// The log filter this run uses: `RUST_LOG` when it is a valid filter,
/// otherwise `warn`, so the progress lines are not lost among the engine's.
/// The product's own commands log at INFO unless told otherwise, which costs
/// the product more than WARN did before issue 13 (BENCHMARKS.md, ninth and
/// fifteenth passes): comparisons of builds set `RUST_LOG` for every build
/// alike (`scripts/bench-rounds.sh`, `scripts/bench-ab.sh`), and the report
/// says which filter a figure was measured at (`log_filter`).
pub(crate) fn log_filter() -> String {
    log_filter_from(std::env::var("RUST_LOG").ok())
}

/// [`log_filter`] for a given `RUST_LOG`.
fn log_filter_from(rust_log: Option<String>) -> String {
    rust_log
        .filter(|v| tracing_subscriber::EnvFilter::try_new(v).is_ok())
        .unwrap_or_else(|| "warn".to_string())
}

fn main() -> ExitCode {
    // As the product's `main`.
    pedulicovid::allocator::tune();
    let cli = Cli::try_parse_args(std::env::args_os()).unwrap_or_else(|e| e.exit());
    // Progress goes to stderr by hand; the engine's own logs only from warn.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(log_filter()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
    // Server, worker and simulator in one process, as `demo` and `run`.
    pedulicovid::cli::raise_open_files_limit();
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
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut s = Settings::load(cli.config.as_deref())?;
    let given = cli.database_url.is_some();
    if let Some(url) = cli.database_url {
        s.database_url = url;
    }
    match cli.what {
        None => engine::run(s, cli.args, given).await,
        Some(BenchCmd::Receipts(a)) => receipts::run(s, a, given).await,
        Some(BenchCmd::Chatbot(a)) => chatbot::run(s, a, given).await,
        Some(BenchCmd::HttpFloor(a)) => floor::run(s, a).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_the_filter_the_run_logs_at() {
        for (rust_log, want) in [
            (None, "warn"),
            (Some("info"), "info"),
            (
                Some("info,pedulicovid::access=warn"),
                "info,pedulicovid::access=warn",
            ),
            // Not a filter: the subscriber falls back, and so does the report.
            (Some("pedulicovid=loudly"), "warn"),
        ] {
            assert_eq!(
                log_filter_from(rust_log.map(str::to_string)),
                want,
                "{rust_log:?}"
            );
        }
    }

    #[test]
    fn bench_keeps_its_flags_and_gains_receipts() {
        let cli = Cli::try_parse_args(["pedulicovid-bench", "--messages", "10", "--rate", "0"])
            .expect("the old usage parses");
        match cli.what {
            None => {
                assert_eq!(cli.args.messages, 10);
                assert_eq!(cli.args.rate, 0);
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_args([
            "pedulicovid-bench",
            "receipts",
            "--callbacks",
            "5",
            "--connections",
            "2",
            "--json",
        ])
        .expect("bench receipts parses");
        match cli.what {
            Some(BenchCmd::Receipts(a)) => {
                assert_eq!((a.callbacks, a.connections, a.json), (5, 2, true));
                assert!(!a.external);
            }
            other => panic!("{other:?}"),
        }
        // Campaign flags do not mix with the receipts subcommand.
        assert!(
            Cli::try_parse_args(["pedulicovid-bench", "--messages", "10", "receipts"]).is_err()
        );
        // The database and settings are for either, before or after it.
        for args in [
            &[
                "pedulicovid-bench",
                "--database-url",
                "sqlite://x.db",
                "receipts",
            ][..],
            &[
                "pedulicovid-bench",
                "receipts",
                "--database-url",
                "sqlite://x.db",
            ][..],
        ] {
            let cli = Cli::try_parse_args(args).expect("the database URL parses");
            assert!(matches!(cli.what, Some(BenchCmd::Receipts(_))), "{args:?}");
            assert_eq!(cli.database_url.as_deref(), Some("sqlite://x.db"));
        }
    }

    #[test]
    fn http_floor_parses_and_refuses_no_messages() {
        let cli = Cli::try_parse_args([
            "pedulicovid-bench",
            "http-floor",
            "--messages",
            "1000",
            "--concurrency",
            "8",
            "--json",
        ])
        .expect("http-floor parses");
        match cli.what {
            Some(BenchCmd::HttpFloor(a)) => {
                assert_eq!((a.messages, a.concurrency, a.json), (1000, Some(8), true));
                assert_eq!(a.callback_concurrency, None);
            }
            other => panic!("{other:?}"),
        }
        for flag in ["--messages", "--concurrency", "--callback-concurrency"] {
            let err = Cli::try_parse_args(["pedulicovid-bench", "http-floor", flag, "0"])
                .expect_err("nothing in flight, or no notices, is refused");
            assert!(err.to_string().contains(flag), "{err}");
        }
        let err = Cli::try_parse_args(["pedulicovid-bench", "--rate", "5", "http-floor"])
            .expect_err("a campaign flag does not go with http-floor");
        assert!(err.to_string().contains("`http-floor`"), "{err}");
    }

    #[test]
    fn every_argument_says_what_it_is() {
        use clap::CommandFactory;
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if ["help", "version"].contains(&id) {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = vec![];
        walk(&Cli::command(), "pedulicovid-bench", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }
}
