//! Registry behaviour driven by an explicit clock.

use super::*;
use crate::policy::{BreakerState, FailureCause, Outcome};

pub(super) fn policy() -> RegistryPolicy {
    RegistryPolicy {
        breaker: BreakerConfig::consecutive(3, Duration::from_secs(10), Duration::from_secs(30)),
        eviction: EvictionPolicy {
            failure_threshold: 5,
        },
        lease_ttl: Duration::from_secs(15),
        heartbeat_interval: Duration::from_secs(5),
        probation_memory: Duration::from_secs(600),
        retry_budget: Some(crate::policy::RetryBudgetConfig::default()),
        preservation: PreservationPolicy::new(
            0.5,
            Duration::from_secs(30),
            Duration::from_secs(15),
            Duration::from_secs(5),
        ),
        outlier: crate::policy::OutlierConfig {
            min_requests: 5,
            ..Default::default()
        },
    }
}

pub(super) fn reg(service: &str, port: u16) -> Registration {
    Registration::local_http(service, port)
}

pub(super) fn any(_: &Replica) -> bool {
    true
}

pub(super) const FAIL: Outcome = Outcome::Failure(FailureCause::Connect);

pub(super) fn at(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

#[test]
fn re_registration_is_idempotent() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let first = r.register(reg("orders", 9001), t0);
    let again = r.register(reg("orders", 9001), at(t0, 10_000));
    assert!(first.created);
    assert!(!again.created);
    assert_eq!(first.replica.id(), again.replica.id());
    assert_eq!(r.service("orders").unwrap().replicas().len(), 1);
    // the re-registration renewed the lease: alive at 24.9 s, gone at 25 s
    assert_eq!(r.sweep(at(t0, 24_900)), 0);
    assert_eq!(r.sweep(at(t0, 25_000)), 1);
}

#[test]
fn heartbeat_renews_and_unknown_ids_are_refused() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let id = r.register(reg("orders", 9001), t0).replica.id().to_string();
    r.heartbeat("orders", &id, at(t0, 14_000)).unwrap();
    assert_eq!(r.sweep(at(t0, 28_999)), 0);
    assert_eq!(r.sweep(at(t0, 29_000)), 1);
    assert!(matches!(
        r.heartbeat("orders", &id, at(t0, 29_001)),
        Err(RegistryError::UnknownReplica { .. })
    ));
    assert!(r.heartbeat("orders", "not-a-uuid", t0).is_err());
    assert!(r.heartbeat("nope", &id, t0).is_err());
}

#[test]
fn deregister_removes_at_once() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let id = r.register(reg("orders", 9001), t0).replica.id().to_string();
    r.deregister("orders", &id, t0).unwrap();
    assert!(r.service("orders").unwrap().replicas().is_empty());
    assert!(r.deregister("orders", &id, t0).is_err());
}

#[test]
fn failures_open_then_evict_and_the_replica_returns_on_probation() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    r.register(reg("orders", 9001), t0);
    let svc = r.service("orders").unwrap();
    // three failures -> open: nothing to pick for 10 s
    for _ in 0..3 {
        let p = r.pick(&svc, &[], t0, any).unwrap();
        r.record(&p, FAIL, t0);
    }
    assert_eq!(svc.replicas()[0].view(t0).state, BreakerState::Open);
    assert!(r.pick(&svc, &[], at(t0, 9_999), any).is_none());
    // t=10 s probe fails (4), t=20 s probe fails (5) -> evicted
    let p = r.pick(&svc, &[], at(t0, 10_000), any).unwrap();
    assert!(p.probe);
    r.record(&p, FAIL, at(t0, 10_000));
    let p = r.pick(&svc, &[], at(t0, 20_000), any).unwrap();
    r.record(&p, FAIL, at(t0, 20_000));
    assert!(svc.replicas().is_empty());
    // its SDK registers it again: open, with its history, not in rotation until a probe succeeds
    let back = r.register(reg("orders", 9001), at(t0, 21_000));
    assert!(back.created && back.on_probation);
    let v = back.replica.view(at(t0, 21_000));
    assert_eq!(
        (v.state, v.consecutive_failures, v.requests, v.failures),
        (BreakerState::Open, 5, 5, 5)
    );
    assert!(r.pick(&svc, &[], at(t0, 30_999), any).is_none());
    let p = r.pick(&svc, &[], at(t0, 31_000), any).unwrap();
    assert!(p.probe);
    r.record(&p, Outcome::Success, at(t0, 31_000));
    assert_eq!(
        back.replica.view(at(t0, 31_000)).state,
        BreakerState::Closed
    );
}

