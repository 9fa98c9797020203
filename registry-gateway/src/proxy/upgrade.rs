//! Protocol upgrades (WebSocket or any other `Upgrade` protocol) through the HTTP proxy: the handshake
//! goes to a replica like any request, and after its `101 Switching Protocols` the bytes are relayed
//! both ways until a side closes or the tunnel idles out.
//!
//! The decisions (is this an upgrade, may a failed attempt move on, what a refusal is) are pure functions
//! at the top; the connection, the attempt and the relay follow. A tunnel always has its own upstream
//! connection, never taken from or returned to the keep-alive pool. The client's bytes after the 101
//! come from the connection's gate ([`GateHandle::switch`]), the same way for every protocol.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_http::ConnectionType;
use actix_web::body::{BodySize, MessageBody};
use actix_web::http::{header as ax, StatusCode, Version};
use actix_web::web::Bytes;
use actix_web::HttpResponse;
use futures_util::StreamExt;
use http_body_util::Empty;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{headers, ProxySettings};
use crate::clock;
use crate::framing::GateHandle;
use crate::observe::Exchange;
use crate::policy::{FailureCause, Outcome};
use crate::registry::{AttemptRecord, Replica};

/// What a request's `Connection`/`Upgrade` headers ask of the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UpgradeDecision {
    /// No upgrade the gateway carries: a normal request (an `Upgrade` it does not carry is dropped as
    /// hop-by-hop, and the replica answers in HTTP/1.1, as RFC 9110 §7.8 lets a server do).
    Plain,
    /// An upgrade handshake, forwarded with `Upgrade: <protocols>` and tunnelled after a 101.
    Tunnel(http::HeaderValue),
    /// An upgrade handshake while `proxy.upgrades` is off: refused, nothing goes upstream. Names the
    /// protocols asked for.
    Refuse(String),
}

/// Classifies a request. Carried: an HTTP/1.1 request with a `Connection: upgrade` token, an `Upgrade`
/// naming at least one protocol other than `h2c`, and no body (no `Transfer-Encoding`, no
/// `Content-Length` above 0). `h2c` is never carried: it would switch the client's connection to HTTP/2
/// with the replica, past the gateway's routing of every later request; it is dropped from the list
/// (alone, the request is a plain one), as nginx does. A handshake with a body is a plain request too:
/// the switch would come after a body the gateway has to forward first.
pub(crate) fn classify(
    version: Version,
    headers: &ax::HeaderMap,
    enabled: bool,
) -> UpgradeDecision {
    let asks_upgrade = headers
        .get_all(ax::CONNECTION)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let protocols = headers
        .get_all(ax::UPGRADE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.eq_ignore_ascii_case("h2c"))
        .collect::<Vec<_>>()
        .join(", ");
    let body = headers.contains_key(ax::TRANSFER_ENCODING)
        || headers
            .get(ax::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes().trim_ascii() != b"0");
    if version != Version::HTTP_11 || !asks_upgrade || protocols.is_empty() || body {
        return UpgradeDecision::Plain;
    }
    match (enabled, http::HeaderValue::from_str(&protocols)) {
        (false, _) => UpgradeDecision::Refuse(protocols),
        (true, Ok(value)) => UpgradeDecision::Tunnel(value),
        (true, Err(_)) => UpgradeDecision::Plain,
    }
}

/// The upgrade headers the replica gets back, after hop-by-hop stripping removed them.
pub(crate) fn restore_upgrade_headers(out: &mut http::HeaderMap, protocols: &http::HeaderValue) {
    out.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("upgrade"),
    );
    out.insert(http::header::UPGRADE, protocols.clone());
}

/// Why a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TunnelEnd {
    /// The replica closed its side (or its connection broke).
    ReplicaClosed,
    /// The client went away.
    ClientClosed,
    /// No byte either way for `proxy.upgrade_idle_timeout`.
    Idle,
}

