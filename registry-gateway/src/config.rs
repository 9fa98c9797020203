//! Typed gateway configuration: YAML file, then `GATEWAY_*` environment variables, then flags; validated at
//! start and at every reload.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_yaml_ng::{Mapping, Value};

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

/// `tls:` the listeners' certificate. Both files or neither; re-read at every reload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain, leaf first. Default unset (listeners speak plain HTTP and h2c).
    pub cert_file: Option<String>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the leaf certificate.
    pub key_file: Option<String>,
}

impl TlsSection {
    /// Whether the listeners speak TLS.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }
}

/// `upstream.tls:` how `https://` replicas are trusted, and the gateway's client certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamTlsSection {
    /// PEM file of one or more CA certificates trusted besides the platform's roots. Default unset.
    pub ca_file: Option<String>,
    /// PEM client certificate chain shown to replicas that ask for one (mTLS). With `key_file`.
    pub cert_file: Option<String>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (default).
    #[default]
    Text,
    /// One JSON object per line, every line.
    Json,
}

/// `log:`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// Which lines are written, as a tracing filter (`info`, `debug`, `info,registry_gateway=debug`).
    /// `GATEWAY_LOG` overrides it. Default `info`.
    pub level: String,
    /// `text` (default) or `json`.
    pub format: LogFormat,
    /// One access-log line per proxied request and gRPC call, at `info`. Default true.
    pub access: bool,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: "info".to_owned(),
            format: LogFormat::Text,
            access: true,
        }
    }
}

/// `redis:`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSection {
    /// Full resync from Redis this often, and after every reconnect. Default 5s.
    #[serde(with = "duration")]
    pub resync_interval: Duration,
    /// Time limit of one Redis command; past it Redis counts as down. Default 500ms.
    #[serde(with = "duration")]
    pub command_timeout: Duration,
    /// Failures counted in Redis age out after this long without a new one. Default 60s.
    #[serde(with = "duration")]
    pub failure_window: Duration,
}

impl Default for RedisSection {
    fn default() -> Self {
        RedisSection {
            resync_interval: Duration::from_secs(5),
            command_timeout: Duration::from_millis(500),
            failure_window: Duration::from_secs(60),
        }
    }
}

/// `breaker:`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerSection {
    /// Consecutive failures that open a replica's breaker. Default 3.
    pub failure_threshold: u32,
    /// How long an open breaker refuses requests before a half-open probe. Default 10s.
    #[serde(with = "duration")]
    pub open_timeout: Duration,
    /// Also open when failures / requests in the current window reach this (0 < ratio ≤ 1). Default: off.
    pub failure_ratio: Option<f64>,
    /// Requests a window needs before its ratio is judged. Default 3.
    pub min_requests: u32,
    /// While closed, the ratio's counts restart every window. Default 5s.
    #[serde(with = "duration")]
    pub window: Duration,
    /// Half-open: requests let through at once; that many successes close the breaker. Default 1.
    pub half_open_probes: u32,
}

/// `outlier:` slow replicas are opened like failing ones.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutlierSection {
    /// Whether slow replicas are ejected. Default true.
    pub enabled: bool,
    /// A replica whose median latency (to the response head) is at least this many times its peers'
    /// median is opened. Default 10; at least 2.
    pub latency_factor: f64,
    /// Successful answers a replica needs in one interval to be judged, or to be a peer. Default 20.
    pub min_requests: u32,
    /// Medians are taken over, and judged at the end of, each interval this long. Default 1s.
    #[serde(with = "duration")]
    pub interval: Duration,
}

impl Default for OutlierSection {
    fn default() -> Self {
        let d = OutlierConfig::default();
        OutlierSection {
            enabled: d.enabled,
            latency_factor: d.latency_factor,
            min_requests: d.min_requests,
            interval: d.interval,
        }
    }
}

/// `eviction:`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvictionSection {
    /// Consecutive failures that evict a registered replica. Default 5.
    pub failure_threshold: u32,
    /// How long an evicted replica is remembered so it returns on probation. Default 10m.
    #[serde(with = "duration")]
    pub probation_memory: Duration,
}

/// `lease:`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeaseSection {
    /// Without a heartbeat for this long a replica is removed. Default 15s.
    #[serde(with = "duration")]
    pub ttl: Duration,
    /// Interval told to replicas at registration. Default 5s.
    #[serde(with = "duration")]
    pub heartbeat_interval: Duration,
    /// Self-preservation: when more than this share of a service's registered replicas lapse at once,
    /// their leases are held instead of expired. 0 to 1; 1 turns it off. Default 0.5.
    pub preservation_ratio: f64,
    /// Longest such hold. Default (absent): 2 × `ttl`; `0s` turns self-preservation off.
    #[serde(with = "optional_duration")]
    pub preservation_max: Option<Duration>,
}

impl LeaseSection {
    /// `preservation_max`, or its default of two TTLs.
    pub fn preservation_max(&self) -> Duration {
        self.preservation_max.unwrap_or(2 * self.ttl)
    }
}

/// `retry:`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrySection {
    /// Attempts per request, the first included. Default 3.
    pub max_attempts: u32,
    /// Request bodies up to this size (with a `Content-Length`) are buffered so they can be replayed. Default 64 KiB.
    pub buffer_body_max: usize,
    /// How many retries a service may get, per gateway.
    pub budget: RetryBudgetSection,
}

