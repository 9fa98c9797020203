//! Builds the gateway from a [`Config`] and runs its listener and background tasks until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::{web, App};

use crate::admin::{self, AdminSettings, ApiTokens, StreamShutdown};
use crate::clock;
use crate::config::{Config, ConfigError};
use crate::framing::{self, ListenerSettings, ReleaseNext};
use crate::grpc::{self, GrpcSettings};
use crate::head_limits::{HeadLimits, LiveHeadLimits};
use crate::live::Live;
use crate::proxy::{self, InstanceId, Proxy, ProxySettings};
use crate::registry::{AddStatic, OwnListeners, Registry};
use crate::store::{RedisSettings, Shared, StoreKind};
use crate::tls::{ListenerTls, UpstreamTls, ALPN_H2, ALPN_HTTP1};

mod background;
mod listeners;
mod open_files;
mod reload;

use background::{eject_slow, sweep_leases};
use listeners::{bind, check_static, exposed_registration, own_listeners, registration_listeners};
use open_files::fit_max_connections;
pub use reload::Reloader;

/// A started gateway.
pub struct Gateway {
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    registry: Arc<Registry>,
    server: actix_server::Server,
    admin_server: Option<actix_server::Server>,
    sweeper: tokio::task::JoinHandle<()>,
    outlier: Option<tokio::task::JoinHandle<()>>,
    grpc: tokio::task::JoinHandle<()>,
    grpc_stop: tokio::sync::watch::Sender<bool>,
    /// Ends the open event streams (`GET /registry/events`) at shutdown, before the drain.
    streams_stop: tokio::sync::watch::Sender<bool>,
    /// The shared store, whose background tasks stop with the listeners.
    store: Shared,
    max_connections: usize,
    instance_id: InstanceId,
    reloader: Reloader,
}

