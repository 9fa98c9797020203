//! A replica's response-head latencies in one outlier interval: 32 log-scaled counters, one atomic add each.
//!
//! Buckets grow by √2: bucket 0 holds everything under 1 ms, bucket `i` (1..=30) holds
//! `[2^((i-1)/2), 2^(i/2))` ms, and bucket 31 everything from 32.8 s up. The median is estimated as the
//! geometric middle of the bucket that holds the middle answer, so above 1 ms it is within a factor
//! 2^(1/4) (±19 %) of the true median, and the ratio of two medians within √2: a factor-10 rule acts at a
//! true ratio between about 7 and 14. That is plenty to tell a 300 ms replica from 3 ms ones; an exact
//! median would need the samples, which means memory and work per request.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Number of buckets.
pub(crate) const BUCKETS: usize = 32;

/// Answers counted per latency bucket since the last [`LatencyHistogram::take`]. Lock-free: the proxy adds
/// from any worker while the outlier task drains it. The counters are allocated at the first answer, so
/// a replica that never takes a request (most of a large fleet, on any one gateway) costs one pointer.
#[derive(Debug, Default)]
pub(crate) struct LatencyHistogram {
    buckets: OnceLock<Box<[AtomicU32; BUCKETS]>>,
}

/// A drained histogram: the counts of one interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LatencyCounts {
    counts: [u32; BUCKETS],
}

/// The bucket of a latency.
fn bucket_of(d: Duration) -> usize {
    // Capped so that the square fits: everything past 67 s is in the last bucket anyway.
    let us = d.as_micros().min(1 << 26) as u64;
    // i - 1 = floor(log2((us / 1000)^2)), exactly, in integers.
    let x = us * us / 1_000_000;
    if x == 0 {
        return 0;
    }
    (64 - x.leading_zeros() as usize).min(BUCKETS - 1)
}

/// The value that stands for bucket `i`: its geometric middle (half a millisecond for bucket 0).
fn estimate_of(i: usize) -> Duration {
    if i == 0 {
        return Duration::from_micros(500);
    }
    Duration::from_secs_f64(1e-3 * 2f64.powf((2 * i - 1) as f64 / 4.0))
}

impl LatencyHistogram {
    /// Counts one answer that took `d`.
    pub(crate) fn record(&self, d: Duration) {
        // Relaxed: each counter is independent; the drain does not need to see an answer in any order.
        self.buckets.get_or_init(Box::default)[bucket_of(d)].fetch_add(1, Ordering::Relaxed);
    }

    /// Drains the counts: the next interval starts from zero. An answer counted while this runs lands in
    /// this interval or the next, never in both nor in neither.
    pub(crate) fn take(&self) -> LatencyCounts {
        let mut counts = [0; BUCKETS];
        if let Some(buckets) = self.buckets.get() {
            for (c, b) in counts.iter_mut().zip(buckets.iter()) {
                *c = b.swap(0, Ordering::Relaxed);
            }
        }
        LatencyCounts { counts }
    }
}

impl LatencyCounts {
    /// Answers counted.
    pub(crate) fn total(&self) -> u32 {
        self.counts.iter().fold(0u32, |a, &c| a.saturating_add(c))
    }

    /// The estimated median (the lower one for an even count); `None` without answers.
    pub(crate) fn median(&self) -> Option<Duration> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = total.div_ceil(2);
        let mut seen = 0u32;
        for (i, &c) in self.counts.iter().enumerate() {
            seen = seen.saturating_add(c);
            if seen >= rank {
                return Some(estimate_of(i));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: f64) -> Duration {
        Duration::from_secs_f64(n / 1000.0)
    }

    #[test]
    fn buckets_grow_by_the_square_root_of_two() {
        assert_eq!(bucket_of(Duration::ZERO), 0);
        assert_eq!(bucket_of(ms(0.999)), 0);
        assert_eq!(bucket_of(ms(1.0)), 1);
        assert_eq!(bucket_of(ms(1.414)), 1);
        assert_eq!(bucket_of(ms(1.415)), 2);
        assert_eq!(bucket_of(ms(2.0)), 3);
        assert_eq!(bucket_of(ms(300.0)), 17);
        assert_eq!(bucket_of(ms(32_767.0)), 30);
        assert_eq!(bucket_of(ms(32_768.0)), 31);
        assert_eq!(bucket_of(Duration::from_secs(3600)), 31);
        // Every bucket's estimate falls in that bucket.
        for i in 0..BUCKETS {
            assert_eq!(bucket_of(estimate_of(i)), i, "{i}");
        }
    }

    #[test]
    fn the_median_is_within_a_fourth_root_of_two() {
        for true_ms in [1.0, 3.0, 4.0, 7.5, 100.0, 300.0, 312.0, 2500.0] {
            let h = LatencyHistogram::default();
            for _ in 0..5 {
                h.record(ms(true_ms));
            }
            let m = h.take().median().unwrap().as_secs_f64() * 1000.0;
            let ratio = m / true_ms;
            assert!(
                (2f64.powf(-0.25)..=2f64.powf(0.25)).contains(&ratio),
                "{true_ms} ms estimated as {m} ms"
            );
        }
    }

    #[test]
    fn the_median_ignores_a_tail_and_take_starts_afresh() {
        let h = LatencyHistogram::default();
        for _ in 0..6 {
            h.record(ms(4.0));
        }
        for _ in 0..4 {
            h.record(ms(5000.0));
        }
        let counts = h.take();
        assert_eq!(counts.total(), 10);
        assert_eq!(counts.median(), Some(estimate_of(bucket_of(ms(4.0)))));
        // Even count: the lower median.
        for _ in 0..2 {
            h.record(ms(4.0));
            h.record(ms(300.0));
        }
        assert_eq!(h.take().median(), Some(estimate_of(bucket_of(ms(4.0)))));
        assert_eq!(h.take().total(), 0);
        assert_eq!(h.take().median(), None);
    }
}