/// `retry.budget:`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryBudgetSection {
    /// `false` turns the budget off: every retry the retry rules allow is sent. Default true.
    pub enabled: bool,
    /// Share of a service's requests of the window that may be retried, 0.0 to 1.0. Default 0.2.
    pub ratio: f64,
    /// Retries allowed per second whatever the traffic, so a quiet service still fails over. Default 3.
    pub min_per_second: u32,
    /// How long a request or retry counts, whole seconds from 1s to 60s. Default 10s.
    #[serde(with = "duration")]
    pub window: Duration,
}

impl Default for RetryBudgetSection {
    fn default() -> Self {
        let d = RetryBudgetConfig::default();
        RetryBudgetSection {
            enabled: true,
            ratio: d.ratio,
            min_per_second: d.min_per_second,
            window: d.window,
        }
    }
}

/// `upstream:`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamSection {
    /// TCP connect timeout. Default 1s.
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// Time from the last request byte sent to the response head (a slow upload is not the replica's
    /// slowness). Default 30s.
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// Longest wait for the next piece of a response body from a replica. Default 60s.
    #[serde(with = "duration")]
    pub read_timeout: Duration,
    /// Longest time a replica may leave the request body unread (it stopped reading). Default 60s.
    #[serde(with = "duration")]
    pub send_timeout: Duration,
    /// Idle keep-alive connections kept per replica and worker. Default 64.
    pub max_idle_per_replica: usize,
    /// TLS to `https://` replicas.
    pub tls: UpstreamTlsSection,
}

/// `auth:`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// When set, register, heartbeat and deregister need `Authorization: Bearer <token>`, and reads of the
    /// registry need a token too (this one, or `read_token`).
    pub registration_token: Option<String>,
    /// A read-only token for `GET /registry*` (Prometheus, dashboards). When set (even alone), reads need
    /// it or the registration token.
    pub read_token: Option<String>,
}

/// `client:`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientSection {
    /// Time a client has to send a whole request head; past it, 408 and close. Default 5s.
    #[serde(with = "duration")]
    pub header_timeout: Duration,
    /// Longest wait for the next piece of a request body; past it, 408. Default 60s.
    #[serde(with = "duration")]
    pub body_timeout: Duration,
}

impl Default for ClientSection {
    fn default() -> Self {
        ClientSection {
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(60),
        }
    }
}

/// `proxy:`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxySection {
    /// Most `Via` entries a request may carry (gateways it went through); past it, 508. Default 8.
    pub max_hops: u32,
    /// This gateway's name in `Via`; a request already carrying it is a loop (508). Default: random at start.
    pub instance_id: Option<String>,
    /// Carry protocol upgrades (WebSocket or any other `Upgrade` protocol but `h2c`) to the replicas;
    /// `false` answers them 403. Default true.
    pub upgrades: bool,
    /// A tunnel with no byte in either direction for this long is closed. Default 300s.
    #[serde(with = "duration")]
    pub upgrade_idle_timeout: Duration,
}

impl Default for ProxySection {
    fn default() -> Self {
        ProxySection {
            max_hops: 8,
            instance_id: None,
            upgrades: true,
            upgrade_idle_timeout: Duration::from_secs(300),
        }
    }
}

/// `forwarded:`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForwardedSection {
    /// Peers (CIDR, such as `127.0.0.1/32` or `10.0.0.0/8`) whose `X-Forwarded-*` headers are kept and
    /// appended to. From any other peer they are replaced. Default: none.
    pub trusted_proxies: Vec<String>,
}

/// `limits:`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// Largest accepted `POST /register` body. Default 64 KiB.
    pub registration_body_max: usize,
    /// Largest request head (request line and all headers); past it, 431. Default 32 KiB.
    pub max_header_bytes: usize,
    /// Longest request line target (path and query); past it, 414. Default 8 KiB.
    pub max_uri_bytes: usize,
    /// Open client connections per listener; past it, new connections wait in the listen backlog.
    /// Default 4096 (lowered at start to fit the file-descriptor limit).
    pub max_connections: usize,
}

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

impl Default for BreakerSection {
    fn default() -> Self {
        BreakerSection {
            failure_threshold: 3,
            open_timeout: Duration::from_secs(10),
            failure_ratio: None,
            min_requests: 3,
            window: Duration::from_secs(5),
            half_open_probes: 1,
        }
    }
}

impl Default for EvictionSection {
    fn default() -> Self {
        EvictionSection {
            failure_threshold: 5,
            probation_memory: Duration::from_secs(600),
        }
    }
}

impl Default for LeaseSection {
    fn default() -> Self {
        LeaseSection {
            ttl: Duration::from_secs(15),
            heartbeat_interval: Duration::from_secs(5),
            preservation_ratio: 0.5,
            preservation_max: None,
        }
    }
}

impl Default for RetrySection {
    fn default() -> Self {
        RetrySection {
            max_attempts: 3,
            buffer_body_max: 64 * 1024,
            budget: RetryBudgetSection::default(),
        }
    }
}

impl Default for UpstreamSection {
    fn default() -> Self {
        UpstreamSection {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            max_idle_per_replica: 64,
            tls: UpstreamTlsSection::default(),
        }
    }
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            registration_body_max: 64 * 1024,
            max_header_bytes: 32 * 1024,
            max_uri_bytes: 8 * 1024,
            max_connections: 4096,
        }
    }
}

/// Keys whose value is a mapping of the user's own names (so they have no sub-keys to list).
const MAP_KEYS: &[&str] = &["services"];

