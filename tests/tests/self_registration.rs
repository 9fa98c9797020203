//! Replicas that register themselves through the client SDK: gateway restarts, graceful stops, crashes.

use std::time::{Duration, Instant};

use e2e::process::gateway_on;
use e2e::{demo, eventually, gateway, Client, Proc, Traffic};
use http::StatusCode;

async fn addresses(c: &Client, gw: &str, service: &str) -> Vec<String> {
    let r = c.get(&format!("{gw}/registry")).await.json();
    let mut list: Vec<String> = r["services"][service]["replicas"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["address"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    list.sort();
    list
}

fn replicas(gw: &Proc, service: &str, n: usize) -> Vec<Proc> {
    (0..n)
        .map(|i| {
            demo(
                &format!("{service}-{i}"),
                &["--service", service, "--gateway", &gw.url],
            )
        })
        .collect()
}

async fn wait_for_addresses(
    c: &Client,
    gw: &str,
    service: &str,
    want: &[String],
    deadline: Duration,
) {
    let mut want = want.to_vec();
    want.sort();
    eventually(deadline, &format!("{service} replicas {want:?}"), || {
        let (c, gw, want) = (c.clone(), gw.to_owned(), want.clone());
        async move { (addresses(&c, &gw, service).await == want).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_gateway_restart_every_replica_is_back_within_one_heartbeat_interval() {
    let yaml = "lease: { ttl: 5s, heartbeat_interval: 500ms }\n";
    let mut gw = gateway(yaml);
    let c = Client::new();
    let reps = replicas(&gw, "orders", 3);
    let urls: Vec<String> = reps.iter().map(|r| r.url.clone()).collect();
    wait_for_addresses(&c, &gw.url, "orders", &urls, Duration::from_secs(10)).await;

    let listen = gw.addr.clone();
    gw.kill();
    let gw = gateway_on(&listen, yaml);
    let restarted = Instant::now();
    // Nobody does anything: heartbeats get 404 from the new gateway and the SDK registers again.
    wait_for_addresses(&c, &gw.url, "orders", &urls, Duration::from_secs(10)).await;
    let took = restarted.elapsed();
    // One heartbeat interval (500 ms, jittered early), plus slack for a loaded 2-core machine.
    assert!(took < Duration::from_millis(500 + 1_500), "took {took:?}");
    for _ in 0..6 {
        assert_eq!(
            c.get(&format!("{}/orders/hello", gw.url)).await.status,
            StatusCode::OK
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gracefully_stopped_replica_leaves_at_once_and_no_request_fails() {
    // A long lease: if the replica vanished from the registry it was by deregistration, not expiry.
    let gw = gateway("lease: { ttl: 60s, heartbeat_interval: 5s }\n");
    let c = Client::new();
    let mut reps = replicas(&gw, "orders", 3);
    let urls: Vec<String> = reps.iter().map(|r| r.url.clone()).collect();
    wait_for_addresses(&c, &gw.url, "orders", &urls, Duration::from_secs(10)).await;

    let traffic = Traffic::start(&c, &format!("{}/orders/hello", gw.url), 4);
    traffic.wait_for_more(200, Duration::from_secs(10)).await;
    let stopped = reps.remove(1);
    let mut stopped = stopped;
    let exit = stopped.terminate(Duration::from_secs(15));
    assert_eq!(exit, Some(0), "{}", stopped.output());
    // Its output is read by another thread, which may still be draining the pipe after the exit.
    stopped.expect_line("deregistered", Duration::from_secs(5));
    // Gone from the registry as soon as the process is (60 s lease: only deregistration explains it).
    let left = vec![urls[0].clone(), urls[2].clone()];
    wait_for_addresses(&c, &gw.url, "orders", &left, Duration::from_secs(2)).await;
    traffic.wait_for_more(200, Duration::from_secs(10)).await;
    let failures = traffic.stop().await;
    assert!(failures.is_empty(), "client saw failures: {failures:?}");
    assert!(gw.lines_with("[EVICT]").is_empty(), "{}", gw.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_is_gone_when_its_lease_runs_out() {
    let gw = gateway("lease: { ttl: 1500ms, heartbeat_interval: 300ms }\n");
    let c = Client::new();
    let mut reps = replicas(&gw, "orders", 2);
    let urls: Vec<String> = reps.iter().map(|r| r.url.clone()).collect();
    wait_for_addresses(&c, &gw.url, "orders", &urls, Duration::from_secs(10)).await;
    // Heartbeats keep both alive past the TTL.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert_eq!(addresses(&c, &gw.url, "orders").await, {
        let mut u = urls.clone();
        u.sort();
        u
    });
    let killed_at = Instant::now();
    reps[0].kill();
    wait_for_addresses(&c, &gw.url, "orders", &urls[1..], Duration::from_secs(10)).await;
    let took = killed_at.elapsed();
    assert!(took < Duration::from_millis(1_500 + 1_500), "took {took:?}");
    let evict = format!("[EVICT] {} from orders (lease expired", urls[0]);
    gw.expect_line(&evict, Duration::from_secs(5));
    let line = gw.lines_with(&evict);
    assert_eq!(line.len(), 1, "{}", gw.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_calls_users_through_the_gateway() {
    let gw = gateway("");
    let c = Client::new();
    let users = replicas(&gw, "users", 2);
    let users_url = format!("{}/users", gw.url);
    let orders = demo(
        "orders-0",
        &[
            "--service",
            "orders",
            "--gateway",
            &gw.url,
            "--users-url",
            &users_url,
        ],
    );
    let want: Vec<String> = users.iter().map(|r| r.url.clone()).collect();
    wait_for_addresses(&c, &gw.url, "users", &want, Duration::from_secs(10)).await;
    wait_for_addresses(
        &c,
        &gw.url,
        "orders",
        std::slice::from_ref(&orders.url),
        Duration::from_secs(10),
    )
    .await;
    let r = c.get(&format!("{}/orders/orders", gw.url)).await;
    assert_eq!(r.status, StatusCode::OK);
    let j = r.json();
    let list = j["orders"].as_array().unwrap();
    assert_eq!(list[0]["user"]["name"], "Ada Lovelace", "{j}");
    assert_eq!(list[1]["user"]["name"], "Grace Hopper", "{j}");
    // The two lookups were balanced over both users replicas.
    let mut served: Vec<&str> = list
        .iter()
        .map(|o| o["user"]["served_by"].as_str().unwrap())
        .collect();
    served.sort();
    assert_eq!(served, ["users-0", "users-1"]);
}
