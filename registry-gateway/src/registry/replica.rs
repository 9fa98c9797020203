//! One replica of a service: identity, lease, breaker and counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use once_cell::race::OnceBox;
use uuid::Uuid;

use super::latency::{LatencyCounts, LatencyHistogram};
use super::transitions::{TransitionLog, TransitionRecord};
use super::{Protocol, ReplicaAddress, ServiceName};
use crate::clock::Stamp;
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

/// The mutable part of a replica, behind one short-lived lock. What most replicas of a large fleet never
/// have (labels, a failure, a transition) is in one box, absent until the first of it: 96 bytes.
#[derive(Debug, Clone)]
pub(crate) struct ReplicaState {
    pub(crate) breaker: Breaker,
    pub(crate) lease: Lease,
    /// When it entered its state (or joined the registry).
    pub(crate) state_since: Stamp,
    notes: Option<Box<Notes>>,
    /// Why it joined: its state reason until another is recorded (in `notes`).
    joined: Joined,
}

/// A replica's rarer state.
#[derive(Debug, Clone, Default)]
struct Notes {
    metadata: Metadata,
    grpc_services: Vec<String>,
    last_failure: Option<FailureCause>,
    /// Why the breaker is in its state (while half-open: why it opened), once it is not why it joined.
    state_reason: Option<StateReason>,
    /// Its last transitions.
    transitions: TransitionLog,
}

/// The state reasons a replica joins with, in one byte.
#[derive(Debug, Clone, Copy)]
enum Joined {
    Registered,
    RegisteredByPeer,
    Configured,
    Probation,
}

impl Joined {
    fn of(reason: StateReason) -> Option<Joined> {
        match reason {
            StateReason::Registered => Some(Joined::Registered),
            StateReason::RegisteredByPeer => Some(Joined::RegisteredByPeer),
            StateReason::Configured => Some(Joined::Configured),
            StateReason::Probation => Some(Joined::Probation),
            _ => None,
        }
    }

    fn reason(self) -> StateReason {
        match self {
            Joined::Registered => StateReason::Registered,
            Joined::RegisteredByPeer => StateReason::RegisteredByPeer,
            Joined::Configured => StateReason::Configured,
            Joined::Probation => StateReason::Probation,
        }
    }
}

impl ReplicaState {
    /// A replica's state as it joins at `now`, closed (or open, on probation) for `reason`.
    pub(crate) fn new(
        breaker: Breaker,
        lease: Lease,
        reason: StateReason,
        now: Instant,
    ) -> ReplicaState {
        let mut st = ReplicaState {
            breaker,
            lease,
            state_since: Stamp::of(now),
            notes: None,
            joined: Joined::of(reason).unwrap_or(Joined::Registered),
        };
        if Joined::of(reason).is_none() {
            st.set_state_reason(reason);
        }
        st
    }

    fn notes_mut(&mut self) -> &mut Notes {
        self.notes.get_or_insert_with(Box::default)
    }

    /// Replaces its metadata and gRPC service names.
    pub(crate) fn set_labels(&mut self, metadata: &Metadata, grpc_services: &[String]) {
        if metadata.is_empty() && grpc_services.is_empty() && self.notes.is_none() {
            return;
        }
        let notes = self.notes_mut();
        notes.metadata.clone_from(metadata);
        notes.grpc_services = grpc_services.to_vec();
    }

    /// Its metadata.
    pub(crate) fn metadata(&self) -> &Metadata {
        static NONE: Metadata = Metadata::new();
        self.notes.as_ref().map_or(&NONE, |n| &n.metadata)
    }

    /// The gRPC service names it serves (gRPC replicas).
    pub(crate) fn grpc_services(&self) -> &[String] {
        self.notes.as_ref().map_or(&[], |n| &n.grpc_services)
    }

    /// Why the breaker is in its state (while half-open: why it opened).
    pub(crate) fn state_reason(&self) -> StateReason {
        self.notes
            .as_ref()
            .and_then(|n| n.state_reason)
            .unwrap_or_else(|| self.joined.reason())
    }

