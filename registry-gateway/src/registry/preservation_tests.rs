//! Self-preservation: a fleet that goes silent at once is held instead of expired, driven by an explicit clock.

use super::tests::{any, at, policy, reg, FAIL};
use super::*;

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
