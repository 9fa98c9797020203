//! Several gateways sharing state through a real redis-server.

use std::time::{Duration, Instant};

use e2e::http::register;
use e2e::process::Redis;
use e2e::{demo, eventually, gateway, log_time, Client, Traffic};
use http::StatusCode;

fn shared(redis: &Redis, extra: &str) -> String {
    format!(
        "store: {}\nredis: {{ resync_interval: 1s }}\n{extra}",
        redis.url()
    )
}

async fn replicas(c: &Client, gw: &str, service: &str) -> Vec<serde_json::Value> {
    let r = c.get(&format!("{gw}/registry")).await.json();
    r["services"][service]["replicas"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn addresses(c: &Client, gw: &str, service: &str) -> Vec<String> {
    let mut a: Vec<String> = replicas(c, gw, service)
        .await
        .iter()
        .map(|r| r["address"].as_str().unwrap().to_owned())
        .collect();
    a.sort();
    a
}

async fn wait_for(c: &Client, gw: &str, service: &str, want: &[&str], deadline: Duration) {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    eventually(
        deadline,
        &format!("{gw} shows {service} = {want:?}"),
        || {
            let (c, gw, want) = (c.clone(), gw.to_owned(), want.clone());
            async move { (addresses(&c, &gw, service).await == want).then_some(()) }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_through_a_routed_through_b_and_kept_alive_by_heartbeats_through_b() {
    let redis = Redis::start();
    let yaml = shared(
        &redis,
        "lease: { ttl: 1500ms, heartbeat_interval: 300ms }\n",
    );
    let (a, b) = (gateway(&yaml), gateway(&yaml));
    let backend = demo("d1", &[]);
    let c = Client::new();
    let id = register(&c, &a.url, "orders", &backend.url).await;
    wait_for(
        &c,
        &b.url,
        "orders",
        &[&backend.url],
        Duration::from_secs(5),
    )
    .await;
    let r = c.get(&format!("{}/orders/hello", b.url)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-replica"), Some("d1"));
    assert_eq!(
        replicas(&c, &b.url, "orders").await[0]["id"],
        id.as_str(),
        "the same id everywhere"
    );
    // Readable with redis-cli: one hash per replica, expiring with the lease.
    let keys = redis.cli(&["--raw", "KEYS", "rgw:replica:*"]);
    assert_eq!(keys.trim(), format!("rgw:replica:orders:{id}"));
    let ttl: i64 = redis.cli(&["PTTL", keys.trim()]).trim().parse().unwrap();
    assert!(ttl > 0 && ttl <= 1500, "{ttl}");

    // Heartbeats only through B, for well over two TTLs: A keeps the replica too.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        let hb = c
            .put(&format!("{}/registry/orders/{id}/heartbeat", b.url))
            .await;
        assert_eq!(hb.status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        addresses(&c, &a.url, "orders").await,
        std::slice::from_ref(&backend.url)
    );
    // Silence: gone from both, and from Redis.
    wait_for(&c, &a.url, "orders", &[], Duration::from_secs(10)).await;
    wait_for(&c, &b.url, "orders", &[], Duration::from_secs(10)).await;
    assert_eq!(redis.cli(&["--raw", "KEYS", "rgw:replica:*"]).trim(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_opened_by_one_gateway_is_open_on_every_gateway_within_100ms() {
    let redis = Redis::start();
    let yaml = shared(
        &redis,
        "breaker: { failure_threshold: 3, open_timeout: 30s }\n",
    );
    let (a, b, cc) = (gateway(&yaml), gateway(&yaml), gateway(&yaml));
    let good = demo("good", &[]);
    let mut bad = demo("bad", &[]);
    let c = Client::new();
    register(&c, &a.url, "orders", &good.url).await;
    register(&c, &a.url, "orders", &bad.url).await;
    for gw in [&b, &cc] {
        wait_for(
            &c,
            &gw.url,
            "orders",
            &[&good.url, &bad.url],
            Duration::from_secs(5),
        )
        .await;
    }
    bad.kill();
    // Traffic through A only: A finds the replica dead and opens its breaker.
    for _ in 0..10 {
        assert_eq!(
            c.get(&format!("{}/orders/hello", a.url)).await.status,
            StatusCode::OK
        );
    }
    let opened = a.expect_line(
        &format!("[CIRCUIT] {} OPEN (threshold reached)", bad.url),
        Duration::from_secs(5),
    );
    for peer in [&b, &cc] {
        let line = peer.expect_line(
            &format!("[CIRCUIT] {} OPEN (reported by a peer gateway)", bad.url),
            Duration::from_secs(5),
        );
        let lag = log_time(&line) - log_time(&opened);
        assert!((0.0..0.1).contains(&lag), "peer opened {lag:.4} s after A");
        // The peer skips it without ever trying it.
        for _ in 0..6 {
            assert_eq!(
                c.get(&format!("{}/orders/hello", peer.url))
                    .await
                    .header("x-replica"),
                Some("good")
            );
        }
        let dead = replicas(&c, &peer.url, "orders")
            .await
            .into_iter()
            .find(|r| r["address"] == bad.url.as_str())
            .unwrap();
        assert_eq!(
            (dead["state"].as_str(), dead["requests"].as_u64()),
            (Some("open"), Some(0)),
            "{dead}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_mid_traffic_costs_no_request_and_outage_registrations_reach_every_gateway_after(
) {
    let mut redis = Redis::start();
    let port = redis.port;
    let yaml = shared(&redis, "");
    let (a, b) = (gateway(&yaml), gateway(&yaml));
    let (r1, r2) = (demo("r1", &[]), demo("r2", &[]));
    let c = Client::new();
    register(&c, &a.url, "orders", &r1.url).await;
    register(&c, &b.url, "orders", &r2.url).await;
    for gw in [&a, &b] {
        wait_for(
            &c,
            &gw.url,
            "orders",
            &[&r1.url, &r2.url],
            Duration::from_secs(5),
        )
        .await;
    }
    let ta = Traffic::start(&c, &format!("{}/orders/hello", a.url), 2);
    let tb = Traffic::start(&c, &format!("{}/orders/hello", b.url), 2);
    ta.wait_for_more(100, Duration::from_secs(10)).await;
    tb.wait_for_more(100, Duration::from_secs(10)).await;

    redis.stop();
    eventually(Duration::from_secs(5), "A degraded", || {
        let (c, url) = (c.clone(), format!("{}/readyz", a.url));
        async move {
            let r = c.get(&url).await;
            (r.status == StatusCode::OK && r.json()["status"] == "degraded").then_some(())
        }
    })
    .await;
    let reg = c.get(&format!("{}/registry", b.url)).await.json();
    assert_eq!(reg["store"]["kind"], "redis");
    // Routing goes on, and a registration made now is accepted locally.
    ta.wait_for_more(200, Duration::from_secs(10)).await;
    tb.wait_for_more(200, Duration::from_secs(10)).await;
    let r3 = demo("r3", &[]);
    register(&c, &a.url, "orders", &r3.url).await;

    let _redis = Redis::start_on(port);
    // After Redis returns, A writes back what it kept, and B learns it.
    wait_for(
        &c,
        &b.url,
        "orders",
        &[&r1.url, &r2.url, &r3.url],
        Duration::from_secs(10),
    )
    .await;
    eventually(Duration::from_secs(10), "B ready again", || {
        let (c, url) = (c.clone(), format!("{}/readyz", b.url));
        async move { (c.get(&url).await.json()["status"] == "ready").then_some(()) }
    })
    .await;
    ta.wait_for_more(100, Duration::from_secs(10)).await;
    let failures: Vec<_> = ta.stop().await.into_iter().chain(tb.stop().await).collect();
    assert!(failures.is_empty(), "client saw failures: {failures:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_gateway_rebuilds_its_view_from_redis_at_once() {
    let redis = Redis::start();
    let yaml = shared(&redis, "");
    let mut a = gateway(&yaml);
    let b = gateway(&yaml);
    let (r1, r2) = (demo("r1", &[]), demo("r2", &[]));
    let c = Client::new();
    register(&c, &a.url, "orders", &r1.url).await;
    register(&c, &b.url, "orders", &r2.url).await;
    wait_for(
        &c,
        &a.url,
        "orders",
        &[&r1.url, &r2.url],
        Duration::from_secs(5),
    )
    .await;
    let listen = a.addr.clone();
    a.kill();
    let started = Instant::now();
    let a2 = e2e::process::gateway_on(&listen, &yaml);
    wait_for(
        &c,
        &a2.url,
        "orders",
        &[&r1.url, &r2.url],
        Duration::from_secs(5),
    )
    .await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(2_000),
        "rebuilt after {took:?}"
    );
    assert_eq!(
        c.get(&format!("{}/orders/hello", a2.url)).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovering_replica_is_probed_again_after_a_failed_probe_and_closes_everywhere() {
    let redis = Redis::start();
    let yaml = shared(
        &redis,
        "breaker: { failure_threshold: 2, open_timeout: 400ms }\neviction: { failure_threshold: 1000 }\n",
    );
    let (a, b) = (gateway(&yaml), gateway(&yaml));
    let good = demo("good", &[]);
    let mut bad = demo("bad", &[]);
    let port: u16 = bad.addr.rsplit(':').next().unwrap().parse().unwrap();
    let c = Client::new();
    register(&c, &a.url, "orders", &good.url).await;
    register(&c, &a.url, "orders", &bad.url).await;
    wait_for(
        &c,
        &b.url,
        "orders",
        &[&good.url, &bad.url],
        Duration::from_secs(5),
    )
    .await;
    bad.kill();
    let ta = Traffic::start(&c, &format!("{}/orders/hello", a.url), 2);
    let tb = Traffic::start(&c, &format!("{}/orders/hello", b.url), 2);
    a.expect_line(
        &format!("[CIRCUIT] {} OPEN", bad.url),
        Duration::from_secs(5),
    );
    b.expect_line(
        &format!("[CIRCUIT] {} OPEN", bad.url),
        Duration::from_secs(5),
    );
    // A probe fails first (the replica is still down): the next half-open period must probe again.
    let failed_probe = format!("[CIRCUIT] {} OPEN (half-open probe failed)", bad.url);
    eventually(Duration::from_secs(10), "a failed probe", || {
        let seen =
            !a.lines_with(&failed_probe).is_empty() || !b.lines_with(&failed_probe).is_empty();
        async move { seen.then_some(()) }
    })
    .await;
    // Back on the same port: one gateway's probe closes the breaker, the other hears of it.
    let _back = e2e::process::demo_on("back", port, &[]);
    let closed = format!("[CIRCUIT] {} CLOSED", bad.url);
    a.expect_line(&closed, Duration::from_secs(10));
    b.expect_line(&closed, Duration::from_secs(10));
    let failures: Vec<_> = ta.stop().await.into_iter().chain(tb.stop().await).collect();
    assert!(failures.is_empty(), "{failures:?}");
    // One gateway's probe closed it. (Two gateways may both probe, one after the other: the lock makes
    // probes exclusive, not unique; store::redis_store's tests check the lock itself.)
    let by_probe = |p: &e2e::Proc| p.lines_with(&format!("{closed} (probe succeeded)")).len();
    assert!(
        by_probe(&a) + by_probe(&b) >= 1,
        "A:\n{}\nB:\n{}",
        a.lines_with("CIRCUIT").join("\n"),
        b.lines_with("CIRCUIT").join("\n")
    );
}
