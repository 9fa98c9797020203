//! An HTTP listener: actix-web's application served through actix-http, with every HTTP/1 connection
//! behind a [`Gate`] (what `actix_web::HttpServer` does, plus the gate it has no hook for).
//!
//! With TLS the handshake comes first and the gate reads the decrypted bytes. A client that chose
//! `h2` by ALPN gets actix-http's HTTP/2 dispatcher, its bytes unframed by the gate (which follows
//! HTTP/1 framing only); every other connection is HTTP/1.1.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_http::error::DispatchError;
use actix_http::{HttpService, Protocol, Request, Response};
use actix_server::{Server, ServerBuilder};
use actix_service::{
    fn_service, map_config, IntoServiceFactory, ServiceFactory, ServiceFactoryExt,
};
use actix_web::body::MessageBody;
use actix_web::dev::{AppConfig, Service};

use actix_web::web::BytesMut;

use super::Gate;
use crate::proxy::FrontProxy;
use crate::tls::ClientIo;

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

/// Serves the application `factory` builds on `listener` until the returned server is stopped; over
/// TLS with `tls` (its ALPN may offer `h2` and `http/1.1`).
///
/// With `front`, plain (not TLS) connections are served by the front loop ([`super::front`]) until their
/// first request it does not serve; actix-http takes them from there.
pub fn serve<F, I, S, B>(
    name: &str,
    listener: TcpListener,
    settings: ListenerSettings,
    tls: Option<Arc<rustls::ServerConfig>>,
    front: Option<FrontProxy>,
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
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    Ok(builder
        .workers(settings.workers)
        .max_concurrent_connections(settings.max_connections_per_worker)
        .backlog(settings.backlog)
        .shutdown_timeout(10)
        .disable_signals()
        .listen(name, listener, move || {
            let shutdown = shutdown.clone();
            let signal = shutdown.clone();
            let http = HttpService::build()
                .client_request_timeout(header_timeout)
                .graceful_shutdown_signal(move || {
                    let signal = shutdown.clone();
                    async move { signal.notified().await }
                })
                .on_connect_ext(|io: &Gate<ClientIo>, ext| {
                    ext.insert(io.handle());
                })
                .finish(map_config(
                    factory()
                        .into_factory()
                        .map_err(|err| err.into().error_response()),
                    |_| AppConfig::default(),
                ));
            let acceptor = acceptor.clone();
            let front = front.clone();
            fn_service(move |mut io: actix_rt::net::TcpStream| {
                let peer = io.peer_addr().ok();
                let _ = io.set_nodelay(true);
                let acceptor = acceptor.clone();
                let front = front.clone();
                let signal = signal.clone();
                async move {
                    let io = match (acceptor, front) {
                        (None, Some(front)) => {
                            let mut read = BytesMut::new();
                            // Boxed: its state is freed at the hand-over, not kept beside actix-http's
                            // for the rest of the connection.
                            let left = Box::pin(super::front::serve(
                                &mut io,
                                &mut read,
                                peer,
                                &front,
                                header_timeout,
                                &signal,
                            ))
                            .await;
                            if left == super::front::Left::Closed {
                                // Nothing for actix-http: the connection is over.
                                return Err(DispatchError::Io(
                                    std::io::ErrorKind::ConnectionAborted.into(),
                                ));
                            }
                            // Only the bytes read: the read buffer's spare room is not kept.
                            let pending = BytesMut::from(&read[..]);
                            return Ok((
                                Gate::resume(ClientIo::Plain(io), pending),
                                Protocol::Http1,
                                peer,
                            ));
                        }
                        (None, None) => ClientIo::Plain(io),
                        (Some(acceptor), _) => {
                            ClientIo::Tls(Box::new(handshake(acceptor, io, header_timeout).await?))
                        }
                    };
                    Ok::<_, DispatchError>(if io.alpn_h2() {
                        (Gate::h2(io), Protocol::Http2, peer)
                    } else {
                        (Gate::new(io), Protocol::Http1, peer)
                    })
                }
            })
            .and_then(http)
        })?
        .run())
}

/// The server side of a TLS handshake, within `timeout`. A failure ends the connection, logged at debug
/// (scanners and clients that distrust the certificate are routine).
async fn handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    io: actix_rt::net::TcpStream,
    timeout: Duration,
) -> Result<tokio_rustls::server::TlsStream<actix_rt::net::TcpStream>, DispatchError> {
    let peer = io.peer_addr().ok();
    let result = match tokio::time::timeout(timeout, acceptor.accept(io)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "TLS handshake timed out",
        )),
    };
    result.map_err(|e| {
        tracing::debug!(peer = ?peer, error = %e, "TLS handshake with a client failed");
        DispatchError::Io(e)
    })
}
