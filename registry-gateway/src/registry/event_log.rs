//! The registry's log lines, written in this one place from its events: `[CIRCUIT]` from breaker
//! transitions, `[EVICT]` from removals, and the plain registered / deregistered lines.
//!
//! The wording is part of the interface: operators' alerts and the end-to-end tests match on it.

use super::events::{Joined, RegistryEvent, Source};
use super::StateReason;
use crate::policy::{BreakerState, EvictionReason, OpenCause};

/// Writes the log line of `event`, if it has one. Never locks the replica.
pub(super) fn write(event: &RegistryEvent) {
    match event {
        RegistryEvent::Added(r, joined) => {
            let (svc, addr) = (r.service(), r.address());
            match joined {
                Joined::Registered => {
                    tracing::info!(service = %svc, replica = %addr, id = %r.id(), "registered")
                }
                Joined::OnProbation => tracing::warn!(
                    service = %svc, replica = %addr,
                    "[CIRCUIT] {addr} OPEN (re-registered after eviction: on probation until a probe succeeds)"
                ),
                Joined::ByPeer => {
                    tracing::info!(service = %svc, replica = %addr, id = %r.id(), "registered by a peer gateway")
                }
            }
        }
        RegistryEvent::Removed(r, Some(reason), source) => {
            let (svc, addr) = (r.service(), r.address());
            match (reason, source) {
                (EvictionReason::Deregistered, Source::Local) => {
                    tracing::info!(service = %svc, replica = %addr, "deregistered")
                }
                (EvictionReason::Deregistered, Source::Peer) => {
                    tracing::info!(service = %svc, replica = %addr, "removed by a peer gateway")
                }
                (_, _) => tracing::warn!(service = %svc, replica = %addr, reason = %reason,
                    "[EVICT] {addr} from {svc} ({reason})"),
            }
        }
        RegistryEvent::StateChanged(r, t) => circuit(r.service(), r.address(), t.to, t.reason),
        RegistryEvent::Removed(_, None, _)
        | RegistryEvent::Renewed(_)
        | RegistryEvent::Attempt { .. }
        | RegistryEvent::ProbeSucceeded(_)
        | RegistryEvent::ProbeDone(_) => {}
    }
}

/// The `[CIRCUIT]` line of a transition into `to` for `reason`.
fn circuit(
    svc: &impl std::fmt::Display,
    addr: &impl std::fmt::Display,
    to: BreakerState,
    reason: StateReason,
) {
    match (to, reason) {
        (BreakerState::Open, StateReason::Failures { .. }) => {
            tracing::warn!(service = %svc, replica = %addr, "[CIRCUIT] {addr} OPEN (threshold reached)")
        }
        (
            BreakerState::Open,
            StateReason::Ratio {
                failures,
                requests,
                shared: false,
            },
        ) => {
            let cause = OpenCause::Ratio { failures, requests };
            tracing::warn!(service = %svc, replica = %addr, "[CIRCUIT] {addr} OPEN (failure ratio reached: {cause})")
        }
        (
            BreakerState::Open,
            StateReason::Ratio {
                failures,
                requests,
                shared: true,
            },
        ) => tracing::warn!(service = %svc, replica = %addr, requests, failures,
            "[CIRCUIT] {addr} OPEN ({failures} of {requests} requests failed across gateways)"),
        (BreakerState::Open, StateReason::ProbeFailed(_)) => {
            tracing::warn!(service = %svc, replica = %addr, "[CIRCUIT] {addr} OPEN (half-open probe failed)")
        }
        (BreakerState::Open, StateReason::Peer) => {
            tracing::warn!(service = %svc, replica = %addr, "[CIRCUIT] {addr} OPEN (reported by a peer gateway)")
        }
        (BreakerState::Open, StateReason::AcrossGateways(total)) => {
            tracing::warn!(service = %svc, replica = %addr, total,
                "[CIRCUIT] {addr} OPEN (threshold reached across gateways)")
        }
        (BreakerState::Open, StateReason::Slow(slow)) => {
            tracing::warn!(service = %svc, replica = %addr, "[CIRCUIT] {addr} OPEN ({slow})")
        }
        (BreakerState::Open, other) => {
            tracing::warn!(service = %svc, replica = %addr, "[CIRCUIT] {addr} OPEN ({other})")
        }
        (BreakerState::HalfOpen, StateReason::PeerProbing) => tracing::info!(service = %svc,
            replica = %addr, "[CIRCUIT] {addr} HALF-OPEN probe left to a peer gateway"),
        (BreakerState::HalfOpen, _) => {
            tracing::info!(service = %svc, replica = %addr, "[CIRCUIT] {addr} HALF-OPEN (probing)")
        }
        (BreakerState::Closed, StateReason::ProbesSucceeded(n)) if n > 1 => {
            tracing::info!(service = %svc, replica = %addr, "[CIRCUIT] {addr} CLOSED ({n} probes succeeded)")
        }
        (BreakerState::Closed, StateReason::PeerClosed) => tracing::info!(service = %svc,
            replica = %addr, "[CIRCUIT] {addr} CLOSED (a peer's probe succeeded)"),
        (BreakerState::Closed, StateReason::ProbesAcrossGateways(total)) => {
            tracing::info!(service = %svc, replica = %addr, total,
                "[CIRCUIT] {addr} CLOSED ({total} probes succeeded across gateways)")
        }
        (BreakerState::Closed, _) => {
            tracing::info!(service = %svc, replica = %addr, "[CIRCUIT] {addr} CLOSED (probe succeeded)")
        }
    }
}