    /// Records why the breaker is in its state.
    pub(crate) fn set_state_reason(&mut self, reason: StateReason) {
        self.notes_mut().state_reason = Some(reason);
    }

    /// Cause of the most recent failure.
    pub(crate) fn last_failure(&self) -> Option<FailureCause> {
        self.notes.as_ref().and_then(|n| n.last_failure)
    }

    /// Records the cause of a failure.
    pub(crate) fn set_last_failure(&mut self, cause: FailureCause) {
        self.notes_mut().last_failure = Some(cause);
    }

    /// Its last transitions.
    pub(crate) fn transitions(&self) -> &TransitionLog {
        static NONE: TransitionLog = TransitionLog::EMPTY;
        self.notes.as_ref().map_or(&NONE, |n| &n.transitions)
    }

    /// Appends a transition.
    pub(crate) fn push_transition(&mut self, record: TransitionRecord) {
        self.notes_mut().transitions.push(record);
    }

    /// Takes its transitions (it leaves the registry).
    pub(crate) fn take_transitions(&mut self) -> TransitionLog {
        self.notes
            .as_mut()
            .map(|n| std::mem::take(&mut n.transitions))
            .unwrap_or_default()
    }
}

/// A live replica of a service.
///
/// Compact, for fleets of a million: the address text inline, times as 8-byte [`Stamp`]s, and what only
/// a replica that takes traffic needs ([`Traffic`]) allocated at its first attempt.
#[derive(Debug)]
pub struct Replica {
    id: Uuid,
    service: ServiceName,
    address: ReplicaAddress,
    registered_at_unix_ms: u64,
    state: Mutex<ReplicaState>,
    /// Made at the first attempt (or when it returns with counts carried over): one pointer until then.
    traffic: OnceBox<Traffic>,
    /// Its place in its service's [`super::replica_set::ReplicaSet`] (written under the service's lock).
    pub(crate) slot: AtomicU32,
    removed: AtomicBool,
    protocol: Protocol,
    origin: Origin,
}

