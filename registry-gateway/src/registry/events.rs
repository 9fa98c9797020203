//! What happened in the registry: the one event type its transitions produce, read by the watch feeds
//! (SSE and gRPC `Watch`), the shared store's outbox and the log.

use std::sync::Arc;

use super::{Replica, TransitionRecord};
use crate::policy::EvictionReason;

/// Who decided a change: this gateway, or a peer gateway through the shared store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Decided here: peers must hear of it.
    Local,
    /// Applied from a peer gateway: nothing to tell anyone.
    Peer,
}

/// How a replica joined the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// It registered here.
    Registered,
    /// It registered here soon after an eviction for failures: its breaker starts open.
    OnProbation,
    /// A peer gateway registered it.
    ByPeer,
}

/// One thing that happened to a replica, in the order it happened.
#[derive(Debug, Clone)]
pub enum RegistryEvent {
    /// A replica joined.
    Added(Arc<Replica>, Joined),
    /// Its lease was renewed here (a heartbeat, or a registration of an address already registered).
    Renewed(Arc<Replica>),
    /// A replica left: deregistered, evicted for failures, lease expired. The reason is `None` when a
    /// peer gateway's registration of the same address replaced it.
    Removed(Arc<Replica>, Option<EvictionReason>, Source),
    /// Its breaker changed state (the record says from what, to what and why).
    StateChanged(Arc<Replica>, TransitionRecord),
    /// An attempt on it ended here. Only recorded while a store shares attempts with peers.
    Attempt {
        /// The replica.
        replica: Arc<Replica>,
        /// Whether it failed.
        failed: bool,
        /// Whether it changes the consecutive-failure count every gateway shares: a failure, or a
        /// success that ends a run of failures.
        streak: bool,
        /// Whether a failure-ratio rule counts it (`breaker.failure_ratio` is set).
        windowed: bool,
    },
    /// A half-open probe sent from here succeeded without closing the breaker (it needs several).
    ProbeSucceeded(Arc<Replica>),
    /// A half-open probe sent from here has its answer, or was abandoned: the probe slot is free again.
    ProbeDone(Arc<Replica>),
}

impl RegistryEvent {
    /// The replica it is about.
    pub fn replica(&self) -> &Arc<Replica> {
        match self {
            RegistryEvent::Added(r, _)
            | RegistryEvent::Renewed(r)
            | RegistryEvent::Removed(r, _, _)
            | RegistryEvent::StateChanged(r, _)
            | RegistryEvent::Attempt { replica: r, .. }
            | RegistryEvent::ProbeSucceeded(r)
            | RegistryEvent::ProbeDone(r) => r,
        }
    }

    /// Whether watchers see it: replicas joining and leaving, and breaker transitions. Renewals, attempts
    /// and probes are the store's business only.
    pub fn is_watched(&self) -> bool {
        matches!(
            self,
            RegistryEvent::Added(..) | RegistryEvent::Removed(..) | RegistryEvent::StateChanged(..)
        )
    }
}
