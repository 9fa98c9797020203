//! One attempt's bookkeeping: its outcome is recorded exactly once, and an attempt dropped without one
//! (the client went away, the call was cancelled) gives back the half-open probe it may hold.

use std::sync::Arc;

use super::{Pick, Registry};
use crate::clock;
use crate::policy::Outcome;

/// An attempt in flight against the replica of a [`Pick`]. Shared by the HTTP and the gRPC proxy.
pub struct AttemptRecord {
    registry: Arc<Registry>,
    pick: Option<Pick>,
}

impl AttemptRecord {
    /// Starts the record of an attempt on `pick`.
    pub fn new(registry: Arc<Registry>, pick: Pick) -> Self {
        AttemptRecord {
            registry,
            pick: Some(pick),
        }
    }

    /// Records `outcome` now; later calls do nothing.
    pub fn finish(&mut self, outcome: Outcome) {
        if let Some(pick) = self.pick.take() {
            self.registry.record(&pick, outcome, clock::now());
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
            self.registry.abandon(&pick);
        }
    }
}