#[test]
fn probation_is_forgotten_after_its_memory() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    r.register(reg("orders", 9001), t0);
    let svc = r.service("orders").unwrap();
    for i in 0..5 {
        let now = at(t0, i * 10_000);
        let p = r.pick(&svc, &[], now, any).unwrap();
        r.record(&p, FAIL, now);
    }
    assert!(svc.replicas().is_empty());
    // 600 s after eviction it is a stranger again
    r.sweep(at(t0, 640_001));
    let back = r.register(reg("orders", 9001), at(t0, 640_001));
    assert!(!back.on_probation);
    assert_eq!(
        back.replica.view(at(t0, 640_001)).state,
        BreakerState::Closed
    );
}

#[test]
fn static_replicas_never_expire_nor_get_evicted() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let name = ServiceName::parse("product").unwrap();
    let rep = r.add_static(
        name,
        ReplicaAddress::parse("http://127.0.0.1:9001").unwrap(),
        t0,
    );
    let svc = r.service("product").unwrap();
    for i in 0..10 {
        let now = at(t0, i * 10_000);
        if let Some(p) = r.pick(&svc, &[], now, any) {
            r.record(&p, FAIL, now);
        }
    }
    assert_eq!(r.sweep(at(t0, 10_000_000)), 0);
    assert_eq!(svc.replicas().len(), 1);
    assert!(matches!(
        r.deregister("product", &rep.id().to_string(), t0),
        Err(RegistryError::StaticReplica(_))
    ));
}

#[test]
fn pick_skips_tried_replicas_and_round_robins() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let ids: Vec<Uuid> = (0..3)
        .map(|i| r.register(reg("orders", 9001 + i), t0).replica.id())
        .collect();
    let svc = r.service("orders").unwrap();
    // A B C A B C
    let seq: Vec<Uuid> = (0..6)
        .map(|_| r.pick(&svc, &[], t0, any).unwrap().replica.id())
        .collect();
    assert_eq!(seq, [ids[0], ids[1], ids[2], ids[0], ids[1], ids[2]]);
    // with A and B tried, only C is left; with all tried, nothing
    assert_eq!(
        r.pick(&svc, &ids[..2], t0, any).unwrap().replica.id(),
        ids[2]
    );
    assert!(r.pick(&svc, &ids, t0, any).is_none());
}

#[test]
fn an_abandoned_probe_frees_the_half_open_slot() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    r.register(reg("orders", 9001), t0);
    let svc = r.service("orders").unwrap();
    for _ in 0..3 {
        let p = r.pick(&svc, &[], t0, any).unwrap();
        r.record(&p, FAIL, t0);
    }
    let probe = r.pick(&svc, &[], at(t0, 10_000), any).unwrap();
    assert!(r.pick(&svc, &[], at(t0, 10_001), any).is_none());
    r.abandon(&probe);
    assert!(r.pick(&svc, &[], at(t0, 10_002), any).unwrap().probe);
}

#[test]
fn grpc_replicas_are_indexed_by_the_services_they_serve_and_filtered_by_pick() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let mut g = reg("echo", 9101);
    g.protocol = Protocol::Grpc;
    g.grpc_services = vec!["demo.v1.Echo".into()];
    r.register(g, t0);
    r.register(reg("echo", 9102), t0); // an HTTP replica of the same registry service
    let routes = r.grpc_route("demo.v1.Echo");
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].name().as_str(), "echo");
    assert!(r.grpc_route("demo.v1.Other").is_empty());
    // The gRPC filter only ever picks the gRPC replica; the HTTP filter only the HTTP one.
    for _ in 0..4 {
        let p = r
            .pick(&routes[0], &[], t0, |x| x.serves_grpc("demo.v1.Echo"))
            .unwrap();
        assert_eq!(p.replica.address().as_str(), "http://127.0.0.1:9101");
        let p = r
            .pick(&routes[0], &[], t0, |x| x.protocol() == Protocol::Http)
            .unwrap();
        assert_eq!(p.replica.address().as_str(), "http://127.0.0.1:9102");
    }
}

