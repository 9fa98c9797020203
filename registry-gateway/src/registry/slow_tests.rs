//! Why a replica is in its state, and slow replicas opened, probed and closed, driven by an explicit clock.

use super::tests::{any, at, policy, reg, FAIL};
use super::*;
use crate::policy::{BreakerState, FailureCause, Outcome};

fn reason(r: &Replica, now: Instant) -> String {
    r.view(now).state_reason
}

#[test]
fn the_state_reason_says_why_the_breaker_is_in_its_state() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let rep = r.register(reg("orders", 9001), t0).replica;
    let svc = r.service("orders").unwrap();
    assert_eq!(reason(&rep, t0), "registered");
    for _ in 0..3 {
        let p = r.pick(&svc, &[], t0, any).unwrap();
        r.record(&p, FAIL, t0);
    }
    assert_eq!(reason(&rep, t0), "3 consecutive failures: connect failed");
    // Still shown while half-open, before and after the probe went; a failed probe says so.
    assert_eq!(
        reason(&rep, at(t0, 10_000)),
        "half-open, probing (opened: 3 consecutive failures: connect failed)"
    );
    let p = r.pick(&svc, &[], at(t0, 10_000), any).unwrap();
    assert_eq!(
        reason(&rep, at(t0, 10_000)),
        "half-open, probing (opened: 3 consecutive failures: connect failed)"
    );
    r.record(&p, Outcome::Failure(FailureCause::Timeout), at(t0, 10_000));
    assert_eq!(
        reason(&rep, at(t0, 10_000)),
        "half-open probe failed: response timeout"
    );
    let p = r.pick(&svc, &[], at(t0, 20_000), any).unwrap();
    r.record(&p, Outcome::Success, at(t0, 20_000));
    assert_eq!(reason(&rep, at(t0, 20_000)), "probe succeeded");
    // Static replicas say where they come from.
    let fixed = r.add_static(
        ServiceName::parse("static").unwrap(),
        ReplicaAddress::parse("http://127.0.0.1:9100").unwrap(),
        t0,
    );
    assert_eq!(reason(&fixed, t0), "configured statically");
}

/// `n` answers of `ms` each for `replica`.
fn answers(replica: &Replica, n: usize, ms: u64) {
    for _ in 0..n {
        replica.record_latency(Duration::from_millis(ms));
    }
}

#[test]
fn a_slow_replica_is_opened_probed_and_closed_like_any_other() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let reps: Vec<_> = (0..3)
        .map(|i| r.register(reg("orders", 9001 + i), t0).replica)
        .collect();
    let svc = r.service("orders").unwrap();
    let mut events = r.subscribe();
    let changes = r.share_changes(16).unwrap();
    answers(&reps[0], 10, 3);
    answers(&reps[1], 10, 300);
    answers(&reps[2], 10, 3);
    assert_eq!(r.eject_slow(t0), 1);
    let v = reps[1].view(t0);
    assert_eq!(v.state, BreakerState::Open);
    // 300 ms and 3 ms as the histogram estimates them.
    assert_eq!(v.state_reason, "slow: 304 ms median vs 3 ms for its peers");
    assert_eq!(reps[0].view(t0).state, BreakerState::Closed);
    assert!(matches!(
        events.try_recv(),
        Ok(RegistryEvent::StateChanged(_, t)) if t.to == BreakerState::Open
    ));
    // A slow opening stays this gateway's: peers judge their own traffic, each within its own half cap.
    assert!(changes.is_empty(), "a slow opening is not shared");
    // The interval drained the counts: nothing to judge in the next one.
    assert_eq!(r.eject_slow(at(t0, 1_000)), 0);
    // Out of rotation until the open timeout, then one probe; its success closes it even if it is slow.
    for _ in 0..4 {
        let p = r.pick(&svc, &[], at(t0, 5_000), any).unwrap();
        assert_ne!(p.replica.id(), reps[1].id());
    }
    let probe = loop {
        let p = r.pick(&svc, &[], at(t0, 10_000), any).unwrap();
        if p.probe {
            break p;
        }
    };
    assert_eq!(probe.replica.id(), reps[1].id());
    r.record(&probe, Outcome::Success, at(t0, 10_300));
    assert_eq!(reps[1].view(at(t0, 10_300)).state, BreakerState::Closed);
    assert_eq!(reason(&reps[1], at(t0, 10_300)), "probe succeeded");
    // Still slow: the next interval opens it again.
    answers(&reps[0], 10, 3);
    answers(&reps[1], 10, 300);
    answers(&reps[2], 10, 3);
    assert_eq!(r.eject_slow(at(t0, 11_000)), 1);
    assert_eq!(reps[1].view(at(t0, 11_000)).state, BreakerState::Open);
}

#[test]
fn slowness_never_takes_out_more_than_half_across_intervals() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let reps: Vec<_> = (0..3)
        .map(|i| r.register(reg("orders", 9001 + i), t0).replica)
        .collect();
    answers(&reps[0], 10, 2);
    answers(&reps[1], 10, 500);
    answers(&reps[2], 10, 2);
    assert_eq!(r.eject_slow(t0), 1);
    // Now the third one turns slow too: against the fast one alone it is slow, but one of three is out
    // already, and floor(3 / 2) = 1.
    answers(&reps[0], 10, 2);
    answers(&reps[2], 10, 500);
    assert_eq!(r.eject_slow(at(t0, 1_000)), 0);
    assert_eq!(reps[2].view(at(t0, 1_000)).state, BreakerState::Closed);
    // Too few answers (5 needed here) are not judged.
    answers(&reps[0], 4, 2);
    answers(&reps[2], 4, 500);
    assert_eq!(r.eject_slow(at(t0, 2_000)), 0);
}

#[test]
fn a_replica_opened_for_failures_keeps_that_reason_and_is_not_judged() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let reps: Vec<_> = (0..3)
        .map(|i| r.register(reg("orders", 9001 + i), t0).replica)
        .collect();
    let svc = r.service("orders").unwrap();
    for _ in 0..9 {
        let p = r.pick(&svc, &[], t0, any).unwrap();
        if p.replica.id() == reps[1].id() {
            r.record(&p, FAIL, t0);
        } else {
            r.record(&p, Outcome::Success, t0);
        }
    }
    answers(&reps[0], 10, 2);
    answers(&reps[1], 10, 500);
    answers(&reps[2], 10, 2);
    assert_eq!(r.eject_slow(t0), 0);
    assert_eq!(
        reason(&reps[1], t0),
        "3 consecutive failures: connect failed"
    );
    // A direct call on a replica that is no longer closed does nothing either.
    let slow = crate::policy::SlowReason {
        median: Duration::from_millis(500),
        peers: Duration::from_millis(2),
    };
    assert!(!r.open_as_slow(&reps[1], slow, t0));
}

#[test]
fn disabled_outlier_detection_opens_nothing() {
    let t0 = Instant::now();
    let mut p = policy();
    p.outlier.enabled = false;
    let r = Registry::new(p);
    let reps: Vec<_> = (0..2)
        .map(|i| r.register(reg("orders", 9001 + i), t0).replica)
        .collect();
    answers(&reps[0], 10, 2);
    answers(&reps[1], 10, 500);
    assert_eq!(r.eject_slow(t0), 0);
}