impl TunnelEnd {
    fn as_str(self) -> &'static str {
        match self {
            TunnelEnd::ReplicaClosed => "replica_closed",
            TunnelEnd::ClientClosed => "client_closed",
            TunnelEnd::Idle => "idle_timeout",
        }
    }
}

/// What one upgrade attempt came to.
pub(crate) enum UpgradeAttempt {
    /// 101: the client's response, with the tunnel running behind it.
    Switched(Box<HttpResponse<TunnelBody>>),
    /// Any other status, for the client as it is (its body is streamed; the connection is not pooled).
    Answered(hyper::Response<hyper::body::Incoming>),
    /// No answer.
    Failed(FailureCause),
}

/// Opens a fresh connection to `address` that can be upgraded (never pooled): TCP, then TLS (ALPN
/// `http/1.1`) for an `https://` replica, both within `connect_timeout`.
async fn connect(
    address: &crate::registry::ReplicaAddress,
    tls: &crate::tls::UpstreamTls,
    connect_timeout: Duration,
) -> Result<SendRequest<Empty<Bytes>>, FailureCause> {
    let deadline = crate::clock::deadline(connect_timeout);
    handshake(crate::tls::dial(address, tls, false, deadline).await?).await
}

/// HTTP/1.1 with upgrades over `io`; the connection runs on this worker's task set.
async fn handshake<T>(io: T) -> Result<SendRequest<Empty<Bytes>>, FailureCause>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|_| FailureCause::Connect)?;
    tokio::task::spawn_local(async move {
        // Errors here reach the handshake's response future.
        let _ = conn.with_upgrades().await;
    });
    Ok(sender)
}

/// One upgrade attempt: the handshake (asking for `protocols`) to `replica`, and on its 101 the tunnel,
/// relaying the client's connection (`gate`, switched) until either side closes or it idles for
/// `proxy.upgrade_idle_timeout`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn attempt(
    replica: &Replica,
    method: &http::Method,
    uri: &http::Uri,
    mut headers: http::HeaderMap,
    protocols: &http::HeaderValue,
    settings: &ProxySettings,
    gate: &GateHandle,
    record: &mut Option<AttemptRecord>,
) -> UpgradeAttempt {
    let authority = replica.address().authority();
    let mut sender = match connect(
        replica.address(),
        &settings.upstream_tls,
        settings.connect_timeout,
    )
    .await
    {
        Ok(s) => s,
        Err(cause) => return UpgradeAttempt::Failed(cause),
    };
    restore_upgrade_headers(&mut headers, protocols);
    headers::set_host(&mut headers, authority);
    let mut req = hyper::Request::new(Empty::new());
    *req.method_mut() = method.clone();
    *req.uri_mut() = uri.clone();
    *req.headers_mut() = headers;
    let resp = match tokio::time::timeout(settings.request_timeout, sender.send_request(req)).await
    {
        Err(_) => return UpgradeAttempt::Failed(FailureCause::Timeout),
        Ok(Err(_)) => return UpgradeAttempt::Failed(FailureCause::Transport),
        Ok(Ok(resp)) => resp,
    };
    if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        return UpgradeAttempt::Answered(resp);
    }
    let mut resp = resp;
    let Ok(upgraded) = hyper::upgrade::on(&mut resp).await else {
        return UpgradeAttempt::Failed(FailureCause::Transport);
    };
    // A 101 is the replica's success; the tunnel that follows is no request latency.
    if let Some(mut r) = record.take() {
        r.head_arrived(None);
        r.finish(Outcome::Success);
    }
    let (tx, rx) = mpsc::channel(4);
    let uploaded = Rc::new(Cell::new(0u64));
    let started = clock::now();
    let relay = relay(
        TokioIo::new(upgraded),
        gate.switch(),
        tx,
        settings.upgrade_idle_timeout,
        Rc::clone(&uploaded),
    );
    let address = replica.address().to_string();
    tokio::task::spawn_local(async move {
        let end = relay.await;
        let lasted = clock::now().saturating_duration_since(started);
        tracing::debug!(replica = %address, end = end.as_str(), lasted_ms = lasted.as_millis() as u64, "tunnel closed");
    });
    let mut out = HttpResponse::with_body(
        StatusCode::SWITCHING_PROTOCOLS,
        TunnelBody {
            rx,
            sent: 0,
            uploaded,
            exchange: None,
            gate: gate.clone(),
        },
    );
    headers::to_client(resp.headers(), false, out.headers_mut());
    // The protocol the replica switched to (a 101 must name it; else the first one asked for).
    let switched = resp
        .headers()
        .get(http::header::UPGRADE)
        .unwrap_or(protocols);
    if let Ok(v) = ax::HeaderValue::from_bytes(switched.as_bytes()) {
        out.headers_mut().insert(ax::UPGRADE, v);
    }
    out.head_mut().set_connection_type(ConnectionType::Upgrade);
    // The replica's bytes go out raw, never chunked (actix-http would chunk a streamed body of a
    // request it did not read as a stream itself).
    out.head_mut().no_chunking(true);
    UpgradeAttempt::Switched(Box::new(out))
}

