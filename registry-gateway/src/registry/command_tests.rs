//! Commands as specs: this command, at this `now`, yields exactly these events (no IO: `apply` publishes
//! nothing, so nothing but the returned value is read).

use super::tests::{any, at, policy, reg};
use super::*;
use crate::policy::{BreakerState, EvictionReason, FailureCause};

/// An event as these tests read it: what happened to the replica on which port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seen {
    Added(u16, Joined),
    Renewed(u16),
    Removed(u16, Option<EvictionReason>, Source),
    State(u16, BreakerState, BreakerState, StateReason),
    Attempt {
        port: u16,
        failed: bool,
        streak: bool,
    },
    ProbeSucceeded(u16),
    ProbeDone(u16),
}

pub(super) fn seen(events: &Events) -> Vec<Seen> {
    events
        .iter()
        .map(|e| {
            let port = e.replica().address().port();
            match e {
                RegistryEvent::Added(_, joined) => Seen::Added(port, *joined),
                RegistryEvent::Renewed(_) => Seen::Renewed(port),
                RegistryEvent::Removed(_, reason, source) => Seen::Removed(port, *reason, *source),
                RegistryEvent::StateChanged(_, t) => Seen::State(port, t.from, t.to, t.reason),
                RegistryEvent::Attempt { failed, streak, .. } => Seen::Attempt {
                    port,
                    failed: *failed,
                    streak: *streak,
                },
                RegistryEvent::ProbeSucceeded(_) => Seen::ProbeSucceeded(port),
                RegistryEvent::ProbeDone(_) => Seen::ProbeDone(port),
            }
        })
        .collect()
}

/// The events `command` yields at `now`, and its reply.
pub(super) fn run<C: Command>(r: &Registry, command: C, now: Instant) -> (C::Reply, Vec<Seen>) {
    let Applied { reply, events } = r.apply(command, now);
    (reply, seen(&events))
}

pub(super) const CONNECT: FailureCause = FailureCause::Connect;
pub(super) const LOCAL: Source = Source::Local;

/// `n` attempts on `orders`' one replica, all admitted at `t0` (in flight together).
pub(super) fn picks(r: &Registry, t0: Instant, n: usize) -> Vec<Pick> {
    let svc = r.service("orders").unwrap();
    (0..n)
        .map(|_| {
            r.apply(
                Select {
                    service: &svc,
                    tried: &[],
                    accept: any,
                },
                t0,
            )
            .reply
            .unwrap()
        })
        .collect()
}

/// Registers `orders` on `port` at `t0`: the replica's id.
fn registered(r: &Registry, port: u16, t0: Instant) -> String {
    let replica = r.execute(Register(reg("orders", port)), t0).replica;
    replica.id().to_string()
}

#[test]
fn a_registration_joins_and_the_same_one_again_renews() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let (first, events) = run(&r, Register(reg("orders", 9001)), t0);
    assert!(first.created);
    assert_eq!(events, [Seen::Added(9001, Joined::Registered)]);
    let (again, events) = run(&r, Register(reg("orders", 9001)), at(t0, 1_000));
    assert!(!again.created);
    assert_eq!(events, [Seen::Renewed(9001)]);
}

#[test]
fn a_heartbeat_yields_a_renewal_only_while_a_store_takes_it() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let id = registered(&r, 9001, t0);
    let beat = Heartbeat {
        service: "orders",
        id: &id,
    };
    let (reply, events) = run(&r, beat, at(t0, 5_000));
    assert_eq!(reply.unwrap().id().to_string(), id);
    assert_eq!(events, []);
    let _outbox = r.share_changes(16).unwrap();
    let (_, events) = run(&r, beat, at(t0, 10_000));
    assert_eq!(events, [Seen::Renewed(9001)]);
    // unknown: refused, nothing happened
    let unknown = Heartbeat {
        service: "orders",
        id: "not-a-uuid",
    };
    let (reply, events) = run(&r, unknown, at(t0, 10_000));
    assert!(reply.is_err());
    assert_eq!(events, []);
}

