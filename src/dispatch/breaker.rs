//! A circuit breaker per gateway. A gateway that keeps failing (transport
//! errors, 5xx, throttling) is taken out of rotation for a while, so its
//! traffic goes to the next route instead of piling retries onto it; after
//! the pause one probe request decides whether it is back.
//!
//! ```text
//! closed ──N consecutive failures──▶ open ──cool-down──▶ half-open
//!   ▲                                  ▲                    │
//!   └───────────── probe succeeds ─────┼────────────────────┤
//!                                      └── probe fails ─────┘
//! ```

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Throttles count this many times less than failures.
pub const THROTTLE_FACTOR: u32 = 5;

/// What the breaker lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Normal: everything goes through.
    Closed,
    /// Out of rotation until the cool-down ends.
    Open,
    /// Cool-down over: one probe is allowed through.
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

struct Inner {
    state: BreakerState,
    consecutive_failures: u32,
    consecutive_throttles: u32,
    opened_at: Option<Instant>,
    /// A probe is in flight (half-open admits one at a time).
    probing: bool,
    opens: u64,
}

/// One gateway's breaker.
pub struct Breaker {
    threshold: u32,
    cool_down: Duration,
    inner: Mutex<Inner>,
}

/// A change worth logging and storing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: BreakerState,
    pub to: BreakerState,
}

impl Breaker {
    /// Opens after `threshold` consecutive failures (0 = never), for `cool_down`.
    pub fn new(threshold: u32, cool_down: Duration) -> Breaker {
        Breaker {
            threshold,
            cool_down,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                consecutive_failures: 0,
                consecutive_throttles: 0,
                opened_at: None,
                probing: false,
                opens: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Plain data: a panicking holder cannot leave it half-updated.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// May a request go to this gateway now? In half-open state, admits one
    /// probe at a time.
    pub fn allow(&self) -> bool {
        let mut i = self.lock();
        match i.state {
            BreakerState::Closed => true,
            BreakerState::Open => {
                if i.opened_at.is_some_and(|t| t.elapsed() >= self.cool_down) {
                    i.state = BreakerState::HalfOpen;
                    i.probing = true;
                    true
                } else {
                    false
                }
            }
            BreakerState::HalfOpen => {
                if i.probing {
                    false
                } else {
                    i.probing = true;
                    true
                }
            }
        }
    }

    /// The gateway answered (accepted, or refused the message for good:
    /// a permanent refusal is a working gateway).
    pub fn success(&self) -> Option<Transition> {
        let mut i = self.lock();
        i.consecutive_failures = 0;
        i.consecutive_throttles = 0;
        i.probing = false;
        let from = i.state;
        i.state = BreakerState::Closed;
        i.opened_at = None;
        (from != BreakerState::Closed).then_some(Transition {
            from,
            to: BreakerState::Closed,
        })
    }

    /// The gateway failed transiently (transport error, 5xx).
    pub fn failure(&self) -> Option<Transition> {
        let mut i = self.lock();
        i.consecutive_failures = i.consecutive_failures.saturating_add(1);
        let tripped = self.threshold > 0 && i.consecutive_failures >= self.threshold;
        self.settle(&mut i, tripped)
    }

    /// The gateway is unusable (a TLS or URL fault, see
    /// [`crate::gateway::SendError::GatewayFault`]): every request would
    /// fail the same way, so the breaker opens at once (unless it is
    /// disabled, `threshold` 0, when this is an ordinary failure).
    pub fn fault(&self) -> Option<Transition> {
        let mut i = self.lock();
        i.consecutive_failures = i.consecutive_failures.saturating_add(1);
        let tripped = self.threshold > 0;
        self.settle(&mut i, tripped)
    }

    /// The gateway asked us to slow down. The adaptive rate answers that
    /// first; only throttling far beyond the failure threshold (×
    /// [`THROTTLE_FACTOR`], with nothing accepted in between) takes the
    /// gateway out of rotation.
    pub fn throttled(&self) -> Option<Transition> {
        let mut i = self.lock();
        i.consecutive_throttles = i.consecutive_throttles.saturating_add(1);
        let tripped = self.threshold > 0
            && i.consecutive_throttles >= self.threshold.saturating_mul(THROTTLE_FACTOR);
        self.settle(&mut i, tripped)
    }

    fn settle(&self, i: &mut Inner, tripped: bool) -> Option<Transition> {
        i.probing = false;
        let from = i.state;
        let trip = match from {
            BreakerState::HalfOpen => true,
            BreakerState::Closed => tripped,
            BreakerState::Open => false,
        };
        if trip {
            i.state = BreakerState::Open;
            i.opened_at = Some(Instant::now());
            i.opens += 1;
            return Some(Transition {
                from,
                to: BreakerState::Open,
            });
        }
        None
    }

    pub fn state(&self) -> BreakerState {
        self.lock().state
    }

    /// Times this breaker opened since start.
    pub fn opens(&self) -> u64 {
        self.lock().opens
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.lock().consecutive_failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_probes_after_cool_down() {
        let b = Breaker::new(3, Duration::from_millis(30));
        assert!(b.allow());
        assert_eq!(b.failure(), None);
        assert_eq!(b.failure(), None);
        assert_eq!(
            b.failure(),
            Some(Transition {
                from: BreakerState::Closed,
                to: BreakerState::Open
            })
        );
        assert!(!b.allow());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow(), "one probe after the cool-down");
        assert!(!b.allow(), "only one probe at a time");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        // The probe fails: open again.
        assert!(b.failure().is_some());
        assert!(!b.allow());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow());
        assert_eq!(
            b.success(),
            Some(Transition {
                from: BreakerState::HalfOpen,
                to: BreakerState::Closed
            })
        );
        assert!(b.allow());
        assert_eq!(b.opens(), 2);
    }

    #[test]
    fn throttling_trips_only_far_beyond_the_threshold() {
        let b = Breaker::new(2, Duration::from_secs(60));
        for _ in 0..(2 * THROTTLE_FACTOR - 1) {
            assert_eq!(b.throttled(), None);
        }
        assert!(b.throttled().is_some());
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn a_gateway_fault_opens_at_once() {
        let b = Breaker::new(20, Duration::from_secs(60));
        assert_eq!(
            b.fault(),
            Some(Transition {
                from: BreakerState::Closed,
                to: BreakerState::Open
            })
        );
        assert!(!b.allow());
        let never = Breaker::new(0, Duration::from_secs(60));
        assert_eq!(never.fault(), None, "threshold 0: never opens");
        assert!(never.allow());
    }

    #[test]
    fn successes_reset_the_count() {
        let b = Breaker::new(2, Duration::from_secs(60));
        b.failure();
        b.success();
        assert_eq!(b.failure(), None);
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
