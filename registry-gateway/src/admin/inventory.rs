//! `GET /registry` written as a stream, service by service and a few hundred replicas at a time, so that
//! reading a fleet of a million replicas costs the gateway a bounded amount of memory; and its filters.

use std::sync::Arc;
use std::time::Instant;

use actix_web::web::Bytes;

use super::dto::{unix_ms, EvictedDto, ReplicaDto};
use crate::clock;
use crate::error::GatewayError;
use crate::policy::BreakerState;
use crate::registry::{Protocol, Registry, Replica, Service};
use crate::store::StoreStatus;

/// Replicas serialised per chunk of the stream.
const REPLICAS_PER_CHUNK: usize = 256;

/// Which services and replicas `GET /registry` lists (`?service=a,b&state=open&protocol=grpc`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct InventoryFilter {
    /// Only these services (unknown names are left out).
    services: Option<Vec<String>>,
    /// Only replicas whose breaker is in this state.
    state: Option<BreakerState>,
    /// Only replicas of this protocol.
    protocol: Option<Protocol>,
}

impl InventoryFilter {
    /// Reads the filters from a query string; other parameters are ignored.
    pub(crate) fn parse(query: &str) -> Result<InventoryFilter, GatewayError> {
        let mut f = InventoryFilter::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "service" => f.services.get_or_insert_with(Vec::new).extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                ),
                "state" => {
                    f.state = Some(match value.as_ref() {
                        "closed" => BreakerState::Closed,
                        "open" => BreakerState::Open,
                        "half_open" => BreakerState::HalfOpen,
                        other => return Err(bad("state", other, "closed, open or half_open")),
                    })
                }
                "protocol" => {
                    f.protocol = Some(match value.as_ref() {
                        "http" => Protocol::Http,
                        "grpc" => Protocol::Grpc,
                        other => return Err(bad("protocol", other, "http or grpc")),
                    })
                }
                _ => {}
            }
        }
        Ok(f)
    }

    /// Whether replicas are filtered (a service is then listed only with a matching replica).
    fn filters_replicas(&self) -> bool {
        self.state.is_some() || self.protocol.is_some()
    }

    fn keeps_service(&self, svc: &Service) -> bool {
        self.services
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == svc.name().as_str()))
    }

    fn keeps(&self, r: &Replica, now: Instant) -> bool {
        self.protocol.is_none_or(|p| r.protocol() == p)
            && self.state.is_none_or(|s| r.lock().breaker.state(now) == s)
    }
}

fn bad(field: &str, value: &str, expected: &str) -> GatewayError {
    GatewayError::InvalidField {
        field: field.to_owned(),
        message: format!("'{value}' is not one of {expected}"),
    }
}

/// The service being written.
struct Current {
    svc: Arc<Service>,
    replicas: Arc<[Arc<Replica>]>,
    next: usize,
    now: Instant,
    holding: bool,
    /// Its key and head, not written yet: with replica filters, a service is written only once one of
    /// its replicas matches.
    head: Option<Vec<u8>>,
    written: usize,
}

/// The chunks of one `GET /registry` answer, produced as they are read.
pub(crate) struct Inventory {
    registry: Arc<Registry>,
    filter: InventoryFilter,
    head: Option<Vec<u8>>,
    services: std::vec::IntoIter<Arc<Service>>,
    current: Option<Current>,
    services_written: usize,
    finished: bool,
}

impl Inventory {
    /// The answer for `registry` (services sorted by name, each one a snapshot of its own) with the
    /// store status `store` at its head.
    pub(crate) fn new(
        registry: Arc<Registry>,
        store: StoreStatus,
        filter: InventoryFilter,
    ) -> Self {
        let mut head = b"{\"store\":".to_vec();
        serde_json::to_writer(&mut head, &store).expect("the store status serialises");
        head.extend_from_slice(b",\"services\":{");
        let services: Vec<_> = registry
            .services()
            .into_iter()
            .filter(|s| filter.keeps_service(s))
            .collect();
        Inventory {
            registry,
            filter,
            head: Some(head),
            services: services.into_iter(),
            current: None,
            services_written: 0,
            finished: false,
        }
    }

