//! Why each replica is in its state, end to end: `state_reason`, the open countdown and transitions of a
//! replica killed with SIGKILL, its entry under `evicted` once the failures evict it, and the registry's
//! Prometheus series (with the memory store and with a real redis-server).

use std::time::{Duration, SystemTime};

use e2e::http::{register, replica_view};
use e2e::process::Redis;
use e2e::{demo, eventually, gateway, Client, Proc};

/// `GET /registry/{service}` of `gw`.
async fn service(c: &Client, gw: &Proc, service: &str) -> serde_json::Value {
    let r = c.get(&format!("{}/registry/{service}", gw.url)).await;
    assert_eq!(r.status, 200, "GET /registry/{service}: {:?}", r.body);
    r.json()
}

/// `GET /metrics` of `gw`.
async fn metrics(c: &Client, gw: &Proc) -> String {
    let r = c.get(&format!("{}/metrics", gw.url)).await;
    assert_eq!(r.status, 200);
    String::from_utf8(r.body.to_vec()).expect("utf-8 metrics")
}

/// The value of the series `series` (name and labels, exactly as exported), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// One attempt per request; three failures open a breaker for 3 s; five evict; leases outlast the test.
const YAML: &str = "retry: { max_attempts: 1 }\n\
    breaker: { failure_threshold: 3, open_timeout: 3s }\n\
    eviction: { failure_threshold: 5, probation_memory: 10m }\n\
    lease: { ttl: 120s, heartbeat_interval: 30s }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_is_explained_while_open_and_listed_under_evicted_once_evicted() {
    let gw = gateway(YAML);
    let (a, mut b) = (demo("a", &[]), demo("b", &[]));
    let c = Client::new();
    let started_ms = unix_ms_now();
    register(&c, &gw.url, "orders", &a.url).await;
    let b_id = register(&c, &gw.url, "orders", &b.url).await;
    for _ in 0..4 {
        assert_eq!(c.get(&format!("{}/orders/x", gw.url)).await.status, 200);
    }
    let v = replica_view(&c, &gw.url, "orders", &b.url).await.unwrap();
    assert_eq!(v["state"], "closed", "{v}");
    assert_eq!(v["state_reason"], "registered", "{v}");
    assert!(v["next_probe_in_ms"].is_null(), "{v}");
    assert_eq!(v["transitions"], serde_json::json!([]), "{v}");
    let lease = v["lease_expires_in_ms"].as_u64().expect("lease countdown");
    assert!(lease > 60_000 && lease <= 120_000, "{v}");

    b.kill();
    // Round robin: every other request goes to b and fails until its breaker opens.
    let open = eventually(Duration::from_secs(20), "b open", || {
        let (c, url, b_url) = (c.clone(), gw.url.clone(), b.url.clone());
        async move {
            c.get(&format!("{url}/orders/x")).await;
            let v = replica_view(&c, &url, "orders", &b_url).await?;
            (v["state"] == "open").then_some(v)
        }
    })
    .await;
    assert_eq!(
        open["state_reason"], "3 consecutive failures: connect failed",
        "{open}"
    );
    let next_probe = open["next_probe_in_ms"].as_u64().expect("next probe");
    assert!(next_probe <= 3_000, "{open}");
    assert!(
        open["state_since_ms_ago"].as_u64().unwrap() <= 3_000,
        "{open}"
    );
    let transitions = open["transitions"].as_array().unwrap();
    assert_eq!(transitions.len(), 1, "{open}");
    assert_eq!(transitions[0]["from"], "closed");
    assert_eq!(transitions[0]["to"], "open");
    assert_eq!(
        transitions[0]["reason"],
        "3 consecutive failures: connect failed"
    );
    let at = transitions[0]["at_unix_ms"].as_u64().unwrap();
    assert!(at >= started_ms && at <= unix_ms_now(), "{open}");
    let b_state = |s: &str| {
        format!(
            "gateway_replica_state{{service=\"orders\",replica=\"{}\",state=\"{s}\"}}",
            b.url
        )
    };
    let text = metrics(&c, &gw).await;
    assert_eq!(value(&text, &b_state("open")), Some(1.0), "{text}");
    assert_eq!(value(&text, &b_state("closed")), Some(0.0), "{text}");
    assert_eq!(
        value(
            &text,
            &format!(
                "gateway_breaker_transitions_total{{service=\"orders\",replica=\"{}\",to=\"open\"}}",
                b.url
            )
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "gateway_replicas{service=\"orders\"}"),
        Some(2.0)
    );
    assert_eq!(value(&text, "gateway_registrations_total"), Some(2.0));

    // Two failed probes, one per open timeout, make five failures: evicted.
    let evicted = eventually(Duration::from_secs(30), "b evicted", || {
        let (c, url, b_url) = (c.clone(), gw.url.clone(), b.url.clone());
        async move {
            c.get(&format!("{url}/orders/x")).await;
            let s = c.get(&format!("{url}/registry/orders")).await.json();
            s["evicted"]
                .as_array()?
                .iter()
                .find(|e| e["address"] == b_url.as_str())
                .cloned()
        }
    })
    .await;
    let s = service(&c, &gw, "orders").await;
    assert!(
        replica_view(&c, &gw.url, "orders", &b.url).await.is_none(),
        "{s}"
    );
    assert_eq!(evicted["id"], b_id.as_str(), "{evicted}");
    assert_eq!(
        evicted["reason"], "5 consecutive failures (last: connect failed)",
        "{evicted}"
    );
    let counters = &evicted["counters"];
    assert_eq!(counters["consecutive_failures"], 5, "{evicted}");
    assert_eq!(counters["failures"], 5, "{evicted}");
    assert_eq!(counters["last_failure"], "connect failed", "{evicted}");
    // Two of the four requests before the kill went to b and succeeded.
    assert_eq!(counters["requests"], 7, "{evicted}");
    let evicted_at = evicted["evicted_at_unix_ms"].as_u64().unwrap();
    assert!(evicted_at > at && evicted_at <= unix_ms_now(), "{evicted}");
    let steps: Vec<(&str, &str)> = evicted["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["from"].as_str().unwrap(), t["to"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("closed", "open"),
            ("open", "half_open"),
            ("half_open", "open"),
            ("open", "half_open"),
            ("half_open", "open"),
        ],
        "{evicted}"
    );
    // GET /registry shows the same list.
    let all = c.get(&format!("{}/registry", gw.url)).await.json();
    assert_eq!(all["services"]["orders"]["evicted"][0]["id"], b_id.as_str());

    let text = metrics(&c, &gw).await;
    assert_eq!(
        value(
            &text,
            "gateway_evictions_total{service=\"orders\",reason=\"failures\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        !text.contains(&format!("replica=\"{}\"", b.url)),
        "b's series are gone:\n{text}"
    );
    assert_eq!(
        value(&text, "gateway_replicas{service=\"orders\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            &format!(
                "gateway_replica_state{{service=\"orders\",replica=\"{}\",state=\"closed\"}}",
                a.url
            )
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_lost_every_replica_to_lapsed_leases_still_answers_with_its_evicted_list() {
    let gw = gateway("lease: { ttl: 2s, heartbeat_interval: 500ms }\n");
    let backend = demo("a", &[]);
    let c = Client::new();
    // Registered by hand: nothing heartbeats for it.
    let id = register(&c, &gw.url, "orders", &backend.url).await;
    let first = replica_view(&c, &gw.url, "orders", &backend.url)
        .await
        .unwrap()["lease_expires_in_ms"]
        .as_u64()
        .expect("lease countdown");
    assert!(first <= 2_000, "{first}");
    gw.expect_line(
        &format!("[EVICT] {} from orders", backend.url),
        Duration::from_secs(10),
    );
    let s = service(&c, &gw, "orders").await;
    assert_eq!(s["replicas"], serde_json::json!([]), "{s}");
    let evicted = &s["evicted"][0];
    assert_eq!(evicted["id"], id.as_str(), "{s}");
    assert!(
        evicted["reason"]
            .as_str()
            .unwrap()
            .starts_with("lease expired, no heartbeat for "),
        "{s}"
    );
    assert_eq!(evicted["counters"]["requests"], 0, "{s}");
    assert_eq!(evicted["transitions"], serde_json::json!([]), "{s}");
    let text = metrics(&c, &gw).await;
    assert_eq!(
        value(
            &text,
            "gateway_evictions_total{service=\"orders\",reason=\"lease_expired\"}"
        ),
        Some(1.0),
        "{text}"
    );
    // Kept at 0 rather than dropped: `gateway_replicas == 0` is what an alert looks for.
    assert_eq!(
        value(&text, "gateway_replicas{service=\"orders\"}"),
        Some(0.0),
        "{text}"
    );
    // Registering again takes it off the list.
    register(&c, &gw.url, "orders", &backend.url).await;
    let s = service(&c, &gw, "orders").await;
    assert_eq!(s["evicted"], serde_json::json!([]), "{s}");
    assert_eq!(s["replicas"].as_array().unwrap().len(), 1, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_series_exist_with_redis_only_and_follow_its_connection() {
    let c = Client::new();
    let memory = gateway("");
    let text = metrics(&c, &memory).await;
    assert!(text.contains("gateway_registrations_total 0"), "{text}");
    assert!(!text.contains("gateway_store_"), "memory store:\n{text}");

    let mut redis = Redis::start();
    let gw = gateway(&format!(
        "store: {}\nredis: {{ resync_interval: 1s }}\n",
        redis.url()
    ));
    let text = eventually(Duration::from_secs(15), "store connected", || {
        let c = c.clone();
        let url = gw.url.clone();
        async move {
            let text =
                String::from_utf8(c.get(&format!("{url}/metrics")).await.body.to_vec()).ok()?;
            (value(&text, "gateway_store_connected") == Some(1.0)
                && value(&text, "gateway_store_resyncs_total").is_some_and(|n| n >= 1.0))
            .then_some(text)
        }
    })
    .await;
    assert!(
        text.contains("# TYPE gateway_store_connected gauge"),
        "{text}"
    );
    redis.stop();
    eventually(Duration::from_secs(15), "store disconnected", || {
        let c = c.clone();
        let url = gw.url.clone();
        async move {
            let text =
                String::from_utf8(c.get(&format!("{url}/metrics")).await.body.to_vec()).ok()?;
            (value(&text, "gateway_store_connected") == Some(0.0)).then_some(())
        }
    })
    .await;
}
