//! Protobuf ↔ registry types, at the gRPC edge only.

use std::time::Instant;

use registry_proto::registry::v1 as pb;
use tonic::Status;

use crate::policy::BreakerState;
use crate::registry::{Protocol, Registration, Replica, Service};

fn invalid(field: &str, message: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {message}"))
}

/// Validates a `RegisterRequest` into a [`Registration`]; `INVALID_ARGUMENT` names the bad field.
pub(crate) fn registration(r: pb::RegisterRequest) -> Result<Registration, Status> {
    let protocol = match pb::Protocol::try_from(r.protocol) {
        Ok(pb::Protocol::Unspecified | pb::Protocol::Http) => Protocol::Http,
        Ok(pb::Protocol::Grpc) => Protocol::Grpc,
        Err(_) => return Err(invalid("protocol", format!("unknown value {}", r.protocol))),
    };
    Registration::try_new(
        &r.service,
        &r.address,
        protocol,
        r.grpc_services,
        r.metadata.into_iter().collect(),
    )
    .map_err(|e| invalid(e.field, e.message))
}

fn protocol(p: Protocol) -> pb::Protocol {
    match p {
        Protocol::Http => pb::Protocol::Http,
        Protocol::Grpc => pb::Protocol::Grpc,
    }
}

pub(crate) fn state(s: BreakerState) -> pb::BreakerState {
    match s {
        BreakerState::Closed => pb::BreakerState::Closed,
        BreakerState::Open => pb::BreakerState::Open,
        BreakerState::HalfOpen => pb::BreakerState::HalfOpen,
    }
}

/// A replica as protobuf, at `now`.
pub(crate) fn replica(r: &Replica, now: Instant) -> pb::Replica {
    let v = r.view(now);
    pb::Replica {
        id: v.id.to_string(),
        service: r.service().to_string(),
        address: v.address,
        protocol: protocol(v.protocol) as i32,
        grpc_services: v.grpc_services,
        state: state(v.state) as i32,
        consecutive_failures: v.consecutive_failures,
        requests: v.requests,
        failures: v.failures,
        metadata: v.metadata.into_iter().collect(),
    }
}

/// Every service, as protobuf.
pub(crate) fn services(all: &[std::sync::Arc<Service>], now: Instant) -> pb::ListServicesResponse {
    pb::ListServicesResponse {
        services: all
            .iter()
            .map(|s| pb::Service {
                name: s.name().to_string(),
                replicas: s.replicas().iter().map(|r| replica(r, now)).collect(),
            })
            .collect(),
    }
}
