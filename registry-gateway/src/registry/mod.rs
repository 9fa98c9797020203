//! The registry model: services, their replicas, leases, and the rules that add and remove them.
//!
//! The registry owns the state; [`crate::policy`] makes the decisions. It is shared by the admin API
//! (registrations, heartbeats), the proxy (selection, outcomes), the background loops (lease sweep,
//! slow replicas) and the shared store (peers' changes), and never does IO.
//!
//! Every state change is a [`Command`] value: [`Registry::apply`] runs one at a `now` and returns an
//! [`Applied`] (the reply, and the [`RegistryEvent`]s it produced, inline); [`Registry::execute`] hands the
//! events to the three sinks in one place: the log lines (`event_log.rs`), the shared store's bounded
//! [`Outbox`] (peers' changes never enter it), and the watch feed. Reads (listings, lookups,
//! `retry_after`) are plain methods.

mod address;
mod attempt;
mod change;
mod command;
mod event_log;
mod events;
mod evicted;
mod latency;
mod listing;
mod name;
mod outbox;
mod protocol;
mod registering;
mod registration;
mod removal;
mod replica;
mod replica_set;
mod routing;
mod self_address;
mod service;
mod slow;
mod state_series;
mod sweep;
mod sync;
mod transitions;

pub use address::{InvalidAddress, ReplicaAddress};
pub use attempt::AttemptRecord;
pub use change::{
    AddressWrite, ChangeQueue, Pushed, RemovedFor, ReplicaRecord, ReplicaWrite, SharedState,
    Streak, Write,
};
pub use command::{
    Abandon, AddStatic, Applied, Command, Deregister, EjectSlow, Events, Heartbeat, OpenAsSlow,
    PeerClosed, PeerOpened, PeerProbing, PeerRegistered, PeerRemoved, PeerRenewed, RecordOutcome,
    Register, RemoveStatic, RetainKnown, Select, SharedFailures, SharedProbeSuccesses,
    SharedWindow, SweepLeases, EVENTS_INLINE,
};
pub use events::{Joined, RegistryEvent, Source};
pub use evicted::{Evicted, EVICTED_KEPT};
pub use listing::{Listing, ListingFilter, Part, Parts, ReplicaFilter, ServicePart};
pub use name::{InvalidName, ServiceName, RESERVED_NAMES};
pub use outbox::{Outbox, QUEUE_CAPACITY};
pub use protocol::{validate_grpc_service, InvalidGrpcService, Protocol};
pub use registration::{
    InvalidRegistration, MAX_GRPC_SERVICES, MAX_METADATA_ENTRIES, MAX_METADATA_LEN,
};
pub use replica::{History, Metadata, Origin, Replica, ReplicaView, StateReason};
pub use self_address::{is_local_ip, Listener, OwnAddress, OwnListeners};
pub use service::Service;
pub use sweep::LeaseExpiry;
pub use transitions::{TransitionLog, TransitionRecord, TRANSITIONS_KEPT};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use uuid::Uuid;

use crate::clock::WallClock;
use crate::observe::Metrics;
use crate::observe::{ServiceLabel, Shared};
use crate::policy::{
    Breaker, BreakerConfig, EvictionPolicy, Lease, OutlierConfig, PreservationPolicy,
    RetryBudgetConfig,
};
use replica::ReplicaState;

/// The registry's timing and thresholds.
#[derive(Debug, Clone, Copy)]
pub struct RegistryPolicy {
    /// Breaker thresholds.
    pub breaker: BreakerConfig,
    /// Eviction thresholds.
    pub eviction: EvictionPolicy,
    /// Lease time-to-live.
    pub lease_ttl: Duration,
    /// Heartbeat interval told to registering replicas.
    pub heartbeat_interval: Duration,
    /// How long a replica evicted for failures is remembered, so that it returns on probation.
    pub probation_memory: Duration,
    /// Each service's retry budget; `None`: retries are not limited beyond the retry rules.
    pub retry_budget: Option<RetryBudgetConfig>,
    /// When a service's lapsed leases are held instead of expired.
    pub preservation: PreservationPolicy,
    /// Ejection of slow replicas.
    pub outlier: OutlierConfig,
}

