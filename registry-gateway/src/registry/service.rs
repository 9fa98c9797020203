//! A service: its replicas, as an immutable snapshot swapped on change, its round-robin cursor, its retry
//! budget and its self-preservation state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime};

use super::evicted::{Evicted, EvictedList};
use super::{Replica, ServiceName};
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
    /// Copy-on-write: the proxy clones the `Arc` and routes without holding any lock.
    replicas: RwLock<Arc<[Arc<Replica>]>>,
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
}

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
            replicas: RwLock::new(Arc::from(Vec::new())),
            rr: RoundRobin::default(),
            budget: Mutex::new(budget.map(Budget::new)),
            retries_refused: AtomicU64::new(0),
            preservation: Mutex::new(PreservationSlot::default()),
            evicted: Mutex::new(EvictedList::default()),
            observe: OnceLock::new(),
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

    /// The current replicas (a snapshot; cheap to take).
    pub fn replicas(&self) -> Arc<[Arc<Replica>]> {
        self.replicas
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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

    /// Replaces the replica list with `f(current)`, under the write lock, and returns what `f` returned.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut Vec<Arc<Replica>>) -> R) -> R {
        let mut guard = self.replicas.write().unwrap_or_else(|e| e.into_inner());
        let mut list = guard.to_vec();
        let out = f(&mut list);
        *guard = Arc::from(list);
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
