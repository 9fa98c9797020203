//! Applying other gateways' changes (from a shared store) to this registry, without echoing them back
//! (their events are [`Source::Peer`], or transitions for peer reasons, which the outbox does not share).

use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::replica::ReplicaState;
use super::{
    Joined, Registry, RegistryEvent, RemovedFor, Replica, ReplicaAddress, ReplicaRecord,
    ServiceName, Source, StateReason,
};
use crate::policy::{Breaker, BreakerState, EvictionReason, Lease};

impl Registry {
    /// A peer registered (or still holds) `rec`, whose lease has `lease_left` to run. Renews it when
    /// present with the same id; replaces a local replica of the same address that has another id (the
    /// shared id wins, and the replica's SDK adopts it at its next heartbeat).
    pub fn apply_registered(&self, rec: ReplicaRecord, lease_left: Duration, now: Instant) {
        // A peer cannot grant a longer lease than this gateway would (and a huge value from the wire
        // must not overflow the clock).
        let lease_left = lease_left.min(self.policy.load().lease_ttl);
        let svc = self.service_entry(&rec.service);
        let renewed_at = (now + lease_left)
            .checked_sub(self.policy.load().lease_ttl)
            .unwrap_or(now);
        let registered_at = self.wall.unix_ms(now);
        let (added, replaced) = svc.update(|list| {
            if let Some(r) = list.by_address(&rec.address) {
                if r.id() == rec.id {
                    let mut st = r.lock();
                    st.lease.renew(renewed_at);
                    st.set_labels(&rec.metadata, &rec.grpc_services);
                    return (None, None);
                }
            }
            let old = list.by_address(&rec.address).cloned();
            if let Some(old) = &old {
                list.remove(old);
            }
            let mut state = ReplicaState::new(
                Breaker::default(),
                Lease::new(self.policy.load().lease_ttl, renewed_at),
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
                self.metrics.forget_replica(&old.metric_labels());
            }
            self.publish(RegistryEvent::Removed(old, None, Source::Peer));
        }
        if let Some(r) = added {
            svc.evicted_list().forget(&rec.address);
            self.joined(&svc, &r);
            self.index_grpc(&rec.service, &rec.grpc_services);
            self.publish(RegistryEvent::Added(r, Joined::ByPeer));
        }
    }

    /// A peer renewed the lease of replica `id`.
    pub fn apply_renewed(&self, service: &str, id: Uuid, now: Instant) -> bool {
        let Some(svc) = self.service(service) else {
            return false;
        };
        let found = svc.by_id(&id);
        match found {
            Some(r) => {
                r.lock().lease.renew(now);
                true
            }
            None => false,
        }
    }

    /// A peer removed replica `id` (for failures: it comes back on probation here too).
    pub fn apply_removed(&self, service: &str, id: Uuid, why: RemovedFor, now: Instant) {
        let Some(svc) = self.service(service) else {
            return;
        };
        let Some(r) = svc.by_id(&id) else {
            return;
        };
        let reason = match why {
            RemovedFor::Failures => {
                EvictionReason::Failures(r.lock().breaker.consecutive_failures())
            }
            RemovedFor::Deregistration => EvictionReason::Deregistered,
        };
        self.remove(&svc, &r, reason, now, Source::Peer);
    }

    fn each_with_address(&self, address: &ReplicaAddress, mut f: impl FnMut(&Arc<Replica>)) {
        for svc in self.services() {
            if let Some(r) = svc.update(|list| list.by_address(address).cloned()) {
                f(&r);
            }
        }
    }

    /// A peer opened the breaker of `address` for `open_for` from now. Returns whether any local breaker
    /// was admitting requests before.
    pub fn apply_opened(&self, address: &ReplicaAddress, open_for: Duration, now: Instant) -> bool {
        // A peer cannot keep a breaker open longer than this gateway's own open timeout would.
        let open_for = open_for.min(self.policy.load().breaker.open_timeout);
        let mut changed = false;
        self.each_with_address(address, |r| {
            let mut st = r.lock();
            let from = st.breaker.state(now);
            if st.breaker.force_open(now + open_for, now) {
                let to = (from, BreakerState::Open);
                self.note_transition(r, &mut st, to, StateReason::Peer, now);
                changed = true;
            }
        });
        changed
    }

    /// A peer's probe succeeded: close the breaker of `address` here too.
    pub fn apply_closed(&self, address: &ReplicaAddress, now: Instant) {
        self.each_with_address(address, |r| {
            let mut st = r.lock();
            let from = st.breaker.state(now);
            if st.breaker.force_close() {
                let to = (from, BreakerState::Closed);
                self.note_transition(r, &mut st, to, StateReason::PeerClosed, now);
            }
        });
    }

    /// The failures of `address` counted by every gateway reached `total`: opens its breaker here when that
    /// crosses the threshold (the opening reaches the peers through the outbox). Returns whether it opened.
    pub fn apply_shared_failures(
        &self,
        address: &ReplicaAddress,
        total: u64,
        now: Instant,
    ) -> bool {
        if total < u64::from(self.policy.load().breaker.failure_threshold) {
            return false;
        }
        let open_for = self.policy.load().breaker.open_timeout;
        let mut opened = false;
        self.each_with_address(address, |r| {
            let mut st = r.lock();
            if st.breaker.state(now) == crate::policy::BreakerState::Closed {
                st.breaker.force_open(now + open_for, now);
                let to = (BreakerState::Closed, BreakerState::Open);
                self.note_transition(r, &mut st, to, StateReason::AcrossGateways(total), now);
                opened = true;
            }
        });
        opened
    }

    /// Every gateway's failure-ratio window for `address` together: opens the breaker here when the
    /// fleet's counts trip the ratio (the opening reaches the peers through the outbox). Returns whether it opened.
    pub fn apply_shared_window(
        &self,
        address: &ReplicaAddress,
        requests: u32,
        failures: u32,
        now: Instant,
    ) -> bool {
        let cfg = self.policy.load().breaker;
        let mut opened = false;
        self.each_with_address(address, |r| {
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
                self.note_transition(r, &mut st, to, reason, now);
                opened = true;
            }
        });
        opened
    }

