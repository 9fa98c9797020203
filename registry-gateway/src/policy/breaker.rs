//! Per-replica circuit breaker: closed → open after N consecutive failures → half-open single probe.

use std::time::{Duration, Instant};

/// Breaker thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open a closed breaker.
    pub failure_threshold: u32,
    /// How long an open breaker rejects requests before it lets one probe through.
    pub open_timeout: Duration,
    /// How long a half-open probe may stay unanswered before another probe is allowed
    /// (a probe whose client went away never reports).
    pub probe_timeout: Duration,
}

/// The state a breaker shows to operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Requests flow.
    Closed,
    /// Requests are refused until the open timeout passes.
    Open,
    /// One probe request decides between closed and open.
    HalfOpen,
}

/// A change of state worth one log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Closed → open: the failure threshold was reached.
    Opened,
    /// Half-open → open: the probe failed.
    Reopened,
    /// Open → half-open: the open timeout passed and a probe was let through.
    HalfOpened,
    /// Half-open → closed: the probe succeeded.
    Closed,
}

/// Whether a request may go to this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead. `probe` is true when this request is the half-open probe.
    Admitted {
        /// This request decides the half-open breaker.
        probe: bool,
        /// The breaker moved open → half-open to admit it.
        transition: Option<Transition>,
    },
    /// Not now.
    Rejected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inner {
    Closed,
    Open { until: Instant },
    HalfOpen { probe_since: Option<Instant> },
}

/// A consecutive-failures circuit breaker. Pure: every call takes `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaker {
    inner: Inner,
    consecutive_failures: u32,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            inner: Inner::Closed,
            consecutive_failures: 0,
        }
    }
}

impl Breaker {
    /// A breaker for a replica that returns after eviction: open from `now`, keeping its failure count,
    /// so it must pass a half-open probe before it takes regular traffic again.
    pub fn on_probation(consecutive_failures: u32, now: Instant, cfg: &BreakerConfig) -> Self {
        Breaker {
            inner: Inner::Open {
                until: now + cfg.open_timeout,
            },
            consecutive_failures,
        }
    }

    /// Consecutive failures since the last success.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// The state as operators should see it at `now` (an open breaker whose timeout passed shows half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.inner {
            Inner::Closed => BreakerState::Closed,
            Inner::Open { until } if now >= until => BreakerState::HalfOpen,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Whether [`Breaker::try_admit`] would admit a request at `now`. Does not change anything.
    pub fn can_admit(&self, now: Instant, cfg: &BreakerConfig) -> bool {
        match self.inner {
            Inner::Closed => true,
            Inner::Open { until } => now >= until,
            Inner::HalfOpen { probe_since: None } => true,
            Inner::HalfOpen {
                probe_since: Some(since),
            } => now >= since + cfg.probe_timeout,
        }
    }

    /// How long from `now` until the breaker admits a request (zero when it does now).
    pub fn admits_in(&self, now: Instant, cfg: &BreakerConfig) -> Duration {
        match self.inner {
            Inner::Closed | Inner::HalfOpen { probe_since: None } => Duration::ZERO,
            Inner::Open { until } => until.saturating_duration_since(now),
            Inner::HalfOpen {
                probe_since: Some(since),
            } => (since + cfg.probe_timeout).saturating_duration_since(now),
        }
    }

    /// Admits a request at `now` if the breaker allows it; in half-open, claims the single probe.
    pub fn try_admit(&mut self, now: Instant, cfg: &BreakerConfig) -> Admission {
        if !self.can_admit(now, cfg) {
            return Admission::Rejected;
        }
        match self.inner {
            Inner::Closed => Admission::Admitted {
                probe: false,
                transition: None,
            },
            Inner::Open { .. } => {
                self.inner = Inner::HalfOpen {
                    probe_since: Some(now),
                };
                Admission::Admitted {
                    probe: true,
                    transition: Some(Transition::HalfOpened),
                }
            }
            Inner::HalfOpen { .. } => {
                self.inner = Inner::HalfOpen {
                    probe_since: Some(now),
                };
                Admission::Admitted {
                    probe: true,
                    transition: None,
                }
            }
        }
    }

