//! When to look at a lease again: a min-heap of deadlines, so that a sweep costs nothing while no lease
//! is due, whatever the number of leases.
//!
//! Renewals never touch it. An entry carries the deadline its lease had when it was scheduled; a lease
//! only ever moves later, so that deadline is never later than the real one. When an entry falls due the
//! caller looks at the lease: renewed since, it is scheduled again at its new deadline (once per lease
//! period at most); otherwise it has run out.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::Instant;

/// What the caller found when an entry fell due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Its lease now ends at this instant: look again then.
    Later(Instant),
    /// Nothing more to watch (its lease ran out and was dealt with, or it is gone).
    Done,
}

#[derive(Debug)]
struct Entry<K> {
    at: Instant,
    key: K,
}

impl<K> PartialEq for Entry<K> {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl<K> Eq for Entry<K> {}
impl<K> PartialOrd for Entry<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<K> Ord for Entry<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.at.cmp(&other.at)
    }
}

/// Deadlines to look at, earliest first.
#[derive(Debug)]
pub struct LeaseTimer<K> {
    heap: BinaryHeap<Reverse<Entry<K>>>,
}

impl<K> Default for LeaseTimer<K> {
    fn default() -> Self {
        LeaseTimer {
            heap: BinaryHeap::new(),
        }
    }
}

impl<K> LeaseTimer<K> {
    /// Looks at `key` again at `at`.
    pub fn schedule(&mut self, at: Instant, key: K) {
        self.heap.push(Reverse(Entry { at, key }));
    }

    /// Entries waiting (stale ones included until they fall due).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The earliest deadline waiting.
    pub fn next_at(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.at)
    }

    /// Takes every entry due at `now` (deadline `<= now`), earliest first.
    pub fn take_due(&mut self, now: Instant) -> Vec<K> {
        let mut due = Vec::new();
        while self.heap.peek().is_some_and(|Reverse(e)| e.at <= now) {
            if let Some(Reverse(e)) = self.heap.pop() {
                due.push(e.key);
            }
        }
        due
    }

    /// Schedules `key` again or lets it go, as `due` says.
    pub fn settle(&mut self, key: K, due: Due) {
        if let Due::Later(at) = due {
            self.schedule(at, key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn entries_fall_due_at_their_deadline_earliest_first() {
        let t0 = Instant::now();
        let mut t = LeaseTimer::default();
        t.schedule(t0 + s(15), "b");
        t.schedule(t0 + s(10), "a");
        t.schedule(t0 + s(20), "c");
        assert_eq!(t.next_at(), Some(t0 + s(10)));
        assert!(t.take_due(t0 + s(9)).is_empty());
        assert_eq!(t.take_due(t0 + s(10)), ["a"]);
        assert_eq!(t.take_due(t0 + s(30)), ["b", "c"]);
        assert!(t.is_empty());
        assert_eq!(t.next_at(), None);
    }

    #[test]
    fn a_renewed_lease_is_looked_at_again_at_its_new_deadline() {
        // TTL 15 s; the lease is renewed at t=10 s (deadline 25 s) without touching the timer.
        let t0 = Instant::now();
        let mut t = LeaseTimer::default();
        t.schedule(t0 + s(15), 7u32);
        let mut deadline = t0 + s(15);
        deadline = deadline.max(t0 + s(10) + s(15));
        // t=15 s: due, but renewed: scheduled at 25 s.
        for k in t.take_due(t0 + s(15)) {
            t.settle(k, Due::Later(deadline));
        }
        assert_eq!(t.len(), 1);
        assert!(t.take_due(t0 + s(24)).is_empty());
        // t=25 s: due and run out: let go.
        let due = t.take_due(t0 + s(25));
        assert_eq!(due, [7]);
        for k in due {
            t.settle(k, Due::Done);
        }
        assert!(t.is_empty());
    }

    #[test]
    fn a_million_leases_cost_nothing_while_none_is_due() {
        let t0 = Instant::now();
        let mut t = LeaseTimer::default();
        for i in 0..1_000_000u32 {
            t.schedule(t0 + s(3600) + Duration::from_millis(u64::from(i % 1000)), i);
        }
        // Sweeps every second for an hour less a second find nothing and take nothing.
        for sec in 0..3599 {
            assert!(t.take_due(t0 + s(sec)).is_empty());
        }
        assert_eq!(t.len(), 1_000_000);
        assert_eq!(t.take_due(t0 + s(3600)).len(), 1000);
    }
}
