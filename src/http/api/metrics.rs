//! `GET /metrics`: the Prometheus text exposition (format 0.0.4).
//!
//! The values live in lock-free atomics ([`crate::metrics`]) that the hot
//! path bumps; at each scrape they are turned into metric families and the
//! `prometheus` crate writes the text (escaping, `+Inf`, one `HELP`/`TYPE`
//! a family) and adds its process collector. Why that crate and not
//! `prometheus-client`: the latter writes OpenMetrics only, whose counter
//! families (`x` with samples `x_total`) the `promtool check metrics` of
//! Debian's Prometheus (2.42) refuses; the classic format is what every
//! Prometheus scrapes and that promtool checks.
//!
//! No token: every value is an aggregate count or a latency, never a
//! number, NIK or name, and Prometheus scrapers are simplest without
//! credentials. Put the port behind the network's own access rules.
//!
//! Sources:
//! - the database (every process's work): messages by gateway and status,
//!   open flags by gateway and reason, stored receipts by gateway and
//!   outcome. Read at most once a second, however many scrapers ask;
//!   concurrent scrapes wait for one query. Totals are a `sum by` in
//!   PromQL: no family repeats another summed.
//! - this process's counters ([`crate::metrics::METRICS`]): by gateway,
//!   sends, failures by kind and reason, receipts by outcome, the
//!   send-latency histogram, rate-limit waits and breaker openings;
//!   deferrals to a send window and the claim-latency histogram. Label
//!   values are bounded: gateway names come from the settings, reasons and
//!   outcomes are closed enums.
//! - the process (CPU, memory, file descriptors, threads, start time),
//!   `pedulicovid_build_info{version,commit}` and the async runtime's
//!   threads (`pedulicovid_runtime_threads`).
//!
//! A `pedulicovid worker` serves the last two on its `[metrics] listen`
//! address ([`render_process_only`]).

use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use tokio::sync::Mutex;

use crate::http::AppState;
use prometheus::proto::{self, MetricFamily, MetricType};

use crate::metrics::{
    FailureReason, GatewayMetrics, LatencyBuckets, ReceiptLabel, METRICS, NO_GATEWAY,
};
use crate::store::{GatewayCount, Gauges};

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

/// Renders the exposition text: the database gauges (`g`: `None` when
/// the database did not answer), this process's counters, the process
/// (CPU, memory, files) and the build.
pub fn render(g: Option<&Gauges>) -> String {
    let mut families = gauge_families(g);
    families.extend(process_families());
    encode(&families)
}

/// The exposition of a process without the HTTP server (`pedulicovid
/// worker`): its own counters, process and build only. The database gauges
/// are every process's work, served by `serve`/`run`; a worker serving
/// them too would count the same messages once per worker in a `sum`.
pub fn render_process_only() -> String {
    encode(&process_families())
}

/// The text format, by the `prometheus` crate's encoder (escaping, `+Inf`,
/// number formatting, one `HELP`/`TYPE` per family).
/// A family with no sample yet (no flag open, no gateway used) is left
/// out: the format has no empty family, and the encoder refuses one.
fn encode(families: &[MetricFamily]) -> String {
    let present: Vec<MetricFamily> = families
        .iter()
        .filter(|f| !f.get_metric().is_empty())
        .cloned()
        .collect();
    prometheus::TextEncoder::new()
        .encode_to_string(&present)
        .unwrap_or_else(|e| format!("# encoding failed: {e}\n"))
}

/// A family of `kind` with its samples.
fn family(name: &str, help: &str, kind: MetricType, samples: Vec<proto::Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    f.set_metric(samples);
    f
}

/// A sample with these labels (names from a closed set; values escaped by
/// the encoder).
fn labelled(labels: &[(&str, &str)]) -> proto::Metric {
    let mut m = proto::Metric::default();
    m.set_label(
        labels
            .iter()
            .map(|(k, v)| {
                let mut l = proto::LabelPair::default();
                l.set_name(k.to_string());
                l.set_value(v.to_string());
                l
            })
            .collect(),
    );
    m
}

fn counter(labels: &[(&str, &str)], v: f64) -> proto::Metric {
    let mut m = labelled(labels);
    let mut c = proto::Counter::default();
    c.set_value(v);
    m.set_counter(c);
    m
}

fn gauge(labels: &[(&str, &str)], v: f64) -> proto::Metric {
    let mut m = labelled(labels);
    let mut g = proto::Gauge::default();
    g.set_value(v);
    m.set_gauge(g);
    m
}

fn histogram(labels: &[(&str, &str)], h: &LatencyBuckets) -> proto::Metric {
    let mut m = labelled(labels);
    let mut p = proto::Histogram::default();
    p.set_bucket(
        // The encoder adds `+Inf` (the count) itself; given one, it would
        // write `inf`, which is not the format.
        h.cumulative()
            .into_iter()
            .filter(|(le, _)| le.is_finite())
            .map(|(le, n)| {
                let mut b = proto::Bucket::default();
                b.set_upper_bound(le);
                b.set_cumulative_count(n);
                b
            })
            .collect(),
    );
    p.set_sample_count(h.count());
    p.set_sample_sum(h.sum_seconds());
    m.set_histogram(p);
    m
}

