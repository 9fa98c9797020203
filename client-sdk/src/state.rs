//! What the SDK knows about its registration with one gateway, for the host's readiness probe and logs.

use std::time::Duration;

/// The registration's state with one gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationState {
    /// Trying to register; `attempts` so far, and the last error if any.
    Registering {
        /// Failed attempts so far.
        attempts: u32,
        /// Why the last one failed.
        last_error: Option<String>,
    },
    /// Registered and heartbeating.
    Registered {
        /// The replica id the gateway gave.
        id: String,
        /// Heartbeat interval the gateway asked for.
        heartbeat_interval: Duration,
        /// Lease TTL on the gateway.
        lease_ttl: Duration,
    },
    /// The gateway refused the registration for a reason retrying cannot fix (a 400).
    Failed {
        /// The gateway's message.
        reason: String,
    },
    /// Deregistered on request (or heartbeats stopped because the handle was dropped).
    Stopped,
}

impl RegistrationState {
    /// Whether the gateway currently routes to this replica.
    pub fn is_registered(&self) -> bool {
        matches!(self, RegistrationState::Registered { .. })
    }

    /// The replica id, when registered.
    pub fn id(&self) -> Option<&str> {
        match self {
            RegistrationState::Registered { id, .. } => Some(id),
            _ => None,
        }
    }
}
