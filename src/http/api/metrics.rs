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
//! - this process's counters ([`crate::metrics::METRICS`]): by gateway,
//!   sends, failures by kind and reason, receipts by outcome, the
//!   send-latency histogram, rate-limit waits and breaker openings; and
//!   deferrals to a send window. Retries are the transient failures,
//!   throttles those with reason `throttled`. Label values are
//!   bounded: gateway names come from the settings, reasons and outcomes
//!   are closed enums. A `pedulicovid worker` serves its own counters on
//!   its `[metrics] listen` address ([`render_process_only`]).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use tokio::sync::Mutex;

use crate::http::AppState;
use crate::metrics::{FailureReason, GatewayMetrics, ReceiptLabel, METRICS, NO_GATEWAY};
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

/// Renders the exposition text: the database gauges (`g`: `None` when
/// the database did not answer) and this process's counters.
pub fn render(g: Option<&Gauges>) -> String {
    let mut out = String::with_capacity(8 * 1024);
    render_gauges(&mut out, g);
    render_process(&mut out);
    out
}

/// The exposition of a process without the HTTP server (`pedulicovid
/// worker`): its own counters only. The database gauges are every
/// process's work, served by `serve`/`run`; a worker serving them too
/// would count the same messages once per worker in a `sum`.
pub fn render_process_only() -> String {
    let mut out = String::with_capacity(8 * 1024);
    render_process(&mut out);
    out
}

fn render_gauges(out: &mut String, g: Option<&Gauges>) {
    family(
        out,
        "pedulicovid_database_up",
        "gauge",
        "1 when the database answered the last gauge read.",
    );
    let _ = writeln!(out, "pedulicovid_database_up {}", u8::from(g.is_some()));
    if let Some(g) = g {
        family(
            out,
            "pedulicovid_queue_depth",
            "gauge",
            "Messages by status, all campaigns (from the database).",
        );
        for s in Status::ALL {
            let n: i64 = g
                .messages
                .iter()
                .filter(|c| c.label == s.as_str())
                .map(|c| c.count)
                .sum();
            let _ = writeln!(out, "pedulicovid_queue_depth{{status=\"{s}\"}} {n}");
        }
        family(
            out,
            "pedulicovid_messages",
            "gauge",
            "Messages by gateway (empty before the first send) and status.",
        );
        for c in &g.messages {
            let _ = writeln!(
                out,
                "pedulicovid_messages{{gateway=\"{}\",status=\"{}\"}} {}",
                esc(&c.gateway),
                esc(&c.label),
                c.count
            );
        }
        family(
            out,
            "pedulicovid_open_flags",
            "gauge",
            "Open non-recipient flags by reason, all gateways.",
        );
        for r in FlagReason::ALL {
            let n: i64 = g
                .open_flags
                .iter()
                .filter(|c| c.label == r.as_str())
                .map(|c| c.count)
                .sum();
            let _ = writeln!(out, "pedulicovid_open_flags{{reason=\"{r}\"}} {n}");
        }
        family(
            out,
            "pedulicovid_open_flags_by_gateway",
            "gauge",
            "Open non-recipient flags by gateway and reason.",
        );
        for c in &g.open_flags {
            let _ = writeln!(
                out,
                "pedulicovid_open_flags_by_gateway{{gateway=\"{}\",reason=\"{}\"}} {}",
                esc(&c.gateway),
                esc(&c.label),
                c.count
            );
        }
        family(
            out,
            "pedulicovid_receipts_stored",
            "gauge",
            "Receipts kept in the database by gateway and outcome.",
        );
        for c in &g.receipts {
            let _ = writeln!(
                out,
                "pedulicovid_receipts_stored{{gateway=\"{}\",outcome=\"{}\"}} {}",
                esc(&c.gateway),
                esc(&c.label),
                c.count
            );
        }
    }
}

/// This process's counters.
fn render_process(out: &mut String) {
    let m = &*METRICS;
    family(
        out,
        "pedulicovid_deferrals_total",
        "counter",
        "Messages deferred to their send window (this process).",
    );
    let _ = writeln!(
        out,
        "pedulicovid_deferrals_total {}",
        m.deferred.load(Ordering::Relaxed)
    );
    render_gateways(out, &m.gateways.all());
}

