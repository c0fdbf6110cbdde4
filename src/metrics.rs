//! Process-wide counters and a send-latency histogram, cheap enough for the
//! hot path (relaxed atomics, no locks). Read by the benchmark, reports and
//! `/metrics`.
//!
//! Two levels:
//! - process totals in [`Metrics`] (the benchmark's numbers);
//! - per gateway, in [`GatewayMetrics`]: sends, failures by
//!   [`FailureReason`], receipts by [`ReceiptLabel`], a send-latency
//!   histogram, rate-limit waits, breaker openings. A dispatcher route and a
//!   callback endpoint each look their gateway's slot up once, at start-up,
//!   and keep the `Arc`: the hot path touches atomics only, never a lock or
//!   a map. Labels stay bounded: gateway names come from the settings (at
//!   most [`MAX_GATEWAYS`] slots), reasons and receipt outcomes are closed
//!   enums.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use serde::Serialize;

/// Sub-buckets per power of two: about 9 % resolution.
const SUB: usize = 8;
/// Powers of two covered, in microseconds: up to 2^27 µs ≈ 134 s.
const POWERS: usize = 27;

/// A log-linear latency histogram in microseconds.
pub struct Histogram {
    buckets: Vec<AtomicU64>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..SUB * POWERS + SUB).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Histogram {
    fn index(us: u64) -> usize {
        if us < SUB as u64 {
            return us as usize;
        }
        let p = 63 - us.leading_zeros() as usize; // floor(log2)
        let frac = ((us >> (p.saturating_sub(3))) as usize) & (SUB - 1);
        ((p - 2) * SUB + frac).min(SUB * POWERS + SUB - 1)
    }

    /// Lower bound of bucket `i`, in microseconds.
    fn lower(i: usize) -> u64 {
        if i < SUB {
            return i as u64;
        }
        let p = i / SUB + 2;
        let frac = (i % SUB) as u64;
        (1u64 << p) + (frac << (p - 3))
    }

    pub fn record(&self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        self.buckets[Self::index(us)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The latency below which `q` (0..=1) of the samples fall, in ms.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::lower(i + 1) as f64 / 1000.0;
            }
        }
        Self::lower(counts.len()) as f64 / 1000.0
    }

    pub fn reset(&self) {
        for b in &self.buckets {
            b.store(0, Ordering::Relaxed);
        }
    }
}

/// Counters of this process.
#[derive(Default)]
pub struct Metrics {
    /// Messages a gateway accepted.
    pub sent: AtomicU64,
    /// Sends that will be retried (transient failures and throttles).
    pub retried: AtomicU64,
    /// Throttle answers (429 and dialect throttle codes).
    pub throttled: AtomicU64,
    /// Messages that ended failed in the worker.
    pub failed: AtomicU64,
    /// Messages deferred to their window.
    pub deferred: AtomicU64,
    /// Receipt callbacks taken (any effect).
    pub receipts: AtomicU64,
    /// Receipt group commits (batches handed to `apply_receipts`).
    pub receipt_batches: AtomicU64,
    /// Receipts in those batches (mean batch = rows / batches).
    pub receipt_batch_rows: AtomicU64,
    /// Deepest the receipt queue was seen, right after a callback joined it.
    pub receipt_queue_peak: AtomicU64,
    /// Times a gateway's circuit breaker opened.
    pub circuit_opens: AtomicU64,
    /// Time spent waiting on rate limiters, in microseconds.
    pub rate_wait_us: AtomicU64,
    /// Gateway request latency.
    pub send_latency: Histogram,
    /// How long claiming a batch took (the database's share of a send).
    pub claim_latency: LatencyBuckets,
    /// The same events by gateway (and reason), for `/metrics`.
    pub gateways: GatewayTable,
}

/// The process's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

/// A snapshot for reports.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub sent: u64,
    pub retried: u64,
    pub throttled: u64,
    pub failed: u64,
    pub deferred: u64,
    pub receipts: u64,
    pub rate_wait_s: f64,
    pub p50_send_ms: f64,
    pub p99_send_ms: f64,
}

