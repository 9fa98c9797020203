//! Builds the gateway from a [`Config`] and runs its listener and background tasks until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};

use crate::admin::{self, AdminSettings, RegistrationToken};
use crate::clock;
use crate::config::Config;
use crate::grpc::{self, GrpcSettings};
use crate::proxy::{self, InstanceId, Proxy, ProxySettings};
use crate::registry::Registry;
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
    /// Binds the listener and starts serving on the current tokio runtime.
    pub async fn start(config: Config) -> std::io::Result<Gateway> {
        let registry = Arc::new(Registry::new(config.registry_policy()));
        let instance_id = match &config.proxy.instance_id {
            Some(id) => InstanceId::parse(id).map_err(std::io::Error::other)?,
            None => InstanceId::random(),
        };
        let now = clock::now();
        for (service, address) in config.static_replicas() {
            registry.add_static(service, address, now);
        }
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
        let proxy = web::Data::new(Proxy::new(
            Arc::clone(&registry),
            shared.clone(),
            ProxySettings::from_config(&config, instance_id.clone())
                .map_err(std::io::Error::other)?,
        ));
        let admin_settings = web::Data::new(AdminSettings {
            token: config
                .auth
                .registration_token
                .clone()
                .map(RegistrationToken::new),
            registration_body_max: config.limits.registration_body_max,
        });
        let registry_data = web::Data::new(Arc::clone(&registry));
        let shared_data = web::Data::new(shared.clone());

        let listener = std::net::TcpListener::bind(config.listen)?;
        let http_addr = listener.local_addr()?;
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

        let grpc_listener = std::net::TcpListener::bind(config.grpc_listen)?;
        grpc_listener.set_nonblocking(true)?;
        let grpc_addr = grpc_listener.local_addr()?;
        let grpc_listener = tokio::net::TcpListener::from_std(grpc_listener)?;
        let (grpc_stop, grpc_stopped) = tokio::sync::watch::channel(false);
        let grpc = tokio::spawn(grpc::serve(
            grpc_listener,
            Arc::clone(&registry),
            shared.clone(),
            config
                .auth
                .registration_token
                .clone()
                .map(RegistrationToken::new),
            GrpcSettings {
                max_attempts: config.retry.max_attempts,
                connect_timeout: config.upstream.connect_timeout,
                request_timeout: config.upstream.request_timeout,
                instance_id: instance_id.clone(),
                max_hops: config.proxy.max_hops,
                trusted_proxies: crate::proxy::TrustedProxies::parse(
                    &config.forwarded.trusted_proxies,
                )
                .map_err(std::io::Error::other)?,
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