#[test]
fn deregistration_removes_and_a_static_replica_refuses_it() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let deregister = |id| Deregister {
        service: "orders",
        id,
    };
    let id = registered(&r, 9001, t0);
    let (reply, events) = run(&r, deregister(&id), t0);
    assert_eq!(reply.unwrap().id().to_string(), id);
    let deregistered = Some(EvictionReason::Deregistered);
    assert_eq!(events, [Seen::Removed(9001, deregistered, LOCAL)]);

    let address = ReplicaAddress::parse("http://127.0.0.1:9002").unwrap();
    let service = ServiceName::parse("orders").unwrap();
    let (fixed, events) = run(
        &r,
        AddStatic {
            service,
            address: address.clone(),
        },
        t0,
    );
    assert_eq!(events, [], "a static replica joins quietly");
    let id = fixed.id().to_string();
    let (reply, events) = run(&r, deregister(&id), t0);
    assert_eq!(reply.unwrap_err(), RegistryError::StaticReplica(id));
    assert_eq!(events, []);
    let (removed, events) = run(
        &r,
        RemoveStatic {
            service: "orders",
            address: &address,
        },
        t0,
    );
    assert!(removed);
    assert_eq!(events, [Seen::Removed(9002, deregistered, LOCAL)]);
}

#[test]
fn a_sweep_after_the_lease_expires_it() {
    // lease: 15 s
    let t0 = Instant::now();
    let r = Registry::new(policy());
    r.execute(Register(reg("orders", 9001)), t0);
    let enforced = SweepLeases(LeaseExpiry::Enforced);
    assert_eq!(run(&r, enforced, at(t0, 14_999)), (0, vec![]));
    let suspended = SweepLeases(LeaseExpiry::Suspended);
    assert_eq!(run(&r, suspended, at(t0, 20_000)), (0, vec![]));
    let expired = Some(EvictionReason::LeaseExpired(Duration::from_secs(20)));
    assert_eq!(
        run(&r, enforced, at(t0, 20_000)),
        (1, vec![Seen::Removed(9001, expired, LOCAL)])
    );
}

/// A replica on `port` as a peer wrote it to the store.
fn peer_record(port: u16) -> ReplicaRecord {
    ReplicaRecord {
        id: Uuid::new_v4(),
        service: ServiceName::parse("orders").unwrap(),
        address: ReplicaAddress::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
        protocol: Protocol::Http,
        grpc_services: Vec::new(),
        metadata: Metadata::new(),
    }
}

#[test]
fn a_peers_changes_are_marked_as_theirs_and_never_queued_for_the_store() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let outbox = r.share_changes(16).unwrap();
    let record = peer_record(9001);
    let (address, id) = (record.address.clone(), record.id);
    let lease_left = Duration::from_secs(10);
    let registered = || PeerRegistered {
        record: record.clone(),
        lease_left,
    };
    let ((), events) = run(&r, registered(), t0);
    assert_eq!(events, [Seen::Added(9001, Joined::ByPeer)]);
    // the same record again: renewed quietly
    let ((), events) = run(&r, registered(), t0);
    assert_eq!(events, []);
    let open_for = Duration::from_secs(5);
    let (opened, events) = run(
        &r,
        PeerOpened {
            address: &address,
            open_for,
        },
        t0,
    );
    assert!(opened);
    let open = (BreakerState::Closed, BreakerState::Open);
    assert_eq!(
        events,
        [Seen::State(9001, open.0, open.1, StateReason::Peer)]
    );
    let why = RemovedFor::Failures;
    let ((), events) = run(
        &r,
        PeerRemoved {
            service: "orders",
            id,
            why,
        },
        t0,
    );
    let failures = Some(EvictionReason::Failures(0));
    assert_eq!(events, [Seen::Removed(9001, failures, Source::Peer)]);

    // executed (published): none of it reaches the store's queue
    let again = PeerRegistered {
        record: peer_record(9002),
        lease_left,
    };
    r.execute(again, t0);
    let address = ReplicaAddress::parse("http://127.0.0.1:9002").unwrap();
    assert!(r.execute(
        PeerOpened {
            address: &address,
            open_for
        },
        t0
    ));
    assert!(outbox.is_empty());
}

