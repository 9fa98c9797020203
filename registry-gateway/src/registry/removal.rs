//! Removing replicas: at their own request, from the config, and by the registry's own rules (failures,
//! lapsed leases) or a peer's; every removal leaves the same traces (metrics forgotten, the evicted list,
//! a tombstone for probation, one event).

use std::sync::Arc;
use std::time::Instant;

use super::{
    Evicted, Origin, Registry, RegistryError, RegistryEvent, Replica, ReplicaAddress, Service,
    Source, Tombstone,
};
use crate::observe::{EvictionLabels, Shared};
use crate::policy::EvictionReason;

impl Registry {
    /// Removes a static replica the config no longer lists (config reload); false when there is none.
    pub fn remove_static(&self, service: &str, address: &ReplicaAddress, now: Instant) -> bool {
        let Some(svc) = self.service(service) else {
            return false;
        };
        let found = svc
            .replicas()
            .iter()
            .find(|r| r.origin() == Origin::Static && r.address() == address)
            .cloned();
        found.is_some_and(|r| {
            self.remove(&svc, &r, EvictionReason::Deregistered, now, Source::Local)
        })
    }

    /// Removes a registered replica at its own request.
    pub fn deregister(
        &self,
        service: &str,
        id: &str,
        now: Instant,
    ) -> Result<Arc<Replica>, RegistryError> {
        let (svc, replica) = self.find(service, id)?;
        if replica.origin() == Origin::Static {
            return Err(RegistryError::StaticReplica(id.to_owned()));
        }
        self.remove(
            &svc,
            &replica,
            EvictionReason::Deregistered,
            now,
            Source::Local,
        );
        Ok(replica)
    }

    /// Removes `replica` for `reason`, decided by `source` (peers hear of it only when it is local).
    pub(super) fn remove(
        &self,
        svc: &Service,
        replica: &Arc<Replica>,
        reason: EvictionReason,
        now: Instant,
        source: Source,
    ) -> bool {
        let removed = svc.update(|list| list.remove(replica));
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
        self.publish(RegistryEvent::Removed(
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
