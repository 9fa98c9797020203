//! Changes to the registry, broadcast to watchers (the gRPC `Watch` stream).

use std::sync::Arc;

use super::Replica;
use crate::policy::BreakerState;

/// One change.
#[derive(Debug, Clone)]
pub enum RegistryEvent {
    /// A replica joined.
    Added(Arc<Replica>),
    /// A replica left (deregistered, evicted, lease expired).
    Removed(Arc<Replica>),
    /// A replica's breaker changed state.
    StateChanged(Arc<Replica>, BreakerState),
}
