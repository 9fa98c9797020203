//! The breaker as specs: exact sequences of admissions and outcomes on an explicit clock.

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
