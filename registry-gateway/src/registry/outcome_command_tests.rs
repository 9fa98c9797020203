//! Commands as specs, along one request's attempts: picking a replica, its outcome, a probe given back.

use super::command_tests::{picks, run, seen, Seen, CONNECT, LOCAL};
use super::tests::{any, at, policy, reg, FAIL};
use super::*;
use crate::policy::{BreakerState, EvictionReason, Outcome};

/// What `n` attempts admitted together at `t0` (still in flight when the breaker opens) yield as they fail
/// one by one, at `t0`.
fn failures(r: &Registry, t0: Instant, n: usize) -> Vec<Vec<Seen>> {
    let attempts = picks(r, t0, n);
    let failed = |pick| {
        let outcome = RecordOutcome {
            pick,
            outcome: FAIL,
        };
        run(r, outcome, t0).1
    };
    attempts.iter().map(failed).collect()
}

/// The breaker's opening at the third consecutive failure.
fn opened_at_three() -> Seen {
    let reason = StateReason::Failures {
        consecutive: 3,
        last: CONNECT,
    };
    Seen::State(9001, BreakerState::Closed, BreakerState::Open, reason)
}

/// The eviction at the fifth.
fn evicted_at_five() -> Seen {
    Seen::Removed(9001, Some(EvictionReason::Failures(5)), LOCAL)
}

#[test]
fn failures_open_the_breaker_at_three_and_evict_at_five_in_order() {
    // breaker: 3 consecutive failures; eviction: 5
    let t0 = Instant::now();
    let r = Registry::new(policy());
    r.execute(Register(reg("orders", 9001)), t0);
    // failures: 1 2 -> nothing; 3 -> opened; 4 -> nothing; 5 -> evicted
    let expected = [
        vec![],
        vec![],
        vec![opened_at_three()],
        vec![],
        vec![evicted_at_five()],
    ];
    assert_eq!(failures(&r, t0, 5), expected);
    assert!(r.service("orders").unwrap().replicas().is_empty());
}

#[test]
fn with_a_store_each_failure_is_also_an_attempt_for_the_peers() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let _outbox = r.share_changes(16).unwrap();
    r.execute(Register(reg("orders", 9001)), t0);
    let failed = Seen::Attempt {
        port: 9001,
        failed: true,
        streak: true,
    };
    // the transition comes before the attempt that caused it; the eviction after it
    let expected = [
        vec![failed.clone()],
        vec![failed.clone()],
        vec![opened_at_three(), failed.clone()],
        vec![failed.clone()],
        vec![failed, evicted_at_five()],
    ];
    assert_eq!(failures(&r, t0, 5), expected);
}

#[test]
fn a_success_after_the_open_timeout_probes_then_closes() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    r.execute(Register(reg("orders", 9001)), t0);
    failures(&r, t0, 3);
    let svc = r.service("orders").unwrap();
    let select = || Select {
        service: &svc,
        tried: &[],
        accept: any,
    };
    // open for 10 s: nothing to pick, nothing happens
    let (none, events) = run(&r, select(), at(t0, 9_999));
    assert!(none.is_none());
    assert_eq!(events, []);
    let (probe, events) = run(&r, select(), at(t0, 10_000));
    let probe = probe.unwrap();
    assert!(probe.probe);
    let half_open = (BreakerState::Open, BreakerState::HalfOpen);
    assert_eq!(
        events,
        [Seen::State(
            9001,
            half_open.0,
            half_open.1,
            StateReason::Probing
        )]
    );
    let success = RecordOutcome {
        pick: &probe,
        outcome: Outcome::Success,
    };
    let ((), events) = run(&r, success, at(t0, 10_050));
    let closed = (BreakerState::HalfOpen, BreakerState::Closed);
    let reason = StateReason::ProbesSucceeded(1);
    assert_eq!(events, [Seen::State(9001, closed.0, closed.1, reason)]);
}

#[test]
fn a_client_fault_charges_nobody_and_gives_the_probe_back() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let _outbox = r.share_changes(16).unwrap();
    r.execute(Register(reg("orders", 9001)), t0);
    let pick = &picks(&r, t0, 1)[0];
    let gone = Outcome::ClientFault(crate::policy::ClientFault::Aborted);
    let ((), events) = run(
        &r,
        RecordOutcome {
            pick,
            outcome: gone,
        },
        t0,
    );
    assert_eq!(events, []);
    let probe = Pick {
        replica: Arc::clone(&pick.replica),
        probe: true,
    };
    let ((), events) = run(&r, Abandon(&probe), t0);
    assert_eq!(events, [Seen::ProbeDone(9001)]);
}

#[test]
fn the_busiest_outcome_keeps_its_events_inline() {
    // a failed probe with a store: probe given back, reopened, the attempt, evicted (4 = EVENTS_INLINE)
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let _outbox = r.share_changes(16).unwrap();
    r.execute(Register(reg("orders", 9001)), t0);
    failures(&r, t0, 4);
    let probe = &picks(&r, at(t0, 10_000), 1)[0];
    assert!(probe.probe);
    let applied = r.apply(
        RecordOutcome {
            pick: probe,
            outcome: FAIL,
        },
        at(t0, 10_001),
    );
    let reopened = (BreakerState::HalfOpen, BreakerState::Open);
    assert_eq!(
        seen(&applied.events),
        [
            Seen::ProbeDone(9001),
            Seen::State(
                9001,
                reopened.0,
                reopened.1,
                StateReason::ProbeFailed(CONNECT)
            ),
            Seen::Attempt {
                port: 9001,
                failed: true,
                streak: true
            },
            Seen::Removed(9001, Some(EvictionReason::Failures(5)), LOCAL),
        ]
    );
    assert!(!applied.events.spilled(), "no allocation for the events");
}
