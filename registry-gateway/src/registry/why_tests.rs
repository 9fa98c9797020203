//! Why each replica is in its state: transitions, the evicted list, lease countdowns and the registry's
//! metrics, driven by an explicit clock.

use std::time::{Duration, Instant, SystemTime};

use super::tests::{any, at, policy, reg, FAIL};
use super::*;
use crate::clock::WallClock;
use crate::policy::BreakerState::{self, Closed, HalfOpen, Open};
use crate::policy::Outcome;

/// Wall-clock milliseconds of the test's `t0`.
const T0_MS: u64 = 1_700_000_000_000;

pub(super) fn registry(t0: Instant) -> Registry {
    let wall = WallClock::fixed(t0, SystemTime::UNIX_EPOCH + Duration::from_millis(T0_MS));
    Registry::with_wall_clock(policy(), wall)
}

/// The transitions of a view as `(ms after t0, from, to, reason)`.
fn transitions(list: &[TransitionRecord]) -> Vec<(u64, BreakerState, BreakerState, String)> {
    list.iter()
        .map(|t| (t.at_unix_ms - T0_MS, t.from, t.to, t.reason.to_string()))
        .collect()
}

fn row(
    ms: u64,
    from: BreakerState,
    to: BreakerState,
    reason: &str,
) -> (u64, BreakerState, BreakerState, String) {
    (ms, from, to, reason.to_owned())
}

/// Fails the next `n` attempts on `svc` at `now` (one replica admitting).
pub(super) fn fail(r: &Registry, svc: &Service, n: usize, now: Instant) {
    for _ in 0..n {
        let p = r.pick(svc, &[], now, any).expect("a replica admits");
        r.record(&p, FAIL, now);
    }
}

/// Records `n` failures on `replica` as if requests admitted earlier came back now.
pub(super) fn fail_replica(r: &Registry, replica: &Arc<Replica>, n: usize, now: Instant) {
    let pick = Pick {
        replica: Arc::clone(replica),
        probe: false,
    };
    for _ in 0..n {
        r.record(&pick, FAIL, now);
    }
}

#[test]
fn transitions_are_recorded_in_order_with_their_reasons_and_wall_times() {
    let t0 = Instant::now();
    let r = registry(t0);
    let rep = r.register(reg("orders", 9001), t0).replica;
    let svc = r.service("orders").unwrap();
    let v = rep.view(at(t0, 500));
    assert_eq!(v.state_reason, "registered");
    assert_eq!(v.state_since, Duration::from_millis(500));
    assert_eq!(v.next_probe_in, None);
    assert!(v.transitions.is_empty());
    // 1 s: three failures open it for 10 s
    fail(&r, &svc, 3, at(t0, 1_000));
    let v = rep.view(at(t0, 4_000));
    assert_eq!(v.state, Open);
    assert_eq!(v.state_since, Duration::from_secs(3));
    assert_eq!(v.next_probe_in, Some(Duration::from_secs(7)));
    // 11 s: the probe fails (4 failures, eviction at 5); 21 s: the next probe succeeds
    fail(&r, &svc, 1, at(t0, 11_000));
    let p = r.pick(&svc, &[], at(t0, 21_000), any).unwrap();
    assert!(p.probe);
    r.record(&p, Outcome::Success, at(t0, 21_500));
    let v = rep.view(at(t0, 22_000));
    assert_eq!(v.state, Closed);
    assert_eq!(v.state_reason, "probe succeeded");
    assert_eq!(v.state_since, Duration::from_millis(500));
    assert_eq!(v.next_probe_in, None);
    assert_eq!(
        transitions(&v.transitions),
        [
            row(
                1_000,
                Closed,
                Open,
                "3 consecutive failures: connect failed"
            ),
            row(11_000, Open, HalfOpen, "open timeout passed: probing"),
            row(
                11_000,
                HalfOpen,
                Open,
                "half-open probe failed: connect failed"
            ),
            row(21_000, Open, HalfOpen, "open timeout passed: probing"),
            row(21_500, HalfOpen, Closed, "probe succeeded"),
        ]
    );
}