/// Relays bytes both ways. The client's end of stream is passed on as a half-close (the replica may go
/// on sending); the replica's end closes the tunnel, since actix-http cannot half-close a client
/// connection. Any byte either way restarts the idle clock.
async fn relay<U, C, E>(
    upstream: U,
    mut client: C,
    to_client: mpsc::Sender<Bytes>,
    idle_timeout: Duration,
    uploaded: Rc<Cell<u64>>,
) -> TunnelEnd
where
    U: tokio::io::AsyncRead + tokio::io::AsyncWrite,
    C: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
{
    let (mut up_read, mut up_write) = tokio::io::split(upstream);
    let last = Cell::new(clock::now());
    let client_to_replica = async {
        while let Some(Ok(chunk)) = client.next().await {
            if up_write.write_all(&chunk).await.is_err() {
                return;
            }
            uploaded.set(uploaded.get() + chunk.len() as u64);
            last.set(clock::now());
        }
        let _ = up_write.shutdown().await;
        // Half-closed: the replica's side goes on until it closes.
        std::future::pending::<()>().await;
    };
    let replica_to_client = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match up_read.read(&mut buf).await {
                Ok(0) | Err(_) => return TunnelEnd::ReplicaClosed,
                Ok(n) => {
                    last.set(clock::now());
                    if to_client
                        .send(Bytes::copy_from_slice(&buf[..n]))
                        .await
                        .is_err()
                    {
                        return TunnelEnd::ClientClosed;
                    }
                    last.set(clock::now());
                }
            }
        }
    };
    let idle = async {
        loop {
            let deadline = last.get() + idle_timeout;
            if clock::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
        }
    };
    tokio::select! {
        end = replica_to_client => end,
        () = client_to_replica => TunnelEnd::ClientClosed,
        () = to_client.closed() => TunnelEnd::ClientClosed,
        () = idle => TunnelEnd::Idle,
    }
}

/// The 101 response's body: the replica's bytes, written raw to the client. The request's access-log
/// line is written when it is dropped (the tunnel ended), with the bytes of both directions; its end
/// tells the gate the connection may close.
pub(crate) struct TunnelBody {
    rx: mpsc::Receiver<Bytes>,
    sent: u64,
    uploaded: Rc<Cell<u64>>,
    exchange: Option<Exchange>,
    gate: GateHandle,
}

impl TunnelBody {
    /// Hands the client's request to the body: it was counted at the 101 ([`Exchange::switched`]) and is
    /// logged when the tunnel ends.
    pub(crate) fn observed(mut self, mut ex: Exchange) -> Self {
        ex.switched();
        self.exchange = Some(ex);
        self
    }
}

impl Drop for TunnelBody {
    fn drop(&mut self) {
        self.gate.end_tunnel();
        if let Some(mut ex) = self.exchange.take() {
            ex.finish_tunnel(self.sent, self.uploaded.get());
        }
    }
}

