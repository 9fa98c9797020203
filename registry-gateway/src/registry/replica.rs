//! One replica of a service: identity, lease, breaker and counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::latency::{LatencyCounts, LatencyHistogram};
use super::transitions::{TransitionLog, TransitionRecord};
use super::{Protocol, ReplicaAddress, ServiceName};
use crate::observe::{Metrics, ReplicaHandles, ReplicaLabels, Shared};
use crate::policy::{Breaker, BreakerState, FailureCause, Lease};

mod state_reason;

pub use state_reason::StateReason;

/// How a replica got into the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// `POST /register`: held by a lease, evicted by failures.
    Registered,
    /// The config file's `services:`: never expires, never evicted, still breaker-protected.
    Static,
}

/// Free-form labels a replica registers with (version, zone, ...).
pub type Metadata = BTreeMap<String, String>;

/// The mutable part of a replica, behind one short-lived lock.
#[derive(Debug, Clone)]
pub(crate) struct ReplicaState {
    pub(crate) breaker: Breaker,
    pub(crate) lease: Lease,
    /// Metadata and gRPC service names: one pointer while there are none (the common case).
    labels: Option<Box<(Metadata, Vec<String>)>>,
    pub(crate) last_failure: Option<FailureCause>,
    /// Why the breaker is in its state (while half-open: why it opened).
    pub(crate) state_reason: StateReason,
    /// When it entered its state (or joined the registry).
    pub(crate) state_since: Instant,
    /// Its last transitions.
    pub(crate) transitions: TransitionLog,
}

impl ReplicaState {
    /// A replica's state as it joins at `now`, closed (or open, on probation) for `reason`.
    pub(crate) fn new(
        breaker: Breaker,
        lease: Lease,
        reason: StateReason,
        now: Instant,
    ) -> ReplicaState {
        ReplicaState {
            breaker,
            lease,
            labels: None,
            last_failure: None,
            state_reason: reason,
            state_since: now,
            transitions: TransitionLog::default(),
        }
    }
}

impl ReplicaState {
    /// Replaces its metadata and gRPC service names.
    pub(crate) fn set_labels(&mut self, metadata: &Metadata, grpc_services: &[String]) {
        self.labels = if metadata.is_empty() && grpc_services.is_empty() {
            None
        } else {
            Some(Box::new((metadata.clone(), grpc_services.to_vec())))
        };
    }

    /// Its metadata.
    pub(crate) fn metadata(&self) -> &Metadata {
        static NONE: Metadata = Metadata::new();
        self.labels.as_ref().map_or(&NONE, |l| &l.0)
    }

    /// The gRPC service names it serves (gRPC replicas).
    pub(crate) fn grpc_services(&self) -> &[String] {
        self.labels.as_ref().map_or(&[], |l| &l.1)
    }
}

/// A live replica of a service.
#[derive(Debug)]
pub struct Replica {
    id: Uuid,
    service: ServiceName,
    address: ReplicaAddress,
    protocol: Protocol,
    origin: Origin,
    registered_at_unix_ms: u64,
    state: Mutex<ReplicaState>,
    requests: AtomicU64,
    failures: AtomicU64,
    removed: AtomicBool,
    /// Response-head latencies of the current outlier interval.
    latency: LatencyHistogram,
    /// Attempt metric handles, made on the first attempt.
    observe: OnceLock<Arc<ReplicaHandles>>,
    /// Its place in its service's [`super::replica_set::ReplicaSet`] (written under the service's lock).
    /// 32 bits: with the other small fields it keeps a replica's allocation in a smaller size class.
    pub(crate) slot: AtomicU32,
}

/// A point-in-time view of a replica, for `GET /registry`.
#[derive(Debug, Clone)]
pub struct ReplicaView {
    /// Registration id.
    pub id: Uuid,
    /// `http://host:port`.
    pub address: String,
    /// Registered or static.
    pub origin: Origin,
    /// HTTP or gRPC.
    pub protocol: Protocol,
    /// gRPC service names served (gRPC replicas).
    pub grpc_services: Vec<String>,
    /// Breaker state.
    pub state: BreakerState,
    /// Why the breaker is in that state, as a sentence.
    pub state_reason: String,
    /// How long it has been in that state.
    pub state_since: Duration,
    /// While open: how long until a probe may go through.
    pub next_probe_in: Option<Duration>,
    /// Registered replicas: how long until the lease runs out without a heartbeat (static: `None`).
    pub lease_expires_in: Option<Duration>,
    /// Its last transitions, oldest first.
    pub transitions: Vec<TransitionRecord>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Attempts sent to this replica.
    pub requests: u64,
    /// Attempts that failed.
    pub failures: u64,
    /// Cause of the most recent failure.
    pub last_failure: Option<String>,
    /// Milliseconds since the last heartbeat (or registration).
    pub last_heartbeat_ms_ago: u64,
    /// Whether a lease holds this replica (false for static replicas).
    pub leased: bool,
    /// Whether its lease has run out (it is then listed only while self-preservation holds it).
    pub lease_expired: bool,
    /// Wall-clock registration time, milliseconds since the Unix epoch.
    pub registered_at_unix_ms: u64,
    /// Labels.
    pub metadata: Metadata,
}

