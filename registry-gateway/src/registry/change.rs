//! The local changes other gateways must learn, waiting for the shared store: a bounded queue that keeps
//! one entry per replica (its latest state; counts summed) and, when too many replicas are waiting, drops
//! what a full write-back of the registry replaces.
//!
//! Pure: the registry pushes its [`RegistryEvent`]s in, the store takes [`Write`]s out
//! ([`super::Outbox`] is the shared, thread-safe handle).

use std::collections::{HashMap, VecDeque};

use uuid::Uuid;

use super::events::{Joined, RegistryEvent, Source};
use super::{Metadata, Origin, Protocol, ReplicaAddress, ServiceName, StateReason};
use crate::policy::{BreakerState, EvictionReason};

/// Everything another gateway needs to hold the same replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRecord {
    /// Registration id (the same on every gateway).
    pub id: Uuid,
    /// Service.
    pub service: ServiceName,
    /// Address.
    pub address: ReplicaAddress,
    /// HTTP or gRPC.
    pub protocol: Protocol,
    /// gRPC services served.
    pub grpc_services: Vec<String>,
    /// Labels.
    pub metadata: Metadata,
}

/// What to write about one registered replica: its latest state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaWrite {
    /// It registered here (a renewal since then is part of it: the hash is written with a full lease).
    Registered(ReplicaRecord),
    /// Its lease was renewed here.
    Renewed,
    /// It left here (why: an eviction for failures puts it on probation on the peers too). Never
    /// dropped on overflow: a full write-back writes what is here, it cannot delete what is gone.
    Removed(RemovedFor),
}

/// Why a registered replica left, as far as the peers need to know: whether it comes back on probation.
/// (A lapsed lease is not shared: the store expires the key on its own clock.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovedFor {
    /// It deregistered: it comes back afresh.
    Deregistration,
    /// It was evicted for failures: it comes back on probation.
    Failures,
}

/// The consecutive failures of an address since the last write: whether a success cleared the shared
/// count first, then how many failures to add.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Streak {
    /// A success ended the run: the shared count starts again from zero.
    pub cleared: bool,
    /// Failures to add after that.
    pub failures: u32,
}

impl Streak {
    fn push(&mut self, failed: bool) {
        if failed {
            self.failures = self.failures.saturating_add(1);
        } else {
            *self = Streak {
                cleared: true,
                failures: 0,
            };
        }
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        !self.cleared && self.failures == 0
    }
}

/// A breaker state this gateway tells its peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedState {
    /// Opened here (for the open timeout).
    Opened,
    /// Closed here by probes.
    Closed,
}

/// What to write about one address's breaker, in this order: the state (which clears the shared counts
/// that came before it), then the counts gathered since, then the probe slots given back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddressWrite {
    /// The latest state change, if any.
    pub state: Option<SharedState>,
    /// The consecutive-failure count's change.
    pub streak: Streak,
    /// Attempts counted by the failure-ratio window: requests, failures (sums, written with `HINCRBY`).
    pub window: (u32, u32),
    /// Half-open probes that succeeded here without closing it.
    pub probe_successes: u32,
    /// Half-open probe slots given back.
    pub probes_released: u32,
}

/// One entry taken from the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// About a registered replica.
    Replica {
        /// Its service.
        service: ServiceName,
        /// Its id.
        id: Uuid,
        /// What to write.
        write: ReplicaWrite,
    },
    /// About the breaker of an address.
    Address {
        /// The address.
        address: ReplicaAddress,
        /// What to write.
        write: AddressWrite,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Replica(ServiceName, Uuid),
    Address(ReplicaAddress),
}

/// What [`ChangeQueue::push`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Nothing for the store (a peer's change, a lease that ran out, a slow opening...).
    Ignored,
    /// A new entry.
    Queued,
    /// Folded into the entry already waiting for the same replica or address.
    Coalesced,
    /// The queue was full: everything a write-back replaces was dropped (this entry is kept when it is a
    /// removal, or when it fits again), and a write-back is due.
    Overflowed,
}

/// The bounded, coalescing queue. At most `capacity` entries wait (plus removals, which are kept
/// through an overflow); entries leave in the order their replica or address first entered.
#[derive(Debug)]
pub struct ChangeQueue {
    capacity: usize,
    order: VecDeque<Key>,
    replicas: HashMap<(ServiceName, Uuid), ReplicaWrite>,
    addresses: HashMap<ReplicaAddress, AddressWrite>,
    overflowed: bool,
}