impl Metrics {
    pub fn snapshot(&self) -> Snapshot {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            sent: l(&self.sent),
            retried: l(&self.retried),
            throttled: l(&self.throttled),
            failed: l(&self.failed),
            deferred: l(&self.deferred),
            receipts: l(&self.receipts),
            rate_wait_s: l(&self.rate_wait_us) as f64 / 1e6,
            p50_send_ms: self.send_latency.quantile_ms(0.50),
            p99_send_ms: self.send_latency.quantile_ms(0.99),
        }
    }
}

/// Why a message did not end accepted by a gateway: the `reason` label of
/// `pedulicovid_failures_total`, a closed set. Transient reasons put the
/// message back in the queue; permanent ones end it `failed` and flagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// The request timed out, or the gateway answered 408.
    Timeout,
    /// The gateway could not be reached (refused, reset, DNS).
    Connect,
    /// The gateway answered with a 5xx.
    Http5xx,
    /// The gateway asked us to slow down (429 or a dialect's throttle code).
    Throttled,
    /// A 2xx answer we could not read, or an answer cut off.
    BadAnswer,
    /// Any other transient failure (a dialect's "no route", "cannot charge").
    OtherTransient,
    /// A TLS failure: the gateway's certificate, name, date or CA, or our
    /// client certificate refused. The gateway's fault; the message waits.
    Tls,
    /// The gateway's URL cannot be used (invalid, or not http/https).
    GatewayConfig,
    /// The gateway refused the message for good.
    Rejected,
    /// The number is invalid (ours to parse, or the gateway said so).
    InvalidNumber,
    /// The template could not be rendered, or came out too long.
    RenderFailed,
    /// Transient failures until `worker.max_attempts` or `max_age_secs`.
    RetriesExhausted,
}

impl FailureReason {
    pub const ALL: [FailureReason; 12] = [
        FailureReason::Timeout,
        FailureReason::Connect,
        FailureReason::Http5xx,
        FailureReason::Throttled,
        FailureReason::BadAnswer,
        FailureReason::OtherTransient,
        FailureReason::Tls,
        FailureReason::GatewayConfig,
        FailureReason::Rejected,
        FailureReason::InvalidNumber,
        FailureReason::RenderFailed,
        FailureReason::RetriesExhausted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Timeout => "timeout",
            FailureReason::Connect => "connect",
            FailureReason::Http5xx => "http_5xx",
            FailureReason::Throttled => "throttled",
            FailureReason::BadAnswer => "bad_answer",
            FailureReason::OtherTransient => "other",
            FailureReason::Tls => "tls",
            FailureReason::GatewayConfig => "gateway_config",
            FailureReason::Rejected => "rejected",
            FailureReason::InvalidNumber => "invalid_number",
            FailureReason::RenderFailed => "render_failed",
            FailureReason::RetriesExhausted => "retries_exhausted",
        }
    }

    /// `transient` (retried), `gateway` (the gateway is unusable; the
    /// message waits without using an attempt) or `permanent` (failed): the
    /// `kind` label.
    pub fn kind(self) -> &'static str {
        match self {
            FailureReason::Tls | FailureReason::GatewayConfig => "gateway",
            FailureReason::Timeout
            | FailureReason::Connect
            | FailureReason::Http5xx
            | FailureReason::Throttled
            | FailureReason::BadAnswer
            | FailureReason::OtherTransient => "transient",
            FailureReason::Rejected
            | FailureReason::InvalidNumber
            | FailureReason::RenderFailed
            | FailureReason::RetriesExhausted => "permanent",
        }
    }

    /// The reason of a failed send, read from the error the dialect built.
    ///
    /// Transient reasons come from the prefixes the shared HTTP plumbing
    /// writes (`crate::gateway::http`: `transport_error`, `classify_status`)
    /// and the dialects' "unrecognised gateway answer":
    ///
    /// | `Retryable` reason starts with            | label        |
    /// |-------------------------------------------|--------------|
    /// | `timeout`, `HTTP 408`                     | `timeout`    |
    /// | `connect`                                 | `connect`    |
    /// | `HTTP 5`                                  | `http_5xx`   |
    /// | `reading answer`, `unrecognised gateway answer`, `no message id` | `bad_answer` |
    /// | anything else                             | `other`      |
    pub fn of_send_error(e: &crate::gateway::SendError) -> FailureReason {
        use crate::gateway::{Fault, SendError, Transient};
        match e {
            SendError::Throttled { .. } => FailureReason::Throttled,
            SendError::Permanent {
                invalid_number: true,
                ..
            } => FailureReason::InvalidNumber,
            SendError::Permanent { .. } => FailureReason::Rejected,
            SendError::GatewayFault { kind, .. } => match kind {
                Fault::Tls => FailureReason::Tls,
                Fault::Config => FailureReason::GatewayConfig,
            },
            SendError::Retryable { kind, .. } => match kind {
                Transient::Timeout => FailureReason::Timeout,
                Transient::Connect => FailureReason::Connect,
                Transient::Http5xx => FailureReason::Http5xx,
                Transient::BadAnswer => FailureReason::BadAnswer,
                Transient::Other => FailureReason::OtherTransient,
            },
        }
    }
}

