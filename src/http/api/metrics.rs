//! `GET /metrics`: Prometheus text exposition (format 0.0.4), written by
//! hand: a dozen families do not need a metrics framework.
//!
//! No token: every value is an aggregate count or a latency, never a
//! number, NIK or name, and Prometheus scrapers are simplest without
//! credentials. Put the port behind the network's own access rules.
//!
//! Two sources:
//! - the database (every process's work): messages by gateway and status
//!   (queue depth), open flags by gateway and reason, stored receipts by
//!   gateway and outcome. Read at most once a second, however many
//!   scrapers ask; concurrent scrapes wait for one query.
//! - this process's counters ([`crate::metrics::METRICS`]): sends, retries,
//!   throttles, failures, deferrals, receipts, breaker openings,
//!   rate-limit waits, and the send-latency quantiles. `pedulicovid worker`
//!   processes serve no HTTP, so their counters are not here; the database
//!   gauges cover their work.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use tokio::sync::Mutex;

use crate::http::AppState;
use crate::metrics::METRICS;
use crate::status::{FlagReason, Status};
use crate::store::Gauges;

/// How long database gauges are reused.
const GAUGE_TTL: Duration = Duration::from_secs(1);

/// The last database read, shared by every scrape.
#[derive(Clone, Default)]
pub struct GaugeCache(Arc<Mutex<Option<(Instant, Gauges)>>>);

impl GaugeCache {
    /// Fresh gauges (at most [`GAUGE_TTL`] old), or `None` when the database
    /// cannot be read.
    async fn get(&self, state: &AppState) -> Option<Gauges> {
        let mut slot = self.0.lock().await;
        if let Some((at, g)) = slot.as_ref() {
            if at.elapsed() < GAUGE_TTL {
                return Some(g.clone());
            }
        }
        match state.store.gauges().await {
            Ok(g) => {
                *slot = Some((Instant::now(), g.clone()));
                Some(g)
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics: reading gauges failed");
                None
            }
        }
    }
}

