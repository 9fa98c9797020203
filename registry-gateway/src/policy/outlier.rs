//! Slow replicas taken out: a replica whose median latency is `latency_factor` × its peers' is ejected,
//! never more than half of a service's replicas (Envoy's outlier detection with `max_ejection_percent`).

use std::fmt;
use std::time::Duration;

/// `outlier:` thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutlierConfig {
    /// Whether slow replicas are ejected at all.
    pub enabled: bool,
    /// A replica is slow when its median is at least this many times its peers' median.
    pub latency_factor: f64,
    /// Measured answers a replica needs in one interval to be judged (or to serve as a peer).
    pub min_requests: u32,
    /// How often the medians are taken and judged; each interval starts afresh.
    pub interval: Duration,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            enabled: true,
            latency_factor: 10.0,
            min_requests: 20,
            interval: Duration::from_secs(1),
        }
    }
}

/// Medians below this count as this: sub-millisecond differences are scheduling noise on the gateway's
/// host, not slowness, and a 0.1 ms peer must not make a 1 ms replica "10 times slower".
pub const LATENCY_FLOOR: Duration = Duration::from_millis(1);

/// Where a replica stands at the end of an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Its breaker is closed: it is judged.
    Closed,
    /// Open or half-open for another reason (failures, a peer gateway): neither judged nor a peer.
    Open,
    /// Open or half-open because it was ejected for slowness: counts against the half cap.
    OpenSlow,
}

/// One replica's interval, as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaLatency {
    /// Measured answers in the interval.
    pub requests: u32,
    /// Their median (an estimate; see the registry's latency histogram).
    pub median: Duration,
    /// Breaker standing at the end of the interval.
    pub standing: Standing,
}

/// Why a replica was ejected, for `state_reason` and the `[CIRCUIT]` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlowReason {
    /// Its median (floored at [`LATENCY_FLOOR`]).
    pub median: Duration,
    /// The median of its peers' medians (floored likewise).
    pub peers: Duration,
}

impl fmt::Display for SlowReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "slow: {} ms median vs {} ms for its peers",
            round_ms(self.median),
            round_ms(self.peers)
        )
    }
}

fn round_ms(d: Duration) -> u128 {
    (d.as_nanos() + 500_000) / 1_000_000
}

/// A replica to eject: its index in the input, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ejection {
    /// Index into the slice given to [`find_slow`].
    pub index: usize,
    /// The reason.
    pub reason: SlowReason,
}

/// The replicas of one service to eject for slowness at the end of an interval, slowest first.
///
/// A closed replica with at least `min_requests` answers is judged against the median of the other judged
/// replicas' medians (at least one is needed); it is slow at `latency_factor` × that or more. At most
/// `floor(n / 2)` of the `n` replicas may be out for slowness at once, those already out included: when
/// more are slow, the slowest go. A service slow everywhere has a slow median, so nobody is slow against it.
pub fn find_slow(replicas: &[ReplicaLatency], cfg: &OutlierConfig) -> Vec<Ejection> {
    if !cfg.enabled {
        return Vec::new();
    }
    let already = replicas
        .iter()
        .filter(|r| r.standing == Standing::OpenSlow)
        .count();
    let cap = (replicas.len() / 2).saturating_sub(already);
    if cap == 0 {
        return Vec::new();
    }
    let judged: Vec<(usize, Duration)> = replicas
        .iter()
        .enumerate()
        .filter(|(_, r)| r.standing == Standing::Closed && r.requests >= cfg.min_requests.max(1))
        .map(|(i, r)| (i, r.median.max(LATENCY_FLOOR)))
        .collect();
    if judged.len() < 2 {
        return Vec::new();
    }
    let mut peers: Vec<Duration> = Vec::with_capacity(judged.len() - 1);
    let mut slow: Vec<Ejection> = judged
        .iter()
        .filter_map(|&(index, median)| {
            peers.clear();
            peers.extend(judged.iter().filter(|(j, _)| *j != index).map(|&(_, m)| m));
            let peers = median_of(&mut peers);
            let is_slow = median.as_nanos() as f64 >= cfg.latency_factor * peers.as_nanos() as f64;
            is_slow.then_some(Ejection {
                index,
                reason: SlowReason { median, peers },
            })
        })
        .collect();
    slow.sort_by_key(|e| std::cmp::Reverse(e.reason.median));
    slow.truncate(cap);
    slow
}

