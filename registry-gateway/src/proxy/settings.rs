//! The HTTP proxy's settings, derived from the config; a reload swaps them, a request keeps its snapshot.

use std::time::Duration;

use super::{InstanceId, TrustedProxies};
use crate::policy::RetryPolicy;

/// Proxy settings, derived from the config.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Retry limits.
    pub retry: RetryPolicy,
    /// TCP connect timeout per attempt.
    pub connect_timeout: Duration,
    /// Time from the last request byte sent to the response head, per attempt.
    pub request_timeout: Duration,
    /// Longest wait for the next piece of a replica's response body.
    pub read_timeout: Duration,
    /// Longest time a replica may leave the request body unread.
    pub send_timeout: Duration,
    /// Longest wait for the next piece of the client's request body.
    pub body_timeout: Duration,
    /// Bodies with a `Content-Length` up to this size are buffered so they can be replayed.
    pub buffer_body_max: usize,
    /// Idle connections kept per replica and worker.
    pub max_idle_per_replica: usize,
    /// Most GET requests written together on one connection to a replica (`upstream.pipeline`).
    pub pipeline: usize,
    /// A batch holds at most this ÷ the replica's recent answer time requests (`upstream.pipeline_budget`).
    pub pipeline_budget: Duration,
    /// Largest request head, in bytes (431 past it).
    pub max_header_bytes: usize,
    /// Longest request target, in bytes (414 past it).
    pub max_uri_bytes: usize,
    /// This gateway's `Via` name.
    pub instance_id: InstanceId,
    /// Most `Via` entries a request may carry (508 past it).
    pub max_hops: u32,
    /// Peers whose `X-Forwarded-*` headers are kept.
    pub trusted_proxies: TrustedProxies,
    /// One access-log line per request (`log.access`); read per request.
    pub access_log: bool,
    /// Carry protocol upgrades, WebSocket or any other (`proxy.upgrades`); off, they are answered 403.
    pub upgrades: bool,
    /// A tunnel idle this long either way is closed (`proxy.upgrade_idle_timeout`).
    pub upgrade_idle_timeout: Duration,
    /// Trust and client certificate for `https://` replicas (`upstream.tls`); new connections take it.
    pub upstream_tls: crate::tls::UpstreamTls,
    /// Clients reach the listener over TLS (`tls`): `X-Forwarded-Proto: https`.
    pub client_tls: bool,
}

impl ProxySettings {
    /// The proxy's settings from a validated config, with its `upstream.tls` files already read.
    pub fn from_config(
        config: &crate::Config,
        instance_id: InstanceId,
        upstream_tls: crate::tls::UpstreamTls,
    ) -> Result<ProxySettings, String> {
        Ok(ProxySettings {
            retry: config.retry_policy(),
            connect_timeout: config.upstream.connect_timeout,
            request_timeout: config.upstream.request_timeout,
            read_timeout: config.upstream.read_timeout,
            send_timeout: config.upstream.send_timeout,
            body_timeout: config.client.body_timeout,
            buffer_body_max: config.retry.buffer_body_max,
            max_idle_per_replica: config.upstream.max_idle_per_replica,
            pipeline: config.upstream.pipeline,
            pipeline_budget: config.upstream.pipeline_budget,
            max_header_bytes: config.limits.max_header_bytes,
            max_uri_bytes: config.limits.max_uri_bytes,
            instance_id,
            max_hops: config.proxy.max_hops,
            trusted_proxies: TrustedProxies::parse(&config.forwarded.trusted_proxies)?,
            access_log: config.log.access,
            upgrades: config.proxy.upgrades,
            upgrade_idle_timeout: config.proxy.upgrade_idle_timeout,
            upstream_tls,
            client_tls: config.tls.enabled(),
        })
    }
}
