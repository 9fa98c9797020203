//! Replica addresses: `http://host:port` or `https://host:port`, validated once at registration.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Address texts up to this long are kept inline: every `http(s)://a.b.c.d:port` (29 bytes at most),
/// `[::1]` and most host names. A replica's address then costs no allocation of its own.
const INLINE: usize = 30;

mod literal;

/// A validated replica address: `http` or `https` scheme, a host, an explicit port, nothing else.
/// `http://a:1` and `https://a:1` are two replicas.
///
/// Kept as its normalised text (lowercase host, no trailing slash), the replica's identity: inline up to
/// 30 bytes, shared beyond. 32 bytes either way.
#[derive(Clone)]
pub struct ReplicaAddress(Text);

/// The normalised text.
#[derive(Clone)]
enum Text {
    /// `len` bytes of `bytes`, ASCII.
    Inline { len: u8, bytes: [u8; INLINE] },
    /// A longer one.
    Shared(Arc<str>),
}
/// Why an address was refused. The message is shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAddress {
    /// Not a URL at all.
    #[error("address is not a valid URL: {0}")]
    NotAUrl(String),
    /// Any scheme other than http and https.
    #[error("address scheme must be http or https, not '{0}'")]
    Scheme(String),
    /// No host.
    #[error("address must have a host")]
    NoHost,
    /// No explicit port.
    #[error("address must have an explicit port, as in http://10.0.0.5:8080")]
    NoPort,
    /// `user:pass@`.
    #[error("address must not contain user info")]
    UserInfo,
    /// `#fragment`.
    #[error("address must not contain a fragment")]
    Fragment,
    /// A path or query: the gateway forwards the client's own path.
    #[error("address must not have a path or query: requests keep the client's path")]
    Path,
    /// Port 0: nothing can be reached there.
    #[error("address port must not be 0: register the port the replica listens on")]
    PortZero,
}

impl ReplicaAddress {
    /// Validates and normalises `s`.
    pub fn parse(s: &str) -> Result<Self, InvalidAddress> {
        // The commonest form, already canonical, is taken as it is (the same answer, without the URL
        // parser and its allocations: a third of a registration's work in the gateway).
        if let Some(l) = literal::canonical_ipv4(s) {
            return Ok(ReplicaAddress::from_normalised(&s[..l.len]));
        }
        ReplicaAddress::parse_url(s)
    }

    /// Validates and normalises `s` with the general URL parser.
    fn parse_url(s: &str) -> Result<Self, InvalidAddress> {
        let url = url::Url::parse(s.trim()).map_err(|e| InvalidAddress::NotAUrl(e.to_string()))?;
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            other => return Err(InvalidAddress::Scheme(other.to_owned())),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(InvalidAddress::UserInfo);
        }
        if url.fragment().is_some() {
            return Err(InvalidAddress::Fragment);
        }
        if url.path() != "/" || url.query().is_some() {
            return Err(InvalidAddress::Path);
        }
        let host = match url.host() {
            Some(h) => h.to_string(),
            None => return Err(InvalidAddress::NoHost),
        };
        if host.is_empty() {
            return Err(InvalidAddress::NoHost);
        }
        // `Url` drops a port equal to the scheme's default; insist it was written.
        let port = match url.port() {
            Some(p) => p,
            None if has_explicit_port(s) => url.port_or_known_default().unwrap_or(80),
            None => return Err(InvalidAddress::NoPort),
        };
        if port == 0 {
            return Err(InvalidAddress::PortZero);
        }
        Ok(ReplicaAddress::from_normalised(&format!(
            "{}://{host}:{port}",
            if tls { "https" } else { "http" }
        )))
    }

    /// Keeps `text`, already normalised.
    fn from_normalised(text: &str) -> Self {
        ReplicaAddress(if text.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..text.len()].copy_from_slice(text.as_bytes());
            Text::Inline {
                len: text.len() as u8,
                bytes,
            }
        } else {
            Text::Shared(Arc::from(text))
        })
    }

    /// `http://host:port` or `https://host:port`.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Only ever filled from a `&str` cut at its end: always valid.
            Text::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or("")
            }
            Text::Shared(s) => s,
        }
    }

    /// The address text as a shared label value (metric series): a copy for an inline one.
    pub(crate) fn shared(&self) -> Arc<str> {
        match &self.0 {
            Text::Inline { .. } => Arc::from(self.as_str()),
            Text::Shared(s) => Arc::clone(s),
        }
    }

    /// `host:port`.
    pub fn authority(&self) -> &str {
        let url = self.as_str();
        let scheme = if self.is_tls() { "https://" } else { "http://" };
        &url[scheme.len()..]
    }

    /// The host as written in the URL, lowercase: a name, an IPv4 address, or `[IPv6]` in brackets.
    pub fn host(&self) -> &str {
        let authority = self.authority();
        authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host)
    }

    /// The port (never 0).
    pub fn port(&self) -> u16 {
        self.as_str()
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok())
            .unwrap_or(0)
    }

    /// Whether it is an `https://` replica (TLS from the gateway to it).
    pub fn is_tls(&self) -> bool {
        self.as_str().as_bytes().get(4) == Some(&b's')
    }
}

