//! When a replica leaves the registry: too many consecutive failures, a lapsed lease, or a deregistration.

use std::fmt;
use std::time::Duration;

/// Eviction thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvictionPolicy {
    /// Consecutive failures at which a registered replica is removed.
    pub failure_threshold: u32,
}

/// Why a replica left the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictionReason {
    /// It failed this many times in a row.
    Failures(u32),
    /// No heartbeat arrived for this long.
    LeaseExpired(Duration),
    /// No heartbeat arrived for `silent`, and self-preservation had held it for `held` (its hold ended).
    LeaseExpiredAfterHold {
        /// Time since the last heartbeat.
        silent: Duration,
        /// How long the hold lasted.
        held: Duration,
    },
    /// It deregistered itself.
    Deregistered,
}

impl EvictionPolicy {
    /// Decides whether `consecutive_failures` evicts a replica that may be evicted at all.
    pub fn on_failures(&self, consecutive_failures: u32) -> Option<EvictionReason> {
        (consecutive_failures >= self.failure_threshold)
            .then_some(EvictionReason::Failures(consecutive_failures))
    }
}

impl fmt::Display for EvictionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvictionReason::Failures(n) => write!(f, "{n} consecutive failures"),
            EvictionReason::LeaseExpired(d) => {
                write!(f, "lease expired, no heartbeat for {} ms", d.as_millis())
            }
            EvictionReason::LeaseExpiredAfterHold { silent, held } => write!(
                f,
                "lease expired, no heartbeat for {} ms; held {} ms by self-preservation",
                silent.as_millis(),
                held.as_millis()
            ),
            EvictionReason::Deregistered => f.write_str("deregistered"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_at_threshold_not_before() {
        let policy = EvictionPolicy {
            failure_threshold: 5,
        };
        // failures: 1 2 3 4 -> stay; 5 -> evict
        for n in 0..5 {
            assert_eq!(policy.on_failures(n), None);
        }
        assert_eq!(policy.on_failures(5), Some(EvictionReason::Failures(5)));
        assert_eq!(
            EvictionReason::LeaseExpired(Duration::from_millis(15_200)).to_string(),
            "lease expired, no heartbeat for 15200 ms"
        );
        assert_eq!(
            EvictionReason::LeaseExpiredAfterHold {
                silent: Duration::from_millis(31_400),
                held: Duration::from_secs(30)
            }
            .to_string(),
            "lease expired, no heartbeat for 31400 ms; held 30000 ms by self-preservation"
        );
    }
}
