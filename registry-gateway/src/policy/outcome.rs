//! One classification per proxied attempt, read by the breaker, the retry logic and the counters.
//!
//! Every outcome says whose fault it is ([`Fault`]): only the replica's own faults feed its counters,
//! breaker and eviction. A client that aborts or stalls its upload, or goes away, never touches the replica.

use std::fmt;

/// What one attempt against one replica came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The replica answered with something that is not its fault (2xx, 3xx, 4xx, 501, 505).
    Success,
    /// The replica failed this attempt (its fault).
    Failure(FailureCause),
    /// The client ended the attempt (its fault): the replica is neither charged nor credited.
    ClientFault(ClientFault),
}

/// Whose fault an outcome is (pingora's `ErrorSource`: upstream, downstream, internal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The replica's: counts against it.
    Replica,
    /// The client's: ends the request, never touches the replica.
    Client,
}

/// How a client ended an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    /// The request body stopped before its end: the client closed or reset the connection.
    Aborted,
    /// No request body bytes arrived for `client.body_timeout`.
    BodyTimeout,
    /// The request body's framing was invalid (a bad chunk size, for example).
    MalformedBody,
}

impl ClientFault {
    /// The status the client is answered with (when it still listens): 408 for a stall, else 400.
    pub fn status(&self) -> u16 {
        match self {
            ClientFault::BodyTimeout => 408,
            ClientFault::Aborted | ClientFault::MalformedBody => 400,
        }
    }
}

impl fmt::Display for ClientFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientFault::Aborted => "client aborted the request body",
            ClientFault::BodyTimeout => "client request body timed out",
            ClientFault::MalformedBody => "client request body malformed",
        })
    }
}

/// Attributes a failed exchange: when the client's own body failed first, the exchange broke because of
/// the client, whatever the replica's side then saw; otherwise it is the replica's failure.
pub fn attribute(client: Option<ClientFault>, upstream: FailureCause) -> Outcome {
    match client {
        Some(c) => Outcome::ClientFault(c),
        None => Outcome::Failure(upstream),
    }
}

/// Why an attempt counts against a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCause {
    /// The TCP connection could not be opened (refused, unreachable).
    Connect,
    /// The TCP connection did not open within `upstream.connect_timeout`.
    ConnectTimeout,
    /// No response head within `upstream.request_timeout`.
    Timeout,
    /// The connection broke after it was opened (reset, closed early, protocol error).
    Transport,
    /// The response body ended before its announced length (or its chunked end).
    Truncated,
    /// The response body stalled: nothing for `upstream.read_timeout`.
    ReadTimeout,
    /// The replica stopped reading the request body for `upstream.send_timeout`.
    SendTimeout,
    /// The replica answered with a 5xx status that signals a server fault.
    Status(u16),
    /// The replica's gRPC call ended with a status that signals a server fault.
    Grpc(i32),
}

impl Outcome {
    /// Classifies an upstream HTTP response status, for both wires (a gRPC replica's non-200 head too).
    ///
    /// 5xx is the replica's fault, except 501 (method not implemented) and 505 (HTTP version not
    /// supported), which describe the request, not the replica's health: every replica running the same
    /// code answers them alike, so neither retrying elsewhere nor opening a breaker can help. The gRPC
    /// path used to count them as failures; one table for both wires keeps this HTTP rule.
    pub fn from_http_status(status: u16) -> Self {
        match status {
            501 | 505 => Outcome::Success,
            500..=599 => Outcome::Failure(FailureCause::Status(status)),
            _ => Outcome::Success,
        }
    }

    /// Classifies a gRPC call's final `grpc-status`.
    ///
    /// UNAVAILABLE (14), DEADLINE_EXCEEDED (4), INTERNAL (13), UNKNOWN (2) and RESOURCE_EXHAUSTED (8) are
    /// the replica's fault; everything else (OK, INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, ...) is
    /// an answer about the request.
    pub fn from_grpc_status(code: i32) -> Self {
        match code {
            2 | 4 | 8 | 13 | 14 => Outcome::Failure(FailureCause::Grpc(code)),
            _ => Outcome::Success,
        }
    }

    /// Classifies a gRPC response head: a status other than 200 by the HTTP table
    /// ([`Outcome::from_http_status`]), else a trailers-only `grpc-status`; `None` when the outcome
    /// waits for the trailers.
    pub fn from_grpc_head(http_status: u16, grpc_status: Option<i32>) -> Option<Self> {
        if http_status != 200 {
            return Some(Outcome::from_http_status(http_status));
        }
        grpc_status.map(Outcome::from_grpc_status)
    }

    /// Whether this outcome counts against the replica.
    pub fn is_failure(&self) -> bool {
        matches!(self, Outcome::Failure(_))
    }

