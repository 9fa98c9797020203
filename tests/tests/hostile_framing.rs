//! Hostile request framing and headers, byte by byte on raw sockets: size limits, bad chunking, dot
//! segments, pipelining, `X-Forwarded-*` spoofing, smuggling shapes and slowloris.
//!
//! Malformed requests must get an answer (not a silent close), never reach a replica, and never be charged
//! to one.

use std::time::{Duration, Instant};

use e2e::http::{health, register};
use e2e::raw::{exchange, Behaviour, RawClient, RawError, RawReplica, RawResponse};
use e2e::{gateway, Client, Proc};
use http::StatusCode;

async fn setup(yaml: &str) -> (Proc, Client, RawReplica) {
    let gw = gateway(yaml);
    let c = Client::new();
    let replica = RawReplica::start(Behaviour::Ok).await;
    register(&c, &gw.url, "svc", &replica.url).await;
    (gw, c, replica)
}

async fn send(gw: &Proc, request: &[u8]) -> RawResponse {
    exchange(&gw.addr, request, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "no response to {:?}: {e:?}",
                String::from_utf8_lossy(&request[..request.len().min(200)])
            )
        })
}

/// The replica is still registered, closed and never charged.
async fn assert_clean(c: &Client, gw: &Proc, replica: &RawReplica) {
    let h = health(c, &gw.url, "svc", &replica.url)
        .await
        .expect("replica still registered");
    assert!(h.is_clean(), "the replica was charged: {h:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_headers_are_431_and_never_reach_the_replica() {
    let (gw, c, replica) = setup("").await;
    // One 100 KB header (below actix-http's own 128 KiB buffer limit, above limits.max_header_bytes).
    let big = format!(
        "GET /svc/x HTTP/1.1\r\nHost: gw\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    let r = send(&gw, big.as_bytes()).await;
    assert_eq!(r.status, 431, "one 100 KB header: {}", r.summary());
    // Fifty 1 KB headers: 50 KB of head in total.
    let many: String = (0..50)
        .map(|i| format!("X-H{i}: {}\r\n", "b".repeat(1000)))
        .collect();
    let r = send(
        &gw,
        format!("GET /svc/x HTTP/1.1\r\nHost: gw\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(r.status, 431, "50 KB of headers: {}", r.summary());
    assert_eq!(replica.seen(), 0, "an oversized head reached the replica");
    assert_eq!(
        send(&gw, b"GET /svc/x HTTP/1.1\r\nHost: gw\r\n\r\n")
            .await
            .status,
        200
    );
    assert_clean(&c, &gw, &replica).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_kb_request_target_is_414_and_never_reaches_the_replica() {
    let (gw, c, replica) = setup("").await;
    let r = send(
        &gw,
        format!(
            "GET /svc/{} HTTP/1.1\r\nHost: gw\r\n\r\n",
            "a".repeat(10_000)
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(r.status, 414, "{}", r.summary());
    // The query counts too.
    let r = send(
        &gw,
        format!(
            "GET /svc/x?q={} HTTP/1.1\r\nHost: gw\r\n\r\n",
            "a".repeat(10_000)
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(r.status, 414, "{}", r.summary());
    assert_eq!(replica.seen(), 0);
    // Just under the default limit (8 KiB) still goes through.
    let r = send(
        &gw,
        format!(
            "GET /svc/{} HTTP/1.1\r\nHost: gw\r\n\r\n",
            "a".repeat(7_000)
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_clean(&c, &gw, &replica).await;
}

/// actix-http alone treats a bad chunk size as an I/O error and closes without answering; the gateway's
/// connection gate ends the body just before the bad bytes, so the handler answers 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_chunk_size_is_answered_400_and_not_charged_to_the_replica() {
    let (gw, c, replica) = setup("").await;
    for _ in 0..4 {
        let mut conn = RawClient::connect(&gw.addr).await;
        conn.send(
            b"POST /svc/up HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
        match conn.read_response(Duration::from_secs(10)).await {
            Ok(r) => assert_eq!(r.status, 400, "{}", r.summary()),
            Err(e) => panic!("a bad chunk size got no answer: {e:?}"),
        }
    }
    // Four client errors would have opened the breaker (threshold 3) had they been charged.
    assert_eq!(
        send(&gw, b"GET /svc/x HTTP/1.1\r\nHost: gw\r\n\r\n")
            .await
            .status,
        200
    );
    assert_clean(&c, &gw, &replica).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_cannot_climb_out_of_the_service() {
    let (gw, c, replica) = setup("").await;
    for path in [
        "/svc/../registry",
        "/svc/%2e%2e/registry",
        "/svc/%2E%2e/registry",
        "/svc/a/../../registry",
        "/svc/./../registry",
        "/svc/..",
    ] {
        let r = send(
            &gw,
            format!("GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(r.status, 400, "{path}: {}", r.summary());
    }
    assert_eq!(replica.seen(), 0, "a climbing path reached the replica");
    for (path, at_replica) in [
        ("/svc/a/../b", "/b"),
        ("/svc/a/%2e%2e/b", "/b"),
        ("/svc/a/./b/../c", "/a/c"),
    ] {
        let r = send(
            &gw,
            format!("GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(r.status, 200, "{path}: {}", r.summary());
        let req = replica.requests().pop().unwrap();
        assert_eq!(req.target, at_replica, "{path}");
    }
    assert_clean(&c, &gw, &replica).await;
}

/// actix-http alone decodes every pipelined request before answering the first, and its codec then writes a
/// later request's `close` on the earlier responses; the gateway's connection gate hands it one request at a
/// time (RFC 9112 §9.6: only the request that carries `close` ends the connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_keep_the_connection_until_the_one_that_closes_it() {
    let (gw, _c, replica) = setup("").await;
    let mut conn = RawClient::connect(&gw.addr).await;
    conn.send(
        b"GET /svc/p1 HTTP/1.1\r\nHost: gw\r\n\r\n\
          GET /svc/p2 HTTP/1.1\r\nHost: gw\r\n\r\n\
          GET /svc/p3 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut responses = Vec::new();
    for i in 1..=3 {
        let r = conn
            .read_response(Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("pipelined response {i}: {e:?}"));
        assert_eq!(r.status, 200, "response {i}: {}", r.summary());
        responses.push(r);
    }
    let targets: Vec<String> = replica.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(targets, ["/p1", "/p2", "/p3"]);
    assert!(
        responses[2].closes(),
        "the last response announces the close"
    );
    let (_, closed) = conn.wait_closed(Duration::from_secs(5)).await;
    assert!(closed, "the connection ends after the 3rd response");
    for (i, r) in responses[..2].iter().enumerate() {
        assert!(
            !r.closes(),
            "response {} carries Connection: close although its request did not ask for it: {:?}",
            i + 1,
            r.headers
        );
    }
}

const SPOOFED: &str = "GET /svc/f HTTP/1.1\r\nHost: public.example\r\nX-Forwarded-Proto: https\r\n\
                       X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil.example\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_from_an_untrusted_peer_are_replaced() {
    let (gw, _c, replica) = setup("").await;
    assert_eq!(send(&gw, SPOOFED.as_bytes()).await.status, 200);
    // Two X-Forwarded-For lines: neither survives.
    let two = "GET /svc/f HTTP/1.1\r\nHost: public.example\r\nX-Forwarded-For: 6.6.6.6\r\n\
               X-Forwarded-For: 7.7.7.7\r\n\r\n";
    assert_eq!(send(&gw, two.as_bytes()).await.status, 200);
    for req in replica.requests() {
        assert_forwarded(&req, "127.0.0.1", "http", "public.example");
    }
}

/// The one `X-Forwarded-For`, `-Proto` and `-Host` value each that the replica received.
fn assert_forwarded(req: &e2e::raw::RawRequest, xff: &str, proto: &str, host: &str) {
    assert_eq!(req.headers_named("x-forwarded-for"), [xff], "{}", req.head);
    assert_eq!(
        req.headers_named("x-forwarded-proto"),
        [proto],
        "{}",
        req.head
    );
    assert_eq!(
        req.headers_named("x-forwarded-host"),
        [host],
        "{}",
        req.head
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_from_a_trusted_proxy_are_kept_and_appended_to() {
    let (gw, _c, replica) = setup("forwarded: { trusted_proxies: [127.0.0.1/32] }\n").await;
    assert_eq!(send(&gw, SPOOFED.as_bytes()).await.status, 200);
    let req = replica.requests().pop().unwrap();
    assert_forwarded(&req, "6.6.6.6, 127.0.0.1", "https", "evil.example");
    // A trusted peer that sends none gets them set.
    assert_eq!(
        send(&gw, b"GET /svc/f HTTP/1.1\r\nHost: public.example\r\n\r\n")
            .await
            .status,
        200
    );
    let req = replica.requests().pop().unwrap();
    assert_forwarded(&req, "127.0.0.1", "http", "public.example");
}

/// Regression: these already hold and must keep holding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_shapes_are_400_and_never_reach_a_replica() {
    let (gw, c, replica) = setup("").await;
    let cases: [(&str, &[u8]); 9] = [
        (
            "CL and TE together",
            b"POST /svc/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "two different Content-Lengths",
            b"POST /svc/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        ),
        (
            "Content-Length 5x",
            b"POST /svc/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 5x\r\n\r\nhello",
        ),
        (
            "Content-Length -1",
            b"POST /svc/x HTTP/1.1\r\nHost: gw\r\nContent-Length: -1\r\n\r\nhello",
        ),
        (
            "Content-Length +5",
            b"POST /svc/x HTTP/1.1\r\nHost: gw\r\nContent-Length: +5\r\n\r\nhello",
        ),
        (
            "Content-Length 0x5",
            b"POST /svc/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 0x5\r\n\r\nhello",
        ),
        (
            "obs-fold",
            b"GET /svc/x HTTP/1.1\r\nHost: gw\r\nX-A: a\r\n b\r\n\r\n",
        ),
        (
            "NUL in a header value",
            b"GET /svc/x HTTP/1.1\r\nHost: gw\r\nX-A: a\0b\r\n\r\n",
        ),
        (
            "bare CR in a header value",
            b"GET /svc/x HTTP/1.1\r\nHost: gw\r\nX-A: a\rb\r\n\r\n",
        ),
    ];
    let mut wrong = Vec::new();
    for (name, req) in cases {
        match exchange(&gw.addr, req, Duration::from_secs(10)).await {
            Ok(r) if r.status == 400 => {}
            Ok(r) => wrong.push(format!("{name}: {}", r.summary())),
            Err(e) => wrong.push(format!("{name}: no answer ({e:?})")),
        }
    }
    assert!(wrong.is_empty(), "not answered 400:\n{}", wrong.join("\n"));
    assert_eq!(replica.seen(), 0, "{:?}", replica.requests());
    assert_eq!(
        send(&gw, b"GET /svc/x HTTP/1.1\r\nHost: gw\r\n\r\n")
            .await
            .status,
        200
    );
    assert_clean(&c, &gw, &replica).await;
}

/// Regression: these already hold and must keep holding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_head_gets_408_at_header_timeout_while_other_clients_are_served() {
    let (gw, c, replica) = setup("client: { header_timeout: 2s }\n").await;
    let url = format!("{}/svc/normal", gw.url);
    let normal = tokio::spawn({
        let c = c.clone();
        async move {
            let mut statuses = Vec::new();
            for _ in 0..15 {
                statuses.push(c.get(&url).await.status);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            statuses
        }
    });

    let head = format!(
        "GET /svc/slow HTTP/1.1\r\nHost: gw\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(20)
    );
    let mut conn = RawClient::connect(&gw.addr).await;
    let start = Instant::now();
    let mut outcome = None;
    for byte in head.as_bytes() {
        if conn.send(&[*byte]).await.is_err() {
            outcome = Some("closed (write failed)".to_owned());
            break;
        }
        match conn.read_response(Duration::from_millis(500)).await {
            Err(RawError::Timeout(_)) => continue,
            Ok(r) => {
                assert_eq!(r.status, 408, "{}", r.summary());
                outcome = Some(r.summary());
            }
            Err(e) => outcome = Some(format!("closed: {e:?}")),
        }
        break;
    }
    let took = start.elapsed();
    let outcome = outcome.unwrap_or_else(|| {
        panic!("the slow head was sent in full over {took:?} without being cut off")
    });
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "cut off after {took:?} (header_timeout 2s): {outcome}"
    );
    let statuses = normal.await.unwrap();
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert_eq!(
        replica.seen(),
        statuses.len(),
        "the slow request reached the replica"
    );
    assert_clean(&c, &gw, &replica).await;
}
