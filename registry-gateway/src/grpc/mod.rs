//! gRPC listener (hyper, h2c, or HTTP/2 over TLS with ALPN `h2` when `tls` is set): the gateway's own
//! `registry.v1.Registry` and `grpc.health.v1.Health` services, and a transparent proxy for every other
//! call, on the same registry and policy as HTTP.
//!
//! gRPC cannot go through actix-web (no HTTP/2 trailers), so it has its own listener on the tokio runtime.

mod attempt;
mod client_body;
pub(crate) mod convert;
mod observed;
mod proxy;
mod registry_api;
mod route;
mod status;
mod upstream;
mod watcher;

pub use proxy::ROUTE_HEADER;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use registry_proto::registry::v1::registry_server::RegistryServer;
use tokio::sync::watch;
use tonic::codegen::Service as _;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};

use crate::admin::ApiTokens;
use crate::registry::{OwnListeners, Registry};
use crate::store::Shared;

/// Every response body the listener sends.
pub(crate) type GrpcBody =
    http_body_util::combinators::UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// gRPC proxy settings.
#[derive(Debug, Clone)]
pub struct GrpcSettings {
    /// Attempts per call (only a call that never left moves on).
    pub max_attempts: u32,
    /// TCP connect + HTTP/2 handshake timeout per replica.
    pub connect_timeout: Duration,
    /// Time to the response head when the call has no `grpc-timeout`.
    pub request_timeout: Duration,
    /// This gateway's `Via` name (loop protection).
    pub instance_id: crate::proxy::InstanceId,
    /// Most `Via` entries a call may carry.
    pub max_hops: u32,
    /// Peers whose `X-Forwarded-For` is kept and appended to.
    pub trusted_proxies: crate::proxy::TrustedProxies,
    /// Open client connections at most; past it, new ones wait in the listen backlog (at least 1).
    pub max_connections: usize,
    /// One access-log line per call (`log.access`); read per call.
    pub access_log: bool,
    /// Trust and client certificate for `https://` replicas (`upstream.tls`); new connections take it.
    pub upstream_tls: crate::tls::UpstreamTls,
}

/// Longest TLS handshake a client of the gRPC listener gets.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct GrpcState {
    pub(crate) registry: Arc<Registry>,
    pub(crate) shared: Shared,
    /// Replaced by a config reload; a call keeps the snapshot it started with.
    pub(crate) settings: crate::live::Live<GrpcSettings>,
    pub(crate) connections: upstream::Connections,
    /// Metric handles of calls for no known service.
    pub(crate) unknown: Arc<crate::observe::ServiceHandles>,
    registry_server: RegistryServer<registry_api::RegistryApi>,
    health_server: HealthServer<HealthService>,
}

/// Serves gRPC on `listener` until `shutdown` turns true, then lets open calls finish.
///
/// `tokens` guard the registration API as on HTTP; registering one of `own_listeners` is refused.
/// `tokens` and `settings` are live: a config reload replaces them. With `tls` every connection
/// starts with a TLS handshake offering ALPN `h2` (its certificate reloads with the config).
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<crate::tls::ListenerTls>,
    registry: Arc<Registry>,
    shared: Shared,
    tokens: crate::live::Live<ApiTokens>,
    own_listeners: OwnListeners,
    settings: crate::live::Live<GrpcSettings>,
    mut shutdown: watch::Receiver<bool>,
) {
    let reporter = HealthReporter::new();
    reporter
        .set_serving::<RegistryServer<registry_api::RegistryApi>>()
        .await;
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let health_server = HealthServer::new(HealthService::from_health_reporter(reporter));
    // One permit per open client connection: with none left, stop accepting until one closes.
    let permits = Arc::new(tokio::sync::Semaphore::new(
        settings.load().max_connections.max(1),
    ));
    let state = Arc::new(GrpcState {
        registry: Arc::clone(&registry),
        shared,
        settings,
        connections: upstream::Connections::default(),
        unknown: Arc::new(crate::observe::ServiceHandles::new(
            registry.metrics(),
            crate::observe::UNKNOWN_SERVICE,
        )),
        registry_server: RegistryServer::new(registry_api::RegistryApi {
            registry,
            tokens,
            own_listeners,
        }),
        health_server,
    });
    let acceptor =
        tls.map(|t| tokio_rustls::TlsAcceptor::from(t.server_config(&[crate::tls::ALPN_H2])));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(p) => p,
                // Never closed: stop serving if it somehow were.
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "gRPC accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        let stop = shutdown.clone();
        let acceptor = acceptor.clone();
        connections.spawn(async move {
            // Held until the connection ends.
            let _permit = permit;
            let Some(acceptor) = acceptor else {
                return serve_connection(stream, peer, state, stop).await;
            };
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => serve_connection(tls, peer, state, stop).await,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake with a gRPC client failed");
                }
                Err(_) => tracing::debug!(%peer, "TLS handshake with a gRPC client timed out"),
            }
        });
        while connections.try_join_next().is_some() {}
    }
    // Open calls get a bounded time to finish.
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}

/// Serves one client connection (h2) until it ends, or gracefully once `stop` changes.
async fn serve_connection<T>(
    io: T,
    peer: SocketAddr,
    state: Arc<GrpcState>,
    mut stop: watch::Receiver<bool>,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert::<SocketAddr>(peer);
        dispatch(req, Arc::clone(&state))
    });
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn dispatch(
    req: Request<Incoming>,
    state: Arc<GrpcState>,
) -> Result<Response<GrpcBody>, Infallible> {
    let path = req.uri().path();
    if path.starts_with("/registry.v1.Registry/") {
        let resp = state.registry_server.clone().call(req).await?;
        return Ok(resp.map(|b| b.map_err(Into::into).boxed_unsync()));
    }
    if path.starts_with("/grpc.health.v1.Health/") {
        let resp = state.health_server.clone().call(req).await?;
        return Ok(resp.map(|b| b.map_err(Into::into).boxed_unsync()));
    }
    Ok(proxy::forward(req, state).await)
}
