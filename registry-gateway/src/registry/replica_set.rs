//! The replicas of one service in registration order, found by address or id in O(1), added and removed
//! in O(1) amortised: a slot vector whose holes are compacted once they outnumber the replicas.
//!
//! The two indexes hold 32-bit slot numbers, not pointers: 5 bytes a bucket instead of 9, which at a
//! million replicas is 16 MB less of index (and less left behind by each growth).

use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hashbrown::HashTable;
use uuid::Uuid;

use super::{Replica, ReplicaAddress};

/// Holes are compacted once there are more of them than replicas (and at least this many).
const MIN_HOLES_TO_COMPACT: usize = 64;

/// A slot index as a replica and the indexes store it (a service never holds 4 billion replicas).
fn slot_index(i: usize) -> u32 {
    u32::try_from(i).expect("fewer than 2^32 replicas in one service")
}

/// The replicas of one service (behind the service's lock; the proxy reads a snapshot of it instead).
#[derive(Debug, Default)]
pub(crate) struct ReplicaSet {
    /// In the order they joined; `None` where one left. Each replica knows its slot.
    slots: Vec<Option<Arc<Replica>>>,
    /// Slots by the replica's address.
    by_address: HashTable<u32>,
    /// Slots by the replica's id.
    by_id: HashTable<u32>,
    hasher: RandomState,
    /// Whether it changed since the flag was last taken ([`ReplicaSet::take_changed`]).
    changed: bool,
}

/// The replica in slot `i` (a slot an index holds is always filled).
fn at(slots: &[Option<Arc<Replica>>], i: u32) -> Option<&Arc<Replica>> {
    slots.get(i as usize).and_then(Option::as_ref)
}

impl ReplicaSet {
    fn hash(&self, key: impl Hash) -> u64 {
        self.hasher.hash_one(key)
    }

    /// How many replicas it holds.
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// The replica registered at `address`.
    pub(crate) fn by_address(&self, address: &ReplicaAddress) -> Option<&Arc<Replica>> {
        let slots = &self.slots;
        self.by_address
            .find(self.hash(address), |&i| {
                at(slots, i).is_some_and(|r| r.address() == address)
            })
            .and_then(|&i| at(slots, i))
    }

    /// The replica of registration id `id`.
    pub(crate) fn by_id(&self, id: &Uuid) -> Option<&Arc<Replica>> {
        let slots = &self.slots;
        self.by_id
            .find(self.hash(id), |&i| {
                at(slots, i).is_some_and(|r| r.id_ref() == id)
            })
            .and_then(|&i| at(slots, i))
    }

    /// Adds `r` last. Its address must not be in the set yet (remove the one there first).
    pub(crate) fn push(&mut self, r: Arc<Replica>) {
        debug_assert!(self.by_address(r.address()).is_none());
        let slot = slot_index(self.slots.len());
        r.slot.store(slot, Ordering::Relaxed);
        let (by_address, by_id) = (self.hash(r.address()), self.hash(r.id_ref()));
        self.slots.push(Some(r));
        self.index(slot, by_address, by_id);
        self.changed = true;
    }

    /// Puts `slot` in both indexes.
    fn index(&mut self, slot: u32, by_address: u64, by_id: u64) {
        let ReplicaSet {
            slots,
            by_address: addresses,
            by_id: ids,
            hasher,
            ..
        } = self;
        let rehash_address = |&i: &u32| at(slots, i).map_or(0, |r| hasher.hash_one(r.address()));
        addresses.insert_unique(by_address, slot, rehash_address);
        let rehash_id = |&i: &u32| at(slots, i).map_or(0, |r| hasher.hash_one(r.id_ref()));
        ids.insert_unique(by_id, slot, rehash_id);
    }

    /// Removes `r` (this very replica, not another of its address); false when it is not here.
    pub(crate) fn remove(&mut self, r: &Arc<Replica>) -> bool {
        let slot = r.slot.load(Ordering::Relaxed);
        match at(&self.slots, slot) {
            Some(here) if Arc::ptr_eq(here, r) => {}
            _ => return false,
        }
        let (by_address, by_id) = (self.hash(r.address()), self.hash(r.id_ref()));
        if let Ok(e) = self.by_address.find_entry(by_address, |&i| i == slot) {
            e.remove();
        }
        if let Ok(e) = self.by_id.find_entry(by_id, |&i| i == slot) {
            e.remove();
        }
        self.slots[slot as usize] = None;
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

    /// Closes the holes; every replica gets its new slot, and both indexes are rebuilt.
    fn compact(&mut self) {
        self.slots.retain(Option::is_some);
        self.slots.shrink_to(self.slots.len() * 2);
        self.by_address.clear();
        self.by_id.clear();
        for i in 0..self.slots.len() {
            let Some(r) = self.slots[i].as_ref() else {
                continue;
            };
            let slot = slot_index(i);
            r.slot.store(slot, Ordering::Relaxed);
            let (by_address, by_id) = (self.hash(r.address()), self.hash(r.id_ref()));
            self.index(slot, by_address, by_id);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::tests::reg;
    use crate::registry::{Registry, RegistryPolicy};

    fn policy() -> RegistryPolicy {
        crate::registry::tests::policy()
    }

    #[test]
    fn finds_by_address_and_id_through_removals_and_compactions() {
        let t0 = crate::clock::now();
        let registry = Registry::new(policy());
        let all: Vec<Arc<Replica>> = (0..300u16)
            .map(|i| registry.register(reg("orders", 9000 + i), t0).replica)
            .collect();
        let mut set = ReplicaSet::default();
        for r in &all {
            set.push(Arc::clone(r));
        }
        // Remove every replica but one in three: the holes outnumber them, so the set compacts.
        for (i, r) in all.iter().enumerate() {
            if i % 3 != 0 {
                assert!(set.remove(r));
                assert!(!set.remove(r), "removed twice");
            }
        }
        assert_eq!(set.len(), 100);
        assert!(
            set.slots.len() < 200,
            "compacted: {} slots",
            set.slots.len()
        );
        for (i, r) in all.iter().enumerate() {
            let kept = i % 3 == 0;
            assert_eq!(set.by_address(r.address()).is_some(), kept, "{i}");
            assert_eq!(set.by_id(r.id_ref()).is_some(), kept, "{i}");
            if kept {
                assert!(Arc::ptr_eq(set.by_id(r.id_ref()).unwrap(), r));
                assert!(Arc::ptr_eq(set.by_address(r.address()).unwrap(), r));
                let slot = r.slot.load(Ordering::Relaxed);
                assert!(Arc::ptr_eq(at(&set.slots, slot).unwrap(), r));
            }
        }
        // Still in the order they joined.
        let ports: Vec<u16> = set.iter().map(|r| r.address().port()).collect();
        assert_eq!(
            ports,
            (0..300u16).step_by(3).map(|i| 9000 + i).collect::<Vec<_>>()
        );
    }
}