impl Gateway {
    /// Binds the listeners and starts serving on the current tokio runtime.
    ///
    /// Raises the open-files limit first, and lowers `limits.max_connections` to fit it if needed.
    /// A static replica (`services:`) that is one of the gateway's own listeners is refused with an
    /// [`std::io::ErrorKind::InvalidInput`] error wrapping a [`ConfigError`] that names `services.<name>`.
    pub async fn start(config: Config) -> std::io::Result<Gateway> {
        let max_connections = fit_max_connections(&config);
        let registry = Arc::new(Registry::new(config.registry_policy()));
        let instance_id = match &config.proxy.instance_id {
            Some(id) => InstanceId::parse(id).map_err(std::io::Error::other)?,
            None => InstanceId::random(),
        };

        let invalid_input =
            |e: ConfigError| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        let listener_tls = ListenerTls::load(&config.tls).map_err(invalid_input)?;
        let upstream_tls = UpstreamTls::load(&config.upstream.tls).map_err(invalid_input)?;
        let http_tls = listener_tls
            .as_ref()
            .map(|t| t.server_config(&[ALPN_H2, ALPN_HTTP1]));

        let listener = bind("HTTP", config.listen)?;
        let http_addr = listener.local_addr()?;
        let admin_listener = config.admin_listen.map(|a| bind("admin", a)).transpose()?;
        let admin_addr = admin_listener
            .as_ref()
            .map(std::net::TcpListener::local_addr)
            .transpose()?;
        let grpc_listener = bind("gRPC", config.grpc_listen)?;
        grpc_listener.set_nonblocking(true)?;
        let grpc_addr = grpc_listener.local_addr()?;
        let own_listeners = OwnListeners::new(own_listeners(http_addr, grpc_addr, admin_addr));

        let now = clock::now();
        let static_replicas = config.static_replicas();
        check_static(&own_listeners, &static_replicas)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        for (service, address) in static_replicas {
            registry.execute(AddStatic { service, address }, now);
        }
        let tokens = ApiTokens::new(
            config.auth.registration_token.clone(),
            config.auth.read_token.clone(),
        );
        let live_tokens = Live::new(tokens.clone());
        let registration_on = registration_listeners(http_addr, grpc_addr, admin_addr);
        for l in exposed_registration(tokens.registration_is_open(), &registration_on) {
            tracing::warn!(listener = %l.addr, kind = l.kind,
                "registration is unauthenticated (no auth.registration_token) and the {} listener {} is \
                 not on a loopback address: anyone who reaches it can register replicas", l.kind, l.addr);
        }

        let shared = match &config.store {
            StoreKind::Memory => Shared::memory(),
            StoreKind::Redis(url) => Shared::redis(
                url,
                Arc::clone(&registry),
                RedisSettings {
                    resync_interval: config.redis.resync_interval,
                    command_timeout: config.redis.command_timeout,
                    failure_window: config.redis.failure_window,
                    queue_capacity: crate::registry::QUEUE_CAPACITY,
                },
            )
            .map_err(std::io::Error::other)?,
        };
        let proxy = web::Data::new(Proxy::new(
            Arc::clone(&registry),
            shared.clone(),
            ProxySettings::from_config(&config, instance_id.clone(), upstream_tls.clone())
                .map_err(std::io::Error::other)?,
        ));
        let admin_settings = web::Data::new(AdminSettings {
            tokens: live_tokens.clone(),
            registration_body_max: Live::new(config.limits.registration_body_max),
            own_listeners: own_listeners.clone(),
        });
        let proxy_settings = proxy.settings.clone();
        let admin_settings_body_max = admin_settings.registration_body_max.clone();
        let registry_data = web::Data::new(Arc::clone(&registry));
        let shared_data = web::Data::new(shared.clone());
        let (streams_stop, streams) = StreamShutdown::channel();
        let streams = web::Data::new(streams);

        let workers = config.worker_threads();
        // With a separate admin listener, the main one proxies every path but the health endpoints.
        let api_here = admin_listener.is_none();
        let main_data = (
            admin_settings.clone(),
            registry_data.clone(),
            shared_data.clone(),
            streams.clone(),
        );
        let head_limits = LiveHeadLimits(Live::new(head_limits(&config)));
        // Plain proxied requests on the main listener skip actix-http (see `framing::front`).
        let front = proxy::FrontProxy::new(proxy.clone(), head_limits.0.clone());
        let server = framing::serve(
            "gateway-http",
            listener,
            ListenerSettings {
                workers,
                max_connections_per_worker: max_connections.div_ceil(workers).max(1),
                header_timeout: config.client.header_timeout,
                backlog: 4096,
            },
            http_tls.clone(),
            Some(front),
            {
                let head_limits = head_limits.clone();
                move || {
                    let (admin_settings, registry_data, shared_data, streams) = main_data.clone();
                    App::new()
                        .wrap(head_limits.clone())
                        .wrap(ReleaseNext)
                        .app_data(proxy.clone())
                        .app_data(admin_settings)
                        .app_data(registry_data)
                        .app_data(shared_data)
                        .app_data(streams)
                        .configure(if api_here {
                            admin::configure
                        } else {
                            admin::configure_health
                        })
                        .default_service(web::to(proxy::handle))
                }
            },
        )?;

        let admin_server = match admin_listener {
            None => None,
            Some(listener) => Some(framing::serve(
                "gateway-admin",
                listener,
                ListenerSettings {
                    // Registrations and heartbeats are small and rare next to proxied traffic.
                    workers: 1,
                    max_connections_per_worker: max_connections,
                    header_timeout: config.client.header_timeout,
                    backlog: 1024,
                },
                http_tls,
                None,
                {
                    let head_limits = head_limits.clone();
                    move || {
                        App::new()
                            .wrap(head_limits.clone())
                            .wrap(ReleaseNext)
                            .app_data(admin_settings.clone())
                            .app_data(registry_data.clone())
                            .app_data(shared_data.clone())
                            .app_data(streams.clone())
                            .configure(admin::configure_admin_listener)
                    }
                },
            )?),
        };

        let grpc_listener = tokio::net::TcpListener::from_std(grpc_listener)?;
        let (grpc_stop, grpc_stopped) = tokio::sync::watch::channel(false);
        let grpc_settings = Live::new(
            grpc_settings(&config, &instance_id, max_connections, upstream_tls)
                .map_err(std::io::Error::other)?,
        );
        if let Some(cert) = &config.tls.cert_file {
            let listeners = if admin_addr.is_some() {
                "HTTP, gRPC and admin"
            } else {
                "HTTP and gRPC"
            };
            tracing::info!("TLS on the {listeners} listeners: certificate {cert}");
        }
        let grpc = tokio::spawn(grpc::serve(
            grpc_listener,
            listener_tls.clone(),
            Arc::clone(&registry),
            shared.clone(),
            live_tokens.clone(),
            own_listeners.clone(),
            grpc_settings.clone(),
            grpc_stopped,
        ));

        let sweeper = tokio::spawn(sweep_leases(Arc::clone(&registry), shared.clone()));
        let outlier = Some(tokio::spawn(eject_slow(Arc::clone(&registry))));
        let reloader = Reloader {
            registry: Arc::clone(&registry),
            proxy: proxy_settings,
            grpc: grpc_settings,
            tokens: live_tokens,
            registration_body_max: admin_settings_body_max,
            head_limits: head_limits.0.clone(),
            own_listeners,
            instance_id: instance_id.clone(),
            max_connections,
            listener_tls,
            running: Arc::new(std::sync::Mutex::new(config)),
        };
        Ok(Gateway {
            http_addr,
            grpc_addr,
            admin_addr,
            registry,
            server,
            admin_server,
            sweeper,
            outlier,
            grpc,
            grpc_stop,
            streams_stop,
            store: shared,
            max_connections,
            instance_id,
            reloader,
        })
    }

