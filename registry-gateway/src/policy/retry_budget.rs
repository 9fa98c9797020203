//! The retry budget: retries may add at most a share of the recent requests, plus a small floor.

use std::time::{Duration, Instant};

/// Retry budget settings (`retry.budget.*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudgetConfig {
    /// Share of the window's client requests that may be retried, in `0.0..=1.0`.
    pub ratio: f64,
    /// Retries allowed per second of the window whatever the traffic, so that a quiet service still fails
    /// over (a reserve of `min_per_second × window` retries).
    pub min_per_second: u32,
    /// How long a request or a retry counts, in whole seconds (at least 1).
    pub window: Duration,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        RetryBudgetConfig {
            ratio: 0.2,
            min_per_second: 3,
            window: Duration::from_secs(10),
        }
    }
}

/// Millionths of a token: `ratio` is applied in integers so that 20 % of 5 requests is exactly 1 retry.
const MICRO: u64 = 1_000_000;

/// The counts of one second of the window.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which second since the origin these counts belong to.
    second: u64,
    requests: u64,
    retries: u64,
}

/// One service's retry budget, so that retries cannot multiply the load on a service failing everywhere.
///
/// The rule, counted over the last `window` whole seconds (the current second included):
///
/// ```text
/// a retry is sent when   retries + 1  <=  ratio × requests  +  min_per_second × window
/// ```
///
/// where `requests` are the client requests (each deposits once, whatever its attempts) and `retries` the
/// attempts after the first that were sent (a refused retry is not counted). This is Finagle's
/// `RetryBudget`: each request deposits `ratio` tokens, each retry withdraws one, over a reserve of
/// `min_per_second × ttl`, and both expire after the TTL. With the defaults (20 %, 3/s, 10 s) a service
/// whose every replica fails sees at most about 1.2× its client requests, plus 30 retries per 10 s.
/// The arithmetic is in integers (millionths of a token), so the rule holds exactly at its edges.
///
/// A ring of per-second buckets over the window.
/// Fixed size after creation: depositing or withdrawing touches one bucket and never allocates. Not
/// thread-safe by itself; the registry keeps it behind a per-service lock held for a few counter updates.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    ratio_micro: u64,
    reserve_micro: u64,
    /// The instant of second 0: the first call's `now` (the registry creates services without a clock).
    origin: Option<Instant>,
    /// The latest second seen: a caller whose `now` was read a moment before another's counts in the
    /// latest second, so a slightly stale clock never rotates away newer counts.
    latest: u64,
    buckets: Box<[Bucket]>,
}

impl RetryBudget {
    /// An empty budget with `config` (the window is rounded down to whole seconds, at least 1).
    pub fn new(config: RetryBudgetConfig) -> Self {
        let window = config.window.as_secs().max(1);
        RetryBudget {
            ratio_micro: (config.ratio.clamp(0.0, 1.0) * MICRO as f64).round() as u64,
            reserve_micro: u64::from(config.min_per_second)
                .saturating_mul(window)
                .saturating_mul(MICRO),
            origin: None,
            latest: 0,
            buckets: vec![Bucket::default(); window as usize].into_boxed_slice(),
        }
    }

    /// Counts one client request at `now`.
    pub fn deposit(&mut self, now: Instant) {
        self.bucket(now).requests += 1;
    }

    /// Whether a retry may be sent at `now`; when it may, it is counted.
    pub fn try_withdraw(&mut self, now: Instant) -> bool {
        let (requests, retries) = self.totals(now);
        let allowed = self
            .ratio_micro
            .saturating_mul(requests)
            .saturating_add(self.reserve_micro);
        if (retries + 1).saturating_mul(MICRO) > allowed {
            return false;
        }
        self.bucket(now).retries += 1;
        true
    }

    /// Client requests and retries counted in the window at `now`.
    pub fn totals(&mut self, now: Instant) -> (u64, u64) {
        let second = self.second(now);
        let window = self.buckets.len() as u64;
        self.buckets
            .iter()
            .filter(|b| b.second + window > second)
            .fold((0, 0), |(q, r), b| (q + b.requests, r + b.retries))
    }

    fn second(&mut self, now: Instant) -> u64 {
        let origin = *self.origin.get_or_insert(now);
        let second = now.saturating_duration_since(origin).as_secs();
        self.latest = self.latest.max(second);
        self.latest
    }