impl ChangeQueue {
    /// An empty queue holding at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        ChangeQueue {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            replicas: HashMap::new(),
            addresses: HashMap::new(),
            overflowed: false,
        }
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.replicas.len() + self.addresses.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds what `event` means to the store.
    pub fn push(&mut self, event: &RegistryEvent) -> Pushed {
        let r = event.replica();
        let replica_key = || (r.service().clone(), r.id());
        let address_write = |w: AddressWrite| (r.address().clone(), w);
        match event {
            RegistryEvent::Added(_, Joined::Registered | Joined::OnProbation) => {
                self.merge_replica(replica_key(), ReplicaWrite::Registered(r.record()))
            }
            RegistryEvent::Renewed(_) => self.merge_replica(replica_key(), ReplicaWrite::Renewed),
            RegistryEvent::Removed(_, Some(reason), Source::Local)
                if r.origin() == Origin::Registered =>
            {
                let why = match reason {
                    EvictionReason::Deregistered => RemovedFor::Deregistration,
                    EvictionReason::Failures(_) => RemovedFor::Failures,
                    // The store expires the key on its own clock: nothing to write, nothing left to.
                    EvictionReason::LeaseExpired(_)
                    | EvictionReason::LeaseExpiredAfterHold { .. } => {
                        self.replicas.remove(&replica_key());
                        return Pushed::Ignored;
                    }
                };
                self.merge_replica(replica_key(), ReplicaWrite::Removed(why))
            }
            RegistryEvent::StateChanged(_, t) => match shared_state(t.to, t.reason) {
                Some(state) => self.merge_address(address_write(AddressWrite {
                    state: Some(state),
                    ..AddressWrite::default()
                })),
                None => Pushed::Ignored,
            },
            RegistryEvent::Attempt {
                failed,
                streak,
                windowed,
                ..
            } => {
                if !streak && !windowed {
                    return Pushed::Ignored;
                }
                let mut w = AddressWrite::default();
                if *streak {
                    w.streak.push(*failed);
                }
                if *windowed {
                    w.window = (1, u32::from(*failed));
                }
                self.merge_address(address_write(w))
            }
            RegistryEvent::ProbeSucceeded(_) => self.merge_address(address_write(AddressWrite {
                probe_successes: 1,
                ..AddressWrite::default()
            })),
            RegistryEvent::ProbeDone(_) => self.merge_address(address_write(AddressWrite {
                probes_released: 1,
                ..AddressWrite::default()
            })),
            RegistryEvent::Added(_, Joined::ByPeer) | RegistryEvent::Removed(..) => Pushed::Ignored,
        }
    }

    /// Puts back a removal the store could not write (it is retried after the next reconnect).
    pub fn requeue_removal(&mut self, service: ServiceName, id: Uuid, why: RemovedFor) {
        let key = (service, id);
        if !self.replicas.contains_key(&key) {
            self.order.push_back(Key::Replica(key.0.clone(), key.1));
        }
        self.replicas.insert(key, ReplicaWrite::Removed(why));
    }

    fn merge_replica(&mut self, key: (ServiceName, Uuid), new: ReplicaWrite) -> Pushed {
        if let Some(old) = self.replicas.get_mut(&key) {
            *old = combine_replica(old, new);
            return Pushed::Coalesced;
        }
        // Removals stay even past the capacity: a write-back cannot delete what is gone.
        let removal = matches!(new, ReplicaWrite::Removed(_));
        let (fits, pushed) = self.make_room();
        if fits || removal {
            self.order.push_back(Key::Replica(key.0.clone(), key.1));
            self.replicas.insert(key, new);
        }
        pushed
    }

    fn merge_address(&mut self, (address, new): (ReplicaAddress, AddressWrite)) -> Pushed {
        if let Some(old) = self.addresses.get_mut(&address) {
            *old = combine_address(*old, new);
            return Pushed::Coalesced;
        }
        let (fits, pushed) = self.make_room();
        if fits {
            self.order.push_back(Key::Address(address.clone()));
            self.addresses.insert(address, new);
        }
        pushed
    }

    /// Makes room for one more entry: whether it fits now, and whether the queue overflowed for it.
    fn make_room(&mut self) -> (bool, Pushed) {
        if self.len() < self.capacity {
            return (true, Pushed::Queued);
        }
        // Drop every entry but the removals: a full write-back replaces them.
        self.overflowed = true;
        self.addresses.clear();
        self.replicas
            .retain(|_, w| matches!(w, ReplicaWrite::Removed(_)));
        self.retain_order();
        (self.len() < self.capacity, Pushed::Overflowed)
    }

    fn retain_order(&mut self) {
        let (replicas, addresses) = (&self.replicas, &self.addresses);
        self.order.retain(|k| match k {
            Key::Replica(s, id) => replicas.contains_key(&(s.clone(), *id)),
            Key::Address(a) => addresses.contains_key(a),
        });
    }

    /// Whether it overflowed since the last call (a full write-back is due).
    pub fn take_overflow(&mut self) -> bool {
        std::mem::take(&mut self.overflowed)
    }

    /// Up to `max` entries, oldest first.
    pub fn take(&mut self, max: usize) -> Vec<Write> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(key) = self.order.pop_front() else {
                break;
            };
            match key {
                Key::Replica(service, id) => {
                    if let Some(write) = self.replicas.remove(&(service.clone(), id)) {
                        out.push(Write::Replica { service, id, write });
                    }
                }
                Key::Address(address) => {
                    if let Some(write) = self.addresses.remove(&address) {
                        out.push(Write::Address { address, write });
                    }
                }
            }
        }
        out
    }

    /// Every waiting removal, taken out (a write-back writes them with the registry, before it reads).
    pub fn take_removals(&mut self) -> Vec<(ServiceName, Uuid, RemovedFor)> {
        let mut out = Vec::new();
        self.replicas.retain(|(service, id), w| match w {
            ReplicaWrite::Removed(why) => {
                out.push((service.clone(), *id, *why));
                false
            }
            _ => true,
        });
        self.retain_order();
        out
    }
}

