//! The gateway's registration API, over HTTP or (with the `grpc` feature) gRPC: one call, its answer
//! interpreted once.

#[cfg(feature = "grpc")]
mod grpc;
mod http;
pub(crate) mod https;

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

use crate::SdkError;

/// What the gateway answered.
#[derive(Debug)]
pub(crate) enum Answer<T> {
    /// It worked.
    Ok(T),
    /// The gateway does not know this replica (restarted, or evicted it): HTTP 404, gRPC NOT_FOUND.
    NotFound,
    /// Come back later (HTTP 429/503 with an optional `Retry-After`, gRPC RESOURCE_EXHAUSTED).
    Busy(Option<Duration>),
    /// Anything else.
    Err(SdkError),
}

/// The gateway's answer to a registration.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Registered {
    pub(crate) id: String,
    pub(crate) heartbeat_interval_ms: u64,
    pub(crate) lease_ttl_ms: u64,
}

/// What a registration sends, in both encodings.
#[derive(Debug, Clone)]
pub(crate) struct RegisterCall {
    /// The JSON body of `POST /register`.
    pub(crate) json: Bytes,
    /// The same as a gRPC request.
    #[cfg(feature = "grpc")]
    pub(crate) proto: registry_proto::registry::v1::RegisterRequest,
}

/// One gateway's registration API.
#[derive(Clone)]
pub(crate) enum GatewayApi {
    /// The HTTP listener (`http://host:8080` or `https://host:8443`).
    Http(http::HttpApi),
    /// The gRPC listener (`http://host:50050`).
    #[cfg(feature = "grpc")]
    Grpc(grpc::GrpcApi),
}

impl GatewayApi {
    /// The HTTP API at `base` (`tls` for an `https://` one).
    pub(crate) fn http(
        base: String,
        token: Option<String>,
        timeout: Duration,
        tls: Option<tokio_rustls::TlsConnector>,
    ) -> Self {
        GatewayApi::Http(http::HttpApi::new(base, token, timeout, tls))
    }

    /// The gRPC API at `base`.
    #[cfg(feature = "grpc")]
    pub(crate) fn grpc(
        base: String,
        token: Option<String>,
        timeout: Duration,
    ) -> Result<Self, SdkError> {
        Ok(GatewayApi::Grpc(grpc::GrpcApi::new(base, token, timeout)?))
    }

    /// The gateway's base URL.
    pub(crate) fn base(&self) -> &str {
        match self {
            GatewayApi::Http(a) => a.base(),
            #[cfg(feature = "grpc")]
            GatewayApi::Grpc(a) => a.base(),
        }
    }

    /// Registers (or renews).
    pub(crate) async fn register(&self, call: &RegisterCall) -> Answer<Registered> {
        match self {
            GatewayApi::Http(a) => a.register(&call.json).await,
            #[cfg(feature = "grpc")]
            GatewayApi::Grpc(a) => a.register(call.proto.clone()).await,
        }
    }

    /// Renews the lease.
    pub(crate) async fn heartbeat(&self, service: &str, id: &str) -> Answer<()> {
        match self {
            GatewayApi::Http(a) => a.heartbeat(service, id).await,
            #[cfg(feature = "grpc")]
            GatewayApi::Grpc(a) => a.heartbeat(service, id).await,
        }
    }

    /// Deregisters.
    pub(crate) async fn deregister(&self, service: &str, id: &str) -> Answer<()> {
        match self {
            GatewayApi::Http(a) => a.deregister(service, id).await,
            #[cfg(feature = "grpc")]
            GatewayApi::Grpc(a) => a.deregister(service, id).await,
        }
    }
}
