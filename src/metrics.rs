//! Process-wide counters and a send-latency histogram, cheap enough for the
//! hot path (relaxed atomics, no locks). Read by the benchmark and reports.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
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
}