#[test]
fn changes_are_broadcast_in_order() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let mut rx = r.subscribe();
    let id = r.register(reg("orders", 9001), t0).replica.id();
    r.register(reg("orders", 9001), t0); // a renewal is not a change
    let svc = r.service("orders").unwrap();
    for _ in 0..3 {
        let p = r.pick(&svc, &[], t0, any).unwrap();
        r.record(&p, FAIL, t0);
    }
    r.deregister("orders", &id.to_string(), t0).unwrap();
    let mut seen = Vec::new();
    while let Ok(e) = rx.try_recv() {
        seen.push(match e {
            RegistryEvent::Added(x, _) => format!("added {}", x.address()),
            RegistryEvent::Removed(x, _, _) => format!("removed {}", x.address()),
            RegistryEvent::StateChanged(x, t) => format!("{} {:?}", x.address(), t.to),
            other => format!("not for watchers: {other:?}"),
        });
    }
    assert_eq!(
        seen,
        [
            "added http://127.0.0.1:9001",
            "http://127.0.0.1:9001 Open",
            "removed http://127.0.0.1:9001"
        ]
    );
}

fn drain(outbox: &Outbox) -> Vec<Write> {
    outbox.take(usize::MAX)
}

#[test]
fn local_changes_wait_for_the_store_one_entry_per_replica() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let outbox = r.share_changes(16).unwrap();
    assert!(r.share_changes(16).is_none(), "one store per registry");
    let rep = r.register(reg("orders", 9001), t0).replica;
    let id = rep.id();
    let name = ServiceName::parse("orders").unwrap();
    let replica = |write| Write::Replica {
        service: name.clone(),
        id,
        write,
    };
    // registered, registered again, a heartbeat: one registration (written with a full lease)
    r.register(reg("orders", 9001), t0);
    r.heartbeat("orders", &id.to_string(), t0).unwrap();
    assert_eq!(
        drain(&outbox),
        [replica(ReplicaWrite::Registered(rep.record()))]
    );
    r.heartbeat("orders", &id.to_string(), t0).unwrap();
    assert_eq!(drain(&outbox), [replica(ReplicaWrite::Renewed)]);
    let svc = r.service("orders").unwrap();
    let p = r.pick(&svc, &[], t0, any).unwrap();
    r.record(&p, Outcome::Success, t0); // a success with no failures before: nothing to tell
    assert!(outbox.is_empty());
    for _ in 0..3 {
        let p = r.pick(&svc, &[], t0, any).unwrap();
        r.record(&p, FAIL, t0);
    }
    // three failures and the opening they caused: one entry, the state first
    assert_eq!(
        drain(&outbox),
        [Write::Address {
            address: rep.address().clone(),
            write: AddressWrite {
                state: Some(SharedState::Opened),
                streak: Streak {
                    cleared: false,
                    failures: 3
                },
                ..AddressWrite::default()
            }
        }]
    );
    r.deregister("orders", &id.to_string(), t0).unwrap();
    assert_eq!(
        drain(&outbox),
        [replica(ReplicaWrite::Removed(RemovedFor::Deregistration))]
    );
}

#[test]
fn peer_changes_apply_without_being_shared_back() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let outbox = r.share_changes(16).unwrap();
    let rec = ReplicaRecord {
        id: Uuid::new_v4(),
        service: ServiceName::parse("orders").unwrap(),
        address: ReplicaAddress::parse("http://127.0.0.1:9001").unwrap(),
        protocol: Protocol::Http,
        grpc_services: Vec::new(),
        metadata: Metadata::new(),
    };
    // registered on a peer with 4 s of lease left: gone here 4 s later unless renewed
    r.apply_registered(rec.clone(), Duration::from_secs(4), t0);
    let svc = r.service("orders").unwrap();
    assert_eq!(svc.replicas()[0].id(), rec.id);
    assert_eq!(r.sweep(at(t0, 3_999)), 0);
    assert!(r.apply_renewed("orders", rec.id, at(t0, 3_000)));
    assert_eq!(r.sweep(at(t0, 17_999)), 0);
    // a peer opened its breaker for 10 s: skipped here at once
    assert!(r.apply_opened(&rec.address, Duration::from_secs(10), at(t0, 5_000)));
    assert!(r.pick(&svc, &[], at(t0, 5_001), any).is_none());
    // the peer's probe succeeded: closed here too
    r.apply_closed(&rec.address, at(t0, 5_001));
    assert!(r.pick(&svc, &[], at(t0, 5_002), any).is_some());
    // failures counted across gateways reach the threshold: open here
    assert!(!r.apply_shared_failures(&rec.address, 2, at(t0, 6_000)));
    assert!(r.apply_shared_failures(&rec.address, 3, at(t0, 6_000)));
    assert!(r.pick(&svc, &[], at(t0, 6_001), any).is_none());
    // a peer removed it
    r.apply_removed("orders", rec.id, RemovedFor::Deregistration, at(t0, 7_000));
    assert!(svc.replicas().is_empty());
    // none of that is echoed to the store (the pick above was never recorded), but for the opening this
    // gateway decided from the fleet's count: it tells the peers
    assert_eq!(
        drain(&outbox),
        [Write::Address {
            address: rec.address.clone(),
            write: AddressWrite {
                state: Some(SharedState::Opened),
                ..AddressWrite::default()
            }
        }]
    );
}

