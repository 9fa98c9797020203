//! Applying other gateways' changes (from a shared store) to this registry, without echoing them back
//! (their events are [`Source::Peer`], or transitions for peer reasons, which the outbox does not share).

use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::command::{
    Command, Events, PeerClosed, PeerOpened, PeerProbing, PeerRegistered, PeerRemoved, PeerRenewed,
    RetainKnown, SharedFailures, SharedProbeSuccesses, SharedWindow,
};
use super::replica::ReplicaState;
use super::{
    Joined, Registry, RegistryEvent, RemovedFor, Replica, ReplicaAddress, ReplicaRecord,
    ServiceName, Source, StateReason,
};
use crate::policy::{Breaker, BreakerState, EvictionReason, Lease};

/// Renews the replica when present with the same id; replaces a local replica of the same address that has
/// another id (the shared id wins, and the replica's SDK adopts it at its next heartbeat). An id this
/// gateway removed itself within a lease is not taken back (see `removal.rs`).
impl Command for PeerRegistered {
    type Reply = ();

    fn run(self, registry: &Registry, now: Instant, events: &mut Events) {
        let PeerRegistered {
            record: rec,
            lease_left,
        } = self;
        // A peer cannot grant a longer lease than this gateway would (and a huge value from the wire
        // must not overflow the clock).
        let lease_left = lease_left.min(registry.policy.load().lease_ttl);
        let svc = registry.service_entry(&rec.service);
        let renewed_at = (now + lease_left)
            .checked_sub(registry.policy.load().lease_ttl)
            .unwrap_or(now);
        let registered_at = registry.wall.unix_ms(now);
        let (added, replaced) = svc.update(|list| {
            if let Some(r) = list.by_address(&rec.address) {
                if r.id() == rec.id {
                    let mut st = r.lock();
                    st.lease.renew(renewed_at);
                    st.set_labels(&rec.metadata, &rec.grpc_services);
                    return (None, None);
                }
            }
            // Removed here, its removal maybe not written yet: what the store shows of it is older.
            if registry.removed_here_lock().contains_key(&rec.id) {
                return (None, None);
            }
            let old = list.by_address(&rec.address).cloned();
            if let Some(old) = &old {
                list.remove(old);
            }
            let mut state = ReplicaState::new(
                Breaker::default(),
                Lease::new(registry.policy.load().lease_ttl, renewed_at),
                StateReason::RegisteredByPeer,
                now,
            );
            state.set_labels(&rec.metadata, &rec.grpc_services);
            let r = Arc::new(Replica::with_id(
                rec.id,
                svc.name().clone(),
                rec.address.clone(),
                rec.protocol,
                state,
                registered_at,
            ));
            list.push(Arc::clone(&r));
            (Some(r), old)
        });
        if let Some(old) = replaced {
            old.mark_removed();
            {
                let _st = old.lock();
                registry.metrics.forget_replica(&old.metric_labels());
            }
            events.push(RegistryEvent::Removed(old, None, Source::Peer));
        }
        if let Some(r) = added {
            svc.evicted_list().forget(&rec.address);
            registry.joined(&svc, &r);
            registry.index_grpc(&rec.service, &rec.grpc_services);
            events.push(RegistryEvent::Added(r, Joined::ByPeer));
        }
    }
}

impl Command for PeerRenewed<'_> {
    type Reply = bool;

    fn run(self, registry: &Registry, now: Instant, _: &mut Events) -> bool {
        let Some(svc) = registry.service(self.service) else {
            return false;
        };
        let found = svc.by_id(&self.id);
        match found {
            Some(r) => {
                r.lock().lease.renew(now);
                true
            }
            None => false,
        }
    }
}

impl Command for PeerRemoved<'_> {
    type Reply = ();

    fn run(self, registry: &Registry, now: Instant, events: &mut Events) {
        let Some(svc) = registry.service(self.service) else {
            return;
        };
        let Some(r) = svc.by_id(&self.id) else {
            return;
        };
        let reason = match self.why {
            RemovedFor::Failures => {
                EvictionReason::Failures(r.lock().breaker.consecutive_failures())
            }
            RemovedFor::Deregistration => EvictionReason::Deregistered,
        };
        registry.remove(&svc, &r, reason, now, Source::Peer, events);
    }
}

impl Registry {
    fn each_with_address(&self, address: &ReplicaAddress, mut f: impl FnMut(&Arc<Replica>)) {
        for svc in self.services() {
            if let Some(r) = svc.update(|list| list.by_address(address).cloned()) {
                f(&r);
            }
        }
    }
}

impl Command for PeerOpened<'_> {
    type Reply = bool;

    fn run(self, registry: &Registry, now: Instant, events: &mut Events) -> bool {
        let PeerOpened { address, open_for } = self;
        // A peer cannot keep a breaker open longer than this gateway's own open timeout would.
        let open_for = open_for.min(registry.policy.load().breaker.open_timeout);
        let mut changed = false;
        registry.each_with_address(address, |r| {
            let mut st = r.lock();
            let from = st.breaker.state(now);
            if st.breaker.force_open(now + open_for, now) {
                let to = (from, BreakerState::Open);
                registry.note_transition(r, &mut st, to, StateReason::Peer, now, events);
                changed = true;
            }
        });
        changed
    }
}

