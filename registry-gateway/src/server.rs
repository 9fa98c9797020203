//! Builds the gateway from a [`Config`] and runs its listener and background tasks until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};

use crate::admin::{self, AdminSettings, ApiTokens};
use crate::clock;
use crate::config::{Config, ConfigError};
use crate::grpc::{self, GrpcSettings};
use crate::proxy::{self, InstanceId, Proxy, ProxySettings};
use crate::registry::{is_local_ip, Listener, OwnListeners, Registry};
use crate::store::{RedisSettings, Shared, StoreKind};

/// A started gateway.
pub struct Gateway {
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    registry: Arc<Registry>,
    server: actix_web::dev::Server,
    sweeper: tokio::task::JoinHandle<()>,
    grpc: tokio::task::JoinHandle<()>,
    grpc_stop: tokio::sync::watch::Sender<bool>,
}

impl Gateway {
    /// Binds the listeners and starts serving on the current tokio runtime.
    ///
    /// A static replica (`services:`) that is one of the gateway's own listeners is refused with an
    /// [`std::io::ErrorKind::InvalidInput`] error wrapping a [`ConfigError`] that names `services.<name>`.
    pub async fn start(config: Config) -> std::io::Result<Gateway> {
        let registry = Arc::new(Registry::new(config.registry_policy()));
        let instance_id = match &config.proxy.instance_id {
            Some(id) => InstanceId::parse(id).map_err(std::io::Error::other)?,
            None => InstanceId::random(),
        };

        let listener = std::net::TcpListener::bind(config.listen)?;
        let http_addr = listener.local_addr()?;
        let grpc_listener = std::net::TcpListener::bind(config.grpc_listen)?;
        grpc_listener.set_nonblocking(true)?;
        let grpc_addr = grpc_listener.local_addr()?;
        let own_listeners = OwnListeners::new(own_listeners(http_addr, grpc_addr));

        let now = clock::now();
        for (service, address) in config.static_replicas() {
            own_listeners.check(&address, is_local_ip).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    ConfigError::Invalid {
                        field: format!("services.{service}"),
                        message: e.to_string(),
                    },
                )
            })?;
            registry.add_static(service, address, now);
        }
        let tokens = ApiTokens::new(
            config.auth.registration_token.clone(),
            config.auth.read_token.clone(),
        );
        let shared = match StoreKind::parse(&config.store).map_err(std::io::Error::other)? {
            StoreKind::Memory => Shared::memory(),
            StoreKind::Redis(url) => Shared::redis(
                &url,
                Arc::clone(&registry),
                RedisSettings {
                    resync_interval: config.redis.resync_interval,
                    command_timeout: config.redis.command_timeout,
                    failure_window: config.redis.failure_window,
                },
            )
            .map_err(std::io::Error::other)?,
        };
        let proxy = web::Data::new(Proxy {
            registry: Arc::clone(&registry),
            shared: shared.clone(),
            settings: ProxySettings::from_config(&config, instance_id.clone())
                .map_err(std::io::Error::other)?,
        });
        let admin_settings = web::Data::new(AdminSettings {
            tokens: tokens.clone(),
            registration_body_max: config.limits.registration_body_max,
            own_listeners: own_listeners.clone(),
        });
        let registry_data = web::Data::new(Arc::clone(&registry));
        let shared_data = web::Data::new(shared.clone());

        let workers = config.worker_threads();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(proxy.clone())
                .app_data(admin_settings.clone())
                .app_data(registry_data.clone())
                .app_data(shared_data.clone())
                .configure(admin::configure)
                .default_service(web::to(proxy::handle))
        })
        .workers(workers)
        .max_connections(config.limits.max_connections.div_ceil(workers).max(1))
        .client_request_timeout(config.client.header_timeout)
        .disable_signals()
        .shutdown_timeout(10)
        .backlog(4096)
        .listen(listener)?
        .run();

        let grpc_listener = tokio::net::TcpListener::from_std(grpc_listener)?;
        let (grpc_stop, grpc_stopped) = tokio::sync::watch::channel(false);
        let grpc = tokio::spawn(grpc::serve(
            grpc_listener,
            Arc::clone(&registry),
            shared.clone(),
            tokens,
            own_listeners,
            GrpcSettings {
                max_attempts: config.retry.max_attempts,
                connect_timeout: config.upstream.connect_timeout,
                request_timeout: config.upstream.request_timeout,
                instance_id: instance_id.clone(),
                max_hops: config.proxy.max_hops,
            },
            grpc_stopped,
        ));

        let sweeper = tokio::spawn(sweep_leases(
            Arc::clone(&registry),
            config.lease.ttl,
            shared,
        ));
        tracing::info!(%http_addr, %grpc_addr, workers, %instance_id, "registry-gateway listening");
        Ok(Gateway {
            http_addr,
            grpc_addr,
            registry,
            server,
            sweeper,
            grpc,
            grpc_stop,
        })
    }

    /// The HTTP listener's address (useful when the config asked for port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The gRPC listener's address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Serves until `shutdown` completes, then drains in-flight requests (up to 10 s) and returns.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        let handle = self.server.handle();
        let server = tokio::spawn(self.server);
        shutdown.await;
        tracing::info!("shutting down: draining in-flight requests");
        let _ = self.grpc_stop.send(true);
        handle.stop(true).await;
        let _ = self.grpc.await;
        self.sweeper.abort();
        server.await.map_err(std::io::Error::other)?
    }
}

/// Every listener, for the own-address check.
fn own_listeners(http: SocketAddr, grpc: SocketAddr) -> Vec<Listener> {
    vec![
        Listener {
            kind: "HTTP",
            addr: http,
        },
        Listener {
            kind: "gRPC",
            addr: grpc,
        },
    ]
}

/// Removes replicas whose lease ran out, several times per TTL so removal is at most a fraction late.
async fn sweep_leases(registry: Arc<Registry>, ttl: Duration, shared: Shared) {
    let period = (ttl / 10).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // While the shared store is unreachable, renewals made through other gateways cannot arrive:
        // keep the last known registry instead of expiring it.
        registry.sweep_leases(clock::now(), shared.leases_expire());
    }
}
