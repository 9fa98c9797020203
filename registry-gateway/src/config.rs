//! Typed gateway configuration: YAML file, then `GATEWAY_*` environment variables, then flags; validated at
//! start and at every reload.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::policy::{
    BreakerConfig, EvictionPolicy, OutlierConfig, PreservationPolicy, RetryBudgetConfig,
    RetryPolicy,
};
use crate::registry::{RegistryPolicy, ReplicaAddress, ServiceName};
use crate::store::StoreKind;

mod address;
pub mod diff;
mod fields;

pub use address::resolve as resolve_address;

/// A configuration problem, as one sentence naming the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The operating-system error (not found, permission denied...).
        source: std::io::Error,
    },
    /// The YAML (or an environment value) does not fit the schema.
    #[error("invalid config: {0}")]
    Parse(String),
    /// A value is out of range.
    #[error("invalid config: {field}: {message}")]
    Invalid {
        /// Dotted field name, such as `breaker.failure_threshold`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// A certificate and its key: both set or neither, neither empty. Reading them is [`crate::tls`]'s job.
fn check_pair(
    section: &str,
    cert: &Option<String>,
    key: &Option<String>,
) -> Result<(), ConfigError> {
    for (name, value) in [("cert_file", cert), ("key_file", key)] {
        if value.as_deref().is_some_and(|p| p.trim().is_empty()) {
            return Err(invalid(
                &format!("{section}.{name}"),
                "must not be empty when set",
            ));
        }
    }
    match (cert, key) {
        (Some(_), None) => Err(invalid(
            &format!("{section}.key_file"),
            format!("must be set with {section}.cert_file"),
        )),
        (None, Some(_)) => Err(invalid(
            &format!("{section}.cert_file"),
            format!("must be set with {section}.key_file"),
        )),
        _ => Ok(()),
    }
}

/// The whole gateway configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// HTTP listener (proxy, and the admin API unless `admin_listen` is set). Default `127.0.0.1:8080`.
    /// Host names (`localhost:8080`) are resolved when the config is loaded.
    #[serde(with = "address")]
    pub listen: SocketAddr,
    /// Optional separate listener for the admin and registration API. When set, `listen` serves only
    /// proxied traffic (plus `/healthz` and `/readyz`).
    #[serde(with = "address::optional")]
    pub admin_listen: Option<SocketAddr>,
    /// gRPC listener (h2c: registration API, health, gRPC proxy). Default `127.0.0.1:50050`.
    #[serde(with = "address")]
    pub grpc_listen: SocketAddr,
    /// Worker threads of the HTTP listener (actix workers) and of the gRPC runtime. Default: one per core.
    pub workers: Option<usize>,
    /// Circuit breaker per replica.
    pub breaker: BreakerSection,
    /// Eviction of failing replicas.
    pub eviction: EvictionSection,
    /// Ejection of slow replicas.
    pub outlier: OutlierSection,
    /// Registration leases.
    pub lease: LeaseSection,
    /// Retry of failed attempts on the next replica.
    pub retry: RetrySection,
    /// Connections to replicas.
    pub upstream: UpstreamSection,
    /// Static replicas: service name to replica URLs. Never expire; still breaker-protected.
    pub services: BTreeMap<String, Vec<String>>,
    /// Registration API authentication.
    pub auth: AuthSection,
    /// Request size and connection limits.
    pub limits: LimitsSection,
    /// Timeouts on the client side of the gateway.
    pub client: ClientSection,
    /// Proxy behaviour: loop protection.
    pub proxy: ProxySection,
    /// Which peers may set `X-Forwarded-*`.
    pub forwarded: ForwardedSection,
    /// `memory` (default: this gateway only) or `redis://host:port/db` (shared by every gateway on it).
    pub store: StoreKind,
    /// Redis tuning (with a `redis://` store).
    pub redis: RedisSection,
    /// Logging: level, format, access log.
    pub log: LogSection,
    /// TLS on the HTTP, admin and gRPC listeners (off unless both files are set).
    pub tls: TlsSection,
}

