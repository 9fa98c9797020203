//! `x-request-id`: the client's own when it is sane, else a fresh UUID v4; kept on the stack.

use std::cell::Cell;

use uuid::Uuid;

/// The header (and gRPC metadata key) that carries the id.
pub const HEADER: &str = "x-request-id";

/// Longest id kept from a client, in bytes; a longer one is replaced.
pub const MAX_LEN: usize = 128;

/// A request's id: at most [`MAX_LEN`] visible ASCII bytes, held inline (no allocation).
#[derive(Clone, Copy)]
pub struct RequestId {
    buf: [u8; MAX_LEN],
    len: u8,
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a client's id is kept: 1 to [`MAX_LEN`] bytes of visible ASCII (`!` to `~`: no spaces, no
/// control bytes), so that it is safe in a header, a log line and a metric-free context alike.
pub fn is_acceptable(value: &[u8]) -> bool {
    !value.is_empty() && value.len() <= MAX_LEN && value.iter().all(|b| (0x21..=0x7e).contains(b))
}

impl RequestId {
    /// The client's id when [`is_acceptable`], else a generated one (also when the client sent none).
    pub fn from_client(value: Option<&[u8]>) -> RequestId {
        match value {
            Some(v) if is_acceptable(v) => {
                let mut buf = [0u8; MAX_LEN];
                buf[..v.len()].copy_from_slice(v);
                RequestId {
                    buf,
                    len: v.len() as u8,
                }
            }
            _ => RequestId::generate(),
        }
    }

    /// A fresh UUID v4, lowercase and hyphenated.
    pub fn generate() -> RequestId {
        let mut buf = [0u8; MAX_LEN];
        let len = uuid::Builder::from_random_bytes(random_bytes())
            .into_uuid()
            .hyphenated()
            .encode_lower(&mut buf[..uuid::fmt::Hyphenated::LENGTH])
            .len();
        RequestId {
            buf,
            len: len as u8,
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        // Only visible ASCII is ever stored.
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("-")
    }

    /// The id as an upstream (`http` 1.x) header value.
    pub fn header_value(&self) -> http::HeaderValue {
        http::HeaderValue::from_str(self.as_str()).expect("visible ASCII is a valid header value")
    }
}

thread_local! {
    /// Per-thread generator state, seeded once from the OS (`Uuid::new_v4`).
    static STATE: Cell<u64> = Cell::new(Uuid::new_v4().as_u64_pair().0 | 1);
}

/// 16 random bytes from a per-thread wyrand generator: ids must be unique, not secret, and a system call
/// per request (what `Uuid::new_v4` costs) showed in the proxy benchmark.
fn random_bytes() -> [u8; 16] {
    STATE.with(|s| {
        let next = || {
            let x = s.get().wrapping_add(0xa076_1d64_78bd_642f);
            s.set(x);
            let t = u128::from(x) * u128::from(x ^ 0xe703_7ed1_a0b4_28db);
            ((t >> 64) as u64) ^ (t as u64)
        };
        let (a, b) = (next(), next());
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&a.to_le_bytes());
        out[8..].copy_from_slice(&b.to_le_bytes());
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sane_client_id_is_kept_as_sent() {
        for id in ["abc", "7f3c-1", "req_42:node/a", &"x".repeat(MAX_LEN)] {
            assert_eq!(RequestId::from_client(Some(id.as_bytes())).as_str(), id);
        }
    }

    #[test]
    fn an_insane_or_missing_id_is_replaced_by_a_uuid() {
        let too_long = "x".repeat(MAX_LEN + 1);
        for bad in [
            Some(&b""[..]),
            Some(b"has space"),
            Some(b"tab\there"),
            Some(b"new\nline"),
            Some("caf\u{e9}".as_bytes()),
            Some(too_long.as_bytes()),
            None,
        ] {
            let id = RequestId::from_client(bad);
            let parsed = Uuid::parse_str(id.as_str()).expect("a uuid");
            assert_eq!(parsed.get_version_num(), 4, "{bad:?}");
            assert_eq!(id.as_str().len(), 36);
        }
    }

    #[test]
    fn generated_ids_differ() {
        let ids: std::collections::HashSet<String> = (0..10_000)
            .map(|_| RequestId::generate().as_str().to_owned())
            .collect();
        assert_eq!(ids.len(), 10_000);
        // Another thread has its own seed: no shared sequence.
        let other = std::thread::spawn(|| RequestId::generate().as_str().to_owned())
            .join()
            .unwrap();
        assert!(!ids.contains(&other));
    }

    #[test]
    fn the_id_is_a_header_value() {
        let id = RequestId::from_client(Some(b"abc-123"));
        assert_eq!(id.header_value(), "abc-123");
    }
}
