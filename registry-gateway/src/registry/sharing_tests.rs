//! What the registry publishes (watchers, the store's queue) and what it accepts from peer gateways.

use super::tests::{any, at, policy, reg, FAIL};
use super::*;
use crate::policy::Outcome;

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
