//! Metric handles cached per service and per replica, so that recording a request is a few atomic adds:
//! no label set is built or hashed, nothing is allocated and no map is locked on the request path.
//!
//! A service's handles are made on its first request and live as long as it does; a per-status counter
//! is made the first time that status is seen. A replica's three attempt counters are made on its first
//! attempt. Label values come only from the registry (service names, replica addresses) and from fixed
//! tables ([`FinalStatus`]): never from what a client sent.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::histogram::LatencyHistogram;
use prometheus_client::metrics::counter::Counter;

use super::code::{FinalStatus, GRPC_SLOTS, HTTP_SLOTS};
use super::metrics::{
    AttemptLabels, AttemptResult, DurationLabels, Metrics, ProtocolLabel, ReplicaLabels,
    RequestLabels, ServiceLabel, Shared,
};
use crate::policy::Outcome;

/// The `service` label of requests for a service the registry does not know (or no service at all):
/// one fixed value, so that client-chosen names never become series.
pub const UNKNOWN_SERVICE: &str = "";

/// One protocol's request series of a service.
struct ProtocolHandles {
    protocol: ProtocolLabel,
    duration: OnceLock<LatencyHistogram>,
    /// `gateway_requests_total` by [`FinalStatus::slot`], filled as statuses are first seen.
    codes: Box<[OnceLock<Counter>]>,
}

impl ProtocolHandles {
    fn new(protocol: ProtocolLabel, slots: usize) -> Self {
        ProtocolHandles {
            protocol,
            duration: OnceLock::new(),
            codes: (0..slots).map(|_| OnceLock::new()).collect(),
        }
    }
}

/// The request-side series of one service: requests by status, duration, retries.
pub struct ServiceHandles {
    metrics: Arc<Metrics>,
    service: Shared,
    retries: Counter,
    http: ProtocolHandles,
    grpc: ProtocolHandles,
}

impl std::fmt::Debug for ServiceHandles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceHandles")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl ServiceHandles {
    /// The handles of `service` (its `gateway_retries_total` series appears now, at 0).
    pub fn new(metrics: &Arc<Metrics>, service: &str) -> Self {
        let service = Shared::from(service);
        let retries = metrics
            .retries
            .get_or_create(&ServiceLabel {
                service: service.clone(),
            })
            .clone();
        ServiceHandles {
            metrics: Arc::clone(metrics),
            service,
            retries,
            http: ProtocolHandles::new(ProtocolLabel::http, HTTP_SLOTS),
            grpc: ProtocolHandles::new(ProtocolLabel::grpc, GRPC_SLOTS),
        }
    }

    /// The service name as labelled (empty for [`UNKNOWN_SERVICE`]).
    pub fn name(&self) -> &str {
        &self.service.0
    }

    /// Counts one attempt beyond the first.
    pub fn retry(&self) {
        self.retries.inc();
    }

    /// Counts one answered request with its final status and its duration as the client saw it.
    pub fn request(&self, status: FinalStatus, duration: Duration) {
        let p = match status {
            FinalStatus::Http(_) => &self.http,
            FinalStatus::Grpc(_) => &self.grpc,
        };
        p.codes[status.slot()]
            .get_or_init(|| {
                self.metrics
                    .requests
                    .get_or_create(&RequestLabels {
                        service: self.service.clone(),
                        protocol: p.protocol,
                        code: Shared(Arc::from(status.label())),
                    })
                    .clone()
            })
            .inc();
        p.duration
            .get_or_init(|| {
                self.metrics
                    .request_duration
                    .get_or_create(&DurationLabels {
                        service: self.service.clone(),
                        protocol: p.protocol,
                    })
                    .clone()
            })
            .observe(duration);
    }
}

/// The attempt series of one replica.
pub struct ReplicaHandles {
    replica: Shared,
    success: Counter,
    failure: Counter,
    client_fault: Counter,
}

impl std::fmt::Debug for ReplicaHandles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaHandles")
            .field("replica", &self.replica)
            .finish_non_exhaustive()
    }
}

impl ReplicaLabels {
    /// The labels of the replica at `address` (`http://host:port`, as registered) of `service`: the
    /// same values [`ReplicaHandles`] uses, for [`Metrics::forget_replica`].
    pub fn of(service: &str, address: &str) -> ReplicaLabels {
        ReplicaLabels {
            service: service.into(),
            replica: address.into(),
        }
    }
}

impl ReplicaHandles {
    /// The three `gateway_upstream_attempts_total` series of a replica (they appear now, at 0).
    pub fn new(metrics: &Metrics, labels: &ReplicaLabels) -> Self {
        let counter = |result| {
            metrics
                .upstream_attempts
                .get_or_create(&AttemptLabels {
                    service: labels.service.clone(),
                    replica: labels.replica.clone(),
                    result,
                })
                .clone()
        };
        ReplicaHandles {
            replica: labels.replica.clone(),
            success: counter(AttemptResult::success),
            failure: counter(AttemptResult::failure),
            client_fault: counter(AttemptResult::client_fault),
        }
    }

