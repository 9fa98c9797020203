//! Bounded self-preservation end to end: a fleet whose heartbeats stop at once stays listed and served for
//! `lease.preservation_max`, then goes; a minority going silent is evicted after the TTL as usual.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::http::register;
use e2e::{demo, eventually, gateway, log_time, Client, Proc};
use http::StatusCode;

/// Leases of 1 s; a hold lasts at most 3 s.
const CONFIG: &str = "lease: { ttl: 1s, heartbeat_interval: 300ms, preservation_max: 3s }\n";
const TTL: Duration = Duration::from_secs(1);

/// Ten demo replicas registered by hand (the demos run without `--gateway`, so they never heartbeat on
/// their own): their leases live exactly as long as this test renews them.
async fn fleet(c: &Client, gw: &str) -> (Vec<Proc>, Vec<String>) {
    let demos: Vec<Proc> = (0..10).map(|i| demo(&format!("r{i}"), &[])).collect();
    let mut ids = Vec::new();
    for d in &demos {
        ids.push(register(c, gw, "orders", &d.url).await);
    }
    (demos, ids)
}

async fn heartbeat_all(c: &Client, gw: &str, ids: &[String]) {
    let beats = ids.iter().map(|id| {
        let (c, url) = (c.clone(), format!("{gw}/registry/orders/{id}/heartbeat"));
        async move {
            let r = c.put(&url).await;
            assert_eq!(r.status, StatusCode::OK, "heartbeat {url}: {:?}", r.body);
        }
    });
    futures_util::future::join_all(beats).await;
}

/// `GET /registry/orders`.
async fn orders(c: &Client, gw: &str) -> serde_json::Value {
    c.get(&format!("{gw}/registry/orders")).await.json()
}

fn listed(service: &serde_json::Value) -> Vec<String> {
    service["replicas"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_replicas_silent_at_once_stay_listed_and_served_for_the_hold_then_go() {
    let gw = gateway(CONFIG);
    let c = Client::new();
    let (_demos, ids) = fleet(&c, &gw.url).await;
    for _ in 0..8 {
        heartbeat_all(&c, &gw.url, &ids).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    heartbeat_all(&c, &gw.url, &ids).await;
    // Every heartbeat stops here: the leases run out about 1 s later.
    let stopped = Instant::now();

    let hold = eventually(Duration::from_secs(10), "the [PRESERVE] line", || async {
        gw.lines_with("[PRESERVE] orders: 10 of 10 leases expired at once; holding until")
            .pop()
    })
    .await;
    assert!(
        hold.contains("still routed and breaker-protected"),
        "{hold}"
    );
    assert!(
        stopped.elapsed() >= TTL - Duration::from_millis(200),
        "held before the TTL: {hold}"
    );

    // About 2 s after the leases ran out (3 s after the last heartbeat), all ten are still listed, shown
    // as held, and the service still answers.
    let mut checks = 0;
    while stopped.elapsed() < TTL + Duration::from_secs(2) {
        let svc = orders(&c, &gw.url).await;
        let mut ids_listed = listed(&svc);
        ids_listed.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(
            ids_listed,
            want,
            "{} ms after the last heartbeat: {svc}",
            stopped.elapsed().as_millis()
        );
        let until = svc["preserving_until_unix_ms"]
            .as_u64()
            .unwrap_or_else(|| panic!("no preserving_until_unix_ms: {svc}"));
        assert!(until > unix_ms_now(), "{svc}");
        assert!(
            svc["replicas"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["preserved"] == true),
            "{svc}"
        );
        let r = c.get(&format!("{}/orders/hello", gw.url)).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        checks += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(checks >= 3, "only {checks} checks during the hold");

    // Then the hold ends (3 s after it began) and they go, with the hold named in the log.
    eventually(
        Duration::from_secs(3) + Duration::from_secs(10),
        "all ten evicted after the hold",
        || async { listed(&orders(&c, &gw.url).await).is_empty().then_some(()) },
    )
    .await;
    gw.expect_line(
        "[PRESERVE] orders: hold ended at its deadline; evicting the 10 of 10",
        Duration::from_secs(5),
    );
    let ended =
        gw.lines_with("[PRESERVE] orders: hold ended at its deadline; evicting the 10 of 10");
    assert_eq!(ended.len(), 1, "{}", gw.output());
    // The hold lasted its 3 s (by the gateway's own log timestamps), ended by the first sweep after it.
    let held = log_time(&ended[0]) - log_time(&hold);
    assert!(
        (3.0..4.5).contains(&held),
        "held {held} s:\n{}",
        gw.output()
    );
    // The log is written by its own thread: wait for all ten lines rather than race it.
    eventually(
        Duration::from_secs(5),
        "ten [EVICT] lines written",
        || async {
            let n = gw.lines_with("ms by self-preservation)").len();
            (n >= 10).then_some(())
        },
    )
    .await;
    let evicted = gw.lines_with("ms by self-preservation)");
    assert_eq!(
        evicted.iter().filter(|l| l.contains("[EVICT]")).count(),
        10,
        "{}",
        gw.output()
    );
    let svc = orders(&c, &gw.url).await;
    assert!(svc["preserving_until_unix_ms"].is_null(), "{svc}");
    assert_eq!(
        c.get(&format!("{}/orders/hello", gw.url)).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_ten_going_silent_are_evicted_after_the_ttl_as_usual() {
    let gw = gateway(CONFIG);
    let c = Client::new();
    let (_demos, ids) = fleet(&c, &gw.url).await;
    heartbeat_all(&c, &gw.url, &ids).await;
    let (silent, alive) = ids.split_at(2);
    let stopped = Instant::now();
    // The eight keep heartbeating every 100 ms until the end of the test.
    let done = Arc::new(AtomicBool::new(false));
    let beater = {
        let (c, gw, alive, done) = (c.clone(), gw.url.clone(), alive.to_vec(), Arc::clone(&done));
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                heartbeat_all(&c, &gw, &alive).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // The two go after the TTL, well before a 3 s hold could have ended.
    eventually(
        Duration::from_secs(10),
        "the two silent replicas evicted",
        || async {
            let now = listed(&orders(&c, &gw.url).await);
            (!now.iter().any(|id| silent.contains(id))).then_some(())
        },
    )
    .await;
    let gone_after = stopped.elapsed();
    assert!(
        gone_after >= TTL - Duration::from_millis(100),
        "{gone_after:?}"
    );
    assert!(
        gone_after < TTL + Duration::from_secs(2),
        "held? {gone_after:?}"
    );
    let svc = orders(&c, &gw.url).await;
    let mut now = listed(&svc);
    now.sort();
    let mut want = alive.to_vec();
    want.sort();
    assert_eq!(now, want, "{svc}");
    assert!(svc["preserving_until_unix_ms"].is_null(), "{svc}");
    assert!(gw.lines_with("[PRESERVE]").is_empty(), "{}", gw.output());
    // The log is written by its own thread: wait for both lines rather than race it.
    gw.expect_line("[EVICT]", Duration::from_secs(5));
    eventually(
        Duration::from_secs(5),
        "both [EVICT] lines written",
        || async { (gw.lines_with("[EVICT]").len() >= 2).then_some(()) },
    )
    .await;
    let evictions = gw.lines_with("[EVICT]");
    assert_eq!(evictions.len(), 2, "{}", gw.output());
    assert!(evictions
        .iter()
        .all(|l| l.contains("lease expired") && !l.contains("self-preservation")));
    done.store(true, Ordering::Relaxed);
    beater.await.unwrap();
}
