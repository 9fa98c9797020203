//! The registry's outbox to a shared store: its [`ChangeQueue`] behind a lock, and the writer's wake-up.
//!
//! Pushing never blocks and never waits for the store, so the proxy and the admin API never do; the
//! queue is bounded, so a store that is slow or down costs at most its capacity in memory.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use uuid::Uuid;

use super::change::{ChangeQueue, Pushed, RemovedFor, Write};
use super::events::RegistryEvent;
use super::ServiceName;
use crate::observe::Metrics;

/// Entries that may wait for the store by default (replicas and addresses with something unwritten).
pub const QUEUE_CAPACITY: usize = 65_536;

/// The shared handle: the registry pushes, the store's writer takes.
#[derive(Debug)]
pub struct Outbox {
    queue: Mutex<ChangeQueue>,
    ready: Notify,
    metrics: Arc<Metrics>,
}

impl Outbox {
    /// An empty outbox of `capacity` entries, counted in `metrics`.
    pub(crate) fn new(capacity: usize, metrics: Arc<Metrics>) -> Self {
        Outbox {
            queue: Mutex::new(ChangeQueue::new(capacity)),
            ready: Notify::new(),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, ChangeQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn show_len(&self, len: usize) {
        self.metrics
            .store_queue_pending
            .set(i64::try_from(len).unwrap_or(i64::MAX));
    }

    /// Adds what `event` means to the store, and wakes the writer when there is something new.
    pub(crate) fn push(&self, event: &RegistryEvent) {
        let (pushed, len) = {
            let mut q = self.lock();
            let pushed = q.push(event);
            (pushed, q.len())
        };
        match pushed {
            Pushed::Ignored => return,
            Pushed::Queued => {}
            Pushed::Coalesced => {
                self.metrics.store_queue_coalesced.inc();
            }
            Pushed::Overflowed => {
                self.metrics.store_queue_overflows.inc();
            }
        }
        self.show_len(len);
        self.ready.notify_one();
    }

    /// Completes when something was pushed since the last wake-up (at once if it was meanwhile).
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Up to `max` entries, oldest first.
    pub fn take(&self, max: usize) -> Vec<Write> {
        let mut q = self.lock();
        let out = q.take(max);
        self.show_len(q.len());
        out
    }

    /// Whether the queue overflowed since the last call: a full write-back of the registry is due.
    pub fn take_overflow(&self) -> bool {
        self.lock().take_overflow()
    }

    /// Every waiting removal, taken out: `(service, id, why)`.
    pub fn take_removals(&self) -> Vec<(ServiceName, Uuid, RemovedFor)> {
        let mut q = self.lock();
        let out = q.take_removals();
        self.show_len(q.len());
        out
    }

    /// Puts back a removal the store could not write.
    pub fn requeue_removal(&self, service: ServiceName, id: Uuid, why: RemovedFor) {
        let mut q = self.lock();
        q.requeue_removal(service, id, why);
        self.show_len(q.len());
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
