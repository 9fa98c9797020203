//! Hostile clients: what a client does wrong is never charged to a replica, and idle uploads cost the
//! gateway little memory and are cut off by `client.body_timeout`.
//!
//! Every test talks raw HTTP/1.1 on a TCP socket, and checks both what the client got and what the
//! registry says about the replica afterwards.

use std::time::{Duration, Instant};

use e2e::http::{health, register, Health};
use e2e::raw::{poll_until, wait_until, Behaviour, RawClient, RawError, RawReplica};
use e2e::{demo, gateway, Client, Proc};
use http::StatusCode;

/// Breaker opens at 3, eviction at 5: six charged failures would open and evict the replica.
const POLICY: &str =
    "breaker: { failure_threshold: 3, open_timeout: 10s }\neviction: { failure_threshold: 5 }\n\
                      lease: { ttl: 10m, heartbeat_interval: 1m }\n";

async fn counters(c: &Client, gw: &Proc, address: &str) -> Health {
    health(c, &gw.url, "svc", address).await.unwrap_or_else(|| {
        panic!(
            "{address} is no longer registered; gateway output:\n{}",
            gw.output()
        )
    })
}

/// Six uploads that the client abandons mid-body, each after the replica got the request head.
async fn abandon_six_uploads(head: &str, first_bytes: &[u8]) {
    let gw = gateway(&format!("{POLICY}upstream: {{ request_timeout: 5s }}\n"));
    let replica = RawReplica::start(Behaviour::Ok).await;
    let c = Client::new();
    register(&c, &gw.url, "svc", &replica.url).await;
    for i in 0..6 {
        let mut conn = RawClient::connect(&gw.addr).await;
        conn.send(head.as_bytes()).await.unwrap();
        conn.send(first_bytes).await.unwrap();
        // The upload is under way: the replica has the head (and is reading the body).
        if !poll_until(Duration::from_secs(10), || replica.seen() > i).await {
            let resp = conn.read_response(Duration::from_secs(1)).await;
            panic!(
                "upload {i} never reached the replica; the client got {:?}; replica: {:?}",
                resp.map(|r| r.summary()),
                health(&c, &gw.url, "svc", &replica.url).await
            );
        }
        drop(conn);
        // The gateway noticed the client left and ended the replica's side of the upload.
        wait_until(
            Duration::from_secs(10),
            "the upload ends at the replica",
            || replica.requests().len() > i,
        )
        .await;
        assert!(!replica.requests()[i].body_complete);
    }
    // Whatever the gateway records for the abandoned uploads, it has recorded by the time it answers a
    // request on the same worker pool; the replica must still be registered, closed and clean.
    let r = c.get(&format!("{}/svc/after", gw.url)).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a normal request after the aborted uploads: {:?}\n{}",
        r.body,
        gw.output()
    );
    let h = counters(&c, &gw, &replica.url).await;
    assert!(
        h.is_clean(),
        "client aborts were charged to the replica: {h:?}"
    );
    assert!(
        gw.lines_with("[CIRCUIT]").is_empty() && gw.lines_with("[EVICT]").is_empty(),
        "{}",
        gw.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_the_client_abandons_mid_body_are_never_charged_to_the_replica() {
    abandon_six_uploads(
        "POST /svc/up HTTP/1.1\r\nHost: gw\r\nContent-Type: application/octet-stream\r\nContent-Length: 200000\r\n\r\n",
        &[b'a'; 1000],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_uploads_the_client_abandons_mid_stream_are_never_charged_to_the_replica() {
    let mut chunk = b"3e8\r\n".to_vec();
    chunk.extend_from_slice(&[b'a'; 1000]);
    chunk.extend_from_slice(b"\r\n");
    abandon_six_uploads(
        "POST /svc/up HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n",
        &chunk,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_slower_than_request_timeout_still_gets_the_replicas_answer() {
    // request_timeout counts from the last request byte: a slow but steady upload (never idle for
    // body_timeout) is the client's pace, not the replica's slowness.
    let gw = gateway(&format!(
        "{POLICY}upstream: {{ request_timeout: 1s }}\nclient: {{ body_timeout: 2s }}\n"
    ));
    let replica = demo("slow-upload", &[]);
    let c = Client::new();
    register(&c, &gw.url, "svc", &replica.url).await;

    let mut conn = RawClient::connect(&gw.addr).await;
    conn.send(b"POST /svc/upload HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let mut sent_all = true;
    // 10 bytes every 300 ms for 3 s: three times request_timeout, never 2 s idle.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if conn.send(b"a\r\n0123456789\r\n").await.is_err() {
            sent_all = false;
            break;
        }
    }
    if sent_all {
        sent_all = conn.send(b"0\r\n\r\n").await.is_ok();
    }
    let resp = conn.read_response(Duration::from_secs(10)).await;
    let resp = match resp {
        Ok(r) => r,
        Err(e) => panic!(
            "no answer after a slow upload ({:?} in, all sent: {sent_all}): {e:?}",
            start.elapsed()
        ),
    };
    assert_eq!(
        resp.status,
        200,
        "{} {} (all sent: {sent_all}, after {:?})",
        resp.status_line,
        String::from_utf8_lossy(&resp.body),
        start.elapsed()
    );
    assert_eq!(resp.json()["bytes"], 100, "the replica got the whole body");
    let h = counters(&c, &gw, &replica.url).await;
    assert!(
        h.is_clean(),
        "a slow client was charged to the replica: {h:?}"
    );
}

/// Sends `head` and `bytes`, then stays silent: the gateway must answer 408 or close within `within`.
async fn silent_client(gw: &Proc, head: &str, bytes: &[u8], within: Duration) -> Duration {
    let mut conn = RawClient::connect(&gw.addr).await;
    conn.send(head.as_bytes()).await.unwrap();
    conn.send(bytes).await.unwrap();
    let start = Instant::now();
    match conn.read_response(within).await {
        Ok(r) => assert_eq!(
            r.status,
            408,
            "{}: {}",
            r.status_line,
            String::from_utf8_lossy(&r.body)
        ),
        Err(RawError::ClosedWithoutResponse) => {}
        Err(e) => panic!(
            "a client silent mid-body was neither answered 408 nor closed within {within:?}: {e:?}"
        ),
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_silent_mid_body_gets_408_within_body_timeout_and_the_replica_is_not_charged() {
    let gw = gateway(&format!(
        "{POLICY}upstream: {{ request_timeout: 3s }}\nclient: {{ body_timeout: 1s }}\n"
    ));
    let replica = RawReplica::start(Behaviour::Ok).await;
    let c = Client::new();
    register(&c, &gw.url, "svc", &replica.url).await;
    // Small enough to be buffered for replay: the replica never hears of it.
    let took = silent_client(
        &gw,
        "POST /svc/up HTTP/1.1\r\nHost: gw\r\nContent-Length: 1000\r\n\r\n",
        &[b'b'; 10],
        Duration::from_secs(6),
    )
    .await;
    assert!(
        took >= Duration::from_millis(500),
        "answered before body_timeout: {took:?}"
    );
    // Too large to buffer: streamed, so the replica already has the head when the client goes silent.
    let took = silent_client(
        &gw,
        "POST /svc/up HTTP/1.1\r\nHost: gw\r\nContent-Length: 200000\r\n\r\n",
        &[b'b'; 10],
        Duration::from_secs(6),
    )
    .await;
    assert!(
        took >= Duration::from_millis(500),
        "answered before body_timeout: {took:?}"
    );
    let r = c.get(&format!("{}/svc/after", gw.url)).await;
    assert_eq!(r.status, StatusCode::OK);
    let h = counters(&c, &gw, &replica.url).await;
    assert!(
        h.is_clean(),
        "a silent client was charged to the replica: {h:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_upload_heads_cost_little_memory_and_are_closed_by_body_timeout() {
    const CONNS: usize = 1000;
    let gw = gateway(&format!(
        "{POLICY}client: {{ body_timeout: 3s, header_timeout: 5s }}\nupstream: {{ request_timeout: 10s }}\n"
    ));
    let replica = RawReplica::start(Behaviour::Ok).await;
    let c = Client::new();
    register(&c, &gw.url, "svc", &replica.url).await;
    // Warm both workers and the upstream pool.
    for _ in 0..20 {
        assert_eq!(
            c.post(&format!("{}/svc/warm", gw.url), vec![1u8; 1000])
                .await
                .status,
            StatusCode::OK
        );
    }
    let head = b"POST /svc/up HTTP/1.1\r\nHost: gw\r\nContent-Length: 65536\r\n\r\n";
    // A first round of idle heads, cut off by body_timeout, so that the allocator's one-time growth
    // (whole segments per worker thread) is not counted as per-connection cost.
    let mut warm = Vec::new();
    for _ in 0..200 {
        let mut conn = RawClient::connect(&gw.addr).await;
        conn.send(head).await.unwrap();
        warm.push(conn);
    }
    for mut conn in warm {
        let _ = conn.read_response(Duration::from_secs(15)).await;
    }
    let baseline = gw.rss_kib();

    // 1000 clients announce 64 KiB (the largest body the gateway buffers for replay) and send none of it.
    let mut conns = Vec::with_capacity(CONNS);
    for _ in 0..CONNS {
        let mut conn = RawClient::connect(&gw.addr).await;
        conn.send(head).await.unwrap();
        conns.push(conn);
    }
    let sent = Instant::now();
    // Sample RSS for a second while every connection is still held open (body_timeout is 3 s).
    let mut peak = gw.rss_kib();
    while sent.elapsed() < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(25)).await;
        peak = peak.max(gw.rss_kib());
    }
    let grew = peak.saturating_sub(baseline);
    // Before the fix each such head cost ~94 KiB (a buffer sized from Content-Length). What is left is
    // actix's per-connection read/write buffers and the handler's state; 32 KiB leaves room for the
    // debug build and the allocator's growth steps (release measures ~7-10 KiB).
    assert!(
        grew < (32 * CONNS) as u64,
        "gateway RSS grew by {grew} KiB for {CONNS} idle upload heads ({} KiB each; baseline {baseline} KiB)",
        grew / CONNS as u64
    );

    // body_timeout cuts every one of them off: 408, or a close.
    let results = futures_util::future::join_all(
        conns
            .into_iter()
            .map(|mut conn| async move { conn.read_response(Duration::from_secs(15)).await }),
    )
    .await;
    let mut not_cut = Vec::new();
    for r in &results {
        match r {
            Ok(r) if r.status == 408 => {}
            Err(RawError::ClosedWithoutResponse) => {}
            Ok(r) => not_cut.push(r.status_line.clone()),
            Err(e) => not_cut.push(format!("{e:?}")),
        }
    }
    assert!(
        not_cut.is_empty(),
        "{} of {CONNS} idle uploads were not cut off with 408 within {:?}: first {:?}",
        not_cut.len(),
        sent.elapsed(),
        not_cut.first()
    );
    // The gateway still works, and none of this was the replica's fault.
    assert_eq!(
        c.get(&format!("{}/svc/after", gw.url)).await.status,
        StatusCode::OK
    );
    let h = counters(&c, &gw, &replica.url).await;
    assert!(h.is_clean(), "{h:?}");
}
