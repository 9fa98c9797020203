//! Whether a failed attempt moves on to the next replica.

use super::outcome::FailureCause;

/// Retry limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, the first included (never more than the replicas there are).
    pub max_attempts: u32,
}

/// Whether the request body can be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyReplay {
    /// Empty or fully buffered: can be sent any number of times.
    Replayable,
    /// A stream nobody has read yet: can be sent once, to any replica.
    Untouched,
    /// A stream already (partly) sent: gone.
    Consumed,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try the next replica.
    Retry,
    /// Stop: every allowed attempt was used.
    Exhausted,
    /// Stop: the request may have had effects and cannot safely be repeated.
    Unsafe,
}

impl RetryPolicy {
    /// Decides after attempt number `attempts` (1 for the first) failed with `cause`, among `replicas`.
    ///
    /// A connection that never opened consumed nothing, so any request moves on. Once the request
    /// reached a replica it is repeated only when its method is idempotent and its body can be replayed.
    pub fn after_failure(
        &self,
        attempts: u32,
        replicas: usize,
        cause: FailureCause,
        idempotent: bool,
        body: BodyReplay,
    ) -> RetryDecision {
        let limit = (self.max_attempts as usize).min(replicas);
        if attempts as usize >= limit {
            return RetryDecision::Exhausted;
        }
        let safe = if cause.before_request_sent() {
            body != BodyReplay::Consumed
        } else {
            idempotent && body == BodyReplay::Replayable
        };
        if safe {
            RetryDecision::Retry
        } else {
            RetryDecision::Unsafe
        }
    }
}

/// Whether an HTTP method is idempotent (RFC 9110 §9.2.2).
pub fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use BodyReplay::*;
    use FailureCause::*;
    use RetryDecision::*;

    const POLICY: RetryPolicy = RetryPolicy { max_attempts: 3 };

    #[test]
    fn stops_at_max_attempts_or_replica_count() {
        assert_eq!(POLICY.after_failure(1, 5, Connect, true, Replayable), Retry);
        assert_eq!(POLICY.after_failure(2, 5, Connect, true, Replayable), Retry);
        assert_eq!(
            POLICY.after_failure(3, 5, Connect, true, Replayable),
            Exhausted
        );
        // two replicas: the second attempt is the last
        assert_eq!(
            POLICY.after_failure(2, 2, Connect, true, Replayable),
            Exhausted
        );
        assert_eq!(
            POLICY.after_failure(1, 1, Connect, true, Replayable),
            Exhausted
        );
    }

    #[test]
    fn connect_failures_move_any_request_whose_body_is_intact() {
        // POST with an unread stream: the connection never opened, so it moves on
        assert_eq!(POLICY.after_failure(1, 3, Connect, false, Untouched), Retry);
        assert_eq!(
            POLICY.after_failure(1, 3, ConnectTimeout, false, Untouched),
            Retry
        );
        assert_eq!(POLICY.after_failure(1, 3, Connect, false, Consumed), Unsafe);
    }

    #[test]
    fn after_sending_only_idempotent_replayable_requests_repeat() {
        assert_eq!(
            POLICY.after_failure(1, 3, Status(503), true, Replayable),
            Retry
        );
        assert_eq!(POLICY.after_failure(1, 3, Timeout, true, Replayable), Retry);
        // POST with a buffered body reached the replica: it may have acted on it
        assert_eq!(
            POLICY.after_failure(1, 3, Status(503), false, Replayable),
            Unsafe
        );
        assert_eq!(
            POLICY.after_failure(1, 3, Transport, false, Replayable),
            Unsafe
        );
        // PUT whose streamed body is gone
        assert_eq!(
            POLICY.after_failure(1, 3, Transport, true, Consumed),
            Unsafe
        );
    }

    #[test]
    fn idempotent_methods() {
        for m in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
            assert!(is_idempotent(m), "{m}");
        }
        for m in ["POST", "PATCH", "CONNECT"] {
            assert!(!is_idempotent(m), "{m}");
        }
    }
}
