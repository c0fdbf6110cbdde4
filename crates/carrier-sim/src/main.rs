//! `carrier-sim`: the carrier simulator on its own, until SIGTERM or
//! Ctrl-C. The same flags as `pedulicovid carrier-sim`, with the
//! simulator's defaults where pedulicovid would read its `[simulator]`
//! settings.

use std::io::IsTerminal;
use std::process::ExitCode;

use carrier_sim::{serve_until, SimArgs, SimulatorConfig};
use clap::Parser;

/// A carrier HTTP API (Kannel, Jasmin or a JSON aggregator) that answers
/// sends and calls delivery receipts back, for trying and testing
/// pedulicovid without a carrier.
#[derive(Debug, Parser)]
#[command(name = "carrier-sim", version, about)]
struct Cli {
    #[command(flatten)]
    args: SimArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    let run = async {
        let config = cli.args.apply(SimulatorConfig::default())?;
        serve_until(config, shutdown_signal()).await
    };
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
    match runtime.block_on(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C, or SIGTERM on Unix (what `kill` and service managers send).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
