//! JSON registration decoding (`POST /register` body): no panic on any bytes or JSON, and whatever
//! it accepts passes every field's validator.

use actix_web::ResponseError;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value};

use super::inputs::{
    bytes, grpc_services_like, json_value, metadata_like, mostly_valid_address,
    mostly_valid_service, text,
};
use crate::admin::handlers::parse_registration;
use crate::error::GatewayError;
use crate::registry::{validate_grpc_service, Protocol, Registration, ReplicaAddress, ServiceName};

/// What both registration edges (JSON and protobuf) guarantee of what they accept.
pub(super) fn check_registration(r: &Registration) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        ServiceName::parse(r.service.as_str()),
        Ok(r.service.clone())
    );
    prop_assert_eq!(
        ReplicaAddress::parse(r.address.as_str()),
        Ok(r.address.clone())
    );
    prop_assert!(r.protocol == Protocol::Grpc || r.grpc_services.is_empty());
    prop_assert!(r.grpc_services.len() <= 64);
    for name in &r.grpc_services {
        prop_assert!(
            validate_grpc_service(name).is_ok(),
            "grpc service {:?}",
            name
        );
    }
    prop_assert!(r.metadata.len() <= 64);
    Ok(())
}

/// What only the JSON edge checks: metadata keys non-empty, keys and values at most 1024 bytes.
/// (The gRPC edge does not; see `registration_proto::the_two_edges_agree`.)
fn check_json_metadata(r: &Registration) -> Result<(), TestCaseError> {
    for (k, v) in &r.metadata {
        prop_assert!(!k.is_empty() && k.len() <= 1024 && v.len() <= 1024);
    }
    Ok(())
}

pub(super) fn check(body: &[u8]) -> Result<Option<Registration>, TestCaseError> {
    match parse_registration(body) {
        Ok(r) => {
            check_registration(&r)?;
            check_json_metadata(&r)?;
            Ok(Some(r))
        }
        Err(e) => {
            prop_assert!(
                matches!(
                    e,
                    GatewayError::MalformedJson(_) | GatewayError::InvalidField { .. }
                ),
                "{:?}",
                e
            );
            // The refusal (which quotes the client's input) must still build into a 400.
            prop_assert_eq!(e.error_response().status().as_u16(), 400);
            Ok(None)
        }
    }
}

/// A field: usually a value of its kind, sometimes absent, sometimes any JSON at all.
fn field(kind: impl Strategy<Value = Value>) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        1 => Just(None),
        8 => kind.prop_map(Some),
        1 => json_value().prop_map(Some),
    ]
}

/// `POST /register` bodies with the real fields, valid often enough to reach the validators.
fn registration_object() -> impl Strategy<Value = Value> {
    let protocol = prop_oneof![
        4 => select(&["http", "grpc", "grpc"][..]).prop_map(Value::from),
        1 => select(&["", "HTTP", "grpc ", "https", "h2c"][..]).prop_map(Value::from),
        1 => text().prop_map(Value::String),
    ];
    (
        field(mostly_valid_service().prop_map(Value::String)),
        field(mostly_valid_address().prop_map(Value::String)),
        field(protocol),
        field(grpc_services_like().prop_map(Value::from)),
        field(
            metadata_like()
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k, v.into())).collect())),
        ),
        option::of((text(), json_value())),
    )
        .prop_map(|(service, address, protocol, grpc, metadata, unknown)| {
            let mut o = Map::new();
            for (k, v) in [
                ("service", service),
                ("address", address),
                ("protocol", protocol),
                ("grpc_services", grpc),
                ("metadata", metadata),
            ] {
                if let Some(v) = v {
                    o.insert(k.to_owned(), v);
                }
            }
            if let Some((k, v)) = unknown {
                o.insert(k, v);
            }
            Value::Object(o)
        })
}

proptest! {
    #![proptest_config(super::config())]

    #[test]
    fn json_registration_on_any_bytes(body in bytes()) {
        check(&body)?;
    }

    #[test]
    fn json_registration_on_any_json(v in json_value()) {
        check(&serde_json::to_vec(&v).unwrap())?;
    }

    #[test]
    fn json_registration_on_registration_objects(v in registration_object(), cut in any::<prop::sample::Index>(), truncate in prop::bool::weighted(0.1)) {
        let mut body = serde_json::to_vec(&v).unwrap();
        if truncate {
            // A body cut short anywhere, as by a dropped connection.
            body.truncate(cut.index(body.len() + 1));
        }
        check(&body)?;
    }
}