/// The database's view, every process's work: messages by gateway and
/// status, open flags by gateway and reason, stored receipts by gateway and
/// outcome. Totals per status or reason are a `sum by` in PromQL, so no
/// family is a pre-summed copy of another.
fn gauge_families(g: Option<&Gauges>) -> Vec<MetricFamily> {
    let mut out = vec![family(
        "pedulicovid_database_up",
        "1 when the database answered the last gauge read.",
        MetricType::GAUGE,
        vec![gauge(&[], f64::from(u8::from(g.is_some())))],
    )];
    let Some(g) = g else {
        return out;
    };
    let by = |rows: &[GatewayCount], label: &str| -> Vec<proto::Metric> {
        rows.iter()
            .map(|c| {
                gauge(
                    &[("gateway", &c.gateway), (label, &c.label)],
                    c.count as f64,
                )
            })
            .collect()
    };
    out.push(family(
        "pedulicovid_messages",
        "Messages in the database by gateway (empty before the first send) and status.",
        MetricType::GAUGE,
        by(&g.messages, "status"),
    ));
    out.push(family(
        "pedulicovid_open_flags",
        "Open non-recipient flags by gateway (empty: failed before one was chosen) and reason.",
        MetricType::GAUGE,
        by(&g.open_flags, "reason"),
    ));
    out.push(family(
        "pedulicovid_receipts_stored",
        "Receipts kept in the database by gateway and outcome.",
        MetricType::GAUGE,
        by(&g.receipts, "outcome"),
    ));
    out.push(family(
        "pedulicovid_campaigns",
        "Campaigns by status.",
        MetricType::GAUGE,
        g.campaigns
            .iter()
            .map(|c| gauge(&[("status", &c.label)], c.count as f64))
            .collect(),
    ));
    out.push(family(
        "pedulicovid_campaigns_auto_paused",
        "Paused campaigns that the failure-rate guard paused, not an operator.",
        MetricType::GAUGE,
        vec![gauge(&[], g.auto_paused as f64)],
    ));
    out
}

/// The process collector of the `prometheus` crate (Linux `/proc`): CPU
/// seconds, resident and virtual memory, open and maximum file
/// descriptors, threads, start time.
static PROCESS: LazyLock<prometheus::process_collector::ProcessCollector> =
    LazyLock::new(prometheus::process_collector::ProcessCollector::for_self);

/// This process: its counters, the process collector, the build.
fn process_families() -> Vec<MetricFamily> {
    use prometheus::core::Collector;
    let mut out = vec![family(
        "pedulicovid_build_info",
        "The running build: version and git commit (always 1).",
        MetricType::GAUGE,
        vec![gauge(
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("commit", crate::BUILD_COMMIT),
            ],
            1.0,
        )],
    )];
    let m = &*METRICS;
    out.push(family(
        "pedulicovid_deferrals_total",
        "Messages deferred to their send window (this process).",
        MetricType::COUNTER,
        vec![counter(&[], m.deferred.load(Ordering::Relaxed) as f64)],
    ));
    out.push(family(
        "pedulicovid_claim_latency_seconds",
        "Time one claim of a batch of due messages took (this process's workers).",
        MetricType::HISTOGRAM,
        vec![histogram(&[], &m.claim_latency)],
    ));
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        out.push(family(
            "pedulicovid_runtime_threads",
            "Threads of the async runtime running this process's tasks ([runtime] threads).",
            MetricType::GAUGE,
            vec![gauge(&[], runtime.metrics().num_workers() as f64)],
        ));
    }
    out.extend(gateway_families(&m.gateways.all()));
    out.extend(PROCESS.collect());
    out
}