/// The state peers hear of when a breaker goes `to` for `reason`: openings and closings decided here
/// (by this gateway's traffic, or by the counts of every gateway that it read); not those a peer
/// announced, not probing, and not a slow opening (each gateway judges latency from its own traffic).
fn shared_state(to: BreakerState, reason: StateReason) -> Option<SharedState> {
    match (to, reason) {
        (
            BreakerState::Open,
            StateReason::Failures { .. }
            | StateReason::Ratio { .. }
            | StateReason::ProbeFailed(_)
            | StateReason::AcrossGateways(_),
        ) => Some(SharedState::Opened),
        (
            BreakerState::Closed,
            StateReason::ProbesSucceeded(_) | StateReason::ProbesAcrossGateways(_),
        ) => Some(SharedState::Closed),
        _ => None,
    }
}

/// The entry waiting, then `new`: the latest state wins. A renewal of a registration not written yet is
/// part of it (the hash is written with a full lease); nothing after a removal matters.
fn combine_replica(old: &ReplicaWrite, new: ReplicaWrite) -> ReplicaWrite {
    match (old, new) {
        (ReplicaWrite::Registered(_) | ReplicaWrite::Removed(_), ReplicaWrite::Renewed) => {
            old.clone()
        }
        (_, new) => new,
    }
}

/// Two address entries in order. A state change clears, in the store, the counts before it (an opening
/// the window and probe successes; a closing those and the failure count): those are dropped, so that
/// what is written is the latest state, then the counts since.
fn combine_address(old: AddressWrite, new: AddressWrite) -> AddressWrite {
    let mut w = old;
    if let Some(state) = new.state {
        w.state = Some(state);
        w.window = (0, 0);
        w.probe_successes = 0;
        if state == SharedState::Closed {
            w.streak = Streak::default();
        }
    }
    w.streak = if new.streak.cleared {
        new.streak
    } else {
        Streak {
            cleared: w.streak.cleared,
            failures: w.streak.failures.saturating_add(new.streak.failures),
        }
    };
    w.window = (
        w.window.0.saturating_add(new.window.0),
        w.window.1.saturating_add(new.window.1),
    );
    w.probe_successes = w.probe_successes.saturating_add(new.probe_successes);
    w.probes_released = w.probes_released.saturating_add(new.probes_released);
    w
}

#[cfg(test)]
#[path = "change_tests.rs"]
mod tests;
