//! Per-replica circuit breaker: closed → open after N consecutive failures or a failure ratio over a
//! window (gobreaker's `ReadyToTrip`), whichever comes first → half-open with up to N probes at once; N
//! successes close it, any failure reopens it.

use std::time::{Duration, Instant};

use crate::clock::Stamp;

mod trip;

pub use trip::OpenCause;
use trip::Window;

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
        until: Stamp,
    },
    /// `in_flight` probes admitted and unanswered (the last admitted at `since`), `succeeded` answered well.
    HalfOpen {
        in_flight: u32,
        succeeded: u32,
        since: Option<Stamp>,
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
                until: Stamp::of(now + cfg.open_timeout),
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
            Inner::Open { until } => Some(until.instant()),
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
            Inner::Open { until } if now >= until.instant() => BreakerState::HalfOpen,
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
            Inner::Open { until } => until.instant().saturating_duration_since(now),
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
                        (since.instant() + cfg.probe_timeout).saturating_duration_since(now)
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
                    since: Some(Stamp::of(now)),
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
                let stale = since.is_some_and(|s| now >= s.instant() + cfg.probe_timeout);
                let in_flight = if stale && in_flight + succeeded >= cfg.half_open_probes.max(1) {
                    0
                } else {
                    in_flight
                };
                self.inner = Inner::HalfOpen {
                    in_flight: in_flight + 1,
                    succeeded,
                    since: Some(Stamp::of(now)),
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
        let was_admitting = !matches!(self.inner, Inner::Open { until: u } if now < u.instant());
        let until = Stamp::of(until);
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
            since: Some(Stamp::of(now)),
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
                    until: Stamp::of(now + cfg.open_timeout),
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
            until: Stamp::of(now + cfg.open_timeout),
        };
        self.open_cause = Some(cause);
        self.window = Window::default();
    }
}

#[cfg(test)]
mod tests;
