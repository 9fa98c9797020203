//! The gateway's own `registry.v1.Registry` gRPC service: the registration API, plus `Watch`.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use registry_proto::registry::v1 as pb;
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};

use super::convert;
use crate::admin::ApiTokens;
use crate::clock;
use crate::error::GatewayError;
use crate::registry::{is_local_ip, OwnListeners, Registry, RegistryError, RegistryEvent};

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

    /// `ListServices` and `Watch`: the same rule as `GET /registry`.
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
        let out = self.registry.register(reg, clock::now());
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
        self.registry
            .heartbeat(&r.service, &r.id, clock::now())
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
        self.registry
            .deregister(&r.service, &r.id, clock::now())
            .map_err(not_found)?;
        Ok(Response::new(pb::DeregisterResponse {}))
    }

    async fn list_services(
        &self,
        req: Request<pb::ListServicesRequest>,
    ) -> Result<Response<pb::ListServicesResponse>, Status> {
        self.authorize_read(&req)?;
        Ok(Response::new(convert::services(
            &self.registry.services(),
            clock::now(),
        )))
    }

    type WatchStream = EventStream;

    async fn watch(&self, req: Request<pb::WatchRequest>) -> Result<Response<EventStream>, Status> {
        self.authorize_read(&req)?;
        // Subscribe before taking the snapshot, so that no change falls between the two.
        let rx = self.registry.subscribe();
        let registry = Arc::clone(&self.registry);
        let snapshot = snapshot_event(&registry);
        let first = futures_util::stream::once(async move { Ok(snapshot) });
        let rest = futures_util::stream::unfold((rx, registry), |(mut rx, registry)| async move {
            let event = loop {
                match rx.recv().await {
                    Ok(event) => {
                        if let Some(e) = change_event(event) {
                            break e;
                        }
                    }
                    // Fell behind: a fresh snapshot replaces the events that were lost.
                    Err(RecvError::Lagged(_)) => break snapshot_event(&registry),
                    Err(RecvError::Closed) => return None,
                }
            };
            Some((Ok(event), (rx, registry)))
        });
        Ok(Response::new(Box::pin(first.chain(rest))))
    }
}

fn snapshot_event(registry: &Registry) -> pb::RegistryEvent {
    let snap = convert::services(&registry.services(), clock::now());
    pb::RegistryEvent {
        event: Some(pb::registry_event::Event::Snapshot(snap)),
    }
}

/// The message of a change; `None` for what watchers do not see ([`RegistryEvent::is_watched`]).
fn change_event(event: RegistryEvent) -> Option<pb::RegistryEvent> {
    let now = clock::now();
    let e = match event {
        RegistryEvent::Added(r, _) => pb::registry_event::Event::Added(convert::replica(&r, now)),
        RegistryEvent::Removed(r, _, _) => {
            pb::registry_event::Event::Removed(convert::replica(&r, now))
        }
        RegistryEvent::StateChanged(r, t) => {
            let mut p = convert::replica(&r, now);
            p.state = convert::state(t.to) as i32;
            pb::registry_event::Event::StateChanged(p)
        }
        RegistryEvent::Renewed(_)
        | RegistryEvent::Attempt { .. }
        | RegistryEvent::ProbeSucceeded(_)
        | RegistryEvent::ProbeDone(_) => return None,
    };
    Some(pb::RegistryEvent { event: Some(e) })
}
