//! The connection to Redis and its health: every command goes through [`Connection::run`], which applies
//! the command timeout and tells connected from degraded.
//!
//! One [`ConnectionManager`] is opened at the first success and kept: it reconnects by itself after a
//! dropped connection, so an error never throws it away.

use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{watch, OnceCell};

use super::StoreStatus;
use crate::clock;
use crate::observe::Metrics;

/// The Redis connection of one gateway, and whether Redis answers.
pub(super) struct Connection {
    client: redis::Client,
    manager: OnceCell<ConnectionManager>,
    command_timeout: Duration,
    metrics: Arc<Metrics>,
    connected: watch::Sender<bool>,
    health: Mutex<Health>,
    /// Bumped at every reconnect: a resync that spans one removes nothing, and a write-back follows it.
    epoch: AtomicU64,
}

#[derive(Default)]
struct Health {
    degraded_since: Option<Instant>,
    last_error: Option<String>,
}

impl Connection {
    /// Not connected yet (the first command connects).
    pub(super) fn new(
        client: redis::Client,
        command_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        metrics.store_connected.set(0);
        Connection {
            client,
            manager: OnceCell::new(),
            command_timeout,
            metrics,
            connected: watch::channel(false).0,
            health: Mutex::new(Health {
                degraded_since: Some(clock::now()),
                last_error: Some("not connected yet".into()),
            }),
            epoch: AtomicU64::new(0),
        }
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The client (for the pub/sub connection, which is its own).
    pub(super) fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The command timeout.
    pub(super) fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    /// Whether Redis answered the last command.
    pub(super) fn connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// How many times Redis became reachable again since the start.
    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Follows whether Redis is reachable (`changed()` completes at each change).
    pub(super) fn watch(&self) -> watch::Receiver<bool> {
        self.connected.subscribe()
    }

    /// Completes once Redis is reachable.
    pub(super) async fn wait_connected(&self) {
        let mut rx = self.connected.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// The status for operators.
    pub(super) fn status(&self) -> StoreStatus {
        let h = self.health();
        let connected = self.connected();
        StoreStatus {
            kind: "redis",
            connected,
            degraded_for_ms: (!connected)
                .then(|| {
                    h.degraded_since
                        .map(|t| clock::now().saturating_duration_since(t).as_millis() as u64)
                })
                .flatten(),
            last_error: (!connected).then(|| h.last_error.clone()).flatten(),
        }
    }

    fn succeeded(&self) {
        // Watchers hear of a change only: every command succeeds, and the resync wakes on each change.
        if !self
            .connected
            .send_if_modified(|c| !std::mem::replace(c, true))
        {
            return;
        }
        self.metrics.store_connected.set(1);
        // Before anyone sees it connected again: the resync compares epochs to write back first.
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.health().degraded_since = None;
        tracing::info!("[STORE] Redis reachable: shared state resumes (resyncing)");
    }

    /// Records that `what` failed with `e`: degraded from now, if it was not already.
    pub(super) fn failed(&self, what: &str, e: impl Display) {
        let mut h = self.health();
        h.last_error = Some(format!("{what}: {e}"));
        if self
            .connected
            .send_if_modified(|c| std::mem::replace(c, false))
        {
            self.metrics.store_connected.set(0);
            h.degraded_since = Some(clock::now());
            tracing::warn!(error = %e, "[STORE] Redis unreachable ({what}): degraded, routing on the last known registry");
        }
    }

    async fn manager(&self) -> redis::RedisResult<ConnectionManager> {
        let t = self.command_timeout;
        let manager = self
            .manager
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(t))
                    .set_response_timeout(Some(t))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                self.client.get_connection_manager_with_config(config).await
            })
            .await?;
        Ok(manager.clone())
    }

    /// Runs one pipeline with the command timeout, tracking Redis's health.
    pub(super) async fn run<T: redis::FromRedisValue>(
        &self,
        what: &str,
        cmd: &redis::Pipeline,
    ) -> Option<T> {
        self.run_with(what, |mut c| {
            let cmd = cmd.clone();
            async move { cmd.query_async::<T>(&mut c).await }
        })
        .await
    }

    /// Runs `f` on the connection with the command timeout, tracking Redis's health.
    pub(super) async fn run_with<T, F, Fut>(&self, what: &str, f: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        // Opening the connection gets its own, longer budget than a command: on a loaded machine a fresh
        // connection can take longer than one command should, and recovery must not starve on it.
        let connect_budget = (self.command_timeout * 4).max(Duration::from_secs(2));
        let outcome: Result<T, String> =
            match tokio::time::timeout(connect_budget, self.manager()).await {
                Err(_) => Err("connect timed out".into()),
                Ok(Err(e)) => Err(e.to_string()),
                Ok(Ok(c)) => match tokio::time::timeout(self.command_timeout * 2, f(c)).await {
                    Err(_) => Err("timed out".into()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Ok(Ok(v)) => Ok(v),
                },
            };
        match outcome {
            Ok(v) => {
                self.succeeded();
                Some(v)
            }
            Err(e) => {
                // The manager stays: it reconnects by itself, and the next command waits for that.
                self.failed(what, e);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection() -> Connection {
        // Never dialled: only the reachability bookkeeping is exercised.
        let client = redis::Client::open("redis://127.0.0.1:1").unwrap();
        Connection::new(client, Duration::from_millis(100), Arc::new(Metrics::new()))
    }

    #[test]
    fn watchers_wake_on_a_change_of_reachability_only() {
        let conn = connection();
        let mut rx = conn.watch();
        let epoch = conn.epoch();
        conn.succeeded();
        assert!(rx.has_changed().unwrap());
        assert!(*rx.borrow_and_update());
        assert_eq!(conn.epoch(), epoch + 1);
        // Every later command that succeeds changes nothing: no wake-up, no new epoch.
        conn.succeeded();
        conn.succeeded();
        assert!(!rx.has_changed().unwrap());
        assert_eq!(conn.epoch(), epoch + 1);
        conn.failed("ping", "refused");
        assert!(rx.has_changed().unwrap());
        assert!(!*rx.borrow_and_update());
        conn.failed("ping", "refused");
        assert!(!rx.has_changed().unwrap());
        conn.succeeded();
        assert!(rx.has_changed().unwrap());
        assert_eq!(conn.epoch(), epoch + 2);
    }
}