/// What a receipt callback did: the `outcome` label of
/// `pedulicovid_receipts_total`, a closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptLabel {
    /// Applied: delivered to the handset.
    Delivered,
    /// Applied: not delivered.
    Undelivered,
    /// Applied: validity period ran out.
    Expired,
    /// Applied: refused by the SMSC or the network.
    Rejected,
    /// Applied: the number is not valid.
    InvalidNumber,
    /// An intermediate report (accepted, buffered): kept, no change.
    Accepted,
    /// A code the dialect does not define: kept, never guessed.
    Unknown,
    /// A duplicate, or older news than the message's status: kept, ignored.
    Duplicate,
    /// For a message we do not have (answered 404).
    UnknownMessage,
    /// Names only the gateway's id, whose send is not recorded yet: kept,
    /// applied by housekeeping.
    Pending,
    /// Could not be read (answered 400, kept raw).
    Malformed,
    /// Could not be stored (answered 503; the carrier sends it again).
    Unavailable,
    /// For a message handed to another gateway: kept, no change (200).
    NotOurs,
    /// For a message never handed over (queued, cancelled, failed before
    /// sending): kept, no change (200).
    NotSent,
    /// Refused 401: a wrong gateway token or per-message MAC (nothing kept).
    BadToken,
    /// Refused 401: the aggregator's signature is missing, wrong or stale
    /// (nothing kept).
    BadSignature,
}

impl ReceiptLabel {
    pub const ALL: [ReceiptLabel; 16] = [
        ReceiptLabel::Delivered,
        ReceiptLabel::Undelivered,
        ReceiptLabel::Expired,
        ReceiptLabel::Rejected,
        ReceiptLabel::InvalidNumber,
        ReceiptLabel::Accepted,
        ReceiptLabel::Unknown,
        ReceiptLabel::Duplicate,
        ReceiptLabel::UnknownMessage,
        ReceiptLabel::Pending,
        ReceiptLabel::Malformed,
        ReceiptLabel::Unavailable,
        ReceiptLabel::NotOurs,
        ReceiptLabel::NotSent,
        ReceiptLabel::BadToken,
        ReceiptLabel::BadSignature,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptLabel::Delivered => "delivered",
            ReceiptLabel::Undelivered => "undelivered",
            ReceiptLabel::Expired => "expired",
            ReceiptLabel::Rejected => "rejected",
            ReceiptLabel::InvalidNumber => "invalid_number",
            ReceiptLabel::Accepted => "accepted",
            ReceiptLabel::Unknown => "unknown",
            ReceiptLabel::Duplicate => "duplicate",
            ReceiptLabel::UnknownMessage => "unknown_message",
            ReceiptLabel::Pending => "pending",
            ReceiptLabel::Malformed => "malformed",
            ReceiptLabel::Unavailable => "unavailable",
            ReceiptLabel::NotOurs => "not_ours",
            ReceiptLabel::NotSent => "not_sent",
            ReceiptLabel::BadToken => "bad_token",
            ReceiptLabel::BadSignature => "bad_signature",
        }
    }
}