    /// Whose fault the outcome is; `None` for a success.
    pub fn fault(&self) -> Option<Fault> {
        match self {
            Outcome::Success => None,
            Outcome::Failure(_) => Some(Fault::Replica),
            Outcome::ClientFault(_) => Some(Fault::Client),
        }
    }
}

impl FailureCause {
    /// Whether the request certainly never reached the replica (so its body was not consumed).
    pub fn before_request_sent(&self) -> bool {
        matches!(self, FailureCause::Connect | FailureCause::ConnectTimeout)
    }
}

impl fmt::Display for FailureCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureCause::Connect => f.write_str("connect failed"),
            FailureCause::ConnectTimeout => f.write_str("connect timeout"),
            FailureCause::Timeout => f.write_str("response timeout"),
            FailureCause::Transport => f.write_str("connection broken"),
            FailureCause::Truncated => f.write_str("response body truncated"),
            FailureCause::ReadTimeout => f.write_str("response body stalled"),
            FailureCause::SendTimeout => f.write_str("replica stopped reading the request"),
            FailureCause::Status(s) => write!(f, "upstream status {s}"),
            FailureCause::Grpc(c) => write!(f, "grpc-status {c}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statuses() {
        // 2xx, 3xx and 4xx are the client's business; 5xx but 501/505 are the replica's fault.
        for s in [200, 204, 301, 304, 400, 404, 429, 501, 505] {
            assert_eq!(Outcome::from_http_status(s), Outcome::Success, "{s}");
        }
        for s in [500, 502, 503, 504, 599] {
            assert_eq!(
                Outcome::from_http_status(s),
                Outcome::Failure(FailureCause::Status(s)),
                "{s}"
            );
        }
    }

    #[test]
    fn classifies_grpc_statuses() {
        // replica faults: UNKNOWN, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL, UNAVAILABLE
        for c in [2, 4, 8, 13, 14] {
            assert_eq!(
                Outcome::from_grpc_status(c),
                Outcome::Failure(FailureCause::Grpc(c)),
                "{c}"
            );
        }
        // the caller's business: OK, CANCELLED, INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS,
        // PERMISSION_DENIED, FAILED_PRECONDITION, ABORTED, OUT_OF_RANGE, UNIMPLEMENTED, DATA_LOSS, UNAUTHENTICATED
        for c in [0, 1, 3, 5, 6, 7, 9, 10, 11, 12, 15, 16] {
            assert_eq!(Outcome::from_grpc_status(c), Outcome::Success, "{c}");
        }
    }

    #[test]
    fn a_grpc_head_is_classified_by_the_http_table_first() {
        // a non-200 head: the HTTP rule, 501 and 505 included (they describe the call, not the replica)
        assert_eq!(
            Outcome::from_grpc_head(503, None),
            Some(Outcome::Failure(FailureCause::Status(503)))
        );
        assert_eq!(Outcome::from_grpc_head(501, None), Some(Outcome::Success));
        assert_eq!(
            Outcome::from_grpc_head(505, Some(14)),
            Some(Outcome::Success)
        );
        assert_eq!(Outcome::from_grpc_head(404, None), Some(Outcome::Success));
        // 200: a trailers-only status decides now, else the trailers will
        assert_eq!(
            Outcome::from_grpc_head(200, Some(14)),
            Some(Outcome::Failure(FailureCause::Grpc(14)))
        );
        assert_eq!(
            Outcome::from_grpc_head(200, Some(0)),
            Some(Outcome::Success)
        );
        assert_eq!(Outcome::from_grpc_head(200, None), None);
    }

    #[test]
    fn a_client_fault_wins_over_what_the_replica_side_saw() {
        // The client reset its upload; hyper then reports a broken exchange: the client's fault.
        assert_eq!(
            attribute(Some(ClientFault::Aborted), FailureCause::Transport),
            Outcome::ClientFault(ClientFault::Aborted)
        );
        assert_eq!(
            attribute(None, FailureCause::Transport),
            Outcome::Failure(FailureCause::Transport)
        );
        assert_eq!(
            Outcome::ClientFault(ClientFault::BodyTimeout).fault(),
            Some(Fault::Client)
        );
        assert!(!Outcome::ClientFault(ClientFault::Aborted).is_failure());
        assert_eq!(
            Outcome::Failure(FailureCause::Truncated).fault(),
            Some(Fault::Replica)
        );
        assert_eq!(Outcome::Success.fault(), None);
        assert_eq!(ClientFault::BodyTimeout.status(), 408);
        assert_eq!(ClientFault::MalformedBody.status(), 400);
    }

    #[test]
    fn only_connect_failures_are_before_send() {
        assert!(FailureCause::Connect.before_request_sent());
        assert!(FailureCause::ConnectTimeout.before_request_sent());
        assert!(!FailureCause::Timeout.before_request_sent());
        assert!(!FailureCause::Transport.before_request_sent());
        assert!(!FailureCause::Status(503).before_request_sent());
    }
}
