//! HTTP/1.1 heads: the request head written for a replica and the response head parsed from one.

use super::*;
use crate::proxy::headers::tests::client;

fn head<'a>(client: &'a ax::HeaderMap, length: BodyLength) -> RequestHead<'a> {
    RequestHead {
        method: "GET",
        path: "/a%2Fb/c",
        query: Some("x=1"),
        authority: "127.0.0.1:9001",
        client: ClientHeaders::Map(client),
        peer: Some("127.1.2.3".parse().unwrap()),
        trusted: false,
        proto: "http",
        via: b"1.1 rgw-test",
        request_id: b"rid-1",
        length,
    }
}

fn written(h: &RequestHead<'_>) -> String {
    let mut out = Vec::new();
    write_request(h, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn the_request_head_is_the_clients_minus_hop_by_hop_plus_forwarding() {
    let c = client(&[
        ("host", "gw.example:8080"),
        ("connection", "keep-alive, x-secret-hop"),
        ("x-secret-hop", "1"),
        ("keep-alive", "timeout=5"),
        ("transfer-encoding", "chunked"),
        ("proxy-authorization", "Basic x"),
        ("content-length", "12"),
        ("x-request-id", "from-client"),
        ("x-forwarded-for", "127.6.6.6"),
        ("accept", "a"),
    ]);
    assert_eq!(
        written(&head(&c, BodyLength::Known(12))),
        "GET /a%2Fb/c?x=1 HTTP/1.1\r\n\
         host: 127.0.0.1:9001\r\n\
         accept: a\r\n\
         x-forwarded-for: 127.1.2.3\r\n\
         x-forwarded-proto: http\r\n\
         x-forwarded-host: gw.example:8080\r\n\
         via: 1.1 rgw-test\r\n\
         x-request-id: rid-1\r\n\
         content-length: 12\r\n\r\n"
    );
}

#[test]
fn a_trusted_proxys_forwarding_headers_are_kept_and_appended_to() {
    let c = client(&[
        ("x-forwarded-for", "127.9.9.9"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "shop.example"),
    ]);
    let mut h = head(&c, BodyLength::Chunked);
    h.trusted = true;
    h.query = None;
    let out = written(&h);
    // The client's own lines come in its header map's order: compare them as a set.
    let mut lines: Vec<&str> = out.split("\r\n").collect();
    lines.sort_unstable();
    let mut want = vec![
        "",
        "",
        "GET /a%2Fb/c HTTP/1.1",
        "host: 127.0.0.1:9001",
        "transfer-encoding: chunked",
        "via: 1.1 rgw-test",
        "x-forwarded-for: 127.9.9.9, 127.1.2.3",
        "x-forwarded-host: shop.example",
        "x-forwarded-proto: https",
        "x-request-id: rid-1",
    ];
    want.sort_unstable();
    assert_eq!(lines, want);
    assert!(out.starts_with("GET /a%2Fb/c HTTP/1.1\r\nhost: 127.0.0.1:9001\r\n"));
    assert!(out.ends_with("transfer-encoding: chunked\r\n\r\n"));
}

#[test]
fn headers_parsed_in_place_make_the_same_head_as_the_decoded_map() {
    // As the client sent them (mixed case), and as actix-http decodes them (lower case).
    let sent: [(&str, &str); 8] = [
        ("Host", "gw.example:8080"),
        ("Connection", "keep-alive, X-Secret-Hop"),
        ("X-Secret-Hop", "1"),
        ("Keep-Alive", "timeout=5"),
        ("X-Request-Id", "from-client"),
        ("X-Forwarded-For", "127.6.6.6"),
        ("Accept", "a"),
        ("X-Forwarded-Proto", "https"),
    ];
    let lower: Vec<(&'static str, &'static str)> = sent
        .iter()
        .map(|(n, v)| (&*n.to_ascii_lowercase().leak(), *v))
        .collect();
    let map = client(&lower);
    let parsed: Vec<httparse::Header<'_>> = sent
        .iter()
        .map(|(n, v)| httparse::Header {
            name: n,
            value: v.as_bytes(),
        })
        .collect();
    for trusted in [false, true] {
        let mut from_map = head(&map, BodyLength::Empty);
        from_map.trusted = trusted;
        let mut from_parsed = head(&map, BodyLength::Empty);
        from_parsed.client = ClientHeaders::Parsed(&parsed);
        from_parsed.trusted = trusted;
        // A header map's order of distinct names is its own: compare the lines as sets.
        let lines = |h: &RequestHead<'_>| {
            let mut l: Vec<String> = written(h).split("\r\n").map(str::to_owned).collect();
            l.sort_unstable();
            l
        };
        assert_eq!(lines(&from_parsed), lines(&from_map), "trusted: {trusted}");
        assert!(written(&from_parsed)
            .starts_with("GET /a%2Fb/c?x=1 HTTP/1.1\r\nhost: 127.0.0.1:9001\r\n"));
    }
    let mut h = head(&map, BodyLength::Empty);
    h.client = ClientHeaders::Parsed(&parsed);
    assert!(!written(&h).contains("ecret"), "{}", written(&h));
}

#[test]
fn an_empty_body_has_a_length_only_where_the_method_defines_one() {
    assert_eq!(BodyLength::of("GET", Some(0)), BodyLength::Empty);
    assert_eq!(BodyLength::of("DELETE", Some(0)), BodyLength::Empty);
    assert_eq!(BodyLength::of("POST", Some(0)), BodyLength::Known(0));
    assert_eq!(BodyLength::of("GET", Some(3)), BodyLength::Known(3));
    assert_eq!(BodyLength::of("PUT", None), BodyLength::Chunked);
}

fn parse(wire: &str, head_request: bool) -> (Result<Option<ResponseHead>, HeadError>, BytesMut) {
    let mut buf = BytesMut::from(wire.as_bytes());
    let r = parse_response(&mut buf, head_request);
    (r, buf)
}

#[test]
fn a_response_head_leaves_the_body_bytes_behind() {
    let (r, rest) = parse(
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: x-hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nok",
        false,
    );
    let h = r.unwrap().unwrap();
    assert_eq!(h.status, 200);
    assert_eq!(h.framing, Framing::Length(2));
    assert_eq!(h.content_length, Some(2));
    assert!(h.reusable);
    assert_eq!(&rest[..], b"ok");
    for gone in ["content-length", "connection", "x-hop", "keep-alive"] {
        assert!(!h.headers.contains_key(gone), "{gone}");
    }
    assert_eq!(h.headers.get_all("set-cookie").count(), 2);
}

#[test]
fn interim_heads_are_skipped_and_a_partial_head_waits() {
    let (r, rest) = parse(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
        false,
    );
    let h = r.unwrap().unwrap();
    assert_eq!((h.status, h.framing), (204, Framing::None));
    assert!(rest.is_empty());
    let (r, rest) = parse("HTTP/1.1 200 OK\r\nContent-Le", false);
    assert!(r.unwrap().is_none());
    assert_eq!(rest.len(), 27);
}

#[test]
fn garbage_and_oversized_heads_are_refused() {
    assert_eq!(
        parse("garbage\r\n\r\n", false).0.unwrap_err(),
        HeadError::Malformed
    );
    let big = format!(
        "HTTP/1.1 200 OK\r\nx: {}",
        "a".repeat(MAX_RESPONSE_HEAD + 1)
    );
    assert_eq!(parse(&big, false).0.unwrap_err(), HeadError::TooLarge);
    let many: String = (0..=MAX_RESPONSE_HEADERS)
        .map(|i| format!("h{i}: 1\r\n"))
        .collect();
    let many = format!("HTTP/1.1 200 OK\r\n{many}\r\n");
    assert_eq!(parse(&many, false).0.unwrap_err(), HeadError::TooLarge);
}

#[test]
fn a_304_keeps_its_content_length_for_the_client() {
    let (r, _) = parse(
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
        false,
    );
    let h = r.unwrap().unwrap();
    assert_eq!(h.framing, Framing::None);
    assert_eq!(h.headers.get("content-length").unwrap(), "10");
}
