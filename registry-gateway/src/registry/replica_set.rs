//! The replicas of one service in registration order, found by address or id in O(1), added and removed
//! in O(1) amortised: a slot vector whose holes are compacted once they outnumber the replicas.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use uuid::Uuid;

use super::{Replica, ReplicaAddress};

/// Holes are compacted once there are more of them than replicas (and at least this many).
const MIN_HOLES_TO_COMPACT: usize = 64;

/// A slot index as a replica stores it (a service never holds 4 billion replicas).
fn slot_index(i: usize) -> u32 {
    u32::try_from(i).expect("fewer than 2^32 replicas in one service")
}

/// A replica keyed by its address (the set never holds two of one address).
#[derive(Debug, Clone)]
struct ByAddress(Arc<Replica>);

impl Hash for ByAddress {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.address().hash(h)
    }
}
impl PartialEq for ByAddress {
    fn eq(&self, other: &Self) -> bool {
        self.0.address() == other.0.address()
    }
}
impl Eq for ByAddress {}
impl Borrow<ReplicaAddress> for ByAddress {
    fn borrow(&self) -> &ReplicaAddress {
        self.0.address()
    }
}

/// A replica keyed by its id.
#[derive(Debug, Clone)]
struct ById(Arc<Replica>);

impl Hash for ById {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.id().hash(h)
    }
}
impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id() == other.0.id()
    }
}
impl Eq for ById {}
impl Borrow<Uuid> for ById {
    fn borrow(&self) -> &Uuid {
        self.0.id_ref()
    }
}

/// The replicas of one service (behind the service's lock; the proxy reads a snapshot of it instead).
#[derive(Debug, Default)]
pub(crate) struct ReplicaSet {
    /// In the order they joined; `None` where one left. Each replica knows its slot.
    slots: Vec<Option<Arc<Replica>>>,
    by_address: HashSet<ByAddress>,
    by_id: HashSet<ById>,
    /// Whether it changed since the flag was last taken ([`ReplicaSet::take_changed`]).
    changed: bool,
}

impl ReplicaSet {
    /// How many replicas it holds.
    pub(crate) fn len(&self) -> usize {
        self.by_address.len()
    }

    /// The replica registered at `address`.
    pub(crate) fn by_address(&self, address: &ReplicaAddress) -> Option<&Arc<Replica>> {
        self.by_address.get(address).map(|k| &k.0)
    }

    /// The replica of registration id `id`.
    pub(crate) fn by_id(&self, id: &Uuid) -> Option<&Arc<Replica>> {
        self.by_id.get(id).map(|k| &k.0)
    }

    /// Adds `r` last. Its address must not be in the set yet (remove the one there first).
    pub(crate) fn push(&mut self, r: Arc<Replica>) {
        debug_assert!(self.by_address(r.address()).is_none());
        r.slot
            .store(slot_index(self.slots.len()), Ordering::Relaxed);
        self.by_address.insert(ByAddress(Arc::clone(&r)));
        self.by_id.insert(ById(Arc::clone(&r)));
        self.slots.push(Some(r));
        self.changed = true;
    }

    /// Removes `r` (this very replica, not another of its address); false when it is not here.
    pub(crate) fn remove(&mut self, r: &Arc<Replica>) -> bool {
        let slot = r.slot.load(Ordering::Relaxed) as usize;
        match self.slots.get(slot) {
            Some(Some(here)) if Arc::ptr_eq(here, r) => {}
            _ => return false,
        }
        self.slots[slot] = None;
        self.by_address.remove(r.address());
        self.by_id.remove(r.id_ref());
        self.changed = true;
        let holes = self.slots.len() - self.len();
        if self.len() == 0 {
            self.slots.clear();
        } else if holes >= MIN_HOLES_TO_COMPACT && holes > self.len() {
            self.compact();
        } else {
            // Trailing holes cost nothing to drop.
            while matches!(self.slots.last(), Some(None)) {
                self.slots.pop();
            }
        }
        true
    }

    fn compact(&mut self) {
        self.slots.retain(Option::is_some);
        for (i, r) in self.slots.iter().flatten().enumerate() {
            r.slot.store(slot_index(i), Ordering::Relaxed);
        }
        self.slots.shrink_to(self.slots.len() * 2);
    }

    /// The replicas in the order they joined.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<Replica>> {
        self.slots.iter().flatten()
    }

    /// Whether it changed since the last call.
    pub(crate) fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }
}