#[test]
fn a_peer_id_replaces_a_local_id_for_the_same_address() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let local = r.register(reg("orders", 9001), t0).replica.id();
    let mut rec = r.service("orders").unwrap().replicas()[0].record();
    rec.id = Uuid::new_v4();
    r.apply_registered(rec.clone(), Duration::from_secs(15), t0);
    let ids: Vec<Uuid> = r
        .service("orders")
        .unwrap()
        .replicas()
        .iter()
        .map(|x| x.id())
        .collect();
    assert_eq!(ids, [rec.id]);
    assert!(
        r.heartbeat("orders", &local.to_string(), t0).is_err(),
        "the SDK re-registers and adopts the shared id"
    );
}

#[test]
fn a_peer_cannot_stretch_a_lease_or_an_open_breaker_beyond_this_gateways_settings() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let rec = ReplicaRecord {
        id: Uuid::new_v4(),
        service: ServiceName::parse("orders").unwrap(),
        address: ReplicaAddress::parse("http://127.0.0.1:9001").unwrap(),
        protocol: Protocol::Http,
        grpc_services: Vec::new(),
        metadata: Metadata::new(),
    };
    // u64::MAX milliseconds from the wire: no overflow, and the lease is this gateway's TTL at most
    let ttl = policy().lease_ttl;
    r.apply_registered(rec.clone(), Duration::from_millis(u64::MAX), t0);
    assert_eq!(r.sweep(t0 + ttl - Duration::from_millis(1)), 0);
    let svc = r.service("orders").unwrap();
    // opened "forever" by a peer: admits a probe after this gateway's own open timeout
    assert!(r.apply_opened(&rec.address, Duration::from_millis(u64::MAX), t0));
    let open = policy().breaker.open_timeout;
    assert!(r
        .pick(&svc, &[], t0 + open - Duration::from_millis(1), any)
        .is_none());
    assert!(r.pick(&svc, &[], t0 + open, any).is_some());
    assert_eq!(r.sweep(t0 + ttl), 1, "the lease ran out after one TTL");
}

#[test]
fn each_service_has_its_own_retry_budget_and_counts_refusals() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    r.register(reg("orders", 9001), t0);
    r.register(reg("billing", 9002), t0);
    let (orders, billing) = (r.service("orders").unwrap(), r.service("billing").unwrap());
    for _ in 0..50 {
        orders.count_request(t0);
    }
    // 20 % of 50, plus the floor of 3/s over 10 s
    let allowed = (0..100).filter(|_| orders.allow_retry(t0)).count();
    assert_eq!(allowed, 10 + 30);
    assert_eq!(orders.retries_refused(), 60);
    // billing's budget is untouched by orders' traffic: its floor only
    assert_eq!((0..100).filter(|_| billing.allow_retry(t0)).count(), 30);
    assert_eq!(billing.retries_refused(), 70);
}

#[test]
fn without_a_budget_every_retry_is_allowed() {
    let t0 = Instant::now();
    let r = Registry::new(RegistryPolicy {
        retry_budget: None,
        ..policy()
    });
    r.register(reg("orders", 9001), t0);
    let orders = r.service("orders").unwrap();
    assert!((0..1000).all(|_| orders.allow_retry(t0)));
    assert_eq!(orders.retries_refused(), 0);
}

fn register_many(r: &Registry, service: &str, n: u16, now: Instant) -> Vec<Arc<Replica>> {
    (0..n)
        .map(|i| r.register(reg(service, 9001 + i), now).replica)
        .collect()
}