/// A label value, escaped as the text format requires.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders the exposition text.
pub fn render(g: Option<&Gauges>) -> String {
    let mut out = String::with_capacity(8 * 1024);
    family(
        &mut out,
        "pedulicovid_database_up",
        "gauge",
        "1 when the database answered the last gauge read.",
    );
    let _ = writeln!(out, "pedulicovid_database_up {}", u8::from(g.is_some()));
    if let Some(g) = g {
        family(
            &mut out,
            "pedulicovid_queue_depth",
            "gauge",
            "Messages by status, all campaigns (from the database).",
        );
        for s in Status::ALL {
            let n: i64 = g
                .messages
                .iter()
                .filter(|(_, st, _)| st == s.as_str())
                .map(|(_, _, n)| n)
                .sum();
            let _ = writeln!(out, "pedulicovid_queue_depth{{status=\"{s}\"}} {n}");
        }
        family(
            &mut out,
            "pedulicovid_messages",
            "gauge",
            "Messages by gateway (empty before the first send) and status.",
        );
        for (gw, st, n) in &g.messages {
            let _ = writeln!(
                out,
                "pedulicovid_messages{{gateway=\"{}\",status=\"{}\"}} {n}",
                esc(gw),
                esc(st)
            );
        }
        family(
            &mut out,
            "pedulicovid_open_flags",
            "gauge",
            "Open non-recipient flags by reason, all gateways.",
        );
        for r in FlagReason::ALL {
            let n: i64 = g
                .open_flags
                .iter()
                .filter(|(_, reason, _)| reason == r.as_str())
                .map(|(_, _, n)| n)
                .sum();
            let _ = writeln!(out, "pedulicovid_open_flags{{reason=\"{r}\"}} {n}");
        }
        family(
            &mut out,
            "pedulicovid_open_flags_by_gateway",
            "gauge",
            "Open non-recipient flags by gateway and reason.",
        );
        for (gw, reason, n) in &g.open_flags {
            let _ = writeln!(
                out,
                "pedulicovid_open_flags_by_gateway{{gateway=\"{}\",reason=\"{}\"}} {n}",
                esc(gw),
                esc(reason)
            );
        }
        family(
            &mut out,
            "pedulicovid_receipts_stored",
            "gauge",
            "Receipts kept in the database by gateway and outcome.",
        );
        for (gw, outcome, n) in &g.receipts {
            let _ = writeln!(
                out,
                "pedulicovid_receipts_stored{{gateway=\"{}\",outcome=\"{}\"}} {n}",
                esc(gw),
                esc(outcome)
            );
        }
    }
    let m = &*METRICS;
    let counters: [(&str, &str, u64); 7] = [
        (
            "pedulicovid_sends_total",
            "Messages a gateway accepted (this process).",
            m.sent.load(Ordering::Relaxed),
        ),
        (
            "pedulicovid_retries_total",
            "Sends scheduled for a retry, throttles included (this process).",
            m.retried.load(Ordering::Relaxed),
        ),
        (
            "pedulicovid_throttles_total",
            "Throttle answers from gateways (this process).",
            m.throttled.load(Ordering::Relaxed),
        ),
        (
            "pedulicovid_failures_total",
            "Messages that ended failed in the worker (this process).",
            m.failed.load(Ordering::Relaxed),
        ),
        (
            "pedulicovid_deferrals_total",
            "Messages deferred to their send window (this process).",
            m.deferred.load(Ordering::Relaxed),
        ),
        (
            "pedulicovid_receipts_total",
            "Receipt callbacks taken (this process).",
            m.receipts.load(Ordering::Relaxed),
        ),
        (
            "pedulicovid_circuit_opens_total",
            "Times a gateway's circuit breaker opened (this process).",
            m.circuit_opens.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, v) in counters {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {v}");
    }
    family(
        &mut out,
        "pedulicovid_rate_limit_wait_seconds_total",
        "counter",
        "Time spent waiting on rate limiters (this process).",
    );
    let _ = writeln!(
        out,
        "pedulicovid_rate_limit_wait_seconds_total {}",
        m.rate_wait_us.load(Ordering::Relaxed) as f64 / 1e6
    );
    family(
        &mut out,
        "pedulicovid_send_latency_seconds",
        "summary",
        "Gateway request latency since start (this process; no _sum is kept).",
    );
    for q in [0.5, 0.9, 0.99] {
        let _ = writeln!(
            out,
            "pedulicovid_send_latency_seconds{{quantile=\"{q}\"}} {}",
            m.send_latency.quantile_ms(q) / 1000.0
        );
    }
    let _ = writeln!(
        out,
        "pedulicovid_send_latency_seconds_count {}",
        m.send_latency.count()
    );
    out
}

/// Prometheus metrics. No token (see the module docs).
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let g = state.api.gauges.get(&state).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(g.as_ref()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_is_well_formed() {
        let g = Gauges {
            messages: vec![
                ("sim".into(), "delivered".into(), 5),
                ("".into(), "queued".into(), 2),
            ],
            open_flags: vec![("sim".into(), "undelivered".into(), 1)],
            receipts: vec![("sim".into(), "delivered".into(), 5)],
        };
        let text = render(Some(&g));
        assert!(text.contains("pedulicovid_queue_depth{status=\"queued\"} 2"));
        assert!(text.contains("pedulicovid_queue_depth{status=\"delivered\"} 5"));
        assert!(text.contains("pedulicovid_open_flags{reason=\"undelivered\"} 1"));
        assert!(text.contains("pedulicovid_database_up 1"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').expect("name value");
            assert!(value.parse::<f64>().is_ok(), "{line}");
            assert!(name.starts_with("pedulicovid_"), "{line}");
        }
        assert_eq!(esc("a\"b\\c\n"), "a\\\"b\\\\c\\n");
        assert!(render(None).contains("pedulicovid_database_up 0"));
    }
}