/// The per-gateway families. The slot of failures before any gateway was
/// chosen ([`NO_GATEWAY`]) only has failures.
fn render_gateways(out: &mut String, slots: &[Arc<GatewayMetrics>]) {
    let routed = || slots.iter().filter(|g| g.name != NO_GATEWAY);
    family(
        out,
        "pedulicovid_sends_total",
        "counter",
        "Messages a gateway accepted, by gateway (this process).",
    );
    for g in routed() {
        let _ = writeln!(
            out,
            "pedulicovid_sends_total{{gateway=\"{}\"}} {}",
            esc(&g.name),
            g.sends.load(Ordering::Relaxed)
        );
    }
    family(
        out,
        "pedulicovid_failures_total",
        "counter",
        "Sends that did not end accepted, by gateway (empty: none chosen yet), kind \
         (transient: retried; gateway: TLS or URL fault of the gateway, the message waits \
         without using an attempt; permanent: failed and flagged) and reason (this process).",
    );
    for g in slots {
        for r in FailureReason::ALL {
            if g.name == NO_GATEWAY && r.kind() != "permanent" {
                continue;
            }
            let _ = writeln!(
                out,
                "pedulicovid_failures_total{{gateway=\"{}\",kind=\"{}\",reason=\"{}\"}} {}",
                esc(&g.name),
                r.kind(),
                r.as_str(),
                g.failures(r)
            );
        }
    }
    family(
        out,
        "pedulicovid_receipts_total",
        "counter",
        "Receipt callbacks by gateway and outcome (this process).",
    );
    for g in routed() {
        for r in ReceiptLabel::ALL {
            let _ = writeln!(
                out,
                "pedulicovid_receipts_total{{gateway=\"{}\",outcome=\"{}\"}} {}",
                esc(&g.name),
                r.as_str(),
                g.receipts(r)
            );
        }
    }
    family(
        out,
        "pedulicovid_send_latency_seconds",
        "histogram",
        "Gateway request latency by gateway (this process).",
    );
    for g in routed() {
        let gw = esc(&g.name);
        for (le, n) in g.latency.cumulative() {
            let le = if le.is_infinite() {
                "+Inf".to_string()
            } else {
                le.to_string()
            };
            let _ = writeln!(
                out,
                "pedulicovid_send_latency_seconds_bucket{{gateway=\"{gw}\",le=\"{le}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "pedulicovid_send_latency_seconds_sum{{gateway=\"{gw}\"}} {}",
            g.latency.sum_seconds()
        );
        let _ = writeln!(
            out,
            "pedulicovid_send_latency_seconds_count{{gateway=\"{gw}\"}} {}",
            g.latency.count()
        );
    }
    family(
        out,
        "pedulicovid_rate_limit_wait_seconds_total",
        "counter",
        "Time sends waited on rate limits (the gateway's and the global cap), by gateway \
         (this process).",
    );
    for g in routed() {
        let _ = writeln!(
            out,
            "pedulicovid_rate_limit_wait_seconds_total{{gateway=\"{}\"}} {}",
            esc(&g.name),
            g.rate_wait_us.load(Ordering::Relaxed) as f64 / 1e6
        );
    }
    family(
        out,
        "pedulicovid_circuit_opens_total",
        "counter",
        "Times a gateway's circuit breaker opened, by gateway (this process).",
    );
    for g in routed() {
        let _ = writeln!(
            out,
            "pedulicovid_circuit_opens_total{{gateway=\"{}\"}} {}",
            esc(&g.name),
            g.circuit_opens.load(Ordering::Relaxed)
        );
    }
}

/// Prometheus metrics. No token (see the module docs).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    responses((status = 200, description = "Prometheus text exposition 0.0.4: counts and latencies only, no personal data", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String))
)]
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
    use crate::store::GatewayCount;

    #[test]
    fn exposition_is_well_formed() {
        let count = |gateway: &str, label: &str, count| GatewayCount {
            gateway: gateway.into(),
            label: label.into(),
            count,
        };
        let g = Gauges {
            messages: vec![count("sim", "delivered", 5), count("", "queued", 2)],
            open_flags: vec![count("sim", "undelivered", 1)],
            receipts: vec![count("sim", "delivered", 5)],
        };
        let gw = METRICS.gateways.get("unit-test");
        gw.sends.fetch_add(1, Ordering::Relaxed);
        gw.failure(FailureReason::Timeout);
        gw.receipt(ReceiptLabel::Duplicate);
        gw.latency.record(Duration::from_millis(7));
        let text = render(Some(&g));
        // The "unit-test" gateway is this test's own: its values are exact.
        for line in [
            "pedulicovid_sends_total{gateway=\"unit-test\"} 1\n",
            "pedulicovid_failures_total{gateway=\"unit-test\",kind=\"transient\",reason=\"timeout\"} 1\n",
            "pedulicovid_failures_total{gateway=\"unit-test\",kind=\"transient\",reason=\"connect\"} 0\n",
            "pedulicovid_receipts_total{gateway=\"unit-test\",outcome=\"duplicate\"} 1\n",
            "pedulicovid_receipts_total{gateway=\"unit-test\",outcome=\"delivered\"} 0\n",
            "pedulicovid_send_latency_seconds_bucket{gateway=\"unit-test\",le=\"0.005\"} 0\n",
            "pedulicovid_send_latency_seconds_bucket{gateway=\"unit-test\",le=\"0.01\"} 1\n",
            "pedulicovid_send_latency_seconds_bucket{gateway=\"unit-test\",le=\"+Inf\"} 1\n",
            "pedulicovid_send_latency_seconds_count{gateway=\"unit-test\"} 1\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
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