#[test]
fn a_fleet_silent_at_once_is_held_until_the_deadline_then_evicted() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let fleet = register_many(&r, "orders", 10, t0);
    let svc = r.service("orders").unwrap();
    // ttl 15 s: nothing has run out at 14.999 s.
    assert_eq!(r.sweep(at(t0, 14_999)), 0);
    assert!(svc.preserving_until().is_none());
    // All ten run out together: held for 30 s (until t=45 s), still listed and routable.
    assert_eq!(r.sweep(at(t0, 15_000)), 0);
    assert!(svc.preserving_until().is_some());
    assert_eq!(svc.replicas().len(), 10);
    let v = fleet[2].view(at(t0, 30_000));
    assert!(v.lease_expired && v.leased);
    assert!(r.pick(&svc, &[], at(t0, 15_500), any).is_some());
    // Replica 0 heartbeats again during the hold: it simply stays.
    r.heartbeat("orders", &fleet[0].id().to_string(), at(t0, 40_000))
        .unwrap();
    // Replica 1 really is dead: still breaker-protected, and evicted for its failures while held.
    let only1 = |x: &Replica| x.id() == fleet[1].id();
    for now in [16_000, 16_000, 16_000, 26_000, 36_000] {
        let p = r.pick(&svc, &[], at(t0, now), only1).unwrap();
        r.record(&p, FAIL, at(t0, now));
    }
    assert!(fleet[1].is_removed());
    assert_eq!(r.sweep(at(t0, 44_999)), 0);
    assert_eq!(svc.replicas().len(), 9);
    // The deadline: the eight still silent go; replica 0 stays.
    assert_eq!(r.sweep(at(t0, 45_000)), 8);
    assert!(svc.preserving_until().is_none());
    let left: Vec<Uuid> = svc.replicas().iter().map(|x| x.id()).collect();
    assert_eq!(left, [fleet[0].id()]);
}

#[test]
fn replicas_that_stopped_together_are_held_even_when_their_leases_run_out_apart() {
    // Heartbeat phases spread the expiries over one heartbeat interval: the first expiry already counts
    // the others (lapsing), so none is evicted one sweep at a time before the ratio is crossed.
    let t0 = Instant::now();
    let r = Registry::new(policy());
    for i in 0..10u16 {
        r.register(reg("orders", 9001 + i), at(t0, u64::from(i) * 500));
    }
    let svc = r.service("orders").unwrap();
    assert_eq!(r.sweep(at(t0, 15_000)), 0);
    assert!(svc.preserving_until().is_some());
    assert_eq!(r.sweep(at(t0, 19_500)), 0);
    assert_eq!(svc.replicas().len(), 10);
    assert_eq!(r.sweep(at(t0, 45_000)), 10);
}

#[test]
fn a_minority_going_silent_is_evicted_as_usual() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let fleet = register_many(&r, "orders", 10, t0);
    for x in &fleet[2..] {
        r.heartbeat("orders", &x.id().to_string(), at(t0, 10_000))
            .unwrap();
    }
    // 2 of 10 ran out; the eight others renewed 5 s ago (not lapsing): evicted at the TTL.
    assert_eq!(r.sweep(at(t0, 15_000)), 2);
    let svc = r.service("orders").unwrap();
    assert!(svc.preserving_until().is_none());
    assert_eq!(svc.replicas().len(), 8);
}

#[test]
fn static_replicas_are_not_counted_and_small_services_are_never_held() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let name = ServiceName::parse("product").unwrap();
    for port in 9101..9106 {
        let a = ReplicaAddress::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        r.add_static(name.clone(), a, t0);
    }
    // One registered replica among five static ones: 1 of 1, but too small a service to hold.
    r.register(reg("product", 9001), t0);
    assert_eq!(r.sweep(at(t0, 15_000)), 1);
    // Three registered: held.
    register_many(&r, "product", 3, at(t0, 20_000));
    assert_eq!(r.sweep(at(t0, 35_000)), 0);
    assert!(r.service("product").unwrap().preserving_until().is_some());
}

#[test]
fn no_hold_while_expiry_is_suspended_and_none_when_turned_off() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    register_many(&r, "orders", 10, t0);
    // The shared store is down: nothing expires, and no hold starts.
    assert_eq!(r.sweep_leases(at(t0, 15_000), LeaseExpiry::Suspended), 0);
    assert!(r.service("orders").unwrap().preserving_until().is_none());

    let mut off = policy();
    off.preservation.max_hold = Duration::ZERO;
    let r = Registry::new(off);
    register_many(&r, "orders", 10, t0);
    assert_eq!(r.sweep(at(t0, 15_000)), 10);
}

