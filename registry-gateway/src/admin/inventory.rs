//! `GET /registry` written as a stream, service by service and a few hundred replicas at a time, so that
//! reading a fleet of a million replicas costs the gateway a bounded amount of memory; and its filters.

use std::sync::Arc;

use actix_web::web::Bytes;

use super::dto::{unix_ms, EvictedDto, ReplicaDto};
use crate::error::GatewayError;
use crate::policy::BreakerState;
use crate::registry::{Listing, ListingFilter, Protocol, Registry, ServicePart};
use crate::store::StoreStatus;

/// Replicas serialised per chunk of the stream.
const REPLICAS_PER_CHUNK: usize = 256;

/// Reads `GET /registry`'s filters from its query string (`?service=a,b&state=open&protocol=grpc`);
/// other parameters are ignored.
pub(crate) fn parse_filter(query: &str) -> Result<ListingFilter, GatewayError> {
    let mut f = ListingFilter::default();
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
                f.replicas.state = Some(match value.as_ref() {
                    "closed" => BreakerState::Closed,
                    "open" => BreakerState::Open,
                    "half_open" => BreakerState::HalfOpen,
                    other => return Err(bad("state", other, "closed, open or half_open")),
                })
            }
            "protocol" => {
                f.replicas.protocol = Some(match value.as_ref() {
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

fn bad(field: &str, value: &str, expected: &str) -> GatewayError {
    GatewayError::InvalidField {
        field: field.to_owned(),
        message: format!("'{value}' is not one of {expected}"),
    }
}

/// The chunks of one `GET /registry` answer, produced as they are read: one chunk per part of the
/// registry's [`Listing`].
pub(crate) struct Inventory {
    registry: Arc<Registry>,
    head: Option<Vec<u8>>,
    listing: Listing,
    /// Whether self-preservation holds the service being written.
    holding: bool,
    /// Replicas of the service being written, written so far.
    written: usize,
    services_written: usize,
    finished: bool,
}

impl Inventory {
    /// The answer for `registry` (services sorted by name, each one a snapshot of its own) with the
    /// store status `store` at its head.
    pub(crate) fn new(registry: Arc<Registry>, store: StoreStatus, filter: ListingFilter) -> Self {
        let mut head = b"{\"store\":".to_vec();
        serde_json::to_writer(&mut head, &store).expect("the store status serialises");
        head.extend_from_slice(b",\"services\":{");
        let listing = Listing::new(&registry, &filter, REPLICAS_PER_CHUNK);
        Inventory {
            registry,
            head: Some(head),
            listing,
            holding: false,
            written: 0,
            services_written: 0,
            finished: false,
        }
    }

    /// Writes one part of a service into `out`: its key and head before the first, its tail after the
    /// last.
    fn write_part(&mut self, sp: &ServicePart, out: &mut Vec<u8>) {
        if sp.part.index == 0 {
            let until = sp.service.preserving_until();
            self.holding = until.is_some();
            self.written = 0;
            if self.services_written > 0 {
                out.push(b',');
            }
            self.services_written += 1;
            serde_json::to_writer(&mut *out, sp.service.name().as_str())
                .expect("a name serialises");
            out.extend_from_slice(b":{\"preserving_until_unix_ms\":");
            match until {
                Some(t) => out.extend_from_slice(unix_ms(t).to_string().as_bytes()),
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b",\"replicas\":[");
        }
        for r in &sp.part.items {
            if self.written > 0 {
                out.push(b',');
            }
            let dto = ReplicaDto::new(r.view(sp.now), self.holding);
            serde_json::to_writer(&mut *out, &dto).expect("a replica serialises");
            self.written += 1;
        }
        if !sp.part.last {
            return;
        }
        out.extend_from_slice(b"],\"evicted\":");
        let memory = self.registry.policy().probation_memory;
        let evicted: Vec<EvictedDto> = sp
            .service
            .evicted(sp.now, memory)
            .iter()
            .map(EvictedDto::from)
            .collect();
        serde_json::to_writer(&mut *out, &evicted).expect("evicted replicas serialise");
        out.extend_from_slice(b",\"retries_refused_by_budget\":");
        out.extend_from_slice(sp.service.retries_refused().to_string().as_bytes());
        out.push(b'}');
    }
}

impl Iterator for Inventory {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if let Some(head) = self.head.take() {
            return Some(Bytes::from(head));
        }
        if self.finished {
            return None;
        }
        let Some(sp) = self.listing.next() else {
            self.finished = true;
            return Some(Bytes::from_static(b"}}"));
        };
        let mut out = Vec::new();
        self.write_part(&sp, &mut out);
        Some(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::ReplicaFilter;

    #[test]
    fn filters_are_read_from_the_query() {
        let f = parse_filter("service=a,b&service=c&state=open&protocol=grpc&x=1").unwrap();
        assert_eq!(
            f,
            ListingFilter {
                services: Some(vec!["a".into(), "b".into(), "c".into()]),
                replicas: ReplicaFilter {
                    state: Some(BreakerState::Open),
                    protocol: Some(Protocol::Grpc),
                },
            }
        );
        assert_eq!(parse_filter("").unwrap(), ListingFilter::default());
        assert!(parse_filter("state=ajar").is_err());
        assert!(parse_filter("protocol=udp").is_err());
    }
}
