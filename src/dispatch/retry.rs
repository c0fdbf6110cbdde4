//! The retry policy, in one place: exponential backoff with jitter from the
//! `backoff` crate, Retry-After honoured.

use std::time::Duration;

use backoff::backoff::Backoff;
use backoff::ExponentialBackoff;

/// How long to wait before attempt `attempt + 1`, after `attempt` attempts
/// failed transiently: `initial × 2^(attempt-1)`, capped at `max`, with ±50 %
/// jitter so a burst of failures does not come back as a burst. A carrier's
/// Retry-After is a floor.
pub fn retry_delay(
    attempt: u32,
    initial: Duration,
    max: Duration,
    retry_after: Option<Duration>,
) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let base = initial.saturating_mul(1u32 << exp.min(31)).min(max);
    let mut policy = ExponentialBackoff {
        current_interval: base,
        initial_interval: initial,
        randomization_factor: 0.5,
        multiplier: 2.0,
        max_interval: max,
        max_elapsed_time: None,
        ..ExponentialBackoff::default()
    };
    // With no max_elapsed_time the policy never gives up.
    let jittered = policy.next_backoff().unwrap_or(base).min(max);
    match retry_after {
        Some(ra) if ra > jittered => ra,
        _ => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_with_jitter_and_caps() {
        let i = Duration::from_secs(2);
        let m = Duration::from_secs(60);
        for attempt in 1..10 {
            let base = (2u64 << (attempt - 1)).min(60) as f64;
            let d = retry_delay(attempt, i, m, None).as_secs_f64();
            assert!(
                d >= base * 0.5 - 0.001 && d <= (base * 1.5).min(60.0) + 0.001,
                "attempt {attempt}: {d}"
            );
        }
        assert_eq!(
            retry_delay(1, i, m, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        assert!(retry_delay(40, i, m, None) <= m);
    }
}
