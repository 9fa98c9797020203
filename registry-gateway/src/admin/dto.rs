//! JSON shapes of the admin API, converted to and from the registry's own types at this edge.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::GatewayError;
use crate::policy::BreakerState;
use crate::registry::{Evicted, Metadata, Protocol, Registration, ReplicaView, TransitionRecord};

/// `POST /register` body. The name, address and protocol borrow from the body when they hold no escape.
#[derive(Debug, Deserialize)]
pub(crate) struct RegisterRequest<'a> {
    #[serde(borrow)]
    service: Cow<'a, str>,
    #[serde(borrow)]
    address: Cow<'a, str>,
    #[serde(default, borrow)]
    protocol: Option<Cow<'a, str>>,
    #[serde(default)]
    grpc_services: Vec<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

fn field(field: &str, message: impl Into<String>) -> GatewayError {
    GatewayError::InvalidField {
        field: field.to_owned(),
        message: message.into(),
    }
}

impl TryFrom<RegisterRequest<'_>> for Registration {
    type Error = GatewayError;

    fn try_from(r: RegisterRequest<'_>) -> Result<Self, GatewayError> {
        let protocol = match r.protocol.as_deref() {
            None | Some("http") => Protocol::Http,
            Some("grpc") => Protocol::Grpc,
            Some(other) => {
                return Err(field(
                    "protocol",
                    format!("must be \"http\" or \"grpc\", not \"{other}\""),
                ))
            }
        };
        Registration::try_new(
            &r.service,
            &r.address,
            protocol,
            r.grpc_services,
            r.metadata,
        )
        .map_err(|e| field(e.field, e.message))
    }
}

/// `POST /register` answer (borrowed from the replica: no copy of its name or address).
#[derive(Debug, Serialize)]
pub(crate) struct RegisterResponse<'a> {
    /// Lowercase and hyphenated, as its `Display`.
    pub(crate) id: Uuid,
    pub(crate) service: &'a str,
    pub(crate) address: &'a str,
    pub(crate) heartbeat_interval_ms: u64,
    pub(crate) lease_ttl_ms: u64,
    pub(crate) on_probation: bool,
}

/// `PUT /registry/{service}/{id}/heartbeat` response (keys in alphabetical order, as they always were).
#[derive(Debug, Serialize)]
pub(crate) struct HeartbeatResponse<'a> {
    pub(crate) heartbeat_interval_ms: u64,
    pub(crate) id: &'a str,
    pub(crate) lease_ttl_ms: u64,
}

/// One replica in `GET /registry`.
#[derive(Debug, Serialize)]
pub(crate) struct ReplicaDto {
    id: String,
    address: String,
    protocol: Protocol,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    grpc_services: Vec<String>,
    origin: crate::registry::Origin,
    state: BreakerState,
    /// Why it is in that state, as a sentence (in every state).
    state_reason: String,
    state_since_ms_ago: u64,
    /// While open: when a probe may go through; `null` otherwise.
    next_probe_in_ms: Option<u64>,
    /// Registered replicas: time left on the lease; `null` for static ones.
    lease_expires_in_ms: Option<u64>,
    /// The last ten breaker transitions, oldest first.
    transitions: Vec<TransitionDto>,
    consecutive_failures: u32,
    requests: u64,
    failures: u64,
    last_failure: Option<String>,
    last_heartbeat_ms_ago: Option<u64>,
    /// Its lease ran out and self-preservation keeps it listed (and routed) until the service's
    /// `preserving_until_unix_ms`.
    preserved: bool,
    registered_at_unix_ms: u64,
    metadata: Metadata,
}

impl ReplicaDto {
    /// The view of a replica of a service whose self-preservation hold, if any, is `holding`.
    pub(crate) fn new(v: ReplicaView, holding: bool) -> Self {
        ReplicaDto {
            preserved: holding && v.leased && v.lease_expired,
            id: v.id.to_string(),
            address: v.address,
            protocol: v.protocol,
            grpc_services: v.grpc_services,
            origin: v.origin,
            state: v.state,
            state_reason: v.state_reason,
            state_since_ms_ago: ms(v.state_since),
            next_probe_in_ms: v.next_probe_in.map(ms),
            lease_expires_in_ms: v.lease_expires_in.map(ms),
            transitions: v.transitions.iter().map(TransitionDto::from).collect(),
            consecutive_failures: v.consecutive_failures,
            requests: v.requests,
            failures: v.failures,
            last_failure: v.last_failure,
            last_heartbeat_ms_ago: v.leased.then_some(v.last_heartbeat_ms_ago),
            registered_at_unix_ms: v.registered_at_unix_ms,
            metadata: v.metadata,
        }
    }
}

fn ms(d: std::time::Duration) -> u64 {
    d.as_millis() as u64
}

/// One breaker transition.
#[derive(Debug, Serialize)]
pub(crate) struct TransitionDto {
    at_unix_ms: u64,
    from: BreakerState,
    to: BreakerState,
    reason: String,
}

impl From<&TransitionRecord> for TransitionDto {
    fn from(t: &TransitionRecord) -> Self {
        TransitionDto {
            at_unix_ms: t.at_unix_ms,
            from: t.from,
            to: t.to,
            reason: t.reason.to_string(),
        }
    }
}

/// The counters of an evicted replica, as they were shown while it was live.
#[derive(Debug, Serialize)]
pub(crate) struct CountersDto {
    consecutive_failures: u32,
    requests: u64,
    failures: u64,
    last_failure: Option<String>,
}

/// One replica under a service's `evicted`.
#[derive(Debug, Serialize)]
pub(crate) struct EvictedDto {
    id: String,
    address: String,
    reason: String,
    evicted_at_unix_ms: u64,
    counters: CountersDto,
    transitions: Vec<TransitionDto>,
}

impl From<&Evicted> for EvictedDto {
    fn from(e: &Evicted) -> Self {
        EvictedDto {
            id: e.id.to_string(),
            address: e.address.to_string(),
            reason: e.reason_sentence(),
            evicted_at_unix_ms: e.evicted_at_unix_ms,
            counters: CountersDto {
                consecutive_failures: e.counters.consecutive_failures,
                requests: e.counters.requests,
                failures: e.counters.failures,
                last_failure: e.last_failure.map(|c| c.to_string()),
            },
            transitions: e
                .transitions
                .to_vec()
                .iter()
                .map(TransitionDto::from)
                .collect(),
        }
    }
}

/// One service in `GET /registry`.
#[derive(Debug, Serialize)]
pub(crate) struct ServiceDto {
    /// While self-preservation holds the service's expired leases: when the hold ends (wall clock,
    /// milliseconds since the Unix epoch); `null` otherwise.
    pub(crate) preserving_until_unix_ms: Option<u64>,
    pub(crate) replicas: Vec<ReplicaDto>,
    /// Replicas evicted (failures, lapsed leases) within `eviction.probation_memory`, most recent first.
    pub(crate) evicted: Vec<EvictedDto>,
    /// Retries this gateway did not send because the service's retry budget was spent.
    pub(crate) retries_refused_by_budget: u64,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `GET /registry`.
#[derive(Debug, Serialize)]
pub(crate) struct RegistryDto {
    pub(crate) store: crate::store::StoreStatus,
    pub(crate) services: BTreeMap<String, ServiceDto>,
}
