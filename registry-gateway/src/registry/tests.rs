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
    r.execute(Abandon(&probe), at(t0, 10_001));
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
    assert_eq!(svc.next_lease_check(), None);
}

#[test]
fn the_sweep_looks_at_a_service_only_at_its_earliest_watched_deadline() {
    // TTL 15 s. a joins at 0, b at 5 s: the service is due at 15 s; a heartbeat does not move that.
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let a = r.register(reg("orders", 9001), t0).replica;
    assert_eq!(
        r.service("orders").unwrap().next_lease_check(),
        Some(at(t0, 15_000))
    );
    r.register(reg("orders", 9002), at(t0, 5_000));
    r.heartbeat("orders", &a.id().to_string(), at(t0, 10_000))
        .unwrap();
    let svc = r.service("orders").unwrap();
    assert_eq!(svc.next_lease_check(), Some(at(t0, 15_000)));
    // Nothing due before: the sweep does not look.
    assert_eq!(r.sweep(at(t0, 14_999)), 0);
    assert_eq!(svc.next_lease_check(), Some(at(t0, 15_000)));
    // 15 s: looked at; the earliest deadline is now b's, 20 s.
    assert_eq!(r.sweep(at(t0, 15_000)), 0);
    assert_eq!(svc.next_lease_check(), Some(at(t0, 20_000)));
    // A replica joining with an earlier deadline (a shorter TTL after a reload) lowers it.
    let mut short = policy();
    short.lease_ttl = Duration::from_secs(2);
    r.set_policy(short);
    r.register(reg("orders", 9003), at(t0, 16_000));
    assert_eq!(svc.next_lease_check(), Some(at(t0, 18_000)));
    // 18 s: c ran out; then b at 20 s, a at 25 s.
    assert_eq!(r.sweep(at(t0, 18_000)), 1);
    assert_eq!(svc.next_lease_check(), Some(at(t0, 20_000)));
    // A static replica's lease is never watched.
    r.add_static(
        ServiceName::parse("fixed").unwrap(),
        ReplicaAddress::parse("http://127.0.0.1:9100").unwrap(),
        t0,
    );
    assert_eq!(r.service("fixed").unwrap().next_lease_check(), None);
}
