//! Per-replica circuit breaker: closed → open after N consecutive failures or a failure ratio over a
//! window (gobreaker's `ReadyToTrip`), whichever comes first → half-open with up to N probes at once; N
//! successes close it, any failure reopens it.

use std::time::{Duration, Instant};

/// Breaker thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive failures that open a closed breaker.
    pub failure_threshold: u32,
    /// How long an open breaker rejects requests before it lets one probe through.
    pub open_timeout: Duration,
    /// How long a half-open probe may stay unanswered before another probe is allowed
    /// (a probe whose client went away never reports).
    pub probe_timeout: Duration,
    /// Trip when failures / requests in the current window reach this ratio (`None`: off).
    pub failure_ratio: Option<f64>,
    /// Requests the window needs before the ratio is judged.
    pub min_requests: u32,
    /// While closed, the ratio's counts restart every window (gobreaker's `Interval`).
    pub window: Duration,
    /// Half-open: requests let through at once; that many successes close the breaker.
    pub half_open_probes: u32,
}

impl BreakerConfig {
    /// Consecutive failures only, one probe: the rule most gateways start from.
    pub fn consecutive(
        failure_threshold: u32,
        open_timeout: Duration,
        probe_timeout: Duration,
    ) -> Self {
        BreakerConfig {
            failure_threshold,
            open_timeout,
            probe_timeout,
            failure_ratio: None,
            min_requests: 3,
            window: Duration::from_secs(5),
            half_open_probes: 1,
        }
    }
}

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
struct Window {
    start: Option<Instant>,
    requests: u32,
    failures: u32,
}

impl Window {
    /// Counts one outcome at `now`, restarting the counts when the window is over.
    fn count(&mut self, failed: bool, now: Instant, length: Duration) {
        match self.start {
            Some(start) if now < start + length => {}
            _ => {
                *self = Window {
                    start: Some(now),
                    requests: 0,
                    failures: 0,
                }
            }
        }
        self.requests = self.requests.saturating_add(1);
        self.failures = self.failures.saturating_add(u32::from(failed));
    }

    /// Whether the counts trip the ratio rule.
    fn trips(&self, cfg: &BreakerConfig) -> bool {
        match cfg.failure_ratio {
            Some(ratio) => {
                self.requests >= cfg.min_requests.max(1)
                    && f64::from(self.failures) >= ratio * f64::from(self.requests)
            }
            None => false,
        }
    }
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
    Open {
        until: Instant,
    },
    /// `in_flight` probes admitted and unanswered (the last admitted at `since`), `succeeded` answered well.
    HalfOpen {
        in_flight: u32,
        succeeded: u32,
        since: Option<Instant>,
    },
}

