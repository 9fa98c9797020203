//! Failure injection: fail every Nth request, fail with a probability, add latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What to inject.
#[derive(Debug, Clone, Default)]
pub struct FaultConfig {
    /// Every Nth request answers 500 (0: never).
    pub fail_every: u64,
    /// Probability in [0, 1] that a request answers 500.
    pub fail_rate: f64,
    /// Added to every request.
    pub latency: Duration,
}

/// Decides per request; shared by all workers.
#[derive(Debug, Default)]
pub struct Faults {
    config: FaultConfig,
    count: AtomicU64,
}

impl Faults {
    /// Injects according to `config`.
    pub fn new(config: FaultConfig) -> Self {
        Faults {
            config,
            count: AtomicU64::new(0),
        }
    }

    /// Whether this request should fail (counts it).
    pub fn should_fail(&self) -> bool {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        if self.config.fail_every > 0 && n % self.config.fail_every == 0 {
            return true;
        }
        self.config.fail_rate > 0.0 && fastrand::f64() < self.config.fail_rate
    }

    /// Latency to add.
    pub fn latency(&self) -> Duration {
        self.config.latency
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fails_every_nth() {
        let f = Faults::new(FaultConfig {
            fail_every: 3,
            ..Default::default()
        });
        let seq: Vec<bool> = (0..6).map(|_| f.should_fail()).collect();
        assert_eq!(seq, [false, false, true, false, false, true]);
    }

    #[test]
    fn rate_one_always_fails_and_zero_never() {
        let always = Faults::new(FaultConfig {
            fail_rate: 1.0,
            ..Default::default()
        });
        let never = Faults::default();
        assert!((0..100).all(|_| always.should_fail()));
        assert!((0..100).all(|_| !never.should_fail()));
    }
}
