//! Any `Upgrade` protocol through the gateway, carried like WebSocket: a replica speaking a made-up
//! protocol (`echo/1`: after the 101 every byte comes back, and `<eof>` after the client's half-close)
//! gets the handshake with its `Upgrade`, the 101 comes back, raw bytes flow both ways; a replica that
//! is down is skipped before the switch; `proxy.upgrades: false` refuses it with 403; a replica that
//! answers without switching gives an ordinary response; an idle tunnel is closed.
//!
//! The replica runs in this process on hyper: actix-web (the demo services' server) hands a handler the
//! bytes after a head only for WebSocket, so it cannot serve a protocol of its own this way.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use e2e::http::{health, register};
use e2e::process::free_port;
use e2e::{eventually, gateway, Client};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(15);

/// An `echo/1` replica: `GET` with `Connection: upgrade` and `Upgrade: echo/1` is switched and echoed;
/// anything else is answered 200 `plain` (no switch).
struct EchoReplica {
    url: String,
    /// The head of every request it got.
    seen: Arc<Mutex<Vec<HeaderMap>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EchoReplica {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EchoReplica {
    async fn start(name: &'static str) -> EchoReplica {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        log.lock().unwrap().push(req.headers().clone());
                        async move { Ok::<_, Infallible>(answer(name, req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        EchoReplica { url, seen, task }
    }

    fn seen(&self) -> Vec<HeaderMap> {
        self.seen.lock().unwrap().clone()
    }
}

fn answer(name: &'static str, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    let asks = |h: &str, want: &str| {
        req.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(want)))
    };
    if !(asks("connection", "upgrade") && asks("upgrade", "echo/1")) {
        return Response::builder()
            .header("x-replica", name)
            .body(Full::new(Bytes::from_static(b"plain")))
            .unwrap();
    }
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut io = TokioIo::new(upgraded);
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if io.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = io.write_all(b"<eof>").await;
        let _ = io.shutdown().await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", "echo/1")
        .header("x-replica", name)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// A client connection that sent an upgrade handshake; `head` is the response head, `rest` what came
/// after it.
struct Handshake {
    stream: TcpStream,
    status: u16,
    head: String,
    rest: Vec<u8>,
}

impl Handshake {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// Reads exactly `n` tunnel bytes (after any that came with the head).
    async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.rest);
        while out.len() < n {
            let mut chunk = vec![0u8; 64 * 1024];
            let got = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
                .await
                .expect("tunnel bytes in time")
                .unwrap();
            assert!(got > 0, "closed after {} of {n} bytes", out.len());
            out.extend_from_slice(&chunk[..got]);
        }
        self.rest = out.split_off(n);
        out
    }

    /// Everything up to the end of the connection.
    async fn read_to_close(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.rest);
        tokio::time::timeout(WAIT, self.stream.read_to_end(&mut out))
            .await
            .expect("the connection closes in time")
            .unwrap();
        out
    }
}

/// Sends `GET {path}` with `Connection: Upgrade`, `Upgrade: {protocol}` (and `early` bytes right behind
/// the head) to the gateway at `gw`, and reads the response head.
async fn handshake(gw: &str, path: &str, protocol: &str, early: &[u8]) -> Handshake {
    let addr = gw.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n\r\n"
    );
    stream
        .write_all(&[head.as_bytes(), early].concat())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .expect("a response head in time")
            .unwrap();
        assert!(
            n > 0,
            "closed before a head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Handshake {
        stream,
        status,
        head,
        rest: buf[end..].to_vec(),
    }
}