#[test]
fn only_the_last_ten_transitions_are_kept_and_none_costs_nothing() {
    let t0 = Instant::now();
    let r = registry(t0);
    // Static: never evicted, however many probes fail.
    let rep = r.add_static(
        ServiceName::parse("orders").unwrap(),
        ReplicaAddress::parse("http://127.0.0.1:9001").unwrap(),
        t0,
    );
    let svc = r.service("orders").unwrap();
    assert!(rep.lock().transitions().is_empty());
    fail(&r, &svc, 3, t0);
    // transitions: 1 opening + 6 × (half-open, reopened) = 13; kept: the last 10
    for i in 1..=6 {
        fail(&r, &svc, 1, at(t0, i * 10_000));
    }
    let v = rep.view(at(t0, 60_000));
    let kept = transitions(&v.transitions);
    assert_eq!(kept.len(), TRANSITIONS_KEPT);
    // kept: the 4th (the second probe, at 20 s) to the 13th (the last failed probe, at 60 s)
    assert_eq!(
        kept[0],
        row(20_000, Open, HalfOpen, "open timeout passed: probing")
    );
    assert_eq!(
        kept[1],
        row(
            20_000,
            HalfOpen,
            Open,
            "half-open probe failed: connect failed"
        )
    );
    assert_eq!(
        kept[9],
        row(
            60_000,
            HalfOpen,
            Open,
            "half-open probe failed: connect failed"
        )
    );
}

#[test]
fn transitions_applied_from_peer_gateways_are_recorded_and_counted() {
    let t0 = Instant::now();
    let r = registry(t0);
    let rep = r.register(reg("orders", 9001), t0).replica;
    let addr = rep.address().clone();
    assert!(r.apply_opened(&addr, Duration::from_secs(10), at(t0, 1_000)));
    r.apply_closed(&addr, at(t0, 2_000));
    assert!(r.apply_shared_failures(&addr, 3, at(t0, 3_000)));
    // 4 s: another gateway holds the probe; 5 s: the probes of every gateway together closed it
    r.defer_probe(&addr, at(t0, 4_000));
    assert!(r.apply_probe_successes(&addr, 1, at(t0, 5_000)));
    let v = rep.view(at(t0, 6_000));
    assert_eq!(
        transitions(&v.transitions),
        [
            row(1_000, Closed, Open, "opened by a peer gateway"),
            row(2_000, Open, Closed, "a peer gateway's probe succeeded"),
            row(3_000, Closed, Open, "3 failures counted across gateways"),
            row(
                4_000,
                Open,
                HalfOpen,
                "open timeout passed: a peer gateway is probing"
            ),
            row(
                5_000,
                HalfOpen,
                Closed,
                "1 probes succeeded across gateways"
            ),
        ]
    );
    let text = r.metrics().encode();
    let series = |to: &str| {
        format!(
            "gateway_breaker_transitions_total{{service=\"orders\",replica=\"http://127.0.0.1:9001\",to=\"{to}\"}}"
        )
    };
    assert!(text.contains(&format!("{} 2\n", series("open"))), "{text}");
    assert!(
        text.contains(&format!("{} 2\n", series("closed"))),
        "{text}"
    );
    assert!(
        text.contains(&format!("{} 1\n", series("half_open"))),
        "{text}"
    );
    assert!(text.contains(
        "gateway_replica_state{service=\"orders\",replica=\"http://127.0.0.1:9001\",state=\"closed\"} 1\n"
    ), "{text}");
}

