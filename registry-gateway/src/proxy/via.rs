//! Loop protection: this gateway's `Via` entry, and the hop rules for requests that already carry some.

use std::fmt;

/// This gateway's name in `Via` (`1.1 <id>`): a token of letters, digits, `.`, `_` and `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceId(String);

impl InstanceId {
    /// Validates a configured id.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 64 {
            return Err("must be 1 to 64 characters".into());
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err("may contain only letters, digits, '.', '_' and '-'".into());
        }
        Ok(InstanceId(s.to_owned()))
    }

    /// A fresh random id, `rgw-` and 12 hex digits.
    pub fn random() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        InstanceId(format!("rgw-{}", &id[..12]))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `Via` entry this gateway adds: `1.1 <id>`.
    pub fn via_entry(&self) -> String {
        format!("1.1 {}", self.0)
    }

    /// The `Via` entry for a request the gateway received over HTTP/2 (RFC 9110 §7.6.3 names the
    /// protocol received): `2 <id>`.
    pub fn via_entry_h2(&self) -> String {
        format!("2 {}", self.0)
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a request is refused with 508.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HopError {
    /// The request already went through this gateway.
    #[error("request loop: it already passed through this gateway ({0})")]
    Loop(String),
    /// The request went through too many gateways.
    #[error("request passed through {hops} proxies; at most {max} are allowed")]
    TooManyHops {
        /// `Via` entries found.
        hops: usize,
        /// `proxy.max_hops`.
        max: u32,
    },
}

/// Checks the `Via` header values of an incoming request: none may name `own`, and there may be fewer
/// than `max_hops` entries (so this gateway's own hop is at most the `max_hops`-th).
pub(crate) fn check<'a>(
    via_values: impl IntoIterator<Item = &'a [u8]>,
    own: &InstanceId,
    max_hops: u32,
) -> Result<(), HopError> {
    let mut hops = 0usize;
    for value in via_values {
        for entry in value.split(|&b| b == b',') {
            let mut words = entry
                .split(|b| b.is_ascii_whitespace())
                .filter(|w| !w.is_empty());
            if words.next().is_none() {
                continue;
            }
            hops += 1;
            if words.next() == Some(own.as_str().as_bytes()) {
                return Err(HopError::Loop(own.to_string()));
            }
        }
    }
    if hops >= max_hops as usize {
        return Err(HopError::TooManyHops {
            hops,
            max: max_hops,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> InstanceId {
        InstanceId::parse("gw-a").unwrap()
    }

    #[test]
    fn counts_entries_across_values_and_finds_its_own() {
        assert_eq!(check([], &id(), 8), Ok(()));
        assert_eq!(check([&b"1.1 gw-b"[..]], &id(), 8), Ok(()));
        // our own id anywhere in the chain is a loop
        assert_eq!(
            check([&b"1.1 gw-b, 1.1 gw-a (comment)"[..]], &id(), 8),
            Err(HopError::Loop("gw-a".into()))
        );
        assert_eq!(
            check([&b"1.0 x"[..], &b"HTTP/1.1 gw-a"[..]], &id(), 8),
            Err(HopError::Loop("gw-a".into()))
        );
        // a prefix of our id is another gateway
        assert_eq!(check([&b"1.1 gw-ab"[..]], &id(), 8), Ok(()));
        // 7 earlier hops: ours is the 8th, allowed; 8 earlier: refused
        let seven = "1.1 a, 1.1 b, 1.1 c, 1.1 d, 1.1 e, 1.1 f, 1.1 g";
        assert_eq!(check([seven.as_bytes()], &id(), 8), Ok(()));
        let eight = format!("{seven}, 1.1 h");
        assert_eq!(
            check([eight.as_bytes()], &id(), 8),
            Err(HopError::TooManyHops { hops: 8, max: 8 })
        );
        // empty list members are not hops
        assert_eq!(check([&b" , ,1.1 b"[..]], &id(), 2), Ok(()));
    }

    #[test]
    fn instance_ids_are_tokens() {
        assert!(InstanceId::parse("gw-1.eu_west").is_ok());
        assert!(InstanceId::parse("").is_err());
        assert!(InstanceId::parse("a b").is_err());
        assert!(InstanceId::parse("a,b").is_err());
        assert!(InstanceId::parse(&"x".repeat(65)).is_err());
        let r = InstanceId::random();
        assert!(InstanceId::parse(r.as_str()).is_ok());
        assert_eq!(r.via_entry(), format!("1.1 {r}"));
        assert_eq!(r.via_entry_h2(), format!("2 {r}"));
    }
}
