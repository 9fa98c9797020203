//! Bounded self-preservation: when most of a service's leases lapse at once, keep them for a while.
//!
//! A whole fleet going silent at the same moment is more often the gateway's own network, or a stalled
//! host, than that many replicas dying together. So instead of evicting them, the lease sweep holds them
//! (still routable, still breaker-protected: a replica that really is dead still fails its way out) for
//! at most [`PreservationPolicy::max_hold`], then evicts as usual. A hold never moves its deadline and
//! cannot chain: after one ends at its deadline, the service cools down for one lease TTL, during which
//! leases expire as usual, so a replica still silent at the deadline is gone within one TTL of it.
//!
//! The trigger, evaluated per service at a lease sweep where at least one lease has run out:
//! - `M` counts the service's registered replicas (static ones have no lease and are left out);
//! - `N` counts the *lapsing* ones: those that missed a heartbeat and whose lease runs out before the
//!   next one is due (no renewal for `max(ttl − heartbeat_interval, heartbeat_interval)`), those whose
//!   lease has run out included. Counting the about-to-expire ones matters: replicas that stopped
//!   together still reach their TTL spread over one heartbeat interval, and counting only the expired
//!   ones would evict the first of them one sweep at a time before the ratio is ever crossed;
//! - a hold starts when `M ≥` [`MIN_REPLICAS`] and `N > ratio × M` (strictly).

use std::time::{Duration, Instant};

/// Services with fewer registered replicas are never held: a lone replica, or both of a pair, going
/// silent says nothing about whose network failed.
pub const MIN_REPLICAS: usize = 3;

/// When and for how long a service's lapsed leases are held.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PreservationPolicy {
    /// A hold starts when more than this share of a service's registered replicas lapse at once
    /// (`lease.preservation_ratio`, 0..=1; 1 never holds).
    pub ratio: f64,
    /// Longest hold, counted from its start (`lease.preservation_max`); zero never holds.
    pub max_hold: Duration,
    /// After a hold ends at its deadline, no new hold starts in that service for this long (one lease
    /// TTL): every replica still silent then runs out of lease within it and is evicted as usual.
    pub cooldown: Duration,
    /// A replica whose last renewal is at least this old is lapsing.
    pub lapse_after: Duration,
    /// Smallest service (registered replicas) that can be held.
    pub min_replicas: usize,
}

impl PreservationPolicy {
    /// The policy for leases of `ttl` renewed every `heartbeat_interval`.
    pub fn new(
        ratio: f64,
        max_hold: Duration,
        ttl: Duration,
        heartbeat_interval: Duration,
    ) -> Self {
        PreservationPolicy {
            ratio,
            max_hold,
            cooldown: ttl,
            // A replica heartbeating on time is never this silent: it renews every interval, and its
            // lease then has more than `ttl - interval` left.
            lapse_after: ttl
                .saturating_sub(heartbeat_interval)
                .max(heartbeat_interval)
                .min(ttl),
            min_replicas: MIN_REPLICAS,
        }
    }

    /// Whether a lease last renewed `lease_age` ago is lapsing (an expired lease always is).
    pub fn is_lapsing(&self, lease_age: Duration) -> bool {
        lease_age >= self.lapse_after
    }

    /// Whether holds can happen at all.
    pub fn enabled(&self) -> bool {
        !self.max_hold.is_zero() && self.ratio < 1.0
    }

    fn triggers(&self, c: Census) -> bool {
        // The tolerance keeps "exactly the ratio" from counting as more when `ratio × M` rounds down.
        self.enabled()
            && c.expired > 0
            && c.registered >= self.min_replicas
            && c.lapsing as f64 > self.ratio * c.registered as f64 + 1e-9
    }
}

/// What the lease sweep found in one service at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Census {
    /// Registered (leased) replicas, held ones included. Static replicas are not counted.
    pub registered: usize,
    /// Registered replicas that are lapsing (see [`PreservationPolicy::is_lapsing`]).
    pub lapsing: usize,
    /// Registered replicas whose lease has run out (all of them lapsing too).
    pub expired: usize,
}

/// A service's preservation state, kept between sweeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Preservation {
    /// Leases expire as usual; a hold may start.
    #[default]
    Idle,
    /// Expired leases are kept until `until`, a deadline that never moves.
    Holding {
        /// When the hold started.
        since: Instant,
        /// When it ends.
        until: Instant,
    },
    /// A hold ended at its deadline: leases expire as usual, and no new hold starts before `until`.
    CoolingDown {
        /// End of the cool-down.
        until: Instant,
    },
}

/// What the sweep does with a service's expired leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Evict them as usual.
    Evict,
    /// A hold starts now: keep them until `until`.
    Start {
        /// The hold's deadline.
        until: Instant,
    },
    /// A hold is in force: keep them (the newly expired too) until `until`.
    Hold {
        /// The hold's deadline.
        until: Instant,
    },
    /// The hold started at `since` reached its deadline: evict every lease still expired.
    Ended {
        /// When the hold started.
        since: Instant,
        /// No new hold before this instant.
        cooldown_until: Instant,
    },
    /// Every replica heartbeats again (none lapsing): the hold started at `since` ends early, nothing to
    /// evict, and a new hold may start whenever the trigger is met again.
    Recovered {
        /// When the hold started.
        since: Instant,
    },
}

impl Preservation {
    /// Decides, at a sweep at `now`, what happens to the expired leases counted in `census`, and moves
    /// the state on.
    pub fn decide(&mut self, census: Census, now: Instant, policy: &PreservationPolicy) -> Verdict {
        match *self {
            Preservation::Holding { since, until } => {
                if census.lapsing == 0 {
                    *self = Preservation::Idle;
                    Verdict::Recovered { since }
                } else if now >= until {
                    let cooldown_until = now + policy.cooldown;
                    *self = Preservation::CoolingDown {
                        until: cooldown_until,
                    };
                    Verdict::Ended {
                        since,
                        cooldown_until,
                    }
                } else {
                    Verdict::Hold { until }
                }
            }
            Preservation::CoolingDown { until } if now < until => Verdict::Evict,
            Preservation::CoolingDown { .. } | Preservation::Idle => {
                *self = Preservation::Idle;
                if !policy.triggers(census) {
                    return Verdict::Evict;
                }
                let until = now + policy.max_hold;
                *self = Preservation::Holding { since: now, until };
                Verdict::Start { until }
            }
        }
    }

    /// The deadline of the hold in force, if any.
    pub fn holding_until(&self) -> Option<Instant> {
        match *self {
            Preservation::Holding { until, .. } => Some(until),
            _ => None,
        }
    }
}

#[cfg(test)]
#[path = "preservation_tests.rs"]
mod tests;
