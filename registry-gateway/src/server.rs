//! Builds the gateway from a [`Config`] and runs its listener and background tasks until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App};

use crate::admin::{self, AdminSettings, ApiTokens, StreamShutdown};
use crate::clock;
use crate::config::{Config, ConfigError};
use crate::framing::{self, ListenerSettings, ReleaseNext};
use crate::grpc::{self, GrpcSettings};
use crate::head_limits::{HeadLimits, LiveHeadLimits};
use crate::live::Live;
use crate::proxy::{self, InstanceId, Proxy, ProxySettings};
use crate::registry::{is_local_ip, Listener, OwnListeners, Registry, ReplicaAddress, ServiceName};
use crate::store::{RedisSettings, Shared, StoreKind};
use crate::tls::{ListenerTls, UpstreamTls, ALPN_H2, ALPN_HTTP1};

mod reload;

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
            registry.add_static(service, address, now);
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

/// Binds one listener; the error names it and its address: `cannot listen on 127.0.0.1:8080 (HTTP):
/// address already in use`.
fn bind(kind: &str, addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(addr).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::AddrInUse => "address already in use".to_owned(),
            std::io::ErrorKind::AddrNotAvailable => {
                "no interface of this machine has that address".to_owned()
            }
            std::io::ErrorKind::PermissionDenied => {
                "permission denied (ports below 1024 need privileges)".to_owned()
            }
            _ => e.to_string(),
        };
        std::io::Error::new(e.kind(), format!("cannot listen on {addr} ({kind}): {why}"))
    })
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

/// Refuses a static replica that is one of the gateway's own listeners, naming `services.<name>`.
fn check_static(
    own: &OwnListeners,
    replicas: &[(ServiceName, ReplicaAddress)],
) -> Result<(), ConfigError> {
    for (service, address) in replicas {
        own.check(address, is_local_ip)
            .map_err(|e| ConfigError::Invalid {
                field: format!("services.{service}"),
                message: e.to_string(),
            })?;
    }
    Ok(())
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

/// Every listener, for the own-address check.
fn own_listeners(http: SocketAddr, grpc: SocketAddr, admin: Option<SocketAddr>) -> Vec<Listener> {
    let mut all = vec![
        Listener {
            kind: "HTTP",
            addr: http,
        },
        Listener {
            kind: "gRPC",
            addr: grpc,
        },
    ];
    all.extend(admin.map(|addr| Listener {
        kind: "admin",
        addr,
    }));
    all
}

/// The listeners that serve the registration API: the admin one when set (else the HTTP one), and gRPC.
fn registration_listeners(
    http: SocketAddr,
    grpc: SocketAddr,
    admin: Option<SocketAddr>,
) -> Vec<Listener> {
    let http = match admin {
        Some(addr) => Listener {
            kind: "admin",
            addr,
        },
        None => Listener {
            kind: "HTTP",
            addr: http,
        },
    };
    vec![
        http,
        Listener {
            kind: "gRPC",
            addr: grpc,
        },
    ]
}

/// The registration listeners worth a warning: registration is open and they are not on loopback.
fn exposed_registration(open: bool, registration: &[Listener]) -> Vec<Listener> {
    if !open {
        return Vec::new();
    }
    registration
        .iter()
        .copied()
        .filter(|l| !l.addr.ip().to_canonical().is_loopback())
        .collect()
}

/// File descriptors kept aside for listeners, upstream pools, Redis, logs.
const RESERVED_FDS: u64 = 256;

/// The most connections that fit `nofile` open files: two descriptors per connection (the client's and
/// its upstream) plus [`RESERVED_FDS`]; `configured` when it fits or the limit is unknown; at least 1.
fn effective_max_connections(configured: usize, nofile: Option<u64>) -> usize {
    let Some(limit) = nofile else {
        return configured;
    };
    let need = (configured as u64)
        .saturating_mul(2)
        .saturating_add(RESERVED_FDS);
    if need <= limit {
        return configured;
    }
    let fits = limit.saturating_sub(RESERVED_FDS) / 2;
    usize::try_from(fits).unwrap_or(usize::MAX).max(1)
}

/// Raises the soft open-files limit to the hard one, and returns `limits.max_connections` lowered to
/// fit it (with a warning naming the key) when it does not.
fn fit_max_connections(config: &Config) -> usize {
    let configured = config.limits.max_connections;
    let nofile = raise_nofile_limit();
    let effective = effective_max_connections(configured, nofile);
    if effective < configured {
        tracing::warn!(
            configured,
            effective,
            "limits.max_connections = {configured} needs {} open files (2 per connection + {RESERVED_FDS}) \
             but RLIMIT_NOFILE is {}: using {effective}; raise the hard limit (ulimit -Hn) or lower \
             limits.max_connections",
            (configured as u64).saturating_mul(2).saturating_add(RESERVED_FDS),
            nofile.unwrap_or(0),
        );
    }
    effective
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit now in force, if known.
fn raise_nofile_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(soft) => Some(soft),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-files limit (RLIMIT_NOFILE)");
            current_nofile_limit()
        }
    }
}

#[cfg(unix)]
fn current_nofile_limit() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

#[cfg(not(unix))]
fn current_nofile_limit() -> Option<u64> {
    None
}