impl MessageBody for TunnelBody {
    type Error = std::convert::Infallible;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(b)) => {
                this.sent += b.len() as u64;
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(None) => {
                this.gate.end_tunnel();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::headers::tests::client as headers;

    fn tunnel(protocols: &'static str) -> UpgradeDecision {
        UpgradeDecision::Tunnel(http::HeaderValue::from_static(protocols))
    }

    #[test]
    fn any_upgrade_handshake_is_tunnelled_or_refused() {
        let cases: &[(&[(&'static str, &'static str)], &'static str)] = &[
            (
                &[
                    ("connection", "keep-alive, Upgrade"),
                    ("upgrade", "WebSocket"),
                ],
                "WebSocket",
            ),
            (
                &[("connection", "upgrade"), ("upgrade", "echo/1")],
                "echo/1",
            ),
            // A body of length 0 is no body.
            (
                &[
                    ("connection", "upgrade"),
                    ("upgrade", "TLS/1.0, echo/1"),
                    ("content-length", "0"),
                ],
                "TLS/1.0, echo/1",
            ),
            // h2c is dropped from the list, the rest is carried.
            (
                &[("connection", "upgrade"), ("upgrade", "h2c, websocket")],
                "websocket",
            ),
        ];
        for (pairs, protocols) in cases {
            let h = headers(pairs);
            assert_eq!(
                classify(Version::HTTP_11, &h, true),
                tunnel(protocols),
                "{pairs:?}"
            );
            assert_eq!(
                classify(Version::HTTP_11, &h, false),
                UpgradeDecision::Refuse(protocols.to_string()),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn anything_else_is_a_plain_request() {
        let cases: &[(Version, &[(&'static str, &'static str)])] = &[
            // No Connection: upgrade token.
            (Version::HTTP_11, &[("upgrade", "websocket")]),
            (
                Version::HTTP_11,
                &[("connection", "upgraded"), ("upgrade", "websocket")],
            ),
            // No protocol, or only h2c (never carried).
            (Version::HTTP_11, &[("connection", "upgrade")]),
            (
                Version::HTTP_11,
                &[("connection", "upgrade"), ("upgrade", " , ")],
            ),
            (
                Version::HTTP_11,
                &[
                    ("connection", "upgrade, HTTP2-Settings"),
                    ("upgrade", "h2c"),
                ],
            ),
            // HTTP/1.0 has no upgrades, HTTP/2 none of this kind.
            (
                Version::HTTP_10,
                &[("connection", "upgrade"), ("upgrade", "websocket")],
            ),
            (Version::HTTP_2, &[("upgrade", "websocket")]),
            // A handshake with a body.
            (
                Version::HTTP_11,
                &[
                    ("connection", "upgrade"),
                    ("upgrade", "websocket"),
                    ("transfer-encoding", "chunked"),
                ],
            ),
            (
                Version::HTTP_11,
                &[
                    ("connection", "upgrade"),
                    ("upgrade", "echo/1"),
                    ("content-length", "2"),
                ],
            ),
            (Version::HTTP_11, &[]),
        ];
        for (version, pairs) in cases {
            for enabled in [true, false] {
                assert_eq!(
                    classify(*version, &headers(pairs), enabled),
                    UpgradeDecision::Plain,
                    "{version:?} {pairs:?}"
                );
            }
        }
    }

    #[test]
    fn only_an_attempt_that_never_reached_the_replica_moves_on() {
        use crate::policy::{Attempts, BodyReplay, Next, Outcome, Report, RetryPolicy};
        // The proxy drives a handshake as not idempotent, whatever its method.
        let after = |cause: FailureCause, sent: bool| {
            let mut a = Attempts::new(RetryPolicy { max_attempts: 3 }, false);
            a.start();
            a.after(Report {
                outcome: Outcome::Failure(cause),
                sent,
                body: BodyReplay::Replayable,
                replicas: 3,
                has_response: false,
            })
        };
        assert_eq!(after(FailureCause::Connect, false), Next::Pick);
        assert_eq!(after(FailureCause::ConnectTimeout, false), Next::Pick);
        for sent in [
            FailureCause::Timeout,
            FailureCause::Transport,
            FailureCause::Status(502),
            FailureCause::Truncated,
        ] {
            assert_ne!(after(sent, true), Next::Pick, "{sent:?}");
        }
    }

    /// A tunnel between a duplex "replica" and a channel "client", on paused time.
    struct Rig {
        replica: tokio::io::DuplexStream,
        client: mpsc::UnboundedSender<Result<Bytes, ()>>,
        to_client: mpsc::Receiver<Bytes>,
        uploaded: Rc<Cell<u64>>,
        relay: tokio::task::JoinHandle<TunnelEnd>,
    }

    fn rig(idle: Duration) -> Rig {
        let (replica, upstream) = tokio::io::duplex(64 * 1024);
        let (client, mut client_rx) = mpsc::unbounded_channel();
        let client_rx = futures_util::stream::poll_fn(move |cx| client_rx.poll_recv(cx));
        let (tx, to_client) = mpsc::channel(4);
        let uploaded = Rc::new(Cell::new(0));
        let relay =
            tokio::task::spawn_local(relay(upstream, client_rx, tx, idle, Rc::clone(&uploaded)));
        Rig {
            replica,
            client,
            to_client,
            uploaded,
            relay,
        }
    }

    async fn local<F: std::future::Future>(f: F) -> F::Output {
        tokio::task::LocalSet::new().run_until(f).await
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_go_both_ways_and_each_restarts_the_idle_clock() {
        local(async {
            let mut r = rig(Duration::from_secs(10));
            let t0 = tokio::time::Instant::now();
            // t=0..9s: client → replica; t=9..18s: replica → client; idle from t=18s, closed at t=28s.
            r.client.send(Ok(Bytes::from_static(b"up"))).unwrap();
            let mut buf = [0u8; 2];
            r.replica.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"up");
            tokio::time::sleep(Duration::from_secs(9)).await;
            r.replica.write_all(b"down").await.unwrap();
            assert_eq!(r.to_client.recv().await.unwrap(), "down");
            tokio::time::sleep(Duration::from_secs(9)).await;
            r.client.send(Ok(Bytes::from_static(b"!"))).unwrap();
            assert_eq!(r.relay.await.unwrap(), TunnelEnd::Idle);
            assert_eq!(t0.elapsed(), Duration::from_secs(28));
            assert_eq!(r.uploaded.get(), 3);
            // Both sides are closed: the replica reads its end, the client's body ends.
            let mut rest = Vec::new();
            r.replica.read_to_end(&mut rest).await.unwrap();
            assert_eq!(rest, b"!");
            assert_eq!(r.to_client.recv().await, None);
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_half_close_reaches_the_replica_which_may_still_answer() {
        local(async {
            let mut r = rig(Duration::from_secs(300));
            r.client.send(Ok(Bytes::from_static(b"last"))).unwrap();
            drop(r.client);
            let mut got = Vec::new();
            r.replica.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"last");
            r.replica.write_all(b"reply").await.unwrap();
            assert_eq!(r.to_client.recv().await.unwrap(), "reply");
            drop(r.replica);
            assert_eq!(r.relay.await.unwrap(), TunnelEnd::ReplicaClosed);
            assert_eq!(r.to_client.recv().await, None);
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_goes_away_ends_the_tunnel_and_closes_the_replica() {
        local(async {
            let mut r = rig(Duration::from_secs(300));
            drop(r.to_client);
            assert_eq!(r.relay.await.unwrap(), TunnelEnd::ClientClosed);
            let mut rest = Vec::new();
            r.replica.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty());
        })
        .await;
    }

    #[test]
    fn the_replica_gets_the_upgrade_headers_back() {
        let mut out = http::HeaderMap::new();
        restore_upgrade_headers(&mut out, &http::HeaderValue::from_static("echo/1"));
        assert_eq!(out["connection"], "upgrade");
        assert_eq!(out["upgrade"], "echo/1");
    }
}
