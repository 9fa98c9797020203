//! Ejecting slow replicas: the outlier interval's judgement applied to the registry's breakers.

use std::sync::Arc;
use std::time::Instant;

use super::{Protocol, Registry, Replica, StateReason};
use crate::policy::outlier::{self, ReplicaLatency, Standing};
use crate::policy::{BreakerState, SlowReason};

impl Registry {
    /// Opens the breaker of `r`, closed until now, because it is slow: logged, shared with peer gateways
    /// and shown like a failure opening, and probed the same way after `breaker.open_timeout`. A probe that
    /// succeeds closes it even if it is still slow; the next interval may then open it again. Returns
    /// whether it opened (not when it was removed or its breaker was no longer closed).
    pub fn open_as_slow(&self, r: &Arc<Replica>, reason: SlowReason, now: Instant) -> bool {
        if r.is_removed() {
            return false;
        }
        let open_for = self.policy.load().breaker.open_timeout;
        {
            let mut st = r.lock();
            // A failure may have opened it since the interval's stats were taken: that reason stands.
            if st.breaker.state(now) != BreakerState::Closed {
                return false;
            }
            st.breaker.force_open(now + open_for, now);
            self.note_transition(
                r,
                &mut st,
                (BreakerState::Closed, BreakerState::Open),
                StateReason::Slow(reason),
                now,
            );
        }
        // Not shared with peer gateways (see `change::shared_state`): each judges latency from its own
        // traffic and keeps its own half cap. Shared, two gateways could each eject a different half,
        // and between them every replica.
        true
    }

    /// Ends an outlier interval at `now`: drains every replica's latencies, judges each service's replicas
    /// of one protocol together ([`outlier::find_slow`]) and opens the slow ones. Returns how many opened.
    pub fn eject_slow(&self, now: Instant) -> usize {
        let cfg = &self.policy.load().outlier;
        let mut opened = 0;
        for svc in self.services() {
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
                    if self.open_as_slow(&replicas[index[e.index]], e.reason, now) {
                        opened += 1;
                    }
                }
            }
        }
        opened
    }
}
