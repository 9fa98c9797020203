//! The rules every registration obeys, whichever edge it came through (JSON, gRPC, a peer via Redis):
//! a valid service name and replica address, gRPC services only on gRPC replicas, valid names, bounded
//! metadata. The edges only decode their wire and map [`InvalidRegistration`] to it (400 over HTTP,
//! `INVALID_ARGUMENT` over gRPC).

use super::{validate_grpc_service, Metadata, Protocol, Registration, ReplicaAddress, ServiceName};

/// Most gRPC services one replica may announce.
pub const MAX_GRPC_SERVICES: usize = 64;
/// Most metadata entries.
pub const MAX_METADATA_ENTRIES: usize = 64;
/// Longest metadata key or value, in bytes.
pub const MAX_METADATA_LEN: usize = 1024;

/// A registration that breaks a rule, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidRegistration {
    /// `service`, `address`, `grpc_services` or `metadata`.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> InvalidRegistration {
    InvalidRegistration {
        field,
        message: message.into(),
    }
}

#[cfg(test)]
impl Registration {
    /// Tests: an HTTP replica of `service` at `http://127.0.0.1:{port}`, without metadata.
    pub(crate) fn local_http(service: &str, port: u16) -> Registration {
        Registration {
            service: ServiceName::parse(service).expect("a valid test service name"),
            address: ReplicaAddress::parse(&format!("http://127.0.0.1:{port}"))
                .expect("a loopback address"),
            protocol: Protocol::Http,
            grpc_services: Vec::new(),
            metadata: Metadata::new(),
        }
    }
}

impl Registration {
    /// A registration as a client sent it (the admin API's JSON, the gRPC `Register` call): the
    /// service name and replica address as text, checked with every other rule.
    pub fn try_new(
        service: &str,
        address: &str,
        protocol: Protocol,
        grpc_services: Vec<String>,
        metadata: Metadata,
    ) -> Result<Registration, InvalidRegistration> {
        let service = ServiceName::parse(service).map_err(|e| invalid("service", e.to_string()))?;
        let address =
            ReplicaAddress::parse(address).map_err(|e| invalid("address", e.to_string()))?;
        Registration::validated(service, address, protocol, grpc_services, metadata)
    }

    /// A registration from already parsed name and address (a peer's, read from the store), checking
    /// the remaining rules.
    pub fn validated(
        service: ServiceName,
        address: ReplicaAddress,
        protocol: Protocol,
        grpc_services: Vec<String>,
        metadata: Metadata,
    ) -> Result<Registration, InvalidRegistration> {
        check_grpc_services(protocol, &grpc_services)?;
        check_metadata(&metadata)?;
        Ok(Registration {
            service,
            address,
            protocol,
            grpc_services,
            metadata,
        })
    }
}

/// gRPC service names: only for gRPC replicas, each valid, at most [`MAX_GRPC_SERVICES`].
fn check_grpc_services(protocol: Protocol, names: &[String]) -> Result<(), InvalidRegistration> {
    let field = "grpc_services";
    if protocol == Protocol::Http && !names.is_empty() {
        return Err(invalid(
            field,
            "only gRPC replicas serve gRPC services: set protocol \"grpc\"",
        ));
    }
    if names.len() > MAX_GRPC_SERVICES {
        return Err(invalid(
            field,
            format!("at most {MAX_GRPC_SERVICES} entries"),
        ));
    }
    for n in names {
        validate_grpc_service(n).map_err(|e| invalid(field, e.to_string()))?;
    }
    Ok(())
}

