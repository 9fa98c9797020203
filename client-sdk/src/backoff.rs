//! Retry timing: capped exponential backoff with full jitter, and jittered heartbeat intervals. Pure.

use std::time::Duration;

/// Capped exponential backoff: attempt `n` waits a random time in `[base·2ⁿ/2, base·2ⁿ]`, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First delay's upper bound.
    pub base: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    /// Delay before retry number `attempt` (0 for the first retry); `unit` is a random number in `[0, 1)`.
    ///
    /// "Equal jitter": half the window is fixed, half random, so a fleet spreads out but never retries
    /// at once in a tight loop.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let ceiling = self
            .base
            .checked_mul(1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX))
            .unwrap_or(self.max)
            .min(self.max);
        let half = ceiling / 2;
        half + half.mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// The wait before the next heartbeat: the gateway's interval minus up to 20%, so a fleet started
/// together drifts apart and no heartbeat is ever later than the interval the lease was sized for.
pub fn heartbeat_delay(interval: Duration, unit: f64) -> Duration {
    interval.mul_f64(1.0 - 0.2 * unit.clamp(0.0, 1.0))
}

/// A `Retry-After` value in seconds, bounded so a hostile or broken answer cannot park the SDK forever.
pub fn retry_after(seconds: u64, max: Duration) -> Duration {
    Duration::from_secs(seconds).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        base: Duration::from_millis(100),
        max: Duration::from_secs(5),
    };

    #[test]
    fn doubles_up_to_the_cap_with_equal_jitter() {
        // attempt:      0     1     2     3      4      5      6      7 ...
        // ceiling ms: 100   200   400   800   1600   3200   5000   5000
        let ceilings = [100, 200, 400, 800, 1600, 3200, 5000, 5000];
        for (n, c) in ceilings.iter().enumerate() {
            let c = Duration::from_millis(*c);
            assert_eq!(B.delay(n as u32, 0.0), c / 2, "attempt {n} low");
            assert_eq!(B.delay(n as u32, 1.0), c, "attempt {n} high");
        }
        assert_eq!(B.delay(1_000, 1.0), Duration::from_secs(5));
    }

    #[test]
    fn heartbeats_come_early_never_late() {
        let i = Duration::from_secs(5);
        assert_eq!(heartbeat_delay(i, 0.0), i);
        assert_eq!(heartbeat_delay(i, 1.0), Duration::from_secs(4));
        assert_eq!(heartbeat_delay(i, 0.5), Duration::from_millis(4500));
    }

    #[test]
    fn retry_after_is_bounded() {
        assert_eq!(
            retry_after(2, Duration::from_secs(30)),
            Duration::from_secs(2)
        );
        assert_eq!(
            retry_after(86_400, Duration::from_secs(30)),
            Duration::from_secs(30)
        );
    }
}
