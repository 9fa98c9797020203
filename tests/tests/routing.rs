//! Routing end to end: round-robin, failover with zero client errors, breaker, eviction, recovery, 503/504.

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::http::register;
use e2e::process::demo_on;
use e2e::{demo, eventually, gateway, Client, Traffic};
use http::{Method, StatusCode};

async fn replica_view(
    c: &Client,
    gw: &str,
    service: &str,
    address: &str,
) -> Option<serde_json::Value> {
    let r = c.get(&format!("{gw}/registry/{service}")).await.json();
    r["replicas"]
        .as_array()?
        .iter()
        .find(|r| r["address"] == address)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_is_exact_over_three_replicas() {
    let gw = gateway("");
    let backends: Vec<_> = ["a", "b", "c"].iter().map(|n| demo(n, &[])).collect();
    let c = Client::new();
    for b in &backends {
        register(&c, &gw.url, "orders", &b.url).await;
    }
    let mut seen = Vec::new();
    for _ in 0..300 {
        let r = c.get(&format!("{}/orders/hello", gw.url)).await;
        assert_eq!(r.status, StatusCode::OK);
        seen.push(r.header("x-replica").unwrap().to_owned());
    }
    // a b c a b c ...: strictly cyclic, so exactly 100 each.
    for (i, name) in seen.iter().enumerate() {
        assert_eq!(name, &seen[i % 3], "position {i}: {:?}", &seen[..12]);
    }
    let mut counts = BTreeMap::new();
    for s in &seen {
        *counts.entry(s.as_str()).or_insert(0) += 1;
    }
    assert_eq!(counts, BTreeMap::from([("a", 100), ("b", 100), ("c", 100)]));
    // The alias routes the same way, and the per-replica counters saw it all.
    assert_eq!(
        c.get(&format!("{}/v1/proxy/orders/hello", gw.url))
            .await
            .status,
        StatusCode::OK
    );
    let reg = c.get(&format!("{}/registry/orders", gw.url)).await.json();
    let total: u64 = reg["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 301);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_costs_no_client_request_and_is_opened_then_evicted() {
    let gw = gateway(
        "breaker: { failure_threshold: 3, open_timeout: 200ms }\neviction: { failure_threshold: 5 }\n\
         lease: { ttl: 10m, heartbeat_interval: 1m }\n",
    );
    let a = demo("a", &[]);
    let mut b = demo("b", &[]);
    let c3 = demo("c", &[]);
    let c = Client::new();
    for r in [&a, &b, &c3] {
        register(&c, &gw.url, "orders", &r.url).await;
    }
    let traffic = Traffic::start(&c, &format!("{}/orders/hello", gw.url), 4);
    traffic.wait_for_more(200, Duration::from_secs(10)).await;
    b.kill();
    // Its breaker opens, failed probes push it to the eviction threshold, and it leaves the registry.
    eventually(Duration::from_secs(30), "replica b evicted", || {
        let c = c.clone();
        let (gw, addr) = (gw.url.clone(), b.url.clone());
        async move {
            replica_view(&c, &gw, "orders", &addr)
                .await
                .is_none()
                .then_some(())
        }
    })
    .await;
    traffic.wait_for_more(200, Duration::from_secs(10)).await;
    let failures = traffic.stop().await;
    assert!(failures.is_empty(), "client saw failures: {failures:?}");
    // The log is written by its own thread: wait for the lines before counting them.
    gw.expect_line(
        &format!("[EVICT] {} from orders (5 consecutive failures)", b.url),
        Duration::from_secs(5),
    );
    assert_eq!(
        gw.lines_with(&format!("[CIRCUIT] {} OPEN (threshold reached)", b.url))
            .len(),
        1,
        "{}",
        gw.output()
    );
    assert_eq!(
        gw.lines_with(&format!(
            "[EVICT] {} from orders (5 consecutive failures)",
            b.url
        ))
        .len(),
        1
    );
    assert!(gw
        .lines_with(&format!("[CIRCUIT] {} OPEN", a.url))
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_replica_is_probed_half_open_and_closes() {
    let gw = gateway(
        "breaker: { failure_threshold: 3, open_timeout: 300ms }\neviction: { failure_threshold: 1000 }\n\
         lease: { ttl: 10m, heartbeat_interval: 1m }\n",
    );
    let a = demo("a", &[]);
    let mut b = demo("b", &[]);
    let c = Client::new();
    register(&c, &gw.url, "orders", &a.url).await;
    register(&c, &gw.url, "orders", &b.url).await;
    let port: u16 = b.addr.rsplit(':').next().unwrap().parse().unwrap();
    let b_url = b.url.clone();
    b.kill();
    for _ in 0..10 {
        assert_eq!(
            c.get(&format!("{}/orders/hello", gw.url)).await.status,
            StatusCode::OK
        );
    }
    let v = replica_view(&c, &gw.url, "orders", &b_url).await.unwrap();
    assert!(v["state"] == "open" || v["state"] == "half_open", "{v}");
    assert!(v["consecutive_failures"].as_u64().unwrap() >= 3, "{v}");
    // Same address back up: the next probe after the open timeout succeeds and closes the breaker.
    let _b2 = demo_on("b2", port, &[]);
    let closed = eventually(Duration::from_secs(20), "breaker closed again", || {
        let c = c.clone();
        let (gw, addr) = (gw.url.clone(), b_url.clone());
        async move {
            let r = c.get(&format!("{gw}/orders/hello")).await;
            assert_eq!(r.status, StatusCode::OK);
            let v = replica_view(&c, &gw, "orders", &addr).await?;
            (v["state"] == "closed").then_some(v)
        }
    })
    .await;
    assert_eq!(closed["consecutive_failures"], 0);
    // Log lines are read by another thread: wait for them rather than race it.
    gw.expect_line(
        &format!("[CIRCUIT] {b_url} HALF-OPEN"),
        Duration::from_secs(5),
    );
    gw.expect_line(&format!("[CIRCUIT] {b_url} CLOSED"), Duration::from_secs(5));
    // Back in full rotation.
    let mut from_b2 = 0;
    for _ in 0..10 {
        if c.get(&format!("{}/orders/hello", gw.url))
            .await
            .header("x-replica")
            == Some("b2")
        {
            from_b2 += 1;
        }
    }
    assert_eq!(from_b2, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_replicas_down_gives_502_then_503_with_retry_after() {
    let gw = gateway("breaker: { failure_threshold: 1, open_timeout: 30s }\n");
    let c = Client::new();
    for port in [1u16, 2] {
        // Nothing listens on these ports: connections are refused.
        register(&c, &gw.url, "orders", &format!("http://127.0.0.1:{port}")).await;
    }
    let first = c.get(&format!("{}/orders/x", gw.url)).await;
    assert_eq!(first.status, StatusCode::BAD_GATEWAY);
    let j = first.json();
    assert_eq!(j["error"], "bad_gateway");
    assert!(
        j["message"].as_str().unwrap().contains("2 attempt(s)"),
        "{j}"
    );
    let second = c.get(&format!("{}/orders/x", gw.url)).await;
    assert_eq!(second.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(second.json()["error"], "no_replica_available");
    let retry_after: u64 = second.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_replica_times_out_with_504_and_the_next_one_answers() {
    let gw = gateway("upstream: { request_timeout: 300ms }\nbreaker: { failure_threshold: 10 }\neviction: { failure_threshold: 10 }\n");
    let slow = demo("slow", &["--latency-ms", "5000"]);
    let c = Client::new();
    register(&c, &gw.url, "slow", &slow.url).await;
    let started = std::time::Instant::now();
    let r = c.get(&format!("{}/slow/hello", gw.url)).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(r.json()["error"], "upstream_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // With a fast replica beside it, a GET that times out on the slow one is retried there.
    let fast = demo("fast", &[]);
    register(&c, &gw.url, "slow", &fast.url).await;
    for _ in 0..4 {
        let r = c.get(&format!("{}/slow/hello", gw.url)).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("x-replica"), Some("fast"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_5xx_is_retried_for_get_and_4xx_is_not_a_failure() {
    let gw = gateway("breaker: { failure_threshold: 100 }\neviction: { failure_threshold: 100 }\n");
    let bad = demo("bad", &["--fail-rate", "1.0"]);
    let good = demo("good", &[]);
    let c = Client::new();
    register(&c, &gw.url, "orders", &bad.url).await;
    register(&c, &gw.url, "orders", &good.url).await;
    for _ in 0..6 {
        let r = c.get(&format!("{}/orders/hello", gw.url)).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("x-replica"), Some("good"));
    }
    // 404 from the replica reaches the client and counts as a success.
    let r = c.get(&format!("{}/orders/users/999", gw.url)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["error"], "no such user");
    let g = replica_view(&c, &gw.url, "orders", &good.url)
        .await
        .unwrap();
    assert_eq!(g["failures"], 0);
    let b = replica_view(&c, &gw.url, "orders", &bad.url).await.unwrap();
    assert!(b["failures"].as_u64().unwrap() >= 3, "{b}");
    assert_eq!(b["last_failure"], "upstream status 500");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_replicas_from_the_config_are_routed_and_breaker_protected() {
    let a = demo("a", &[]);
    let b = demo("b", &[]);
    let gw = gateway(&format!(
        "services:\n  product: [\"{}\", \"{}\"]\n",
        a.url, b.url
    ));
    let c = Client::new();
    let mut names = Vec::new();
    for _ in 0..4 {
        let r = c.get(&format!("{}/product/hello", gw.url)).await;
        assert_eq!(r.status, StatusCode::OK);
        names.push(r.header("x-replica").unwrap().to_owned());
    }
    assert_eq!(names, ["a", "b", "a", "b"]);
    let reg = c.get(&format!("{}/registry/product", gw.url)).await.json();
    let list = reg["replicas"].as_array().unwrap();
    assert!(
        list.iter()
            .all(|r| r["origin"] == "static" && r["last_heartbeat_ms_ago"].is_null()),
        "{reg}"
    );
    let id = list[0]["id"].as_str().unwrap();
    let del = c
        .request(
            Method::DELETE,
            &format!("{}/registry/product/{id}", gw.url),
            &[],
            "",
        )
        .await;
    assert_eq!(del.status, StatusCode::CONFLICT);
    assert_eq!(del.json()["error"], "static_replica");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_path_and_query_reach_the_replica_as_a_proxy_should_send_them() {
    let gw = gateway("");
    let backend = demo("echo", &[]);
    let c = Client::new();
    register(&c, &gw.url, "echo", &backend.url).await;
    let r = c
        .request(
            Method::GET,
            &format!("{}/echo/a%2Fb/c?x=1&y=%20z", gw.url),
            &[
                ("x-request-id", "req-42"),
                ("connection", "keep-alive, x-hop"),
                ("x-hop", "must not pass"),
                ("keep-alive", "timeout=5"),
                ("proxy-authorization", "Basic secret"),
                // From an untrusted client: replaced, not appended to (forwarded.trusted_proxies).
                ("x-forwarded-for", "127.6.6.6"),
            ],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-replica"), Some("echo"));
    let len: usize = r.header("content-length").unwrap().parse().unwrap();
    assert_eq!(len, r.body.len());
    let j = r.json();
    assert_eq!(j["path"], "/a%2Fb/c");
    assert_eq!(j["query"], "x=1&y=%20z");
    let headers: BTreeMap<String, String> = j["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_owned(),
                p[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(headers["host"], backend.addr);
    assert_eq!(headers["x-request-id"], "req-42");
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], gw.addr);
    // Loop protection: the gateway names itself in Via.
    assert!(headers["via"].starts_with("1.1 rgw-"), "{headers:?}");
    for hop in ["x-hop", "keep-alive", "proxy-authorization"] {
        assert!(!headers.contains_key(hop), "{hop} leaked: {headers:?}");
    }
    // HEAD keeps the replica's Content-Length and sends no body.
    let head = c
        .request(Method::HEAD, &format!("{}/echo/hello", gw.url), &[], "")
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(
        head.header("content-length")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert!(head.body.is_empty());
}
