//! `pedulicovid gateways …`: each configured gateway with its breaker state,
//! and the rotation of a generated callback secret.

use std::process::ExitCode;

use clap::Subcommand;

use super::{cli_actor, open_store};
use crate::campaign::fmt_wib;
use crate::config::{Dialect, Settings};
use crate::store::GatewayState;

#[derive(Debug, Subcommand)]
pub(super) enum GatewaysCmd {
    /// Each configured gateway: circuit-breaker state and since when, the
    /// last error recorded, its rates and routes (never used = closed).
    Status,
    /// Replace a gateway's generated callback secret (audited). The old one
    /// keeps verifying for `callback_secret_grace_secs`, so receipts for
    /// messages already sent still land; running processes pick the new one
    /// up within half a minute.
    RotateSecret {
        /// The gateway's configured name.
        name: String,
    },
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

async fn rotate_secret(s: &Settings, name: &str, json: bool) -> anyhow::Result<ExitCode> {
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
    let until = at.saturating_add(grace);
    if json {
        println!(
            "{}",
            serde_json::json!({"gateway": name, "rotated_at": at, "previous_valid_until": until})
        );
    } else {
        println!(
            "gateway {name}: callback secret rotated; the previous one verifies until {}",
            fmt_wib(until)
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn gateways_status(s: &Settings, json: bool) -> anyhow::Result<ExitCode> {
    let store = open_store(s).await?;
    let mut rows: std::collections::BTreeMap<String, GatewayState> = store
        .gateway_states()
        .await?
        .into_iter()
        .map(|g| (g.gateway.clone(), g))
        .collect();
    store.close().await;
    let mut out = vec![];
    for (i, g) in s.gateways.iter().enumerate() {
        let row = rows.remove(&g.name);
        let probe_after = row.as_ref().and_then(|r| {
            (r.state == "open").then(|| {
                let cool_down = i64::try_from(g.breaker_cool_down_secs).unwrap_or(i64::MAX);
                fmt_wib(r.changed_at.saturating_add(cool_down.saturating_mul(1000)))
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
                .map_or_else(|| "closed".to_string(), |r| r.state.clone()),
            since_ms: row.as_ref().map(|r| r.changed_at),
            since: row.as_ref().map(|r| fmt_wib(r.changed_at)),
            last_error: row
                .as_ref()
                .map(|r| r.detail.clone())
                .filter(|d| !d.is_empty()),
            worker: row.as_ref().map(|r| r.worker.clone()),
            probe_after,
            never_recorded: row.is_none(),
            simulator: g.dialect == Dialect::Simulator,
        });
    }
    // States of gateways no longer in the settings, so nothing is hidden.
    for (name, r) in rows {
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
            state: r.state,
            since_ms: Some(r.changed_at),
            since: Some(fmt_wib(r.changed_at)),
            last_error: Some(r.detail).filter(|d| !d.is_empty()),
            worker: Some(r.worker),
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

pub(super) async fn run(s: &Settings, g: &GatewaysCmd, json: bool) -> anyhow::Result<ExitCode> {
    match g {
        GatewaysCmd::Status => gateways_status(s, json).await,
        GatewaysCmd::RotateSecret { name } => rotate_secret(s, name, json).await,
    }
}
