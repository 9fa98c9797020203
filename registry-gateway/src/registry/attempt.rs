//! One attempt's bookkeeping: its outcome is recorded exactly once, and an attempt dropped without one
//! (the client went away, the call was cancelled) gives back the half-open probe it may hold. Each
//! attempt is counted once in `gateway_upstream_attempts_total` (a dropped one as `client_fault`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Abandon, Pick, RecordOutcome, Registry};
use crate::clock;
use crate::policy::Outcome;

/// An attempt in flight against the replica of a [`Pick`]. Shared by the HTTP and the gRPC proxy.
pub struct AttemptRecord {
    registry: Arc<Registry>,
    pick: Option<Pick>,
    started: Instant,
    /// Time to the response head, once it arrived.
    head: Option<Duration>,
}

impl AttemptRecord {
    /// Starts the record of an attempt on `pick`, sent from `started` (just before connecting).
    pub fn new(registry: Arc<Registry>, pick: Pick, started: Instant) -> Self {
        AttemptRecord {
            registry,
            pick: Some(pick),
            started,
            head: None,
        }
    }

    /// The response head arrived now. `request_sent` is when the client's last request byte went out,
    /// when it went out after the attempt started: the wait counts from then, so that a slow upload is
    /// never the replica's slowness (as `upstream.request_timeout` runs from the last byte sent).
    pub fn head_arrived(&mut self, request_sent: Option<Instant>) {
        let from = request_sent.map_or(self.started, |sent| sent.max(self.started));
        self.head = Some(clock::now().saturating_duration_since(from));
    }

    /// Records `outcome` now; later calls do nothing. A success with a measured head also counts its
    /// latency for outlier detection: only successes, because a failure is the breaker's business, and a
    /// fast error must not make a failing replica look fast, nor a timeout count twice.
    pub fn finish(&mut self, outcome: Outcome) {
        if let Some(pick) = self.pick.take() {
            if let (Outcome::Success, Some(head)) = (outcome, self.head) {
                pick.replica.record_latency(head);
            }
            let record = RecordOutcome {
                pick: &pick,
                outcome,
            };
            self.registry.execute(record, clock::now());
            pick.replica
                .observe(self.registry.metrics())
                .attempt(outcome);
        }
    }

    /// Whether the outcome is still to be recorded.
    pub fn is_open(&self) -> bool {
        self.pick.is_some()
    }
}

impl Drop for AttemptRecord {
    fn drop(&mut self) {
        if let Some(pick) = self.pick.take() {
            self.registry.execute(Abandon(&pick), clock::now());
            pick.replica.observe(self.registry.metrics()).abandoned();
        }
    }
}
