//! The retry policy, in one place: exponential backoff with jitter from the
//! `backoff` crate, Retry-After honoured.

use std::time::Duration;

use backoff::backoff::Backoff;
use backoff::ExponentialBackoff;

/// How long to wait before attempt `attempt + 1`, after `attempt` attempts
/// failed transiently. The `backoff` crate's [`ExponentialBackoff`] computes
/// it: started at `initial`, doubled per attempt up to `max`, each interval
/// jittered ±50 % so a burst of failures does not come back as a burst. The
/// policy is replayed from the start because only the attempt count is
/// stored (in the queue row), not the policy's state; once the interval has
/// reached `max` further steps change nothing, so the replay is short. A
/// carrier's Retry-After is a floor.
pub fn retry_delay(
    attempt: u32,
    initial: Duration,
    max: Duration,
    retry_after: Option<Duration>,
) -> Duration {
    let mut policy = ExponentialBackoff {
        current_interval: initial,
        initial_interval: initial,
        randomization_factor: 0.5,
        multiplier: 2.0,
        max_interval: max,
        // Never give up: the attempt limit is the worker's, not the policy's.
        max_elapsed_time: None,
        ..ExponentialBackoff::default()
    };
    let mut delay = initial;
    for _ in 0..attempt.clamp(1, 64) {
        let capped = policy.current_interval >= max;
        delay = policy.next_backoff().unwrap_or(max);
        if capped {
            // Every later step draws from this same distribution.
            break;
        }
    }
    let jittered = delay.min(max);
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