impl PartialEq for ReplicaAddress {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}
impl Eq for ReplicaAddress {}
impl Hash for ReplicaAddress {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}
impl PartialOrd for ReplicaAddress {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ReplicaAddress {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}
impl fmt::Debug for ReplicaAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ReplicaAddress")
            .field(&self.as_str())
            .finish()
    }
}

fn has_explicit_port(s: &str) -> bool {
    let rest = s.trim().split_once("://").map_or(s, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    host_port.rsplit_once(':').is_some_and(|(h, p)| {
        !p.is_empty() && !h.ends_with(':') && p.bytes().all(|b| b.is_ascii_digit())
    })
}

impl fmt::Display for ReplicaAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_valid_addresses() {
        let a = ReplicaAddress::parse("http://127.0.0.1:9001").unwrap();
        assert_eq!(a.as_str(), "http://127.0.0.1:9001");
        assert_eq!(a.authority(), "127.0.0.1:9001");
        assert_eq!(
            ReplicaAddress::parse("HTTP://Orders.Local:80/")
                .unwrap()
                .as_str(),
            "http://orders.local:80"
        );
        assert_eq!(
            ReplicaAddress::parse("http://[::1]:9001")
                .unwrap()
                .authority(),
            "[::1]:9001"
        );
    }

    #[test]
    fn splits_host_and_port() {
        for (input, host, port) in [
            ("http://127.0.0.1:9001", "127.0.0.1", 9001),
            ("http://[::1]:9001", "[::1]", 9001),
            ("http://Orders.Local:80/", "orders.local", 80),
            ("http://localhost:1", "localhost", 1),
        ] {
            let a = ReplicaAddress::parse(input).unwrap();
            assert_eq!((a.host(), a.port()), (host, port), "{input}");
        }
    }

    #[test]
    fn https_addresses_are_tls_replicas_of_their_own() {
        let plain = ReplicaAddress::parse("http://127.0.0.1:9001").unwrap();
        let tls = ReplicaAddress::parse("HTTPS://Orders.Local:9001/").unwrap();
        assert!(!plain.is_tls());
        assert!(tls.is_tls());
        assert_eq!(tls.as_str(), "https://orders.local:9001");
        assert_eq!((tls.host(), tls.port()), ("orders.local", 9001));
        assert_eq!(tls.authority(), "orders.local:9001");
        // Same host and port, another scheme: another replica.
        let tls_ip = ReplicaAddress::parse("https://127.0.0.1:9001").unwrap();
        assert_ne!(plain, tls_ip);
        assert_eq!(tls_ip.authority(), plain.authority());
        // The default port written out is kept, for either scheme.
        assert_eq!(
            ReplicaAddress::parse("https://127.0.0.1:443")
                .unwrap()
                .as_str(),
            "https://127.0.0.1:443"
        );
        assert_eq!(
            ReplicaAddress::parse("http://127.0.0.1:80").unwrap().port(),
            80
        );
        assert_eq!(
            ReplicaAddress::parse("https://[::1]:8443").unwrap().host(),
            "[::1]"
        );
        assert_eq!(
            ReplicaAddress::parse("ws://127.0.0.1:1")
                .unwrap_err()
                .to_string(),
            "address scheme must be http or https, not 'ws'"
        );
    }

    #[test]
    fn short_addresses_are_inline_long_ones_shared_and_both_compare_by_text() {
        assert_eq!(std::mem::size_of::<ReplicaAddress>(), 32);
        let longest_ipv4 = ReplicaAddress::parse("https://255.255.255.255:65535").unwrap();
        assert!(matches!(longest_ipv4.0, Text::Inline { .. }));
        assert_eq!(longest_ipv4.as_str(), "https://255.255.255.255:65535");
        assert_eq!(
            (longest_ipv4.host(), longest_ipv4.port()),
            ("255.255.255.255", 65535)
        );
        let long = "http://a-rather-long-host-name.example.internal:8080";
        let shared = ReplicaAddress::parse(long).unwrap();
        assert!(matches!(shared.0, Text::Shared(_)));
        assert_eq!(shared.as_str(), long);
        assert_eq!(&*shared.shared(), long);
        assert_eq!(
            shared.authority(),
            "a-rather-long-host-name.example.internal:8080"
        );
        assert_eq!(shared.port(), 8080);
        let a = ReplicaAddress::parse("http://127.0.0.1:9001").unwrap();
        let b = ReplicaAddress::parse("HTTP://127.0.0.1:9001/").unwrap();
        assert_eq!(a, b);
        assert!(a < shared && shared < longest_ipv4);
        assert_eq!(
            format!("{a:?}"),
            "ReplicaAddress(\"http://127.0.0.1:9001\")"
        );
    }

    #[test]
    fn the_quick_reading_agrees_with_the_url_parser() {
        let mut quick = 0;
        for scheme in ["http", "https", "HTTP", "ftp"] {
            for host in [
                "127.0.0.1",
                "127.1.2.3",
                "0.0.0.0",
                "255.255.255.255",
                "256.0.0.1",
                "127.0.0.01",
                "127.0.0",
                "127.0.0.1.1",
                "127..0.1",
                "0x7f.0.0.1",
                "localhost",
                "[::1]",
                "",
            ] {
                for port in [
                    "9001", "80", "443", "1", "65535", "65536", "0", "00", "080", "", "x",
                ] {
                    for tail in ["", "/", "//", "/a", "?", "#"] {
                        let s = format!("{scheme}://{host}:{port}{tail}");
                        let general = ReplicaAddress::parse_url(&s);
                        if literal::canonical_ipv4(&s).is_some() {
                            quick += 1;
                        }
                        assert_eq!(ReplicaAddress::parse(&s), general, "{s:?}");
                    }
                }
            }
        }
        // Every canonical literal took the quick way: 2 schemes, 4 hosts, 5 ports, 2 tails.
        assert_eq!(quick, 2 * 4 * 5 * 2);
        for padded in [
            " http://127.0.0.1:9001",
            "http://127.0.0.1:9001 ",
            "http://127.0.0.1:9001\n",
        ] {
            assert_eq!(
                ReplicaAddress::parse(padded),
                ReplicaAddress::parse_url(padded)
            );
        }
    }

    #[test]
    fn port_zero_is_refused_with_a_clear_message() {
        let e = ReplicaAddress::parse("http://127.0.0.1:0").unwrap_err();
        assert_eq!(
            e.to_string(),
            "address port must not be 0: register the port the replica listens on"
        );
    }

    #[test]
    fn refuses_everything_else() {
        use InvalidAddress::*;
        let cases: &[(&str, InvalidAddress)] = &[
            ("ftp://127.0.0.1:21", Scheme("ftp".into())),
            ("https://127.0.0.1", NoPort),
            ("https://127.0.0.1:0", PortZero),
            ("https://127.0.0.1:9001/api", Path),
            ("http://127.0.0.1", NoPort),
            ("http://u:p@127.0.0.1:9001", UserInfo),
            ("http://127.0.0.1:9001/#x", Fragment),
            ("http://127.0.0.1:9001/api", Path),
            ("http://127.0.0.1:9001/?a=1", Path),
            ("http://127.0.0.1:0", PortZero),
            ("http://127.0.0.1:00", PortZero),
            ("http://[::1]:0", PortZero),
            ("http://orders.local:0/", PortZero),
        ];
        for (input, want) in cases {
            assert_eq!(&ReplicaAddress::parse(input).unwrap_err(), want, "{input}");
        }
        assert!(matches!(
            ReplicaAddress::parse("not a url"),
            Err(NotAUrl(_))
        ));
        assert!(matches!(
            ReplicaAddress::parse("http://:9001"),
            Err(NotAUrl(_) | NoHost)
        ));
    }
}
