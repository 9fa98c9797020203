//! Hostile replicas: what a replica does wrong is recorded against it, and never leaves a client hanging
//! or believing it got a whole response.
//!
//! The replicas are raw sockets that misbehave on purpose ([`RawReplica`]); the client is a raw socket too.

use std::time::{Duration, Instant};

use e2e::http::{health, register, Health};
use e2e::raw::{Behaviour, End, RawClient, RawReplica};
use e2e::{gateway, Client, Proc};

const POLICY: &str =
    "breaker: { failure_threshold: 3, open_timeout: 10s }\neviction: { failure_threshold: 5 }\n\
                      lease: { ttl: 10m, heartbeat_interval: 1m }\n";

/// Waits until the registry shows a failure recorded against `address`; panics with the counters if not.
async fn charged(c: &Client, gw: &Proc, service: &str, address: &str) -> Health {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let last = health(c, &gw.url, service, address).await;
        if let Some(h) = &last {
            if is_charged(h) {
                return h.clone();
            }
        }
        if Instant::now() >= deadline {
            panic!(
                "no failure recorded against {address} within 5s: {last:?}\ngateway output:\n{}",
                gw.output()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn is_charged(h: &Health) -> bool {
    h.failures >= 1 && h.consecutive_failures >= 1
}

/// GET `path` on a new raw connection; checks the client could tell the body was cut short.
async fn get_truncated(gw: &Proc, path: &str, content_length: usize, sent: usize) {
    let mut conn = RawClient::connect(&gw.addr).await;
    conn.send(format!("GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let resp = conn
        .read_response(Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("no response head for {path}: {e:?}"));
    if resp.status == 200 {
        // The head went out before the replica failed: the body must be visibly short, and the connection
        // closed rather than left open as if more were coming or as if it were complete.
        assert_eq!(
            resp.end,
            End::Closed,
            "{path}: {}: the client cannot tell the body was cut short",
            resp.summary()
        );
        assert!(
            resp.body.len() <= sent && resp.body.len() < content_length,
            "{path}: {} body bytes of {content_length} announced, {sent} sent by the replica",
            resp.body.len()
        );
    } else {
        assert_eq!(resp.status, 502, "{path}: {}", resp.summary());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_cut_short_is_seen_as_truncated_and_charged_to_the_replica() {
    let gw = gateway(POLICY);
    let c = Client::new();
    let big = RawReplica::start(Behaviour::Truncate {
        content_length: 100_000,
        send: 1000,
    })
    .await;
    let small = RawReplica::start(Behaviour::Truncate {
        content_length: 10,
        send: 5,
    })
    .await;
    register(&c, &gw.url, "big", &big.url).await;
    register(&c, &gw.url, "small", &small.url).await;

    get_truncated(&gw, "/big/file", 100_000, 1000).await;
    let h = charged(&c, &gw, "big", &big.url).await;
    assert_eq!(h.requests, 1, "{h:?}");

    get_truncated(&gw, "/small/file", 10, 5).await;
    let h = charged(&c, &gw, "small", &small.url).await;
    assert_eq!(h.requests, 1, "{h:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_stalls_mid_body_is_cut_off_by_read_timeout_and_charged() {
    let gw = gateway(&format!(
        "{POLICY}upstream: {{ request_timeout: 5s, read_timeout: 1s }}\n"
    ));
    let c = Client::new();
    let stall = RawReplica::start(Behaviour::StallAfter {
        content_length: 1000,
        send: 5,
    })
    .await;
    register(&c, &gw.url, "svc", &stall.url).await;

    let mut conn = RawClient::connect(&gw.addr).await;
    conn.send(b"GET /svc/file HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let resp = conn
        .read_response(Duration::from_secs(8))
        .await
        .unwrap_or_else(|e| panic!("no response head: {e:?}"));
    let took = start.elapsed();
    if resp.status == 200 {
        assert_eq!(
            resp.end,
            End::Closed,
            "the client was left waiting on a stalled body for {took:?}: {}",
            resp.summary()
        );
        assert!(resp.body.len() < 1000, "{}", resp.summary());
    } else {
        assert!(
            resp.status == 502 || resp.status == 504,
            "{}",
            resp.summary()
        );
    }
    assert!(took < Duration::from_secs(6), "cut off only after {took:?}");
    let h = charged(&c, &gw, "svc", &stall.url).await;
    assert_eq!(h.requests, 1, "{h:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_a_status_line_and_silence_are_502_and_504_and_charged() {
    let gw = gateway(&format!("{POLICY}upstream: {{ request_timeout: 1s }}\n"));
    let c = Client::new();
    let garbage = RawReplica::start(Behaviour::InvalidStatusLine).await;
    let silent = RawReplica::start(Behaviour::Silent).await;
    register(&c, &gw.url, "garbage", &garbage.url).await;
    register(&c, &gw.url, "silent", &silent.url).await;

    let mut conn = RawClient::connect(&gw.addr).await;
    conn.send(b"GET /garbage/x HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let resp = conn.read_response(Duration::from_secs(5)).await.unwrap();
    assert_eq!(resp.status, 502, "{}", resp.summary());
    assert_eq!(resp.end, End::Complete, "{}", resp.summary());
    assert_eq!(resp.json()["error"], "bad_gateway");
    let h = charged(&c, &gw, "garbage", &garbage.url).await;
    assert_eq!((h.failures, h.consecutive_failures), (1, 1), "{h:?}");

    let mut conn = RawClient::connect(&gw.addr).await;
    conn.send(b"GET /silent/x HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let resp = conn.read_response(Duration::from_secs(6)).await.unwrap();
    assert_eq!(resp.status, 504, "{}", resp.summary());
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    let h = charged(&c, &gw, "silent", &silent.url).await;
    assert_eq!((h.failures, h.consecutive_failures), (1, 1), "{h:?}");
}