async fn metrics(c: &Client, gw: &str) -> String {
    String::from_utf8(c.get(&format!("{gw}/metrics")).await.body.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_of_its_own_is_carried_both_ways_until_the_client_half_closes() {
    let gw = gateway("");
    let echo = EchoReplica::start("e").await;
    let c = Client::new();
    register(&c, &gw.url, "pipe", &echo.url).await;

    // Bytes sent right behind the head, before any answer, belong to the tunnel.
    let mut hs = handshake(&gw.url, "/pipe/socket", "echo/1", b"early").await;
    assert_eq!(hs.status, 101, "{}", hs.head);
    assert_eq!(hs.header("upgrade"), Some("echo/1"));
    assert!(hs
        .header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("upgrade")));
    assert_eq!(hs.header("x-replica"), Some("e"));
    assert!(hs.header("content-length").is_none() && hs.header("transfer-encoding").is_none());
    assert_eq!(hs.read_exact(5).await, b"early");

    // Raw bytes both ways, bigger than any buffer on the way, never chunk-coded.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    hs.stream.write_all(&big).await.unwrap();
    assert!(hs.read_exact(big.len()).await == big);
    hs.stream.write_all(b"\r\n0\r\n\r\n").await.unwrap();
    assert_eq!(hs.read_exact(7).await, b"\r\n0\r\n\r\n");

    // The half-close reaches the replica, whose last bytes still come back; then the connection ends.
    hs.stream.shutdown().await.unwrap();
    assert_eq!(hs.read_to_close().await, b"<eof>");

    // The replica got the handshake with its upgrade headers and the gateway's forwarding headers.
    let seen = echo.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["upgrade"], "echo/1");
    assert_eq!(seen[0]["connection"], "upgrade");
    assert!(seen[0].contains_key("x-forwarded-for"), "{:?}", seen[0]);
    let m = metrics(&c, &gw.url).await;
    assert!(
        m.contains(r#"gateway_requests_total{service="pipe",protocol="http",code="101"} 1"#),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_is_down_is_skipped_before_the_switch() {
    let gw = gateway(
        "retry: { max_attempts: 3 }\nbreaker: { failure_threshold: 100 }\n\
         eviction: { failure_threshold: 100 }\n",
    );
    let dead = format!("http://127.0.0.1:{}", free_port());
    let echo = EchoReplica::start("e").await;
    let c = Client::new();
    register(&c, &gw.url, "pipe", &dead).await;
    register(&c, &gw.url, "pipe", &echo.url).await;
    // Round robin puts the dead replica first for one of two handshakes: every one still switches.
    for i in 0..4 {
        let mut hs = handshake(&gw.url, "/pipe/socket", "echo/1", b"").await;
        assert_eq!(hs.status, 101, "handshake {i}: {}", hs.head);
        let msg = format!("n{i}");
        hs.stream.write_all(msg.as_bytes()).await.unwrap();
        assert_eq!(hs.read_exact(msg.len()).await, msg.as_bytes());
    }
    let h = health(&c, &gw.url, "pipe", &dead).await.unwrap();
    assert!(h.failures >= 1, "the dead replica was never charged: {h:?}");
    let live = health(&c, &gw.url, "pipe", &echo.url).await.unwrap();
    assert_eq!((live.requests, live.failures), (4, 0), "{live:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_switched_off_refuse_any_protocol_with_403() {
    let gw = gateway("proxy: { upgrades: false }\n");
    let echo = EchoReplica::start("e").await;
    let c = Client::new();
    register(&c, &gw.url, "pipe", &echo.url).await;
    let mut hs = handshake(&gw.url, "/pipe/socket", "echo/1", b"").await;
    assert_eq!(hs.status, 403, "{}", hs.head);
    let body = hs.read_to_close().await;
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"], "upgrade_disabled", "{json}");
    assert!(
        json["message"].as_str().unwrap().contains("echo/1"),
        "{json}"
    );
    assert!(echo.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_does_not_switch_gives_an_ordinary_response() {
    let gw = gateway("");
    let echo = EchoReplica::start("e").await;
    let c = Client::new();
    register(&c, &gw.url, "pipe", &echo.url).await;
    // The replica does not speak `other/2`: it answers 200, which the client gets as it is, and the
    // connection closes after it (bytes sent behind the head were never a request).
    let mut hs = handshake(&gw.url, "/pipe/socket", "other/2", b"junk").await;
    assert_eq!(hs.status, 200, "{}", hs.head);
    assert_eq!(hs.header("x-replica"), Some("e"));
    assert!(hs
        .header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close")));
    assert_eq!(hs.read_to_close().await, b"plain");
    let seen = echo.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["upgrade"], "other/2");
    // An h2c upgrade is declined by the gateway itself: the replica never sees `Upgrade`.
    let mut hs = handshake(&gw.url, "/pipe/socket", "h2c", b"").await;
    assert_eq!(hs.status, 200, "{}", hs.head);
    assert_eq!(hs.read_to_close().await, b"plain");
    let seen = echo.seen();
    assert!(!seen[1].contains_key("upgrade"), "{:?}", seen[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tunnel_of_any_protocol_is_closed() {
    let gw = gateway("proxy: { upgrade_idle_timeout: 600ms }\n");
    let echo = EchoReplica::start("e").await;
    let c = Client::new();
    register(&c, &gw.url, "pipe", &echo.url).await;
    let mut hs = handshake(&gw.url, "/pipe/socket", "echo/1", b"").await;
    assert_eq!(hs.status, 101, "{}", hs.head);
    hs.stream.write_all(b"ping").await.unwrap();
    assert_eq!(hs.read_exact(4).await, b"ping");
    let quiet = Instant::now();
    assert_eq!(hs.read_to_close().await, b"");
    let waited = quiet.elapsed();
    assert!(
        waited >= Duration::from_millis(450),
        "closed after {waited:?}"
    );
    // The listener is fine afterwards.
    eventually(WAIT, "a request after the tunnel", || async {
        (c.get(&format!("{}/pipe/hello", gw.url)).await.status == StatusCode::OK).then_some(())
    })
    .await;
}
