//! The retry budget end to end: a service failing on every replica sees about 1.2× its requests, not 3×.

use std::time::{Duration, Instant};

use e2e::http::register;
use e2e::{demo, gateway, Client, Proc};
use http::StatusCode;

/// Client requests per run.
const N: u64 = 200;

/// Three replicas that always answer 500, breakers and eviction out of the way, three attempts per request.
fn setup(budget: &str) -> (Proc, Vec<Proc>) {
    let gw = gateway(&format!(
        "breaker: {{ failure_threshold: 1000000 }}\neviction: {{ failure_threshold: 1000000 }}\n\
         retry: {{ max_attempts: 3{budget} }}\n"
    ));
    let replicas = ["a", "b", "c"]
        .iter()
        .map(|n| demo(n, &["--fail-rate", "1.0"]))
        .collect();
    (gw, replicas)
}

/// Sends `N` GETs one after the other; returns the requests the replicas saw (the sum of their `requests`
/// counters), the service's refused retries, and how long the run took.
async fn run(gw: &Proc, replicas: &[Proc]) -> (u64, u64, Duration) {
    let c = Client::new();
    for r in replicas {
        register(&c, &gw.url, "orders", &r.url).await;
    }
    let started = Instant::now();
    for _ in 0..N {
        let r = c.get(&format!("{}/orders/hello", gw.url)).await;
        // Retried or not, the client gets the replica's own 500.
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    let elapsed = started.elapsed();
    let reg = c.get(&format!("{}/registry/orders", gw.url)).await.json();
    let seen = reg["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["requests"].as_u64().unwrap())
        .sum();
    let refused = reg["retries_refused_by_budget"].as_u64().unwrap();
    (seen, refused, elapsed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_keeps_retries_to_a_fifth_of_the_requests_plus_the_floor() {
    let (gw, replicas) = setup("");
    let (seen, refused, elapsed) = run(&gw, &replicas).await;
    eprintln!(
        "budget on: {N} client requests, replicas saw {seen} ({:.2}×), {refused} retries refused, in {elapsed:?}",
        seen as f64 / N as f64
    );
    // Defaults: 20 % of the requests of the last 10 s, plus 3/s × 10 s. A run within one window allows
    // 0.2 N + 30 retries; each later window adds its own floor, and its requests may also pay for
    // retries in the next one.
    let windows = elapsed.as_secs() / 10 + 1;
    let bound = N + N / 5 * windows.min(2) + 30 * windows + 4;
    assert!(
        seen <= bound,
        "replicas saw {seen} > {bound} for {N} requests in {elapsed:?}"
    );
    // Every request reached a replica, and the floor was spent before the ratio bit.
    assert!(seen >= N + 30, "{seen}");
    assert!(refused > 0);
    // The log is read by another thread: wait for the first line before counting them.
    gw.expect_line("[RETRY-BUDGET] orders:", Duration::from_secs(5));
    let lines = gw.lines_with("[RETRY-BUDGET] orders:");
    // At most one line per second (and the first at once).
    assert!(
        lines.len() as u64 <= elapsed.as_secs() + 2,
        "{} lines in {elapsed:?}",
        lines.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_budget_every_request_costs_three_attempts() {
    // Proves the test above can fail: the same run with the budget off.
    let (gw, replicas) = setup(", budget: { enabled: false }");
    let (seen, refused, elapsed) = run(&gw, &replicas).await;
    eprintln!(
        "budget off: {N} client requests, replicas saw {seen} ({:.2}×), in {elapsed:?}",
        seen as f64 / N as f64
    );
    assert_eq!(seen, 3 * N);
    assert_eq!(refused, 0);
    assert!(gw.lines_with("[RETRY-BUDGET]").is_empty());
}
