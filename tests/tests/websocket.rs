//! WebSocket through the gateway: the handshake goes to a replica, the 101 comes back, and frames flow
//! both ways until a side closes or the tunnel idles out; `proxy.upgrades: false` refuses it with 403.

use std::time::{Duration, Instant};

use e2e::http::{health, register};
use e2e::process::free_port;
use e2e::raw::{Behaviour, RawClient, RawReplica};
use e2e::websocket::{self, op, Frame, SAMPLE_ACCEPT};
use e2e::{demo, eventually, gateway, Client};
use http::StatusCode;

const WAIT: Duration = Duration::from_secs(15);

/// `127.0.0.1:PORT` from `http://127.0.0.1:PORT`.
fn addr(url: &str) -> &str {
    url.trim_start_matches("http://")
}

fn frame(opcode: u8, payload: &[u8]) -> Frame {
    Frame {
        fin: true,
        opcode,
        payload: payload.to_vec(),
    }
}

async fn metrics(c: &Client, gw: &str) -> String {
    String::from_utf8(c.get(&format!("{gw}/metrics")).await.body.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_and_binary_frames_echo_through_the_gateway() {
    let gw = gateway("");
    let a = demo("a", &[]);
    let c = Client::new();
    register(&c, &gw.url, "chat", &a.url).await;

    let (hs, ws) = websocket::connect(addr(&gw.url), "/chat/ws", "X-Request-Id: ws-echo-1\r\n")
        .await
        .unwrap();
    assert_eq!(hs.status, 101, "{}", hs.head);
    // The replica's handshake answer, carried as it is, plus the gateway's own headers.
    assert_eq!(hs.header("sec-websocket-accept"), Some(SAMPLE_ACCEPT));
    assert_eq!(hs.header("upgrade"), Some("websocket"));
    assert!(hs
        .header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("upgrade")));
    assert_eq!(hs.header("x-replica"), Some("a"));
    assert_eq!(hs.header("x-request-id"), Some("ws-echo-1"));
    assert!(hs.header("content-length").is_none() && hs.header("transfer-encoding").is_none());
    let mut ws = ws.unwrap();

    // Several frames both ways, interleaved and pipelined.
    let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    ws.send_text("hello").await.unwrap();
    assert_eq!(
        ws.recv_within(WAIT).await.unwrap(),
        Some(frame(op::TEXT, b"hello"))
    );
    ws.send_binary(&[0, 1, 2, 255]).await.unwrap();
    ws.send_text("second").await.unwrap();
    ws.send_binary(&big).await.unwrap();
    assert_eq!(
        ws.recv_within(WAIT).await.unwrap(),
        Some(frame(op::BINARY, &[0, 1, 2, 255]))
    );
    assert_eq!(
        ws.recv_within(WAIT).await.unwrap(),
        Some(frame(op::TEXT, b"second"))
    );
    assert_eq!(
        ws.recv_within(WAIT).await.unwrap(),
        Some(frame(op::BINARY, &big))
    );
    ws.send(op::PING, true, b"p").await.unwrap();
    assert_eq!(
        ws.recv_within(WAIT).await.unwrap(),
        Some(frame(op::PONG, b"p"))
    );
    // A close handshake: the replica answers it and closes, and so the tunnel ends.
    ws.send(op::CLOSE, true, &1000u16.to_be_bytes())
        .await
        .unwrap();
    let rest = ws.until_closed(WAIT).await.unwrap();
    assert_eq!(rest, [frame(op::CLOSE, &1000u16.to_be_bytes())]);

    // One access-log line when the tunnel ended, with the bytes of both directions.
    let line = gw.expect_line("request_id=ws-echo-1", WAIT);
    assert!(line.contains("status=101"), "{line}");
    assert!(line.contains("path=/chat/ws"), "{line}");
    let bytes_in: u64 = field(&line, "bytes_in").parse().unwrap();
    let bytes: u64 = field(&line, "bytes").parse().unwrap();
    assert!(
        bytes > big.len() as u64 && bytes_in > big.len() as u64,
        "{line}"
    );
    // Counted once, as a 101; and the replica's 101 was a success.
    let m = metrics(&c, &gw.url).await;
    assert!(
        m.contains(r#"gateway_requests_total{service="chat",protocol="http",code="101"} 1"#),
        "{m}"
    );
    let h = health(&c, &gw.url, "chat", &a.url).await.unwrap();
    assert_eq!((h.requests, h.failures), (1, 0), "{h:?}");
}

/// The value of `key=` in a log line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let pat = format!(" {key}=");
    let start = line
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
        + pat.len();
    line[start..].split(' ').next().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_tunnel_closes_the_client_side() {
    let gw = gateway("");
    let mut a = demo("a", &[]);
    let c = Client::new();
    register(&c, &gw.url, "chat", &a.url).await;
    let (hs, ws) = websocket::connect(addr(&gw.url), "/chat/ws", "")
        .await
        .unwrap();
    assert_eq!(hs.status, 101, "{}", hs.head);
    let mut ws = ws.unwrap();
    ws.send_text("before").await.unwrap();
    assert_eq!(
        ws.recv_within(WAIT).await.unwrap(),
        Some(frame(op::TEXT, b"before"))
    );
    a.kill();
    let started = Instant::now();
    let frames = ws.until_closed(Duration::from_secs(10)).await.unwrap();
    assert!(frames.is_empty(), "{frames:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_is_down_is_skipped_before_the_handshake_and_charged() {
    let gw = gateway(
        "retry: { max_attempts: 3 }\nbreaker: { failure_threshold: 100 }\n\
         eviction: { failure_threshold: 100 }\n",
    );
    let dead = format!("http://127.0.0.1:{}", free_port());
    let a = demo("a", &[]);
    let c = Client::new();
    register(&c, &gw.url, "chat", &dead).await;
    register(&c, &gw.url, "chat", &a.url).await;
    // Round robin puts the dead replica first for one of two handshakes: every one still switches.
    for i in 0..4 {
        let (hs, ws) = websocket::connect(addr(&gw.url), "/chat/ws", "")
            .await
            .unwrap();
        assert_eq!(hs.status, 101, "handshake {i}: {}", hs.head);
        assert_eq!(hs.header("x-replica"), Some("a"));
        let mut ws = ws.unwrap();
        ws.send_text(&format!("n{i}")).await.unwrap();
        assert_eq!(
            ws.recv_within(WAIT).await.unwrap(),
            Some(frame(op::TEXT, format!("n{i}").as_bytes()))
        );
    }
    let h = health(&c, &gw.url, "chat", &dead).await.unwrap();
    assert!(h.failures >= 1, "the dead replica was never charged: {h:?}");
    let live = health(&c, &gw.url, "chat", &a.url).await.unwrap();
    assert_eq!((live.requests, live.failures), (4, 0), "{live:?}");
    let m = metrics(&c, &gw.url).await;
    assert!(
        m.contains(r#"gateway_requests_total{service="chat",protocol="http",code="101"} 4"#),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_switched_off_are_refused_with_403_and_never_reach_a_replica() {
    let gw = gateway("proxy: { upgrades: false }\n");
    let replica = RawReplica::start(Behaviour::Ok).await;
    let c = Client::new();
    register(&c, &gw.url, "chat", &replica.url).await;
    let (hs, ws) = websocket::connect(addr(&gw.url), "/chat/ws", "")
        .await
        .unwrap();
    assert!(ws.is_none());
    assert_eq!(hs.status, 403, "{}", hs.head);
    let r = c
        .request(
            http::Method::GET,
            &format!("{}/chat/ws", gw.url),
            &[
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "13"),
                ("sec-websocket-key", websocket::SAMPLE_KEY),
            ],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["error"], "upgrade_disabled", "{:?}", r.body);
    // Ordinary requests still go through; the refused handshake never did.
    assert_eq!(
        c.get(&format!("{}/chat/plain", gw.url)).await.status,
        StatusCode::OK
    );
    assert_eq!(replica.seen(), 1);
    assert!(replica.requests().iter().all(|r| !r.head.contains("/ws")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tunnel_is_closed_and_other_connections_are_unaffected() {
    let gw = gateway("proxy: { upgrade_idle_timeout: 700ms }\n");
    let a = demo("a", &[]);
    let c = Client::new();
    register(&c, &gw.url, "chat", &a.url).await;
    let (hs, ws) = websocket::connect(addr(&gw.url), "/chat/ws", "X-Request-Id: ws-idle\r\n")
        .await
        .unwrap();
    assert_eq!(hs.status, 101, "{}", hs.head);
    let mut ws = ws.unwrap();
    let opened = Instant::now();
    let mut quiet = opened;
    // Traffic keeps it open past the timeout.
    for i in 0..4 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        ws.send_text(&format!("t{i}")).await.unwrap();
        assert_eq!(
            ws.recv_within(WAIT).await.unwrap(),
            Some(frame(op::TEXT, format!("t{i}").as_bytes()))
        );
        quiet = Instant::now();
        // Keep-alive requests on another connection go on meanwhile.
        let r = c.get(&format!("{}/chat/hello", gw.url)).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    // Then silence: the gateway closes it after the idle timeout.
    let frames = ws.until_closed(WAIT).await.unwrap();
    assert!(frames.is_empty(), "{frames:?}");
    let waited = quiet.elapsed();
    assert!(
        waited >= Duration::from_millis(500),
        "closed after {waited:?}"
    );
    assert!(opened.elapsed() >= Duration::from_millis(1_700));
    let line = gw.expect_line("request_id=ws-idle", WAIT);
    assert!(line.contains("status=101"), "{line}");
    // The pool and the listener are fine afterwards.
    eventually(WAIT, "a request after the tunnel", || async {
        (c.get(&format!("{}/chat/hello", gw.url)).await.status == StatusCode::OK).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_101_answer_is_an_ordinary_response() {
    let gw = gateway("");
    let a = demo("a", &[]);
    let c = Client::new();
    register(&c, &gw.url, "chat", &a.url).await;
    // /hello is no WebSocket endpoint: the demo answers it 200 with JSON, which the client gets.
    let (hs, ws) = websocket::connect(addr(&gw.url), "/chat/hello", "")
        .await
        .unwrap();
    assert!(ws.is_none());
    assert_eq!(hs.status, 200, "{}", hs.head);
    assert_eq!(hs.header("x-replica"), Some("a"));
    let m = metrics(&c, &gw.url).await;
    assert!(
        m.contains(r#"gateway_requests_total{service="chat",protocol="http",code="200"} 1"#),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_half_close_still_gets_the_replicas_last_frames() {
    let gw = gateway("");
    let a = demo("a", &[]);
    let c = Client::new();
    register(&c, &gw.url, "chat", &a.url).await;
    let (hs, ws) = websocket::connect(addr(&gw.url), "/chat/ws", "")
        .await
        .unwrap();
    assert_eq!(hs.status, 101, "{}", hs.head);
    let mut ws = ws.unwrap();
    ws.send_text("last words").await.unwrap();
    ws.shutdown_write().await.unwrap();
    // The half-close reaches the replica after the frame; its echo still comes back, then the end.
    let frames = ws.until_closed(WAIT).await.unwrap();
    assert_eq!(frames, [frame(op::TEXT, b"last words")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_the_gateway_does_not_carry_keep_the_connection_framed() {
    let gw = gateway("");
    let a = demo("a", &[]);
    let c = Client::new();
    register(&c, &gw.url, "chat", &a.url).await;
    // An h2c upgrade is declined: the replica never sees `Upgrade`, and the answer says the connection
    // closes after it (actix-http ends a connection whose request asked for an upgrade), so the request
    // pipelined behind it is not silently lost.
    let mut raw = RawClient::connect(addr(&gw.url)).await;
    raw.send(
        b"GET /chat/echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n\
          Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n\
          GET /chat/hello HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    let first = raw.read_response(WAIT).await.unwrap();
    assert_eq!(first.status, 200, "{}", first.summary());
    assert!(first.closes(), "{:?}", first.headers);
    let seen = first.json()["headers"].to_string().to_ascii_lowercase();
    assert!(
        !seen.contains("\"upgrade\"") && !seen.contains("http2-settings"),
        "{seen}"
    );
    let (_, closed) = raw.wait_closed(WAIT).await;
    assert!(closed);
    // Without `Connection: upgrade` the header means nothing to the server: requests go on framed.
    let mut raw = RawClient::connect(addr(&gw.url)).await;
    raw.send(
        b"GET /chat/echo HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nContent-Length: 2\r\n\r\nhi\
          GET /chat/hello HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    for _ in 0..2 {
        let r = raw.read_response(WAIT).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.summary());
        assert!(!r.closes(), "{:?}", r.headers);
    }

    // A WebSocket handshake answered without a 101: the answer, then the connection closes (the
    // server reads a handshake's bytes to the end of the connection, so nothing after it is a request).
    let mut raw = RawClient::connect(addr(&gw.url)).await;
    raw.send(
        b"GET /chat/hello HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let answer = raw.read_response(WAIT).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.summary());
    assert!(answer.closes(), "{:?}", answer.headers);
    let (_, closed) = raw.wait_closed(WAIT).await;
    assert!(closed);
}
