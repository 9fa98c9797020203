//! Routing through the registry: picking a replica for one attempt (its breaker admitting it, a
//! half-open probe claimed at most once) and recording the attempt's outcome (counters, breaker,
//! eviction when the threshold is reached).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::command::{Abandon, Command, Events, RecordOutcome, Select};
use super::transitions::endpoints;
use super::{Origin, Pick, Registry, RegistryEvent, Replica, Service, Source, StateReason};
use crate::policy::{Admission, OpenCause, Outcome, Transition};

impl<F: Fn(&Replica) -> bool> Command for Select<'_, F> {
    type Reply = Option<Pick>;

    fn run(self, registry: &Registry, now: Instant, events: &mut Events) -> Option<Pick> {
        let Select {
            service: svc,
            tried,
            accept,
        } = self;
        let replicas = svc.replicas();
        let cfg = &registry.policy.load().breaker;
        // A concurrent request may claim a half-open probe between the check and the claim: try again.
        for _ in 0..replicas.len().max(1) {
            let i = svc.rr.pick(replicas.len(), |i| {
                let r = &replicas[i];
                !tried.contains(&r.id()) && accept(r) && r.lock().breaker.can_admit(now, cfg)
            })?;
            let r = &replicas[i];
            let admission = {
                let mut st = r.lock();
                let admission = st.breaker.try_admit(now, cfg);
                if let Admission::Admitted {
                    transition: Some(t),
                    ..
                } = admission
                {
                    let to = endpoints(t);
                    registry.note_transition(r, &mut st, to, StateReason::Probing, now, events);
                }
                admission
            };
            if let Admission::Admitted { probe, .. } = admission {
                return Some(Pick {
                    replica: Arc::clone(r),
                    probe,
                });
            }
        }
        None
    }
}

impl Registry {
    /// How long until some replica of `svc` that `accept`s the request admits one; `None` when it has no
    /// such replica at all.
    pub fn retry_after(
        &self,
        svc: &Service,
        now: Instant,
        accept: impl Fn(&Replica) -> bool,
    ) -> Option<Duration> {
        let cfg = &self.policy.load().breaker;
        svc.replicas()
            .iter()
            .filter(|r| accept(r))
            .map(|r| r.lock().breaker.admits_in(now, cfg))
            .min()
    }
}

impl Command for RecordOutcome<'_> {
    type Reply = ();

    fn run(self, registry: &Registry, now: Instant, events: &mut Events) {
        let RecordOutcome { pick, outcome } = self;
        // Not the replica's doing: neither charged nor credited, and a probe it held is given back.
        if let Outcome::ClientFault(_) = outcome {
            return Abandon(pick).run(registry, now, events);
        }
        let r = &pick.replica;
        if pick.probe && registry.sharing() {
            events.push(RegistryEvent::ProbeDone(Arc::clone(r)));
        }
        let failed = outcome.is_failure();
        r.count_attempt(failed);
        if r.is_removed() {
            return;
        }
        let policy = registry.policy.load();
        let (transition, consecutive, before) = {
            let mut st = r.lock();
            if let Outcome::Failure(cause) = outcome {
                st.set_last_failure(cause);
            }
            let before = st.breaker.consecutive_failures();
            let t = st.breaker.record(failed, now, &policy.breaker);
            let consecutive = st.breaker.consecutive_failures();
            let reason = match (t, outcome) {
                (Some(Transition::Opened), Outcome::Failure(last)) => {
                    Some(match st.breaker.open_cause() {
                        Some(OpenCause::Ratio { failures, requests }) => StateReason::Ratio {
                            failures,
                            requests,
                            shared: false,
                        },
                        _ => StateReason::Failures { consecutive, last },
                    })
                }
                (Some(Transition::Reopened), Outcome::Failure(cause)) => {
                    Some(StateReason::ProbeFailed(cause))
                }
                (Some(Transition::Closed), _) => Some(StateReason::ProbesSucceeded(
                    policy.breaker.half_open_probes.max(1),
                )),
                (Some(Transition::HalfOpened), _) => Some(StateReason::Probing),
                // A breaker opens only on a failure.
                (Some(_), _) | (None, _) => None,
            };
            if let (Some(t), Some(reason)) = (t, reason) {
                registry.note_transition(r, &mut st, endpoints(t), reason, now, events);
            }
            (t, consecutive, before)
        };
        if registry.sharing() {
            // Peers add failures up; a success only matters to them when it ends a run of failures, or
            // when a failure-ratio rule counts every request (the common success costs the proxy nothing).
            let streak = failed || before > 0;
            let windowed = policy.breaker.failure_ratio.is_some();
            if streak || windowed {
                events.push(RegistryEvent::Attempt {
                    replica: Arc::clone(r),
                    failed,
                    streak,
                    windowed,
                });
            }
            if pick.probe && !failed && transition.is_none() {
                events.push(RegistryEvent::ProbeSucceeded(Arc::clone(r)));
            }
        }
        if failed && r.origin() == Origin::Registered {
            if let Some(reason) = policy.eviction.on_failures(consecutive) {
                if let Some(svc) = registry.service(r.service().as_str()) {
                    registry.remove(&svc, r, reason, now, Source::Local, events);
                }
            }
        }
    }
}

impl Command for Abandon<'_> {
    type Reply = ();

    fn run(self, registry: &Registry, _: Instant, events: &mut Events) {
        let Abandon(pick) = self;
        if pick.probe {
            pick.replica.lock().breaker.release_probe();
            if registry.sharing() {
                events.push(RegistryEvent::ProbeDone(Arc::clone(&pick.replica)));
            }
        }
    }
}