/// Every leaf key, dotted, in the order the config structs declare them; each can be set by
/// `GATEWAY_<KEY>` with dots as underscores, upper-cased. Read from the structs themselves (a default
/// config, serialized: a section is a mapping, anything else a key), so a new field is a new key.
pub fn keys() -> &'static [&'static str] {
    static KEYS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        fn walk(v: &Value, prefix: &str, out: &mut Vec<String>) {
            match v {
                Value::Mapping(m) if !MAP_KEYS.contains(&prefix) => {
                    for (k, v) in m {
                        let k = k.as_str().unwrap_or_default();
                        let key = if prefix.is_empty() {
                            k.to_owned()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        walk(v, &key, out);
                    }
                }
                _ => out.push(prefix.to_owned()),
            }
        }
        let mut out = Vec::new();
        // Serializing plain data into a YAML value cannot fail.
        if let Ok(v) = serde_yaml_ng::to_value(Config::default()) {
            walk(&v, "", &mut out);
        }
        // Built once per process: leaking the names gives the `&'static str` every caller keeps.
        out.into_iter()
            .map(|k| &*Box::leak(k.into_boxed_str()))
            .collect()
    })
}

/// `GATEWAY_*` variables that are not config keys: the config file path and the legacy log filter.
pub const NON_CONFIG_VARS: &[&str] = &["GATEWAY_CONFIG", "GATEWAY_LOG"];

/// The environment variable that sets a dotted key.
pub fn env_name(key: &str) -> String {
    format!("GATEWAY_{}", key.replace('.', "_").to_uppercase())
}

/// A loaded config and what loading it noticed.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated config.
    pub config: Config,
    /// The file it was read from; `None`: defaults and environment only.
    pub file: Option<PathBuf>,
    /// `GATEWAY_*` variables that set a key, sorted.
    pub applied_env: Vec<String>,
    /// `GATEWAY_*` variables that name no key (such as the `GATEWAY_PORT=tcp://…` Kubernetes adds for a
    /// Service named `gateway`): ignored, sorted, for one warning once logging is up.
    pub ignored_env: Vec<String>,
}

/// Values given on the command line, applied over the file and the environment (at start and on reload).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--admin-listen`.
    pub admin_listen: Option<String>,
    /// `--grpc-listen`.
    pub grpc_listen: Option<String>,
    /// `--store`.
    pub store: Option<String>,
}

/// Where the config comes from: a file (or `GATEWAY_CONFIG`, or none), the environment, flags. Kept so
/// that a reload reads the same file with the same environment and flags.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// `--config`.
    pub file: Option<PathBuf>,
    /// The environment as it was at start.
    pub env: Vec<(String, String)>,
    /// Command-line values.
    pub overrides: Overrides,
}

impl ConfigSource {
    /// Loads and validates the config, flags applied.
    pub fn load(&self) -> Result<Loaded, ConfigError> {
        let mut loaded = Config::load_env(self.file.as_deref(), self.env.iter().cloned())?;
        let c = &mut loaded.config;
        let o = &self.overrides;
        for (flag, value, slot) in [
            ("--listen", &o.listen, &mut c.listen),
            ("--grpc-listen", &o.grpc_listen, &mut c.grpc_listen),
        ] {
            if let Some(v) = value {
                *slot = address::resolve(v).map_err(|e| invalid(flag, e))?;
            }
        }
        if let Some(v) = &o.admin_listen {
            c.admin_listen = Some(address::resolve(v).map_err(|e| invalid("--admin-listen", e))?);
        }
        if let Some(store) = &o.store {
            c.store = StoreKind::parse(store).map_err(|e| invalid("--store", e))?;
        }
        Ok(loaded)
    }
}

