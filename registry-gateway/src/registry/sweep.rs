//! The lease sweep: expires the leases that ran out, unless self-preservation holds them, and forgets
//! old tombstones (and the ids of replicas removed here more than a lease ago).

use std::sync::Arc;
use std::time::Instant;

use super::command::{Command, Events, SweepLeases};
use super::{Registry, Service, Source};
use crate::policy::{Census, EvictionReason, Verdict};

/// Whether a sweep expires the leases that ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseExpiry {
    /// They expire (no shared store, or it is reachable).
    Enforced,
    /// They are kept: the shared store is unreachable, so renewals made through other gateways cannot
    /// arrive, and the last known registry stays.
    Suspended,
}

impl Command for SweepLeases {
    type Reply = usize;

    fn run(self, registry: &Registry, now: Instant, events: &mut Events) -> usize {
        let mut removed = 0;
        if self.0 == LeaseExpiry::Enforced {
            removed = registry.expire_due(now, events);
        }
        let lease = registry.policy.load().lease_ttl;
        registry
            .removed_here_lock()
            .retain(|_, at| now.saturating_duration_since(*at) < lease);
        let memory = registry.policy.load().probation_memory;
        registry
            .tombstones_lock()
            .retain(|_, t| now.saturating_duration_since(t.evicted_at) < memory);
        for svc in registry.services() {
            svc.evicted_list().prune(now, memory);
        }
        removed
    }
}

impl Registry {
    /// Expires the leases due at `now`: only the services whose earliest watched lease deadline has come,
    /// or with a hold to look after, are counted; a sweep where no lease is due looks at no replica (one
    /// load per service). A service looked at watches its earliest deadline again: a renewed lease brings
    /// it back at its new deadline, one held by self-preservation at the next sweep.
    fn expire_due(&self, now: Instant, events: &mut Events) -> usize {
        let mut removed = 0;
        for svc in self.services() {
            let holding = svc.preservation().state != crate::policy::Preservation::Idle;
            if holding || svc.lease_due(now) {
                removed += self.sweep_service(&svc, now, events);
                svc.rewatch_leases();
            }
        }
        removed
    }

    /// One service's share of the sweep: count its leases, ask the self-preservation policy, apply it.
    fn sweep_service(&self, svc: &Service, now: Instant, events: &mut Events) -> usize {
        let policy = &self.policy.load().preservation;
        let mut census = Census {
            registered: 0,
            lapsing: 0,
            expired: 0,
        };
        let mut expired = Vec::new();
        for r in svc.replicas().iter() {
            let st = r.lock();
            if !st.lease.expires() {
                continue;
            }
            census.registered += 1;
            let age = st.lease.age(now);
            if policy.is_lapsing(age) {
                census.lapsing += 1;
            }
            if st.lease.is_expired(now) {
                census.expired += 1;
                expired.push((Arc::clone(r), age));
            }
        }
        let mut slot = svc.preservation();
        // The common case stays cheap: nothing expired and no hold to look after.
        if expired.is_empty() && slot.state == crate::policy::Preservation::Idle {
            return 0;
        }
        let verdict = slot.state.decide(census, now, policy);
        let evict_as = match verdict {
            Verdict::Evict => None,
            Verdict::Start { until } => {
                let until_wall = self.wall.at(until);
                slot.until_wall = Some(until_wall);
                tracing::warn!(service = %svc.name(), lapsing = census.lapsing,
                    expired = census.expired, registered = census.registered,
                    "[PRESERVE] {}: {} of {} leases expired at once; holding until {} \
                     ({} run out, {} due before their next heartbeat; still routed and breaker-protected, \
                     evicted then unless they heartbeat)",
                    svc.name(), census.lapsing, census.registered,
                    humantime::format_rfc3339_millis(until_wall), census.expired,
                    census.lapsing - census.expired);
                return 0;
            }
            Verdict::Hold { .. } => return 0,
            Verdict::Recovered { since } => {
                slot.until_wall = None;
                tracing::info!(service = %svc.name(),
                    "[PRESERVE] {}: hold ended after {} ms: every replica heartbeats again",
                    svc.name(), now.saturating_duration_since(since).as_millis());
                return 0;
            }
            Verdict::Ended {
                since,
                cooldown_until,
            } => {
                slot.until_wall = None;
                tracing::warn!(service = %svc.name(), evicting = census.expired,
                    "[PRESERVE] {}: hold ended at its deadline; evicting the {} of {} replicas whose lease \
                     is still expired (no new hold for {} ms)",
                    svc.name(), census.expired, census.registered,
                    cooldown_until.saturating_duration_since(now).as_millis());
                Some(now.saturating_duration_since(since))
            }
        };
        drop(slot);
        let mut removed = 0;
        for (r, silent) in expired {
            // A heartbeat that arrived since the count keeps its replica.
            if !r.lock().lease.is_expired(now) {
                continue;
            }
            let reason = match evict_as {
                Some(held) => EvictionReason::LeaseExpiredAfterHold { silent, held },
                None => EvictionReason::LeaseExpired(silent),
            };
            if self.remove(svc, &r, reason, now, Source::Local, events) {
                removed += 1;
            }
        }
        removed
    }
}