/// Upper bounds of the per-gateway latency histogram, in microseconds
/// (Prometheus' `le`, in seconds: 5 ms … 30 s). Carrier answers take
/// milliseconds on a LAN and seconds when a carrier struggles.
pub const LATENCY_BOUNDS_US: [u64; 12] = [
    5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000, 30_000_000,
];

/// Upper bounds of the receipt-lag histogram (hand-over to the final
/// receipt), in microseconds: 1 s … 24 h. Carriers report in seconds when
/// all is well, and hours when a phone is off (until the SMS expires).
pub const RECEIPT_LAG_BOUNDS_US: [u64; 13] = [
    1_000_000,
    5_000_000,
    15_000_000,
    30_000_000,
    60_000_000,
    120_000_000,
    300_000_000,
    600_000_000,
    1_800_000_000,
    3_600_000_000,
    7_200_000_000,
    21_600_000_000,
    86_400_000_000,
];

/// A fixed-bucket histogram of durations in Prometheus' shape: a count per
/// bound (not cumulative; the exposition adds them up), the overflow, the
/// sum. Lock-free: recording is two relaxed atomic adds.
pub struct LatencyBuckets {
    /// Upper bounds, in microseconds, ascending.
    bounds_us: &'static [u64],
    /// `counts[i]`: samples in `(bound[i-1], bound[i]]`; the last is `+Inf`.
    counts: Box<[AtomicU64]>,
    sum_us: AtomicU64,
}

impl Default for LatencyBuckets {
    /// The request-latency bounds ([`LATENCY_BOUNDS_US`]).
    fn default() -> Self {
        LatencyBuckets::with_bounds(&LATENCY_BOUNDS_US)
    }
}

