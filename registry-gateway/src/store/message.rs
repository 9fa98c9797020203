//! What gateways tell each other on the Redis channel, and how a replica is stored in a Redis hash.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::registry::{
    Protocol, Registration, RemovedFor, ReplicaAddress, ReplicaRecord, ServiceName,
};

/// One message on the `rgw:events` channel. `gw` is the sender; a gateway ignores its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Message {
    pub(crate) gw: Uuid,
    #[serde(flatten)]
    pub(crate) event: Event,
}

impl Message {
    /// How every message `gw` sends begins (`gw` is serialised first), so that a gateway can skip its own
    /// messages without parsing them.
    pub(crate) fn prefix_of(gw: Uuid) -> String {
        format!("{{\"gw\":\"{gw}\"")
    }
}

/// The events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Event {
    /// A replica registered (the hash is in Redis; `ttl_ms` is its lease left).
    Registered { replica: StoredReplica, ttl_ms: u64 },
    /// A lease was renewed.
    Renewed { service: String, id: Uuid },
    /// A replica left; `failures` (evicted for failures, else deregistered) puts it on probation.
    Removed {
        service: String,
        id: Uuid,
        failures: bool,
    },
    /// A breaker opened for `open_ms`.
    Opened { address: String, open_ms: u64 },
    /// A breaker closed.
    Closed { address: String },
}

impl Event {
    /// The message that replica `id` of `service` left here for `why` (a boolean on the wire).
    pub(crate) fn removed(service: &ServiceName, id: Uuid, why: RemovedFor) -> Self {
        Event::Removed {
            service: service.to_string(),
            id,
            failures: why == RemovedFor::Failures,
        }
    }

    /// Why a replica left, from the `failures` of an [`Event::Removed`].
    pub(crate) fn removed_for(failures: bool) -> RemovedFor {
        if failures {
            RemovedFor::Failures
        } else {
            RemovedFor::Deregistration
        }
    }
}

/// A replica as stored in its Redis hash (every field a string, readable with `redis-cli HGETALL`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredReplica {
    pub(crate) id: Uuid,
    pub(crate) service: String,
    pub(crate) address: String,
    pub(crate) protocol: String,
    #[serde(default)]
    pub(crate) grpc_services: Vec<String>,
    #[serde(default)]
    pub(crate) metadata: BTreeMap<String, String>,
}

impl From<&ReplicaRecord> for StoredReplica {
    fn from(r: &ReplicaRecord) -> Self {
        StoredReplica {
            id: r.id,
            service: r.service.to_string(),
            address: r.address.to_string(),
            protocol: r.protocol.to_string(),
            grpc_services: r.grpc_services.clone(),
            metadata: r.metadata.clone(),
        }
    }
}

impl StoredReplica {
    /// Validated back into the registry's types (what another gateway wrote is checked like any input).
    pub(crate) fn record(&self) -> Option<ReplicaRecord> {
        // What a peer wrote obeys the same rules as what a client registers: nothing in Redis can
        // put a replica into the registry that the registration API would refuse.
        let protocol = match self.protocol.as_str() {
            "grpc" => Protocol::Grpc,
            "http" => Protocol::Http,
            _ => return None,
        };
        let reg = Registration::validated(
            ServiceName::parse(&self.service).ok()?,
            ReplicaAddress::parse(&self.address).ok()?,
            protocol,
            self.grpc_services.clone(),
            self.metadata.clone(),
        )
        .ok()?;
        Some(ReplicaRecord {
            id: self.id,
            service: reg.service,
            address: reg.address,
            protocol: reg.protocol,
            grpc_services: reg.grpc_services,
            metadata: reg.metadata,
        })
    }

