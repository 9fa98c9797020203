//! What opens a closed breaker: the failure ratio's counts over a window, and the cause an opening names.

use std::time::{Duration, Instant};

use super::BreakerConfig;
use crate::clock::Stamp;

/// Why a closed breaker opened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OpenCause {
    /// `n` consecutive failures.
    Consecutive(u32),
    /// `failures` of `requests` in the window failed.
    Ratio {
        /// Failures in the window.
        failures: u32,
        /// Requests in the window.
        requests: u32,
    },
}

impl std::fmt::Display for OpenCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenCause::Consecutive(n) => write!(f, "{n} consecutive failures"),
            OpenCause::Ratio { failures, requests } => write!(
                f,
                "{failures} of {requests} requests failed ({}%)",
                (u64::from(*failures) * 100) / u64::from((*requests).max(1))
            ),
        }
    }
}

/// The closed breaker's counts over its current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Window {
    pub(super) start: Option<Stamp>,
    pub(super) requests: u32,
    pub(super) failures: u32,
}

impl Window {
    /// Counts one outcome at `now`, restarting the counts when the window is over.
    pub(super) fn count(&mut self, failed: bool, now: Instant, length: Duration) {
        match self.start {
            Some(start) if now < start.instant() + length => {}
            _ => {
                *self = Window {
                    start: Some(Stamp::of(now)),
                    requests: 0,
                    failures: 0,
                }
            }
        }
        self.requests = self.requests.saturating_add(1);
        self.failures = self.failures.saturating_add(u32::from(failed));
    }

    /// Whether the counts trip the ratio rule.
    pub(super) fn trips(&self, cfg: &BreakerConfig) -> bool {
        match cfg.failure_ratio {
            Some(ratio) => {
                self.requests >= cfg.min_requests.max(1)
                    && f64::from(self.failures) >= ratio * f64::from(self.requests)
            }
            None => false,
        }
    }
}
