//! Protobuf registration decoding (gRPC `Register`): bytes through `prost` into `RegisterRequest`, then
//! `grpc::convert::registration`. No panic, the same guarantees as the JSON edge, and the two agree.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use prost::Message;
use registry_proto::registry::v1 as pb;
use serde_json::{json, Value};

use super::inputs::{
    bytes, grpc_services_like, metadata_like, mostly_valid_address, mostly_valid_service,
};
use super::registration_json::{self, check_registration};
use crate::grpc::convert;
use crate::registry::Registration;

/// Decodes `bytes` as the gRPC edge does and converts what decodes.
fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(req) = pb::RegisterRequest::decode(bytes) {
        convert_and_check(req)?;
    }
    Ok(())
}

fn convert_and_check(req: pb::RegisterRequest) -> Result<Option<Registration>, TestCaseError> {
    match convert::registration(req) {
        Ok(r) => {
            check_registration(&r)?;
            Ok(Some(r))
        }
        Err(status) => {
            prop_assert_eq!(status.code(), tonic::Code::InvalidArgument);
            Ok(None)
        }
    }
}

/// Requests with the real fields, valid often enough to reach every validator; `protocol` is
/// mostly a known value (0 unspecified, 1 http, 2 grpc), sometimes any number.
fn request() -> impl Strategy<Value = pb::RegisterRequest> {
    (
        mostly_valid_service(),
        mostly_valid_address(),
        prop_oneof![4 => 0..3i32, 1 => any::<i32>()],
        grpc_services_like(),
        metadata_like(),
    )
        .prop_map(|(service, address, protocol, grpc_services, metadata)| {
            pb::RegisterRequest {
                service,
                address,
                protocol,
                grpc_services,
                metadata: metadata.into_iter().collect(),
            }
        })
}

/// Byte-level damage to an encoding: overwritten bytes, then a cut, then junk appended.
fn damage() -> impl Strategy<Value = (Vec<(Index, u8)>, Option<Index>, Vec<u8>)> {
    (
        vec((any::<Index>(), any::<u8>()), 0..4),
        proptest::option::weighted(0.3, any::<Index>()),
        prop_oneof![3 => Just(Vec::new()), 1 => vec(any::<u8>(), 1..8)],
    )
}

/// The same registration as a `POST /register` body (`protocol` as the JSON edge spells it).
fn as_json(req: &pb::RegisterRequest) -> Value {
    let mut v = json!({
        "service": req.service,
        "address": req.address,
        "grpc_services": req.grpc_services,
        "metadata": req.metadata,
    });
    match req.protocol {
        0 => {}
        1 => v["protocol"] = "http".into(),
        2 => v["protocol"] = "grpc".into(),
        _ => v["protocol"] = "unknown".into(),
    }
    v
}

proptest! {
    #![proptest_config(super::config())]

    #[test]
    fn proto_registration_on_any_bytes(b in bytes()) {
        check(&b)?;
    }

    #[test]
    fn proto_registration_on_requests(req in request()) {
        let encoded = req.encode_to_vec();
        prop_assert_eq!(pb::RegisterRequest::decode(&encoded[..]).ok(), Some(req.clone()));
        convert_and_check(req)?;
    }

    #[test]
    fn proto_registration_on_damaged_encodings(req in request(), (writes, cut, junk) in damage()) {
        let mut b = req.encode_to_vec();
        if !b.is_empty() {
            for (at, byte) in writes {
                let i = at.index(b.len());
                b[i] = byte;
            }
        }
        if let Some(cut) = cut {
            b.truncate(cut.index(b.len() + 1));
        }
        b.extend(junk);
        check(&b)?;
    }

    /// Both edges accept exactly the same registrations (one set of rules, `Registration::try_new`).
    #[test]
    fn the_two_edges_agree(req in request()) {
        let body = serde_json::to_vec(&as_json(&req)).unwrap();
        let from_json = crate::admin::handlers::parse_registration(&body);
        let from_proto = convert_and_check(req)?;
        match (from_json, from_proto) {
            (Ok(j), Some(p)) => {
                prop_assert_eq!(j.service, p.service);
                prop_assert_eq!(j.address, p.address);
                prop_assert_eq!(j.protocol, p.protocol);
                prop_assert_eq!(j.grpc_services, p.grpc_services);
                prop_assert_eq!(j.metadata, p.metadata);
            }
            (Err(_), None) => {}
            (Ok(j), None) => prop_assert!(false, "JSON accepts, gRPC refuses: {:?}", j),
            (Err(e), Some(p)) => prop_assert!(false, "gRPC accepts {:?}, JSON refuses: {:?}", p, e),
        }
        // Keeps the JSON checks on this input too.
        registration_json::check(&body)?;
    }
}
