//! Service names: DNS labels that do not collide with the gateway's own paths.

use std::fmt;
use std::sync::Arc;

/// Path segments the gateway uses itself; no service may take them.
///
/// `ui` is the dashboard (`GET /ui`); `events` would be shadowed by the event stream
/// (`GET /registry/events` answers before `GET /registry/{service}`).
pub const RESERVED_NAMES: &[&str] = &[
    "register", "registry", "metrics", "healthz", "readyz", "v1", "ui", "events",
];

/// A validated service name: `[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?`, not reserved.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceName(Arc<str>);

/// Why a string is not a service name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    /// Empty or longer than 63 characters.
    #[error("service name must be 1 to 63 characters long")]
    Length,
    /// Has a character outside `a-z`, `0-9` and `-`, or starts or ends with `-`.
    #[error("service name must be a DNS label: lowercase letters, digits and '-', not starting or ending with '-'")]
    Syntax,
    /// One of [`RESERVED_NAMES`].
    #[error("service name '{0}' is reserved by the gateway")]
    Reserved(String),
}

impl ServiceName {
    /// The name text, shared (no copy).
    pub(crate) fn shared(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }

    /// Validates `s` as a service name.
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        if s.is_empty() || s.len() > 63 {
            return Err(InvalidName::Length);
        }
        let bytes = s.as_bytes();
        let ok = bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        if !ok || bytes[0] == b'-' || bytes[bytes.len() - 1] == b'-' {
            return Err(InvalidName::Syntax);
        }
        if RESERVED_NAMES.contains(&s) {
            return Err(InvalidName::Reserved(s.to_owned()));
        }
        Ok(ServiceName(Arc::from(s)))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for ServiceName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for ok in ["a", "orders", "user-api", "v2", "0", &"a".repeat(63)] {
            assert_eq!(ServiceName::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_everything_else() {
        assert_eq!(ServiceName::parse(""), Err(InvalidName::Length));
        assert_eq!(
            ServiceName::parse(&"a".repeat(64)),
            Err(InvalidName::Length)
        );
        for bad in ["Orders", "-a", "a-", "a_b", "a.b", "a/b", "é", "a b"] {
            assert_eq!(ServiceName::parse(bad), Err(InvalidName::Syntax), "{bad}");
        }
        for r in RESERVED_NAMES {
            assert_eq!(
                ServiceName::parse(r),
                Err(InvalidName::Reserved(r.to_string()))
            );
        }
    }
}
