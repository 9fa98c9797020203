//! Redis decoding (`store::message`): the pub/sub payload (`Message`, JSON) and the replica hash
//! (`StoredReplica::from_fields`), then `record()`. No panic on anything a peer or Redis could hand
//! us; what `record()` lets in is valid; every message and hash built from valid fields round-trips.

use std::collections::BTreeMap;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::inputs::{
    bytes, json_value, metadata_like, mostly_valid_address, text, valid_address,
    valid_grpc_service, valid_service,
};
use crate::registry::{
    Protocol, Registration, ReplicaAddress, ServiceName, MAX_METADATA_ENTRIES, MAX_METADATA_LEN,
};
use crate::store::message::{Event, Message, StoredReplica};

fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

/// A stored replica with any text in its text fields; gRPC names valid (never empty, never with a
/// comma), as every writer's are: the hash stores them comma-joined.
fn stored_replica() -> impl Strategy<Value = StoredReplica> {
    (
        uuid(),
        text(),
        text(),
        text(),
        vec(valid_grpc_service(), 0..3),
        btree_map(text(), text(), 0..3),
    )
        .prop_map(
            |(id, service, address, protocol, grpc_services, metadata)| StoredReplica {
                id,
                service,
                address,
                protocol,
                grpc_services,
                metadata,
            },
        )
}

/// A stored replica as a gateway writes it: every field valid.
fn valid_stored_replica() -> impl Strategy<Value = StoredReplica> {
    (
        uuid(),
        valid_service(),
        valid_address(),
        prop_oneof![
            Just((String::from("http"), Vec::new())),
            vec(valid_grpc_service(), 0..3).prop_map(|g| (String::from("grpc"), g)),
        ],
        metadata_like().prop_filter("metadata the registration rules admit", |m| {
            m.len() <= MAX_METADATA_ENTRIES
                && m.iter().all(|(k, v)| {
                    !k.is_empty() && k.len() <= MAX_METADATA_LEN && v.len() <= MAX_METADATA_LEN
                })
        }),
    )
        .prop_map(
            |(id, service, address, (protocol, grpc_services), metadata)| StoredReplica {
                id,
                service,
                address,
                protocol,
                grpc_services,
                metadata,
            },
        )
}

fn event(replica: impl Strategy<Value = StoredReplica>) -> impl Strategy<Value = Event> {
    prop_oneof![
        (replica, any::<u64>()).prop_map(|(replica, ttl_ms)| Event::Registered { replica, ttl_ms }),
        (text(), uuid()).prop_map(|(service, id)| Event::Renewed { service, id }),
        (text(), uuid(), any::<bool>()).prop_map(|(service, id, failures)| Event::Removed {
            service,
            id,
            failures
        }),
        (text(), any::<u64>()).prop_map(|(address, open_ms)| Event::Opened { address, open_ms }),
        text().prop_map(|address| Event::Closed { address }),
    ]
}

fn message(replica: impl Strategy<Value = StoredReplica>) -> impl Strategy<Value = Message> {
    (uuid(), event(replica)).prop_map(|(gw, event)| Message { gw, event })
}

/// JSON objects shaped like messages: a real or odd `type`, `gw` and each field present or not,
/// of the right type or any JSON.
fn message_like_object() -> impl Strategy<Value = Value> {
    let types = select(
        &[
            "registered",
            "registered",
            "renewed",
            "removed",
            "opened",
            "closed",
            "Registered",
            "",
            "other",
        ][..],
    );
    let value_for = |kind: &'static str| -> BoxedStrategy<Value> {
        match kind {
            "gw" | "id" => prop_oneof![
                3 => uuid().prop_map(|u| Value::from(u.to_string())),
                1 => json_value(),
            ]
            .boxed(),
            "ttl_ms" | "open_ms" => prop_oneof![
                3 => any::<u64>().prop_map(Value::from),
                1 => json_value(),
            ]
            .boxed(),
            "failures" => {
                prop_oneof![3 => any::<bool>().prop_map(Value::from), 1 => json_value()].boxed()
            }
            "replica" => prop_oneof![
                3 => valid_stored_replica().prop_map(|r| serde_json::to_value(r).unwrap()),
                1 => stored_replica().prop_map(|r| serde_json::to_value(r).unwrap()),
                1 => json_value(),
            ]
            .boxed(),
            "address" => mostly_valid_address().prop_map(Value::from).boxed(),
            _ => prop_oneof![text().prop_map(Value::from), json_value()].boxed(),
        }
    };
    const FIELDS: [&str; 9] = [
        "gw", "id", "ttl_ms", "open_ms", "failures", "replica", "address", "service", "extra",
    ];
    let fields: Vec<_> = FIELDS
        .iter()
        .map(|&k| {
            // `gw` is needed by every message: mostly present, so that the rest gets read.
            let present = if k == "gw" { 0.9 } else { 0.6 };
            proptest::option::weighted(present, value_for(k)).prop_map(move |v| (k, v))
        })
        .collect();
    (types, fields).prop_map(|(ty, fields)| {
        let mut o: Map<String, Value> = fields
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_owned(), v?)))
            .collect();
        o.insert("type".into(), ty.into());
        Value::Object(o)
    })
}