#[test]
fn a_peers_registration_of_a_local_address_replaces_the_local_replica() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    registered(&r, 9003, t0);
    let peer = PeerRegistered {
        record: peer_record(9003),
        lease_left: Duration::from_secs(15),
    };
    let ((), events) = run(&r, peer, t0);
    // the shared id wins: the local replica leaves (no reason: replaced), the peer's joins
    assert_eq!(
        events,
        [
            Seen::Removed(9003, None, Source::Peer),
            Seen::Added(9003, Joined::ByPeer)
        ]
    );
}

#[test]
fn a_replica_removed_here_is_not_taken_back_from_the_store_for_a_lease() {
    // lease: 15 s. The store may still show a removal this gateway has not written yet (queued, or in
    // flight while a resync reads): what it shows must not bring the replica back here.
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let _outbox = r.share_changes(16).unwrap();
    let gone = r.execute(Register(reg("orders", 9001)), t0).replica;
    let lapsed = r.execute(Register(reg("orders", 9002)), t0).replica;
    let id = gone.id().to_string();
    let deregister = Deregister {
        service: "orders",
        id: &id,
    };
    r.execute(deregister, at(t0, 1_000)).unwrap();
    let shown = |rec: ReplicaRecord| PeerRegistered {
        record: rec,
        lease_left: Duration::from_secs(14),
    };
    assert_eq!(run(&r, shown(gone.record()), at(t0, 1_000)), ((), vec![]));
    assert!(r.service("orders").unwrap().by_id(&gone.id()).is_none());
    // a lapsed lease is not this gateway's removal to write: a peer holding it is taken back
    r.execute(SweepLeases(LeaseExpiry::Enforced), at(t0, 15_000));
    let added = vec![Seen::Added(9002, Joined::ByPeer)];
    assert_eq!(run(&r, shown(lapsed.record()), at(t0, 15_000)), ((), added));
    // still within a lease of the deregistration
    r.execute(SweepLeases(LeaseExpiry::Enforced), at(t0, 15_999));
    assert_eq!(run(&r, shown(gone.record()), at(t0, 15_999)), ((), vec![]));
    // a lease after it, the id is forgotten
    r.execute(SweepLeases(LeaseExpiry::Enforced), at(t0, 16_000));
    let added = vec![Seen::Added(9001, Joined::ByPeer)];
    assert_eq!(run(&r, shown(gone.record()), at(t0, 16_000)), ((), added));
}

#[test]
fn failures_counted_across_gateways_open_the_breaker_here_and_that_is_shared() {
    // breaker: 3 consecutive failures
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let outbox = r.share_changes(16).unwrap();
    registered(&r, 9001, t0);
    outbox.take(usize::MAX);
    let address = ReplicaAddress::parse("http://127.0.0.1:9001").unwrap();
    let shared = |total| SharedFailures {
        address: &address,
        total,
    };
    assert_eq!(run(&r, shared(2), t0), (false, vec![]));
    let open = (BreakerState::Closed, BreakerState::Open);
    let reason = StateReason::AcrossGateways(3);
    assert_eq!(
        run(&r, shared(3), t0),
        (true, vec![Seen::State(9001, open.0, open.1, reason)])
    );
    // executed: an opening decided here reaches the store's queue (already open: nothing new)
    assert!(!r.execute(shared(4), t0));
    assert!(outbox.is_empty());
    let address = ReplicaAddress::parse("http://127.0.0.1:9002").unwrap();
    registered(&r, 9002, t0);
    outbox.take(usize::MAX);
    let opened = SharedFailures {
        address: &address,
        total: 3,
    };
    assert!(r.execute(opened, t0));
    assert_eq!(outbox.len(), 1);
}

#[test]
fn apply_publishes_nothing_and_execute_publishes_exactly_its_events() {
    let t0 = Instant::now();
    let r = Registry::new(policy());
    let outbox = r.share_changes(16).unwrap();
    let mut watch = r.subscribe();
    let applied = r.apply(Register(reg("orders", 9001)), t0);
    assert_eq!(
        seen(&applied.events),
        [Seen::Added(9001, Joined::Registered)]
    );
    assert!(watch.try_recv().is_err());
    assert!(outbox.is_empty());
    r.execute(Register(reg("orders", 9002)), t0);
    let got = watch.try_recv().unwrap();
    assert!(
        matches!(got, RegistryEvent::Added(ref x, Joined::Registered) if x.address().port() == 9002)
    );
    assert_eq!(outbox.len(), 1);
}
