//! One `Watch` stream: the registry's snapshot (whole, or in parts from the [`Listing`]), then its
//! changes, and a fresh snapshot when the watcher falls behind.

use std::sync::Arc;

use registry_proto::registry::v1 as pb;
use tokio::sync::broadcast::error::RecvError;

use super::convert;
use crate::clock;
use crate::registry::{Listing, ListingFilter, Registry, RegistryEvent};

/// One `Watch` stream: a snapshot (whole or in parts), then changes, and a fresh snapshot after a lag.
pub(super) struct Watcher {
    rx: tokio::sync::broadcast::Receiver<RegistryEvent>,
    registry: Arc<Registry>,
    /// `Some(max replicas per part)` when the client asked for the snapshot in parts.
    in_parts: Option<usize>,
    snapshot: Snapshot,
}

/// Where a watcher is in its snapshot.
enum Snapshot {
    /// A whole snapshot is still to send (clients that did not ask for parts).
    Whole,
    /// Parts are being sent, then a `snapshot_end`.
    Parts(Listing),
    /// Sent: changes follow.
    Done,
}

impl Watcher {
    /// A watcher of `registry`, its snapshot in parts of at most `in_parts` replicas when set. It
    /// subscribes before taking the snapshot, so that no change falls between the two.
    pub(super) fn new(registry: Arc<Registry>, in_parts: Option<usize>) -> Self {
        let mut w = Watcher {
            rx: registry.subscribe(),
            registry,
            in_parts,
            snapshot: Snapshot::Done,
        };
        w.start_snapshot();
        w
    }

    fn start_snapshot(&mut self) {
        self.snapshot = match self.in_parts {
            Some(max) => {
                Snapshot::Parts(Listing::new(&self.registry, &ListingFilter::default(), max))
            }
            None => Snapshot::Whole,
        };
    }

    /// The next message; `None` once the registry is gone.
    pub(super) async fn next_event(&mut self) -> Option<pb::RegistryEvent> {
        loop {
            let event = match std::mem::replace(&mut self.snapshot, Snapshot::Done) {
                Snapshot::Whole => {
                    let all = Listing::new(&self.registry, &ListingFilter::default(), usize::MAX);
                    pb::registry_event::Event::Snapshot(convert::services(all))
                }
                Snapshot::Parts(mut listing) => match listing.next() {
                    Some(sp) => {
                        let part = convert::part(&sp);
                        self.snapshot = Snapshot::Parts(listing);
                        pb::registry_event::Event::SnapshotPart(part)
                    }
                    None => pb::registry_event::Event::SnapshotEnd(pb::SnapshotEnd {}),
                },
                Snapshot::Done => match self.rx.recv().await {
                    Ok(event) => match change_event(event) {
                        Some(e) => e,
                        None => continue,
                    },
                    // Fell behind: a fresh snapshot replaces the events that were lost, and those
                    // still queued (older than the snapshot) are dropped with a new subscription
                    // taken before it, so that only later changes follow it.
                    Err(RecvError::Lagged(_)) => {
                        self.rx = self.rx.resubscribe();
                        self.start_snapshot();
                        continue;
                    }
                    Err(RecvError::Closed) => return None,
                },
            };
            return Some(pb::RegistryEvent { event: Some(event) });
        }
    }
}

/// The message of a change; `None` for what watchers do not see ([`RegistryEvent::is_watched`]).
fn change_event(event: RegistryEvent) -> Option<pb::registry_event::Event> {
    let now = clock::now();
    let e = match event {
        RegistryEvent::Added(r, _) => pb::registry_event::Event::Added(convert::replica(&r, now)),
        RegistryEvent::Removed(r, _, _) => {
            pb::registry_event::Event::Removed(convert::replica(&r, now))
        }
        RegistryEvent::StateChanged(r, t) => {
            let mut p = convert::replica(&r, now);
            p.state = convert::state(t.to) as i32;
            pb::registry_event::Event::StateChanged(p)
        }
        RegistryEvent::Renewed(_)
        | RegistryEvent::Attempt { .. }
        | RegistryEvent::ProbeSucceeded(_)
        | RegistryEvent::ProbeDone(_) => return None,
    };
    Some(e)
}
