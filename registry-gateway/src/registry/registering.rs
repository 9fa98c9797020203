//! Replicas joining and staying: static replicas from the config, registrations (new, renewed, back on
//! probation after an eviction) and heartbeats.

use std::sync::Arc;
use std::time::Instant;

use super::command::{AddStatic, Command, Events, Heartbeat, Register};
use super::*;

impl Command for AddStatic {
    type Reply = Arc<Replica>;

    fn run(self, registry: &Registry, now: Instant, _: &mut Events) -> Arc<Replica> {
        let AddStatic { service, address } = self;
        let svc = registry.service_entry(&service);
        let registered_at = registry.wall.unix_ms(now);
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
            registry.joined(&svc, &r);
        }
        r
    }
}

impl Command for Register {
    type Reply = Registered;

    fn run(self, registry: &Registry, now: Instant, events: &mut Events) -> Registered {
        let Register(reg) = self;
        let svc = registry.service_entry(&reg.service);
        registry.metrics.registrations.inc();
        let registered_at = registry.wall.unix_ms(now);
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
            let tomb = registry.tombstones_lock().remove(&key);
            let tomb = tomb.filter(|t| {
                now.saturating_duration_since(t.evicted_at)
                    < registry.policy.load().probation_memory
            });
            let (breaker, history, state_reason) = match tomb {
                Some(t) => (
                    Breaker::on_probation(
                        t.history.consecutive_failures,
                        now,
                        &registry.policy.load().breaker,
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
                Lease::new(registry.policy.load().lease_ttl, now),
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
        registry.index_grpc(&reg.service, &reg.grpc_services);
        let replica = Arc::clone(&result.replica);
        if result.created {
            svc.evicted_list().forget(&reg.address);
            registry.joined(&svc, &result.replica);
            let joined = if result.on_probation {
                Joined::OnProbation
            } else {
                Joined::Registered
            };
            events.push(RegistryEvent::Added(replica, joined));
        } else {
            events.push(RegistryEvent::Renewed(replica));
        }
        result
    }
}

impl Registry {
    /// The service and the replica of `id` (as a client sent it) in `service`.
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
}

impl Command for Heartbeat<'_> {
    type Reply = Result<Arc<Replica>, RegistryError>;

    fn run(self, registry: &Registry, now: Instant, events: &mut Events) -> Self::Reply {
        let (_, replica) = registry.find(self.service, self.id)?;
        replica.lock().lease.renew(now);
        registry.metrics.heartbeats.inc();
        if registry.sharing() {
            events.push(RegistryEvent::Renewed(Arc::clone(&replica)));
        }
        Ok(replica)
    }
}