/// Metadata: at most [`MAX_METADATA_ENTRIES`], keys non-empty, keys and values at most
/// [`MAX_METADATA_LEN`] bytes.
fn check_metadata(metadata: &Metadata) -> Result<(), InvalidRegistration> {
    if metadata.len() > MAX_METADATA_ENTRIES {
        return Err(invalid(
            "metadata",
            format!("at most {MAX_METADATA_ENTRIES} entries"),
        ));
    }
    if metadata
        .iter()
        .any(|(k, v)| k.is_empty() || k.len() > MAX_METADATA_LEN || v.len() > MAX_METADATA_LEN)
    {
        return Err(invalid(
            "metadata",
            format!("keys must be non-empty; keys and values at most {MAX_METADATA_LEN} bytes"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(
        protocol: Protocol,
        grpc: &[&str],
        meta: &[(&str, &str)],
    ) -> Result<Registration, InvalidRegistration> {
        Registration::validated(
            ServiceName::parse("orders").unwrap(),
            ReplicaAddress::parse("http://127.0.0.1:9001").unwrap(),
            protocol,
            grpc.iter().map(|s| s.to_string()).collect(),
            meta.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn from_text(service: &str, address: &str) -> Result<Registration, InvalidRegistration> {
        Registration::try_new(
            service,
            address,
            Protocol::Http,
            Vec::new(),
            Metadata::new(),
        )
    }

    #[test]
    fn a_service_name_must_be_valid() {
        assert!(from_text("orders", "http://127.0.0.1:9001").is_ok());
        for bad in ["", "Orders", "a b", "../x"] {
            assert_eq!(
                from_text(bad, "http://127.0.0.1:9001").unwrap_err().field,
                "service",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_replica_address_must_be_valid() {
        for bad in [
            "",
            "127.0.0.1:9001",
            "ftp://127.0.0.1:1",
            "http://127.0.0.1",
        ] {
            assert_eq!(
                from_text("orders", bad).unwrap_err().field,
                "address",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_service_is_checked_before_the_address() {
        assert_eq!(from_text("", "").unwrap_err().field, "service");
    }

    #[test]
    fn grpc_services_only_on_grpc_replicas() {
        assert!(reg(Protocol::Grpc, &["demo.v1.Echo"], &[]).is_ok());
        assert_eq!(
            reg(Protocol::Http, &["demo.v1.Echo"], &[])
                .unwrap_err()
                .field,
            "grpc_services"
        );
    }

    #[test]
    fn grpc_services_are_valid_and_bounded() {
        assert_eq!(
            reg(Protocol::Grpc, &["../x"], &[]).unwrap_err().field,
            "grpc_services"
        );
        let names: Vec<String> = (0..=MAX_GRPC_SERVICES)
            .map(|i| format!("demo.v1.S{i}"))
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assert!(reg(Protocol::Grpc, &names[..MAX_GRPC_SERVICES], &[]).is_ok());
        assert_eq!(
            reg(Protocol::Grpc, &names, &[]).unwrap_err().field,
            "grpc_services"
        );
    }

    #[test]
    fn metadata_values_are_at_most_1024_bytes() {
        let at_limit = "v".repeat(MAX_METADATA_LEN);
        assert!(reg(Protocol::Http, &[], &[("k", &at_limit)]).is_ok());
        // the value the gRPC edge used to accept
        let five_thousand = "v".repeat(5000);
        assert_eq!(
            reg(Protocol::Grpc, &[], &[("k", &five_thousand)])
                .unwrap_err()
                .field,
            "metadata"
        );
        let long_key = "k".repeat(MAX_METADATA_LEN + 1);
        assert_eq!(
            reg(Protocol::Http, &[], &[(&long_key, "v")])
                .unwrap_err()
                .field,
            "metadata"
        );
    }

    #[test]
    fn metadata_has_at_most_64_entries_and_non_empty_keys() {
        assert!(reg(Protocol::Http, &[], &[("zone", "a")]).is_ok());
        assert_eq!(
            reg(Protocol::Http, &[], &[("", "v")]).unwrap_err().field,
            "metadata"
        );
        let many: Vec<(String, String)> = (0..=MAX_METADATA_ENTRIES)
            .map(|i| (i.to_string(), String::new()))
            .collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert!(reg(Protocol::Http, &[], &many[..MAX_METADATA_ENTRIES]).is_ok());
        assert_eq!(
            reg(Protocol::Http, &[], &many).unwrap_err().field,
            "metadata"
        );
    }
}
