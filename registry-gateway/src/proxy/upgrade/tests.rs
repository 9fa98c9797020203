//! Upgrade handshakes: which requests tunnel, which attempts move on, and the relay on real sockets.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::tunnel::TunnelEnd;
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
