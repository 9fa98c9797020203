//! A service: its replicas, as an immutable snapshot swapped on change, its round-robin cursor, and its
//! self-preservation state.

use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::SystemTime;

use super::{Replica, ServiceName};
use crate::policy::{Preservation, RoundRobin};

/// A service's self-preservation state, and the wall-clock deadline of its hold for operators.
#[derive(Debug, Default)]
pub(crate) struct PreservationSlot {
    pub(crate) state: Preservation,
    /// Set when a hold starts, so the log line and `GET /registry` show the same instant.
    pub(crate) until_wall: Option<SystemTime>,
}

/// The replicas of one service.
#[derive(Debug)]
pub struct Service {
    name: ServiceName,
    /// Copy-on-write: the proxy clones the `Arc` and routes without holding any lock.
    replicas: RwLock<Arc<[Arc<Replica>]>>,
    pub(crate) rr: RoundRobin,
    /// Only the lease sweep changes it.
    preservation: Mutex<PreservationSlot>,
}

impl Service {
    pub(crate) fn new(name: ServiceName) -> Self {
        Service {
            name,
            replicas: RwLock::new(Arc::from(Vec::new())),
            rr: RoundRobin::default(),
            preservation: Mutex::new(PreservationSlot::default()),
        }
    }

    /// The service's name.
    pub fn name(&self) -> &ServiceName {
        &self.name
    }

    /// The current replicas (a snapshot; cheap to take).
    pub fn replicas(&self) -> Arc<[Arc<Replica>]> {
        self.replicas
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// While self-preservation holds this service's expired leases: the hold's wall-clock deadline.
    pub fn preserving_until(&self) -> Option<SystemTime> {
        let slot = self.preservation();
        slot.state.holding_until().and(slot.until_wall)
    }

    pub(crate) fn preservation(&self) -> MutexGuard<'_, PreservationSlot> {
        self.preservation.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the replica list with `f(current)`, under the write lock, and returns what `f` returned.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut Vec<Arc<Replica>>) -> R) -> R {
        let mut guard = self.replicas.write().unwrap_or_else(|e| e.into_inner());
        let mut list = guard.to_vec();
        let out = f(&mut list);
        *guard = Arc::from(list);
        out
    }
}
