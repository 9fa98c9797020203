//! The one place IO code reads the time, through tokio so that tests can pause it.

use std::time::{Duration, Instant, SystemTime};

mod stamp;

pub use stamp::Stamp;

/// Now, as the policy code expects it.
#[allow(clippy::disallowed_methods)] // the one reading (clippy.toml forbids it elsewhere)
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The tokio instant `after` from now: the deadline of an IO timer (`sleep_until`, `timeout_at`).
#[allow(clippy::disallowed_methods)] // the one reading for timers (clippy.toml forbids it elsewhere)
pub fn deadline(after: Duration) -> tokio::time::Instant {
    tokio::time::Instant::now() + after
}

/// Wall-clock times for monotonic instants: one reading of the system clock paired with the instant it was
/// taken at. Instants passed to the registry (`now`) turn into Unix milliseconds without another call to
/// the system clock, so tests that drive the registry with their own instants get exact wall times.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    at: Instant,
    wall: SystemTime,
}

impl WallClock {
    /// Pairs the system clock with [`now`], once.
    #[allow(clippy::disallowed_methods)] // the one reading of the system clock
    pub fn start() -> Self {
        WallClock::fixed(now(), SystemTime::now())
    }

    /// A wall clock that reads `wall` at `at` (tests).
    pub fn fixed(at: Instant, wall: SystemTime) -> Self {
        WallClock { at, wall }
    }

    /// The wall-clock time of `t`.
    pub fn at(&self, t: Instant) -> SystemTime {
        match t.checked_duration_since(self.at) {
            Some(after) => self.wall + after,
            None => self.wall - self.at.duration_since(t),
        }
    }

    /// The wall-clock time of `t`, in milliseconds since the Unix epoch.
    pub fn unix_ms(&self, t: Instant) -> u64 {
        self.at(t)
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis() as u64
    }
}
