//! The registry at fleet scale end to end: `GET /registry` streamed and filtered, and tens of thousands of
//! replicas registered, renewed, removed and read in bounded memory.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use e2e::http::register;
use e2e::process::free_port;
use e2e::{eventually, gateway, Client};
use http::StatusCode;
use serde_json::{json, Value};

fn service_names(registry: &Value) -> Vec<String> {
    registry["services"]
        .as_object()
        .unwrap_or_else(|| panic!("no services in {registry}"))
        .keys()
        .cloned()
        .collect()
}

/// Replica number `k` (from 1) of a test fleet: one address each, all on 127.0.0.0/8, never proxied to.
fn address(k: u32) -> String {
    format!(
        "http://127.{}.{}.{}:20000",
        (k >> 16) & 255,
        (k >> 8) & 255,
        k & 255
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_is_streamed_and_filtered_by_service_state_and_protocol() {
    let gw = gateway(
        "retry: { max_attempts: 1 }\neviction: { failure_threshold: 1000 }\n\
         breaker: { failure_threshold: 1, open_timeout: 60s }\n",
    );
    let c = Client::new();
    // alpha: one replica nothing listens on (its breaker opens at the first request), one never asked.
    let dead = format!("http://127.0.0.1:{}", free_port());
    register(&c, &gw.url, "alpha", &dead).await;
    register(&c, &gw.url, "alpha", "http://127.0.0.2:9").await;
    register(&c, &gw.url, "beta", "http://127.0.0.3:9").await;
    let grpc = c
        .post_json(
            &format!("{}/register", gw.url),
            &json!({ "service": "gamma", "address": "http://127.0.0.4:9", "protocol": "grpc",
                     "grpc_services": ["demo.v1.Echo"] }),
        )
        .await;
    assert_eq!(grpc.status, StatusCode::CREATED, "{:?}", grpc.body);
    eventually(Duration::from_secs(10), "alpha's dead replica open", || {
        let (c, url, dead) = (c.clone(), gw.url.clone(), dead.clone());
        async move {
            let _ = c.get(&format!("{url}/alpha/x")).await;
            let r = c.get(&format!("{url}/registry/alpha")).await.json();
            r["replicas"]
                .as_array()?
                .iter()
                .any(|r| r["address"] == dead.as_str() && r["state"] == "open")
                .then_some(())
        }
    })
    .await;

    let all = c.get(&format!("{}/registry", gw.url)).await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(all.header("transfer-encoding"), Some("chunked"));
    assert_eq!(all.header("content-type"), Some("application/json"));
    let all = all.json();
    assert_eq!(service_names(&all), ["alpha", "beta", "gamma"]);
    assert!(all["store"].is_object(), "{all}");
    for name in ["alpha", "beta", "gamma"] {
        // The whole document lists each service as `GET /registry/{service}` shows it.
        let one = c.get(&format!("{}/registry/{name}", gw.url)).await.json();
        let s = &all["services"][name];
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(s), keys(&one), "{s} vs {one}");
        let ids = |v: &Value| {
            v["replicas"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(s), ids(&one));
        assert_eq!(keys(&s["replicas"][0]), keys(&one["replicas"][0]));
    }
    assert_eq!(
        all["services"]["alpha"]["replicas"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let get = |q: &str| {
        let (c, url) = (c.clone(), format!("{}/registry?{q}", gw.url));
        async move { c.get(&url).await }
    };
    let some = get("service=beta,gamma,nope").await.json();
    assert_eq!(service_names(&some), ["beta", "gamma"]);
    let open = get("state=open").await.json();
    assert_eq!(service_names(&open), ["alpha"]);
    let open_alpha = open["services"]["alpha"]["replicas"].as_array().unwrap();
    assert_eq!(open_alpha.len(), 1, "{open}");
    assert_eq!(open_alpha[0]["address"], dead.as_str());
    let closed = get("state=closed").await.json();
    assert_eq!(service_names(&closed), ["alpha", "beta", "gamma"]);
    assert_eq!(
        closed["services"]["alpha"]["replicas"][0]["address"],
        "http://127.0.0.2:9"
    );
    let grpc = get("protocol=grpc").await.json();
    assert_eq!(service_names(&grpc), ["gamma"]);
    let none = get("protocol=grpc&state=open").await.json();
    assert!(service_names(&none).is_empty(), "{none}");
    for bad in ["state=ajar", "protocol=udp"] {
        let r = get(bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {:?}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_replicas_register_renew_leave_and_stream_in_bounded_memory() {
    const REPLICAS: u32 = 50_000;
    const SERVICES: u32 = 50;
    const TASKS: u32 = 16;
    let gw = Arc::new(gateway("lease: { ttl: 60m, heartbeat_interval: 20m }\n"));
    let c = Client::new();
    let before = gw.rss_kib();

    // Half of the fleet in one service, the rest spread over 49.
    let service = |k: u32| {
        if k % 2 == 0 {
            "big".to_owned()
        } else {
            format!("s{}", k % (SERVICES - 1))
        }
    };
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (c, url) = (c.clone(), gw.url.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for k in (1 + t..=REPLICAS).step_by(TASKS as usize) {
                let id = register(&c, &url, &service(k), &address(k)).await;
                ids.push((k, id));
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    assert_eq!(ids.len(), REPLICAS as usize);
    let per_replica = (gw.rss_kib().saturating_sub(before)) * 1024 / u64::from(REPLICAS);
    assert!(per_replica < 2000, "{per_replica} bytes of RSS per replica");

    // Heartbeats of a sample renew; a tenth of the fleet deregisters.
    for (k, id) in ids.iter().step_by(97) {
        let r = c
            .put(&format!(
                "{}/registry/{}/{id}/heartbeat",
                gw.url,
                service(*k)
            ))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    for (k, id) in ids.iter().step_by(10) {
        let r = c
            .delete(&format!("{}/registry/{}/{id}", gw.url, service(*k)))
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    }
    let left = REPLICAS as usize - ids.iter().step_by(10).count();

    // The whole document, while the gateway's RSS is sampled.
    let base = gw.rss_kib();
    let (done, peak) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(base)),
    );
    let sampler = {
        let (gw, done, peak) = (Arc::clone(&gw), Arc::clone(&done), Arc::clone(&peak));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(gw.rss_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let all = c.get(&format!("{}/registry", gw.url)).await;
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    assert_eq!(all.header("transfer-encoding"), Some("chunked"));
    let all = all.json();
    let listed: usize = all["services"]
        .as_object()
        .unwrap()
        .values()
        .map(|s| s["replicas"].as_array().unwrap().len())
        .sum();
    assert_eq!(listed, left);
    let big = all["services"]["big"]["replicas"].as_array().unwrap();
    let gone_big = ids.iter().step_by(10).filter(|(k, _)| k % 2 == 0).count();
    assert_eq!(big.len(), REPLICAS as usize / 2 - gone_big);
    let grown = peak.load(Ordering::Relaxed).saturating_sub(base) / 1024;
    assert!(
        grown < 64,
        "RSS grew by {grown} MiB while streaming the registry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_under_the_registry_answer_as_before_for_every_method_and_shape() {
    let gw = gateway("");
    let c = Client::new();
    let id = register(&c, &gw.url, "orders", "http://127.0.0.5:9").await;
    let url = |p: &str| format!("{}/registry/{p}", gw.url);
    let cases = [
        (http::Method::GET, "orders".to_owned(), StatusCode::OK),
        (
            http::Method::PUT,
            "orders".to_owned(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (http::Method::GET, format!("orders/{id}"), StatusCode::OK),
        (
            http::Method::POST,
            format!("orders/{id}"),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            http::Method::PUT,
            format!("orders/{id}/heartbeat"),
            StatusCode::OK,
        ),
        (
            http::Method::GET,
            format!("orders/{id}/heartbeat"),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            http::Method::PUT,
            "orders/not-an-id/heartbeat".to_owned(),
            StatusCode::NOT_FOUND,
        ),
        (http::Method::GET, "nope".to_owned(), StatusCode::NOT_FOUND),
        (
            http::Method::GET,
            "orders/".to_owned(),
            StatusCode::NOT_FOUND,
        ),
        (
            http::Method::GET,
            format!("orders/{id}/"),
            StatusCode::NOT_FOUND,
        ),
        (
            http::Method::GET,
            format!("orders/{id}/heartbeat/x"),
            StatusCode::NOT_FOUND,
        ),
        (http::Method::GET, String::new(), StatusCode::NOT_FOUND),
        (
            http::Method::DELETE,
            format!("orders/{id}"),
            StatusCode::NO_CONTENT,
        ),
        (
            http::Method::GET,
            format!("orders/{id}"),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (method, path, status) in cases {
        let r = c
            .request(method.clone(), &url(&path), &[], bytes::Bytes::new())
            .await;
        assert_eq!(r.status, status, "{method} /registry/{path}: {:?}", r.body);
        if status.is_client_error() {
            assert!(
                r.json()["error"].is_string(),
                "{method} /registry/{path}: {:?}",
                r.body
            );
        }
    }
}