    /// The replica's address, as labelled.
    pub fn address(&self) -> &str {
        &self.replica.0
    }

    /// Counts one attempt that came to `outcome`.
    pub fn attempt(&self, outcome: Outcome) {
        match attempt_result(outcome) {
            AttemptResult::success => self.success.inc(),
            AttemptResult::failure => self.failure.inc(),
            AttemptResult::client_fault => self.client_fault.inc(),
        };
    }

    /// Counts one attempt dropped before its outcome: the client went away (charged to nobody).
    pub fn abandoned(&self) {
        self.client_fault.inc();
    }
}

/// The `result` label of an attempt's outcome.
pub fn attempt_result(outcome: Outcome) -> AttemptResult {
    match outcome {
        Outcome::Success => AttemptResult::success,
        Outcome::Failure(_) => AttemptResult::failure,
        Outcome::ClientFault(_) => AttemptResult::client_fault,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{ClientFault, FailureCause};

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    #[test]
    fn outcomes_map_to_attempt_results() {
        assert_eq!(attempt_result(Outcome::Success), AttemptResult::success);
        assert_eq!(
            attempt_result(Outcome::Failure(FailureCause::Connect)),
            AttemptResult::failure
        );
        assert_eq!(
            attempt_result(Outcome::ClientFault(ClientFault::Aborted)),
            AttemptResult::client_fault
        );
    }

    #[test]
    fn requests_are_counted_by_service_protocol_and_code() {
        let m = Arc::new(Metrics::new());
        let h = ServiceHandles::new(&m, "users");
        for _ in 0..3 {
            h.request(FinalStatus::Http(200), Duration::from_millis(2));
        }
        h.request(FinalStatus::Http(503), Duration::from_millis(2));
        h.request(FinalStatus::Grpc(0), Duration::from_millis(2));
        h.request(FinalStatus::Grpc(99), Duration::from_millis(2));
        h.retry();
        let text = m.encode();
        let req = |p: &str, c: &str| {
            value(
                &text,
                &format!(
                    "gateway_requests_total{{service=\"users\",protocol=\"{p}\",code=\"{c}\"}}"
                ),
            )
        };
        assert_eq!(req("http", "200"), Some(3.0), "{text}");
        assert_eq!(req("http", "503"), Some(1.0));
        assert_eq!(req("grpc", "OK"), Some(1.0));
        assert_eq!(req("grpc", "UNKNOWN"), Some(1.0));
        assert_eq!(
            value(
                &text,
                "gateway_request_duration_seconds_count{service=\"users\",protocol=\"http\"}"
            ),
            Some(4.0)
        );
        assert_eq!(
            value(&text, "gateway_retries_total{service=\"users\"}"),
            Some(1.0)
        );
    }

    #[test]
    fn two_handle_sets_of_one_service_share_their_series() {
        // The HTTP proxy and the gRPC proxy each keep the unknown-service handles.
        let m = Arc::new(Metrics::new());
        let a = ServiceHandles::new(&m, UNKNOWN_SERVICE);
        let b = ServiceHandles::new(&m, UNKNOWN_SERVICE);
        a.request(FinalStatus::Http(404), Duration::ZERO);
        b.request(FinalStatus::Http(404), Duration::ZERO);
        assert_eq!(
            value(
                &m.encode(),
                "gateway_requests_total{service=\"\",protocol=\"http\",code=\"404\"}"
            ),
            Some(2.0)
        );
    }

    #[test]
    fn attempts_are_counted_by_result_and_forgotten_with_the_replica() {
        let m = Metrics::new();
        let labels = ReplicaLabels::of("users", "http://127.0.0.1:9001");
        let h = ReplicaHandles::new(&m, &labels);
        h.attempt(Outcome::Success);
        h.attempt(Outcome::Success);
        h.attempt(Outcome::Failure(FailureCause::Timeout));
        h.abandoned();
        let text = m.encode();
        let att = |r: &str| {
            value(
                &text,
                &format!("gateway_upstream_attempts_total{{service=\"users\",replica=\"http://127.0.0.1:9001\",result=\"{r}\"}}"),
            )
        };
        assert_eq!(att("success"), Some(2.0), "{text}");
        assert_eq!(att("failure"), Some(1.0));
        assert_eq!(att("client_fault"), Some(1.0));
        m.forget_replica(&labels);
        assert!(!m.encode().contains("127.0.0.1:9001"));
    }
}