/// A circuit breaker. Pure: every call takes `now`.
#[derive(Debug, Clone, PartialEq)]
pub struct Breaker {
    inner: Inner,
    consecutive_failures: u32,
    window: Window,
    open_cause: Option<OpenCause>,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            inner: Inner::Closed,
            consecutive_failures: 0,
            window: Window::default(),
            open_cause: None,
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
            window: Window::default(),
            open_cause: Some(OpenCause::Consecutive(consecutive_failures)),
        }
    }

    /// Why the breaker last opened on its own counts (`None` if it never did, or a peer opened it).
    pub fn open_cause(&self) -> Option<OpenCause> {
        self.open_cause
    }

    /// The closed breaker's window counts: (requests, failures).
    pub fn window_counts(&self) -> (u32, u32) {
        (self.window.requests, self.window.failures)
    }

    /// While open: when the open timeout ends and a probe may go through.
    pub fn open_until(&self) -> Option<Instant> {
        match self.inner {
            Inner::Open { until } => Some(until),
            _ => None,
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
        self.admits_in(now, cfg).is_zero()
    }

    /// How long from `now` until the breaker admits a request (zero when it does now).
    pub fn admits_in(&self, now: Instant, cfg: &BreakerConfig) -> Duration {
        match self.inner {
            Inner::Closed => Duration::ZERO,
            Inner::Open { until } => until.saturating_duration_since(now),
            Inner::HalfOpen {
                in_flight,
                succeeded,
                since,
            } => {
                if in_flight + succeeded < cfg.half_open_probes.max(1) {
                    return Duration::ZERO;
                }
                match since {
                    // Every slot is taken by a probe in flight: the oldest may be lost.
                    Some(since) if in_flight > 0 => {
                        (since + cfg.probe_timeout).saturating_duration_since(now)
                    }
                    _ => Duration::ZERO,
                }
            }
        }
    }

    /// Admits a request at `now` if the breaker allows it; in half-open, claims a probe slot.
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
                    in_flight: 1,
                    succeeded: 0,
                    since: Some(now),
                };
                Admission::Admitted {
                    probe: true,
                    transition: Some(Transition::HalfOpened),
                }
            }
            Inner::HalfOpen {
                in_flight,
                succeeded,
                since,
            } => {
                // Slots held past the probe timeout are lost probes: they are taken back.
                let stale = since.is_some_and(|s| now >= s + cfg.probe_timeout);
                let in_flight = if stale && in_flight + succeeded >= cfg.half_open_probes.max(1) {
                    0
                } else {
                    in_flight
                };
                self.inner = Inner::HalfOpen {
                    in_flight: in_flight + 1,
                    succeeded,
                    since: Some(now),
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

    /// Closes the breaker because another gateway's probes succeeded. Returns whether it was not closed.
    pub fn force_close(&mut self) -> bool {
        let changed = self.inner != Inner::Closed;
        self.inner = Inner::Closed;
        self.consecutive_failures = 0;
        self.window = Window::default();
        changed
    }

    /// Peers hold every half-open probe slot: hold ours back as if they were in flight since `now`.
    pub fn defer_probe(&mut self, now: Instant, cfg: &BreakerConfig) {
        let succeeded = match self.inner {
            Inner::HalfOpen { succeeded, .. } => succeeded,
            _ => 0,
        };
        self.inner = Inner::HalfOpen {
            in_flight: cfg.half_open_probes.max(1).saturating_sub(succeeded),
            succeeded,
            since: Some(now),
        };
    }

    /// Gives back a probe whose request ended without an outcome (the client went away).
    pub fn release_probe(&mut self) {
        if let Inner::HalfOpen {
            in_flight,
            succeeded,
            since,
        } = self.inner
        {
            self.inner = Inner::HalfOpen {
                in_flight: in_flight.saturating_sub(1),
                succeeded,
                since,
            };
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
                Inner::HalfOpen {
                    in_flight,
                    succeeded,
                    since,
                } => {
                    let succeeded = succeeded + 1;
                    if succeeded >= cfg.half_open_probes.max(1) {
                        self.inner = Inner::Closed;
                        self.window = Window::default();
                        Some(Transition::Closed)
                    } else {
                        self.inner = Inner::HalfOpen {
                            in_flight: in_flight.saturating_sub(1),
                            succeeded,
                            since,
                        };
                        None
                    }
                }
                Inner::Closed => {
                    self.window.count(false, now, cfg.window);
                    None
                }
                // A success from a request admitted before the breaker opened proves little: only the
                // probes close an open breaker.
                Inner::Open { .. } => None,
            };
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        match self.inner {
            Inner::Closed => {
                self.window.count(true, now, cfg.window);
                let cause = if self.consecutive_failures >= cfg.failure_threshold {
                    OpenCause::Consecutive(self.consecutive_failures)
                } else if self.window.trips(cfg) {
                    OpenCause::Ratio {
                        failures: self.window.failures,
                        requests: self.window.requests,
                    }
                } else {
                    return None;
                };
                self.open(cause, now, cfg);
                Some(Transition::Opened)
            }
            Inner::HalfOpen { .. } => {
                self.inner = Inner::Open {
                    until: now + cfg.open_timeout,
                };
                Some(Transition::Reopened)
            }
            Inner::Open { .. } => None,
        }
    }

    /// Opens the closed breaker with the window's counts shared by every gateway (Redis): the ratio is
    /// judged on the fleet's counts, not this gateway's share. Returns the transition, if any.
    pub fn apply_shared_window(
        &mut self,
        requests: u32,
        failures: u32,
        now: Instant,
        cfg: &BreakerConfig,
    ) -> Option<Transition> {
        if self.inner != Inner::Closed {
            return None;
        }
        let shared = Window {
            start: self.window.start,
            requests,
            failures,
        };
        if !shared.trips(cfg) {
            return None;
        }
        self.open(OpenCause::Ratio { failures, requests }, now, cfg);
        Some(Transition::Opened)
    }

    fn open(&mut self, cause: OpenCause, now: Instant, cfg: &BreakerConfig) {
        self.inner = Inner::Open {
            until: now + cfg.open_timeout,
        };
        self.open_cause = Some(cause);
        self.window = Window::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: BreakerConfig = BreakerConfig {
        failure_threshold: 3,
        open_timeout: Duration::from_secs(10),
        probe_timeout: Duration::from_secs(30),
        failure_ratio: None,
        min_requests: 3,
        window: Duration::from_secs(5),
        half_open_probes: 1,
    };

    /// The seed's gobreaker settings: ratio 0.6 over at least 3 requests, 5 s windows, 3 probes.
    const GOBREAKER: BreakerConfig = BreakerConfig {
        failure_threshold: 1_000,
        open_timeout: Duration::from_secs(10),
        probe_timeout: Duration::from_secs(30),
        failure_ratio: Some(0.6),
        min_requests: 3,
        window: Duration::from_secs(5),
        half_open_probes: 3,
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
        b.defer_probe(secs(t0, 20), &CFG);
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

    #[test]
    fn the_ratio_trips_at_the_third_request_with_two_failures() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        // ok, fail: 1 of 2 (below min_requests) -> closed
        assert_eq!(b.record(false, t0, &GOBREAKER), None);
        assert_eq!(b.record(true, secs(t0, 1), &GOBREAKER), None);
        // ok resets the consecutive run, not the window: 1 of 3 = 33% -> closed
        assert_eq!(b.record(false, secs(t0, 1), &GOBREAKER), None);
        // fail: 2 of 4 = 50% -> closed; fail: 3 of 5 = 60% -> open, never 3 in a row
        assert_eq!(b.record(true, secs(t0, 2), &GOBREAKER), None);
        assert_eq!(b.consecutive_failures(), 1);
        assert_eq!(
            b.record(true, secs(t0, 2), &GOBREAKER),
            Some(Transition::Opened)
        );
        assert_eq!(b.consecutive_failures(), 2);
        assert_eq!(
            b.open_cause(),
            Some(OpenCause::Ratio {
                failures: 3,
                requests: 5
            })
        );
        assert_eq!(
            b.open_cause().unwrap().to_string(),
            "3 of 5 requests failed (60%)"
        );
        // straight away: fail, fail after ok -> 2 of 3 = 67% trips at the third request
        let mut b = Breaker::default();
        assert_eq!(b.record(false, t0, &GOBREAKER), None);
        assert_eq!(b.record(true, t0, &GOBREAKER), None);
        assert_eq!(b.record(true, t0, &GOBREAKER), Some(Transition::Opened));
    }

    #[test]
    fn the_ratio_counts_restart_every_window() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        // t=0..4s: ok, ok, fail (1 of 3)
        b.record(false, t0, &GOBREAKER);
        b.record(false, secs(t0, 1), &GOBREAKER);
        b.record(true, secs(t0, 4), &GOBREAKER);
        assert_eq!(b.window_counts(), (3, 1));
        // t=5s: a new window starts with this failure: 1 of 1, below min_requests
        assert_eq!(b.record(true, secs(t0, 5), &GOBREAKER), None);
        assert_eq!(b.window_counts(), (1, 1));
        // ok, then fail: 2 of 3 in the new window -> open
        b.record(false, secs(t0, 6), &GOBREAKER);
        assert_eq!(
            b.record(true, secs(t0, 7), &GOBREAKER),
            Some(Transition::Opened)
        );
        // off by default: consecutive failures only
        let mut b = Breaker::default();
        for _ in 0..10 {
            b.record(false, t0, &CFG);
            b.record(true, t0, &CFG);
        }
        assert_eq!(b.state(t0), BreakerState::Closed);
    }

    #[test]
    fn consecutive_failures_still_trip_first_when_they_come_first() {
        let t0 = Instant::now();
        let cfg = BreakerConfig {
            failure_threshold: 3,
            min_requests: 10,
            ..GOBREAKER
        };
        let mut b = Breaker::default();
        b.record(true, t0, &cfg);
        b.record(true, t0, &cfg);
        assert_eq!(b.record(true, t0, &cfg), Some(Transition::Opened));
        assert_eq!(b.open_cause(), Some(OpenCause::Consecutive(3)));
    }

    #[test]
    fn three_probes_close_it_and_any_failure_among_them_reopens_it() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        b.record(false, t0, &GOBREAKER);
        b.record(true, t0, &GOBREAKER);
        b.record(true, t0, &GOBREAKER);
        // t=10s: three probes at once, the fourth waits
        let first = b.try_admit(secs(t0, 10), &GOBREAKER);
        assert_eq!(
            first,
            Admission::Admitted {
                probe: true,
                transition: Some(Transition::HalfOpened)
            }
        );
        let probe = Admission::Admitted {
            probe: true,
            transition: None,
        };
        assert_eq!(b.try_admit(secs(t0, 10), &GOBREAKER), probe);
        assert_eq!(b.try_admit(secs(t0, 10), &GOBREAKER), probe);
        assert_eq!(b.try_admit(secs(t0, 10), &GOBREAKER), Admission::Rejected);
        // two succeed: still half-open, and their slots stay used
        assert_eq!(b.record(false, secs(t0, 11), &GOBREAKER), None);
        assert_eq!(b.record(false, secs(t0, 11), &GOBREAKER), None);
        assert_eq!(b.state(secs(t0, 11)), BreakerState::HalfOpen);
        assert_eq!(b.try_admit(secs(t0, 11), &GOBREAKER), Admission::Rejected);
        // the third succeeds: closed
        assert_eq!(
            b.record(false, secs(t0, 12), &GOBREAKER),
            Some(Transition::Closed)
        );
        assert_eq!(b.try_admit(secs(t0, 12), &GOBREAKER), PLAIN);

        // again, and this time the second probe fails: open for a full timeout
        let mut b = Breaker::default();
        b.record(true, t0, &GOBREAKER);
        b.record(true, t0, &GOBREAKER);
        b.record(true, t0, &GOBREAKER);
        for _ in 0..3 {
            b.try_admit(secs(t0, 10), &GOBREAKER);
        }
        assert_eq!(b.record(false, secs(t0, 11), &GOBREAKER), None);
        assert_eq!(
            b.record(true, secs(t0, 11), &GOBREAKER),
            Some(Transition::Reopened)
        );
        assert_eq!(b.try_admit(secs(t0, 20), &GOBREAKER), Admission::Rejected);
        // the third probe's late success does not close it
        assert_eq!(b.record(false, secs(t0, 12), &GOBREAKER), None);
        assert_eq!(b.state(secs(t0, 12)), BreakerState::Open);
    }

    #[test]
    fn a_released_probe_frees_its_slot_and_lost_ones_are_retaken_after_probe_timeout() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..3 {
            b.record(true, t0, &GOBREAKER);
        }
        for _ in 0..3 {
            b.try_admit(secs(t0, 10), &GOBREAKER);
        }
        assert_eq!(b.try_admit(secs(t0, 10), &GOBREAKER), Admission::Rejected);
        b.release_probe();
        assert!(matches!(
            b.try_admit(secs(t0, 11), &GOBREAKER),
            Admission::Admitted { probe: true, .. }
        ));
        // nobody answers: at t = 11 + 30 the slots are taken back
        assert_eq!(b.try_admit(secs(t0, 40), &GOBREAKER), Admission::Rejected);
        assert!(matches!(
            b.try_admit(secs(t0, 41), &GOBREAKER),
            Admission::Admitted { probe: true, .. }
        ));
    }

    #[test]
    fn the_fleets_window_counts_trip_the_ratio_too() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        b.record(true, t0, &GOBREAKER); // 1 of 1 here
                                        // every gateway together: 4 of 6 failed
        assert_eq!(b.apply_shared_window(6, 3, t0, &GOBREAKER), None);
        assert_eq!(
            b.apply_shared_window(6, 4, t0, &GOBREAKER),
            Some(Transition::Opened)
        );
        assert_eq!(
            b.apply_shared_window(9, 9, t0, &GOBREAKER),
            None,
            "already open"
        );
        // without a ratio rule, shared counts change nothing
        let mut b = Breaker::default();
        assert_eq!(b.apply_shared_window(10, 10, t0, &CFG), None);
    }
}
