//! The gateway's Prometheus metrics: one [`Metrics`] per gateway, encoded by `GET /metrics`.
//!
//! Recording on the request path must not allocate or lock: callers keep the handles a family hands
//! out ([`Counter`] and [`Gauge`] are shared atomics) instead of looking a label set up per request.
//! A removed replica's series are dropped with [`Metrics::forget_replica`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry as PromRegistry;

use super::histogram::LatencyHistogram;

/// A label value shared without copying (service names, replica addresses).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Shared(pub Arc<str>);

impl EncodeLabelValue for Shared {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&&*self.0, encoder)
    }
}

impl From<&str> for Shared {
    fn from(s: &str) -> Self {
        Shared(Arc::from(s))
    }
}

/// The wire a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ProtocolLabel {
    /// HTTP/1.1 or h2c through the HTTP listener.
    http,
    /// A gRPC call through the gRPC listener.
    grpc,
}

/// What one upstream attempt came to, as the failure policy attributed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum AttemptResult {
    /// The replica answered.
    success,
    /// The replica failed (charged to it).
    failure,
    /// The client gave up or sent something broken (charged to nobody).
    client_fault,
}

/// `{service}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ServiceLabel {
    /// Service name.
    pub service: Shared,
}

/// `{service, protocol, code}` of `gateway_requests_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    /// Service name.
    pub service: Shared,
    /// `http` or `grpc`.
    pub protocol: ProtocolLabel,
    /// HTTP status code, or the gRPC status name (`OK`, `UNAVAILABLE`, …).
    pub code: Shared,
}

/// `{service, protocol}` of `gateway_request_duration_seconds`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DurationLabels {
    /// Service name.
    pub service: Shared,
    /// `http` or `grpc`.
    pub protocol: ProtocolLabel,
}

/// `{service, replica}`: the common part of every per-replica series.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReplicaLabels {
    /// Service name.
    pub service: Shared,
    /// The replica's address as registered.
    pub replica: Shared,
}

/// `{service, replica, result}` of `gateway_upstream_attempts_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct AttemptLabels {
    /// Service name.
    pub service: Shared,
    /// Replica address.
    pub replica: Shared,
    /// `success`, `failure` or `client_fault`.
    pub result: AttemptResult,
}

/// `{service, replica, state}` of `gateway_replica_state` (written at scrape time by the registry).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StateLabels {
    /// Service name.
    pub service: Shared,
    /// Replica address.
    pub replica: Shared,
    /// `closed`, `open` or `half_open`.
    pub state: &'static str,
}

/// `{service, replica, to}` of `gateway_breaker_transitions_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TransitionLabels {
    /// Service name.
    pub service: Shared,
    /// Replica address.
    pub replica: Shared,
    /// `closed`, `open` or `half_open`.
    pub to: &'static str,
}

/// `{service, reason}` of `gateway_evictions_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct EvictionLabels {
    /// Service name.
    pub service: Shared,
    /// `failures` or `lease_expired`.
    pub reason: &'static str,
}

/// Every metric the gateway exports, and the registry that encodes them.
pub struct Metrics {
    /// Behind a lock only so that the store's series can join it once the Redis store starts.
    registry: Mutex<PromRegistry>,
    store_registered: AtomicBool,
    /// `gateway_requests_total{service,protocol,code}`.
    pub requests: Family<RequestLabels, Counter>,
    /// `gateway_request_duration_seconds{service,protocol}`.
    pub request_duration: Family<DurationLabels, LatencyHistogram>,
    /// `gateway_upstream_attempts_total{service,replica,result}`.
    pub upstream_attempts: Family<AttemptLabels, Counter>,
    /// `gateway_retries_total{service}`.
    pub retries: Family<ServiceLabel, Counter>,
    /// `gateway_breaker_transitions_total{service,replica,to}`.
    pub breaker_transitions: Family<TransitionLabels, Counter>,
    /// `gateway_evictions_total{service,reason}`.
    pub evictions: Family<EvictionLabels, Counter>,
    /// `gateway_replicas{service}`.
    pub replicas: Family<ServiceLabel, Gauge>,
    /// `gateway_registrations_total`.
    pub registrations: Counter,
    /// `gateway_heartbeats_total`.
    pub heartbeats: Counter,
    /// `gateway_store_connected` (Redis store only: 1 when connected; exported once
    /// [`Metrics::register_store`] was called).
    pub store_connected: Gauge,
    /// `gateway_store_resyncs_total` (Redis store only, like `store_connected`).
    pub store_resyncs: Counter,
    /// `gateway_store_queue_pending`: replicas and addresses with a change waiting for the store.
    pub store_queue_pending: Gauge,
    /// `gateway_store_queue_coalesced_total`: changes folded into one already waiting.
    pub store_queue_coalesced: Counter,
    /// `gateway_store_queue_overflows_total`: times the queue was full and a full write-back replaced it.
    pub store_queue_overflows: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The breaker states, as `state` and `to` label values.
pub const STATES: [&str; 3] = ["closed", "open", "half_open"];

impl Metrics {
    /// Every family registered, none with series yet.
    pub fn new() -> Self {
        let mut registry = PromRegistry::default();
        let requests = Family::default();
        let request_duration = Family::<DurationLabels, LatencyHistogram>::default();
        let upstream_attempts = Family::default();
        let retries = Family::default();
        let breaker_transitions = Family::default();
        let evictions = Family::default();
        let replicas = Family::default();
        let registrations = Counter::default();
        let heartbeats = Counter::default();
        let store_connected = Gauge::default();
        let store_resyncs = Counter::default();
        let store_queue_pending = Gauge::default();
        let store_queue_coalesced = Counter::default();
        let store_queue_overflows = Counter::default();
        // Counters are registered without `_total`: the encoder appends it.
        registry.register(
            "gateway_requests",
            "Requests answered, by final status (HTTP status or gRPC status name)",
            requests.clone(),
        );
        registry.register(
            "gateway_request_duration_seconds",
            "Whole request as the client saw it",
            request_duration.clone(),
        );
        registry.register(
            "gateway_upstream_attempts",
            "Attempts on replicas, by whose fault a failure was",
            upstream_attempts.clone(),
        );
        registry.register(
            "gateway_retries",
            "Attempts beyond the first",
            retries.clone(),
        );
        registry.register(
            "gateway_breaker_transitions",
            "Breaker state changes, by the state entered",
            breaker_transitions.clone(),
        );
        registry.register(
            "gateway_evictions",
            "Replicas removed for failures or an expired lease",
            evictions.clone(),
        );
        registry.register(
            "gateway_replicas",
            "Registered replicas now",
            replicas.clone(),
        );
        registry.register(
            "gateway_registrations",
            "Registrations accepted (HTTP and gRPC)",
            registrations.clone(),
        );
        registry.register(
            "gateway_heartbeats",
            "Heartbeats accepted (HTTP and gRPC)",
            heartbeats.clone(),
        );
        let pipeline = &crate::proxy::PIPELINE_COUNTERS;
        registry.register(
            "gateway_upstream_pipeline_batches",
            "Batches of more than one GET written together on one connection to a replica (upstream.pipeline)",
            pipeline.batches.clone(),
        );
        registry.register(
            "gateway_upstream_pipelined_requests",
            "Requests written behind another in a batch (upstream.pipeline)",
            pipeline.pipelined.clone(),
        );
        registry.register(
            "gateway_upstream_pipeline_resent",
            "Requests of a batch sent again alone because the batch could not carry them (the replica \
             closed, an answer before them failed or took longer than the head timeout)",
            pipeline.resent.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            store_registered: AtomicBool::new(false),
            requests,
            request_duration,
            upstream_attempts,
            retries,
            breaker_transitions,
            evictions,
            replicas,
            registrations,
            heartbeats,
            store_connected,
            store_resyncs,
            store_queue_pending,
            store_queue_coalesced,
            store_queue_overflows,
        }
    }

