//! A replica's last breaker transitions, for operators: nothing allocated until the first one, ten kept.
//!
//! Every state change goes through [`Registry::note_transition`], local or applied from a peer gateway, so
//! the log, `state_reason`, `state_since`, the `gateway_breaker_transitions_total` series, the watchers
//! and the shared store never disagree (`gateway_replica_state` is read from the breaker itself at
//! scrape time).

use std::sync::Arc;
use std::time::Instant;

use super::command::Events;
use super::replica::ReplicaState;
use super::{Registry, RegistryEvent, Replica, StateReason};
use crate::clock::Stamp;
use crate::observe::{TransitionLabels, STATES};
use crate::policy::{BreakerState, Transition};

/// Transitions kept per replica (the oldest is dropped first).
pub const TRANSITIONS_KEPT: usize = 10;

/// One breaker state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransitionRecord {
    /// Wall-clock time, milliseconds since the Unix epoch (from the registry's [`crate::clock::WallClock`]).
    pub at_unix_ms: u64,
    /// State left.
    pub from: BreakerState,
    /// State entered.
    pub to: BreakerState,
    /// What caused it: the rule or peer event that moved the breaker (shown as `state_reason`).
    pub reason: StateReason,
}

/// A fixed ring of the last [`TRANSITIONS_KEPT`] records, in one allocation.
#[derive(Debug, Clone)]
struct Ring {
    slots: [TransitionRecord; TRANSITIONS_KEPT],
    /// Index of the oldest record.
    start: u8,
    len: u8,
}

/// The last [`TRANSITIONS_KEPT`] transitions of a replica. Empty costs one pointer: most replicas never
/// change state.
#[derive(Debug, Clone, Default)]
pub struct TransitionLog(Option<Box<Ring>>);

impl TransitionLog {
    /// No transition.
    pub const EMPTY: TransitionLog = TransitionLog(None);

    /// Appends `record`, dropping the oldest when full.
    pub fn push(&mut self, record: TransitionRecord) {
        let ring = self.0.get_or_insert_with(|| {
            Box::new(Ring {
                slots: [record; TRANSITIONS_KEPT],
                start: 0,
                len: 0,
            })
        });
        let len = usize::from(ring.len);
        let start = usize::from(ring.start);
        if len < TRANSITIONS_KEPT {
            ring.slots[(start + len) % TRANSITIONS_KEPT] = record;
            ring.len += 1;
        } else {
            ring.slots[start] = record;
            ring.start = ((start + 1) % TRANSITIONS_KEPT) as u8;
        }
    }

    /// The records, oldest first.
    pub fn to_vec(&self) -> Vec<TransitionRecord> {
        match &self.0 {
            None => Vec::new(),
            Some(ring) => (0..usize::from(ring.len))
                .map(|i| ring.slots[(usize::from(ring.start) + i) % TRANSITIONS_KEPT])
                .collect(),
        }
    }

    /// Whether nothing was recorded (and nothing allocated).
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

/// The states a breaker transition leaves and enters.
pub(crate) fn endpoints(t: Transition) -> (BreakerState, BreakerState) {
    match t {
        Transition::Opened => (BreakerState::Closed, BreakerState::Open),
        Transition::Reopened => (BreakerState::HalfOpen, BreakerState::Open),
        Transition::HalfOpened => (BreakerState::Open, BreakerState::HalfOpen),
        Transition::Closed => (BreakerState::HalfOpen, BreakerState::Closed),
    }
}

/// The `state` / `to` label value of a breaker state.
pub(crate) fn state_label(s: BreakerState) -> &'static str {
    match s {
        BreakerState::Closed => STATES[0],
        BreakerState::Open => STATES[1],
        BreakerState::HalfOpen => STATES[2],
    }
}

impl Registry {
    /// Records, in the locked state `st` of `r`, that its breaker went `from` → `to` at `now` because of
    /// `reason`, updates its metrics and pushes the [`RegistryEvent::StateChanged`] onto `events` (for
    /// its `[CIRCUIT]` line, the watchers, the shared store). Called with the replica's lock held, so that
    /// the record, `state_reason` and the event agree.
    pub(crate) fn note_transition(
        &self,
        r: &Arc<Replica>,
        st: &mut ReplicaState,
        (from, to): (BreakerState, BreakerState),
        reason: StateReason,
        now: Instant,
        events: &mut Events,
    ) {
        // Leaving half-open for open or closed: the new reason replaces the opening one. Entering half-open
        // keeps the reason it opened for: `state_reason` shows both.
        if to != BreakerState::HalfOpen {
            st.set_state_reason(reason);
        }
        st.state_since = Stamp::of(now);
        let record = TransitionRecord {
            at_unix_ms: self.wall.unix_ms(now),
            from,
            to,
            reason,
        };
        st.push_transition(record);
        if r.is_removed() {
            return;
        }
        events.push(RegistryEvent::StateChanged(Arc::clone(r), record));
        let labels = r.metric_labels();
        self.metrics
            .breaker_transitions
            .get_or_create(&TransitionLabels {
                service: labels.service,
                replica: labels.replica,
                to: state_label(to),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(at_unix_ms: u64) -> TransitionRecord {
        TransitionRecord {
            at_unix_ms,
            from: BreakerState::Closed,
            to: BreakerState::Open,
            reason: StateReason::Peer,
        }
    }

    #[test]
    fn keeps_the_last_ten_oldest_first_and_allocates_at_the_first() {
        let mut log = TransitionLog::default();
        assert!(log.is_empty());
        assert!(log.to_vec().is_empty());
        log.push(record(1));
        assert_eq!(log.to_vec(), [record(1)]);
        // pushed: 1..=13 -> kept: 4..=13
        for t in 2..=13 {
            log.push(record(t));
        }
        let kept: Vec<u64> = log.to_vec().iter().map(|r| r.at_unix_ms).collect();
        assert_eq!(kept, (4..=13).collect::<Vec<_>>());
    }

    #[test]
    fn an_empty_log_is_one_pointer() {
        assert_eq!(
            std::mem::size_of::<TransitionLog>(),
            std::mem::size_of::<usize>()
        );
    }
}
