//! Removing replicas: at their own request, from the config, and by the registry's own rules (failures,
//! lapsed leases) or a peer's; every removal leaves the same traces (metrics forgotten, the evicted list,
//! a tombstone for probation, one event). While the registry is shared, a replica this gateway removes
//! itself leaves its id for a lease: the store may still show it (the removal is queued, or in flight
//! while a resync reads), and what it shows must not bring it back here, to be written back again.

use std::sync::Arc;
use std::time::Instant;

use super::command::{Command, Deregister, Events, RemoveStatic};
use super::{
    Evicted, Origin, Registry, RegistryError, RegistryEvent, Replica, Service, Source, Tombstone,
};
use crate::observe::{EvictionLabels, Shared};
use crate::policy::EvictionReason;

impl Command for RemoveStatic<'_> {
    type Reply = bool;

    fn run(self, registry: &Registry, now: Instant, events: &mut Events) -> bool {
        let Some(svc) = registry.service(self.service) else {
            return false;
        };
        let found = svc
            .replicas()
            .iter()
            .find(|r| r.origin() == Origin::Static && r.address() == self.address)
            .cloned();
        found.is_some_and(|r| {
            let reason = EvictionReason::Deregistered;
            registry.remove(&svc, &r, reason, now, Source::Local, events)
        })
    }
}

impl Command for Deregister<'_> {
    type Reply = Result<Arc<Replica>, RegistryError>;

    fn run(self, registry: &Registry, now: Instant, events: &mut Events) -> Self::Reply {
        let (svc, replica) = registry.find(self.service, self.id)?;
        if replica.origin() == Origin::Static {
            return Err(RegistryError::StaticReplica(self.id.to_owned()));
        }
        let reason = EvictionReason::Deregistered;
        registry.remove(&svc, &replica, reason, now, Source::Local, events);
        Ok(replica)
    }
}

impl Registry {
    /// Removes `replica` for `reason`, decided by `source` (peers hear of it only when it is local), and
    /// pushes its event onto `events`.
    pub(super) fn remove(
        &self,
        svc: &Service,
        replica: &Arc<Replica>,
        reason: EvictionReason,
        now: Instant,
        source: Source,
        events: &mut Events,
    ) -> bool {
        // A removal the store writes (a replica registered here that left here) leaves its id behind, under
        // the list's lock: a peer's registration of it racing this removal either finds it still listed or
        // sees the id (`PeerRegistered`).
        let shared = self.outbox.get().is_some()
            && source == Source::Local
            && replica.origin() == Origin::Registered
            && matches!(
                reason,
                EvictionReason::Deregistered | EvictionReason::Failures(_)
            );
        let removed = svc.update(|list| {
            let removed = list.remove(replica);
            if removed && shared {
                self.removed_here_lock().insert(replica.id(), now);
            }
            removed
        });
        if !removed {
            return false;
        }
        replica.mark_removed();
        {
            // Under its lock: a transition racing this removal either is forgotten here or sees it removed.
            let _st = replica.lock();
            self.metrics.forget_replica(&replica.metric_labels());
        }
        self.count_replicas(svc);
        self.remember_eviction(svc, replica, reason, now, source);
        if let EvictionReason::Failures(_) = reason {
            let tomb = Tombstone {
                history: replica.history(),
                evicted_at: now,
            };
            self.tombstones_lock()
                .insert((svc.name().clone(), replica.address().clone()), tomb);
        }
        events.push(RegistryEvent::Removed(
            Arc::clone(replica),
            Some(reason),
            source,
        ));
        true
    }

    /// Lists `replica` among its service's evicted replicas (failures and lapsed leases, not
    /// deregistrations), and counts the evictions this gateway decided.
    fn remember_eviction(
        &self,
        svc: &Service,
        replica: &Replica,
        reason: EvictionReason,
        now: Instant,
        source: Source,
    ) {
        let label = match reason {
            EvictionReason::Deregistered => return,
            EvictionReason::Failures(_) => "failures",
            EvictionReason::LeaseExpired(_) | EvictionReason::LeaseExpiredAfterHold { .. } => {
                "lease_expired"
            }
        };
        if source == Source::Local {
            self.metrics
                .evictions
                .get_or_create(&EvictionLabels {
                    service: Shared(svc.name().shared()),
                    reason: label,
                })
                .inc();
        }
        let (last_failure, transitions) = {
            let mut st = replica.lock();
            (st.last_failure(), st.take_transitions())
        };
        svc.evicted_list().push(Evicted {
            id: replica.id(),
            address: replica.address().clone(),
            reason,
            by_peer: source == Source::Peer,
            evicted_at: now,
            evicted_at_unix_ms: self.wall.unix_ms(now),
            counters: replica.history(),
            last_failure,
            transitions,
        });
    }
}
