//! A service: its replicas, as an immutable snapshot swapped on change, its round-robin cursor, its retry
//! budget and its self-preservation state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime};

use uuid::Uuid;

use super::evicted::{Evicted, EvictedList};
use super::replica_set::ReplicaSet;
use super::{Replica, ServiceName};
use crate::clock::Stamp;
use crate::observe::{Metrics, ServiceHandles};
use crate::policy::{
    Preservation, RefusalLog, RefusalReport, RetryBudget, RetryBudgetConfig, RoundRobin,
};

/// A service's self-preservation state, and the wall-clock deadline of its hold for operators.
#[derive(Debug, Default)]
pub(crate) struct PreservationSlot {
    pub(crate) state: Preservation,
    /// Set when a hold starts, so the log line and `GET /registry` show the same instant.
    pub(crate) until_wall: Option<SystemTime>,
}

/// The replicas of one service.
#[derive(Debug)]
pub struct Service {
    name: ServiceName,
    /// The replicas, indexed; changed under this lock in O(1) amortised.
    members: RwLock<ReplicaSet>,
    /// An immutable copy of `members` for the proxy, which clones the `Arc` and routes without holding
    /// any lock; dropped on every change and rebuilt by the next reader (under `members`' lock), so a
    /// burst of registrations costs one copy, not one per registration.
    snapshot: RwLock<Option<Arc<[Arc<Replica>]>>>,
    pub(crate) rr: RoundRobin,
    /// Shared by the HTTP and the gRPC proxy; `None` when `retry.budget.enabled` is false. Replaced
    /// whole by a config reload that changes it.
    budget: Mutex<Option<Budget>>,
    retries_refused: AtomicU64,
    /// Only the lease sweep changes it.
    preservation: Mutex<PreservationSlot>,
    /// Replicas evicted lately, for operators.
    evicted: Mutex<EvictedList>,
    /// Request metric handles, made on the first request.
    observe: OnceLock<Arc<ServiceHandles>>,
    /// When the lease sweep looks at this service's replicas next: the earliest lease deadline among
    /// them when it last looked, lowered by each replica that joined since ([`Stamp`] bits; [`NO_LEASE`]:
    /// none to watch). A renewal only moves a deadline later, so this is never later than the real
    /// earliest one, and a sweep where no service is due looks at no replica.
    lease_due: AtomicU64,
}

/// [`Service::lease_due`] when no lease is watched.
const NO_LEASE: u64 = u64::MAX;

/// The budget and its log limiter, behind one lock held for a few counter updates (no IO, no allocation).
#[derive(Debug)]
struct Budget {
    config: RetryBudgetConfig,
    budget: RetryBudget,
    log: RefusalLog,
}

impl Budget {
    fn new(config: RetryBudgetConfig) -> Self {
        Budget {
            config,
            budget: RetryBudget::new(config),
            log: RefusalLog::new(Duration::from_secs(1)),
        }
    }
}

impl Service {
    pub(crate) fn new(name: ServiceName, budget: Option<RetryBudgetConfig>) -> Self {
        Service {
            name,
            members: RwLock::new(ReplicaSet::default()),
            snapshot: RwLock::new(None),
            rr: RoundRobin::default(),
            budget: Mutex::new(budget.map(Budget::new)),
            retries_refused: AtomicU64::new(0),
            preservation: Mutex::new(PreservationSlot::default()),
            evicted: Mutex::new(EvictedList::default()),
            observe: OnceLock::new(),
            lease_due: AtomicU64::new(NO_LEASE),
        }
    }

    /// Has the lease sweep look at this service by `deadline` (a replica joined with that lease).
    pub(crate) fn watch_lease(&self, deadline: Instant) {
        self.lease_due
            .fetch_min(Stamp::of(deadline).to_bits(), Ordering::AcqRel);
    }

    /// Whether the sweep at `now` should look at this service's leases.
    pub(crate) fn lease_due(&self, now: Instant) -> bool {
        self.lease_due.load(Ordering::Acquire) <= Stamp::of(now).to_bits()
    }

    /// When the sweep looks at this service's leases next; `None`: no lease to watch.
    pub fn next_lease_check(&self) -> Option<Instant> {
        match self.lease_due.load(Ordering::Acquire) {
            NO_LEASE => None,
            bits => Stamp::from_bits(bits).map(Stamp::instant),
        }
    }

    /// Looks at every lease again and watches the earliest deadline (one that already passed, for a lease
    /// self-preservation holds, brings the sweep back at its next run). Replicas that join meanwhile lower
    /// it on their own.
    pub(crate) fn rewatch_leases(&self) {
        self.lease_due.store(NO_LEASE, Ordering::Release);
        let earliest = self
            .members()
            .iter()
            .filter_map(|r| r.lock().lease.deadline())
            .min();
        if let Some(at) = earliest {
            self.watch_lease(at);
        }
    }