impl Config {
    /// Loads the config: `file` (if any), then `GATEWAY_*` variables from `env`, validated.
    /// `GATEWAY_CONFIG` is the file path when `file` is `None`. See [`Config::load_env`] for the variables
    /// that were ignored.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        Config::load_env(file, env).map(|l| l.config)
    }

    /// [`Config::load`], also returning the file read and which `GATEWAY_*` variables were applied and
    /// which were ignored (they name no key). A known key with a bad value is an error naming the variable.
    pub fn load_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Loaded, ConfigError> {
        let env: BTreeMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("GATEWAY_"))
            .collect();
        let path = file
            .map(Path::to_path_buf)
            .or_else(|| env.get("GATEWAY_CONFIG").map(PathBuf::from));
        let mut root = match &path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                match serde_yaml_ng::from_str::<Value>(&text)
                    .map_err(|e| ConfigError::Parse(e.to_string()))?
                {
                    Value::Null => Value::Mapping(Mapping::new()),
                    v @ Value::Mapping(_) => v,
                    _ => {
                        return Err(ConfigError::Parse(
                            "the config file must be a YAML mapping".into(),
                        ))
                    }
                }
            }
            None => Value::Mapping(Mapping::new()),
        };
        // Dotted key → the variable that set it, to name the variable in an error.
        let mut from_env: BTreeMap<&str, String> = BTreeMap::new();
        let mut ignored_env = Vec::new();
        for (name, value) in &env {
            if NON_CONFIG_VARS.contains(&name.as_str()) {
                continue;
            }
            let Some(key) = keys().iter().find(|k| env_name(k) == *name) else {
                ignored_env.push(name.clone());
                continue;
            };
            let parsed = fields::env_value(key, value).map_err(|e| ConfigError::Invalid {
                field: name.clone(),
                message: e,
            })?;
            set_path(&mut root, key, parsed);
            from_env.insert(key, name.clone());
        }
        let name_field = |field: String| match from_env.get(field.as_str()) {
            Some(var) => format!("{var} ({field})"),
            None => field,
        };
        let config: Config = serde_path_to_error::deserialize(root.clone()).map_err(|e| {
            let (field, message) = fields::explain(&e, &root);
            match field {
                None => ConfigError::Parse(message),
                Some(field) => ConfigError::Invalid {
                    field: name_field(field),
                    message,
                },
            }
        })?;
        config.validate().map_err(|e| match e {
            ConfigError::Invalid { field, message } => ConfigError::Invalid {
                field: name_field(field),
                message,
            },
            other => other,
        })?;
        Ok(Loaded {
            config,
            file: path,
            applied_env: from_env.into_values().collect(),
            ignored_env,
        })
    }

    /// Checks ranges and cross-field rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.workers == Some(0) {
            return Err(invalid("workers", "must be at least 1"));
        }
        if self.breaker.failure_threshold == 0 {
            return Err(invalid("breaker.failure_threshold", "must be at least 1"));
        }
        if self.breaker.open_timeout.is_zero() {
            return Err(invalid("breaker.open_timeout", "must be longer than 0s"));
        }
        if let Some(r) = self.breaker.failure_ratio {
            if !(r > 0.0 && r <= 1.0) {
                return Err(invalid(
                    "breaker.failure_ratio",
                    "must be a number above 0 and at most 1, such as 0.6",
                ));
            }
        }
        if self.breaker.min_requests == 0 {
            return Err(invalid("breaker.min_requests", "must be at least 1"));
        }
        if self.breaker.window.is_zero() {
            return Err(invalid("breaker.window", "must be longer than 0s"));
        }
        if !(1..=100).contains(&self.breaker.half_open_probes) {
            return Err(invalid(
                "breaker.half_open_probes",
                "must be between 1 and 100",
            ));
        }
        if self.eviction.failure_threshold < self.breaker.failure_threshold {
            return Err(invalid(
                "eviction.failure_threshold",
                format!(
                    "must be at least breaker.failure_threshold ({}), or replicas are evicted before their breaker opens",
                    self.breaker.failure_threshold
                ),
            ));
        }
        // Below 2 the median estimates (each within ±19 %) could call a replica slow that is not slower at
        // all; NaN and infinity fail the comparison too.
        if !(self.outlier.latency_factor >= 2.0 && self.outlier.latency_factor.is_finite()) {
            return Err(invalid(
                "outlier.latency_factor",
                "must be a number of at least 2 (set outlier.enabled: false to turn slow-replica ejection off)",
            ));
        }
        if self.outlier.min_requests == 0 {
            return Err(invalid("outlier.min_requests", "must be at least 1"));
        }
        if self.outlier.interval < Duration::from_millis(10) {
            return Err(invalid("outlier.interval", "must be at least 10ms"));
        }
        if self.lease.ttl.is_zero() {
            return Err(invalid("lease.ttl", "must be longer than 0s"));
        }
        if self.lease.heartbeat_interval.is_zero()
            || self.lease.heartbeat_interval >= self.lease.ttl
        {
            return Err(invalid(
                "lease.heartbeat_interval",
                format!(
                    "must be longer than 0s and shorter than lease.ttl ({})",
                    humantime::format_duration(self.lease.ttl)
                ),
            ));
        }
        // Also refuses NaN.
        if !(0.0..=1.0).contains(&self.lease.preservation_ratio) {
            return Err(invalid(
                "lease.preservation_ratio",
                "must be between 0 and 1 (1 turns self-preservation off)",
            ));
        }
        if !(1..=crate::proxy::MAX_ATTEMPTS as u32).contains(&self.retry.max_attempts) {
            return Err(invalid("retry.max_attempts", "must be between 1 and 10"));
        }
        // Above 1.0 the budget would allow more retries than requests: that is no budget, say so instead.
        if !(0.0..=1.0).contains(&self.retry.budget.ratio) {
            return Err(invalid(
                "retry.budget.ratio",
                "must be between 0.0 and 1.0 (the share of requests that may be retried); \
                 to not limit retries set retry.budget.enabled: false",
            ));
        }
        let window = self.retry.budget.window;
        if !(1..=60).contains(&window.as_secs()) || window.subsec_nanos() != 0 {
            return Err(invalid(
                "retry.budget.window",
                "must be a whole number of seconds from 1s to 60s",
            ));
        }
        if self.upstream.connect_timeout.is_zero() {
            return Err(invalid(
                "upstream.connect_timeout",
                "must be longer than 0s",
            ));
        }
        if self.upstream.request_timeout.is_zero() {
            return Err(invalid(
                "upstream.request_timeout",
                "must be longer than 0s",
            ));
        }
        for (field, d) in [
            ("upstream.read_timeout", self.upstream.read_timeout),
            ("upstream.send_timeout", self.upstream.send_timeout),
            ("client.header_timeout", self.client.header_timeout),
            ("client.body_timeout", self.client.body_timeout),
        ] {
            if d.is_zero() {
                return Err(invalid(field, "must be longer than 0s"));
            }
        }
        for (field, n, min) in [
            (
                "limits.max_header_bytes",
                self.limits.max_header_bytes,
                1024,
            ),
            ("limits.max_uri_bytes", self.limits.max_uri_bytes, 256),
            ("limits.max_connections", self.limits.max_connections, 1),
        ] {
            if n < min {
                return Err(invalid(field, format!("must be at least {min}")));
            }
        }
        if self.proxy.upgrade_idle_timeout.is_zero() {
            return Err(invalid(
                "proxy.upgrade_idle_timeout",
                "must be longer than 0s",
            ));
        }
        if self.proxy.max_hops == 0 {
            return Err(invalid("proxy.max_hops", "must be at least 1"));
        }
        check_pair("tls", &self.tls.cert_file, &self.tls.key_file)?;
        check_pair(
            "upstream.tls",
            &self.upstream.tls.cert_file,
            &self.upstream.tls.key_file,
        )?;
        if self
            .upstream
            .tls
            .ca_file
            .as_deref()
            .is_some_and(|p| p.trim().is_empty())
        {
            return Err(invalid(
                "upstream.tls.ca_file",
                "must not be empty when set",
            ));
        }
        if let Some(id) = &self.proxy.instance_id {
            crate::proxy::InstanceId::parse(id).map_err(|e| invalid("proxy.instance_id", e))?;
        }
        for (i, cidr) in self.forwarded.trusted_proxies.iter().enumerate() {
            cidr.parse::<crate::proxy::Cidr>()
                .map_err(|e| invalid(&format!("forwarded.trusted_proxies[{i}]"), e))?;
        }
        if self
            .auth
            .read_token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return Err(invalid("auth.read_token", "must not be empty when set"));
        }
        if self
            .auth
            .registration_token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return Err(invalid(
                "auth.registration_token",
                "must not be empty when set",
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level).map_err(|e| {
            invalid(
                "log.level",
                format!("expected a log filter such as info or debug ({e})"),
            )
        })?;
        for (field, d) in [
            ("redis.resync_interval", self.redis.resync_interval),
            ("redis.command_timeout", self.redis.command_timeout),
            ("redis.failure_window", self.redis.failure_window),
        ] {
            if d.is_zero() {
                return Err(invalid(field, "must be longer than 0s"));
            }
        }
        for (name, urls) in &self.services {
            ServiceName::parse(name)
                .map_err(|e| invalid(&format!("services.{name}"), e.to_string()))?;
            for url in urls {
                ReplicaAddress::parse(url)
                    .map_err(|e| invalid(&format!("services.{name}"), format!("{url}: {e}")))?;
            }
        }
        Ok(())
    }

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

