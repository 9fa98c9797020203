//! The replicas a service lost lately to failures or lapsed leases, kept for operators (`evicted` in
//! `GET /registry`) for `eviction.probation_memory`, at most [`EVICTED_KEPT`] per service.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::transitions::TransitionLog;
use super::{History, ReplicaAddress};
use crate::policy::{EvictionReason, FailureCause};

/// Evicted replicas remembered per service: the most recent ones, so that a flapping fleet cannot grow
/// the registry's memory.
pub const EVICTED_KEPT: usize = 100;

/// One evicted replica as it was when it left.
#[derive(Debug, Clone)]
pub struct Evicted {
    /// Its registration id.
    pub id: Uuid,
    /// Its address.
    pub address: ReplicaAddress,
    /// Why it left.
    pub reason: EvictionReason,
    /// A peer gateway evicted it (the reason's counts are then this gateway's, not the peer's).
    pub by_peer: bool,
    /// When it left.
    pub evicted_at: Instant,
    /// When it left, wall clock, milliseconds since the Unix epoch.
    pub evicted_at_unix_ms: u64,
    /// Its counters when it left.
    pub counters: History,
    /// Its last failure's cause.
    pub last_failure: Option<FailureCause>,
    /// Its last breaker transitions.
    pub transitions: TransitionLog,
}

impl Evicted {
    /// Why it left, as a sentence.
    pub fn reason_sentence(&self) -> String {
        match (self.reason, self.by_peer, self.last_failure) {
            (EvictionReason::Failures(_), true, _) => {
                "evicted by a peer gateway for failures".to_owned()
            }
            (EvictionReason::Failures(n), false, Some(last)) => {
                format!("{n} consecutive failures (last: {last})")
            }
            (reason, _, _) => reason.to_string(),
        }
    }
}

/// A service's evicted replicas, oldest first.
#[derive(Debug, Default)]
pub(crate) struct EvictedList(VecDeque<Evicted>);

impl EvictedList {
    /// Remembers `e`; an older entry of the same address, and the oldest past [`EVICTED_KEPT`], go.
    pub(crate) fn push(&mut self, e: Evicted) {
        self.forget(&e.address);
        if self.0.len() == EVICTED_KEPT {
            self.0.pop_front();
        }
        self.0.push_back(e);
    }

    /// Forgets `address` (it registered again). Returns whether it was listed.
    pub(crate) fn forget(&mut self, address: &ReplicaAddress) -> bool {
        let before = self.0.len();
        self.0.retain(|e| &e.address != address);
        before != self.0.len()
    }

    /// Forgets the entries older than `memory` at `now`.
    pub(crate) fn prune(&mut self, now: Instant, memory: Duration) {
        while self
            .0
            .front()
            .is_some_and(|e| now.saturating_duration_since(e.evicted_at) >= memory)
        {
            self.0.pop_front();
        }
        if self.0.is_empty() {
            // Give the memory back: most services are never evicted from again.
            self.0 = VecDeque::new();
        }
    }

    /// The entries younger than `memory` at `now`, most recent first.
    pub(crate) fn recent(&self, now: Instant, memory: Duration) -> Vec<Evicted> {
        self.0
            .iter()
            .rev()
            .filter(|e| now.saturating_duration_since(e.evicted_at) < memory)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evicted(port: u16, at: Instant) -> Evicted {
        Evicted {
            id: Uuid::nil(),
            address: ReplicaAddress::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
            reason: EvictionReason::Failures(5),
            by_peer: false,
            evicted_at: at,
            evicted_at_unix_ms: 0,
            counters: History::default(),
            last_failure: Some(FailureCause::Connect),
            transitions: TransitionLog::default(),
        }
    }

    fn ports(list: &[Evicted]) -> Vec<u16> {
        list.iter()
            .map(|e| e.address.to_string()[17..].parse().unwrap())
            .collect()
    }

    #[test]
    fn keeps_the_most_recent_hundred_newest_first() {
        let t0 = Instant::now();
        let mut list = EvictedList::default();
        // evicted: 9000..9150 -> kept: 9149 down to 9050
        for i in 0..150 {
            list.push(evicted(9000 + i, t0));
        }
        let kept = ports(&list.recent(t0, Duration::from_secs(60)));
        assert_eq!(kept, (9050..9150).rev().collect::<Vec<_>>());
    }

    #[test]
    fn an_address_is_listed_once_and_leaves_when_it_registers_again() {
        let t0 = Instant::now();
        let mut list = EvictedList::default();
        list.push(evicted(9001, t0));
        list.push(evicted(9002, t0 + Duration::from_secs(1)));
        list.push(evicted(9001, t0 + Duration::from_secs(2)));
        let memory = Duration::from_secs(60);
        assert_eq!(ports(&list.recent(t0, memory)), [9001, 9002]);
        assert!(list.forget(&evicted(9001, t0).address));
        assert_eq!(ports(&list.recent(t0, memory)), [9002]);
    }

    #[test]
    fn entries_older_than_the_memory_are_not_shown_and_pruned() {
        let t0 = Instant::now();
        let memory = Duration::from_secs(10);
        let mut list = EvictedList::default();
        list.push(evicted(9001, t0));
        list.push(evicted(9002, t0 + Duration::from_secs(5)));
        // at 10 s: 9001 is 10 s old (gone), 9002 is 5 s old
        let at10 = t0 + Duration::from_secs(10);
        assert_eq!(ports(&list.recent(at10, memory)), [9002]);
        list.prune(at10, memory);
        assert_eq!(list.0.len(), 1);
        list.prune(t0 + Duration::from_secs(15), memory);
        assert!(list.0.is_empty());
    }

    #[test]
    fn the_reason_names_the_last_failure() {
        let t0 = Instant::now();
        let e = evicted(9001, t0);
        assert_eq!(
            e.reason_sentence(),
            "5 consecutive failures (last: connect failed)"
        );
        let lapsed = Evicted {
            reason: EvictionReason::LeaseExpired(Duration::from_millis(15_200)),
            ..e.clone()
        };
        assert_eq!(
            lapsed.reason_sentence(),
            "lease expired, no heartbeat for 15200 ms"
        );
        let by_peer = Evicted { by_peer: true, ..e };
        assert_eq!(
            by_peer.reason_sentence(),
            "evicted by a peer gateway for failures"
        );
    }
}