    /// The service's name.
    pub fn name(&self) -> &ServiceName {
        &self.name
    }

    /// Its request metric handles (`metrics` makes them on the first call).
    pub fn observe(&self, metrics: &Arc<Metrics>) -> &Arc<ServiceHandles> {
        self.observe
            .get_or_init(|| Arc::new(ServiceHandles::new(metrics, self.name.as_str())))
    }

    /// The current replicas, in the order they joined (a snapshot; cheap to take, except for the first
    /// reader after a change, who copies the list once).
    pub fn replicas(&self) -> Arc<[Arc<Replica>]> {
        if let Some(s) = self
            .snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            return Arc::clone(s);
        }
        let members = self.members();
        let mut snapshot = self.snapshot.write().unwrap_or_else(|e| e.into_inner());
        Arc::clone(snapshot.get_or_insert_with(|| members.iter().cloned().collect()))
    }

    /// How many replicas it has (without taking a snapshot).
    pub fn len(&self) -> usize {
        self.members().len()
    }

    /// Whether it has no replica.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its replica of registration id `id`.
    pub fn by_id(&self, id: &Uuid) -> Option<Arc<Replica>> {
        self.members().by_id(id).cloned()
    }

    /// The replicas to read: shared, so heartbeats (a lookup by id) and snapshot rebuilds never wait
    /// for each other, only for a change.
    fn members(&self) -> RwLockReadGuard<'_, ReplicaSet> {
        self.members.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The replicas to change: exclusive.
    fn members_mut(&self) -> RwLockWriteGuard<'_, ReplicaSet> {
        self.members.write().unwrap_or_else(|e| e.into_inner())
    }

    fn budget(&self) -> MutexGuard<'_, Option<Budget>> {
        self.budget.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the retry budget (config reload); its counts start afresh.
    pub(crate) fn set_retry_budget(&self, config: Option<RetryBudgetConfig>) {
        *self.budget() = config.map(Budget::new);
    }

    /// Counts one client request at `now` in the retry budget (once per request, whatever its attempts).
    pub fn count_request(&self, now: Instant) {
        if let Some(b) = self.budget().as_mut() {
            b.budget.deposit(now);
        }
    }

    /// Whether the retry budget lets one more attempt of a request go out at `now` (it is then counted).
    /// A refusal is counted, and logged at most once per second.
    pub fn allow_retry(&self, now: Instant) -> bool {
        let (report, config) = {
            let mut guard = self.budget();
            let Some(b) = guard.as_mut() else {
                return true;
            };
            if b.budget.try_withdraw(now) {
                return true;
            }
            (b.log.refused(now), b.config)
        };
        self.retries_refused.fetch_add(1, Ordering::Relaxed);
        if let Some(report) = report {
            log_refusals(&self.name, report, &config);
        }
        false
    }

    /// Retries the budget refused since start.
    pub fn retries_refused(&self) -> u64 {
        self.retries_refused.load(Ordering::Relaxed)
    }

    /// While self-preservation holds this service's expired leases: the hold's wall-clock deadline.
    pub fn preserving_until(&self) -> Option<SystemTime> {
        let slot = self.preservation();
        slot.state.holding_until().and(slot.until_wall)
    }

    /// The replicas evicted less than `memory` before `now`, most recent first.
    pub fn evicted(&self, now: Instant, memory: Duration) -> Vec<Evicted> {
        self.evicted_list().recent(now, memory)
    }

    pub(crate) fn evicted_list(&self) -> MutexGuard<'_, EvictedList> {
        self.evicted.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn preservation(&self) -> MutexGuard<'_, PreservationSlot> {
        self.preservation.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the replicas with `f`, under the service's lock, and returns what `f` returned.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut ReplicaSet) -> R) -> R {
        let mut members = self.members_mut();
        let out = f(&mut members);
        if members.take_changed() {
            *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = None;
        }
        out
    }
}

fn log_refusals(name: &ServiceName, report: RefusalReport, c: &RetryBudgetConfig) {
    let budget = format!(
        "budget: {}% of requests + {}/s over {}s",
        (c.ratio * 1000.0).round() / 10.0,
        c.min_per_second,
        c.window.as_secs()
    );
    match report.since {
        None => tracing::warn!(service = %name,
            "[RETRY-BUDGET] {name}: retry refused, the failed attempt's answer goes to the client ({budget})"),
        Some(since) => {
            let (n, s) = (
                report.refused,
                if report.refused == 1 { "y" } else { "ies" },
            );
            tracing::warn!(service = %name, refused = n,
                "[RETRY-BUDGET] {name}: {n} retr{s} refused in the last {:.1}s ({budget})", since.as_secs_f64())
        }
    }
}
