//! Changes to the registry, broadcast to watchers (the gRPC `Watch` stream).

use std::sync::Arc;

use super::Replica;
use crate::policy::{BreakerState, EvictionReason};

/// One change.
#[derive(Debug, Clone)]
pub enum RegistryEvent {
    /// A replica joined.
    Added(Arc<Replica>),
    /// A replica left: deregistered, evicted for failures, lease expired. `None` when a peer gateway
    /// replaced or removed it (the reason was decided there).
    Removed(Arc<Replica>, Option<EvictionReason>),
    /// A replica's breaker changed state.
    StateChanged(Arc<Replica>, BreakerState),
}