    /// The current second's bucket, emptied first when it still holds a second that has left the window.
    fn bucket(&mut self, now: Instant) -> &mut Bucket {
        let second = self.second(now);
        let len = self.buckets.len() as u64;
        let b = &mut self.buckets[(second % len) as usize];
        if b.second != second {
            *b = Bucket {
                second,
                requests: 0,
                retries: 0,
            };
        }
        b
    }
}

/// Refusals since the last log line, and when to write the next one: at most one line per `every`.
#[derive(Debug, Clone)]
pub struct RefusalLog {
    every: Duration,
    last: Option<Instant>,
    pending: u64,
}

/// What a log line about refused retries says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusalReport {
    /// Retries refused since the previous line (this one included).
    pub refused: u64,
    /// Time since the previous line; `None` for the first.
    pub since: Option<Duration>,
}

impl RefusalLog {
    /// A log that writes at most one line per `every`.
    pub fn new(every: Duration) -> Self {
        RefusalLog {
            every,
            last: None,
            pending: 0,
        }
    }

    /// Counts one refused retry at `now`; returns what to log when a line is due.
    ///
    /// The first refusal is logged at once (the moment a budget starts biting is worth knowing); later
    /// ones are added up and logged with the next refusal at least `every` after the previous line.
    pub fn refused(&mut self, now: Instant) -> Option<RefusalReport> {
        self.pending += 1;
        let since = match self.last {
            Some(last) => {
                let since = now.saturating_duration_since(last);
                if since < self.every {
                    return None;
                }
                Some(since)
            }
            None => None,
        };
        let report = RefusalReport {
            refused: self.pending,
            since,
        };
        self.last = Some(now);
        self.pending = 0;
        Some(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(ratio: f64, min_per_second: u32, window_secs: u64) -> RetryBudgetConfig {
        RetryBudgetConfig {
            ratio,
            min_per_second,
            window: Duration::from_secs(window_secs),
        }
    }

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    /// Withdraws until refused at `now`; returns how many were allowed.
    fn drain(b: &mut RetryBudget, now: Instant) -> u32 {
        let mut n = 0;
        while b.try_withdraw(now) {
            n += 1;
            assert!(n < 1_000_000, "a budget without end");
        }
        n
    }

    #[test]
    fn the_defaults_are_twenty_percent_plus_three_per_second_over_ten_seconds() {
        let c = RetryBudgetConfig::default();
        assert_eq!(c, cfg(0.2, 3, 10));
        let t0 = Instant::now();
        let mut b = RetryBudget::new(c);
        for _ in 0..100 {
            b.deposit(t0);
        }
        // 20 % of 100 requests, plus 3/s × 10 s
        assert_eq!(drain(&mut b, t0), 20 + 30);
        assert_eq!(b.totals(t0), (100, 50));
    }

    #[test]
    fn each_request_adds_its_share_exactly() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(cfg(0.2, 0, 10));
        // 0.2 × 4 = 0.8 < 1: no retry yet; the fifth request makes exactly one token.
        for _ in 0..4 {
            b.deposit(t0);
        }
        assert!(!b.try_withdraw(t0));
        b.deposit(t0);
        assert!(b.try_withdraw(t0));
        assert!(!b.try_withdraw(t0));
        // Refused retries are not counted: five more requests, one more retry.
        for _ in 0..4 {
            b.deposit(t0);
            assert!(!b.try_withdraw(t0));
        }
        b.deposit(t0);
        assert!(b.try_withdraw(t0));
        assert_eq!(b.totals(t0), (10, 2));
    }

    #[test]
    fn the_floor_alone_allows_min_per_second_times_the_window() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(cfg(0.2, 3, 10));
        // No request at all (a quiet service, or a gateway just started): the reserve is still there.
        assert_eq!(drain(&mut b, t0), 30);
        // Spent: nothing more until retries leave the window.
        assert!(!b.try_withdraw(ms(t0, 9_999)));
        assert_eq!(drain(&mut b, ms(t0, 10_000)), 30);
    }

