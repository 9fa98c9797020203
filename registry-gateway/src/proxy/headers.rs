//! Header rewriting between client and replica: hop-by-hop removal, `Host`, `X-Forwarded-*`.
//!
//! actix-web speaks `http` 0.2 types and hyper `http` 1: headers are copied across by bytes here, once.

use std::net::IpAddr;

use actix_web::http::header as ax;
use http::header::{self as hh, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1), plus `Host` which is rewritten.
pub(super) fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-authenticate"
            | "proxy-authorization"
    )
}

/// Names listed in the `Connection` header: also hop-by-hop for this message.
pub(super) fn connection_tokens(headers: &ax::HeaderMap) -> Vec<String> {
    headers
        .get_all(ax::CONNECTION)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && t != "close" && t != "keep-alive")
        .collect()
}

/// Forwarding headers a client may only set through a trusted proxy.
pub(super) fn is_forwarding(name: &str) -> bool {
    super::forwarded::FORWARDING.contains(&name)
}

/// Builds the replica's request headers from the client's: drops hop-by-hop headers, `Host` and
/// `Content-Length` (the body carries its length), and sets `X-Forwarded-For/-Proto/-Host`
/// (`proto`: `https` when the client came over TLS, else `http`).
///
/// From a `trusted` peer (a proxy in front of the gateway) the forwarding headers are kept and
/// `X-Forwarded-For` is appended to; from anyone else they are replaced by what the gateway saw itself.
pub(crate) fn to_upstream(
    client: &ax::HeaderMap,
    peer: Option<IpAddr>,
    trusted: bool,
    proto: &'static str,
) -> HeaderMap {
    let extra = if client.contains_key(ax::CONNECTION) {
        connection_tokens(client)
    } else {
        Vec::new()
    };
    let mut out = HeaderMap::with_capacity(client.len() + 4);
    for (name, value) in client.iter() {
        let n = name.as_str();
        if is_hop_by_hop(n)
            || n == "host"
            || n == "content-length"
            || (!trusted && is_forwarding(n))
            || extra.iter().any(|t| t == n)
        {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            out.append(name, value);
        }
    }
    if let Some(ip) = peer {
        super::forwarded::append_forwarded_for(&mut out, ip, trusted);
    }
    if !out.contains_key("x-forwarded-proto") {
        out.insert("x-forwarded-proto", HeaderValue::from_static(proto));
    }
    if !out.contains_key("x-forwarded-host") {
        if let Some(host) = client
            .get(ax::HOST)
            .and_then(|h| HeaderValue::from_bytes(h.as_bytes()).ok())
        {
            out.insert("x-forwarded-host", host);
        }
    }
    out
}

/// Sets `Host` for the replica.
pub(crate) fn set_host(headers: &mut HeaderMap, authority: &str) {
    if let Ok(v) = HeaderValue::from_str(authority) {
        headers.insert(hh::HOST, v);
    }
}

/// Copies the replica's response headers for the client, without hop-by-hop headers. `Content-Length` is
/// kept only when `keep_length` (a 304's); otherwise the body's size writes it.
pub(crate) fn to_client(upstream: &HeaderMap, keep_length: bool, out: &mut ax::HeaderMap) {
    let extra: Vec<String> = upstream
        .get_all(hh::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    for (name, value) in upstream.iter() {
        let n = name.as_str();
        if is_hop_by_hop(n)
            || (n == "content-length" && !keep_length)
            || extra.iter().any(|t| t == n)
        {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            ax::HeaderName::from_bytes(n.as_bytes()),
            ax::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            out.append(name, value);
        }
    }
}

/// The upstream response's declared length.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(hh::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A header map from static pairs (shared with the other proxy tests).
    pub(crate) fn client(pairs: &[(&'static str, &'static str)]) -> ax::HeaderMap {
        let mut m = ax::HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                ax::HeaderName::from_static(k),
                ax::HeaderValue::from_static(v),
            );
        }
        m
    }

    #[test]
    fn strips_hop_by_hop_and_adds_forwarding() {
        let h = client(&[
            ("host", "gw.example:8080"),
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic x"),
            ("content-length", "12"),
            ("x-request-id", "abc"),
            ("accept", "a"),
            ("accept", "b"),
        ]);
        let mut out = to_upstream(&h, Some("127.1.2.3".parse().unwrap()), false, "http");
        set_host(&mut out, "127.0.0.1:9001");
        for gone in [
            "connection",
            "x-secret-hop",
            "keep-alive",
            "transfer-encoding",
            "proxy-authorization",
            "content-length",
        ] {
            assert!(!out.contains_key(gone), "{gone} should be stripped");
        }
        assert_eq!(out["host"], "127.0.0.1:9001");
        assert_eq!(out["x-request-id"], "abc");
        assert_eq!(out.get_all("accept").iter().count(), 2);
        assert_eq!(out["x-forwarded-for"], "127.1.2.3");
        assert_eq!(out["x-forwarded-proto"], "http");
        assert_eq!(out["x-forwarded-host"], "gw.example:8080");
    }

    #[test]
    fn a_trusted_proxy_appends_to_the_forwarding_headers() {
        let h = client(&[
            ("x-forwarded-for", "127.9.9.9"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "shop.example"),
        ]);
        let out = to_upstream(&h, Some("127.0.0.9".parse().unwrap()), true, "http");
        assert_eq!(out["x-forwarded-for"], "127.9.9.9, 127.0.0.9");
        assert_eq!(out["x-forwarded-proto"], "https");
        assert_eq!(out["x-forwarded-host"], "shop.example");
    }

    #[test]
    fn an_untrusted_client_cannot_forge_forwarding_headers() {
        let h = client(&[
            ("host", "gw:8080"),
            ("x-forwarded-for", "127.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("forwarded", "for=127.6.6.6;proto=https"),
        ]);
        let out = to_upstream(&h, Some("127.0.0.9".parse().unwrap()), false, "http");
        assert_eq!(out["x-forwarded-for"], "127.0.0.9");
        assert_eq!(out.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(out["x-forwarded-proto"], "http");
        assert_eq!(out["x-forwarded-host"], "gw:8080");
        assert!(!out.contains_key("forwarded"));
        // Over a TLS listener the gateway says so itself.
        let client_over_tls = to_upstream(&client(&[]), None, false, "https");
        assert_eq!(client_over_tls["x-forwarded-proto"], "https");
        let forged = to_upstream(&h, None, false, "https");
        assert_eq!(forged["x-forwarded-proto"], "https");
    }

    #[test]
    fn response_headers_lose_hop_by_hop_only() {
        let mut up = HeaderMap::new();
        up.insert("content-length", HeaderValue::from_static("5"));
        up.insert("connection", HeaderValue::from_static("close"));
        up.insert("x-upstream", HeaderValue::from_static("yes"));
        up.append("set-cookie", HeaderValue::from_static("a=1"));
        up.append("set-cookie", HeaderValue::from_static("b=2"));
        let mut out = ax::HeaderMap::new();
        to_client(&up, false, &mut out);
        assert!(!out.contains_key("content-length"));
        assert!(!out.contains_key("connection"));
        assert_eq!(out.get("x-upstream").unwrap(), "yes");
        assert_eq!(out.get_all("set-cookie").count(), 2);
        assert_eq!(content_length(&up), Some(5));
    }
}
