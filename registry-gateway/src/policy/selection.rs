//! Round-robin over the replicas whose breaker admits a request, spreading a skipped replica's share evenly.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Round-robin cursor of one service.
///
/// The cursor indexes the *eligible* replicas, not all of them: with `[A, B(open), C]` the order is
/// `A C A C`, where a cursor over all replicas that skips forward would give `A C C A C C` (B's share
/// landing on its neighbour).
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// Picks one of `n` replicas; `eligible(i)` says whether replica `i` can take the request and must not
    /// change state (it is called twice per replica). Returns `None` when no replica is eligible.
    pub fn pick(&self, n: usize, mut eligible: impl FnMut(usize) -> bool) -> Option<usize> {
        let count = (0..n).filter(|&i| eligible(i)).count();
        if count == 0 {
            return None;
        }
        let target = self.next.fetch_add(1, Ordering::Relaxed) % count;
        // Eligibility may shrink between the two passes (another request took a half-open probe slot):
        // then the last replica still eligible, never `None` while one is.
        let mut last = None;
        for (seen, i) in (0..n).filter(|&i| eligible(i)).enumerate() {
            if seen == target {
                return Some(i);
            }
            last = Some(i);
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequence(rr: &RoundRobin, eligible: &[bool], len: usize) -> Vec<usize> {
        (0..len)
            .map(|_| rr.pick(eligible.len(), |i| eligible[i]).unwrap())
            .collect()
    }

    #[test]
    fn a_replica_that_stops_being_eligible_between_the_passes_does_not_hide_the_others() {
        let rr = RoundRobin::default();
        for _ in 0..3 {
            // Replica 2 is eligible in the first pass only: its probe slot was taken meanwhile.
            let calls = std::cell::Cell::new(0);
            let picked = rr.pick(3, |i| {
                calls.set(calls.get() + 1);
                i != 2 || calls.get() <= 3
            });
            assert!(matches!(picked, Some(0 | 1)), "{picked:?}");
        }
    }

    #[test]
    fn cycles_in_order() {
        let rr = RoundRobin::default();
        // [A, B, C] -> A B C A B C
        assert_eq!(sequence(&rr, &[true; 3], 6), [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn a_skipped_replica_share_is_spread_evenly() {
        let rr = RoundRobin::default();
        // [A, B(open), C, D] -> A C D A C D: each survivor gets exactly a third
        let seq = sequence(&rr, &[true, false, true, true], 6);
        assert_eq!(seq, [0, 2, 3, 0, 2, 3]);
    }

    #[test]
    fn none_when_nothing_is_eligible() {
        let rr = RoundRobin::default();
        assert_eq!(rr.pick(3, |_| false), None);
        assert_eq!(rr.pick(0, |_| true), None);
    }
}
