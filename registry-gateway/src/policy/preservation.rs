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
mod tests {
    use super::*;
    use Verdict::*;

    const TTL: Duration = Duration::from_secs(15);
    const HEARTBEAT: Duration = Duration::from_secs(5);

    fn policy() -> PreservationPolicy {
        // The defaults: ratio 0.5, hold at most 2 × TTL.
        PreservationPolicy::new(0.5, 2 * TTL, TTL, HEARTBEAT)
    }

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn census(registered: usize, lapsing: usize, expired: usize) -> Census {
        Census {
            registered,
            lapsing,
            expired,
        }
    }

    #[test]
    fn a_lease_lapses_when_it_would_run_out_before_the_next_heartbeat() {
        let p = policy();
        // ttl 15 s, heartbeat 5 s: lapsing from 10 s without a renewal.
        assert_eq!(p.lapse_after, Duration::from_secs(10));
        assert!(!p.is_lapsing(Duration::from_millis(9_999)));
        assert!(p.is_lapsing(Duration::from_secs(10)));
        assert!(p.is_lapsing(TTL));
        // A heartbeat interval over half the TTL: lapsing once a heartbeat is missed, never earlier.
        let slow = PreservationPolicy::new(0.5, TTL, TTL, Duration::from_secs(10));
        assert_eq!(slow.lapse_after, Duration::from_secs(10));
        // e2e timing: ttl 1 s, heartbeat 300 ms.
        let fast = PreservationPolicy::new(
            0.5,
            Duration::from_secs(3),
            Duration::from_secs(1),
            Duration::from_millis(300),
        );
        assert_eq!(fast.lapse_after, Duration::from_millis(700));
    }

    #[test]
    fn a_mass_lapse_holds_until_the_deadline_then_evicts_and_cools_down() {
        let t0 = Instant::now();
        let p = policy();
        let mut s = Preservation::default();
        // Ten replicas, all healthy: nothing to decide.
        assert_eq!(s.decide(census(10, 0, 0), t0, &p), Evict);
        // All ten stopped together: the first lease runs out, the other nine are about to.
        assert_eq!(
            s.decide(census(10, 10, 1), at(t0, 1_000), &p),
            Start {
                until: at(t0, 31_000)
            }
        );
        // The others run out too: held, and the deadline never moves.
        assert_eq!(
            s.decide(census(10, 10, 6), at(t0, 2_000), &p),
            Hold {
                until: at(t0, 31_000)
            }
        );
        assert_eq!(
            s.decide(census(10, 10, 10), at(t0, 30_999), &p),
            Hold {
                until: at(t0, 31_000)
            }
        );
        assert_eq!(s.holding_until(), Some(at(t0, 31_000)));
        // The deadline: evict what is still expired; no new hold for one TTL.
        assert_eq!(
            s.decide(census(10, 10, 10), at(t0, 31_000), &p),
            Ended {
                since: at(t0, 1_000),
                cooldown_until: at(t0, 46_000)
            }
        );
        assert_eq!(s.holding_until(), None);
        // Re-registered replicas going silent together again inside the cool-down: evicted as usual.
        assert_eq!(s.decide(census(10, 10, 10), at(t0, 45_999), &p), Evict);
        // After it, the trigger applies again.
        assert_eq!(
            s.decide(census(10, 10, 10), at(t0, 46_000), &p),
            Start {
                until: at(t0, 76_000)
            }
        );
    }

    #[test]
    fn replicas_that_heartbeat_again_end_the_hold_early() {
        let t0 = Instant::now();
        let p = policy();
        let mut s = Preservation::default();
        assert!(matches!(s.decide(census(4, 4, 4), t0, &p), Start { .. }));
        // Three heartbeat again; one is still silent: the hold goes on.
        assert_eq!(
            s.decide(census(4, 1, 1), at(t0, 5_000), &p),
            Hold {
                until: at(t0, 30_000)
            }
        );
        // The last one too: the hold ends now, nothing to evict, no cool-down.
        assert_eq!(
            s.decide(census(4, 0, 0), at(t0, 6_000), &p),
            Recovered { since: t0 }
        );
        assert_eq!(s, Preservation::Idle);
        assert!(matches!(
            s.decide(census(4, 3, 1), at(t0, 7_000), &p),
            Start { .. }
        ));
    }

