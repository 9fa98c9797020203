//! Every state change the registry accepts, as a value: [`Registry::apply`] runs one at a `now` and returns
//! its reply and the [`RegistryEvent`]s it produced, as data; [`Registry::execute`] then hands those events
//! to their sinks (the log, the shared store's outbox, the watchers), in this one place.
//!
//! Local changes: [`AddStatic`], [`RemoveStatic`], [`Register`], [`Heartbeat`], [`Deregister`], [`Select`],
//! [`RecordOutcome`], [`Abandon`], [`SweepLeases`], [`EjectSlow`], [`OpenAsSlow`]. A peer gateway's
//! changes, from the shared store: [`PeerRegistered`], [`PeerRenewed`], [`PeerRemoved`], [`PeerOpened`],
//! [`PeerClosed`], [`PeerProbing`], [`SharedFailures`], [`SharedWindow`], [`SharedProbeSuccesses`],
//! [`RetainKnown`]. Each is applied where its rules live (`registering.rs`, `removal.rs`, `routing.rs`,
//! `sweep.rs`, `slow.rs`, `sync.rs`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smallvec::SmallVec;
use uuid::Uuid;

use super::{
    event_log, LeaseExpiry, Pick, Registration, Registry, RegistryEvent, RemovedFor, Replica,
    ReplicaAddress, ReplicaRecord, Service, ServiceName,
};
use crate::policy::{Outcome, SlowReason};

/// Events one command may produce without allocating: an attempt's outcome produces at most four (probe
/// given back, breaker transition, the attempt for peers, eviction).
pub const EVENTS_INLINE: usize = 4;

/// The events of one command, in the order they happened.
pub type Events = SmallVec<[RegistryEvent; EVENTS_INLINE]>;

/// What applying a command returned: its reply, and the events it produced (not yet published).
#[derive(Debug)]
#[must_use = "the events are published by `Registry::execute`; dropping them loses them"]
pub struct Applied<R> {
    /// What the command answers its caller.
    pub reply: R,
    /// What happened, in order.
    pub events: Events,
}

/// A state change the registry accepts.
pub trait Command {
    /// What it answers its caller.
    type Reply;

    /// Applies it to `registry` at `now`, pushing the events it produces onto `events` in the order they
    /// happened. Called through [`Registry::apply`] and [`Registry::execute`].
    fn run(self, registry: &Registry, now: Instant, events: &mut Events) -> Self::Reply;
}

impl Registry {
    /// Applies `command` at `now`: its reply and its events, published nowhere (a test reads them; the
    /// edges call [`Registry::execute`]).
    pub fn apply<C: Command>(&self, command: C, now: Instant) -> Applied<C::Reply> {
        let mut events = Events::new();
        let reply = command.run(self, now, &mut events);
        Applied { reply, events }
    }

    /// Applies `command` at `now` and publishes its events; returns its reply. The events are published
    /// once the command has released its locks, in the order it produced them (two commands racing on one
    /// replica publish in the order they return).
    pub fn execute<C: Command>(&self, command: C, now: Instant) -> C::Reply {
        let Applied { reply, events } = self.apply(command, now);
        self.publish(events);
        reply
    }

    /// The one place events leave the registry: each one's log line, the shared store's queue, the
    /// watchers.
    fn publish(&self, events: Events) {
        for event in events {
            event_log::write(&event);
            if let Some(outbox) = self.outbox.get() {
                outbox.push(&event);
            }
            if event.is_watched() {
                // No watcher is not an error.
                let _ = self.events.send(event);
            }
        }
    }
}

/// Adds a static replica from the config file (no event). Replies with it (the one there, if any).
#[derive(Debug, Clone)]
pub struct AddStatic {
    /// Its service.
    pub service: ServiceName,
    /// Its address.
    pub address: ReplicaAddress,
}

/// Removes a static replica the config no longer lists (config reload). Replies false when there is none.
#[derive(Debug, Clone, Copy)]
pub struct RemoveStatic<'a> {
    /// Its service.
    pub service: &'a str,
    /// Its address.
    pub address: &'a ReplicaAddress,
}

/// Registers a replica, or renews it when the same service+address is already there (same id).
#[derive(Debug, Clone)]
pub struct Register(pub Registration);

/// Renews a replica's lease (its heartbeat).
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat<'a> {
    /// Its service.
    pub service: &'a str,
    /// Its id, as the client sent it.
    pub id: &'a str,
}

/// Removes a registered replica at its own request.
#[derive(Debug, Clone, Copy)]
pub struct Deregister<'a> {
    /// Its service.
    pub service: &'a str,
    /// Its id, as the client sent it.
    pub id: &'a str,
}

