//! One request's attempts as a pure machine, driven alike by the HTTP and the gRPC proxy: told what each
//! attempt came to, it says whether to pick another replica, answer the client, or fail.
//!
//! The proxies do the IO around it (picking, the half-open probe claim, the retry budget, sending) in
//! one loop of the same shape (pingora-proxy's single retry loop is the model):
//!
//! ```text
//! loop {
//!     pick a replica            — none left:        attempts.end()
//!     attempts.is_retry()?      — budget refuses:   attempts.refused_by_budget()
//!     attempts.start(); send; classify → Report
//!     match attempts.after(report) { Pick => continue, Answer | Fail(_) => return }
//! }
//! ```

use super::outcome::{ClientFault, FailureCause, Outcome};
use super::retry::{BodyReplay, RetryDecision, RetryPolicy};

/// What one attempt came to, as the proxy saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// The classified outcome, saying whose fault it was.
    pub outcome: Outcome,
    /// Whether any of the request may have reached the replica. `false` when the connection never
    /// opened, or the client library gave the request back untouched (a connection that died first).
    pub sent: bool,
    /// Whether the request body can be sent again, as it is after this attempt.
    pub body: BodyReplay,
    /// Replicas the service has now (attempts never exceed them).
    pub replicas: usize,
    /// A failed attempt came with a response (a 5xx) that the client may get as it is.
    pub has_response: bool,
}

/// What the proxy does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Pick another replica and send again.
    Pick,
    /// Answer with the latest attempt's response: a success, or a replica's 5xx that was not retried.
    Answer,
    /// End with the gateway's own error.
    Fail(Failure),
}

/// Why a request ends with the gateway's own error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No attempt went out: no replica could take the request.
    NoReplica,
    /// The client broke its own request: it ends here and the replica is not charged.
    Client(ClientFault),
    /// The last attempt failed after the request reached the replica, and it cannot be repeated.
    Stopped(FailureCause),
    /// Every attempt allowed (by `retry.max_attempts`, the replicas, the retry budget) failed.
    Exhausted {
        /// The last attempt's cause.
        cause: FailureCause,
        /// The retry budget refused the attempt that would have come next.
        budget_refused: bool,
    },
}

impl Failure {
    /// The cause of the last failed attempt, when one failed.
    pub fn cause(&self) -> Option<FailureCause> {
        match self {
            Failure::Stopped(cause) | Failure::Exhausted { cause, .. } => Some(*cause),
            Failure::NoReplica | Failure::Client(_) => None,
        }
    }
}

/// The attempts of one request.
#[derive(Debug, Clone)]
pub struct Attempts {
    policy: RetryPolicy,
    idempotent: bool,
    made: u32,
    /// The last failed attempt: its cause, and whether it came with a response.
    last: Option<(FailureCause, bool)>,
    budget_refused: bool,
}

impl Attempts {
    /// The attempts of a request under `policy`; `idempotent` when it may be repeated once it reached a
    /// replica (RFC 9110 methods; never a gRPC call nor an upgrade handshake).
    pub fn new(policy: RetryPolicy, idempotent: bool) -> Self {
        Attempts {
            policy,
            idempotent,
            made: 0,
            last: None,
            budget_refused: false,
        }
    }

    /// Attempts sent so far.
    pub fn made(&self) -> u32 {
        self.made
    }

    /// Whether the next attempt is a retry: it must be allowed by the service's retry budget first.
    pub fn is_retry(&self) -> bool {
        self.made > 0
    }

    /// An attempt goes out now.
    pub fn start(&mut self) {
        self.made += 1;
    }

    /// Decides after the attempt just started came to `report`.
    pub fn after(&mut self, report: Report) -> Next {
        let cause = match report.outcome {
            Outcome::Success => return Next::Answer,
            Outcome::ClientFault(fault) => return Next::Fail(Failure::Client(fault)),
            Outcome::Failure(cause) => cause,
        };
        self.last = Some((cause, report.has_response));
        let decision = self.policy.after_failure(
            self.made,
            report.replicas.max(self.made as usize),
            cause,
            report.sent,
            self.idempotent,
            report.body,
        );
        match decision {
            RetryDecision::Retry => Next::Pick,
            RetryDecision::Exhausted => self.end(),
            RetryDecision::Unsafe if report.has_response => Next::Answer,
            RetryDecision::Unsafe => Next::Fail(Failure::Stopped(cause)),
        }
    }

