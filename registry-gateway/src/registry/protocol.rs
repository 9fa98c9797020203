//! What a replica speaks, and the gRPC service names it serves.

use std::fmt;

/// The protocol a replica is proxied with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// HTTP/1.1, through the HTTP listener.
    #[default]
    Http,
    /// gRPC over h2c, through the gRPC listener.
    Grpc,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
        })
    }
}

/// Why a gRPC service name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a gRPC service name such as demo.v1.Echo (letters, digits, '_' and '.', at most 200)")]
pub struct InvalidGrpcService(pub String);

/// Validates a full gRPC service name (`package.Service`).
pub fn validate_grpc_service(name: &str) -> Result<(), InvalidGrpcService> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(InvalidGrpcService(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_service_names() {
        for ok in ["demo.v1.Echo", "Echo", "grpc.health.v1.Health", "a_b.C9"] {
            assert!(validate_grpc_service(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".a", "a.", "a..b", "a/b", "a b", &"x".repeat(201)] {
            assert!(validate_grpc_service(bad).is_err(), "{bad}");
        }
    }
}