    /// Opens the breaker until `until` because another gateway found the replica failing; keeps a later
    /// deadline it already had. Returns whether it was admitting requests before.
    pub fn force_open(&mut self, until: Instant, now: Instant) -> bool {
        let was_admitting = !matches!(self.inner, Inner::Open { until: u } if now < u);
        self.inner = match self.inner {
            Inner::Open { until: u } if u > until => Inner::Open { until: u },
            _ => Inner::Open { until },
        };
        was_admitting
    }

    /// Closes the breaker because another gateway's probe succeeded. Returns whether it was not closed.
    pub fn force_close(&mut self) -> bool {
        let changed = self.inner != Inner::Closed;
        self.inner = Inner::Closed;
        self.consecutive_failures = 0;
        changed
    }

    /// Another gateway holds the half-open probe: hold ours back as if it were in flight since `now`.
    pub fn defer_probe(&mut self, now: Instant) {
        self.inner = Inner::HalfOpen {
            probe_since: Some(now),
        };
    }

    /// Gives back a probe whose request ended without an outcome (the client went away).
    pub fn release_probe(&mut self) {
        if let Inner::HalfOpen { .. } = self.inner {
            self.inner = Inner::HalfOpen { probe_since: None };
        }
    }

    /// Records an attempt's result at `now`; returns the transition it caused, if any.
    pub fn record(
        &mut self,
        failed: bool,
        now: Instant,
        cfg: &BreakerConfig,
    ) -> Option<Transition> {
        if !failed {
            self.consecutive_failures = 0;
            return match self.inner {
                Inner::HalfOpen { .. } => {
                    self.inner = Inner::Closed;
                    Some(Transition::Closed)
                }
                // A success from a request admitted before the breaker opened proves little: only the
                // probe closes an open breaker.
                Inner::Closed | Inner::Open { .. } => None,
            };
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        match self.inner {
            Inner::Closed if self.consecutive_failures >= cfg.failure_threshold => {
                self.inner = Inner::Open {
                    until: now + cfg.open_timeout,
                };
                Some(Transition::Opened)
            }
            Inner::HalfOpen { .. } => {
                self.inner = Inner::Open {
                    until: now + cfg.open_timeout,
                };
                Some(Transition::Reopened)
            }
            Inner::Closed | Inner::Open { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: BreakerConfig = BreakerConfig {
        failure_threshold: 3,
        open_timeout: Duration::from_secs(10),
        probe_timeout: Duration::from_secs(30),
    };

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    fn admit(b: &mut Breaker, now: Instant) -> Admission {
        b.try_admit(now, &CFG)
    }

    const PLAIN: Admission = Admission::Admitted {
        probe: false,
        transition: None,
    };

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        // fail, fail, ok, fail, fail -> still closed (the success reset the run)
        assert_eq!(b.record(true, t0, &CFG), None);
        assert_eq!(b.record(true, t0, &CFG), None);
        assert_eq!(b.record(false, t0, &CFG), None);
        assert_eq!(b.record(true, t0, &CFG), None);
        assert_eq!(b.record(true, t0, &CFG), None);
        assert_eq!(b.state(t0), BreakerState::Closed);
        // third in a row -> open
        assert_eq!(b.record(true, t0, &CFG), Some(Transition::Opened));
        assert_eq!(b.state(t0), BreakerState::Open);
        assert_eq!(b.consecutive_failures(), 3);
        assert_eq!(admit(&mut b, secs(t0, 9)), Admission::Rejected);
        assert_eq!(b.admits_in(secs(t0, 4), &CFG), Duration::from_secs(6));
        assert_eq!(b.admits_in(secs(t0, 12), &CFG), Duration::ZERO);
    }

    #[test]
    fn half_open_lets_exactly_one_probe_through() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..3 {
            b.record(true, t0, &CFG);
        }
        // t=10s: open timeout over -> one probe, then nothing until it answers
        assert_eq!(b.state(secs(t0, 10)), BreakerState::HalfOpen);
        assert_eq!(
            admit(&mut b, secs(t0, 10)),
            Admission::Admitted {
                probe: true,
                transition: Some(Transition::HalfOpened)
            }
        );
        assert_eq!(admit(&mut b, secs(t0, 10)), Admission::Rejected);
        assert_eq!(admit(&mut b, secs(t0, 20)), Admission::Rejected);
        assert!(!b.can_admit(secs(t0, 11), &CFG));
        // probe succeeds -> closed, counters reset, requests flow
        assert_eq!(
            b.record(false, secs(t0, 11), &CFG),
            Some(Transition::Closed)
        );
        assert_eq!(b.consecutive_failures(), 0);
        assert_eq!(admit(&mut b, secs(t0, 11)), PLAIN);
    }

    #[test]
    fn failed_probe_reopens_for_a_full_timeout() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..3 {
            b.record(true, t0, &CFG);
        }
        admit(&mut b, secs(t0, 10));
        assert_eq!(
            b.record(true, secs(t0, 12), &CFG),
            Some(Transition::Reopened)
        );
        assert_eq!(b.consecutive_failures(), 4);
        // open again until t=22s
        assert_eq!(admit(&mut b, secs(t0, 21)), Admission::Rejected);
        assert!(matches!(
            admit(&mut b, secs(t0, 22)),
            Admission::Admitted { probe: true, .. }
        ));
    }

    #[test]
    fn a_lost_probe_is_replaced_after_probe_timeout_or_release() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..3 {
            b.record(true, t0, &CFG);
        }
        admit(&mut b, secs(t0, 10));
        // probe never reports: a new one only at t = 10 + 30
        assert_eq!(admit(&mut b, secs(t0, 39)), Admission::Rejected);
        assert!(matches!(
            admit(&mut b, secs(t0, 40)),
            Admission::Admitted {
                probe: true,
                transition: None
            }
        ));
        // a released probe frees the slot at once
        b.release_probe();
        assert!(matches!(
            admit(&mut b, secs(t0, 41)),
            Admission::Admitted { probe: true, .. }
        ));
    }

