//! Where the registry is shared: nowhere (`memory`, the default) or through Redis between gateways.
//!
//! Either way every gateway routes from its own in-process [`crate::registry::Registry`]; a shared store
//! only replicates changes in the background, so it is never on the proxy path (the one exception, a
//! half-open probe claim, happens once per open timeout per replica).

mod message;
mod redis_store;

use std::sync::Arc;
use std::time::Duration;

use crate::registry::{Registry, ReplicaAddress};
pub use redis_store::RedisStore;

/// What `store:` in the config names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// In-process only.
    Memory,
    /// Shared through the Redis server at this URL (`redis://host:port/db`).
    Redis(String),
}

impl StoreKind {
    /// Parses `memory` or a `redis://` URL.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "memory" {
            return Ok(StoreKind::Memory);
        }
        if s.starts_with("redis://") {
            redis::Client::open(s).map_err(|e| format!("invalid Redis URL: {e}"))?;
            return Ok(StoreKind::Redis(s.to_owned()));
        }
        Err(format!("must be \"memory\" or a redis:// URL, not \"{s}\""))
    }
}

/// Redis tuning.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// Full resync of the local registry from Redis this often (and after every reconnect).
    pub resync_interval: Duration,
    /// Time limit of one Redis command; past it the gateway counts Redis as down.
    pub command_timeout: Duration,
    /// Failures counted in Redis age out after this long without a new one.
    pub failure_window: Duration,
}

/// How the store is doing, for `/readyz` and `GET /registry`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreStatus {
    /// `memory` or `redis`.
    pub kind: &'static str,
    /// False while Redis is unreachable: the gateway routes on its last known registry.
    pub connected: bool,
    /// Milliseconds since Redis became unreachable, while it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded_for_ms: Option<u64>,
    /// The last Redis error, while degraded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The handle the rest of the gateway uses. Cheap to clone.
#[derive(Clone, Default)]
pub struct Shared {
    redis: Option<Arc<RedisStore>>,
}

impl Shared {
    /// No sharing.
    pub fn memory() -> Self {
        Shared::default()
    }

    /// Starts sharing `registry` through Redis at `url` (connects in the background: a gateway starts
    /// even while Redis is down, degraded).
    pub fn redis(
        url: &str,
        registry: Arc<Registry>,
        settings: RedisSettings,
    ) -> Result<Self, String> {
        Ok(Shared {
            redis: Some(RedisStore::start(url, registry, settings)?),
        })
    }

    /// Claims the half-open probe of `address` for this gateway. True in memory mode, and when Redis
    /// cannot be asked (then each gateway probes on its own rather than none at all).
    pub async fn claim_probe(&self, address: &ReplicaAddress) -> bool {
        match &self.redis {
            None => true,
            Some(r) => r.claim_probe(address).await,
        }
    }

    /// Whether leases may expire now (not while Redis is unreachable).
    pub fn leases_expire(&self) -> bool {
        self.redis.as_ref().is_none_or(|r| r.connected())
    }

    /// The store's status.
    pub fn status(&self) -> StoreStatus {
        match &self.redis {
            None => StoreStatus {
                kind: "memory",
                connected: true,
                degraded_for_ms: None,
                last_error: None,
            },
            Some(r) => r.status(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_store_kinds() {
        assert_eq!(StoreKind::parse("memory"), Ok(StoreKind::Memory));
        assert_eq!(
            StoreKind::parse("redis://127.0.0.1:6379/0"),
            Ok(StoreKind::Redis("redis://127.0.0.1:6379/0".into()))
        );
        assert!(StoreKind::parse("etcd://x").is_err());
        assert!(StoreKind::parse("").is_err());
    }
}
