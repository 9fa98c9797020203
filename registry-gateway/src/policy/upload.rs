//! Whose clock runs while a request is being sent: the response-head timeout starts at the last request
//! byte sent, a replica that stops reading the upload is timed separately, and a slow client is never
//! charged to the replica (its own idle timeout, `client.body_timeout`, ends it).

use std::time::{Duration, Instant};

use super::outcome::FailureCause;

/// Where an upload stands, as the body adapter reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadState {
    /// The last request byte was handed to the connection at this instant.
    Sent(Instant),
    /// A piece of the body was handed over at this instant, and the connection has not asked for the next:
    /// the replica is not reading.
    WaitingOnReplica(Instant),
    /// The body is waiting for the client's next bytes.
    WaitingOnClient,
}

/// The timeouts of one exchange, before its response head arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadTimer {
    /// `upstream.request_timeout`: last byte sent → response head.
    pub head_timeout: Duration,
    /// `upstream.send_timeout`: longest time the replica may leave the body unread.
    pub send_timeout: Duration,
}

/// What the timer decides when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerDecision {
    /// The replica is late: fail the attempt with this cause.
    Expired(FailureCause),
    /// Not yet: look again at this instant.
    WaitUntil(Instant),
}

impl HeadTimer {
    /// Decides at `now` given where the upload stands.
    pub fn decide(&self, state: UploadState, now: Instant) -> TimerDecision {
        let (deadline, cause) = match state {
            UploadState::Sent(at) => (at + self.head_timeout, FailureCause::Timeout),
            UploadState::WaitingOnReplica(since) => {
                (since + self.send_timeout, FailureCause::SendTimeout)
            }
            // The client's pace is the client's business: look again later.
            UploadState::WaitingOnClient => {
                return TimerDecision::WaitUntil(now + self.head_timeout)
            }
        };
        if now >= deadline {
            TimerDecision::Expired(cause)
        } else {
            TimerDecision::WaitUntil(deadline)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TimerDecision::*;

    const T: HeadTimer = HeadTimer {
        head_timeout: Duration::from_secs(30),
        send_timeout: Duration::from_secs(60),
    };

    fn at(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn the_head_timeout_runs_from_the_last_byte_sent() {
        let t0 = Instant::now();
        // a 100 s upload that ended at t=100: the replica has until t=130
        assert_eq!(
            T.decide(UploadState::Sent(at(t0, 100)), at(t0, 101)),
            WaitUntil(at(t0, 130))
        );
        assert_eq!(
            T.decide(UploadState::Sent(at(t0, 100)), at(t0, 130)),
            Expired(FailureCause::Timeout)
        );
    }

    #[test]
    fn a_slow_client_never_expires_the_replica() {
        let t0 = Instant::now();
        // 10 minutes into a slow upload, the client still sending: look again a head timeout later
        assert_eq!(
            T.decide(UploadState::WaitingOnClient, at(t0, 600)),
            WaitUntil(at(t0, 630))
        );
    }

    #[test]
    fn a_replica_that_stops_reading_is_timed_by_the_send_timeout() {
        let t0 = Instant::now();
        assert_eq!(
            T.decide(UploadState::WaitingOnReplica(at(t0, 5)), at(t0, 30)),
            WaitUntil(at(t0, 65))
        );
        assert_eq!(
            T.decide(UploadState::WaitingOnReplica(at(t0, 5)), at(t0, 65)),
            Expired(FailureCause::SendTimeout)
        );
    }
}
