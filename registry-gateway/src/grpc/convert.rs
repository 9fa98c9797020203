//! Protobuf ↔ registry types, at the gRPC edge only.

use std::time::Instant;

use registry_proto::registry::v1 as pb;
use tonic::Status;

use crate::policy::BreakerState;
use crate::registry::{
    Listing, ListingFilter, Protocol, Registration, Replica, ReplicaFilter, ServicePart,
};

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

/// Replicas per part when the request leaves it at 0.
pub(crate) const DEFAULT_PART: usize = 256;
/// The most replicas a part may hold, whatever the request asks.
pub(crate) const MAX_PART: usize = 1024;

/// The part size a request asks for: 0 means [`DEFAULT_PART`], and at most [`MAX_PART`].
pub(crate) fn part_size(asked: u32) -> usize {
    match asked {
        0 => DEFAULT_PART,
        n => (n as usize).min(MAX_PART),
    }
}

/// The filters of a `ListServicesRequest`; `INVALID_ARGUMENT` names an unknown enum value.
pub(crate) fn filter(r: &pb::ListServicesRequest) -> Result<ListingFilter, Status> {
    let state = match pb::BreakerState::try_from(r.state) {
        Ok(pb::BreakerState::Unspecified) => None,
        Ok(pb::BreakerState::Closed) => Some(BreakerState::Closed),
        Ok(pb::BreakerState::Open) => Some(BreakerState::Open),
        Ok(pb::BreakerState::HalfOpen) => Some(BreakerState::HalfOpen),
        Err(_) => return Err(invalid("state", format!("unknown value {}", r.state))),
    };
    let protocol = match pb::Protocol::try_from(r.protocol) {
        Ok(pb::Protocol::Unspecified) => None,
        Ok(pb::Protocol::Http) => Some(Protocol::Http),
        Ok(pb::Protocol::Grpc) => Some(Protocol::Grpc),
        Err(_) => return Err(invalid("protocol", format!("unknown value {}", r.protocol))),
    };
    let services = (!r.services.is_empty()).then(|| r.services.clone());
    Ok(ListingFilter {
        services,
        replicas: ReplicaFilter { state, protocol },
    })
}

/// One part of a listing, as protobuf.
pub(crate) fn part(sp: &ServicePart) -> pb::ServicePart {
    pb::ServicePart {
        service: Some(pb::Service {
            name: sp.service.name().to_string(),
            replicas: sp.part.items.iter().map(|r| replica(r, sp.now)).collect(),
        }),
        part: sp.part.index,
        last: sp.part.last,
    }
}

/// A whole listing in one message (`ListServices`, and the snapshot of a `Watch` not in parts).
pub(crate) fn services(listing: Listing) -> pb::ListServicesResponse {
    let mut services: Vec<pb::Service> = Vec::new();
    for sp in listing {
        let replicas = sp.part.items.iter().map(|r| replica(r, sp.now));
        match services.last_mut() {
            Some(s) if sp.part.index > 0 => s.replicas.extend(replicas),
            _ => services.push(pb::Service {
                name: sp.service.name().to_string(),
                replicas: replicas.collect(),
            }),
        }
    }
    pb::ListServicesResponse { services }
}
