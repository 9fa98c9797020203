//! Lease of a registered replica: alive while heartbeats keep arriving within the TTL.

use std::time::{Duration, Instant};

use crate::clock::Stamp;

/// A TTL as a lease keeps it: nanoseconds (584 years at most), this value for a lease that never expires.
const NEVER: u64 = u64::MAX;

/// A replica's lease. Static replicas (from the config file) hold a lease that never expires.
/// 16 bytes: a million replicas each hold one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    renewed_at: Stamp,
    /// Nanoseconds, or [`NEVER`].
    ttl_ns: u64,
}

impl Lease {
    /// A lease that expires `ttl` after its last renewal.
    pub fn new(ttl: Duration, now: Instant) -> Self {
        Lease {
            renewed_at: Stamp::of(now),
            ttl_ns: u64::try_from(ttl.as_nanos()).map_or(NEVER - 1, |n| n.min(NEVER - 1)),
        }
    }

    /// A lease that never expires (static replicas).
    pub fn permanent(now: Instant) -> Self {
        Lease {
            renewed_at: Stamp::of(now),
            ttl_ns: NEVER,
        }
    }

    /// Renews the lease from `now` (a heartbeat or a re-registration).
    pub fn renew(&mut self, now: Instant) {
        self.renewed_at = self.renewed_at.max(Stamp::of(now));
    }

    fn ttl(&self) -> Option<Duration> {
        (self.ttl_ns != NEVER).then(|| Duration::from_nanos(self.ttl_ns))
    }

    fn renewed_at(&self) -> Instant {
        self.renewed_at.instant()
    }

    /// Whether the lease has run out at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        match self.ttl() {
            Some(ttl) => now.saturating_duration_since(self.renewed_at()) >= ttl,
            None => false,
        }
    }

    /// Time since the last renewal.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.renewed_at())
    }

    /// How long from `now` until it runs out (zero once it has); `None` for a lease that never expires.
    pub fn expires_in(&self, now: Instant) -> Option<Duration> {
        self.ttl()
            .map(|ttl| (self.renewed_at() + ttl).saturating_duration_since(now))
    }

    /// When it runs out unless renewed; `None` for a lease that never expires.
    pub fn deadline(&self) -> Option<Instant> {
        self.ttl().map(|ttl| self.renewed_at() + ttl)
    }

    /// Whether this lease can expire at all.
    pub fn expires(&self) -> bool {
        self.ttl_ns != NEVER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(15);

    #[test]
    fn expires_exactly_at_ttl_after_last_renewal() {
        let t0 = Instant::now();
        let mut lease = Lease::new(TTL, t0);
        // t=14.999s alive; heartbeat at t=10s pushes expiry to t=25s.
        assert!(!lease.is_expired(t0 + Duration::from_millis(14_999)));
        lease.renew(t0 + Duration::from_secs(10));
        assert!(!lease.is_expired(t0 + Duration::from_millis(24_999)));
        assert!(lease.is_expired(t0 + Duration::from_secs(25)));
        assert_eq!(
            lease.age(t0 + Duration::from_secs(12)),
            Duration::from_secs(2)
        );
        // expires in: 13 s at t=12 s, nothing left from t=25 s on
        assert_eq!(
            lease.expires_in(t0 + Duration::from_secs(12)),
            Some(Duration::from_secs(13))
        );
        assert_eq!(
            lease.expires_in(t0 + Duration::from_secs(30)),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn a_late_renewal_never_moves_the_lease_backwards() {
        let t0 = Instant::now();
        let mut lease = Lease::new(TTL, t0 + Duration::from_secs(5));
        lease.renew(t0);
        assert!(!lease.is_expired(t0 + Duration::from_millis(19_999)));
    }

    #[test]
    fn a_lease_is_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Lease>(), 16);
    }

    #[test]
    fn permanent_lease_never_expires() {
        let t0 = Instant::now();
        let lease = Lease::permanent(t0);
        assert!(!lease.is_expired(t0 + Duration::from_secs(86_400 * 365)));
        assert!(!lease.expires());
        assert_eq!(lease.expires_in(t0), None);
    }
}