impl LatencyBuckets {
    /// A histogram with these upper bounds (microseconds, ascending).
    pub fn with_bounds(bounds_us: &'static [u64]) -> LatencyBuckets {
        LatencyBuckets {
            bounds_us,
            counts: (0..=bounds_us.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn record(&self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        let i = self
            .bounds_us
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(self.bounds_us.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// `(le in seconds, cumulative count)` for every bound, `+Inf` last as
    /// `f64::INFINITY`.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut seen = 0;
        self.counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                seen += c.load(Ordering::Relaxed);
                let le = self
                    .bounds_us
                    .get(i)
                    .map_or(f64::INFINITY, |b| *b as f64 / 1e6);
                (le, seen)
            })
            .collect()
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
    }
}

/// One gateway's counters. Obtained once from [`GatewayTable::get`] and kept.
pub struct GatewayMetrics {
    /// The `gateway` label: a configured name, [`NO_GATEWAY`] or
    /// [`OTHER_GATEWAYS`].
    pub name: String,
    /// Messages this gateway accepted.
    pub sends: AtomicU64,
    /// Sends that did not end accepted, by [`FailureReason`] (index in
    /// [`FailureReason::ALL`]).
    failures: [AtomicU64; FailureReason::ALL.len()],
    /// Receipt callbacks by [`ReceiptLabel`] (index in [`ReceiptLabel::ALL`]).
    receipts: [AtomicU64; ReceiptLabel::ALL.len()],
    /// Gateway request latency.
    pub latency: LatencyBuckets,
    /// Hand-over (the send recorded) to the final receipt, for receipts
    /// that moved a message to a final status.
    pub receipt_lag: LatencyBuckets,
    /// Time sends to this gateway waited on rate limits (its own and the
    /// global cap), in microseconds.
    pub rate_wait_us: AtomicU64,
    /// Times this gateway's circuit breaker opened.
    pub circuit_opens: AtomicU64,
    /// Its configured messages per second in this process (0: unlimited),
    /// for a dashboard's "send rate against the limit".
    pub rate_limit_per_sec: AtomicU64,
}

impl GatewayMetrics {
    fn new(name: &str) -> GatewayMetrics {
        GatewayMetrics {
            name: name.to_string(),
            sends: AtomicU64::new(0),
            failures: Default::default(),
            receipts: Default::default(),
            latency: LatencyBuckets::default(),
            receipt_lag: LatencyBuckets::with_bounds(&RECEIPT_LAG_BOUNDS_US),
            rate_wait_us: AtomicU64::new(0),
            circuit_opens: AtomicU64::new(0),
            rate_limit_per_sec: AtomicU64::new(0),
        }
    }

    pub fn failure(&self, reason: FailureReason) {
        self.failures[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn failures(&self, reason: FailureReason) -> u64 {
        self.failures[reason as usize].load(Ordering::Relaxed)
    }

    pub fn receipt(&self, label: ReceiptLabel) {
        self.receipts[label as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn receipts(&self, label: ReceiptLabel) -> u64 {
        self.receipts[label as usize].load(Ordering::Relaxed)
    }

    pub fn rate_wait(&self, d: Duration) {
        self.rate_wait_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
}

/// The `gateway` label of failures before any gateway was chosen (the
/// number did not parse, the template did not render). Empty, like
/// `pedulicovid_messages`' gateway of a message never sent; no configured
/// gateway can be named so.
pub const NO_GATEWAY: &str = "";
/// The `gateway` label shared by every name past [`MAX_GATEWAYS`]. Not a
/// valid gateway name (the settings allow letters, digits, `-`, `_`).
pub const OTHER_GATEWAYS: &str = "(other)";
/// Gateway slots at most: a guard on label cardinality, far above any
/// real deployment's gateway count.
pub const MAX_GATEWAYS: usize = 32;

/// Per-gateway counters, one slot per name. The lock is taken when a route
/// or a callback endpoint is built and when `/metrics` is scraped, never
/// per message.
#[derive(Default)]
pub struct GatewayTable {
    slots: RwLock<Vec<Arc<GatewayMetrics>>>,
}

impl GatewayTable {
    /// The slot for `name`, created on first use. Names past
    /// [`MAX_GATEWAYS`] share the [`OTHER_GATEWAYS`] slot.
    pub fn get(&self, name: &str) -> Arc<GatewayMetrics> {
        // A panic while holding this lock cannot leave the vector
        // inconsistent (push is the only write): ignore poisoning.
        let find =
            |slots: &[Arc<GatewayMetrics>], n: &str| slots.iter().find(|g| g.name == n).cloned();
        if let Some(g) = find(&self.slots.read().unwrap_or_else(|p| p.into_inner()), name) {
            return g;
        }
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        if let Some(g) = find(&slots, name) {
            return g;
        }
        let name = if slots.len() < MAX_GATEWAYS {
            name
        } else {
            if let Some(g) = find(&slots, OTHER_GATEWAYS) {
                return g;
            }
            OTHER_GATEWAYS
        };
        let g = Arc::new(GatewayMetrics::new(name));
        slots.push(g.clone());
        g
    }

    /// Every slot, by name.
    pub fn all(&self) -> Vec<Arc<GatewayMetrics>> {
        let mut all = self.slots.read().unwrap_or_else(|p| p.into_inner()).clone();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}

/// Peak resident set size of this process, in MiB (Linux `VmHWM`).
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_a_bucket() {
        let h = Histogram::default();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile_ms(0.5);
        let p99 = h.quantile_ms(0.99);
        assert!((45.0..=56.0).contains(&p50), "{p50}");
        assert!((95.0..=110.0).contains(&p99), "{p99}");
        assert_eq!(h.count(), 100);
        for us in [0u64, 1, 7, 8, 9, 1000, 123_456, 10_000_000] {
            let i = Histogram::index(us);
            assert!(
                Histogram::lower(i) <= us && us < Histogram::lower(i + 1).max(us + 1),
                "{us}"
            );
        }
    }

    #[test]
    fn latency_buckets_are_cumulative() {
        let h = LatencyBuckets::default();
        h.record(Duration::from_millis(3));
        h.record(Duration::from_millis(5));
        h.record(Duration::from_millis(7));
        h.record(Duration::from_secs(60));
        let c = h.cumulative();
        assert_eq!(c[0], (0.005, 2));
        assert_eq!(c[1], (0.01, 3));
        assert_eq!(c.last().unwrap(), &(f64::INFINITY, 4));
        assert_eq!(h.count(), 4);
        assert!((h.sum_seconds() - 60.015).abs() < 1e-9);
    }

    #[test]
    fn receipt_lag_has_its_own_bounds() {
        let h = LatencyBuckets::with_bounds(&RECEIPT_LAG_BOUNDS_US);
        h.record(Duration::from_millis(800));
        h.record(Duration::from_secs(400));
        let c = h.cumulative();
        assert_eq!(c.len(), RECEIPT_LAG_BOUNDS_US.len() + 1);
        assert_eq!(c[0], (1.0, 1));
        assert_eq!(c[6], (300.0, 1));
        assert_eq!(c[7], (600.0, 2));
    }

    #[test]
    fn gateway_slots_are_shared_and_bounded() {
        let t = GatewayTable::default();
        let a = t.get("sim");
        a.sends.fetch_add(1, Ordering::Relaxed);
        assert_eq!(t.get("sim").sends.load(Ordering::Relaxed), 1);
        for i in 0..100 {
            t.get(&format!("gw{i}"));
        }
        let all = t.all();
        assert_eq!(all.len(), MAX_GATEWAYS + 1);
        assert!(all.iter().any(|g| g.name == OTHER_GATEWAYS));
        assert!(Arc::ptr_eq(&t.get("gw99"), &t.get("gw98")));
    }

    #[test]
    fn send_errors_map_to_their_reasons() {
        use crate::gateway::http::classify_status;
        use crate::gateway::{SendError, Transient};
        use reqwest::StatusCode;
        let of = |s: u16| {
            let e = classify_status(StatusCode::from_u16(s).unwrap(), None, "body").unwrap_err();
            FailureReason::of_send_error(&e)
        };
        assert_eq!(of(503), FailureReason::Http5xx);
        assert_eq!(of(408), FailureReason::Timeout);
        assert_eq!(of(429), FailureReason::Throttled);
        assert_eq!(of(400), FailureReason::Rejected);
        let retry = |k: Transient| FailureReason::of_send_error(&SendError::retry(k, "x"));
        assert_eq!(retry(Transient::Timeout), FailureReason::Timeout);
        assert_eq!(retry(Transient::Connect), FailureReason::Connect);
        assert_eq!(retry(Transient::BadAnswer), FailureReason::BadAnswer);
        assert_eq!(retry(Transient::Other), FailureReason::OtherTransient);
        let fault = |kind| {
            FailureReason::of_send_error(&SendError::GatewayFault {
                reason: "x".into(),
                kind,
            })
        };
        assert_eq!(fault(crate::gateway::Fault::Tls), FailureReason::Tls);
        assert_eq!(
            fault(crate::gateway::Fault::Config),
            FailureReason::GatewayConfig
        );
        assert_eq!(FailureReason::Tls.kind(), "gateway");
        let invalid = SendError::Permanent {
            reason: "x".into(),
            invalid_number: true,
        };
        assert_eq!(
            FailureReason::of_send_error(&invalid),
            FailureReason::InvalidNumber
        );
        for (i, r) in FailureReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "ALL is in declaration order");
        }
        for (i, r) in ReceiptLabel::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "ALL is in declaration order");
        }
    }
}