mod sections;
mod source;
mod validate;

pub use sections::*;
pub use source::{env_name, keys, ConfigSource, Loaded, Overrides, NON_CONFIG_VARS};

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: None,
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 50050)),
            workers: None,
            breaker: BreakerSection::default(),
            eviction: EvictionSection::default(),
            outlier: OutlierSection::default(),
            lease: LeaseSection::default(),
            retry: RetrySection::default(),
            upstream: UpstreamSection::default(),
            services: BTreeMap::new(),
            auth: AuthSection::default(),
            limits: LimitsSection::default(),
            client: ClientSection::default(),
            proxy: ProxySection::default(),
            forwarded: ForwardedSection::default(),
            store: StoreKind::Memory,
            redis: RedisSection::default(),
            log: LogSection::default(),
            tls: TlsSection::default(),
        }
    }
}

impl Config {
    /// The static replicas, validated.
    pub fn static_replicas(&self) -> Vec<(ServiceName, ReplicaAddress)> {
        self.services
            .iter()
            .flat_map(|(name, urls)| {
                urls.iter().filter_map(move |u| {
                    Some((
                        ServiceName::parse(name).ok()?,
                        ReplicaAddress::parse(u).ok()?,
                    ))
                })
            })
            .collect()
    }

    /// The registry's policy derived from this config.
    pub fn registry_policy(&self) -> RegistryPolicy {
        RegistryPolicy {
            breaker: BreakerConfig {
                failure_threshold: self.breaker.failure_threshold,
                open_timeout: self.breaker.open_timeout,
                // A probe is an ordinary request: it cannot take longer than connect + response timeouts.
                probe_timeout: self.upstream.connect_timeout + self.upstream.request_timeout,
                failure_ratio: self.breaker.failure_ratio,
                min_requests: self.breaker.min_requests,
                window: self.breaker.window,
                half_open_probes: self.breaker.half_open_probes,
            },
            eviction: EvictionPolicy {
                failure_threshold: self.eviction.failure_threshold,
            },
            lease_ttl: self.lease.ttl,
            heartbeat_interval: self.lease.heartbeat_interval,
            probation_memory: self.eviction.probation_memory,
            retry_budget: self.retry_budget(),
            preservation: PreservationPolicy::new(
                self.lease.preservation_ratio,
                self.lease.preservation_max(),
                self.lease.ttl,
                self.lease.heartbeat_interval,
            ),
            outlier: OutlierConfig {
                enabled: self.outlier.enabled,
                latency_factor: self.outlier.latency_factor,
                min_requests: self.outlier.min_requests,
                interval: self.outlier.interval,
            },
        }
    }

    /// The retry budget of each service, `None` when `retry.budget.enabled` is false.
    pub fn retry_budget(&self) -> Option<RetryBudgetConfig> {
        let b = &self.retry.budget;
        b.enabled.then_some(RetryBudgetConfig {
            ratio: b.ratio,
            min_per_second: b.min_per_second,
            window: b.window,
        })
    }

    /// Worker threads: `workers`, or one per core.
    pub fn worker_threads(&self) -> usize {
        self.workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.retry.max_attempts,
        }
    }
}

/// Durations as human strings: `"10s"`, `"500ms"`, `"1m 30s"`.
mod duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|_| {
            serde::de::Error::custom(format!("expected {}, got \"{s}\"", super::fields::DURATION))
        })
    }

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

/// An optional duration: absent (or `null`) is `None`, else a string as in [`duration`].
mod optional_duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => humantime::parse_duration(&s).map(Some).map_err(|_| {
                serde::de::Error::custom(format!(
                    "expected {}, got \"{s}\"",
                    super::fields::DURATION
                ))
            }),
        }
    }

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod env_tests;
#[cfg(test)]
mod tests;
