//! A lock-free latency histogram for `gateway_request_duration_seconds`: one atomic add per bucket hit.
//!
//! prometheus-client's own `Histogram` takes a write lock on every observation; on the request path that
//! is one more shared lock per request across workers. This one keeps fixed buckets (1 ms doubling to
//! ~33 s, then +Inf) in atomics and hands them to the same encoder.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds of the buckets, in seconds: 1 ms doubling, 16 of them (the last is ~32.8 s).
const BOUNDS: [f64; 16] = {
    let mut b = [0.0; 16];
    let mut i = 0;
    let mut v = 0.001;
    while i < 16 {
        b[i] = v;
        v *= 2.0;
        i += 1;
    }
    b
};

#[derive(Debug, Default)]
struct Inner {
    /// Observations per bucket (not cumulative); the last slot is +Inf.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    /// Sum of all observations, in nanoseconds (exact; 584 years before it wraps).
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

/// A shared handle: clones observe into the same buckets.
#[derive(Debug, Clone, Default)]
pub struct LatencyHistogram(Arc<Inner>);

impl LatencyHistogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let slot = BOUNDS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BOUNDS.len());
        self.0.buckets[slot].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.0.count.fetch_add(1, Ordering::Relaxed);
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = BOUNDS
            .iter()
            .copied()
            // The encoder writes `le="+Inf"` for `f64::MAX` (its own histogram's convention).
            .chain(std::iter::once(f64::MAX))
            .zip(self.0.buckets.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        // The count is the buckets' total, so a scrape racing an observation stays self-consistent.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn observations_land_in_cumulative_buckets_with_an_exact_sum() {
        let h = LatencyHistogram::default();
        // 0.5 ms → le=0.001; 3 ms → le=0.004; 1 h → only +Inf.
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(3600));
        let mut reg = Registry::default();
        reg.register("d_seconds", "test", h.clone());
        let mut out = String::new();
        prometheus_client::encoding::text::encode_registry(&mut out, &reg).unwrap();
        for line in [
            "d_seconds_bucket{le=\"0.001\"} 1",
            "d_seconds_bucket{le=\"0.002\"} 1",
            "d_seconds_bucket{le=\"0.004\"} 2",
            "d_seconds_bucket{le=\"32.768\"} 2",
            "d_seconds_bucket{le=\"+Inf\"} 3",
            "d_seconds_count 3",
            "d_seconds_sum 3600.0035",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
    }
}
