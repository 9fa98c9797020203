//! Shared-secret bearer tokens for the registration API (writes) and the registry reads.

use actix_web::http::header;
use actix_web::HttpRequest;

use crate::error::GatewayError;

/// A configured bearer token.
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

    /// Checks the value of an `authorization` header or gRPC metadata entry: the `Bearer` scheme in any
    /// case, one or more spaces, then the token, compared in time independent of where the strings differ.
    pub fn check_value(&self, authorization: Option<&str>) -> Result<(), GatewayError> {
        if self.matches(authorization) {
            Ok(())
        } else {
            Err(GatewayError::Unauthorized)
        }
    }

    fn matches(&self, authorization: Option<&str>) -> bool {
        authorization
            .and_then(bearer)
            .is_some_and(|given| constant_time_eq(given.as_bytes(), self.0.as_bytes()))
    }
}

/// The `authorization` header of `req`, when it is text.
pub(crate) fn authorization(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// The credentials of a `Bearer` authorization value (RFC 6750 §2.1; the scheme is case-insensitive,
/// RFC 9110 §11.1): `None` for another scheme, a missing space, or no token.
fn bearer(value: &str) -> Option<&str> {
    const SCHEME: &str = "bearer";
    let scheme = value.get(..SCHEME.len())?;
    let rest = &value[SCHEME.len()..];
    if !scheme.eq_ignore_ascii_case(SCHEME) || !rest.starts_with(' ') {
        return None;
    }
    let token = rest.trim_start_matches(' ').trim_end();
    (!token.is_empty()).then_some(token)
}

/// Which token each part of the API needs; shared by the HTTP and the gRPC edges.
///
/// Writes (register, heartbeat, deregister) need the registration token when one is set. Reads of the
/// registry (`GET /registry*`, gRPC `ListServices`, `StreamServices` and `Watch`) are open while no
/// token is configured at all; once either token is set they need the read token or the registration
/// token (either one that is set). A `read_token` without a `registration_token` therefore still
/// protects reads: a secret that was configured is never silently ignored.
#[derive(Debug, Clone, Default)]
pub struct ApiTokens {
    /// `auth.registration_token`.
    pub registration: Option<RegistrationToken>,
    /// `auth.read_token`.
    pub read: Option<RegistrationToken>,
}

impl ApiTokens {
    /// The tokens from `auth.registration_token` and `auth.read_token`.
    pub fn new(registration: Option<String>, read: Option<String>) -> Self {
        ApiTokens {
            registration: registration.map(RegistrationToken::new),
            read: read.map(RegistrationToken::new),
        }
    }

    /// Whether registration is open to anyone (no registration token).
    pub fn registration_is_open(&self) -> bool {
        self.registration.is_none()
    }

    /// Checks an `authorization` value for a write: register, heartbeat, deregister.
    pub fn check_write(&self, authorization: Option<&str>) -> Result<(), GatewayError> {
        match &self.registration {
            None => Ok(()),
            Some(t) => t.check_value(authorization),
        }
    }

    /// Checks an `authorization` value for a read of the registry.
    pub fn check_read(&self, authorization: Option<&str>) -> Result<(), GatewayError> {
        if self.registration.is_none() && self.read.is_none() {
            return Ok(());
        }
        // Both compared every time: how long the check takes does not tell which one matched.
        let read = self.read.as_ref().is_some_and(|t| t.matches(authorization));
        let write = self
            .registration
            .as_ref()
            .is_some_and(|t| t.matches(authorization));
        if read | write {
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

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_takes_one_or_more_spaces() {
        for ok in [
            "Bearer s3cret",
            "bearer s3cret",
            "BEARER s3cret",
            "bEaReR s3cret",
            "Bearer   s3cret",
            "Bearer s3cret ",
        ] {
            assert_eq!(bearer(ok), Some("s3cret"), "{ok:?}");
        }
        for bad in [
            "",
            "Bearer",
            "Bearer ",
            "Bearer    ",
            "Bearers3cret",
            "Bearer\ts3cret",
            "Basic s3cret",
            "s3cret",
            " Bearer s3cret",
            "Bearé s3cret",
        ] {
            assert_eq!(bearer(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn check_value_wants_the_exact_token() {
        let t = RegistrationToken::new("s3cret");
        assert!(t.check_value(Some("BEARER  s3cret")).is_ok());
        for bad in [
            None,
            Some("Bearer wrong"),
            Some("Bearer s3cret2"),
            Some("Bearer s3cre"),
            Some("Basic s3cret"),
        ] {
            assert!(
                matches!(t.check_value(bad), Err(GatewayError::Unauthorized)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn reads_are_open_only_while_no_token_is_configured() {
        let open = ApiTokens::default();
        assert!(open.check_read(None).is_ok());
        assert!(open.check_write(None).is_ok());
        assert!(open.registration_is_open());

        // Registration token only: it guards writes and reads.
        let reg = ApiTokens::new(Some("w".into()), None);
        assert!(reg.check_write(Some("Bearer w")).is_ok());
        assert!(reg.check_read(Some("Bearer w")).is_ok());
        assert!(reg.check_read(None).is_err());
        assert!(reg.check_read(Some("Bearer r")).is_err());
        assert!(reg.check_write(None).is_err());

        // Both: reads take either token, writes only the registration token.
        let both = ApiTokens::new(Some("w".into()), Some("r".into()));
        assert!(both.check_read(Some("Bearer r")).is_ok());
        assert!(both.check_read(Some("bearer w")).is_ok());
        assert!(both.check_read(Some("Bearer x")).is_err());
        assert!(both.check_read(None).is_err());
        assert!(both.check_write(Some("Bearer r")).is_err());
        assert!(both.check_write(Some("Bearer w")).is_ok());

        // Read token only: reads are protected, registration stays open.
        let read = ApiTokens::new(None, Some("r".into()));
        assert!(read.registration_is_open());
        assert!(read.check_write(None).is_ok());
        assert!(read.check_read(Some("Bearer r")).is_ok());
        assert!(read.check_read(None).is_err());
        assert!(read.check_read(Some("Bearer w")).is_err());
    }
}