    /// `limits.max_connections` in force (lowered at start to fit the open-files limit if needed).
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// This gateway's name in `Via`.
    pub fn instance_id(&self) -> &InstanceId {
        &self.instance_id
    }

    /// The handle that applies a reloaded config to this gateway while it runs.
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// The HTTP listener's address (useful when the config asked for port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The gRPC listener's address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The admin listener's address, when `admin_listen` is set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Serves until `shutdown` completes, then ends the open event streams, drains in-flight requests
    /// (up to 10 s) on every listener and returns.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        let handle = self.server.handle();
        let admin_handle = self.admin_server.as_ref().map(|s| s.handle());
        let server = tokio::spawn(self.server);
        let admin_server = self.admin_server.map(tokio::spawn);
        shutdown.await;
        tracing::info!("shutting down: draining in-flight requests");
        // An event stream never finishes by itself: end them now, not at the drain's 10 s limit.
        let _ = self.streams_stop.send(true);
        let _ = self.grpc_stop.send(true);
        let stop_admin = async {
            if let Some(h) = admin_handle {
                h.stop(true).await;
            }
        };
        tokio::join!(handle.stop(true), stop_admin);
        let _ = self.grpc.await;
        self.sweeper.abort();
        if let Some(outlier) = &self.outlier {
            outlier.abort();
        }
        self.store.stop().await;
        if let Some(admin) = admin_server {
            admin.await.map_err(std::io::Error::other)??;
        }
        server.await.map_err(std::io::Error::other)?
    }
}

/// The checks [`Gateway::start`] makes of a config before it serves, without binding anything: a static
/// replica that is one of the configured listeners is refused, and every TLS file must be readable and
/// each key must match its certificate (`--check-config`).
pub fn check_config(config: &Config) -> Result<(), ConfigError> {
    let own = OwnListeners::new(own_listeners(
        config.listen,
        config.grpc_listen,
        config.admin_listen,
    ));
    check_static(&own, &config.static_replicas())?;
    crate::tls::check(config)
}

/// The request-head limits of `config`.
fn head_limits(config: &Config) -> HeadLimits {
    HeadLimits {
        max_uri_bytes: config.limits.max_uri_bytes,
        max_header_bytes: config.limits.max_header_bytes,
    }
}

/// The gRPC listener's settings from `config`; `max_connections` is fixed at start.
fn grpc_settings(
    config: &Config,
    instance_id: &InstanceId,
    max_connections: usize,
    upstream_tls: UpstreamTls,
) -> Result<GrpcSettings, String> {
    Ok(GrpcSettings {
        max_attempts: config.retry.max_attempts,
        connect_timeout: config.upstream.connect_timeout,
        request_timeout: config.upstream.request_timeout,
        instance_id: instance_id.clone(),
        max_hops: config.proxy.max_hops,
        trusted_proxies: crate::proxy::TrustedProxies::parse(&config.forwarded.trusted_proxies)?,
        max_connections,
        access_log: config.log.access,
        upstream_tls,
    })
}

#[cfg(test)]
mod tests;
