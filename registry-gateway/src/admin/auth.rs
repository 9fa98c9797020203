//! Shared-secret bearer token for the registration API.

use actix_web::http::header;
use actix_web::HttpRequest;

use crate::error::GatewayError;

/// The configured registration token.
#[derive(Clone)]
pub struct RegistrationToken(String);

impl std::fmt::Debug for RegistrationToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegistrationToken(<redacted>)")
    }
}

impl RegistrationToken {
    /// Wraps the secret.
    pub fn new(token: impl Into<String>) -> Self {
        RegistrationToken(token.into())
    }

    /// Checks `Authorization: Bearer <token>` in time independent of where the strings differ.
    pub(crate) fn check(&self, req: &HttpRequest) -> Result<(), GatewayError> {
        self.check_value(
            req.headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        )
    }

    /// Checks the value of an `authorization` header or gRPC metadata entry.
    pub fn check_value(&self, authorization: Option<&str>) -> Result<(), GatewayError> {
        let given = authorization
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(GatewayError::Unauthorized)?;
        if constant_time_eq(given.as_bytes(), self.0.as_bytes()) {
            Ok(())
        } else {
            Err(GatewayError::Unauthorized)
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_whole_strings() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
