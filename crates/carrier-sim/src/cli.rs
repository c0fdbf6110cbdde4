//! The command line of the simulator on its own, shared by the
//! `carrier-sim` binary and `pedulicovid carrier-sim`: the flags, what they
//! change in a [`SimulatorConfig`], and running until a shutdown signal.

use std::future::Future;

use anyhow::Context;

use crate::{parse_rules, OutcomeMix, SimDialect, Simulator, SimulatorConfig};

/// Flags that override the simulator's settings.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SimArgs {
    /// Listen address.
    #[arg(long)]
    pub listen: Option<String>,
    /// Outcome by number suffix, e.g. "0=undelivered,9=expired,8=rejected,7=invalid".
    #[arg(long)]
    pub rules: Option<String>,
    /// Outcome proportions, e.g. "delivered=0.9,undelivered=0.05,rejected=0.05".
    #[arg(long)]
    pub mix: Option<String>,
    /// Delay before each sendsms answer (ms).
    #[arg(long)]
    pub answer_latency_ms: Option<u64>,
    /// Delay before each receipt callback (ms).
    #[arg(long)]
    pub receipt_delay_ms: Option<u64>,
    /// Which carrier API to speak: kannel, jasmin or json.
    #[arg(long)]
    pub dialect: Option<SimDialect>,
    /// Most receipt callbacks in flight at once (Kannel's
    /// `max-pending-requests`; default 512, as Kannel's).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub callback_concurrency: Option<u64>,
}

impl SimArgs {
    /// `config` with every flag given applied.
    pub fn apply(&self, mut config: SimulatorConfig) -> anyhow::Result<SimulatorConfig> {
        if let Some(l) = &self.listen {
            config.listen = l.clone();
        }
        if let Some(r) = &self.rules {
            config.rules = parse_rules(r).map_err(anyhow::Error::msg)?;
        }
        if let Some(m) = &self.mix {
            config.mix = parse_mix(m)?;
        }
        if let Some(v) = self.answer_latency_ms {
            config.answer_latency_ms = v;
        }
        if let Some(v) = self.receipt_delay_ms {
            config.receipt_delay_ms = v;
        }
        if let Some(d) = self.dialect {
            config.dialect = d;
        }
        if let Some(n) = self.callback_concurrency {
            config.callback_concurrency = usize::try_from(n).unwrap_or(usize::MAX);
        }
        Ok(config)
    }
}

/// `delivered=0.9,undelivered=0.1` → an [`OutcomeMix`] (unnamed outcomes 0).
pub fn parse_mix(s: &str) -> anyhow::Result<OutcomeMix> {
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

/// Binds, prints `carrier-sim (DIALECT): SEND_URL` on standard output (the
/// line scripts wait for), and serves until `shutdown` completes.
pub async fn serve_until(
    config: SimulatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let sim = Simulator::bind(config).await?;
    println!(
        "carrier-sim ({}): {}",
        sim.handle().dialect().as_str(),
        sim.send_url()
    );
    sim.run(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_settings() {
        let args = SimArgs {
            mix: Some("delivered=0.5, expired=0.5".into()),
            rules: Some("0=undelivered".into()),
            dialect: Some(SimDialect::Json),
            callback_concurrency: Some(64),
            ..SimArgs::default()
        };
        let c = args.apply(SimulatorConfig::default()).expect("applies");
        assert_eq!(
            (c.mix.delivered, c.mix.expired, c.mix.undelivered),
            (0.5, 0.5, 0.0)
        );
        assert_eq!(c.rules.len(), 1);
        assert_eq!(c.dialect, SimDialect::Json);
        assert_eq!(c.callback_concurrency, 64);
        assert!(parse_mix("lost=1").is_err());
        assert!(parse_mix("delivered").is_err());
    }

    #[test]
    fn no_callback_at_a_time_is_refused_on_the_command_line() {
        use clap::Parser;
        #[derive(Parser)]
        struct Line {
            #[command(flatten)]
            sim: SimArgs,
        }
        let err = Line::try_parse_from(["carrier-sim", "--callback-concurrency", "0"])
            .err()
            .expect("0 is refused");
        assert!(err.to_string().contains("--callback-concurrency"), "{err}");
        let line = Line::try_parse_from(["carrier-sim", "--callback-concurrency", "1024"]).unwrap();
        assert_eq!(line.sim.callback_concurrency, Some(1024));
    }
}
