//! Self-preservation as specs: when a mass lapse holds, how long, and when it does not start.

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
