//! How many GETs may be pipelined together to one replica: as many as its recent answers allow within a
//! latency budget. A replica answers a batch one request after another, so the last request of a batch of
//! `n` waits about `n - 1` answer times behind the others; the batch is held to `budget ÷ answer time`.

use std::time::Duration;

/// A replica's moving average answer time, as one worker sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AnswerTime {
    /// `None` until a first answer was timed.
    average: Option<Duration>,
}

impl AnswerTime {
    /// Weight of a new sample: 1/4, so a replica that turns slow stops being batched within a few answers.
    const WEIGHT: f64 = 0.25;

    /// Folds in one answer time (for a batch: its time from write to last answer, divided by its size).
    pub fn record(&mut self, sample: Duration) {
        self.average = Some(match self.average {
            None => sample,
            Some(avg) => avg.mul_f64(1.0 - Self::WEIGHT) + sample.mul_f64(Self::WEIGHT),
        });
    }

    /// The moving average, once there is one.
    pub fn average(&self) -> Option<Duration> {
        self.average
    }

    /// The most requests a batch may hold: `max` while nothing is known or answers take no measurable
    /// time, else `budget ÷ average`, between 1 (no batching) and `max`.
    pub fn batch_limit(&self, max: usize, budget: Duration) -> usize {
        let max = max.max(1);
        match self.average {
            None => max,
            Some(avg) if avg.is_zero() => max,
            Some(avg) => {
                let n = budget.as_nanos() / avg.as_nanos();
                n.clamp(1, max as u128) as usize
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const US: Duration = Duration::from_micros(1);

    #[test]
    fn unknown_or_instant_answers_allow_the_whole_batch() {
        let t = AnswerTime::default();
        assert_eq!(t.batch_limit(16, 2 * MS), 16);
        let mut t = AnswerTime::default();
        t.record(Duration::ZERO);
        assert_eq!(t.batch_limit(16, 2 * MS), 16);
        assert_eq!(t.batch_limit(0, 2 * MS), 1, "a max of 0 means 1");
    }

    #[test]
    fn the_limit_is_the_budget_over_the_answer_time_between_one_and_max() {
        let mut t = AnswerTime::default();
        t.record(100 * US);
        assert_eq!(t.batch_limit(64, 2 * MS), 20);
        assert_eq!(t.batch_limit(16, 2 * MS), 16);
        let mut t = AnswerTime::default();
        t.record(700 * US);
        assert_eq!(t.batch_limit(16, 2 * MS), 2);
        let mut t = AnswerTime::default();
        t.record(3 * MS);
        assert_eq!(
            t.batch_limit(16, 2 * MS),
            1,
            "slower than the budget: no batching"
        );
    }

    #[test]
    fn the_average_follows_a_replica_that_turns_slow_within_a_few_answers_and_back() {
        let mut t = AnswerTime::default();
        t.record(50 * US);
        assert_eq!(t.average(), Some(50 * US));
        // Answers of 20 ms: the first moves the average to 5.04 ms, over the 2 ms budget at once.
        t.record(20 * MS);
        assert_eq!(t.average(), Some(Duration::from_nanos(5_037_500)));
        assert_eq!(t.batch_limit(16, 2 * MS), 1);
        // Fast again: 3/4 of the excess goes with each answer.
        let mut n = 0;
        while t.batch_limit(16, 2 * MS) < 16 {
            t.record(50 * US);
            n += 1;
            assert!(n < 40, "never batched again: {:?}", t.average());
        }
        assert_eq!(n, 15, "answers of 50 µs to batch 16 again");
    }
}
