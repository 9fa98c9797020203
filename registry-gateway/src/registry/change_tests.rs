//! The store's queue as specs: what each event writes, what coalesces, and what an overflow keeps.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::policy::FailureCause;
use crate::policy::SlowReason;
use crate::registry::tests::{policy, reg};
use crate::registry::{Registry, Replica, TransitionRecord};

fn replicas(n: u16) -> (Registry, Vec<Arc<Replica>>) {
    let r = Registry::new(policy());
    let t0 = Instant::now();
    let reps = (0..n)
        .map(|i| r.register(reg("orders", 9001 + i), t0).replica)
        .collect();
    (r, reps)
}

fn attempt(r: &Arc<Replica>, failed: bool, streak: bool, windowed: bool) -> RegistryEvent {
    RegistryEvent::Attempt {
        replica: Arc::clone(r),
        failed,
        streak,
        windowed,
    }
}

fn transition(r: &Arc<Replica>, to: BreakerState, reason: StateReason) -> RegistryEvent {
    let from = if to == BreakerState::Open {
        BreakerState::Closed
    } else {
        BreakerState::HalfOpen
    };
    RegistryEvent::StateChanged(
        Arc::clone(r),
        TransitionRecord {
            at_unix_ms: 0,
            from,
            to,
            reason,
        },
    )
}

const FAILED: StateReason = StateReason::Failures {
    consecutive: 3,
    last: FailureCause::Connect,
};

fn address_write(q: &mut ChangeQueue) -> AddressWrite {
    match q.take(10).as_slice() {
        [Write::Address { write, .. }] => *write,
        other => panic!("one address entry expected: {other:?}"),
    }
}

#[test]
fn a_heartbeat_storm_is_one_entry_per_replica() {
    let (_r, reps) = replicas(2);
    let mut q = ChangeQueue::new(16);
    // registered, then 1,000 heartbeats: one registration (written with a full lease)
    assert_eq!(
        q.push(&RegistryEvent::Added(
            Arc::clone(&reps[0]),
            Joined::Registered
        )),
        Pushed::Queued
    );
    for _ in 0..1_000 {
        assert_eq!(
            q.push(&RegistryEvent::Renewed(Arc::clone(&reps[0]))),
            Pushed::Coalesced
        );
    }
    // a replica already written: 1,000 heartbeats are one renewal
    for _ in 0..1_000 {
        q.push(&RegistryEvent::Renewed(Arc::clone(&reps[1])));
    }
    assert_eq!(q.len(), 2);
    let id = |i: usize| reps[i].id();
    let service = reps[0].service().clone();
    assert_eq!(
        q.take(10),
        [
            Write::Replica {
                service: service.clone(),
                id: id(0),
                write: ReplicaWrite::Registered(reps[0].record()),
            },
            Write::Replica {
                service,
                id: id(1),
                write: ReplicaWrite::Renewed,
            },
        ]
    );
    assert!(q.is_empty());
}

#[test]
fn a_removal_wins_and_a_lapsed_lease_writes_nothing() {
    let (_r, reps) = replicas(2);
    let mut q = ChangeQueue::new(16);
    q.push(&RegistryEvent::Added(
        Arc::clone(&reps[0]),
        Joined::Registered,
    ));
    q.push(&RegistryEvent::Renewed(Arc::clone(&reps[0])));
    q.push(&RegistryEvent::Removed(
        Arc::clone(&reps[0]),
        Some(EvictionReason::Failures(5)),
        Source::Local,
    ));
    q.push(&RegistryEvent::Renewed(Arc::clone(&reps[0])));
    // The store expires the key of a lapsed lease itself: the waiting renewal goes, nothing replaces it.
    q.push(&RegistryEvent::Renewed(Arc::clone(&reps[1])));
    let lapsed = EvictionReason::LeaseExpired(Duration::from_secs(16));
    assert_eq!(
        q.push(&RegistryEvent::Removed(
            Arc::clone(&reps[1]),
            Some(lapsed),
            Source::Local
        )),
        Pushed::Ignored
    );
    assert_eq!(
        q.take(10),
        [Write::Replica {
            service: reps[0].service().clone(),
            id: reps[0].id(),
            write: ReplicaWrite::Removed(RemovedFor::Failures),
        }]
    );
}

#[test]
fn what_peers_decided_or_each_gateway_judges_alone_is_not_written() {
    let (_r, reps) = replicas(1);
    let r = &reps[0];
    let mut q = ChangeQueue::new(16);
    let ignored = [
        RegistryEvent::Added(Arc::clone(r), Joined::ByPeer),
        RegistryEvent::Removed(
            Arc::clone(r),
            Some(EvictionReason::Deregistered),
            Source::Peer,
        ),
        RegistryEvent::Removed(Arc::clone(r), None, Source::Peer),
        transition(r, BreakerState::Open, StateReason::Peer),
        transition(r, BreakerState::Closed, StateReason::PeerClosed),
        transition(r, BreakerState::HalfOpen, StateReason::Probing),
        transition(
            r,
            BreakerState::Open,
            StateReason::Slow(SlowReason {
                median: Duration::from_millis(900),
                peers: Duration::from_millis(5),
            }),
        ),
        // a success after a success, with no failure-ratio rule: nothing changes for the peers
        attempt(r, false, false, false),
    ];
    for e in &ignored {
        assert_eq!(q.push(e), Pushed::Ignored, "{e:?}");
    }
    assert!(q.is_empty());
}

