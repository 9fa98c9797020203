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
#[path = "attempts_tests.rs"]
mod tests;
