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
    /// A request that never left (`sent` false: the connection never opened, or the client library gave
    /// the request back untouched) consumed nothing, so any request moves on. Once the request reached a
    /// replica it is repeated only when its method is idempotent and its body can be replayed.
    pub fn after_failure(
        &self,
        attempts: u32,
        replicas: usize,
        cause: FailureCause,
        sent: bool,
        idempotent: bool,
        body: BodyReplay,
    ) -> RetryDecision {
        let safe = if !sent || cause.before_request_sent() {
            body != BodyReplay::Consumed
        } else {
            idempotent && body == BodyReplay::Replayable
        };
        // Unsafe first: a request that could not be repeated anyway says so, even on its last attempt.
        if !safe {
            return RetryDecision::Unsafe;
        }
        let limit = (self.max_attempts as usize).min(replicas);
        if attempts as usize >= limit {
            RetryDecision::Exhausted
        } else {
            RetryDecision::Retry
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
        assert_eq!(
            POLICY.after_failure(1, 5, Connect, false, true, Replayable),
            Retry
        );
        assert_eq!(
            POLICY.after_failure(2, 5, Connect, false, true, Replayable),
            Retry
        );
        assert_eq!(
            POLICY.after_failure(3, 5, Connect, false, true, Replayable),
            Exhausted
        );
        // two replicas: the second attempt is the last
        assert_eq!(
            POLICY.after_failure(2, 2, Connect, false, true, Replayable),
            Exhausted
        );
        assert_eq!(
            POLICY.after_failure(1, 1, Connect, false, true, Replayable),
            Exhausted
        );
    }

    #[test]
    fn connect_failures_move_any_request_whose_body_is_intact() {
        // POST with an unread stream: the connection never opened, so it moves on
        assert_eq!(
            POLICY.after_failure(1, 3, Connect, false, false, Untouched),
            Retry
        );
        assert_eq!(
            POLICY.after_failure(1, 3, ConnectTimeout, false, false, Untouched),
            Retry
        );
        assert_eq!(
            POLICY.after_failure(1, 3, Connect, false, false, Consumed),
            Unsafe
        );
    }

    #[test]
    fn after_sending_only_idempotent_replayable_requests_repeat() {
        assert_eq!(
            POLICY.after_failure(1, 3, Status(503), true, true, Replayable),
            Retry
        );
        assert_eq!(
            POLICY.after_failure(1, 3, Timeout, true, true, Replayable),
            Retry
        );
        // POST with a buffered body reached the replica: it may have acted on it
        assert_eq!(
            POLICY.after_failure(1, 3, Status(503), true, false, Replayable),
            Unsafe
        );
        assert_eq!(
            POLICY.after_failure(1, 3, Transport, true, false, Replayable),
            Unsafe
        );
        // PUT whose streamed body is gone
        assert_eq!(
            POLICY.after_failure(1, 3, Transport, true, true, Consumed),
            Unsafe
        );
    }

    #[test]
    fn a_request_that_cannot_be_repeated_says_so_on_its_last_attempt() {
        assert_eq!(
            POLICY.after_failure(3, 3, Transport, true, false, Replayable),
            Unsafe
        );
        assert_eq!(
            POLICY.after_failure(3, 3, Transport, true, true, Replayable),
            Exhausted
        );
    }

    #[test]
    fn a_request_given_back_unsent_moves_on_like_a_refused_connection() {
        // the connection broke before the request left: POST with an unread stream moves on
        assert_eq!(
            POLICY.after_failure(1, 3, Transport, false, false, Untouched),
            Retry
        );
        // ... unless its stream was already read by an earlier attempt
        assert_eq!(
            POLICY.after_failure(1, 3, Transport, false, false, Consumed),
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
