//! One replica of a service: identity, lease, breaker and counters.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use uuid::Uuid;

use super::latency::{LatencyCounts, LatencyHistogram};
use super::{Protocol, ReplicaAddress, ServiceName};
use crate::observe::{Metrics, ReplicaHandles, ReplicaLabels};
use crate::policy::{Breaker, BreakerState, FailureCause, Lease, SlowReason};

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

/// Why a replica's breaker is not closed (`state_reason` in `GET /registry`). Set when it opens, cleared
/// when it closes; plain data, so opening never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateReason {
    /// `breaker.failure_threshold` failures in a row.
    Failures {
        /// Failures in a row when it opened.
        consecutive: u32,
        /// The last one's cause.
        last: FailureCause,
    },
    /// The failure ratio of the window tripped (`breaker.failure_ratio`).
    Ratio {
        /// Failures in the window.
        failures: u32,
        /// Requests in the window.
        requests: u32,
        /// Counted by every gateway together (Redis).
        shared: bool,
    },
    /// Its half-open probe failed.
    ProbeFailed(FailureCause),
    /// Ejected for slowness (`outlier`).
    Slow(SlowReason),
    /// It registered again soon after an eviction for failures.
    Probation,
    /// A peer gateway opened it.
    Peer,
    /// The failures every gateway counted reached the threshold.
    AcrossGateways(u64),
}

impl fmt::Display for StateReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateReason::Failures { consecutive, last } => {
                write!(f, "{consecutive} consecutive failures: {last}")
            }
            StateReason::Ratio {
                failures,
                requests,
                shared,
            } => write!(
                f,
                "{failures} of {requests} requests failed ({}%) in the window{}",
                u64::from(*failures) * 100 / u64::from((*requests).max(1)),
                if *shared { " across gateways" } else { "" }
            ),
            StateReason::ProbeFailed(cause) => write!(f, "half-open probe failed: {cause}"),
            StateReason::Slow(slow) => slow.fmt(f),
            StateReason::Probation => {
                f.write_str("re-registered after eviction: on probation until a probe succeeds")
            }
            StateReason::Peer => f.write_str("opened by a peer gateway"),
            StateReason::AcrossGateways(n) => write!(f, "{n} failures counted across gateways"),
        }
    }
}

/// The mutable part of a replica, behind one short-lived lock.
#[derive(Debug, Clone)]
pub(crate) struct ReplicaState {
    pub(crate) breaker: Breaker,
    pub(crate) lease: Lease,
    pub(crate) metadata: Metadata,
    pub(crate) grpc_services: Vec<String>,
    pub(crate) last_failure: Option<FailureCause>,
    /// Why the breaker is not closed; `None` while it is.
    pub(crate) state_reason: Option<StateReason>,
}

/// A live replica of a service.
#[derive(Debug)]
pub struct Replica {
    id: Uuid,
    service: ServiceName,
    address: ReplicaAddress,
    protocol: Protocol,
    origin: Origin,
    registered_at: SystemTime,
    state: Mutex<ReplicaState>,
    requests: AtomicU64,
    failures: AtomicU64,
    removed: AtomicBool,
    /// Response-head latencies of the current outlier interval.
    latency: LatencyHistogram,
    /// Attempt metric handles, made on the first attempt.
    observe: OnceLock<Arc<ReplicaHandles>>,
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
    /// Why the breaker is not closed (`None` while it is).
    pub state_reason: Option<String>,
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
    ) -> Self {
        let mut r = Replica::new(
            service,
            address,
            protocol,
            Origin::Registered,
            state,
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
        state: ReplicaState,
        history: History,
    ) -> Self {
        Replica {
            id: Uuid::new_v4(),
            service,
            address,
            protocol,
            origin,
            registered_at: SystemTime::now(),
            state: Mutex::new(state),
            requests: AtomicU64::new(history.requests),
            failures: AtomicU64::new(history.failures),
            removed: AtomicBool::new(false),
            latency: LatencyHistogram::default(),
            observe: OnceLock::new(),
        }
    }

    /// Its attempt metric handles (`metrics` makes them on the first call), labelled with its address
    /// as registered ([`ReplicaLabels::of`]).
    pub fn observe(&self, metrics: &Metrics) -> &Arc<ReplicaHandles> {
        self.observe.get_or_init(|| {
            let labels = ReplicaLabels::of(self.service.as_str(), self.address.as_str());
            Arc::new(ReplicaHandles::new(metrics, &labels))
        })
    }

    /// Registration id.
    pub fn id(&self) -> Uuid {
        self.id
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
        self.protocol == Protocol::Grpc && self.lock().grpc_services.iter().any(|s| s == name)
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

    /// What a peer gateway needs to hold this replica.
    pub fn record(&self) -> super::ReplicaRecord {
        let st = self.lock();
        super::ReplicaRecord {
            id: self.id,
            service: self.service.clone(),
            address: self.address.clone(),
            protocol: self.protocol,
            grpc_services: st.grpc_services.clone(),
            metadata: st.metadata.clone(),
        }
    }

    /// A consistent view of the replica at `now`.
    pub fn view(&self, now: Instant) -> ReplicaView {
        let st = self.lock();
        let state = st.breaker.state(now);
        ReplicaView {
            id: self.id,
            address: self.address.to_string(),
            origin: self.origin,
            protocol: self.protocol,
            grpc_services: st.grpc_services.clone(),
            state,
            state_reason: match state {
                BreakerState::Closed => None,
                _ => st.state_reason.map(|r| r.to_string()),
            },
            consecutive_failures: st.breaker.consecutive_failures(),
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            last_failure: st.last_failure.map(|c| c.to_string()),
            last_heartbeat_ms_ago: st.lease.age(now).as_millis() as u64,
            leased: st.lease.expires(),
            lease_expired: st.lease.is_expired(now),
            registered_at_unix_ms: self
                .registered_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            metadata: st.metadata.clone(),
        }
    }
}
