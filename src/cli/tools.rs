//! The commands for a first look and for measuring: `demo`, `carrier-sim`
//! and `bench`.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::{serve::shutdown_signal, settings, Cli};
use crate::config::Settings;
use crate::simulator::{parse_rules, OutcomeMix, Simulator};

#[derive(Debug, Args)]
pub(super) struct DemoArgs {
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
pub(super) struct SimArgs {
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

#[derive(Debug, Subcommand)]
pub(super) enum BenchCmd {
    /// Receipt-callback ingest: N distinct Kannel DLR callbacks over C
    /// keep-alive connections to the HTTP server alone, every one checked in
    /// the database.
    Receipts(crate::bench_receipts::ReceiptBenchArgs),
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

/// `pedulicovid demo`: a whole campaign on a fresh temporary SQLite file
/// (unless `--database-url` names one).
pub(super) async fn demo(cli: &Cli, a: &DemoArgs) -> anyhow::Result<ExitCode> {
    let mut s = settings(cli)?;
    if cli.database_url.is_none() {
        s.database_url = String::new(); // demo picks a fresh temporary SQLite file
    }
    crate::demo::run(s, a.workers, a.seed, a.json).await?;
    Ok(ExitCode::SUCCESS)
}

/// `pedulicovid bench [receipts]`.
pub(super) async fn bench(
    cli: &Cli,
    what: Option<&BenchCmd>,
    args: &crate::bench::BenchArgs,
) -> anyhow::Result<ExitCode> {
    let s = settings(cli)?;
    match what {
        None => crate::bench::run(s, args.clone(), cli.database_url.is_some()).await?,
        Some(BenchCmd::Receipts(a)) => {
            crate::bench_receipts::run(s, a.clone(), cli.database_url.is_some()).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `pedulicovid carrier-sim`: the simulator on its own, until SIGTERM.
pub(super) async fn carrier_sim(s: &Settings, a: &SimArgs) -> anyhow::Result<ExitCode> {
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
