//! The rules every registration obeys, whichever edge it came through (JSON, gRPC, a peer via Redis):
//! gRPC services only on gRPC replicas, valid names, bounded metadata.

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
    /// `grpc_services` or `metadata`.
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

impl Registration {
    /// A registration from already parsed name and address, checking the remaining rules.
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

    #[test]
    fn every_edge_gets_the_same_rules() {
        assert!(reg(Protocol::Http, &[], &[("zone", "a")]).is_ok());
        assert!(reg(Protocol::Grpc, &["demo.v1.Echo"], &[]).is_ok());
        assert_eq!(
            reg(Protocol::Http, &["demo.v1.Echo"], &[])
                .unwrap_err()
                .field,
            "grpc_services"
        );
        assert_eq!(
            reg(Protocol::Grpc, &["../x"], &[]).unwrap_err().field,
            "grpc_services"
        );
        assert_eq!(
            reg(Protocol::Http, &[], &[("", "v")]).unwrap_err().field,
            "metadata"
        );
        let long = "v".repeat(MAX_METADATA_LEN + 1);
        assert_eq!(
            reg(Protocol::Http, &[], &[("k", &long)]).unwrap_err().field,
            "metadata"
        );
        let many: Vec<(String, String)> = (0..=MAX_METADATA_ENTRIES)
            .map(|i| (i.to_string(), String::new()))
            .collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            reg(Protocol::Http, &[], &many).unwrap_err().field,
            "metadata"
        );
    }
}
