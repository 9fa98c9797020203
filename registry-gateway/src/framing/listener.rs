//! An HTTP/1.1 listener: actix-web's application served through actix-http, with every connection
//! behind a [`Gate`] (what `actix_web::HttpServer` does, plus the gate it has no hook for).

use std::future::ready;
use std::net::TcpListener;
use std::time::Duration;

use actix_http::{HttpService, Request, Response};
use actix_server::{Server, ServerBuilder};
use actix_service::{
    fn_service, map_config, IntoServiceFactory, ServiceFactory, ServiceFactoryExt,
};
use actix_web::body::MessageBody;
use actix_web::dev::{AppConfig, Service};

use super::Gate;

/// How a listener serves its connections.
#[derive(Debug, Clone, Copy)]
pub struct ListenerSettings {
    /// Worker threads.
    pub workers: usize,
    /// Open connections per worker; past it, new ones wait in the backlog.
    pub max_connections_per_worker: usize,
    /// A whole request head must arrive within this (408 and close).
    pub header_timeout: Duration,
    /// Pending connections the kernel keeps.
    pub backlog: u32,
}

/// Serves the application `factory` builds on `listener` until the returned server is stopped.
pub fn serve<F, I, S, B>(
    name: &str,
    listener: TcpListener,
    settings: ListenerSettings,
    factory: F,
) -> std::io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let builder = ServerBuilder::default();
    let shutdown = builder.graceful_shutdown_signal();
    let header_timeout = settings.header_timeout;
    Ok(builder
        .workers(settings.workers)
        .max_concurrent_connections(settings.max_connections_per_worker)
        .backlog(settings.backlog)
        .shutdown_timeout(10)
        .disable_signals()
        .listen(name, listener, move || {
            let shutdown = shutdown.clone();
            let http = HttpService::build()
                .client_request_timeout(header_timeout)
                .graceful_shutdown_signal(move || {
                    let signal = shutdown.clone();
                    async move { signal.notified().await }
                })
                .on_connect_ext(|io: &Gate<actix_rt::net::TcpStream>, ext| {
                    ext.insert(io.handle());
                })
                .h1(map_config(
                    factory()
                        .into_factory()
                        .map_err(|err| err.into().error_response()),
                    |_| AppConfig::default(),
                ));
            fn_service(|io: actix_rt::net::TcpStream| {
                let peer = io.peer_addr().ok();
                let _ = io.set_nodelay(true);
                ready(Ok::<_, actix_http::error::DispatchError>((
                    Gate::new(io),
                    peer,
                )))
            })
            .and_then(http)
        })?
        .run())
}
