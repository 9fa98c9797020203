//! Replicas joining and staying: static replicas from the config, registrations (new, renewed, back on
//! probation after an eviction) and heartbeats.

use std::sync::Arc;
use std::time::Instant;

use super::*;

impl Registry {
    /// Adds a static replica from the config file.
    pub fn add_static(
        &self,
        service: ServiceName,
        address: ReplicaAddress,
        now: Instant,
    ) -> Arc<Replica> {
        let svc = self.service_entry(&service);
        let registered_at = self.wall.unix_ms(now);
        let (r, created) = svc.update(|list| {
            if let Some(r) = list.by_address(&address) {
                return (Arc::clone(r), false);
            }
            let state = ReplicaState::new(
                Breaker::default(),
                Lease::permanent(now),
                StateReason::Configured,
                now,
            );
            let r = Arc::new(Replica::new(
                svc.name().clone(),
                address,
                Protocol::Http,
                Origin::Static,
                (state, registered_at),
                History::default(),
            ));
            list.push(Arc::clone(&r));
            (r, true)
        });
        if created {
            self.joined(&svc, &r);
        }
        r
    }

    /// Registers a replica, or renews it when the same service+address is already there (same id).
    pub fn register(&self, reg: Registration, now: Instant) -> Registered {
        let svc = self.service_entry(&reg.service);
        self.metrics.registrations.inc();
        let registered_at = self.wall.unix_ms(now);
        let result = svc.update(|list| {
            if let Some(r) = list.by_address(&reg.address) {
                let mut st = r.lock();
                st.lease.renew(now);
                st.set_labels(&reg.metadata, &reg.grpc_services);
                drop(st);
                return Registered {
                    replica: Arc::clone(r),
                    created: false,
                    on_probation: false,
                };
            }
            let key = (reg.service.clone(), reg.address.clone());
            let tomb = self.tombstones_lock().remove(&key);
            let tomb = tomb.filter(|t| {
                now.saturating_duration_since(t.evicted_at) < self.policy.load().probation_memory
            });
            let (breaker, history, state_reason) = match tomb {
                Some(t) => (
                    Breaker::on_probation(
                        t.history.consecutive_failures,
                        now,
                        &self.policy.load().breaker,
                    ),
                    t.history,
                    StateReason::Probation,
                ),
                None => (
                    Breaker::default(),
                    History::default(),
                    StateReason::Registered,
                ),
            };
            let mut state = ReplicaState::new(
                breaker,
                Lease::new(self.policy.load().lease_ttl, now),
                state_reason,
                now,
            );
            state.set_labels(&reg.metadata, &reg.grpc_services);
            // The service's own name: one copy of it however many replicas it has.
            let r = Arc::new(Replica::new(
                svc.name().clone(),
                reg.address.clone(),
                reg.protocol,
                Origin::Registered,
                (state, registered_at),
                history,
            ));
            list.push(Arc::clone(&r));
            Registered {
                replica: r,
                created: true,
                on_probation: tomb.is_some(),
            }
        });
        self.index_grpc(&reg.service, &reg.grpc_services);
        let replica = Arc::clone(&result.replica);
        if result.created {
            svc.evicted_list().forget(&reg.address);
            self.joined(&svc, &result.replica);
            let joined = if result.on_probation {
                Joined::OnProbation
            } else {
                Joined::Registered
            };
            self.publish(RegistryEvent::Added(replica, joined));
        } else {
            self.publish(RegistryEvent::Renewed(replica));
        }
        result
    }

    pub(super) fn find(
        &self,
        service: &str,
        id: &str,
    ) -> Result<(Arc<Service>, Arc<Replica>), RegistryError> {
        let unknown = || RegistryError::UnknownReplica {
            service: service.to_owned(),
            id: id.to_owned(),
        };
        let svc = self.service(service).ok_or_else(unknown)?;
        let id = Uuid::parse_str(id).map_err(|_| unknown())?;
        let replica = svc.by_id(&id).ok_or_else(unknown)?;
        Ok((svc, replica))
    }

    /// Renews a replica's lease.
    pub fn heartbeat(
        &self,
        service: &str,
        id: &str,
        now: Instant,
    ) -> Result<Arc<Replica>, RegistryError> {
        let (_, replica) = self.find(service, id)?;
        replica.lock().lease.renew(now);
        self.metrics.heartbeats.inc();
        if self.sharing() {
            self.publish(RegistryEvent::Renewed(Arc::clone(&replica)));
        }
        Ok(replica)
    }
}