    /// The hash fields.
    pub(crate) fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("id", self.id.to_string()),
            ("service", self.service.clone()),
            ("address", self.address.clone()),
            ("protocol", self.protocol.clone()),
            ("grpc_services", self.grpc_services.join(",")),
            (
                "metadata",
                serde_json::to_string(&self.metadata).unwrap_or_else(|_| "{}".into()),
            ),
        ]
    }

    /// From the hash fields.
    pub(crate) fn from_fields(h: &BTreeMap<String, String>) -> Option<Self> {
        Some(StoredReplica {
            id: h.get("id")?.parse().ok()?,
            service: h.get("service")?.clone(),
            address: h.get("address")?.clone(),
            protocol: h.get("protocol").cloned().unwrap_or_else(|| "http".into()),
            grpc_services: h
                .get("grpc_services")
                .map(|s| {
                    s.split(',')
                        .filter(|x| !x.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            metadata: h
                .get("metadata")
                .and_then(|m| serde_json::from_str(m).ok())
                .unwrap_or_default(),
        })
    }
}

/// Redis keys. Every key starts with `rgw:`; see the README for the layout.
pub(crate) mod keys {
    /// Pub/sub channel.
    pub(crate) const CHANNEL: &str = "rgw:events";
    /// Pattern of every replica hash.
    pub(crate) const REPLICA_PATTERN: &str = "rgw:replica:*";

    /// `rgw:replica:{service}:{id}`: hash, expires with the lease.
    pub(crate) fn replica(service: &str, id: &uuid::Uuid) -> String {
        format!("rgw:replica:{service}:{id}")
    }

    /// `rgw:fails:{address}`: consecutive failures counted by every gateway.
    pub(crate) fn fails(address: &str) -> String {
        format!("rgw:fails:{address}")
    }

    /// `rgw:open:{address}`: present while some gateway has the breaker open.
    pub(crate) fn open(address: &str) -> String {
        format!("rgw:open:{address}")
    }

    /// `rgw:probe:{address}`: hash, gateway id → half-open probe slots it holds.
    pub(crate) fn probe(address: &str) -> String {
        format!("rgw:probe:{address}")
    }

    /// `rgw:probeok:{address}`: half-open probes that succeeded, on every gateway together.
    pub(crate) fn probe_ok(address: &str) -> String {
        format!("rgw:probeok:{address}")
    }

    /// `rgw:window:{address}`: hash `requests`, `failures` of the failure-ratio window, every gateway's.
    pub(crate) fn window(address: &str) -> String {
        format!("rgw:window:{address}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateway_knows_its_own_messages_by_their_first_bytes() {
        let (me, peer) = (Uuid::new_v4(), Uuid::new_v4());
        let event = Event::Renewed {
            service: "orders".into(),
            id: Uuid::new_v4(),
        };
        let mine = serde_json::to_string(&Message {
            gw: me,
            event: event.clone(),
        })
        .unwrap();
        let theirs = serde_json::to_string(&Message { gw: peer, event }).unwrap();
        assert!(mine.starts_with(&Message::prefix_of(me)), "{mine}");
        assert!(!theirs.starts_with(&Message::prefix_of(me)), "{theirs}");
    }

    #[test]
    fn messages_and_hashes_round_trip() {
        let r = StoredReplica {
            id: Uuid::new_v4(),
            service: "echo".into(),
            address: "http://127.0.0.1:9101".into(),
            protocol: "grpc".into(),
            grpc_services: vec!["demo.v1.Echo".into(), "demo.v1.Other".into()],
            metadata: BTreeMap::from([("v".into(), "1".into())]),
        };
        let fields: BTreeMap<String, String> = r
            .fields()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(StoredReplica::from_fields(&fields).unwrap(), r);
        let rec = r.record().unwrap();
        assert_eq!(rec.protocol, Protocol::Grpc);
        let m = Message {
            gw: Uuid::new_v4(),
            event: Event::Registered {
                replica: r.clone(),
                ttl_ms: 15_000,
            },
        };
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains("\"type\":\"registered\""), "{json}");
        assert_eq!(serde_json::from_str::<Message>(&json).unwrap(), m);
        // what another gateway wrote is validated like any input
        let mut bad = r;
        bad.address = "ftp://x:1".into();
        assert!(bad.record().is_none());
    }
}
