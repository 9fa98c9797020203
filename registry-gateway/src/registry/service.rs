//! A service: its replicas, as an immutable snapshot swapped on change, and its round-robin cursor.

use std::sync::{Arc, RwLock};

use super::{Replica, ServiceName};
use crate::policy::RoundRobin;

/// The replicas of one service.
#[derive(Debug)]
pub struct Service {
    name: ServiceName,
    /// Copy-on-write: the proxy clones the `Arc` and routes without holding any lock.
    replicas: RwLock<Arc<[Arc<Replica>]>>,
    pub(crate) rr: RoundRobin,
}

impl Service {
    pub(crate) fn new(name: ServiceName) -> Self {
        Service {
            name,
            replicas: RwLock::new(Arc::from(Vec::new())),
            rr: RoundRobin::default(),
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

    /// Replaces the replica list with `f(current)`, under the write lock, and returns what `f` returned.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut Vec<Arc<Replica>>) -> R) -> R {
        let mut guard = self.replicas.write().unwrap_or_else(|e| e.into_inner());
        let mut list = guard.to_vec();
        let out = f(&mut list);
        *guard = Arc::from(list);
        out
    }
}
