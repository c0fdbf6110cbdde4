//! `pedulicovid bench`: a campaign against the in-process simulator, measured.

use crate::config::Settings;

/// Options of `pedulicovid bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Messages in the campaign.
    #[arg(long, default_value_t = 100_000)]
    pub messages: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs the benchmark.
pub async fn run(
    _settings: Settings,
    _args: BenchArgs,
    _database_url_given: bool,
) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
