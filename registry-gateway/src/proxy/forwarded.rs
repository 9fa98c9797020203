//! The trusted-proxy model for `X-Forwarded-*`: which peers may tell the gateway who the client is.

use std::net::IpAddr;
use std::str::FromStr;

/// An IP network such as `10.0.0.0/8`, `127.0.0.1` (one host) or `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = ip
            .parse()
            .map_err(|_| format!("'{s}' is not an IP network such as 10.0.0.0/8"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("'{s}': the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { net, prefix })
    }
}

impl Cidr {
    /// Whether `ip` is inside this network (IPv4-mapped IPv6 peers match IPv4 networks).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// The peers whose `X-Forwarded-*` headers the gateway keeps (and appends to).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// From the config's list (validated at start).
    pub fn parse(list: &[String]) -> Result<Self, String> {
        list.iter()
            .map(|s| s.parse())
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    /// Whether a request from `peer` may carry forwarding headers the gateway keeps.
    pub fn trusts(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|ip| self.0.iter().any(|c| c.contains(ip)))
    }
}

/// Removes the forwarding headers (`X-Forwarded-For/-Proto/-Host`, `Forwarded`) of a request from a peer
/// that is not a trusted proxy: only a proxy in front of the gateway may say who the client is and how
/// it came (the HTTP path drops them while copying the headers; the gRPC path forwards the request's
/// own map and calls this).
pub(crate) fn drop_untrusted_forwarding(headers: &mut http::HeaderMap) {
    for name in FORWARDING {
        headers.remove(name);
    }
}

/// The forwarding headers a client may only set through a trusted proxy.
pub(super) const FORWARDING: [&str; 4] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
];

/// Sets the `X-Forwarded-For` of a request going to a replica, for both wires: a `trusted` peer's list
/// (a proxy in front of the gateway) gets `peer` appended; anyone else's is replaced by `peer` alone.
pub(crate) fn append_forwarded_for(headers: &mut http::HeaderMap, peer: IpAddr, trusted: bool) {
    let prev = match trusted {
        true => headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()),
        false => None,
    };
    let xff = match prev {
        Some(prev) => format!("{prev}, {peer}"),
        None => peer.to_string(),
    };
    if let Ok(v) = http::HeaderValue::from_str(&xff) {
        headers.insert("x-forwarded-for", v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_untrusted_peer_keeps_no_forwarding_header_of_its_own() {
        let mut h = http::HeaderMap::new();
        for name in FORWARDING {
            h.insert(name, "spoofed".parse().unwrap());
        }
        h.insert("x-request-id", "kept".parse().unwrap());
        drop_untrusted_forwarding(&mut h);
        append_forwarded_for(&mut h, "127.0.0.9".parse().unwrap(), false);
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h["x-forwarded-for"], "127.0.0.9");
        assert_eq!(h["x-request-id"], "kept");
    }

    #[test]
    fn forwarded_for_appends_only_to_a_trusted_list() {
        let mut h = http::HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.7".parse().unwrap());
        append_forwarded_for(&mut h, ip("127.0.0.2"), true);
        assert_eq!(h["x-forwarded-for"], "203.0.113.7, 127.0.0.2");
        append_forwarded_for(&mut h, ip("127.0.0.3"), false);
        assert_eq!(h["x-forwarded-for"], "127.0.0.3");
        let mut empty = http::HeaderMap::new();
        append_forwarded_for(&mut empty, ip("127.0.0.4"), true);
        assert_eq!(empty["x-forwarded-for"], "127.0.0.4");
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_contain_their_addresses() {
        let c: Cidr = "127.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("127.0.0.1")));
        assert!(c.contains(ip("127.255.0.9")));
        assert!(!c.contains(ip("128.0.0.1")));
        assert!(c.contains(ip("::ffff:127.0.0.1")));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")));
        assert!(!one.contains(ip("127.0.0.2")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.7")));
        assert!(!all.contains(ip("::1")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fe80::1")));
    }

    #[test]
    fn bad_networks_are_refused() {
        for bad in [
            "",
            "127.0.0.1/33",
            "::1/129",
            "localhost",
            "10.0.0.0/x",
            "1.2.3/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn nobody_is_trusted_by_default() {
        let none = TrustedProxies::default();
        assert!(!none.trusts(Some(ip("127.0.0.1"))));
        let lo = TrustedProxies::parse(&["127.0.0.1/32".into()]).unwrap();
        assert!(lo.trusts(Some(ip("127.0.0.1"))));
        assert!(!lo.trusts(Some(ip("127.0.0.2"))));
        assert!(!lo.trusts(None));
    }
}