/// Counters carried over when an evicted replica registers again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct History {
    /// Consecutive failures at eviction.
    pub consecutive_failures: u32,
    /// Lifetime attempts.
    pub requests: u64,
    /// Lifetime failures.
    pub failures: u64,
}

impl Replica {
    pub(crate) fn with_id(
        id: Uuid,
        service: ServiceName,
        address: ReplicaAddress,
        protocol: Protocol,
        state: ReplicaState,
        registered_at_unix_ms: u64,
    ) -> Self {
        let mut r = Replica::new(
            service,
            address,
            protocol,
            Origin::Registered,
            (state, registered_at_unix_ms),
            History::default(),
        );
        r.id = id;
        r
    }

    pub(crate) fn new(
        service: ServiceName,
        address: ReplicaAddress,
        protocol: Protocol,
        origin: Origin,
        (state, registered_at_unix_ms): (ReplicaState, u64),
        history: History,
    ) -> Self {
        Replica {
            id: Uuid::new_v4(),
            service,
            address,
            protocol,
            origin,
            registered_at_unix_ms,
            state: Mutex::new(state),
            requests: AtomicU64::new(history.requests),
            failures: AtomicU64::new(history.failures),
            removed: AtomicBool::new(false),
            latency: LatencyHistogram::default(),
            observe: OnceLock::new(),
            slot: AtomicU32::new(u32::MAX),
        }
    }

    /// Its attempt metric handles (`metrics` makes them on the first call), labelled with its address
    /// as registered ([`ReplicaLabels::of`]).
    pub fn observe(&self, metrics: &Metrics) -> &Arc<ReplicaHandles> {
        self.observe
            .get_or_init(|| Arc::new(ReplicaHandles::new(metrics, &self.metric_labels())))
    }

    /// Registration id.
    pub fn id(&self) -> Uuid {
        self.id
    }

    pub(crate) fn id_ref(&self) -> &Uuid {
        &self.id
    }

    /// The service it serves.
    pub fn service(&self) -> &ServiceName {
        &self.service
    }

    /// Its address.
    pub fn address(&self) -> &ReplicaAddress {
        &self.address
    }

    /// Registered or static.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// HTTP or gRPC.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Whether this gRPC replica serves the gRPC service `name` (`package.Service`).
    pub fn serves_grpc(&self, name: &str) -> bool {
        self.protocol == Protocol::Grpc && self.lock().grpc_services().iter().any(|s| s == name)
    }

    /// Whether it has left the registry (late outcomes of in-flight requests are then ignored).
    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    pub(crate) fn mark_removed(&self) {
        self.removed.store(true, Ordering::Release);
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, ReplicaState> {
        // A panic while holding this lock cannot leave the plain data inconsistent: keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn count_attempt(&self, failed: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a measured answer (response head after `d`) for outlier detection.
    pub(crate) fn record_latency(&self, d: Duration) {
        self.latency.record(d);
    }

    /// The latencies counted since the last call: each outlier interval starts afresh.
    pub(crate) fn take_latencies(&self) -> LatencyCounts {
        self.latency.take()
    }

    pub(crate) fn history(&self) -> History {
        History {
            consecutive_failures: self.lock().breaker.consecutive_failures(),
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }

    /// The `{service, replica}` labels of its metric series.
    pub fn metric_labels(&self) -> ReplicaLabels {
        ReplicaLabels {
            service: Shared(self.service.shared()),
            replica: Shared(self.address.shared()),
        }
    }

    /// What a peer gateway needs to hold this replica.
    pub fn record(&self) -> super::ReplicaRecord {
        let st = self.lock();
        super::ReplicaRecord {
            id: self.id,
            service: self.service.clone(),
            address: self.address.clone(),
            protocol: self.protocol,
            grpc_services: st.grpc_services().to_vec(),
            metadata: st.metadata().clone(),
        }
    }

    /// A consistent view of the replica at `now`.
    pub fn view(&self, now: Instant) -> ReplicaView {
        let st = self.lock();
        let state = st.breaker.state(now);
        let open_until = st.breaker.open_until();
        // An open breaker whose timeout passed shows half-open before any probe went through: since then.
        let since = match (state, open_until) {
            (BreakerState::HalfOpen, Some(until)) => until,
            _ => st.state_since,
        };
        ReplicaView {
            id: self.id,
            address: self.address.to_string(),
            origin: self.origin,
            protocol: self.protocol,
            grpc_services: st.grpc_services().to_vec(),
            state,
            state_reason: match state {
                BreakerState::HalfOpen => {
                    format!("half-open, probing (opened: {})", st.state_reason)
                }
                _ => st.state_reason.to_string(),
            },
            state_since: now.saturating_duration_since(since),
            next_probe_in: match (state, open_until) {
                (BreakerState::Open, Some(until)) => Some(until.saturating_duration_since(now)),
                _ => None,
            },
            lease_expires_in: st.lease.expires_in(now),
            transitions: st.transitions.to_vec(),
            consecutive_failures: st.breaker.consecutive_failures(),
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            last_failure: st.last_failure.map(|c| c.to_string()),
            last_heartbeat_ms_ago: st.lease.age(now).as_millis() as u64,
            leased: st.lease.expires(),
            lease_expired: st.lease.is_expired(now),
            registered_at_unix_ms: self.registered_at_unix_ms,
            metadata: st.metadata().clone(),
        }
    }
}