/// The per-gateway families. The slot of failures before any gateway was
/// chosen ([`NO_GATEWAY`]) only has permanent failures.
fn gateway_families(slots: &[Arc<GatewayMetrics>]) -> Vec<MetricFamily> {
    let routed = || slots.iter().filter(|g| g.name != NO_GATEWAY);
    let per_gateway = |f: &dyn Fn(&GatewayMetrics) -> f64| -> Vec<proto::Metric> {
        routed()
            .map(|g| counter(&[("gateway", &g.name)], f(g)))
            .collect()
    };
    let mut failures = vec![];
    for g in slots {
        for r in FailureReason::ALL {
            if g.name == NO_GATEWAY && r.kind() != "permanent" {
                continue;
            }
            failures.push(counter(
                &[
                    ("gateway", &g.name),
                    ("kind", r.kind()),
                    ("reason", r.as_str()),
                ],
                g.failures(r) as f64,
            ));
        }
    }
    let mut receipts = vec![];
    for g in routed() {
        for r in ReceiptLabel::ALL {
            receipts.push(counter(
                &[("gateway", &g.name), ("outcome", r.as_str())],
                g.receipts(r) as f64,
            ));
        }
    }
    vec![
        family(
            "pedulicovid_sends_total",
            "Messages a gateway accepted, by gateway (this process).",
            MetricType::COUNTER,
            per_gateway(&|g| g.sends.load(Ordering::Relaxed) as f64),
        ),
        family(
            "pedulicovid_failures_total",
            "Sends that did not end accepted, by gateway (empty: none chosen yet), kind \
             (transient: retried; gateway: TLS or URL fault of the gateway, the message waits \
             without using an attempt; permanent: failed and flagged) and reason (this process).",
            MetricType::COUNTER,
            failures,
        ),
        family(
            "pedulicovid_receipts_total",
            "Receipt callbacks by gateway and outcome (this process).",
            MetricType::COUNTER,
            receipts,
        ),
        family(
            "pedulicovid_send_latency_seconds",
            "Gateway request latency by gateway (this process).",
            MetricType::HISTOGRAM,
            routed()
                .map(|g| histogram(&[("gateway", &g.name)], &g.latency))
                .collect(),
        ),
        family(
            "pedulicovid_receipt_lag_seconds",
            "Hand-over (the send recorded) to the final receipt, by gateway, for receipts \
             that moved a message to a final status (this process: where receipts arrive).",
            MetricType::HISTOGRAM,
            routed()
                .map(|g| histogram(&[("gateway", &g.name)], &g.receipt_lag))
                .collect(),
        ),
        family(
            "pedulicovid_rate_limit_wait_seconds_total",
            "Time sends waited on rate limits (the gateway's and the global cap), by gateway \
             (this process).",
            MetricType::COUNTER,
            per_gateway(&|g| g.rate_wait_us.load(Ordering::Relaxed) as f64 / 1e6),
        ),
        family(
            "pedulicovid_gateway_rate_limit_per_second",
            "A gateway's configured messages per second in this process's workers \
             (absent when unlimited, or where no worker routes to it).",
            MetricType::GAUGE,
            routed()
                .filter(|g| g.rate_limit_per_sec.load(Ordering::Relaxed) > 0)
                .map(|g| {
                    gauge(
                        &[("gateway", &g.name)],
                        g.rate_limit_per_sec.load(Ordering::Relaxed) as f64,
                    )
                })
                .collect(),
        ),
        family(
            "pedulicovid_circuit_opens_total",
            "Times a gateway's circuit breaker opened, by gateway (this process).",
            MetricType::COUNTER,
            per_gateway(&|g| g.circuit_opens.load(Ordering::Relaxed) as f64),
        ),
    ]
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
            campaigns: vec![count("", "paused", 2)],
            auto_paused: 1,
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
            "pedulicovid_messages{gateway=\"\",status=\"queued\"} 2\n",
            "pedulicovid_messages{gateway=\"sim\",status=\"delivered\"} 5\n",
            "pedulicovid_open_flags{gateway=\"sim\",reason=\"undelivered\"} 1\n",
            "pedulicovid_database_up 1\n",
            "pedulicovid_campaigns{status=\"paused\"} 2\n",
            "pedulicovid_campaigns_auto_paused 1\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        // Named for what they count, none a sum of another.
        for gone in [
            "pedulicovid_queue_depth",
            "pedulicovid_open_flags_by_gateway",
        ] {
            assert!(!text.contains(gone), "{gone}");
        }
        assert!(
            text.contains(&format!(
                "pedulicovid_build_info{{version=\"{}\",commit=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION"),
                crate::BUILD_COMMIT
            )),
            "{text}"
        );
        assert!(
            text.contains("pedulicovid_claim_latency_seconds_count"),
            "{text}"
        );
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
        assert!(text.contains("process_cpu_seconds_total"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').expect("name value");
            assert!(value.parse::<f64>().is_ok(), "{line}");
            assert!(
                name.starts_with("pedulicovid_") || name.starts_with("process_"),
                "{line}"
            );
        }
        // A label value the text format must escape.
        let odd = gauge_families(Some(&Gauges {
            messages: vec![count("a\"b\\c\n", "queued", 1)],
            open_flags: vec![],
            receipts: vec![],
            campaigns: vec![],
            auto_paused: 0,
        }));
        assert!(
            encode(&odd).contains(r#"gateway="a\"b\\c\n""#),
            "{}",
            encode(&odd)
        );
        assert!(render(None).contains("pedulicovid_database_up 0"));
        let worker = render_process_only();
        assert!(!worker.contains("pedulicovid_database_up"), "{worker}");
        assert!(worker.contains("pedulicovid_sends_total"), "{worker}");
    }
}