fn set_path(root: &mut Value, dotted: &str, value: Value) {
    let mut node = root;
    let mut parts = dotted.split('.').peekable();
    while let Some(part) = parts.next() {
        let map = match node {
            Value::Mapping(m) => m,
            other => {
                *other = Value::Mapping(Mapping::new());
                match other {
                    Value::Mapping(m) => m,
                    _ => unreachable!("just set to a mapping"),
                }
            }
        };
        let key = Value::String(part.to_owned());
        if parts.peek().is_none() {
            map.insert(key, value);
            return;
        }
        node = map
            .entry(key)
            .or_insert_with(|| Value::Mapping(Mapping::new()));
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
mod tests {
    use super::*;

    fn load_yaml(yaml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().join(format!("gw-config-{}", uuid::Uuid::new_v4()));
        std::fs::write(&dir, yaml).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let out = Config::load(Some(&dir), env);
        let _ = std::fs::remove_file(&dir);
        out
    }

    #[test]
    fn defaults_match_the_design() {
        let c = Config::load(None, Vec::new()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.breaker.failure_threshold, 3);
        assert_eq!(c.breaker.open_timeout, Duration::from_secs(10));
        assert_eq!(c.eviction.failure_threshold, 5);
        assert_eq!(c.lease.ttl, Duration::from_secs(15));
        assert_eq!(c.lease.heartbeat_interval, Duration::from_secs(5));
        assert_eq!(c.retry.max_attempts, 3);
        assert_eq!(c.upstream.connect_timeout, Duration::from_secs(1));
        assert_eq!(c.retry_budget(), Some(RetryBudgetConfig::default()));
        assert_eq!(c.retry.budget.ratio, 0.2);
        assert_eq!(c.retry.budget.min_per_second, 3);
        assert_eq!(c.retry.budget.window, Duration::from_secs(10));
        assert_eq!(c.lease.preservation_ratio, 0.5);
        assert_eq!(c.lease.preservation_max(), Duration::from_secs(30));
        let p = c.registry_policy().preservation;
        assert_eq!((p.ratio, p.max_hold), (0.5, Duration::from_secs(30)));
        assert!(c.outlier.enabled);
        assert_eq!(c.outlier.latency_factor, 10.0);
        assert_eq!(c.outlier.min_requests, 20);
        assert_eq!(c.outlier.interval, Duration::from_secs(1));
        assert_eq!(c.registry_policy().outlier, OutlierConfig::default());
    }

    #[test]
    fn tls_files_come_in_pairs_and_are_named_when_wrong() {
        let c = load_yaml(
            "tls: { cert_file: /c.pem, key_file: /k.pem }\nupstream: { tls: { ca_file: /ca.pem } }\n",
            &[],
        )
        .unwrap();
        assert!(c.tls.enabled());
        assert_eq!(c.upstream.tls.ca_file.as_deref(), Some("/ca.pem"));
        assert_eq!(c.upstream.tls.cert_file, None);
        assert!(!Config::default().tls.enabled());
        let e = |yaml: &str, env: &[(&str, &str)]| load_yaml(yaml, env).unwrap_err().to_string();
        assert_eq!(
            e("tls: { cert_file: /c.pem }\n", &[]),
            "invalid config: tls.key_file: must be set with tls.cert_file"
        );
        assert_eq!(
            e("upstream: { tls: { key_file: /k.pem } }\n", &[]),
            "invalid config: upstream.tls.cert_file: must be set with upstream.tls.key_file"
        );
        assert_eq!(
            e("upstream: { tls: { ca_file: \" \" } }\n", &[]),
            "invalid config: upstream.tls.ca_file: must not be empty when set"
        );
        assert!(e("tls: { ca_file: /ca.pem }\n", &[]).contains("tls"));
        // Environment variables set them too; an empty one unsets.
        let c = load_yaml(
            "",
            &[
                ("GATEWAY_UPSTREAM_TLS_CA_FILE", "/etc/ca.pem"),
                ("GATEWAY_TLS_CERT_FILE", "/c.pem"),
                ("GATEWAY_TLS_KEY_FILE", "/k.pem"),
            ],
        )
        .unwrap();
        assert_eq!(c.upstream.tls.ca_file.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(c.tls.key_file.as_deref(), Some("/k.pem"));
        let c = load_yaml(
            "upstream: { tls: { ca_file: /ca.pem } }\n",
            &[("GATEWAY_UPSTREAM_TLS_CA_FILE", "")],
        )
        .unwrap();
        assert_eq!(c.upstream.tls.ca_file, None);
    }

    #[test]
    fn the_retry_budget_is_a_nested_section_and_has_variables() {
        let c = load_yaml(
            "retry: { max_attempts: 2, budget: { ratio: 0.5, min_per_second: 0, window: 5s } }\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            c.retry_budget(),
            Some(RetryBudgetConfig {
                ratio: 0.5,
                min_per_second: 0,
                window: Duration::from_secs(5),
            })
        );
        let c = load_yaml(
            "",
            &[
                ("GATEWAY_RETRY_BUDGET_RATIO", "1"),
                ("GATEWAY_RETRY_BUDGET_MIN_PER_SECOND", "7"),
            ],
        )
        .unwrap();
        assert_eq!(c.retry.budget.ratio, 1.0);
        assert_eq!(c.retry.budget.min_per_second, 7);
        let off = load_yaml("", &[("GATEWAY_RETRY_BUDGET_ENABLED", "false")]).unwrap();
        assert_eq!(off.retry_budget(), None);
        assert_eq!(off.registry_policy().retry_budget, None);
    }

    #[test]
    fn preservation_max_defaults_to_two_ttls_and_can_turn_it_off() {
        let c = load_yaml("lease: { ttl: 1s, heartbeat_interval: 300ms }\n", &[]).unwrap();
        assert_eq!(c.lease.preservation_max(), Duration::from_secs(2));
        let c = load_yaml(
            "lease: { preservation_max: 0s }\n",
            &[("GATEWAY_LEASE_PRESERVATION_RATIO", "1")],
        )
        .unwrap();
        assert_eq!(c.lease.preservation_max(), Duration::ZERO);
        assert_eq!(c.lease.preservation_ratio, 1.0);
        assert!(!c.registry_policy().preservation.enabled());
        let c = load_yaml(
            "",
            &[
                ("GATEWAY_LEASE_PRESERVATION_MAX", "1m"),
                ("GATEWAY_LEASE_PRESERVATION_RATIO", "0.25"),
            ],
        )
        .unwrap();
        assert_eq!(c.lease.preservation_max(), Duration::from_secs(60));
        assert_eq!(c.lease.preservation_ratio, 0.25);
    }

    #[test]
    fn outlier_detection_is_set_by_file_or_environment() {
        let c = load_yaml(
            "outlier: { latency_factor: 4, min_requests: 5, interval: 500ms }\n",
            &[("GATEWAY_OUTLIER_ENABLED", "false")],
        )
        .unwrap();
        let o = c.registry_policy().outlier;
        assert!(!o.enabled);
        assert_eq!(o.latency_factor, 4.0);
        assert_eq!(o.min_requests, 5);
        assert_eq!(o.interval, Duration::from_millis(500));
        let c = load_yaml("", &[("GATEWAY_OUTLIER_LATENCY_FACTOR", "2.5")]).unwrap();
        assert_eq!(c.outlier.latency_factor, 2.5);
    }

    #[test]
    fn reads_the_documented_file() {
        let c = load_yaml(
            "listen: 127.0.0.1:9000\nworkers: 2\nbreaker: { failure_threshold: 4, open_timeout: 500ms }\n\
             eviction: { failure_threshold: 6 }\nlease: { ttl: 15s, heartbeat_interval: 5s }\nretry: { max_attempts: 2 }\n\
             upstream: { connect_timeout: 1s, request_timeout: 30s }\n\
             services:\n  product: [http://127.0.0.1:9001, http://127.0.0.1:9002]\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.workers, Some(2));
        assert_eq!(c.breaker.open_timeout, Duration::from_millis(500));
        assert_eq!(c.static_replicas().len(), 2);
    }

    #[test]
    fn env_overrides_the_file() {
        let c = load_yaml(
            "breaker: { failure_threshold: 4 }\n",
            &[
                ("GATEWAY_BREAKER_FAILURE_THRESHOLD", "2"),
                ("GATEWAY_LISTEN", "127.0.0.1:0"),
                ("GATEWAY_LEASE_TTL", "1m"),
            ],
        )
        .unwrap();
        assert_eq!(c.breaker.failure_threshold, 2);
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.lease.ttl, Duration::from_secs(60));
    }

    #[test]
    fn a_typo_is_an_error_naming_the_key() {
        let e = load_yaml("breaker: { failure_treshold: 4 }\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("failure_treshold"), "{e}");
        let e = load_yaml("listn: 1.2.3.4:5\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("listn"), "{e}");
        assert!(e.contains("not a config key"), "{e}");
    }

    #[test]
    fn the_store_is_typed_when_read_and_named_in_errors() {
        assert_eq!(load_yaml("", &[]).unwrap().store, StoreKind::Memory);
        let c = load_yaml("store: redis://127.0.0.1:6379/0\n", &[]).unwrap();
        assert_eq!(c.store, StoreKind::Redis("redis://127.0.0.1:6379/0".into()));
        // Written back as the text it was read from (the reload diff and the keys see a string).
        let v = serde_yaml_ng::to_value(&c).unwrap();
        assert_eq!(v["store"], Value::String("redis://127.0.0.1:6379/0".into()));
        assert!(keys().contains(&"store"));
        let e = load_yaml("store: x\n", &[]).unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid config: store: must be \"memory\" or a redis:// URL, not \"x\""
        );
        let e = load_yaml("store: 5\n", &[]).unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid config: store: expected memory or a redis:// URL, got 5"
        );
        // The flag overrides the file, and is named when wrong.
        let source = |store: &str| ConfigSource {
            overrides: Overrides {
                store: Some(store.into()),
                ..Overrides::default()
            },
            ..ConfigSource::default()
        };
        let l = source("redis://127.0.0.1:6380/1").load().unwrap();
        assert_eq!(
            l.config.store,
            StoreKind::Redis("redis://127.0.0.1:6380/1".into())
        );
        let e = source("etcd://x").load().unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid config: --store: must be \"memory\" or a redis:// URL, not \"etcd://x\""
        );
    }

    fn load_env(env: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load_env(None, env)
    }

    #[test]
    fn kubernetes_service_variables_are_ignored_and_returned() {
        // What Kubernetes injects for a Service named `gateway`, next to one real setting.
        let l = load_env(&[
            ("GATEWAY_PORT", "tcp://10.0.0.1:8080"),
            ("GATEWAY_PORT_8080_TCP", "tcp://10.0.0.1:8080"),
            ("GATEWAY_PORT_8080_TCP_ADDR", "10.0.0.1"),
            ("GATEWAY_SERVICE_HOST", "10.0.0.1"),
            ("GATEWAY_SERVICE_PORT", "8080"),
            ("GATEWAY_BREAKER_FAILURE_THRESHOLD", "4"),
            ("GATEWAY_LOG", "debug"),
            ("HOME", "/root"),
        ])
        .unwrap();
        assert_eq!(l.config.breaker.failure_threshold, 4);
        assert_eq!(
            l.ignored_env,
            [
                "GATEWAY_PORT",
                "GATEWAY_PORT_8080_TCP",
                "GATEWAY_PORT_8080_TCP_ADDR",
                "GATEWAY_SERVICE_HOST",
                "GATEWAY_SERVICE_PORT"
            ]
        );
        assert_eq!(l.applied_env, ["GATEWAY_BREAKER_FAILURE_THRESHOLD"]);
        assert_eq!(l.file, None);
        // A typo is ignored the same way (the start warning lists it).
        let l = load_env(&[("GATEWAY_BREKER_X", "1")]).unwrap();
        assert_eq!(l.ignored_env, ["GATEWAY_BREKER_X"]);
    }

    #[test]
    fn a_known_variable_with_a_bad_value_is_an_error_naming_it() {
        let cases = [
            (
                "GATEWAY_BREAKER_FAILURE_THRESHOLD",
                "abc",
                "invalid config: GATEWAY_BREAKER_FAILURE_THRESHOLD (breaker.failure_threshold): \
                 expected a positive whole number, got \"abc\"",
            ),
            (
                "GATEWAY_RETRY_MAX_ATTEMPTS",
                "0",
                "invalid config: GATEWAY_RETRY_MAX_ATTEMPTS (retry.max_attempts): must be between 1 and 10",
            ),
            (
                "GATEWAY_LEASE_TTL",
                "soon",
                "invalid config: GATEWAY_LEASE_TTL (lease.ttl): expected a duration such as 10s or 500ms, got \"soon\"",
            ),
            (
                "GATEWAY_OUTLIER_ENABLED",
                "maybe",
                "invalid config: GATEWAY_OUTLIER_ENABLED (outlier.enabled): expected true or false, got \"maybe\"",
            ),
            (
                "GATEWAY_STORE",
                "etcd://x",
                "invalid config: GATEWAY_STORE (store): must be \"memory\" or a redis:// URL, not \"etcd://x\"",
            ),
        ];
        for (var, value, want) in cases {
            let e = load_env(&[(var, value)]).unwrap_err().to_string();
            assert_eq!(e, want);
        }
        // Text keys take the value as it is: a numeric token is a token.
        let c = load_env(&[("GATEWAY_AUTH_REGISTRATION_TOKEN", "12345")]).unwrap();
        assert_eq!(c.config.auth.registration_token.as_deref(), Some("12345"));
    }

    #[test]
    fn type_errors_use_plain_words() {
        let cases = [
            (
                "breaker: { failure_threshold: abc }\n",
                "invalid config: breaker.failure_threshold: expected a positive whole number, got \"abc\"",
            ),
            (
                "retry: { budget: { min_per_second: -1 } }\n",
                "invalid config: retry.budget.min_per_second: expected a whole number, got -1",
            ),
            (
                "retry: { budget: { ratio: lots } }\n",
                "invalid config: retry.budget.ratio: expected a number between 0 and 1, got \"lots\"",
            ),
            (
                "breaker: { open_timeout: 10 }\n",
                "invalid config: breaker.open_timeout: expected a duration such as 10s or 500ms, got 10",
            ),
            (
                "outlier: { enabled: maybe }\n",
                "invalid config: outlier.enabled: expected true or false, got \"maybe\"",
            ),
            (
                "forwarded: { trusted_proxies: 10.0.0.0/8 }\n",
                "invalid config: forwarded.trusted_proxies: expected a list of CIDR ranges such as [10.0.0.0/8], got \"10.0.0.0/8\"",
            ),
            (
                "listen: nowhere\n",
                "invalid config: listen: expected an address such as 127.0.0.1:8080 or localhost:8080, got \"nowhere\"",
            ),
            (
                "limits: { max_header_bytes: 1.5 }\n",
                "invalid config: limits.max_header_bytes: expected a whole number of bytes, got 1.5",
            ),
            (
                "log: { format: xml }\n",
                "invalid config: log.format: expected text or json, got \"xml\"",
            ),
            (
                "services: { a: [http://127.0.0.1:1, 5] }\n",
                "invalid config: services.a[1]: expected a replica URL such as http://127.0.0.1:9001, got 5",
            ),
            (
                "breaker: 3\n",
                "invalid config: breaker: expected a mapping of breaker settings (such as breaker.failure_threshold), got 3",
            ),
        ];
        for (yaml, want) in cases {
            let e = load_yaml(yaml, &[]).unwrap_err().to_string();
            assert_eq!(e, want, "{yaml:?}");
            for rust in ["u32", "usize", "f64", "u64", "boolean", "sequence"] {
                assert!(!e.contains(rust), "{e}");
            }
        }
    }

    #[test]
    fn listeners_accept_host_names() {
        let c = load_yaml(
            "listen: localhost:8080\nadmin_listen: localhost:8081\n",
            &[("GATEWAY_GRPC_LISTEN", "localhost:50051")],
        )
        .unwrap();
        assert_eq!(c.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(
            c.admin_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 8081)))
        );
        assert_eq!(c.grpc_listen, SocketAddr::from(([127, 0, 0, 1], 50051)));
        let e = load_yaml("grpc_listen: no-such-host.invalid:1\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "invalid config: grpc_listen: cannot resolve host \"no-such-host.invalid\""
            ),
            "{e}"
        );
        // Flags too, named as flags.
        let source = ConfigSource {
            overrides: Overrides {
                listen: Some("localhost:0".into()),
                admin_listen: Some("no-such-host.invalid:1".into()),
                ..Overrides::default()
            },
            ..ConfigSource::default()
        };
        let e = source.load().unwrap_err().to_string();
        assert!(
            e.starts_with("invalid config: --admin-listen: cannot resolve"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_the_field() {
        let cases = [
            ("breaker: { open_timeout: soon }\n", "soon"),
            (
                "breaker: { failure_threshold: 0 }\n",
                "breaker.failure_threshold",
            ),
            (
                "eviction: { failure_threshold: 2 }\n",
                "eviction.failure_threshold",
            ),
            (
                "lease: { ttl: 5s, heartbeat_interval: 5s }\n",
                "lease.heartbeat_interval",
            ),
            ("retry: { max_attempts: 0 }\n", "retry.max_attempts"),
            ("retry: { budget: { ratio: 1.5 } }\n", "retry.budget.ratio"),
            ("retry: { budget: { ratio: -0.1 } }\n", "retry.budget.ratio"),
            ("retry: { budget: { ratio: .nan } }\n", "retry.budget.ratio"),
            ("retry: { budget: { window: 0s } }\n", "retry.budget.window"),
            (
                "retry: { budget: { window: 1500ms } }\n",
                "retry.budget.window",
            ),
            ("retry: { budget: { window: 2m } }\n", "retry.budget.window"),
            (
                "retry: { budget: { min_per_second: -1 } }\n",
                "min_per_second",
            ),
            ("retry: { budget: { ratoi: 0.1 } }\n", "ratoi"),
            (
                "lease: { preservation_ratio: 1.5 }\n",
                "lease.preservation_ratio",
            ),
            (
                "lease: { preservation_ratio: -0.1 }\n",
                "lease.preservation_ratio",
            ),
            (
                "lease: { preservation_ratio: .nan }\n",
                "lease.preservation_ratio",
            ),
            ("lease: { preservation_max: soon }\n", "soon"),
            ("workers: 0\n", "workers"),
            (
                "outlier: { latency_factor: 1.5 }\n",
                "outlier.latency_factor",
            ),
            ("outlier: { latency_factor: 0 }\n", "outlier.latency_factor"),
            (
                "outlier: { latency_factor: .nan }\n",
                "outlier.latency_factor",
            ),
            ("outlier: { min_requests: 0 }\n", "outlier.min_requests"),
            ("outlier: { interval: 0s }\n", "outlier.interval"),
            ("outlier: { enabled: maybe }\n", "outlier.enabled"),
            (
                "services: { Bad_Name: [http://127.0.0.1:1] }\n",
                "services.Bad_Name",
            ),
            ("services: { ok: [ftp://127.0.0.1:1] }\n", "services.ok"),
            ("listen: nowhere\n", "listen"),
            ("log: { level: \"info,=x=y\" }\n", "log.level"),
        ];
        for (yaml, field) in cases {
            let e = load_yaml(yaml, &[]).unwrap_err().to_string();
            assert!(e.contains(field), "{yaml:?} gave {e}");
        }
    }
}