    #[test]
    fn ratio_zero_allows_the_floor_only() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(cfg(0.0, 1, 5));
        for _ in 0..1000 {
            b.deposit(t0);
        }
        assert_eq!(drain(&mut b, t0), 5);
        let mut none = RetryBudget::new(cfg(0.0, 0, 10));
        for _ in 0..1000 {
            none.deposit(t0);
        }
        assert_eq!(drain(&mut none, t0), 0);
    }

    #[test]
    fn ratio_one_allows_one_retry_per_request() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(cfg(1.0, 0, 10));
        for _ in 0..7 {
            b.deposit(t0);
        }
        assert_eq!(drain(&mut b, t0), 7);
    }

    #[test]
    fn requests_and_retries_leave_the_window_after_whole_seconds() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(cfg(0.5, 0, 10));
        // Seconds count from the first call.
        assert_eq!(b.totals(t0), (0, 0));
        for _ in 0..10 {
            b.deposit(ms(t0, 500)); // second 0
        }
        assert_eq!(drain(&mut b, ms(t0, 2_000)), 5); // second 2
        for _ in 0..4 {
            b.deposit(ms(t0, 3_000)); // second 3
        }
        assert_eq!(drain(&mut b, ms(t0, 3_000)), 2);
        // Second 9 is the last that counts second 0: 14 requests, 7 retries, nothing left.
        assert_eq!(b.totals(ms(t0, 9_999)), (14, 7));
        assert!(!b.try_withdraw(ms(t0, 9_999)));
        // Second 10: the 10 requests of second 0 are gone; 4 requests and 7 retries remain, so still none.
        assert_eq!(b.totals(ms(t0, 10_000)), (4, 7));
        assert!(!b.try_withdraw(ms(t0, 10_000)));
        // Second 12: the 5 retries of second 2 are gone too: 4 requests allow 2, and 2 are counted.
        assert_eq!(b.totals(ms(t0, 12_000)), (4, 2));
        assert!(!b.try_withdraw(ms(t0, 12_000)));
        // Second 13: everything has left.
        assert_eq!(b.totals(ms(t0, 13_000)), (0, 0));
        b.deposit(ms(t0, 13_000));
        b.deposit(ms(t0, 13_000));
        assert_eq!(drain(&mut b, ms(t0, 13_000)), 1);
    }

    #[test]
    fn a_bucket_reused_after_a_long_pause_starts_empty() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(cfg(1.0, 0, 2));
        for _ in 0..3 {
            b.deposit(t0);
        }
        // 100 s later the same slot of the ring (second 100, 100 % 2 == 0) must not count second 0.
        assert_eq!(b.totals(ms(t0, 100_000)), (0, 0));
        b.deposit(ms(t0, 100_000));
        assert_eq!(b.totals(ms(t0, 100_000)), (1, 0));
        assert_eq!(drain(&mut b, ms(t0, 100_500)), 1);
    }

    #[test]
    fn a_slightly_stale_clock_counts_in_the_latest_second() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(cfg(1.0, 0, 10));
        b.deposit(t0); // the origin
        b.deposit(ms(t0, 5_000));
        // Another worker read its clock just before: it counts in second 5, not in a fresh second 4.
        b.deposit(ms(t0, 4_999));
        assert_eq!(b.totals(ms(t0, 5_000)), (3, 0));
        assert_eq!(b.totals(ms(t0, 14_999)), (2, 0));
    }

    #[test]
    fn a_huge_floor_does_not_overflow() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(RetryBudgetConfig {
            ratio: 1.0,
            min_per_second: u32::MAX,
            window: Duration::from_secs(60),
        });
        assert!(b.try_withdraw(t0));
    }

    #[test]
    fn refusals_are_logged_at_most_once_per_second() {
        let t0 = Instant::now();
        let mut log = RefusalLog::new(Duration::from_secs(1));
        assert_eq!(
            log.refused(t0),
            Some(RefusalReport {
                refused: 1,
                since: None
            })
        );
        for i in 1..=11 {
            assert_eq!(log.refused(ms(t0, i * 80)), None);
        }
        assert_eq!(
            log.refused(ms(t0, 1_000)),
            Some(RefusalReport {
                refused: 12,
                since: Some(Duration::from_secs(1))
            })
        );
        assert_eq!(log.refused(ms(t0, 1_999)), None);
        // A quiet spell: the next refusal reports the one before it and how long the line covers.
        assert_eq!(
            log.refused(ms(t0, 61_000)),
            Some(RefusalReport {
                refused: 2,
                since: Some(Duration::from_secs(60))
            })
        );
    }
}