/// Picks a replica of `service` that `accept`s the request for one attempt, skipping those in `tried`,
/// claiming its half-open probe when it is one. `accept` must not change state (it is called more than
/// once per replica).
pub struct Select<'a, F: Fn(&Replica) -> bool> {
    /// The service.
    pub service: &'a Service,
    /// Replicas this request already tried.
    pub tried: &'a [Uuid],
    /// Whether a replica can take this request (its protocol, the gRPC service it serves).
    pub accept: F,
}

/// Records the outcome of one attempt: counters, breaker, and eviction when the threshold is reached.
#[derive(Debug, Clone, Copy)]
pub struct RecordOutcome<'a> {
    /// The attempt's replica.
    pub pick: &'a Pick,
    /// How it ended.
    pub outcome: Outcome,
}

/// Gives back a half-open probe whose request ended without an outcome.
#[derive(Debug, Clone, Copy)]
pub struct Abandon<'a>(pub &'a Pick);

/// Removes every registered replica whose lease ran out (unless self-preservation holds them, or `0` is
/// [`LeaseExpiry::Suspended`]), and forgets old tombstones and the ids of replicas removed here more than
/// a lease ago. Replies how many replicas were removed.
#[derive(Debug, Clone, Copy)]
pub struct SweepLeases(pub LeaseExpiry);

/// Ends an outlier interval: judges each service's latencies and opens the slow replicas' breakers.
/// Replies how many opened.
#[derive(Debug, Clone, Copy)]
pub struct EjectSlow;

/// Opens the breaker of a replica, closed until now, because it is slow. Replies whether it opened.
#[derive(Debug, Clone, Copy)]
pub struct OpenAsSlow<'a> {
    /// The replica.
    pub replica: &'a Arc<Replica>,
    /// How slow it is.
    pub reason: SlowReason,
}

/// A peer registered (or still holds) a replica, whose lease has `lease_left` to run.
#[derive(Debug, Clone)]
pub struct PeerRegistered {
    /// The replica, as the peer wrote it.
    pub record: ReplicaRecord,
    /// Its lease time left.
    pub lease_left: Duration,
}

/// A peer renewed the lease of a replica. Replies whether this gateway holds it.
#[derive(Debug, Clone, Copy)]
pub struct PeerRenewed<'a> {
    /// Its service.
    pub service: &'a str,
    /// Its id.
    pub id: Uuid,
}

/// A peer removed a replica (for failures: it comes back on probation here too).
#[derive(Debug, Clone, Copy)]
pub struct PeerRemoved<'a> {
    /// Its service.
    pub service: &'a str,
    /// Its id.
    pub id: Uuid,
    /// Why it left.
    pub why: RemovedFor,
}

/// A peer opened the breaker of an address for `open_for` from now. Replies whether any local breaker
/// was admitting requests before.
#[derive(Debug, Clone, Copy)]
pub struct PeerOpened<'a> {
    /// The address.
    pub address: &'a ReplicaAddress,
    /// How long it stays open.
    pub open_for: Duration,
}

/// A peer's probe succeeded: the breaker of this address closes here too.
#[derive(Debug, Clone, Copy)]
pub struct PeerClosed<'a>(pub &'a ReplicaAddress);

/// Another gateway holds the half-open probe of this address: ours is held back.
#[derive(Debug, Clone, Copy)]
pub struct PeerProbing<'a>(pub &'a ReplicaAddress);

/// The failures of an address counted by every gateway reached `total`. Replies whether a breaker opened.
#[derive(Debug, Clone, Copy)]
pub struct SharedFailures<'a> {
    /// The address.
    pub address: &'a ReplicaAddress,
    /// Consecutive failures across gateways.
    pub total: u64,
}

/// Every gateway's failure-ratio window for an address together. Replies whether a breaker opened.
#[derive(Debug, Clone, Copy)]
pub struct SharedWindow<'a> {
    /// The address.
    pub address: &'a ReplicaAddress,
    /// Requests in the shared window.
    pub requests: u32,
    /// Failures among them.
    pub failures: u32,
}

/// Probes of an address from every gateway together reached `total` successes. Replies whether a breaker
/// was not closed.
#[derive(Debug, Clone, Copy)]
pub struct SharedProbeSuccesses<'a> {
    /// The address.
    pub address: &'a ReplicaAddress,
    /// Successful probes across gateways.
    pub total: u64,
}

/// Registered replicas whose ids are not in `keep` and that `known` says a peer once had left the shared
/// store while this gateway was not listening: removed here, quietly. Replies how many were removed.
pub struct RetainKnown<'a, F: Fn(Uuid) -> bool> {
    /// The ids the store holds.
    pub keep: &'a HashSet<Uuid>,
    /// Whether a peer once had this id.
    pub known: F,
}