    /// Exports `gateway_store_connected` and `gateway_store_resyncs_total` from now on: called when the
    /// Redis store starts, so that a gateway without a shared store shows neither. Idempotent.
    pub fn register_store(&self) {
        if self.store_registered.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        registry.register(
            "gateway_store_connected",
            "1 when the shared store (Redis) is reachable, 0 when degraded",
            self.store_connected.clone(),
        );
        registry.register(
            "gateway_store_resyncs",
            "Full resyncs with the shared store",
            self.store_resyncs.clone(),
        );
        registry.register(
            "gateway_store_queue_pending",
            "Replicas and addresses with a change waiting to be written to the shared store",
            self.store_queue_pending.clone(),
        );
        registry.register(
            "gateway_store_queue_coalesced",
            "Changes folded into one already waiting for the shared store (latest state wins)",
            self.store_queue_coalesced.clone(),
        );
        registry.register(
            "gateway_store_queue_overflows",
            "Times the queue to the shared store was full: its entries were dropped and the registry \
             written back in full instead",
            self.store_queue_overflows.clone(),
        );
    }

    /// Adds series written at scrape time by `collector` (the registry's `gateway_replica_state`, read
    /// from the replicas themselves so that no series is kept per replica).
    pub fn register_collector(&self, collector: Box<dyn Collector>) {
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        registry.register_collector(collector);
    }

    /// Drops every series of a removed replica (its transitions and attempts), so the number of
    /// series follows the fleet instead of growing with every replica that ever lived.
    pub fn forget_replica(&self, replica: &ReplicaLabels) {
        for state in STATES {
            self.breaker_transitions.remove(&TransitionLabels {
                service: replica.service.clone(),
                replica: replica.replica.clone(),
                to: state,
            });
        }
        for result in [
            AttemptResult::success,
            AttemptResult::failure,
            AttemptResult::client_fault,
        ] {
            self.upstream_attempts.remove(&AttemptLabels {
                service: replica.service.clone(),
                replica: replica.replica.clone(),
                result,
            });
        }
    }

    /// The Prometheus text exposition of every metric (`GET /metrics`).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forgotten_replica_leaves_no_series() {
        let m = Metrics::new();
        let r = ReplicaLabels {
            service: "users".into(),
            replica: "127.0.0.1:9001".into(),
        };
        m.upstream_attempts
            .get_or_create(&AttemptLabels {
                service: r.service.clone(),
                replica: r.replica.clone(),
                result: AttemptResult::failure,
            })
            .inc();
        let text = m.encode();
        assert!(text.contains(
            "gateway_upstream_attempts_total{service=\"users\",replica=\"127.0.0.1:9001\",result=\"failure\"} 1"
        ), "{text}");
        m.forget_replica(&r);
        assert!(!m.encode().contains("127.0.0.1:9001"));
    }

    #[test]
    fn the_store_series_appear_only_once_a_store_registers_them() {
        let m = Metrics::new();
        assert!(!m.encode().contains("gateway_store"), "{}", m.encode());
        m.register_store();
        m.register_store();
        m.store_connected.set(1);
        let text = m.encode();
        assert!(text.contains("\ngateway_store_connected 1\n"), "{text}");
        assert!(text.contains("\ngateway_store_resyncs_total 0\n"), "{text}");
        assert!(text.contains("\ngateway_store_queue_pending 0\n"), "{text}");
        assert!(
            text.contains("\ngateway_store_queue_overflows_total 0\n"),
            "{text}"
        );
        assert_eq!(text.matches("# TYPE gateway_store_connected").count(), 1);
    }
}
