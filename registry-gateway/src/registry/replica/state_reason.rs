//! Why a replica's breaker is in its state, as plain data and as the sentence operators read.

use std::fmt;

use crate::policy::{FailureCause, SlowReason};

/// Why a replica's breaker is in its state (`state_reason` in `GET /registry`, and each transition's
/// `reason`). Plain data, so a transition never allocates for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateReason {
    /// Closed since it registered.
    Registered,
    /// Closed since it registered through a peer gateway (shared store).
    RegisteredByPeer,
    /// Closed since the gateway started: a static replica from the config file.
    Configured,
    /// Open → half-open: the open timeout passed and a probe went through (the reason it opened stays
    /// the replica's `state_reason`).
    Probing,
    /// Open → half-open: the open timeout passed and a peer gateway holds the probe.
    PeerProbing,
    /// Half-open → closed: this many probes succeeded.
    ProbesSucceeded(u32),
    /// Closed because a peer gateway's probe succeeded.
    PeerClosed,
    /// Closed because the probes of every gateway together succeeded.
    ProbesAcrossGateways(u64),
    /// `breaker.failure_threshold` failures in a row.
    Failures {
        /// Failures in a row when it opened.
        consecutive: u32,
        /// The last one's cause.
        last: FailureCause,
    },
    /// The failure ratio of the window tripped (`breaker.failure_ratio`).
    Ratio {
        /// Failures in the window.
        failures: u32,
        /// Requests in the window.
        requests: u32,
        /// Counted by every gateway together (Redis).
        shared: bool,
    },
    /// Its half-open probe failed.
    ProbeFailed(FailureCause),
    /// Ejected for slowness (`outlier`).
    Slow(SlowReason),
    /// It registered again soon after an eviction for failures.
    Probation,
    /// A peer gateway opened it.
    Peer,
    /// The failures every gateway counted reached the threshold.
    AcrossGateways(u64),
}

impl fmt::Display for StateReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateReason::Registered => f.write_str("registered"),
            StateReason::RegisteredByPeer => f.write_str("registered through a peer gateway"),
            StateReason::Configured => f.write_str("configured statically"),
            StateReason::Probing => f.write_str("open timeout passed: probing"),
            StateReason::PeerProbing => {
                f.write_str("open timeout passed: a peer gateway is probing")
            }
            StateReason::ProbesSucceeded(1) => f.write_str("probe succeeded"),
            StateReason::ProbesSucceeded(n) => write!(f, "{n} probes succeeded"),
            StateReason::PeerClosed => f.write_str("a peer gateway's probe succeeded"),
            StateReason::ProbesAcrossGateways(n) => {
                write!(f, "{n} probes succeeded across gateways")
            }
            StateReason::Failures { consecutive, last } => {
                write!(f, "{consecutive} consecutive failures: {last}")
            }
            StateReason::Ratio {
                failures,
                requests,
                shared,
            } => write!(
                f,
                "{failures} of {requests} requests failed ({}%) in the window{}",
                u64::from(*failures) * 100 / u64::from((*requests).max(1)),
                if *shared { " across gateways" } else { "" }
            ),
            StateReason::ProbeFailed(cause) => write!(f, "half-open probe failed: {cause}"),
            StateReason::Slow(slow) => slow.fmt(f),
            StateReason::Probation => {
                f.write_str("re-registered after eviction: on probation until a probe succeeds")
            }
            StateReason::Peer => f.write_str("opened by a peer gateway"),
            StateReason::AcrossGateways(n) => write!(f, "{n} failures counted across gateways"),
        }
    }
}