/// The counters and handles of a replica that takes traffic.
#[derive(Debug, Default)]
struct Traffic {
    requests: AtomicU64,
    failures: AtomicU64,
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
        let traffic = OnceBox::new();
        if history.requests > 0 || history.failures > 0 {
            let carried = Traffic {
                requests: AtomicU64::new(history.requests),
                failures: AtomicU64::new(history.failures),
                ..Traffic::default()
            };
            let _ = traffic.set(Box::new(carried));
        }
        Replica {
            id: Uuid::new_v4(),
            service,
            address,
            registered_at_unix_ms,
            state: Mutex::new(state),
            traffic,
            slot: AtomicU32::new(u32::MAX),
            removed: AtomicBool::new(false),
            protocol,
            origin,
        }
    }

    /// Its counters and handles, made on the first call.
    fn traffic(&self) -> &Traffic {
        self.traffic.get_or_init(Box::default)
    }

    /// Its attempt metric handles (`metrics` makes them on the first call), labelled with its address
    /// as registered ([`ReplicaLabels::of`]).
    pub fn observe(&self, metrics: &Metrics) -> &Arc<ReplicaHandles> {
        self.traffic()
            .observe
            .get_or_init(|| Arc::new(ReplicaHandles::new(metrics, &self.metric_labels())))
    }

    /// Attempts sent to it and attempts that failed.
    fn counts(&self) -> (u64, u64) {
        self.traffic.get().map_or((0, 0), |t| {
            (
                t.requests.load(Ordering::Relaxed),
                t.failures.load(Ordering::Relaxed),
            )
        })
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
        let t = self.traffic();
        t.requests.fetch_add(1, Ordering::Relaxed);
        if failed {
            t.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a measured answer (response head after `d`) for outlier detection.
    pub(crate) fn record_latency(&self, d: Duration) {
        self.traffic().latency.record(d);
    }

    /// The latencies counted since the last call: each outlier interval starts afresh.
    pub(crate) fn take_latencies(&self) -> LatencyCounts {
        self.traffic
            .get()
            .map_or_else(|| LatencyHistogram::default().take(), |t| t.latency.take())
    }

    pub(crate) fn history(&self) -> History {
        let (requests, failures) = self.counts();
        History {
            consecutive_failures: self.lock().breaker.consecutive_failures(),
            requests,
            failures,
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
            _ => st.state_since.instant(),
        };
        let (requests, failures) = self.counts();
        ReplicaView {
            id: self.id,
            address: self.address.to_string(),
            origin: self.origin,
            protocol: self.protocol,
            grpc_services: st.grpc_services().to_vec(),
            state,
            state_reason: match state {
                BreakerState::HalfOpen => {
                    format!("half-open, probing (opened: {})", st.state_reason())
                }
                _ => st.state_reason().to_string(),
            },
            state_since: now.saturating_duration_since(since),
            next_probe_in: match (state, open_until) {
                (BreakerState::Open, Some(until)) => Some(until.saturating_duration_since(now)),
                _ => None,
            },
            lease_expires_in: st.lease.expires_in(now),
            transitions: st.transitions().to_vec(),
            consecutive_failures: st.breaker.consecutive_failures(),
            requests,
            failures,
            last_failure: st.last_failure().map(|c| c.to_string()),
            last_heartbeat_ms_ago: st.lease.age(now).as_millis() as u64,
            leased: st.lease.expires(),
            lease_expired: st.lease.is_expired(now),
            registered_at_unix_ms: self.registered_at_unix_ms,
            metadata: st.metadata().clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::BreakerConfig;

    #[test]
    fn a_replica_fits_mimallocs_224_byte_class_with_its_arc_header() {
        // 16 bytes of `Arc` counts + the record: a million replicas take 224 MB, not 320 MB.
        assert!(std::mem::size_of::<Replica>() <= 192);
        assert!(std::mem::size_of::<ReplicaState>() <= 96);
    }

    #[test]
    fn the_rarer_state_is_made_on_first_use_and_reads_the_same() {
        let t0 = crate::clock::now();
        let mut st = ReplicaState::new(
            Breaker::default(),
            Lease::new(Duration::from_secs(15), t0),
            StateReason::Registered,
            t0,
        );
        assert!(st.notes.is_none());
        assert_eq!(st.state_reason(), StateReason::Registered);
        st.set_labels(&Metadata::new(), &[]);
        assert!(st.notes.is_none(), "no labels: nothing made");
        st.set_last_failure(FailureCause::Timeout);
        assert_eq!(st.last_failure(), Some(FailureCause::Timeout));
        // Still the reason it joined for until another is recorded.
        assert_eq!(st.state_reason(), StateReason::Registered);
        st.set_state_reason(StateReason::Peer);
        assert_eq!(st.state_reason(), StateReason::Peer);
        let labels = Metadata::from([("zone".to_owned(), "a".to_owned())]);
        st.set_labels(&labels, &["pkg.Svc".to_owned()]);
        assert_eq!(
            (st.metadata(), st.grpc_services()),
            (&labels, &["pkg.Svc".to_owned()][..])
        );
        st.set_labels(&Metadata::new(), &[]);
        assert!(st.metadata().is_empty() && st.grpc_services().is_empty());
        // A replica that joins for another reason keeps it.
        let probation = ReplicaState::new(
            Breaker::on_probation(
                3,
                t0,
                &BreakerConfig::consecutive(3, Duration::from_secs(5), Duration::from_secs(1)),
            ),
            Lease::new(Duration::from_secs(15), t0),
            StateReason::Probation,
            t0,
        );
        assert_eq!(probation.state_reason(), StateReason::Probation);
        assert!(probation.notes.is_none());
    }
}