    fn start(&mut self, svc: Arc<Service>) -> Current {
        let until = svc.preserving_until();
        let mut head = Vec::with_capacity(128);
        if self.services_written > 0 {
            head.push(b',');
        }
        serde_json::to_writer(&mut head, svc.name().as_str()).expect("a name serialises");
        head.extend_from_slice(b":{\"preserving_until_unix_ms\":");
        match until {
            Some(t) => head.extend_from_slice(unix_ms(t).to_string().as_bytes()),
            None => head.extend_from_slice(b"null"),
        }
        head.extend_from_slice(b",\"replicas\":[");
        Current {
            replicas: svc.replicas(),
            svc,
            next: 0,
            now: clock::now(),
            holding: until.is_some(),
            head: Some(head),
            written: 0,
        }
    }

    /// Writes the next replicas of `cur` into `out`; true when the service is complete.
    fn write_some(&self, cur: &mut Current, out: &mut Vec<u8>) -> bool {
        let end = (cur.next + REPLICAS_PER_CHUNK).min(cur.replicas.len());
        for r in &cur.replicas[cur.next..end] {
            if !self.filter.keeps(r, cur.now) {
                continue;
            }
            if let Some(head) = cur.head.take() {
                out.extend_from_slice(&head);
            }
            if cur.written > 0 {
                out.push(b',');
            }
            let dto = ReplicaDto::new(r.view(cur.now), cur.holding);
            serde_json::to_writer(&mut *out, &dto).expect("a replica serialises");
            cur.written += 1;
        }
        cur.next = end;
        if cur.next < cur.replicas.len() {
            return false;
        }
        if let Some(head) = cur.head.take() {
            if self.filter.filters_replicas() {
                // Nothing matched: the service is left out.
                return true;
            }
            out.extend_from_slice(&head);
        }
        out.extend_from_slice(b"],\"evicted\":");
        let memory = self.registry.policy().probation_memory;
        let evicted: Vec<EvictedDto> = cur
            .svc
            .evicted(cur.now, memory)
            .iter()
            .map(EvictedDto::from)
            .collect();
        serde_json::to_writer(&mut *out, &evicted).expect("evicted replicas serialise");
        out.extend_from_slice(b",\"retries_refused_by_budget\":");
        out.extend_from_slice(cur.svc.retries_refused().to_string().as_bytes());
        out.push(b'}');
        true
    }
}

impl Iterator for Inventory {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if let Some(head) = self.head.take() {
            return Some(Bytes::from(head));
        }
        let mut out = Vec::new();
        while out.is_empty() {
            if self.finished {
                return None;
            }
            let mut cur = match self.current.take() {
                Some(cur) => cur,
                None => match self.services.next() {
                    Some(svc) => self.start(svc),
                    None => {
                        self.finished = true;
                        return Some(Bytes::from_static(b"}}"));
                    }
                },
            };
            if self.write_some(&mut cur, &mut out) {
                if cur.written > 0 || !self.filter.filters_replicas() {
                    self.services_written += 1;
                }
            } else {
                self.current = Some(cur);
            }
        }
        Some(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_read_from_the_query() {
        let f =
            InventoryFilter::parse("service=a,b&service=c&state=open&protocol=grpc&x=1").unwrap();
        assert_eq!(
            f,
            InventoryFilter {
                services: Some(vec!["a".into(), "b".into(), "c".into()]),
                state: Some(BreakerState::Open),
                protocol: Some(Protocol::Grpc),
            }
        );
        assert_eq!(
            InventoryFilter::parse("").unwrap(),
            InventoryFilter::default()
        );
        assert!(InventoryFilter::parse("state=ajar").is_err());
        assert!(InventoryFilter::parse("protocol=udp").is_err());
    }
}