#[test]
fn evicted_replicas_are_listed_with_reason_counters_and_transitions() {
    let t0 = Instant::now();
    let r = registry(t0);
    let failing = r.register(reg("orders", 9001), t0).replica;
    let svc = r.service("orders").unwrap();
    // 3 failures open it at 0 s; failed probes at 10 s and 20 s make 5: evicted at 20 s
    fail(&r, &svc, 3, t0);
    fail(&r, &svc, 1, at(t0, 10_000));
    fail(&r, &svc, 1, at(t0, 20_000));
    assert!(svc.replicas().is_empty());
    // A service that lost its last replica is still there, with nothing to route to.
    assert!(r.service("orders").is_some());
    let memory = r.policy().probation_memory;
    let evicted = svc.evicted(at(t0, 20_000), memory);
    assert_eq!(evicted.len(), 1);
    let e = &evicted[0];
    assert_eq!(e.id, failing.id());
    assert_eq!(e.address.to_string(), "http://127.0.0.1:9001");
    assert_eq!(
        e.reason_sentence(),
        "5 consecutive failures (last: connect failed)"
    );
    assert_eq!(e.evicted_at_unix_ms, T0_MS + 20_000);
    assert_eq!(
        e.counters,
        History {
            consecutive_failures: 5,
            requests: 5,
            failures: 5
        }
    );
    assert_eq!(e.transitions.to_vec().len(), 5);
    assert_eq!(
        transitions(&e.transitions.to_vec())[4],
        row(
            20_000,
            HalfOpen,
            Open,
            "half-open probe failed: connect failed"
        )
    );
    // A lapsed lease is listed too (most recent first); a deregistration is not.
    r.register(reg("orders", 9002), at(t0, 20_000));
    let leaving = r.register(reg("orders", 9003), at(t0, 20_000)).replica;
    r.deregister("orders", &leaving.id().to_string(), at(t0, 21_000))
        .unwrap();
    assert_eq!(r.sweep(at(t0, 35_000)), 1);
    let evicted = svc.evicted(at(t0, 35_000), memory);
    let listed: Vec<_> = evicted
        .iter()
        .map(|e| (e.address.to_string(), e.reason_sentence()))
        .collect();
    assert_eq!(
        listed,
        [
            (
                "http://127.0.0.1:9002".to_owned(),
                "lease expired, no heartbeat for 15000 ms".to_owned()
            ),
            (
                "http://127.0.0.1:9001".to_owned(),
                "5 consecutive failures (last: connect failed)".to_owned()
            ),
        ]
    );
    // Registering again takes an address off the list (9001 returns on probation).
    assert!(r.register(reg("orders", 9001), at(t0, 36_000)).on_probation);
    let evicted = svc.evicted(at(t0, 36_000), memory);
    assert_eq!(evicted.len(), 1);
    assert_eq!(evicted[0].address.to_string(), "http://127.0.0.1:9002");
    // Remembered for `probation_memory` (600 s) after the eviction at 35 s.
    assert_eq!(svc.evicted(at(t0, 634_999), memory).len(), 1);
    assert!(svc.evicted(at(t0, 635_000), memory).is_empty());
}

#[test]
fn the_evicted_list_keeps_the_most_recent_hundred() {
    let t0 = Instant::now();
    let r = registry(t0);
    let reps: Vec<_> = (0..105)
        .map(|i| r.register(reg("orders", 9000 + i), t0).replica)
        .collect();
    for (i, rep) in reps.iter().enumerate() {
        fail_replica(&r, rep, 5, at(t0, i as u64));
    }
    let svc = r.service("orders").unwrap();
    assert!(svc.replicas().is_empty());
    let evicted = svc.evicted(at(t0, 1_000), r.policy().probation_memory);
    assert_eq!(evicted.len(), EVICTED_KEPT);
    // newest first: 9104 down to 9005
    assert_eq!(evicted[0].address.to_string(), "http://127.0.0.1:9104");
    assert_eq!(evicted[99].address.to_string(), "http://127.0.0.1:9005");
}

#[test]
fn the_lease_counts_down_on_the_injected_clock() {
    let t0 = Instant::now();
    let r = registry(t0);
    let rep = r.register(reg("orders", 9001), t0).replica;
    let id = rep.id().to_string();
    // ttl 15 s: 11 s left at 4 s; a heartbeat at 5 s makes it 14 s at 6 s; none left from 20 s
    assert_eq!(
        rep.view(at(t0, 4_000)).lease_expires_in,
        Some(Duration::from_secs(11))
    );
    r.heartbeat("orders", &id, at(t0, 5_000)).unwrap();
    assert_eq!(
        rep.view(at(t0, 6_000)).lease_expires_in,
        Some(Duration::from_secs(14))
    );
    assert_eq!(
        rep.view(at(t0, 21_000)).lease_expires_in,
        Some(Duration::ZERO)
    );
    let fixed = r.add_static(
        ServiceName::parse("orders").unwrap(),
        ReplicaAddress::parse("http://127.0.0.1:9100").unwrap(),
        t0,
    );
    assert_eq!(fixed.view(at(t0, 4_000)).lease_expires_in, None);
    assert_eq!(rep.view(t0).registered_at_unix_ms, T0_MS);
}
