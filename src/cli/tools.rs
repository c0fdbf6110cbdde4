//! The commands for a first look: `demo`, and `carrier-sim` (the simulator
//! crate's own command line, with this program's `[simulator]` settings as
//! its defaults). Benchmarks are the `pedulicovid-bench` binary
//! (crates/bench).

use std::process::ExitCode;

use carrier_sim::SimArgs;
use clap::Args;

use super::serve::shutdown_signal;
use crate::config::Settings;

#[derive(Debug, Args)]
pub(super) struct DemoArgs {
    /// Health workers in the synthetic registry.
    #[arg(long, default_value_t = 10_000)]
    workers: usize,
    /// Random seed for the registry and outcomes.
    #[arg(long, default_value_t = 2021)]
    seed: u64,
}

/// `pedulicovid demo`: a whole campaign on a fresh temporary SQLite file
/// (unless `--database-url` names one).
pub(super) async fn demo(
    mut s: Settings,
    database_url_given: bool,
    a: &DemoArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if !database_url_given {
        s.database_url = String::new(); // demo picks a fresh temporary SQLite file
    }
    crate::demo::run(s, a.workers, a.seed, json).await?;
    Ok(ExitCode::SUCCESS)
}

/// `pedulicovid carrier-sim`: the simulator on its own, until SIGTERM.
pub(super) async fn carrier_sim(s: &Settings, a: &SimArgs) -> anyhow::Result<ExitCode> {
    let config = a.apply(s.simulator.clone())?;
    carrier_sim::serve_until(config, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}
