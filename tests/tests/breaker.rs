//! The breaker's second level end to end: a failure ratio over a window (gobreaker's `ReadyToTrip`), N
//! half-open probes, and both shared by several gateways through a real redis-server.

use std::time::Duration;

use e2e::http::register;
use e2e::process::{demo_on, free_port, Redis};
use e2e::{demo, eventually, gateway, Client, Proc};
use http::StatusCode;

/// The replica at `address` in `GET /registry/{service}` of `gw`.
async fn replica(c: &Client, gw: &str, service: &str, address: &str) -> serde_json::Value {
    let r = c.get(&format!("{gw}/registry/{service}")).await.json();
    r["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == address)
        .cloned()
        .unwrap_or_else(|| panic!("{address} not in {r}"))
}

async fn wait_state(c: &Client, gw: &Proc, service: &str, address: &str, state: &str) {
    eventually(
        Duration::from_secs(10),
        &format!("{address} {state} on {}", gw.url),
        || {
            let (c, url) = (c.clone(), gw.url.clone());
            async move { (replica(&c, &url, service, address).await["state"] == state).then_some(()) }
        },
    )
    .await;
}

/// One attempt per request, no eviction: what the replicas see is what the breaker judges.
const PLAIN: &str = "retry: { max_attempts: 1 }\neviction: { failure_threshold: 1000 }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_failing_two_of_three_leaves_rotation_by_ratio_though_never_three_in_a_row() {
    for ratio_on in [true, false] {
        let rule = if ratio_on {
            "failure_ratio: 0.6, min_requests: 3, window: 30s, "
        } else {
            ""
        };
        let gw = gateway(&format!(
            "{PLAIN}breaker: {{ {rule}failure_threshold: 3, open_timeout: 60s }}\n"
        ));
        // fail, fail, succeed, fail, fail, succeed...: 67 % failures, never three in a row.
        let flaky = demo("flaky", &["--fail-pattern", "ffs"]);
        let c = Client::new();
        register(&c, &gw.url, "orders", &flaky.url).await;
        let mut statuses = Vec::new();
        for _ in 0..9 {
            statuses.push(c.get(&format!("{}/orders/x", gw.url)).await.status.as_u16());
        }
        let r = replica(&c, &gw.url, "orders", &flaky.url).await;
        assert!(r["consecutive_failures"].as_u64().unwrap() <= 2, "{r}");
        if ratio_on {
            // 500, 500, 200, 500 (3 of 4 = 75 %): open; then 503 from the gateway itself.
            assert_eq!(statuses[..4], [500, 500, 200, 500], "{statuses:?}");
            assert!(statuses[4..].iter().all(|s| *s == 503), "{statuses:?}");
            assert_eq!(r["state"], "open", "{r}");
            assert_eq!(
                r["state_reason"], "3 of 4 requests failed (75%) in the window",
                "{r}"
            );
            assert_eq!(r["requests"], 4, "no traffic once open: {r}");
            gw.expect_line(
                &format!(
                    "[CIRCUIT] {} OPEN (failure ratio reached: 3 of 4 requests failed (75%))",
                    flaky.url
                ),
                Duration::from_secs(5),
            );
        } else {
            // Consecutive failures only: it never leaves rotation, a third of the traffic fails.
            assert_eq!(r["state"], "closed", "{r}");
            assert_eq!(
                statuses.iter().filter(|s| **s == 500).count(),
                6,
                "{statuses:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_lets_three_probes_through_at_once_and_three_successes_close_it() {
    let gw = gateway(&format!(
        "{PLAIN}breaker: {{ failure_threshold: 2, open_timeout: 500ms, half_open_probes: 3 }}\n"
    ));
    let port = free_port();
    let address = format!("http://127.0.0.1:{port}");
    let c = Client::new();
    register(&c, &gw.url, "orders", &address).await;
    // Nothing listens yet: two failures open the breaker.
    for _ in 0..2 {
        assert_eq!(
            c.get(&format!("{}/orders/x", gw.url)).await.status,
            StatusCode::BAD_GATEWAY
        );
    }
    assert_eq!(
        replica(&c, &gw.url, "orders", &address).await["state"],
        "open"
    );
    // The replica comes back, answering in 700 ms: five calls at once in half-open.
    let _back = demo_on("back", port, &["--latency-ms", "700"]);
    wait_state(&c, &gw, "orders", &address, "half_open").await;
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let (c, url) = (c.clone(), format!("{}/orders/x", gw.url));
            tokio::spawn(async move { c.get(&url).await.status.as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for call in calls {
        statuses.push(call.await.unwrap());
    }
    statuses.sort();
    // Exactly three probes went through; the other two were refused without reaching the replica.
    assert_eq!(statuses, [200, 200, 200, 503, 503], "{statuses:?}");
    let r = replica(&c, &gw.url, "orders", &address).await;
    assert_eq!(r["state"], "closed", "{r}");
    assert_eq!(r["state_reason"], "3 probes succeeded", "{r}");
    gw.expect_line(
        &format!("[CIRCUIT] {address} CLOSED (3 probes succeeded)"),
        Duration::from_secs(5),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_judge_one_ratio_and_share_the_probes_that_close_it() {
    let redis = Redis::start();
    let yaml = format!(
        "store: {}\nredis: {{ resync_interval: 1s }}\n{PLAIN}\
         breaker: {{ failure_threshold: 100, failure_ratio: 0.6, min_requests: 4, window: 30s, \
         open_timeout: 700ms, half_open_probes: 2 }}\n",
        redis.url()
    );
    let (a, b) = (gateway(&yaml), gateway(&yaml));
    // Port 0: the OS picks it at bind, so no other test can race for it; the same port is reused below.
    let flaky = demo("flaky", &["--fail-pattern", "ffs"]);
    let port: u16 = flaky.addr.rsplit(':').next().unwrap().parse().unwrap();
    let c = Client::new();
    register(&c, &a.url, "orders", &flaky.url).await;
    eventually(Duration::from_secs(5), "B knows the replica", || {
        let (c, url) = (c.clone(), b.url.clone());
        async move {
            let r = c.get(&format!("{url}/registry/orders")).await;
            (r.status == StatusCode::OK && r.json()["replicas"].as_array()?.len() == 1)
                .then_some(())
        }
    })
    .await;
    // A gets fail, succeed; B gets fail, fail. Neither reaches min_requests (4) alone; together,
    // 3 of 4 failed (75 %).
    let mut seen = Vec::new();
    for gw in [&a, &b, &a, &b] {
        seen.push(c.get(&format!("{}/orders/x", gw.url)).await.status.as_u16());
    }
    assert_eq!(
        seen,
        [500, 500, 200, 500],
        "A:\n{}\nB:\n{}\nreplica:\n{}",
        a.output(),
        b.output(),
        flaky.output()
    );
    wait_state(&c, &a, "orders", &flaky.url, "open").await;
    wait_state(&c, &b, "orders", &flaky.url, "open").await;
    let tripped = [&a, &b]
        .iter()
        .map(|g| g.lines_with("requests failed across gateways").len())
        .sum::<usize>();
    assert!(tripped >= 1, "A:\n{}\nB:\n{}", a.output(), b.output());

    // Recovered (the pattern's next two answers are 500 then 200: restart it healthy on the same port).
    drop(flaky);
    let _healthy = demo_on("healthy", port, &[]);
    let address = format!("http://127.0.0.1:{port}");
    wait_state(&c, &a, "orders", &address, "half_open").await;
    wait_state(&c, &b, "orders", &address, "half_open").await;
    // One probe through A, one through B: two successes together close it on both gateways, though
    // neither saw two itself.
    for gw in [&a, &b] {
        assert_eq!(
            c.get(&format!("{}/orders/x", gw.url)).await.status,
            StatusCode::OK
        );
    }
    wait_state(&c, &a, "orders", &address, "closed").await;
    wait_state(&c, &b, "orders", &address, "closed").await;
    let closed_together = [&a, &b]
        .iter()
        .map(|g| g.lines_with("probes succeeded across gateways").len())
        .sum::<usize>();
    assert_eq!(closed_together, 1, "A:\n{}\nB:\n{}", a.output(), b.output());
}
