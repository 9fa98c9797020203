//! HTTP/1.1 heads on the wire: the replica's request head written straight from the client's header bytes,
//! and the replica's response head parsed with `httparse` into the client's header map and a framing.

use std::io::Write as _;
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::ops::Range;

use actix_web::http::header as ax;
use bytes::{Bytes, BytesMut};

use super::framing::{self, Framing, FramingError, Signals};
use crate::proxy::headers::{connection_tokens, is_forwarding, is_hop_by_hop};

/// Most header lines a replica's response head may carry (hyper's default too).
pub(crate) const MAX_RESPONSE_HEADERS: usize = 100;
/// Largest response head, in bytes.
pub(crate) const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// How the request body is framed on the way to the replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyLength {
    /// No body and no length header (a GET's).
    Empty,
    /// `Content-Length: n`.
    Known(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

impl BodyLength {
    /// The framing of a body of `exact` bytes (`None`: unknown, streamed chunked) for `method`. An empty
    /// body says `Content-Length: 0` only where the method defines a body (POST, PUT, PATCH), as hyper does.
    pub(crate) fn of(method: &str, exact: Option<u64>) -> Self {
        match exact {
            None => BodyLength::Chunked,
            Some(0) if !matches!(method, "POST" | "PUT" | "PATCH") => BodyLength::Empty,
            Some(n) => BodyLength::Known(n),
        }
    }
}

/// Everything the replica's request head is written from.
pub(crate) struct RequestHead<'a> {
    /// The client's method.
    pub(crate) method: &'a str,
    /// The path past the service name.
    pub(crate) path: &'a str,
    /// The client's query string, if any.
    pub(crate) query: Option<&'a str>,
    /// The replica's `host:port`, sent as `Host`.
    pub(crate) authority: &'a str,
    /// The client's headers.
    pub(crate) client: ClientHeaders<'a>,
    /// The client's address (`X-Forwarded-For`).
    pub(crate) peer: Option<IpAddr>,
    /// The peer is a trusted proxy: its forwarding headers are kept and appended to.
    pub(crate) trusted: bool,
    /// `X-Forwarded-Proto` when no trusted proxy set one.
    pub(crate) proto: &'static str,
    /// This gateway's `Via` entry.
    pub(crate) via: &'a [u8],
    /// The request's `x-request-id`.
    pub(crate) request_id: &'a [u8],
    /// The body's framing.
    pub(crate) length: BodyLength,
}

/// The client's request headers, as either front end has them.
#[derive(Clone, Copy)]
pub(crate) enum ClientHeaders<'a> {
    /// Decoded by actix-http (names in lower case).
    Map(&'a ax::HeaderMap),
    /// Parsed in place from the client's head by the front loop (names as sent).
    Parsed(&'a [httparse::Header<'a>]),
}

impl<'a> ClientHeaders<'a> {
    /// Every name/value pair, in order.
    fn for_each(&self, mut f: impl FnMut(&'a [u8], &'a [u8])) {
        match *self {
            ClientHeaders::Map(map) => map
                .iter()
                .for_each(|(n, v)| f(n.as_str().as_bytes(), v.as_bytes())),
            ClientHeaders::Parsed(list) => list.iter().for_each(|h| f(h.name.as_bytes(), h.value)),
        }
    }

    /// The first value of `name` (lower case).
    pub(crate) fn get(&self, name: &str) -> Option<&'a [u8]> {
        match *self {
            ClientHeaders::Map(map) => map.get(name).map(|v| v.as_bytes()),
            ClientHeaders::Parsed(list) => list
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value),
        }
    }

    /// The names the client's `Connection` headers list (hop-by-hop for this message).
    fn connection_tokens(&self) -> Vec<String> {
        match *self {
            ClientHeaders::Map(map) if map.contains_key(ax::CONNECTION) => connection_tokens(map),
            ClientHeaders::Map(_) => Vec::new(),
            ClientHeaders::Parsed(list) => list
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("connection"))
                .filter_map(|h| std::str::from_utf8(h.value).ok())
                .flat_map(|v| v.split(','))
                .map(|t| t.trim().to_ascii_lowercase())
                .filter(|t| !t.is_empty() && t != "close" && t != "keep-alive")
                .collect(),
        }
    }
}

fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes the request head into `out` (cleared first), with the same rules as
/// [`to_upstream`](crate::proxy::headers::to_upstream): hop-by-hop headers, `Host`, the client's framing
/// headers and (from an untrusted peer) its forwarding headers are dropped; `Host`, `X-Forwarded-*`,
/// `Via`, `x-request-id` and the body's own framing are written. Header names go out in lower case.
pub(crate) fn write_request(head: &RequestHead<'_>, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.path.as_bytes());
    if let Some(q) = head.query {
        out.push(b'?');
        out.extend_from_slice(q.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    line(out, b"host", head.authority.as_bytes());
    let extra = head.client.connection_tokens();
    let mut xff_prev: Option<&[u8]> = None;
    let (mut has_proto, mut has_host) = (false, false);
    head.client.for_each(|name, value| {
        // The name is written (in lower case) first and taken back if the header is dropped.
        let start = out.len();
        out.extend(name.iter().map(u8::to_ascii_lowercase));
        let n = std::str::from_utf8(&out[start..]).unwrap_or("");
        let keep = !(is_hop_by_hop(n)
            || n == "host"
            || n == "content-length"
            || n == crate::observe::REQUEST_ID_HEADER
            || (!head.trusted && is_forwarding(n))
            || extra.iter().any(|t| t == n));
        let keep = keep
            && match n {
                // The first value is appended to (a trusted proxy's list), like the header map path does.
                "x-forwarded-for" if head.peer.is_some() => {
                    xff_prev.get_or_insert(value);
                    false
                }
                "x-forwarded-proto" => {
                    has_proto = true;
                    true
                }
                "x-forwarded-host" => {
                    has_host = true;
                    true
                }
                _ => true,
            };
        if keep {
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        } else {
            out.truncate(start);
        }
    });
    if let Some(ip) = head.peer {
        out.extend_from_slice(b"x-forwarded-for: ");
        if let Some(prev) = xff_prev {
            out.extend_from_slice(prev);
            out.extend_from_slice(b", ");
        }
        let _ = write!(out, "{ip}\r\n");
    }
    if !has_proto {
        line(out, b"x-forwarded-proto", head.proto.as_bytes());
    }
    if !has_host {
        if let Some(host) = head.client.get("host") {
            line(out, b"x-forwarded-host", host);
        }
    }
    line(out, b"via", head.via);
    line(
        out,
        crate::observe::REQUEST_ID_HEADER.as_bytes(),
        head.request_id,
    );
    match head.length {
        BodyLength::Empty => {}
        BodyLength::Known(n) => {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        BodyLength::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// A parsed response head.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    /// The status code.
    pub(crate) status: u16,
    /// The headers the client gets (hop-by-hop ones dropped; `Content-Length` kept for a 304 only).
    pub(crate) headers: ax::HeaderMap,
    /// How the body is delimited.
    pub(crate) framing: Framing,
    /// The declared `Content-Length`, if one (valid) was sent.
    pub(crate) content_length: Option<u64>,
    /// The connection may carry another request once this body is read.
    pub(crate) reusable: bool,
}

/// Why a response head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HeadError {
    /// Not HTTP/1.x, or malformed.
    #[error("malformed response head")]
    Malformed,
    /// Larger than [`MAX_RESPONSE_HEAD`] or with more than [`MAX_RESPONSE_HEADERS`] lines.
    #[error("response head too large")]
    TooLarge,
    /// Ambiguous framing.
    #[error("{0}")]
    Framing(#[from] FramingError),
}

/// Takes one final response head off the front of `buf`, skipping interim (1xx other than 101) heads.
/// `Ok(None)`: the head is not complete yet. `head_request`: the request was a HEAD (no body follows).
pub(crate) fn parse_response(
    buf: &mut BytesMut,
    head_request: bool,
) -> Result<Option<ResponseHead>, HeadError> {
    loop {
        let mut slots = [const { MaybeUninit::uninit() }; MAX_RESPONSE_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut resp, buf, &mut slots);
        let len = match parsed {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE_HEAD => {
                return Err(HeadError::TooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
            Err(_) => return Err(HeadError::Malformed),
        };
        if len > MAX_RESPONSE_HEAD {
            return Err(HeadError::TooLarge);
        }
        let status = resp.code.ok_or(HeadError::Malformed)?;
        let version = resp.version.ok_or(HeadError::Malformed)?;
        if (100..200).contains(&status) && status != 101 {
            // An interim answer (100 Continue, 103 Early Hints): the final head follows.
            let _ = buf.split_to(len);
            continue;
        }
        // Offsets into the head, so that the values can share its bytes once it is frozen.
        let base = buf.as_ptr() as usize;
        let at = |s: &[u8]| (s.as_ptr() as usize - base)..(s.as_ptr() as usize - base + s.len());
        let mut ranges: [(Range<usize>, Range<usize>); MAX_RESPONSE_HEADERS] =
            std::array::from_fn(|_| (0..0, 0..0));
        let mut signals = Signals::default();
        let count = resp.headers.len();
        for (slot, h) in ranges.iter_mut().zip(resp.headers.iter()) {
            signals.observe(h.name.as_bytes(), h.value)?;
            *slot = (at(h.name.as_bytes()), at(h.value));
        }
        let decision = framing::decide(head_request, status, version, &signals)?;
        let bytes = buf.split_to(len).freeze();
        let headers = to_client(&bytes, &ranges[..count], status == 304);
        return Ok(Some(ResponseHead {
            status,
            headers,
            framing: decision.framing,
            content_length: signals.content_length,
            reusable: decision.reusable,
        }));
    }
}

/// The client's copy of the replica's headers: values share the head's bytes.
fn to_client(
    head: &Bytes,
    ranges: &[(Range<usize>, Range<usize>)],
    keep_length: bool,
) -> ax::HeaderMap {
    let mut out = ax::HeaderMap::with_capacity(ranges.len());
    let mut listed: Vec<ax::HeaderName> = Vec::new();
    for (n, v) in ranges {
        let Ok(name) = ax::HeaderName::from_bytes(&head[n.clone()]) else {
            continue;
        };
        if name == ax::CONNECTION {
            for t in head[v.clone()].split(|&b| b == b',') {
                if let Ok(t) = ax::HeaderName::from_bytes(t.trim_ascii()) {
                    listed.push(t);
                }
            }
        }
        let s = name.as_str();
        if is_hop_by_hop(s) || (s == "content-length" && !keep_length) {
            continue;
        }
        if let Ok(value) = ax::HeaderValue::from_maybe_shared(head.slice(v.clone())) {
            out.append(name, value);
        }
    }
    for t in listed {
        out.remove(t);
    }
    out
}

#[cfg(test)]
#[path = "head_tests.rs"]
mod tests;
