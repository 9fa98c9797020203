//! The seeds' topology: nginx in front of two gateways that share state through Redis.

use std::time::Duration;

use e2e::http::register;
use e2e::process::{nginx, Redis};
use e2e::{demo, eventually, gateway, Client, Traffic};
use http::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_nginx_any_gateway_routes_what_any_gateway_registered() {
    let redis = Redis::start();
    // nginx (on 127.0.0.1) is the trusted proxy in front: its X-Forwarded-* headers are kept.
    let yaml = format!(
        "store: {}\nredis: {{ resync_interval: 1s }}\nforwarded: {{ trusted_proxies: [127.0.0.1/32] }}\n",
        redis.url()
    );
    let (a, b) = (gateway(&yaml), gateway(&yaml));
    let lb = nginx(&[&a.addr, &b.addr]);
    let (r1, r2) = (demo("r1", &[]), demo("r2", &[]));
    let c = Client::new();
    // Registrations go through nginx too: each lands on one gateway, both gateways learn both.
    register(&c, &lb.url, "orders", &r1.url).await;
    register(&c, &lb.url, "orders", &r2.url).await;
    for gw in [&a, &b] {
        eventually(
            Duration::from_secs(5),
            "both replicas on every gateway",
            || {
                let (c, url) = (c.clone(), format!("{}/registry/orders", gw.url));
                async move {
                    (c.get(&url).await.json()["replicas"].as_array()?.len() == 2).then_some(())
                }
            },
        )
        .await;
    }
    let traffic = Traffic::start(&c, &format!("{}/orders/hello", lb.url), 4);
    traffic.wait_for_more(400, Duration::from_secs(20)).await;
    let failures = traffic.stop().await;
    assert!(failures.is_empty(), "{failures:?}");
    // nginx spread the load over both gateways, and each gateway over both replicas.
    for gw in [&a, &b] {
        let reg = c.get(&format!("{}/registry/orders", gw.url)).await.json();
        for r in reg["replicas"].as_array().unwrap() {
            assert!(
                r["requests"].as_u64().unwrap() > 20,
                "{} served too little: {reg}",
                gw.url
            );
        }
    }
    let r = c.get(&format!("{}/orders/hello", lb.url)).await;
    assert_eq!(r.status, StatusCode::OK);
    // The client's address as nginx saw it reaches the replica: nginx appended it, the gateway kept
    // nginx's header (trusted) and appended nginx's own address.
    let r = c
        .request(
            http::Method::GET,
            &format!("{}/orders/headers", lb.url),
            &[("x-forwarded-for", "127.7.7.7")],
            "",
        )
        .await;
    let headers = r.json()["headers"].clone();
    let xff: Vec<&str> = headers
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[0] == "x-forwarded-for")
        .filter_map(|p| p[1].as_str())
        .collect();
    assert_eq!(xff, ["127.7.7.7, 127.0.0.1, 127.0.0.1"], "{headers}");
}