/// What `POST /register` asks for, validated.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Service name.
    pub service: ServiceName,
    /// Replica address.
    pub address: ReplicaAddress,
    /// HTTP or gRPC.
    pub protocol: Protocol,
    /// Full gRPC service names served (gRPC replicas), validated.
    pub grpc_services: Vec<String>,
    /// Labels.
    pub metadata: Metadata,
}

/// Result of a registration.
#[derive(Debug, Clone)]
pub struct Registered {
    /// The replica (new, or the existing one renewed).
    pub replica: Arc<Replica>,
    /// False when the same service+address was already registered (the lease was renewed).
    pub created: bool,
    /// True when it came back on probation after an eviction for failures.
    pub on_probation: bool,
}

/// A replica picked for one attempt.
#[derive(Debug, Clone)]
pub struct Pick {
    /// The replica.
    pub replica: Arc<Replica>,
    /// Whether this attempt is its half-open probe.
    pub probe: bool,
}

/// Why the registry refused an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// No such service.
    #[error("unknown service '{0}'")]
    UnknownService(String),
    /// No such replica in that service.
    #[error("replica {id} is not registered in service '{service}'")]
    UnknownReplica {
        /// Service name.
        service: String,
        /// Replica id.
        id: String,
    },
    /// Static replicas come from the config file and cannot be deregistered.
    #[error("replica {0} is configured statically and cannot be deregistered")]
    StaticReplica(String),
}

#[derive(Debug, Clone, Copy)]
struct Tombstone {
    history: History,
    evicted_at: Instant,
}

/// The in-process registry.
#[derive(Debug)]
pub struct Registry {
    services: Arc<state_series::Services>,
    /// gRPC service name → registry services that have had a replica serving it.
    grpc_index: DashMap<String, Vec<ServiceName>>,
    tombstones: Mutex<HashMap<(ServiceName, ReplicaAddress), Tombstone>>,
    /// Ids of registered replicas this gateway removed itself (deregistered, evicted for failures) while
    /// sharing, with when: a peer's registration of one is not taken back for a lease (what the store
    /// shows of it may predate the removal's write), see `removal.rs`.
    removed_here: Mutex<HashMap<Uuid, Instant>>,
    /// Replaced by a config reload ([`Registry::set_policy`]); each operation loads it once.
    policy: arc_swap::ArcSwap<RegistryPolicy>,
    events: tokio::sync::broadcast::Sender<RegistryEvent>,
    /// Local changes for a shared store, when one is attached ([`Registry::share_changes`]).
    outbox: std::sync::OnceLock<Arc<Outbox>>,
    /// The gateway's metrics (every part of the gateway reaches them through its registry).
    metrics: Arc<Metrics>,
    /// Turns the `now` it is given into wall-clock times for operators.
    wall: WallClock,
}

impl Registry {
    /// An empty registry.
    pub fn new(policy: RegistryPolicy) -> Self {
        Registry::with_wall_clock(policy, WallClock::start())
    }

    /// An empty registry that shows the instants it is given as wall-clock times through `wall`.
    pub fn with_wall_clock(policy: RegistryPolicy, wall: WallClock) -> Self {
        let services = Arc::new(DashMap::new());
        let metrics = Arc::new(Metrics::new());
        metrics.register_collector(Box::new(state_series::StateSeries::new(&services)));
        Registry {
            services,
            grpc_index: DashMap::new(),
            tombstones: Mutex::new(HashMap::new()),
            removed_here: Mutex::new(HashMap::new()),
            policy: arc_swap::ArcSwap::from_pointee(policy),
            events: tokio::sync::broadcast::channel(4096).0,
            outbox: std::sync::OnceLock::new(),
            metrics,
            wall,
        }
    }

    /// How it turns instants into wall-clock times.
    pub fn wall_clock(&self) -> &WallClock {
        &self.wall
    }