    /// Probes of `address` from every gateway together reached `breaker.half_open_probes` successes:
    /// closes the breaker here (the closing reaches the peers through the outbox). Returns whether it was not closed.
    pub fn apply_probe_successes(
        &self,
        address: &ReplicaAddress,
        total: u64,
        now: Instant,
    ) -> bool {
        if total < u64::from(self.policy.load().breaker.half_open_probes) {
            return false;
        }
        let mut closed = false;
        self.each_with_address(address, |r| {
            let mut st = r.lock();
            let from = st.breaker.state(now);
            if st.breaker.force_close() {
                let reason = StateReason::ProbesAcrossGateways(total);
                self.note_transition(r, &mut st, (from, BreakerState::Closed), reason, now);
                closed = true;
            }
        });
        closed
    }

    /// Another gateway holds the half-open probe of `address`: hold ours back.
    pub fn defer_probe(&self, address: &ReplicaAddress, now: Instant) {
        let cfg = self.policy.load().breaker;
        self.each_with_address(address, |r| {
            let mut st = r.lock();
            let from = st.breaker.state(now);
            st.breaker.defer_probe(now, &cfg);
            if from != BreakerState::HalfOpen {
                let to = (from, BreakerState::HalfOpen);
                self.note_transition(r, &mut st, to, StateReason::PeerProbing, now);
            }
        });
    }

    /// Registered replicas whose ids are not in `keep` and that `known` says a peer once had: they left the
    /// shared store while this gateway was not listening. Removed here, quietly. One whose lease has run
    /// out here too is left to the lease sweep, which decides whether self-preservation holds it (its key
    /// left Redis by expiring, not by a deregistration).
    pub fn retain_known(
        &self,
        keep: &std::collections::HashSet<Uuid>,
        known: impl Fn(Uuid) -> bool,
        now: Instant,
    ) -> usize {
        let mut removed = 0;
        for svc in self.services() {
            for r in svc.replicas().iter() {
                if r.origin() == super::Origin::Registered
                    && !keep.contains(&r.id())
                    && known(r.id())
                    && !r.lock().lease.is_expired(now)
                    && self.remove(&svc, r, EvictionReason::Deregistered, now, Source::Peer)
                {
                    removed += 1;
                }
            }
        }
        removed
    }

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
