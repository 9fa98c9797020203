//! The scanner as specs: where pipelined, split, chunked and refused requests end.

use super::*;

fn scan_all(input: &[u8]) -> Vec<Scan> {
    let mut s = RequestScanner::default();
    let mut out = Vec::new();
    let mut rest = input;
    loop {
        let r = s.feed(rest);
        out.push(r);
        match r {
            Scan::Complete(n) if n < rest.len() => rest = &rest[n..],
            _ => return out,
        }
    }
}

#[test]
fn pipelined_requests_are_split_where_each_ends() {
    let get = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
    let post = b"POST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
    let chunked = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n";
    let all = [&get[..], &post[..], &chunked[..]].concat();
    assert_eq!(
        scan_all(&all),
        [
            Scan::Complete(get.len()),
            Scan::Complete(post.len()),
            Scan::Complete(chunked.len())
        ]
    );
}

#[test]
fn requests_split_across_reads_are_followed_byte_by_byte() {
    let input = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    let first = input.len() - b"GET / HTTP/1.1\r\n\r\n".len();
    let mut s = RequestScanner::default();
    for (i, b) in input[..first].iter().enumerate() {
        let want = if i + 1 == first {
            Scan::Complete(1)
        } else {
            Scan::Within
        };
        assert_eq!(s.feed(&[*b]), want, "byte {i}");
    }
    assert!(s.between_requests());
    assert_eq!(s.feed(&input[first..]), Scan::Complete(input.len() - first));
}

#[test]
fn bad_chunk_sizes_are_found_where_they_are() {
    let head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (body, at) in [
        (&b"zz\r\nhello\r\n"[..], 0),
        (b"5\r\nhello\r\nq\r\n", 10),
        (b"5 x\r\nhello", 2),
        (b"5\r\nhelloXX", 8),
        (b"fffffffffffffffff\r\n", 16),
        (b"5;a\x01\r\n", 3),
    ] {
        let input = [&head[..], body].concat();
        assert_eq!(
            scan_all(&input),
            [Scan::Malformed(head.len() + at)],
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn framing_the_server_refuses_is_not_followed() {
    for head in [
        &b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"GET /chat HTTP/1.1\r\nUpgrade: WebSocket \r\nContent-Length: 2\r\n\r\n",
        b"NOT HTTP\r\n\r\n",
    ] {
        let mut s = RequestScanner::default();
        assert_eq!(
            s.feed(head),
            Scan::Within,
            "{:?}",
            String::from_utf8_lossy(head)
        );
        assert_eq!(s.feed(b"GET / HTTP/1.1\r\n\r\n"), Scan::Within);
    }
}

#[test]
fn upgrade_requests_are_framed_like_any_other() {
    // An upgrade handshake without a body ends at its head; what follows waits for its answer.
    for head in [
        &b"GET /chat HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"[..],
        b"GET /e HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: echo/1\r\nContent-Length: 0\r\n\r\n",
    ] {
        let all = [head, &b"\x81\x00tunnel bytes"[..]].concat();
        assert_eq!(scan_all(&all)[0], Scan::Complete(head.len()));
    }
    // With a body, the server frames it by its length and answers it as a normal request: so does
    // the gate.
    let h2c =
        b"GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: h2c\r\nContent-Length: 2\r\n\r\nhi";
    let next = b"GET /b HTTP/1.1\r\n\r\n";
    let all = [&h2c[..], &next[..]].concat();
    assert_eq!(
        scan_all(&all),
        [Scan::Complete(h2c.len()), Scan::Complete(next.len())]
    );
    // A chunked body wins over a WebSocket upgrade, as in the server.
    let chunked =
        b"POST / HTTP/1.1\r\nUpgrade: websocket\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(scan_all(chunked), [Scan::Complete(chunked.len())]);
}

#[test]
fn bare_lf_heads_and_bodies_of_zero_length_end_at_the_head() {
    assert_eq!(
        scan_all(b"GET / HTTP/1.1\nHost: x\n\n"),
        [Scan::Complete(24)]
    );
    let zero = b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(scan_all(zero), [Scan::Complete(zero.len())]);
}
