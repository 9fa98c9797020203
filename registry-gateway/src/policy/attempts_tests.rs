//! One request's attempts as specs: which report leads to another pick, an answer or a failure.

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
