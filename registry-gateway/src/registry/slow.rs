//! Ejecting slow replicas: the outlier interval's judgement applied to the registry's breakers.

use std::time::Instant;

use super::command::{Command, EjectSlow, Events, OpenAsSlow};
use super::{Protocol, Registry, StateReason};
use crate::policy::outlier::{self, ReplicaLatency, Standing};
use crate::policy::BreakerState;

/// Opens the breaker of `r`, closed until now, because it is slow: logged and shown like a failure
/// opening, and probed the same way after `breaker.open_timeout`. A probe that succeeds closes it even if
/// it is still slow; the next interval may then open it again. Replies whether it opened (not when it was
/// removed or its breaker was no longer closed).
impl Command for OpenAsSlow<'_> {
    type Reply = bool;

    fn run(self, registry: &Registry, now: Instant, events: &mut Events) -> bool {
        let OpenAsSlow { replica: r, reason } = self;
        if r.is_removed() {
            return false;
        }
        let open_for = registry.policy.load().breaker.open_timeout;
        {
            let mut st = r.lock();
            // A failure may have opened it since the interval's stats were taken: that reason stands.
            if st.breaker.state(now) != BreakerState::Closed {
                return false;
            }
            st.breaker.force_open(now + open_for, now);
            registry.note_transition(
                r,
                &mut st,
                (BreakerState::Closed, BreakerState::Open),
                StateReason::Slow(reason),
                now,
                events,
            );
        }
        // Not shared with peer gateways (see `change::shared_state`): each judges latency from its own
        // traffic and keeps its own half cap. Shared, two gateways could each eject a different half,
        // and between them every replica.
        true
    }
}

/// Ends an outlier interval at `now`: drains every replica's latencies, judges each service's replicas of
/// one protocol together ([`outlier::find_slow`]) and opens the slow ones. Replies how many opened.
impl Command for EjectSlow {
    type Reply = usize;

    fn run(self, registry: &Registry, now: Instant, events: &mut Events) -> usize {
        let cfg = &registry.policy.load().outlier;
        let mut opened = 0;
        for svc in registry.services() {
            let replicas = svc.replicas();
            // Drained even when nobody can be judged, so that every interval starts afresh.
            let stats: Vec<(Protocol, ReplicaLatency)> = replicas
                .iter()
                .map(|r| {
                    let counts = r.take_latencies();
                    let st = r.lock();
                    let standing = match (st.breaker.state(now), st.state_reason()) {
                        (BreakerState::Closed, _) => Standing::Closed,
                        (_, StateReason::Slow(_)) => Standing::OpenSlow,
                        _ => Standing::Open,
                    };
                    let latency = ReplicaLatency {
                        requests: counts.total(),
                        median: counts.median().unwrap_or_default(),
                        standing,
                    };
                    (r.protocol(), latency)
                })
                .collect();
            if !cfg.enabled || replicas.len() < 2 {
                continue;
            }
            // HTTP and gRPC replicas of one name answer different calls: they are not each other's peers.
            for protocol in [Protocol::Http, Protocol::Grpc] {
                let (index, group): (Vec<usize>, Vec<ReplicaLatency>) = stats
                    .iter()
                    .enumerate()
                    .filter(|(_, (p, _))| *p == protocol)
                    .map(|(i, (_, l))| (i, *l))
                    .unzip();
                for e in outlier::find_slow(&group, cfg) {
                    let slow = OpenAsSlow {
                        replica: &replicas[index[e.index]],
                        reason: e.reason,
                    };
                    if slow.run(registry, now, events) {
                        opened += 1;
                    }
                }
            }
        }
        opened
    }
}