/// Applies what `RedisStore::apply` would read out of a decoded message, minus the registry.
fn check_message(payload: &str) -> Result<(), TestCaseError> {
    let Ok(msg) = serde_json::from_str::<Message>(payload) else {
        return Ok(());
    };
    match msg.event {
        Event::Registered { replica, .. } => check_record(&replica)?,
        Event::Opened { address, .. } | Event::Closed { address } => {
            let _ = ReplicaAddress::parse(&address);
        }
        Event::Renewed { .. } | Event::Removed { .. } => {}
    }
    Ok(())
}

/// `record()` admits what the registration rules admit (the same as a client registering), and nothing
/// else.
fn check_record(r: &StoredReplica) -> Result<(), TestCaseError> {
    let protocol = match r.protocol.as_str() {
        "http" => Some(Protocol::Http),
        "grpc" => Some(Protocol::Grpc),
        _ => None,
    };
    let valid = match (
        ServiceName::parse(&r.service),
        ReplicaAddress::parse(&r.address),
        protocol,
    ) {
        (Ok(s), Ok(a), Some(p)) => {
            Registration::validated(s, a, p, r.grpc_services.clone(), r.metadata.clone()).is_ok()
        }
        _ => false,
    };
    let Some(rec) = r.record() else {
        prop_assert!(!valid, "valid but refused: {:?}", r);
        return Ok(());
    };
    prop_assert!(valid, "invalid but admitted: {:?}", r);
    prop_assert_eq!(rec.id, r.id);
    prop_assert_eq!(
        ServiceName::parse(rec.service.as_str()),
        Ok(rec.service.clone())
    );
    prop_assert_eq!(
        ReplicaAddress::parse(rec.address.as_str()),
        Ok(rec.address.clone())
    );
    Ok(())
}

fn hash_of(r: &StoredReplica) -> BTreeMap<String, String> {
    r.fields()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

/// Hashes as Redis could return them: the real keys with real, odd or missing values, plus junk keys.
fn hash_like() -> impl Strategy<Value = BTreeMap<String, String>> {
    let key = prop_oneof![
        4 => select(&["id", "service", "address", "protocol", "grpc_services", "metadata"][..])
            .prop_map(str::to_owned),
        1 => text(),
    ];
    let value = prop_oneof![
        uuid().prop_map(|u| u.to_string()),
        text(),
        json_value().prop_map(|v| v.to_string()),
        "[a-z.,]{0,12}",
    ];
    prop_oneof![
        valid_stored_replica().prop_map(|r| hash_of(&r)),
        (
            valid_stored_replica(),
            btree_map(key.clone(), value.clone(), 0..3)
        )
            .prop_map(|(r, overrides)| {
                let mut h = hash_of(&r);
                h.extend(overrides);
                h
            }),
        btree_map(key, value, 0..8),
    ]
}

proptest! {
    #![proptest_config(super::config())]

    #[test]
    fn redis_message_on_any_bytes(b in bytes()) {
        // The subscriber reads payloads as strings; non-UTF-8 bytes never reach the decoder.
        if let Ok(s) = std::str::from_utf8(&b) {
            check_message(s)?;
        }
    }

    #[test]
    fn redis_message_on_any_json(v in json_value()) {
        check_message(&v.to_string())?;
    }

    #[test]
    fn redis_message_on_message_like_objects(v in message_like_object()) {
        check_message(&v.to_string())?;
    }

    #[test]
    fn redis_message_on_damaged_messages(m in message(stored_replica()), cut in any::<Index>(), junk in text()) {
        // A message cut short and followed by anything: decoding must refuse or read it, not panic.
        let json = serde_json::to_string(&m).unwrap();
        let mut at = cut.index(json.len() + 1);
        while !json.is_char_boundary(at) {
            at -= 1;
        }
        check_message(&format!("{}{junk}", &json[..at]))?;
    }

    #[test]
    fn redis_messages_round_trip(m in message(stored_replica())) {
        let json = serde_json::to_string(&m).unwrap();
        prop_assert_eq!(serde_json::from_str::<Message>(&json).ok(), Some(m), "{}", json);
    }

    #[test]
    fn redis_hash_on_any_fields(h in hash_like()) {
        if let Some(r) = StoredReplica::from_fields(&h) {
            check_record(&r)?;
        }
    }

    #[test]
    fn redis_hashes_round_trip(r in stored_replica()) {
        prop_assert_eq!(StoredReplica::from_fields(&hash_of(&r)), Some(r));
    }

    #[test]
    fn valid_replicas_round_trip_through_the_registry_types(r in valid_stored_replica()) {
        // Written by one gateway (record → hash or message), read by another (→ record): unchanged.
        let rec = r.record();
        prop_assert!(rec.is_some(), "refused: {:?}", r);
        prop_assert_eq!(StoredReplica::from(&rec.unwrap()), r.clone());
        prop_assert_eq!(StoredReplica::from_fields(&hash_of(&r)), Some(r));
    }
}
