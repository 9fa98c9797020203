//! The connection front loop: plain GETs served before actix-http, the hand-over to actix-http at the
//! first request that is not plain (a body, an admin route, HTTP/1.0), pipelining, the header timeout,
//! a client reset, and the same access-log line, metrics and response shape on both paths.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::http::register;
use e2e::raw::{wait_until, Behaviour, RawClient, RawError, RawReplica, RawResponse};
use e2e::{demo, gateway, log_field, Client, Proc};

const WAIT: Duration = Duration::from_secs(20);

async fn setup(yaml: &str) -> (Proc, Proc, Client) {
    let gw = gateway(yaml);
    let a = demo("a", &[]);
    let c = Client::new();
    register(&c, &gw.url, "users", &a.url).await;
    (gw, a, c)
}

async fn read(conn: &mut RawClient, what: &str) -> RawResponse {
    conn.read_response(WAIT)
        .await
        .unwrap_or_else(|e| panic!("no response to {what}: {e:?}"))
}

/// The replica's echo of a request: its path and query, and the body it received.
fn echoed(r: &RawResponse) -> (String, String, String) {
    let j = r.json();
    let s = |k: &str| j[k].as_str().unwrap_or("").to_owned();
    (s("path"), s("query"), s("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_connection_mixes_plain_gets_a_post_and_an_admin_request_and_gets_every_answer_in_order(
) {
    let (gw, _a, _c) = setup("").await;
    let mut conn = RawClient::connect(&gw.addr).await;
    // Plain GETs (the front loop's), then a POST with a body (actix-http's from here on), then a
    // registry read, then GETs again, all on one connection.
    conn.send(b"GET /users/echo?n=1 HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let r = read(&mut conn, "GET n=1").await;
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(echoed(&r), ("/echo".into(), "n=1".into(), "".into()));
    assert!(!r.closes());

    conn.send(b"GET /users/echo?n=2 HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let r = read(&mut conn, "GET n=2").await;
    assert_eq!(echoed(&r), ("/echo".into(), "n=2".into(), "".into()));

    conn.send(b"POST /users/echo?n=3 HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    let r = read(&mut conn, "POST n=3").await;
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(echoed(&r), ("/echo".into(), "n=3".into(), "hello".into()));

    conn.send(b"GET /registry HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let r = read(&mut conn, "GET /registry").await;
    assert_eq!(r.status, 200, "{}", r.summary());
    assert!(
        r.json().to_string().contains("users"),
        "the registry lists the service: {}",
        r.summary()
    );

    conn.send(b"GET /users/echo?n=5 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let r = read(&mut conn, "GET n=5").await;
    assert_eq!(echoed(&r), ("/echo".into(), "n=5".into(), "".into()));
    assert!(r.closes(), "{:?}", r.headers);
    let (_, closed) = conn.wait_closed(WAIT).await;
    assert!(closed, "the connection stayed open after Connection: close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_gets_are_answered_in_order_and_a_close_ends_the_connection() {
    let (gw, _a, _c) = setup("").await;
    let mut conn = RawClient::connect(&gw.addr).await;
    let mut all = Vec::new();
    for n in 1..=4 {
        all.extend_from_slice(
            format!("GET /users/echo?n={n} HTTP/1.1\r\nHost: gw\r\n\r\n").as_bytes(),
        );
    }
    // An unknown service in the middle: the gateway's own 404, in its place.
    all.extend_from_slice(b"GET /nosuch/x HTTP/1.1\r\nHost: gw\r\n\r\n");
    all.extend_from_slice(b"GET /users/echo?n=6 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
    conn.send(&all).await.unwrap();
    for n in 1..=4 {
        let r = read(&mut conn, &format!("pipelined GET n={n}")).await;
        assert_eq!(r.status, 200, "{}", r.summary());
        assert_eq!(echoed(&r).1, format!("n={n}"));
    }
    let r = read(&mut conn, "GET /nosuch/x").await;
    assert_eq!(r.status, 404, "{}", r.summary());
    assert_eq!(r.json()["error"], "unknown_service", "{}", r.summary());
    let r = read(&mut conn, "pipelined GET n=6").await;
    assert_eq!(echoed(&r).1, "n=6");
    assert!(r.closes());
    let (rest, closed) = conn.wait_closed(WAIT).await;
    assert!(
        closed && rest.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_head_after_a_served_request_gets_408_at_header_timeout() {
    let (gw, _a, _c) = setup("client: { header_timeout: 2s }\n").await;
    let mut conn = RawClient::connect(&gw.addr).await;
    conn.send(b"GET /users/echo?n=1 HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read(&mut conn, "the first GET").await.status, 200);
    // The next head starts and never ends.
    let start = Instant::now();
    conn.send(b"GET /users/echo?n=2 HTTP/1.1\r\nHost: gw\r\n")
        .await
        .unwrap();
    let outcome = loop {
        match conn.read_response(Duration::from_millis(500)).await {
            Err(RawError::Timeout(_)) if start.elapsed() < Duration::from_secs(10) => {
                let _ = conn.send(b"X-Slow: 1\r\n").await;
            }
            other => break other,
        }
    };
    let took = start.elapsed();
    let r = outcome.unwrap_or_else(|e| panic!("no 408 after {took:?}: {e:?}"));
    assert_eq!(r.status, 408, "{}", r.summary());
    assert!(r.closes(), "{:?}", r.headers);
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "cut off after {took:?} (header_timeout 2s)"
    );
    let (_, closed) = conn.wait_closed(WAIT).await;
    assert!(closed);
}

/// Every metric series and its value, from `/metrics`.
async fn metrics(c: &Client, gw: &str) -> BTreeMap<String, f64> {
    let r = c.get(&format!("{gw}/metrics")).await;
    String::from_utf8_lossy(&r.body)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// The series whose value a request changed (latency sums and buckets aside: their values vary).
fn changed(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> Vec<String> {
    after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .filter(|k| !k.contains("_bucket") && !k.contains("_sum"))
        .collect()
}

/// The access-log line's fields but the ones that differ per request.
fn shape(line: &str) -> Vec<(String, String)> {
    [
        "method", "path", "service", "replica", "status", "attempts", "bytes",
    ]
    .iter()
    .map(|k| (k.to_string(), log_field(line, k).to_owned()))
    .collect()
}

/// Response header names, sorted, without the per-request ones' values.
fn header_names(r: &RawResponse) -> Vec<String> {
    let mut names: Vec<String> = r.headers.iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_front_request_and_an_actix_one_log_count_and_answer_alike() {
    let (gw, _a, c) = setup("").await;
    // Warm the series up, so that both requests below only change values.
    assert_eq!(c.get(&format!("{}/users/ping", gw.url)).await.status, 200);
    let mut conn = RawClient::connect(&gw.addr).await;

    // The front loop's: a plain GET.
    let before = metrics(&c, &gw.url).await;
    conn.send(b"GET /users/ping HTTP/1.1\r\nHost: gw\r\nx-request-id: front-1\r\n\r\n")
        .await
        .unwrap();
    let front = read(&mut conn, "the plain GET").await;
    let front_line = gw.expect_line("request_id=front-1", WAIT);
    let front_changed = changed(&before, &metrics(&c, &gw.url).await);

    // actix-http's: the same GET with an (empty) chunked body, on the same connection.
    let before = metrics(&c, &gw.url).await;
    conn.send(
        b"GET /users/ping HTTP/1.1\r\nHost: gw\r\nx-request-id: actix-1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await
    .unwrap();
    let actix = read(&mut conn, "the chunked GET").await;
    let actix_line = gw.expect_line("request_id=actix-1", WAIT);
    let actix_changed = changed(&before, &metrics(&c, &gw.url).await);

    assert_eq!(front.status, 200, "{}", front.summary());
    assert_eq!(front.body, actix.body);
    assert_eq!(header_names(&front), header_names(&actix));
    assert_eq!(front.header("x-request-id"), Some("front-1"));
    assert_eq!(actix.header("x-request-id"), Some("actix-1"));
    assert_eq!(
        shape(&front_line),
        shape(&actix_line),
        "{front_line}\n{actix_line}"
    );
    assert!(
        front_changed
            .iter()
            .any(|k| k.starts_with("gateway_requests_total")),
        "{front_changed:?}"
    );
    assert_eq!(front_changed, actix_changed);

    // The gateway's own error, both ways.
    conn.send(b"GET /nosuch/x HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let mut fresh = RawClient::connect(&gw.addr).await;
    fresh
        .send(b"GET /nosuch/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        .await
        .unwrap();
    let (front, actix) = (
        read(&mut conn, "404 (front)").await,
        read(&mut fresh, "404 (actix)").await,
    );
    assert_eq!((front.status, actix.status), (404, 404));
    assert_eq!(front.body, actix.body);
    assert_eq!(header_names(&front), header_names(&actix));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_resets_while_its_get_waits_is_logged_as_499_at_once() {
    use tokio::io::AsyncWriteExt;
    let gw = gateway("upstream: { request_timeout: 60s }\n");
    let c = Client::new();
    let replica = RawReplica::start(Behaviour::Silent).await;
    register(&c, &gw.url, "svc", &replica.url).await;
    let mut stream = tokio::net::TcpStream::connect(&gw.addr).await.unwrap();
    stream
        .write_all(b"GET /svc/x HTTP/1.1\r\nHost: gw\r\nx-request-id: gone-1\r\n\r\n")
        .await
        .unwrap();
    wait_until(WAIT, "the request reached the replica", || {
        replica.seen() == 1
    })
    .await;
    // A reset (not a half-close): the request is over for the client.
    stream.set_zero_linger().unwrap();
    drop(stream);
    let line = gw.expect_line("request_id=gone-1", WAIT);
    assert_eq!(log_field(&line, "status"), "499", "{line}");
    assert_eq!(log_field(&line, "service"), "svc", "{line}");
}