impl Command for PeerClosed<'_> {
    type Reply = ();

    fn run(self, registry: &Registry, now: Instant, events: &mut Events) {
        let PeerClosed(address) = self;
        registry.each_with_address(address, |r| {
            let mut st = r.lock();
            let from = st.breaker.state(now);
            if st.breaker.force_close() {
                let to = (from, BreakerState::Closed);
                registry.note_transition(r, &mut st, to, StateReason::PeerClosed, now, events);
            }
        });
    }
}

/// Opens the breaker here when `total` crosses the threshold (the opening reaches the peers through the
/// outbox).
impl Command for SharedFailures<'_> {
    type Reply = bool;

    fn run(self, registry: &Registry, now: Instant, events: &mut Events) -> bool {
        let SharedFailures { address, total } = self;
        if total < u64::from(registry.policy.load().breaker.failure_threshold) {
            return false;
        }
        let open_for = registry.policy.load().breaker.open_timeout;
        let mut opened = false;
        registry.each_with_address(address, |r| {
            let mut st = r.lock();
            if st.breaker.state(now) == crate::policy::BreakerState::Closed {
                st.breaker.force_open(now + open_for, now);
                let to = (BreakerState::Closed, BreakerState::Open);
                registry.note_transition(
                    r,
                    &mut st,
                    to,
                    StateReason::AcrossGateways(total),
                    now,
                    events,
                );
                opened = true;
            }
        });
        opened
    }
}

/// Opens the breaker here when the fleet's counts trip the ratio (the opening reaches the peers through the
/// outbox).
impl Command for SharedWindow<'_> {
    type Reply = bool;

    fn run(self, registry: &Registry, now: Instant, events: &mut Events) -> bool {
        let SharedWindow {
            address,
            requests,
            failures,
        } = self;
        let cfg = registry.policy.load().breaker;
        let mut opened = false;
        registry.each_with_address(address, |r| {
            let mut st = r.lock();
            let t = st
                .breaker
                .apply_shared_window(requests, failures, now, &cfg);
            if t.is_some() {
                let reason = StateReason::Ratio {
                    failures,
                    requests,
                    shared: true,
                };
                let to = (BreakerState::Closed, BreakerState::Open);
                registry.note_transition(r, &mut st, to, reason, now, events);
                opened = true;
            }
        });
        opened
    }
}

/// Closes the breaker here once `total` reaches `breaker.half_open_probes` (the closing reaches the peers
/// through the outbox).
impl Command for SharedProbeSuccesses<'_> {
    type Reply = bool;

    fn run(self, registry: &Registry, now: Instant, events: &mut Events) -> bool {
        let SharedProbeSuccesses { address, total } = self;
        if total < u64::from(registry.policy.load().breaker.half_open_probes) {
            return false;
        }
        let mut closed = false;
        registry.each_with_address(address, |r| {
            let mut st = r.lock();
            let from = st.breaker.state(now);
            if st.breaker.force_close() {
                let reason = StateReason::ProbesAcrossGateways(total);
                registry.note_transition(
                    r,
                    &mut st,
                    (from, BreakerState::Closed),
                    reason,
                    now,
                    events,
                );
                closed = true;
            }
        });
        closed
    }
}

impl Command for PeerProbing<'_> {
    type Reply = ();

    fn run(self, registry: &Registry, now: Instant, events: &mut Events) {
        let PeerProbing(address) = self;
        let cfg = registry.policy.load().breaker;
        registry.each_with_address(address, |r| {
            let mut st = r.lock();
            let from = st.breaker.state(now);
            st.breaker.defer_probe(now, &cfg);
            if from != BreakerState::HalfOpen {
                let to = (from, BreakerState::HalfOpen);
                registry.note_transition(r, &mut st, to, StateReason::PeerProbing, now, events);
            }
        });
    }
}

/// One whose lease has run out here too is left to the lease sweep, which decides whether
/// self-preservation holds it (its key left Redis by expiring, not by a deregistration).
impl<F: Fn(Uuid) -> bool> Command for RetainKnown<'_, F> {
    type Reply = usize;

    fn run(self, registry: &Registry, now: Instant, events: &mut Events) -> usize {
        let RetainKnown { keep, known } = self;
        let mut removed = 0;
        for svc in registry.services() {
            for r in svc.replicas().iter() {
                if r.origin() == super::Origin::Registered
                    && !keep.contains(&r.id())
                    && known(r.id())
                    && !r.lock().lease.is_expired(now)
                    && registry.remove(
                        &svc,
                        r,
                        EvictionReason::Deregistered,
                        now,
                        Source::Peer,
                        events,
                    )
                {
                    removed += 1;
                }
            }
        }
        removed
    }
}

impl Registry {
    /// Every registered replica, as records with the lease time left (to write them to a shared store).
    pub fn registered_records(&self, now: Instant) -> Vec<(ReplicaRecord, Duration)> {
        let ttl = self.policy.load().lease_ttl;
        self.services()
            .iter()
            .flat_map(|svc| svc.replicas().to_vec())
            .filter(|r| r.origin() == super::Origin::Registered)
            .map(|r| {
                let left = ttl.saturating_sub(r.lock().lease.age(now));
                (r.record(), left)
            })
            .collect()
    }

    /// The service name of a replica id, if this gateway holds it.
    pub fn service_of(&self, id: Uuid) -> Option<ServiceName> {
        self.services()
            .into_iter()
            .find(|s| s.by_id(&id).is_some())
            .map(|s| s.name().clone())
    }
}