    #[test]
    fn late_success_does_not_close_an_open_breaker() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..3 {
            b.record(true, t0, &CFG);
        }
        assert_eq!(b.record(false, secs(t0, 1), &CFG), None);
        assert_eq!(b.state(secs(t0, 1)), BreakerState::Open);
        // late failures while open do not extend the timeout
        assert_eq!(b.record(true, secs(t0, 2), &CFG), None);
        assert_eq!(b.state(secs(t0, 10)), BreakerState::HalfOpen);
    }

    #[test]
    fn peers_can_open_and_close_it() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        // a peer reports the replica dead: open until t=5s
        assert!(b.force_open(secs(t0, 5), t0));
        assert_eq!(admit(&mut b, secs(t0, 4)), Admission::Rejected);
        // an earlier deadline from a late report does not shorten it
        assert!(!b.force_open(secs(t0, 3), secs(t0, 1)));
        assert_eq!(b.state(secs(t0, 4)), BreakerState::Open);
        // a peer's probe succeeded: closed, history cleared
        assert!(b.force_close());
        assert!(!b.force_close());
        assert_eq!(admit(&mut b, secs(t0, 4)), PLAIN);
        // a peer holds the probe: ours waits a probe timeout
        for _ in 0..3 {
            b.record(true, secs(t0, 10), &CFG);
        }
        b.defer_probe(secs(t0, 20));
        assert_eq!(admit(&mut b, secs(t0, 49)), Admission::Rejected);
        assert!(matches!(
            admit(&mut b, secs(t0, 50)),
            Admission::Admitted { probe: true, .. }
        ));
    }

    #[test]
    fn probation_starts_open_with_history() {
        let t0 = Instant::now();
        let b = Breaker::on_probation(5, t0, &CFG);
        assert_eq!(b.state(t0), BreakerState::Open);
        assert_eq!(b.consecutive_failures(), 5);
        assert!(!b.can_admit(secs(t0, 9), &CFG));
        assert!(b.can_admit(secs(t0, 10), &CFG));
    }
}