/// Removes replicas whose lease ran out, several times per TTL so removal is at most a fraction late.
/// The TTL is read at every round: a reload that changes it changes the pace.
async fn sweep_leases(registry: Arc<Registry>, shared: Shared) {
    loop {
        let ttl = registry.policy().lease_ttl;
        tokio::time::sleep((ttl / 10).clamp(Duration::from_millis(50), Duration::from_secs(1)))
            .await;
        // While the shared store is unreachable, renewals made through other gateways cannot arrive:
        // keep the last known registry instead of expiring it.
        registry.sweep_leases(clock::now(), shared.lease_expiry());
    }
}

/// Ends an outlier interval every `outlier.interval`: slow replicas are opened. Reads the policy at
/// every round, so a reload can turn ejection on or off and change the interval.
async fn eject_slow(registry: Arc<Registry>) {
    loop {
        // A busy runtime makes a longer interval, not two short ones.
        tokio::time::sleep(registry.policy().outlier.interval).await;
        registry.eject_slow(clock::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Lets every task that is ready run (the paused clock does not move meanwhile).
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_sweeper_removes_a_lapsed_lease_within_a_tenth_of_its_ttl_on_a_paused_clock() {
        use crate::registry::{Protocol, Registration, ReplicaAddress, ServiceName};
        let mut policy = Config::default().registry_policy();
        policy.lease_ttl = Duration::from_secs(10);
        let registry = Arc::new(Registry::new(policy));
        let reg = Registration {
            service: ServiceName::parse("orders").unwrap(),
            address: ReplicaAddress::parse("http://127.0.0.1:9001").unwrap(),
            protocol: Protocol::Http,
            grpc_services: Vec::new(),
            metadata: Default::default(),
        };
        registry.register(reg, clock::now());
        let sweeper = tokio::spawn(sweep_leases(Arc::clone(&registry), Shared::memory()));
        let replicas = || registry.service("orders").map_or(0, |s| s.len());
        // Rounds every ttl/10 = 1 s: at 9.5 s the lease still holds.
        tokio::time::advance(Duration::from_millis(9_500)).await;
        settle().await;
        assert_eq!(replicas(), 1);
        // It lapses at 10 s; the sweep at 11 s at the latest removes it.
        tokio::time::advance(Duration::from_millis(1_600)).await;
        settle().await;
        assert_eq!(replicas(), 0);
        sweeper.abort();
    }

    #[test]
    fn max_connections_fit_the_open_files_limit() {
        // 4096 connections need 2 * 4096 + 256 = 8448 descriptors.
        assert_eq!(effective_max_connections(4096, Some(8448)), 4096);
        assert_eq!(effective_max_connections(4096, Some(1_048_576)), 4096);
        assert_eq!(effective_max_connections(4096, Some(8447)), 4095);
        assert_eq!(effective_max_connections(4096, Some(1024)), 384);
        assert_eq!(effective_max_connections(4096, Some(512)), 128);
        // Never 0, even under a tiny limit.
        assert_eq!(effective_max_connections(4096, Some(100)), 1);
        assert_eq!(effective_max_connections(4096, Some(0)), 1);
        // Unknown or unlimited: as configured.
        assert_eq!(effective_max_connections(4096, None), 4096);
        assert_eq!(
            effective_max_connections(usize::MAX, Some(u64::MAX)),
            usize::MAX
        );
    }

    #[test]
    fn registration_is_served_by_the_admin_listener_when_there_is_one() {
        let (http, grpc, admin) = (sa("0.0.0.0:80"), sa("127.0.0.1:50050"), sa("127.0.0.1:81"));
        let kinds = |l: Vec<Listener>| l.iter().map(|l| (l.kind, l.addr)).collect::<Vec<_>>();
        assert_eq!(
            kinds(registration_listeners(http, grpc, None)),
            [("HTTP", http), ("gRPC", grpc)]
        );
        assert_eq!(
            kinds(registration_listeners(http, grpc, Some(admin))),
            [("admin", admin), ("gRPC", grpc)]
        );
        assert_eq!(
            kinds(own_listeners(http, grpc, Some(admin))),
            [("HTTP", http), ("gRPC", grpc), ("admin", admin)]
        );
    }

    #[test]
    fn open_registration_off_loopback_is_flagged() {
        let on = |addrs: &[&str]| {
            addrs
                .iter()
                .map(|a| Listener {
                    kind: "HTTP",
                    addr: sa(a),
                })
                .collect::<Vec<_>>()
        };
        let flagged = |open, addrs: &[&str]| {
            exposed_registration(open, &on(addrs))
                .iter()
                .map(|l| l.addr.to_string())
                .collect::<Vec<_>>()
        };
        assert!(flagged(true, &["127.0.0.1:8080", "[::1]:50050", "127.0.0.2:1"]).is_empty());
        assert_eq!(
            flagged(true, &["0.0.0.0:8080", "127.0.0.1:50050"]),
            ["0.0.0.0:8080"]
        );
        assert_eq!(
            flagged(true, &["[::]:1", "10.0.0.5:2"]),
            ["[::]:1", "10.0.0.5:2"]
        );
        assert_eq!(
            flagged(true, &["[::ffff:127.0.0.1]:1"]),
            Vec::<String>::new()
        );
        // With a registration token nothing is flagged.
        assert!(flagged(false, &["0.0.0.0:8080"]).is_empty());
    }
}
