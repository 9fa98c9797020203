//! Request and response bodies end to end: retry safety for POST, 100 MB streamed up and down.

use std::time::Duration;

use bytes::Bytes;
use e2e::http::{body, register};
use e2e::{demo, gateway, Client};
use futures_util::StreamExt;
use http::StatusCode;
use http_body_util::{BodyExt, StreamBody};

async fn counters(c: &Client, gw: &str, service: &str) -> Vec<(String, u64, u64)> {
    let r = c.get(&format!("{gw}/registry/{service}")).await.json();
    r["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["address"].as_str().unwrap().to_owned(),
                r["requests"].as_u64().unwrap(),
                r["failures"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_that_reached_a_replica_is_never_repeated_but_one_that_could_not_connect_moves_on() {
    let gw = gateway("breaker: { failure_threshold: 100 }\neviction: { failure_threshold: 100 }\n");
    let c = Client::new();
    let bad = demo("bad", &["--fail-rate", "1.0"]);
    let good = demo("good", &[]);
    register(&c, &gw.url, "orders", &bad.url).await;
    register(&c, &gw.url, "orders", &good.url).await;
    // Round-robin sends the 1st POST to `bad`, the 2nd to `good`. The 500 from `bad` reaches the
    // client as it is: the replica may have acted on the POST, so it is not sent again.
    let first = c
        .post(&format!("{}/orders/echo", gw.url), "pay 10 EUR")
        .await;
    assert_eq!(first.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(first.header("x-replica"), Some("bad"));
    let second = c
        .post(&format!("{}/orders/echo", gw.url), "pay 10 EUR")
        .await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.json()["body"], "pay 10 EUR");
    let n = counters(&c, &gw.url, "orders").await;
    let total: u64 = n.iter().map(|r| r.1).sum();
    assert_eq!(total, 2, "exactly one attempt per POST: {n:?}");
    // A PUT (idempotent) with a small buffered body is retried on the next replica.
    let put = c
        .request(
            http::Method::PUT,
            &format!("{}/orders/echo", gw.url),
            &[],
            "v=1",
        )
        .await;
    assert_eq!(put.status, StatusCode::OK);
    assert_eq!(put.json()["body"], "v=1");

    // A replica that refuses connections never saw the POST: it moves on, buffered or streamed.
    let gw2 = gateway("");
    register(&c, &gw2.url, "pay", "http://127.0.0.1:1").await;
    register(&c, &gw2.url, "pay", &good.url).await;
    for _ in 0..2 {
        let r = c
            .post(&format!("{}/pay/upload", gw2.url), vec![7u8; 1000])
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(r.json()["bytes"], 1000);
    }
    // 1 MiB streamed (chunked, larger than the replay buffer): the refused connection consumed nothing.
    for _ in 0..2 {
        let chunks = futures_util::stream::iter((0..16).map(|_| {
            Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(vec![1u8; 65536])))
        }));
        let req = http::Request::post(format!("{}/pay/upload", gw2.url))
            .body(body(StreamBody::new(chunks)))
            .unwrap();
        let resp = c.send(req).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let j: serde_json::Value =
            serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(j["bytes"], 16 * 65536);
    }
}

const SIZE: u64 = 100 * 1024 * 1024;

fn pattern_byte(i: u64) -> u8 {
    (i % 251) as u8
}

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x100_0000_01b3);
    }
    hash
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_stream_up_and_down_without_being_held_in_memory() {
    // Registered by hand (no heartbeats): a lease long enough for 200 MiB on a loaded machine.
    let gw = gateway("lease: { ttl: 10m, heartbeat_interval: 1m }\n");
    let backend = demo("big", &[]);
    let c = Client::new();
    register(&c, &gw.url, "files", &backend.url).await;
    let baseline_kib = gw.peak_rss_kib();

    // Upload: 100 MiB in 64 KiB chunks, with a Content-Length, hashed on the replica as it arrives.
    const CHUNK: u64 = 64 * 1024;
    let mut expected = 0xcbf2_9ce4_8422_2325u64;
    let mut offset = 0;
    while offset < SIZE {
        let chunk: Vec<u8> = (offset..offset + CHUNK).map(pattern_byte).collect();
        expected = fnv1a(expected, &chunk);
        offset += CHUNK;
    }
    let chunks = futures_util::stream::unfold(0u64, |offset| async move {
        (offset < SIZE).then(|| {
            let chunk: Vec<u8> = (offset..offset + CHUNK).map(pattern_byte).collect();
            (
                Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(chunk))),
                offset + CHUNK,
            )
        })
    });
    let req = http::Request::post(format!("{}/files/upload", gw.url))
        .header("content-length", SIZE.to_string())
        .body(body(StreamBody::new(chunks)))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(120), c.send(req))
        .await
        .expect("upload in time");
    assert_eq!(resp.status(), StatusCode::OK);
    let j: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(j["bytes"], SIZE);
    assert_eq!(j["fnv1a"], format!("{expected:016x}"));

    // Download: 100 MiB checked byte by byte as it streams, never collected.
    let req = http::Request::get(format!("{}/files/download?bytes={SIZE}", gw.url))
        .body(body(http_body_util::Empty::<Bytes>::new()))
        .unwrap();
    let resp = c.send(req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-length"], SIZE.to_string().as_str());
    let mut stream = resp.into_body().into_data_stream();
    let mut got = 0u64;
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("data in time")
    {
        let chunk = chunk.expect("chunk");
        for (i, b) in chunk.iter().enumerate() {
            assert_eq!(*b, pattern_byte(got + i as u64), "byte {}", got + i as u64);
        }
        got += chunk.len() as u64;
    }
    assert_eq!(got, SIZE);

    // 200 MiB went through; the gateway's peak memory grew by far less than one body.
    let grew_mib = (gw.peak_rss_kib().saturating_sub(baseline_kib)) / 1024;
    assert!(grew_mib < 32, "gateway peak RSS grew by {grew_mib} MiB");
}
