//! Rate limits as carriers price them: messages per second, segments per
//! second (a 2-part SMS costs 2), a global cap over all gateways, each
//! divided by the number of live worker processes so the carrier sees the
//! configured total; and an adaptive factor that halves the rate when the
//! gateway throttles and creeps back when it stops.

use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::metrics::METRICS;

/// Lowest adaptive factor: a throttling gateway still gets 5 % of its rate.
const MIN_FACTOR: f64 = 0.05;
/// How long without a throttle before the rate starts to recover.
const CALM: Duration = Duration::from_secs(5);

/// One configured rate (per second, all workers together); 0 = unlimited.
pub struct Limit {
    per_sec: u32,
    state: Mutex<LimitState>,
}

struct LimitState {
    share: u32,
    factor: f64,
    /// The limiter and its burst (governor does not expose the burst).
    limiter: Option<(Arc<DefaultDirectRateLimiter>, u32)>,
    /// Effective rate of `limiter`, per second, for reports.
    effective: f64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave it inconsistent: every
    // field is replaced whole.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Limit {
    pub fn new(per_sec: u32) -> Limit {
        let l = Limit {
            per_sec,
            state: Mutex::new(LimitState {
                share: 1,
                factor: 1.0,
                limiter: None,
                effective: 0.0,
            }),
        };
        l.rebuild(&mut lock(&l.state));
        l
    }

    /// Builds the limiter for `per_sec × factor / share`, with a burst of a
    /// tenth of a second's worth: a carrier never sees more than that at once.
    fn rebuild(&self, st: &mut LimitState) {
        if self.per_sec == 0 {
            st.limiter = None;
            return;
        }
        let rate = (self.per_sec as f64 * st.factor / st.share.max(1) as f64).max(0.1);
        st.effective = rate;
        let burst =
            NonZeroU32::new(((rate / 10.0).ceil() as u32).max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(Duration::from_secs_f64(1.0 / rate))
            .map(|q| q.allow_burst(burst))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN));
        st.limiter = Some((Arc::new(RateLimiter::direct(quota)), burst.get()));
    }

    pub fn is_limited(&self) -> bool {
        self.per_sec > 0
    }

    /// Waits for `n` cells (1 per message, or the segment count); returns
    /// how long it waited (also added to the process total).
    pub async fn acquire(&self, n: u32) -> Duration {
        let Some((limiter, burst)) = lock(&self.state).limiter.clone() else {
            return Duration::ZERO;
        };
        let started = Instant::now();
        let mut left = n.max(1);
        while left > 0 {
            // Take at most the burst at once; a 3-part SMS under a burst of
            // 1 waits three cells.
            let step = left.min(burst).max(1);
            let cells = NonZeroU32::new(step).unwrap_or(NonZeroU32::MIN);
            if limiter.until_n_ready(cells).await.is_err() {
                // Cannot happen (step <= burst); wait one cell anyway.
                limiter.until_ready().await;
            }
            left -= step;
        }
        let waited = started.elapsed();
        METRICS
            .rate_wait_us
            .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
        waited
    }

    /// This process's share when `workers` processes are alive.
    pub fn set_share(&self, workers: u32) {
        let mut st = lock(&self.state);
        if st.share != workers.max(1) {
            st.share = workers.max(1);
            self.rebuild(&mut st);
        }
    }

    fn scale(&self, f: impl Fn(f64) -> f64) {
        let mut st = lock(&self.state);
        let next = f(st.factor).clamp(MIN_FACTOR, 1.0);
        if (next - st.factor).abs() > 1e-9 {
            st.factor = next;
            self.rebuild(&mut st);
        }
    }

    /// Effective rate per second of this process (0 = unlimited).
    pub fn effective(&self) -> f64 {
        if self.per_sec == 0 {
            0.0
        } else {
            lock(&self.state).effective
        }
    }

    pub fn factor(&self) -> f64 {
        lock(&self.state).factor
    }
}

/// The limits of one gateway, with its adaptive throttle state.
pub struct GatewayLimits {
    pub messages: Limit,
    pub segments: Limit,
    last_throttle: Mutex<Option<Instant>>,
}

impl GatewayLimits {
    pub fn new(messages_per_sec: u32, segments_per_sec: u32) -> GatewayLimits {
        GatewayLimits {
            messages: Limit::new(messages_per_sec),
            segments: Limit::new(segments_per_sec),
            last_throttle: Mutex::new(None),
        }
    }

    /// Waits for one message and `segments` segments; returns the time
    /// spent waiting.
    pub async fn acquire(&self, segments: u32) -> Duration {
        self.messages.acquire(1).await + self.segments.acquire(segments).await
    }

    pub fn set_share(&self, workers: u32) {
        self.messages.set_share(workers);
        self.segments.set_share(workers);
    }

    /// The gateway said "slow down": halve the rate.
    pub fn throttled(&self) {
        *lock(&self.last_throttle) = Some(Instant::now());
        self.messages.scale(|f| f * 0.5);
        self.segments.scale(|f| f * 0.5);
    }

    /// Called periodically: after a calm spell, recover 25 % per call.
    pub fn recover(&self) {
        let calm = lock(&self.last_throttle).is_none_or(|t| t.elapsed() >= CALM);
        if calm {
            self.messages.scale(|f| f * 1.25);
            self.segments.scale(|f| f * 1.25);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_halves_and_recovers() {
        let g = GatewayLimits::new(100, 0);
        g.throttled();
        assert!((g.messages.effective() - 50.0).abs() < 0.01);
        g.set_share(2);
        assert!((g.messages.effective() - 25.0).abs() < 0.01);
        *lock(&g.last_throttle) = Some(Instant::now() - CALM);
        g.recover();
        assert!((g.messages.factor() - 0.625).abs() < 1e-9);
        for _ in 0..10 {
            g.recover();
        }
        assert!((g.messages.factor() - 1.0).abs() < 1e-9);
        assert!(!g.segments.is_limited());
    }

    #[tokio::test]
    async fn holds_the_rate() {
        let l = Limit::new(200);
        let start = Instant::now();
        for _ in 0..100 {
            l.acquire(1).await;
        }
        // 100 cells at 200/s with a burst of 20: at least (100-20)/200 s.
        assert!(
            start.elapsed() >= Duration::from_millis(390),
            "{:?}",
            start.elapsed()
        );
    }
}
