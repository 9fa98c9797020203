//! The gateway's own `registry.v1.Registry` gRPC service: the registration API, the listings
//! (`ListServices`, `StreamServices`) and `Watch`.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use registry_proto::registry::v1 as pb;
use tonic::{Request, Response, Status};

use super::convert;
use super::watcher::Watcher;
use crate::admin::ApiTokens;
use crate::clock;
use crate::error::GatewayError;
use crate::registry::{
    is_local_ip, Deregister, Heartbeat, Listing, OwnListeners, Register, Registry, RegistryError,
};

/// Serves `registry.v1.Registry` on the shared registry.
pub(crate) struct RegistryApi {
    pub(crate) registry: Arc<Registry>,
    pub(crate) tokens: crate::live::Live<ApiTokens>,
    /// The gateway's own listeners: registering one of them is refused.
    pub(crate) own_listeners: OwnListeners,
}

fn authorization<T>(req: &Request<T>) -> Option<&str> {
    req.metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
}

fn unauthenticated(_: GatewayError) -> Status {
    Status::unauthenticated("missing or invalid bearer token")
}

impl RegistryApi {
    /// Register, heartbeat, deregister: the registration token, when one is set.
    fn authorize<T>(&self, req: &Request<T>) -> Result<(), Status> {
        self.tokens
            .load()
            .check_write(authorization(req))
            .map_err(unauthenticated)
    }

    /// `ListServices`, `StreamServices` and `Watch`: the same rule as `GET /registry`.
    fn authorize_read<T>(&self, req: &Request<T>) -> Result<(), Status> {
        self.tokens
            .load()
            .check_read(authorization(req))
            .map_err(unauthenticated)
    }
}

fn not_found(e: RegistryError) -> Status {
    match e {
        RegistryError::StaticReplica(_) => Status::failed_precondition(e.to_string()),
        _ => Status::not_found(e.to_string()),
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::RegistryEvent, Status>> + Send>>;
type PartStream = Pin<Box<dyn Stream<Item = Result<pb::ServicePart, Status>> + Send>>;

#[tonic::async_trait]
impl pb::registry_server::Registry for RegistryApi {
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        self.authorize(&req)?;
        let reg = convert::registration(req.into_inner())?;
        self.own_listeners
            .check(&reg.address, is_local_ip)
            .map_err(|e| Status::invalid_argument(format!("address: {e}")))?;
        let out = self.registry.execute(Register(reg), clock::now());
        let p = self.registry.policy();
        Ok(Response::new(pb::RegisterResponse {
            id: out.replica.id().to_string(),
            created: out.created,
            heartbeat_interval_ms: p.heartbeat_interval.as_millis() as u64,
            lease_ttl_ms: p.lease_ttl.as_millis() as u64,
            on_probation: out.on_probation,
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        self.authorize(&req)?;
        let r = req.into_inner();
        let heartbeat = Heartbeat {
            service: &r.service,
            id: &r.id,
        };
        self.registry
            .execute(heartbeat, clock::now())
            .map_err(not_found)?;
        let p = self.registry.policy();
        Ok(Response::new(pb::HeartbeatResponse {
            lease_ttl_ms: p.lease_ttl.as_millis() as u64,
            heartbeat_interval_ms: p.heartbeat_interval.as_millis() as u64,
        }))
    }

    async fn deregister(
        &self,
        req: Request<pb::DeregisterRequest>,
    ) -> Result<Response<pb::DeregisterResponse>, Status> {
        self.authorize(&req)?;
        let r = req.into_inner();
        let deregister = Deregister {
            service: &r.service,
            id: &r.id,
        };
        self.registry
            .execute(deregister, clock::now())
            .map_err(not_found)?;
        Ok(Response::new(pb::DeregisterResponse {}))
    }

    async fn list_services(
        &self,
        req: Request<pb::ListServicesRequest>,
    ) -> Result<Response<pb::ListServicesResponse>, Status> {
        self.authorize_read(&req)?;
        let filter = convert::filter(req.get_ref())?;
        // One message: every part of a service in one piece.
        let listing = Listing::new(&self.registry, &filter, usize::MAX);
        Ok(Response::new(convert::services(listing)))
    }

    type StreamServicesStream = PartStream;

    async fn stream_services(
        &self,
        req: Request<pb::ListServicesRequest>,
    ) -> Result<Response<PartStream>, Status> {
        self.authorize_read(&req)?;
        let filter = convert::filter(req.get_ref())?;
        let max = convert::part_size(req.get_ref().max_replicas_per_part);
        let listing = Listing::new(&self.registry, &filter, max);
        // An iterator, not a task filling a channel: the next part is made only when tonic polls for
        // it, that is when the connection has room to send it (tonic gathers a few tens of KiB of
        // messages per HTTP/2 frame batch, no more).
        let parts = futures_util::stream::iter(listing.map(|sp| Ok(convert::part(&sp))));
        Ok(Response::new(Box::pin(parts)))
    }

    type WatchStream = EventStream;

    async fn watch(&self, req: Request<pb::WatchRequest>) -> Result<Response<EventStream>, Status> {
        self.authorize_read(&req)?;
        let r = req.into_inner();
        let in_parts = r
            .snapshot_in_parts
            .then(|| convert::part_size(r.max_replicas_per_part));
        let watcher = Watcher::new(Arc::clone(&self.registry), in_parts);
        let events = futures_util::stream::unfold(watcher, |mut w| async move {
            let event = w.next_event().await?;
            Some((Ok(event), w))
        });
        Ok(Response::new(Box::pin(events)))
    }
}
