//! One client request (or gRPC call) from arrival to the end of its response: what the metrics and the
//! access log record of it, recorded exactly once when it ends — or, if it is dropped first (the client
//! went away), when it is dropped.

use std::sync::Arc;
use std::time::Instant;

use super::access_log::{self, AccessInfo, Entry};
use super::code::{FinalStatus, CLIENT_CLOSED};
use super::handles::{ReplicaHandles, ServiceHandles};
use super::metrics::ProtocolLabel;
use super::request_id::RequestId;
use crate::clock;

/// A request on its way through the gateway.
#[derive(Debug)]
pub struct Exchange {
    started: Instant,
    protocol: ProtocolLabel,
    service: Arc<ServiceHandles>,
    replica: Option<Arc<ReplicaHandles>>,
    attempts: u32,
    request_id: RequestId,
    /// `None` while the access log is off.
    access: Option<AccessInfo>,
    /// The replica switched protocols: the request is counted, the access-log line waits for the tunnel.
    switched: bool,
    /// Bytes a tunnel carried from the client to the replica.
    uploaded: Option<u64>,
    done: bool,
}

impl Exchange {
    /// A request that arrived at `started`, counted under `service` until [`Exchange::route`] names
    /// its own; `access` is `None` when the access log is off.
    pub fn new(
        started: Instant,
        protocol: ProtocolLabel,
        service: &Arc<ServiceHandles>,
        request_id: RequestId,
        access: Option<AccessInfo>,
    ) -> Self {
        Exchange {
            started,
            protocol,
            service: Arc::clone(service),
            replica: None,
            attempts: 0,
            request_id,
            access,
            switched: false,
            uploaded: None,
            done: false,
        }
    }

    /// The request's id.
    pub fn request_id(&self) -> &RequestId {
        &self.request_id
    }

    /// The request was routed to a known service.
    pub fn route(&mut self, service: &Arc<ServiceHandles>) {
        self.service = Arc::clone(service);
    }

    /// An attempt on `replica` goes out; every one after the first counts as a retry.
    pub fn attempt(&mut self, replica: &Arc<ReplicaHandles>) {
        self.attempts += 1;
        if self.attempts > 1 {
            self.service.retry();
        }
        self.replica = Some(Arc::clone(replica));
    }

    /// The replica answered 101 Switching Protocols: the request is counted now, its duration up to the
    /// 101 (a tunnel's lifetime is no request latency); [`Exchange::finish`] writes the access-log line
    /// when the tunnel ends.
    pub fn switched(&mut self) {
        if self.done || std::mem::replace(&mut self.switched, true) {
            return;
        }
        let duration = clock::now().saturating_duration_since(self.started);
        self.service.request(FinalStatus::Http(101), duration);
    }

    /// The tunnel after a 101 ended, having carried `to_client` bytes from the replica and `to_replica`
    /// from the client: logged now, with the duration up to the tunnel's end.
    pub fn finish_tunnel(&mut self, to_client: u64, to_replica: u64) {
        self.switched();
        self.uploaded = Some(to_replica);
        self.finish(FinalStatus::Http(101), to_client);
    }

    /// The response ended with `status` after `bytes` body bytes: counted and logged now (once). After
    /// [`Exchange::switched`] only the log line is left, with the duration up to the tunnel's end.
    pub fn finish(&mut self, status: FinalStatus, bytes: u64) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let duration = clock::now().saturating_duration_since(self.started);
        if !self.switched {
            self.service.request(status, duration);
        }
        if let Some(info) = &self.access {
            access_log::write(&Entry {
                info,
                service: self.service.name(),
                replica: self.replica.as_deref().map(ReplicaHandles::address),
                status,
                attempts: self.attempts,
                duration,
                bytes,
                bytes_in: self.uploaded,
                request_id: self.request_id.as_str(),
            });
        }
    }
}

impl Drop for Exchange {
    /// Dropped before its response: the client left (HTTP 499, gRPC CANCELLED).
    fn drop(&mut self) {
        if !self.done {
            let status = match self.protocol {
                _ if self.switched => FinalStatus::Http(101),
                ProtocolLabel::http => FinalStatus::Http(CLIENT_CLOSED),
                ProtocolLabel::grpc => FinalStatus::Grpc(1),
            };
            self.finish(status, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::Metrics;

    fn line(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    #[test]
    fn an_exchange_is_counted_once_under_its_routed_service() {
        let m = Arc::new(Metrics::new());
        let unknown = Arc::new(ServiceHandles::new(&m, ""));
        let users = Arc::new(ServiceHandles::new(&m, "users"));
        let replica = Arc::new(ReplicaHandles::new(
            &m,
            &crate::observe::ReplicaLabels::of("users", "http://127.0.0.1:9001"),
        ));
        let mut ex = Exchange::new(
            clock::now(),
            ProtocolLabel::http,
            &unknown,
            RequestId::generate(),
            None,
        );
        ex.route(&users);
        ex.attempt(&replica);
        ex.attempt(&replica);
        ex.finish(FinalStatus::Http(200), 10);
        ex.finish(FinalStatus::Http(500), 10);
        drop(ex);
        let text = m.encode();
        assert_eq!(
            line(
                &text,
                "gateway_requests_total{service=\"users\",protocol=\"http\",code=\"200\"}"
            ),
            Some(1.0),
            "{text}"
        );
        assert!(!text.contains("code=\"500\""));
        assert!(!text.contains("code=\"499\""));
        assert_eq!(
            line(&text, "gateway_retries_total{service=\"users\"}"),
            Some(1.0)
        );
    }

    #[test]
    fn a_tunnel_is_counted_once_as_101_at_its_switch() {
        let m = Arc::new(Metrics::new());
        let users = Arc::new(ServiceHandles::new(&m, "chat"));
        for finish in [true, false] {
            let mut ex = Exchange::new(
                clock::now(),
                ProtocolLabel::http,
                &users,
                RequestId::generate(),
                None,
            );
            ex.switched();
            ex.switched();
            if finish {
                ex.finish_tunnel(10, 20);
            }
            // Dropped without a finish (the client's connection died with the tunnel): still a 101.
            drop(ex);
        }
        let text = m.encode();
        assert_eq!(
            line(
                &text,
                "gateway_requests_total{service=\"chat\",protocol=\"http\",code=\"101\"}"
            ),
            Some(2.0),
            "{text}"
        );
        assert!(!text.contains("code=\"499\""));
        assert_eq!(
            line(
                &text,
                "gateway_request_duration_seconds_count{service=\"chat\",protocol=\"http\"}"
            ),
            Some(2.0),
            "{text}"
        );
    }

    #[test]
    fn a_dropped_exchange_is_a_client_that_left() {
        let m = Arc::new(Metrics::new());
        let unknown = Arc::new(ServiceHandles::new(&m, ""));
        for protocol in [ProtocolLabel::http, ProtocolLabel::grpc] {
            drop(Exchange::new(
                clock::now(),
                protocol,
                &unknown,
                RequestId::generate(),
                None,
            ));
        }
        let text = m.encode();
        assert_eq!(
            line(
                &text,
                "gateway_requests_total{service=\"\",protocol=\"http\",code=\"499\"}"
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            line(
                &text,
                "gateway_requests_total{service=\"\",protocol=\"grpc\",code=\"CANCELLED\"}"
            ),
            Some(1.0)
        );
    }
}