/// The median of `values` (not empty); the mean of the two middle ones when their count is even.
fn median_of(values: &mut [Duration]) -> Duration {
    values.sort_unstable();
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: OutlierConfig = OutlierConfig {
        enabled: true,
        latency_factor: 10.0,
        min_requests: 20,
        interval: Duration::from_secs(1),
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn closed(requests: u32, median_ms: u64) -> ReplicaLatency {
        ReplicaLatency {
            requests,
            median: ms(median_ms),
            standing: Standing::Closed,
        }
    }

    fn with(standing: Standing, median_ms: u64) -> ReplicaLatency {
        ReplicaLatency {
            standing,
            ..closed(100, median_ms)
        }
    }

    fn ejected(replicas: &[ReplicaLatency]) -> Vec<(usize, String)> {
        find_slow(replicas, &CFG)
            .into_iter()
            .map(|e| (e.index, e.reason.to_string()))
            .collect()
    }

    #[test]
    fn one_slow_replica_of_three_is_ejected_with_its_reason() {
        let out = ejected(&[closed(50, 4), closed(50, 312), closed(50, 4)]);
        assert_eq!(
            out,
            [(1, "slow: 312 ms median vs 4 ms for its peers".to_owned())]
        );
    }

    #[test]
    fn with_two_replicas_the_slow_one_goes_and_the_fast_one_stays() {
        // Each has one peer: the fast one is not slower than the slow one; half of 2 is 1.
        assert_eq!(ejected(&[closed(20, 3), closed(20, 300)]).len(), 1);
        assert_eq!(ejected(&[closed(20, 3), closed(20, 300)])[0].0, 1);
    }

    #[test]
    fn two_peers_take_the_mean_of_the_middle() {
        // Peers of the 300 ms one: 2 ms and 8 ms -> 5 ms; 300 >= 50.
        let out = ejected(&[closed(20, 2), closed(20, 8), closed(20, 300), closed(3, 1)]);
        assert_eq!(
            out,
            [(2, "slow: 300 ms median vs 5 ms for its peers".to_owned())]
        );
    }

    #[test]
    fn too_few_requests_are_neither_judged_nor_peers() {
        // 19 answers: not judged, however slow.
        assert!(ejected(&[closed(100, 2), closed(19, 900), closed(100, 2)]).is_empty());
        // The only other replica with enough answers is the judge: with none, nothing happens.
        assert!(ejected(&[closed(100, 900), closed(5, 2), closed(5, 2)]).is_empty());
        // Exactly min_requests is enough.
        assert_eq!(ejected(&[closed(20, 2), closed(20, 900)]).len(), 1);
    }

    #[test]
    fn a_service_slow_everywhere_loses_nobody() {
        assert!(ejected(&[closed(50, 300), closed(50, 310), closed(50, 290)]).is_empty());
        // Three slow, one fast: the slow ones' peers are mostly slow, so none is 10 times its peers.
        assert!(ejected(&[
            closed(50, 1),
            closed(50, 300),
            closed(50, 300),
            closed(50, 300)
        ])
        .is_empty());
    }

    #[test]
    fn the_factor_is_inclusive() {
        assert_eq!(ejected(&[closed(20, 4), closed(20, 40)]).len(), 1);
        assert!(ejected(&[closed(20, 4), closed(20, 39)]).is_empty());
        let half = OutlierConfig {
            latency_factor: 2.5,
            ..CFG
        };
        assert_eq!(find_slow(&[closed(20, 4), closed(20, 10)], &half).len(), 1);
        assert!(find_slow(&[closed(20, 4), closed(20, 9)], &half).is_empty());
    }

    #[test]
    fn sub_millisecond_medians_count_as_one_millisecond() {
        // 0.1 ms peers would make a 2 ms replica "20 times slower": floored, it is only twice as slow.
        let fast = ReplicaLatency {
            median: Duration::from_micros(100),
            ..closed(50, 0)
        };
        assert!(ejected(&[fast, fast, closed(50, 2)]).is_empty());
        assert_eq!(
            ejected(&[fast, fast, closed(50, 10)]),
            [(2, "slow: 10 ms median vs 1 ms for its peers".to_owned())]
        );
    }

    #[test]
    fn never_more_than_half_and_the_slowest_first() {
        // Within one interval the peers' median already keeps the slow ones at most half (with a factor of
        // 2 or more); below that the cap decides. 5 replicas, factor 1.5: all three 10+ ms ones are 1.5
        // times their peers (1, 1 and two of the others: ~6 ms), but only 2 may go, the slowest.
        let loose = OutlierConfig {
            latency_factor: 1.5,
            ..CFG
        };
        let out = find_slow(
            &[
                closed(50, 1),
                closed(50, 10),
                closed(50, 12),
                closed(50, 1),
                closed(50, 11),
            ],
            &loose,
        );
        assert_eq!(out.iter().map(|e| e.index).collect::<Vec<_>>(), [2, 4]);
        // Already out for slowness counts: 5 replicas, one already out -> only one more may go, the slowest.
        let out = ejected(&[
            closed(50, 1),
            closed(50, 200),
            closed(50, 300),
            closed(50, 1),
            with(Standing::OpenSlow, 900),
        ]);
        assert_eq!(out.iter().map(|e| e.0).collect::<Vec<_>>(), [2], "{out:?}");
        // Two already out of four: nobody else, however slow.
        assert!(ejected(&[
            closed(50, 1),
            closed(50, 900),
            with(Standing::OpenSlow, 900),
            with(Standing::OpenSlow, 900),
        ])
        .is_empty());
        // Three replicas, one out for slowness: floor(3 / 2) = 1 is reached.
        assert!(ejected(&[closed(50, 1), closed(50, 900), with(Standing::OpenSlow, 0)]).is_empty());
    }

    #[test]
    fn replicas_open_for_failures_are_not_peers_but_count_in_the_service() {
        // The open one's latency says nothing; the slow one has a single peer, and 3 replicas allow 1 out.
        let out = ejected(&[closed(50, 2), closed(50, 300), with(Standing::Open, 1)]);
        assert_eq!(out.iter().map(|e| e.0).collect::<Vec<_>>(), [1]);
        // One replica alone is never judged.
        assert!(ejected(&[closed(50, 300)]).is_empty());
        assert!(ejected(&[]).is_empty());
    }

    #[test]
    fn disabled_ejects_nobody() {
        let off = OutlierConfig {
            enabled: false,
            ..CFG
        };
        assert!(find_slow(&[closed(50, 1), closed(50, 900)], &off).is_empty());
    }
}