    #[test]
    fn holds_never_chain_even_if_the_whole_fleet_stays_silent() {
        // The worst case for the rule: at every 1 s sweep for ten minutes the whole fleet is lapsing and
        // expired (re-registering and going silent again, or never heartbeating at all). Every hold lasts
        // exactly 30 s and is followed by 15 s of ordinary expiry, so nothing silent is ever held longer.
        let t0 = Instant::now();
        let p = policy();
        let mut s = Preservation::default();
        let mut holds = Vec::new();
        let mut evicting_since = None;
        let mut gaps = Vec::new();
        for sec in 0..600u64 {
            match s.decide(census(10, 10, 10), at(t0, sec * 1_000), &p) {
                Start { until } => {
                    if let Some(from) = evicting_since.take() {
                        gaps.push(sec - from);
                    }
                    holds.push((sec, until));
                }
                Hold { until } => assert_eq!(Some(&until), holds.last().map(|(_, u)| u)),
                Ended { .. } => {
                    let (started, _) = holds.last().unwrap();
                    assert_eq!(sec - started, 30, "a hold lasts exactly preservation_max");
                    evicting_since = Some(sec);
                }
                Evict => assert!(
                    evicting_since.is_some(),
                    "expiry as usual only in the cool-down"
                ),
                Recovered { .. } => unreachable!("nothing recovers here"),
            }
        }
        assert_eq!(holds.len(), 14);
        assert!(gaps.iter().all(|&g| g == 15), "{gaps:?}");
    }

    #[test]
    fn a_minority_lapsing_is_evicted_as_usual() {
        let t0 = Instant::now();
        let p = policy();
        let mut s = Preservation::default();
        // 2 of 10 stop: evicted as usual.
        assert_eq!(s.decide(census(10, 2, 2), t0, &p), Evict);
        // Exactly half is not more than half.
        assert_eq!(s.decide(census(10, 5, 5), t0, &p), Evict);
        assert_eq!(s.decide(census(4, 2, 1), t0, &p), Evict);
        // One more than half is.
        assert!(matches!(s.decide(census(10, 6, 1), t0, &p), Start { .. }));
    }

    #[test]
    fn the_boundary_is_exact_even_when_the_product_rounds() {
        let t0 = Instant::now();
        // 0.57 × 100 is 56.99999999999999 in floating point: 57 of 100 is still not more than 57 %.
        let p = PreservationPolicy::new(0.57, TTL, TTL, HEARTBEAT);
        assert_eq!(
            Preservation::default().decide(census(100, 57, 57), t0, &p),
            Evict
        );
        assert!(matches!(
            Preservation::default().decide(census(100, 58, 1), t0, &p),
            Start { .. }
        ));
    }

    #[test]
    fn nothing_starts_without_an_expired_lease_nor_in_small_services() {
        let t0 = Instant::now();
        let p = policy();
        let mut s = Preservation::default();
        // All lapsing but none run out yet: nothing to hold.
        assert_eq!(s.decide(census(10, 10, 0), t0, &p), Evict);
        // One or two replicas: never held.
        assert_eq!(s.decide(census(1, 1, 1), t0, &p), Evict);
        assert_eq!(s.decide(census(2, 2, 2), t0, &p), Evict);
        assert!(matches!(s.decide(census(3, 2, 2), t0, &p), Start { .. }));
    }

    #[test]
    fn ratio_one_or_a_zero_maximum_turns_it_off() {
        let t0 = Instant::now();
        for p in [
            PreservationPolicy::new(1.0, 2 * TTL, TTL, HEARTBEAT),
            PreservationPolicy::new(0.5, Duration::ZERO, TTL, HEARTBEAT),
        ] {
            assert!(!p.enabled());
            let mut s = Preservation::default();
            assert_eq!(s.decide(census(10, 10, 10), t0, &p), Evict);
            assert_eq!(s, Preservation::Idle);
        }
        // Ratio 0: any lapse in a service of three or more holds.
        let eager = PreservationPolicy::new(0.0, TTL, TTL, HEARTBEAT);
        assert!(matches!(
            Preservation::default().decide(census(3, 1, 1), t0, &eager),
            Start { .. }
        ));
        assert_eq!(
            Preservation::default().decide(census(3, 0, 0), t0, &eager),
            Evict
        );
    }
}
