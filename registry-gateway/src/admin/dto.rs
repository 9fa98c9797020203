//! JSON shapes of the admin API, converted to and from the registry's own types at this edge.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::GatewayError;
use crate::registry::{
    validate_grpc_service, Metadata, Protocol, Registration, ReplicaAddress, ReplicaView,
    ServiceName,
};

/// `POST /register` body.
#[derive(Debug, Deserialize)]
pub(crate) struct RegisterRequest {
    service: String,
    address: String,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    grpc_services: Vec<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

const MAX_METADATA_ENTRIES: usize = 64;
const MAX_METADATA_LEN: usize = 1024;

fn field(field: &str, message: impl Into<String>) -> GatewayError {
    GatewayError::InvalidField {
        field: field.to_owned(),
        message: message.into(),
    }
}

impl TryFrom<RegisterRequest> for Registration {
    type Error = GatewayError;

    fn try_from(r: RegisterRequest) -> Result<Self, GatewayError> {
        let service =
            ServiceName::parse(&r.service).map_err(|e| field("service", e.to_string()))?;
        let address =
            ReplicaAddress::parse(&r.address).map_err(|e| field("address", e.to_string()))?;
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
        check_grpc_services(protocol, &r.grpc_services).map_err(|m| field("grpc_services", m))?;
        if r.metadata.len() > MAX_METADATA_ENTRIES {
            return Err(field(
                "metadata",
                format!("at most {MAX_METADATA_ENTRIES} entries"),
            ));
        }
        if r.metadata
            .iter()
            .any(|(k, v)| k.is_empty() || k.len() > MAX_METADATA_LEN || v.len() > MAX_METADATA_LEN)
        {
            return Err(field(
                "metadata",
                format!("keys must be non-empty; keys and values at most {MAX_METADATA_LEN} bytes"),
            ));
        }
        Ok(Registration {
            service,
            address,
            protocol,
            grpc_services: r.grpc_services,
            metadata: r.metadata as Metadata,
        })
    }
}

/// gRPC service names: only for gRPC replicas, each valid, at most 64.
pub(crate) fn check_grpc_services(protocol: Protocol, names: &[String]) -> Result<(), String> {
    if protocol == Protocol::Http && !names.is_empty() {
        return Err("only gRPC replicas serve gRPC services: set protocol \"grpc\"".into());
    }
    if names.len() > 64 {
        return Err("at most 64 entries".into());
    }
    for n in names {
        validate_grpc_service(n).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `POST /register` answer.
#[derive(Debug, Serialize)]
pub(crate) struct RegisterResponse {
    pub(crate) id: String,
    pub(crate) service: String,
    pub(crate) address: String,
    pub(crate) heartbeat_interval_ms: u64,
    pub(crate) lease_ttl_ms: u64,
    pub(crate) on_probation: bool,
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
    state: crate::policy::BreakerState,
    state_reason: Option<String>,
    consecutive_failures: u32,
    requests: u64,
    failures: u64,
    last_failure: Option<String>,
    last_heartbeat_ms_ago: Option<u64>,
    registered_at_unix_ms: u64,
    metadata: Metadata,
}

impl From<ReplicaView> for ReplicaDto {
    fn from(v: ReplicaView) -> Self {
        ReplicaDto {
            id: v.id.to_string(),
            address: v.address,
            protocol: v.protocol,
            grpc_services: v.grpc_services,
            origin: v.origin,
            state: v.state,
            state_reason: v.state_reason,
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

/// One service in `GET /registry`.
#[derive(Debug, Serialize)]
pub(crate) struct ServiceDto {
    pub(crate) replicas: Vec<ReplicaDto>,
}

/// `GET /registry`.
#[derive(Debug, Serialize)]
pub(crate) struct RegistryDto {
    pub(crate) store: crate::store::StoreStatus,
    pub(crate) services: BTreeMap<String, ServiceDto>,
}