#[test]
fn a_resync_leaves_expired_leases_to_the_sweep() {
    // Redis expired the keys of a silent fleet: the resync does not remove them behind the sweep's back.
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let fleet = register_many(&r, "orders", 3, t0);
    r.heartbeat("orders", &fleet[0].id().to_string(), at(t0, 10_000))
        .unwrap();
    let keep = std::collections::HashSet::new();
    // fleet[0] is alive here yet gone from the store: removed; the two expired ones stay for the sweep.
    assert_eq!(r.retain_known(&keep, |_| true, at(t0, 16_000)), 1);
    assert!(fleet[0].is_removed());
    assert_eq!(r.service("orders").unwrap().replicas().len(), 2);
}

#[test]
fn after_a_hold_replicas_still_silent_expire_as_usual_during_the_cool_down() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let fleet = register_many(&r, "orders", 6, t0);
    assert_eq!(r.sweep(at(t0, 15_000)), 0); // held until t=45 s
                                            // Three heartbeat once at t=32 s, then go silent again: at the deadline their leases have 2 s left.
    for x in &fleet[3..] {
        r.heartbeat("orders", &x.id().to_string(), at(t0, 32_000))
            .unwrap();
    }
    assert_eq!(r.sweep(at(t0, 45_000)), 3);
    // All three run out at t=47 s, inside the cool-down (until t=60 s): evicted at once, no second hold.
    assert_eq!(r.sweep(at(t0, 46_999)), 0);
    assert_eq!(r.sweep(at(t0, 47_000)), 3);
    assert!(r.service("orders").unwrap().replicas().is_empty());
}

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

fn ports(svc: &Service) -> Vec<u16> {
    svc.replicas().iter().map(|r| r.address().port()).collect()
}

#[test]
fn replicas_keep_their_order_through_removals_and_compaction() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let ids: Vec<String> = (0..300u16)
        .map(|p| {
            r.register(reg("orders", 1000 + p), t0)
                .replica
                .id()
                .to_string()
        })
        .collect();
    let svc = r.service("orders").unwrap();
    // Remove every replica but each third one: 200 holes, then compacted; the order stays.
    for (i, id) in ids.iter().enumerate() {
        if i % 3 != 0 {
            r.deregister("orders", id, t0).unwrap();
        }
    }
    let left: Vec<u16> = (0..300u16)
        .filter(|p| p % 3 == 0)
        .map(|p| 1000 + p)
        .collect();
    assert_eq!(ports(&svc), left);
    assert_eq!(svc.len(), 100);
    // Found by id and address after compaction; a new one comes last; re-registration keeps its place.
    assert!(r.heartbeat("orders", &ids[3], at(t0, 1)).is_ok());
    assert!(r.heartbeat("orders", &ids[4], at(t0, 1)).is_err());
    r.register(reg("orders", 999), t0);
    assert!(!r.register(reg("orders", 1000), t0).created);
    assert_eq!(ports(&svc).first(), Some(&1000));
    assert_eq!(ports(&svc).last(), Some(&999));
    // Round-robin walks them in that order.
    let picked: Vec<u16> = (0..3)
        .map(|_| r.pick(&svc, &[], t0, any).unwrap().replica.address().port())
        .collect();
    assert_eq!(picked, [1000, 1003, 1006]);
}

#[test]
fn a_sweep_expires_exactly_the_leases_that_ran_out_and_looks_again_at_renewed_ones() {
    // TTL 15 s. a registers at 0, b at 5 s; a heartbeats at 10 s (deadline 25 s).
    let t0 = Instant::now();
    let mut p = policy();
    p.preservation = PreservationPolicy::new(
        1.0,
        Duration::from_secs(30),
        Duration::from_secs(15),
        Duration::from_secs(5),
    );
    let r = Registry::new(p);
    let a = r.register(reg("orders", 9001), t0).replica;
    r.register(reg("orders", 9002), at(t0, 5_000));
    r.heartbeat("orders", &a.id().to_string(), at(t0, 10_000))
        .unwrap();
    let svc = r.service("orders").unwrap();
    assert_eq!(r.sweep(at(t0, 14_999)), 0);
    // 15 s: a's first deadline is due but renewed: kept, looked at again at 25 s.
    assert_eq!(r.sweep(at(t0, 15_000)), 0);
    assert_eq!(ports(&svc), [9001, 9002]);
    // 20 s: b ran out.
    assert_eq!(r.sweep(at(t0, 19_999)), 0);
    assert_eq!(r.sweep(at(t0, 20_000)), 1);
    assert_eq!(ports(&svc), [9001]);
    assert_eq!(r.sweep(at(t0, 24_999)), 0);
    assert_eq!(r.sweep(at(t0, 25_000)), 1);
    assert!(svc.is_empty());
    assert!(r.leases_lock().is_empty());
}
