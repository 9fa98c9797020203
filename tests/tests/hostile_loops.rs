//! Request loops: a gateway refuses to register itself as a replica, marks what it proxies with
//! `Via: 1.1 <instance_id>`, and answers 508 to a request that already went through it or through too
//! many proxies, so two gateways pointing at each other cannot ping-pong a request.

use std::time::Duration;

use e2e::http::register;
use e2e::raw::{exchange, Behaviour, RawReplica, RawResponse};
use e2e::{gateway, Client};
use http::StatusCode;

async fn get(addr: &str, path: &str, extra_headers: &str) -> RawResponse {
    let req = format!("GET {path} HTTP/1.1\r\nHost: gw\r\n{extra_headers}\r\n");
    exchange(addr, req.as_bytes(), Duration::from_secs(15))
        .await
        .unwrap_or_else(|e| panic!("GET {path} with {extra_headers:?}: {e:?}"))
}

/// Every `Via` entry of a request, in order, across all its `Via` header lines.
fn via_entries(values: &[&str]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_refuses_to_register_its_own_listener_as_a_replica() {
    let gw = gateway("");
    let c = Client::new();
    let port = gw.addr.rsplit(':').next().unwrap().to_owned();
    for host in ["127.0.0.1", "localhost", "0.0.0.0"] {
        let address = format!("http://{host}:{port}");
        let r = c
            .post_json(
                &format!("{}/register", gw.url),
                &serde_json::json!({ "service": "l", "address": address }),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "registering {address} (the gateway itself): {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.json()["field"], "address", "{:?}", r.json());
    }
    assert_eq!(
        c.get(&format!("{}/registry/l", gw.url)).await.status,
        StatusCode::NOT_FOUND,
        "nothing was registered"
    );
    // Another listener on the same host is an ordinary replica.
    let replica = RawReplica::start(Behaviour::Ok).await;
    register(&c, &gw.url, "l", &replica.url).await;
    assert_eq!(get(&gw.addr, "/l/x", "").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_routing_to_each_other_stop_a_deep_loop_with_508() {
    let a = gateway("proxy: { instance_id: gw-a }\n");
    let b = gateway("proxy: { instance_id: gw-b }\n");
    let c = Client::new();
    // Each may route to the other: they are different instances, so registration allows it.
    register(&c, &a.url, "b", &b.url).await;
    register(&c, &b.url, "a", &a.url).await;
    let replica = RawReplica::start(Behaviour::Ok).await;
    register(&c, &a.url, "svc", &replica.url).await;
    register(&c, &b.url, "svc", &replica.url).await;
    let (base_a, base_b) = (a.rss_kib(), b.rss_kib());

    // /b/a/b/a/... 20 segments, then /svc/x: 20 hops if nothing stops it, then the replica.
    let path: String = (0..20)
        .map(|i| if i % 2 == 0 { "/b" } else { "/a" })
        .collect::<String>()
        + "/svc/x";
    let resp = get(&a.addr, &path, "").await;
    assert_eq!(
        resp.status,
        508,
        "{} deep ping-pong: {}",
        path,
        resp.summary()
    );
    assert_eq!(replica.seen(), 0, "the looping request reached the replica");

    for (name, gw, base) in [("A", &a, base_a), ("B", &b, base_b)] {
        let r = c.get(&format!("{}/healthz", gw.url)).await;
        assert_eq!(r.status, StatusCode::OK, "gateway {name} /healthz");
        let grew = gw.rss_kib().saturating_sub(base);
        assert!(grew < 32 * 1024, "gateway {name} RSS grew by {grew} KiB");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_already_went_through_this_gateway_is_508() {
    let gw = gateway("proxy: { instance_id: gw-a }\n");
    let c = Client::new();
    let replica = RawReplica::start(Behaviour::Ok).await;
    register(&c, &gw.url, "svc", &replica.url).await;
    for via in [
        "Via: 1.1 gw-a\r\n",
        "Via: 1.0 edge, 1.1 gw-a\r\n",
        "Via: 1.1 edge\r\nVia: 1.1 gw-a, 1.1 other\r\n",
        "VIA: HTTP/1.1 gw-a\r\n",
    ] {
        let r = get(&gw.addr, "/svc/x", via).await;
        assert_eq!(r.status, 508, "{via:?}: {}", r.summary());
    }
    assert_eq!(replica.seen(), 0, "a looping request reached the replica");
    // Another instance whose name merely starts with ours is not us.
    let r = get(&gw.addr, "/svc/x", "Via: 1.1 gw-a2\r\n").await;
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(replica.seen(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_max_hops_via_entries_is_508_and_one_with_fewer_is_proxied() {
    let gw = gateway("proxy: { instance_id: gw-a }\n");
    let c = Client::new();
    let replica = RawReplica::start(Behaviour::Ok).await;
    register(&c, &gw.url, "svc", &replica.url).await;
    let entries = |n: usize| -> Vec<String> { (1..=n).map(|i| format!("1.1 p{i}")).collect() };

    // Eight entries (the default max_hops), on one line or spread over several: 508.
    let eight = entries(8);
    let r = get(
        &gw.addr,
        "/svc/x",
        &format!("Via: {}\r\n", eight.join(", ")),
    )
    .await;
    assert_eq!(r.status, 508, "8 Via entries: {}", r.summary());
    let spread: String = eight
        .chunks(2)
        .map(|pair| format!("Via: {}\r\n", pair.join(", ")))
        .collect();
    let r = get(&gw.addr, "/svc/x", &spread).await;
    assert_eq!(r.status, 508, "8 Via entries on 4 lines: {}", r.summary());
    assert_eq!(replica.seen(), 0);

    // Seven: one hop left, so it is proxied.
    let r = get(
        &gw.addr,
        "/svc/x",
        &format!("Via: {}\r\n", entries(7).join(", ")),
    )
    .await;
    assert_eq!(r.status, 200, "7 Via entries: {}", r.summary());
    // Two: proxied, with this gateway's entry appended after the client's.
    let r = get(&gw.addr, "/svc/y", "Via: 1.1 p1, 1.1 p2\r\n").await;
    assert_eq!(r.status, 200, "2 Via entries: {}", r.summary());
    let seen = replica.requests();
    assert_eq!(seen.len(), 2);
    let via = via_entries(&seen[1].headers_named("via"));
    assert_eq!(via, ["1.1 p1", "1.1 p2", "1.1 gw-a"], "{}", seen[1].head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxied_requests_carry_the_gateways_via_entry() {
    let named = gateway("proxy: { instance_id: gw-a }\n");
    let unnamed = gateway("");
    let c = Client::new();
    let replica = RawReplica::start(Behaviour::Ok).await;
    register(&c, &named.url, "svc", &replica.url).await;
    register(&c, &unnamed.url, "svc", &replica.url).await;

    assert_eq!(get(&named.addr, "/svc/x", "").await.status, 200);
    let req = replica.requests().pop().unwrap();
    assert_eq!(
        via_entries(&req.headers_named("via")),
        ["1.1 gw-a"],
        "{}",
        req.head
    );

    // Without a configured instance_id the gateway still names itself (a random id).
    assert_eq!(get(&unnamed.addr, "/svc/x", "").await.status, 200);
    let req = replica.requests().pop().unwrap();
    let via = via_entries(&req.headers_named("via"));
    assert_eq!(via.len(), 1, "{}", req.head);
    assert!(
        via[0].starts_with("1.1 ") && via[0].len() > 4,
        "{}",
        req.head
    );
}
