//! The config's sections (`breaker:`, `lease:`, `upstream:`, ...) and their defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{duration, optional_duration};
use crate::policy::{OutlierConfig, RetryBudgetConfig};

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
    /// Most GET requests a worker writes together on one connection to an `http://` replica
    /// (HTTP/1.1 pipelining, in batches of the requests one turn of its event loop brings); 1 turns it
    /// off. Default 1.
    pub pipeline: usize,
    /// A replica answers a batch one request after another: a batch holds at most this ÷ the replica's
    /// recent answer time requests, so that none expects to wait longer behind the others; a replica
    /// slower than this is not batched. Default 2ms.
    #[serde(with = "duration")]
    pub pipeline_budget: Duration,
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
            pipeline: 1,
            pipeline_budget: Duration::from_millis(2),
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
