//! Where the registry is shared: nowhere (`memory`, the default) or through Redis between gateways.
//!
//! Either way every gateway routes from its own in-process [`crate::registry::Registry`]; a shared store
//! only replicates changes in the background, so it is never on the proxy path (the one exception, a
//! half-open probe claim, happens once per open timeout per replica).

mod connection;
pub(crate) mod message;
mod reconcile;
mod redis_store;
mod resync;
mod scripts;
mod subscriber;
mod writer;

#[cfg(test)]
mod outage_tests;
#[cfg(test)]
mod test_server;

use std::sync::Arc;
use std::time::Duration;

use crate::registry::{LeaseExpiry, Registry, ReplicaAddress};
pub use redis_store::RedisStore;

/// What `store:` in the config names. Read from `memory` or a `redis://` URL (an error naming what is
/// wrong with any other text) and written back as that same text, so that the config's keys, its
/// reload diff and the start banner show it as it was given.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum StoreKind {
    /// In-process only.
    #[default]
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
            redis::Client::open(s).map_err(|e| format!("must be a valid Redis URL ({e})"))?;
            return Ok(StoreKind::Redis(s.to_owned()));
        }
        Err(format!("must be \"memory\" or a redis:// URL, not \"{s}\""))
    }
}

impl TryFrom<String> for StoreKind {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        StoreKind::parse(&s)
    }
}

impl From<StoreKind> for String {
    fn from(kind: StoreKind) -> String {
        kind.to_string()
    }
}

impl std::fmt::Display for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreKind::Memory => f.write_str("memory"),
            StoreKind::Redis(url) => f.write_str(url),
        }
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
    /// Replicas and addresses whose changes may wait for Redis at once
    /// ([`crate::registry::QUEUE_CAPACITY`] unless a test says otherwise); past it they are dropped and
    /// the whole registry is written back instead.
    pub queue_capacity: usize,
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

/// What the gateway needs from a store beyond the registry's outbox
/// ([`Registry::share_changes`](crate::registry::Registry::share_changes), which a store drains, and the
/// registry's `apply_*` methods, which it calls with the peers' changes).
pub trait Store: Send + Sync {
    /// Claims the half-open probe of `address` for this gateway; false when a peer holds it.
    fn claim_probe<'a>(&'a self, address: &'a ReplicaAddress) -> BoxFuture<'a, bool>;
    /// Whether leases may expire now (not while the store is unreachable).
    fn lease_expiry(&self) -> LeaseExpiry;
    /// The store's status for operators.
    fn status(&self) -> StoreStatus;
    /// Stops its background tasks (at shutdown).
    fn stop(&self) -> BoxFuture<'_, ()>;
}

/// A boxed future, for [`Store`]'s async method.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// No sharing: this gateway's registry is all there is.
#[derive(Debug, Default)]
pub struct MemoryStore;

impl Store for MemoryStore {
    fn claim_probe<'a>(&'a self, _address: &'a ReplicaAddress) -> BoxFuture<'a, bool> {
        Box::pin(std::future::ready(true))
    }

    fn lease_expiry(&self) -> LeaseExpiry {
        LeaseExpiry::Enforced
    }

    fn status(&self) -> StoreStatus {
        StoreStatus {
            kind: "memory",
            connected: true,
            degraded_for_ms: None,
            last_error: None,
        }
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// The handle the rest of the gateway uses: the configured [`Store`]. Cheap to clone.
#[derive(Clone)]
pub struct Shared(Arc<dyn Store>);

impl Default for Shared {
    fn default() -> Self {
        Shared::memory()
    }
}

impl Shared {
    /// No sharing.
    pub fn memory() -> Self {
        Shared(Arc::new(MemoryStore))
    }

    /// Starts sharing `registry` through Redis at `url` (connects in the background: a gateway starts
    /// even while Redis is down, degraded).
    pub fn redis(
        url: &str,
        registry: Arc<Registry>,
        settings: RedisSettings,
    ) -> Result<Self, String> {
        Ok(Shared(RedisStore::start(url, registry, settings)?))
    }

    /// Claims the half-open probe of `address` for this gateway (see [`Store::claim_probe`]).
    pub async fn claim_probe(&self, address: &ReplicaAddress) -> bool {
        self.0.claim_probe(address).await
    }

    /// Whether leases may expire now.
    pub fn lease_expiry(&self) -> LeaseExpiry {
        self.0.lease_expiry()
    }

    /// The store's status.
    pub fn status(&self) -> StoreStatus {
        self.0.status()
    }

    /// Stops its background tasks (at shutdown, with the listeners).
    pub async fn stop(&self) {
        self.0.stop().await;
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

    #[test]
    fn a_store_is_written_back_as_the_text_it_was_read_from() {
        for text in ["memory", "redis://127.0.0.1:6379/0"] {
            let kind: StoreKind = serde_yaml_ng::from_str(text).unwrap();
            assert_eq!(kind, StoreKind::parse(text).unwrap());
            assert_eq!(
                serde_yaml_ng::to_value(&kind).unwrap(),
                serde_yaml_ng::Value::String(text.into())
            );
            assert_eq!(kind.to_string(), text);
        }
        let e = serde_yaml_ng::from_str::<StoreKind>("etcd://x").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("must be \"memory\" or a redis:// URL, not \"etcd://x\""),
            "{e}"
        );
    }
}