#[test]
fn attempts_add_up_per_address() {
    let (_r, reps) = replicas(1);
    let r = &reps[0];
    let mut q = ChangeQueue::new(16);
    // F F S F F with a failure-ratio rule: the run restarted once, then 2 failures; 5 requests, 4 failed
    for failed in [true, true, false, true, true] {
        q.push(&attempt(r, failed, true, true));
    }
    assert_eq!(
        address_write(&mut q),
        AddressWrite {
            streak: Streak {
                cleared: true,
                failures: 2
            },
            window: (5, 4),
            ..AddressWrite::default()
        }
    );
    // successes that end no run only count in the window
    for _ in 0..3 {
        q.push(&attempt(r, false, false, true));
    }
    assert_eq!(
        address_write(&mut q),
        AddressWrite {
            window: (3, 0),
            ..AddressWrite::default()
        }
    );
}

#[test]
fn the_latest_breaker_state_wins_and_the_counts_it_clears_go() {
    let (_r, reps) = replicas(1);
    let r = &reps[0];
    let mut q = ChangeQueue::new(16);
    // 3 failures open it: the opening clears the shared window, not the failure count
    for _ in 0..3 {
        q.push(&attempt(r, true, true, true));
    }
    q.push(&transition(r, BreakerState::Open, FAILED));
    q.push(&RegistryEvent::ProbeDone(Arc::clone(r)));
    assert_eq!(
        address_write(&mut q),
        AddressWrite {
            state: Some(SharedState::Opened),
            streak: Streak {
                cleared: false,
                failures: 3
            },
            probes_released: 1,
            ..AddressWrite::default()
        }
    );
    // opened, a probe succeeded (of 2), then both closed it, then a failure: closed, then one failure
    q.push(&transition(r, BreakerState::Open, FAILED));
    q.push(&RegistryEvent::ProbeSucceeded(Arc::clone(r)));
    q.push(&transition(
        r,
        BreakerState::Closed,
        StateReason::ProbesSucceeded(2),
    ));
    q.push(&attempt(r, true, true, false));
    assert_eq!(
        address_write(&mut q),
        AddressWrite {
            state: Some(SharedState::Closed),
            streak: Streak {
                cleared: false,
                failures: 1
            },
            ..AddressWrite::default()
        }
    );
}

#[test]
fn entries_leave_in_the_order_their_replica_first_came() {
    let (_r, reps) = replicas(3);
    let mut q = ChangeQueue::new(16);
    for r in &reps {
        q.push(&RegistryEvent::Renewed(Arc::clone(r)));
    }
    q.push(&attempt(&reps[0], true, true, false));
    q.push(&RegistryEvent::Renewed(Arc::clone(&reps[0])));
    let ids: Vec<String> = q
        .take(2)
        .into_iter()
        .chain(q.take(10))
        .map(|w| match w {
            Write::Replica { id, .. } => id.to_string(),
            Write::Address { address, .. } => address.to_string(),
        })
        .collect();
    let id = |i: usize| reps[i].id().to_string();
    assert_eq!(ids, [id(0), id(1), id(2), reps[0].address().to_string()]);
}

#[test]
fn an_overflow_keeps_only_removals_and_asks_for_a_write_back() {
    let (_r, reps) = replicas(5);
    let mut q = ChangeQueue::new(3);
    q.push(&RegistryEvent::Removed(
        Arc::clone(&reps[0]),
        Some(EvictionReason::Deregistered),
        Source::Local,
    ));
    q.push(&RegistryEvent::Renewed(Arc::clone(&reps[1])));
    q.push(&attempt(&reps[2], true, true, false));
    assert!(!q.take_overflow());
    // a fourth replica: the renewal and the count go (the write-back covers them), the removal stays,
    // and the new entry fits again
    assert_eq!(
        q.push(&RegistryEvent::Renewed(Arc::clone(&reps[3]))),
        Pushed::Overflowed
    );
    assert!(q.take_overflow(), "a write-back is due");
    assert!(!q.take_overflow(), "once");
    assert_eq!(q.len(), 2);
    // removals are kept past the capacity
    let mut q = ChangeQueue::new(2);
    for r in &reps[..4] {
        q.push(&RegistryEvent::Removed(
            Arc::clone(r),
            Some(EvictionReason::Deregistered),
            Source::Local,
        ));
    }
    assert_eq!(
        q.push(&RegistryEvent::Renewed(Arc::clone(&reps[4]))),
        Pushed::Overflowed
    );
    assert_eq!(q.len(), 4);
    let removed: Vec<_> = q.take_removals().into_iter().map(|(_, id, _)| id).collect();
    assert_eq!(removed.len(), 4);
    assert!(reps[..4].iter().all(|r| removed.contains(&r.id())));
    assert!(q.is_empty() && q.take(10).is_empty());
    // a removal that could not be written waits again
    q.requeue_removal(
        reps[0].service().clone(),
        reps[0].id(),
        RemovedFor::Deregistration,
    );
    assert_eq!(q.take_removals().len(), 1);
}

#[test]
fn a_queue_never_holds_more_entries_than_its_capacity_plus_removals() {
    let (_r, reps) = replicas(200);
    let mut q = ChangeQueue::new(50);
    // a storm: every replica renews and fails, round after round
    for _ in 0..20 {
        for r in &reps {
            q.push(&RegistryEvent::Renewed(Arc::clone(r)));
            q.push(&attempt(r, true, true, true));
            assert!(q.len() <= 50);
        }
    }
    assert!(q.take_overflow());
}