    /// Sets `gateway_replicas{service}` to the replicas `svc` has now (read after a change, so the last
    /// writer always writes the latest count).
    fn count_replicas(&self, svc: &Service) {
        self.metrics
            .replicas
            .get_or_create(&ServiceLabel {
                service: Shared(svc.name().shared()),
            })
            .set(svc.len() as i64);
    }

    /// Has the sweep watch the lease of a replica that just joined, and shows it in `gateway_replicas`.
    fn joined(&self, svc: &Service, r: &Arc<Replica>) {
        let deadline = r.lock().lease.deadline();
        if let Some(at) = deadline {
            svc.watch_lease(at);
        }
        self.count_replicas(svc);
    }

    /// The gateway's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Starts keeping local changes for a shared store, in an [`Outbox`] of `capacity` entries, and
    /// returns it (once per registry). Pushing never blocks, so the proxy path never waits for the store.
    pub fn share_changes(&self, capacity: usize) -> Option<Arc<Outbox>> {
        let outbox = Arc::new(Outbox::new(capacity, Arc::clone(&self.metrics)));
        self.outbox.set(Arc::clone(&outbox)).ok().map(|()| outbox)
    }

    /// Whether a shared store takes this registry's changes.
    fn sharing(&self) -> bool {
        self.outbox.get().is_some()
    }

    /// Subscribes to changes (added, removed, breaker state). A receiver that falls more than 4096 events
    /// behind is told it lagged and should take a fresh snapshot.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<RegistryEvent> {
        self.events.subscribe()
    }

    /// The registry services whose replicas serve the gRPC service `name`, in registration order.
    pub fn grpc_route(&self, name: &str) -> Vec<Arc<Service>> {
        self.grpc_index
            .get(name)
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| self.service(n.as_str()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn index_grpc(&self, service: &ServiceName, grpc_services: &[String]) {
        for g in grpc_services {
            let mut entry = self.grpc_index.entry(g.clone()).or_default();
            if !entry.contains(service) {
                entry.push(service.clone());
            }
        }
    }

    /// Its policy (the one in force now: a reload may replace it).
    pub fn policy(&self) -> arc_swap::Guard<Arc<RegistryPolicy>> {
        self.policy.load()
    }

    /// Replaces the policy (config reload): thresholds apply to the next decision of every replica;
    /// a changed retry budget starts afresh in every service; leases keep the TTL they were granted.
    pub fn set_policy(&self, policy: RegistryPolicy) {
        let budget_changed = self.policy.load().retry_budget != policy.retry_budget;
        self.policy.store(Arc::new(policy));
        if budget_changed {
            for svc in self.services() {
                svc.set_retry_budget(policy.retry_budget);
            }
        }
    }

    fn service_entry(&self, name: &ServiceName) -> Arc<Service> {
        self.services
            .entry(name.clone())
            .or_insert_with(|| {
                Arc::new(Service::new(name.clone(), self.policy.load().retry_budget))
            })
            .clone()
    }

    /// Looks a service up by name (`None` when never registered nor configured).
    pub fn service(&self, name: &str) -> Option<Arc<Service>> {
        self.services.get(name).map(|s| Arc::clone(s.value()))
    }

    /// All services, sorted by name.
    pub fn services(&self) -> Vec<Arc<Service>> {
        let mut all: Vec<_> = self
            .services
            .iter()
            .map(|e| Arc::clone(e.value()))
            .collect();
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }

    fn tombstones_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(ServiceName, ReplicaAddress), Tombstone>> {
        self.tombstones.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn removed_here_lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Instant>> {
        self.removed_here.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod command_tests;
#[cfg(test)]
mod metrics_tests;
#[cfg(test)]
mod outcome_command_tests;
#[cfg(test)]
mod preservation_tests;
#[cfg(test)]
mod sharing_tests;
#[cfg(test)]
mod shorthand;
#[cfg(test)]
mod slow_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod why_tests;
