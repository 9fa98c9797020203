//! Sharing the registry through Redis: three tasks beside the proxy, stopped together at shutdown — the
//! writer ([`super::writer`]) drains the registry's outbox, the subscriber ([`super::subscriber`])
//! applies the peers' changes, and the resync ([`super::resync`]) writes back and reconciles in full after
//! every reconnect and periodically (pub/sub loses messages while disconnected).
//!
//! Redis is never on the proxy path: the proxy routes from the in-process registry. While Redis is
//! unreachable the gateway is degraded: it keeps routing on its last known registry, keeps accepting
//! registrations and heartbeats locally (they wait in the bounded outbox), and writes them back on
//! recovery.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::connection::Connection;
use super::message::{keys, Event, Message};
use super::{BoxFuture, RedisSettings, Store, StoreStatus};
use crate::registry::{LeaseExpiry, Outbox, Registry, ReplicaAddress};

/// The Redis side of one gateway.
pub struct RedisStore {
    pub(super) conn: Connection,
    /// This gateway's id in Redis (its messages, its probe slots).
    pub(super) gw: Uuid,
    /// How its own pub/sub messages begin ([`Message::prefix_of`]).
    pub(super) own_prefix: String,
    pub(super) registry: Arc<Registry>,
    pub(super) settings: RedisSettings,
    /// The registry's changes waiting for Redis.
    pub(super) outbox: Arc<Outbox>,
    /// Replica ids this gateway has seen in Redis: a resync removes those that left it.
    pub(super) known: Mutex<HashSet<Uuid>>,
    /// Registrations or renewals failed to reach Redis, or the outbox overflowed: write every local
    /// replica back at the next resync.
    pub(super) dirty: AtomicBool,
    /// The connection epoch of the last write-back: a reconnect since calls for another.
    pub(super) written_epoch: AtomicU64,
    pub(super) resync_now: Notify,
    /// `true` stops the tasks.
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Completes once `stop` says so (or its sender is gone).
pub(super) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

impl RedisStore {
    /// Connects in the background and starts replicating `registry`.
    pub(crate) fn start(
        url: &str,
        registry: Arc<Registry>,
        settings: RedisSettings,
    ) -> Result<Arc<Self>, String> {
        let client = redis::Client::open(url).map_err(|e| format!("invalid Redis URL: {e}"))?;
        let outbox = registry
            .share_changes(settings.queue_capacity)
            .ok_or("this registry is already shared with a store")?;
        registry.metrics().register_store();
        let gw = Uuid::new_v4();
        let store = Arc::new(RedisStore {
            conn: Connection::new(
                client,
                settings.command_timeout,
                Arc::clone(registry.metrics()),
            ),
            gw,
            own_prefix: Message::prefix_of(gw),
            registry,
            settings,
            outbox,
            known: Mutex::new(HashSet::new()),
            dirty: AtomicBool::new(false),
            written_epoch: AtomicU64::new(0),
            resync_now: Notify::new(),
            stop: watch::channel(false).0,
            tasks: Mutex::new(Vec::new()),
        });
        let tasks = vec![
            tokio::spawn(Arc::clone(&store).write_changes(store.stop.subscribe())),
            tokio::spawn(Arc::clone(&store).subscribe(store.stop.subscribe())),
            tokio::spawn(Arc::clone(&store).resync_loop(store.stop.subscribe())),
        ];
        *lock(&store.tasks) = tasks;
        Ok(store)
    }

    /// Adds `event` to `pipe` as a message to the peers.
    pub(super) fn publish(pipe: &mut redis::Pipeline, gw: Uuid, event: Event) {
        if let Ok(json) = serde_json::to_string(&Message { gw, event }) {
            pipe.cmd("PUBLISH").arg(keys::CHANNEL).arg(json).ignore();
        }
    }

    /// Stops the three tasks: each ends at its next wait, or is aborted if a Redis command holds it
    /// longer than the command timeout.
    async fn stop_tasks(&self) {
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        let grace = self.settings.command_timeout;
        for mut t in tasks {
            if tokio::time::timeout(grace, &mut t).await.is_err() {
                t.abort();
            }
        }
    }
}

impl Store for RedisStore {
    fn claim_probe<'a>(&'a self, address: &'a ReplicaAddress) -> BoxFuture<'a, bool> {
        Box::pin(self.claim(address))
    }

    fn lease_expiry(&self) -> LeaseExpiry {
        if self.conn.connected() {
            LeaseExpiry::Enforced
        } else {
            LeaseExpiry::Suspended
        }
    }

    fn status(&self) -> StoreStatus {
        self.conn.status()
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.stop_tasks())
    }
}