    /// The retry budget refused the next attempt: the request ends with what the last one came to.
    pub fn refused_by_budget(&mut self) -> Next {
        self.budget_refused = true;
        self.end()
    }

    /// No further attempt can go out (no replica left to pick, or the body is gone): the request ends
    /// with the last failed attempt's response, else the gateway's error.
    pub fn end(&self) -> Next {
        match self.last {
            None => Next::Fail(Failure::NoReplica),
            Some((_, true)) => Next::Answer,
            Some((cause, false)) => Next::Fail(Failure::Exhausted {
                cause,
                budget_refused: self.budget_refused,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BodyReplay::*;
    use FailureCause::*;

    const POLICY: RetryPolicy = RetryPolicy { max_attempts: 3 };

    fn failed(cause: FailureCause, sent: bool, body: BodyReplay) -> Report {
        Report {
            outcome: Outcome::Failure(cause),
            sent,
            body,
            replicas: 5,
            has_response: false,
        }
    }

    fn status(code: u16, body: BodyReplay) -> Report {
        Report {
            has_response: true,
            ..failed(Status(code), true, body)
        }
    }

    fn ok() -> Report {
        Report {
            outcome: Outcome::Success,
            ..failed(Transport, true, Replayable)
        }
    }

    /// Drives one request through `reports`, one attempt each, and returns every step.
    fn run(idempotent: bool, reports: &[Report]) -> Vec<Next> {
        let mut a = Attempts::new(POLICY, idempotent);
        reports
            .iter()
            .map(|r| {
                a.start();
                a.after(*r)
            })
            .collect()
    }

    #[test]
    fn a_success_is_answered_at_once() {
        assert_eq!(run(true, &[ok()]), [Next::Answer]);
        // GET: 503, refused, then 200
        assert_eq!(
            run(
                true,
                &[
                    status(503, Replayable),
                    failed(Connect, false, Replayable),
                    ok()
                ]
            ),
            [Next::Pick, Next::Pick, Next::Answer]
        );
    }

    #[test]
    fn a_get_moves_on_until_max_attempts_then_answers_the_last_5xx() {
        // max_attempts 3: 503, 502, 500 → the client gets the 500 as the replica sent it
        assert_eq!(
            run(
                true,
                &[
                    status(503, Replayable),
                    status(502, Replayable),
                    status(500, Replayable)
                ]
            ),
            [Next::Pick, Next::Pick, Next::Answer]
        );
        // timeouts: the third ends the request with the gateway's error
        assert_eq!(
            run(
                true,
                &[
                    failed(Timeout, true, Replayable),
                    failed(Timeout, true, Replayable),
                    failed(Timeout, true, Replayable)
                ]
            ),
            [
                Next::Pick,
                Next::Pick,
                Next::Fail(Failure::Exhausted {
                    cause: Timeout,
                    budget_refused: false
                })
            ]
        );
    }

    #[test]
    fn attempts_never_exceed_the_replicas() {
        let two = |r: Report| Report { replicas: 2, ..r };
        assert_eq!(
            run(
                true,
                &[
                    two(failed(Connect, false, Replayable)),
                    two(failed(Connect, false, Replayable))
                ]
            ),
            [
                Next::Pick,
                Next::Fail(Failure::Exhausted {
                    cause: Connect,
                    budget_refused: false
                })
            ]
        );
    }

    #[test]
    fn a_post_that_reached_a_replica_is_never_repeated() {
        // POST, buffered body: its 503 is answered as it is, its broken connection is the gateway's 502
        assert_eq!(run(false, &[status(503, Replayable)]), [Next::Answer]);
        assert_eq!(
            run(false, &[failed(Transport, true, Replayable)]),
            [Next::Fail(Failure::Stopped(Transport))]
        );
        // PUT whose streamed body was read: gone
        assert_eq!(
            run(true, &[failed(Timeout, true, Consumed)]),
            [Next::Fail(Failure::Stopped(Timeout))]
        );
    }

    #[test]
    fn a_request_that_never_left_moves_on_whatever_its_method() {
        // POST with an unread stream: refused, timed out connecting, given back by a dying connection
        assert_eq!(
            run(
                false,
                &[
                    failed(Connect, false, Untouched),
                    failed(ConnectTimeout, false, Untouched),
                    failed(Transport, false, Untouched)
                ]
            ),
            [
                Next::Pick,
                Next::Pick,
                Next::Fail(Failure::Exhausted {
                    cause: Transport,
                    budget_refused: false
                })
            ]
        );
        // a connect failure is never "sent", whatever the proxy said
        assert_eq!(
            run(false, &[failed(Connect, true, Untouched), ok()]),
            [Next::Pick, Next::Answer]
        );
    }

    #[test]
    fn a_grpc_call_moves_on_only_while_it_never_left() {
        // gRPC: not idempotent, the request stream is untouched until it is sent, then consumed
        assert_eq!(
            run(
                false,
                &[
                    failed(Connect, false, Untouched),
                    failed(Transport, true, Consumed)
                ]
            ),
            [Next::Pick, Next::Fail(Failure::Stopped(Transport))]
        );
        // a response head (any status, even UNAVAILABLE in its head) is the call's answer
        let unavailable = Report {
            outcome: Outcome::Failure(Grpc(14)),
            has_response: true,
            ..failed(Transport, true, Consumed)
        };
        assert_eq!(run(false, &[unavailable]), [Next::Answer]);
    }

    #[test]
    fn an_upgrade_handshake_that_reached_a_replica_is_never_sent_again() {
        // the handshake has no body (replayable) but is driven as not idempotent
        assert_eq!(
            run(
                false,
                &[failed(Connect, false, Replayable), status(502, Replayable)]
            ),
            [Next::Pick, Next::Answer]
        );
    }

    #[test]
    fn a_client_fault_ends_the_request_without_a_retry() {
        let aborted = Report {
            outcome: Outcome::ClientFault(ClientFault::Aborted),
            ..failed(Transport, true, Consumed)
        };
        assert_eq!(
            run(true, &[failed(Connect, false, Untouched), aborted]),
            [
                Next::Pick,
                Next::Fail(Failure::Client(ClientFault::Aborted))
            ]
        );
    }

    #[test]
    fn the_end_answers_with_what_the_last_attempt_came_to() {
        let mut a = Attempts::new(POLICY, true);
        // nothing picked at all
        assert_eq!(a.end(), Next::Fail(Failure::NoReplica));
        assert!(!a.is_retry());
        a.start();
        assert_eq!(a.after(failed(Connect, false, Replayable)), Next::Pick);
        assert!(a.is_retry());
        // no replica left to pick
        assert_eq!(
            a.end(),
            Next::Fail(Failure::Exhausted {
                cause: Connect,
                budget_refused: false
            })
        );
        a.start();
        assert_eq!(a.after(status(503, Replayable)), Next::Pick);
        // the budget refuses the third: the 503 goes to the client
        assert_eq!(a.refused_by_budget(), Next::Answer);
        assert_eq!(a.made(), 2);
    }

    #[test]
    fn a_budget_refusal_is_named_in_the_failure() {
        let mut a = Attempts::new(POLICY, false);
        a.start();
        assert_eq!(
            a.after(failed(ConnectTimeout, false, Untouched)),
            Next::Pick
        );
        let end = a.refused_by_budget();
        assert_eq!(
            end,
            Next::Fail(Failure::Exhausted {
                cause: ConnectTimeout,
                budget_refused: true
            })
        );
        match end {
            Next::Fail(f) => assert_eq!(f.cause(), Some(ConnectTimeout)),
            _ => unreachable!(),
        }
        assert_eq!(Failure::NoReplica.cause(), None);
    }
}
