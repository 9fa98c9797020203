//! `gateway_replica_state`, written at scrape time from the replicas' own breakers: the registry keeps
//! no metric series per replica, so joining costs no label hashing and a million replicas no memory.

use std::sync::{Arc, Weak};

use dashmap::DashMap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

use super::transitions::state_label;
use super::{Service, ServiceName};
use crate::clock;
use crate::observe::{Shared, StateLabels, STATES};

/// The registry's services, as the scrape sees them.
pub(crate) type Services = DashMap<ServiceName, Arc<Service>>;

/// Writes `gateway_replica_state{service,replica,state}`: 1 for each replica's breaker state now (the
/// state `GET /registry` shows), 0 for the other two. Services are written in name order, replicas in
/// the order they joined, so two scrapes of an unchanged registry are identical.
pub(crate) struct StateSeries {
    /// Weak: the metrics belong to the registry; a scrape after the registry is gone writes nothing.
    services: Weak<Services>,
}

impl StateSeries {
    /// Series for the services in `services`.
    pub(crate) fn new(services: &Arc<Services>) -> Self {
        StateSeries {
            services: Arc::downgrade(services),
        }
    }
}

impl std::fmt::Debug for StateSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateSeries").finish_non_exhaustive()
    }
}

impl Collector for StateSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "gateway_replica_state",
            "1 for the replica's current breaker state, 0 for the others",
            None,
            ConstGauge::new(0i64).metric_type(),
        )?;
        let Some(services) = self.services.upgrade() else {
            return Ok(());
        };
        let mut all: Vec<Arc<Service>> = services.iter().map(|e| Arc::clone(e.value())).collect();
        drop(services);
        all.sort_by(|a, b| a.name().cmp(b.name()));
        let now = clock::now();
        for svc in all {
            let service = Shared(svc.name().shared());
            for r in svc.replicas().iter() {
                let current = state_label(r.lock().breaker.state(now));
                let replica = Shared(r.address().shared());
                for state in STATES {
                    let labels = StateLabels {
                        service: service.clone(),
                        replica: replica.clone(),
                        state,
                    };
                    ConstGauge::new(i64::from(state == current))
                        .encode(family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}
