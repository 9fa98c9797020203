//! The dashboard end to end: the event stream `GET /registry/events` read by a raw client, and the page
//! `GET /ui` rendered by a real headless Chromium that follows the stream.

use std::time::{Duration, Instant};

use e2e::browser::Browser;
use e2e::http::register;
use e2e::sse::EventStream;
use e2e::{demo, eventually, gateway, Client, Proc};
use http::{Method, StatusCode};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(30);

/// A JSON value without the fields that count time (`*_ms_ago`, `*_in_ms`): two reads a few
/// milliseconds apart differ only in those.
fn timeless(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.ends_with("_ms_ago") && !k.ends_with("_in_ms"))
                .map(|(k, v)| (k.clone(), timeless(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(timeless).collect()),
        other => other.clone(),
    }
}

/// The replica at `address` in `GET /registry`'s JSON.
fn replica_in(registry: &Value, service: &str, address: &str) -> Value {
    registry["services"][service]["replicas"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["address"] == address)
        .cloned()
        .unwrap_or_else(|| panic!("{address} not in {service}: {registry}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_opens_with_the_registry_and_then_tells_each_change() {
    let gw = gateway("");
    let (a, b) = (demo("a", &[]), demo("b", &[]));
    let c = Client::new();
    register(&c, &gw.url, "orders", &a.url).await;

    let mut events = EventStream::open(&c, &format!("{}/registry/events", gw.url), &[]).await;
    assert_eq!(events.status, StatusCode::OK);
    assert_eq!(events.header("content-type"), Some("text/event-stream"));
    assert_eq!(events.header("cache-control"), Some("no-cache"));

    // First the registry, exactly as GET /registry shows it.
    let snapshot = events.next(LONG).await.expect("a first event");
    assert_eq!(snapshot.name, "snapshot");
    let registry = c.get(&format!("{}/registry", gw.url)).await.json();
    assert_eq!(timeless(&snapshot.json()), timeless(&registry));
    assert_eq!(
        replica_in(&snapshot.json(), "orders", &a.url)["state"],
        "closed"
    );

    // A registration arrives as `registered`, the replica as GET /registry shows it.
    let id = register(&c, &gw.url, "users", &b.url).await;
    let added = events.next_named("registered", LONG).await.json();
    assert_eq!(added["service"], "users");
    assert_eq!(added["replica"]["address"], b.url);
    assert_eq!(added["replica"]["id"], id);
    let listed = replica_in(
        &c.get(&format!("{}/registry", gw.url)).await.json(),
        "users",
        &b.url,
    );
    assert_eq!(timeless(&added["replica"]), timeless(&listed));
    assert!(added.get("reason").is_none(), "{added}");

    // Traffic shows in the next stats event: counters and a rate per replica.
    for _ in 0..4 {
        assert_eq!(
            c.get(&format!("{}/users/x", gw.url)).await.status,
            StatusCode::OK
        );
    }
    let stats = events
        .next_matching(LONG, "stats counting the 4 requests to b", |e| {
            e.name == "stats"
                && e.json()["replicas"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|r| r["address"] == b.url && r["requests"] == 4)
        })
        .await
        .json();
    assert!(
        stats["interval_ms"].as_u64().is_some_and(|ms| ms > 0),
        "{stats}"
    );
    // With the registry again, for what changes without an event (lease renewals, half-open by the clock).
    assert_eq!(
        replica_in(&stats["registry"], "users", &b.url)["requests"],
        4
    );
    assert!(stats["registry"]["store"].is_object(), "{stats}");
    for r in stats["replicas"].as_array().unwrap() {
        for field in [
            "service",
            "id",
            "address",
            "state",
            "requests",
            "failures",
            "requests_per_s",
            "error_rate",
        ] {
            assert!(r.get(field).is_some(), "{field} missing in {r}");
        }
    }

    // Deregistration: `removed`, saying why.
    let gone = c.delete(&format!("{}/registry/users/{id}", gw.url)).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    let removed = events.next_named("removed", LONG).await.json();
    assert_eq!(
        (
            &removed["service"],
            &removed["replica"]["address"],
            &removed["reason"]
        ),
        (
            &Value::from("users"),
            &Value::from(b.url.as_str()),
            &Value::from("deregistered")
        )
    );

    // `events` names the stream, so no service may take it; other methods are refused.
    let r = c
        .post_json(
            &format!("{}/register", gw.url),
            &serde_json::json!({ "service": "events", "address": a.url }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    assert!(r.json()["message"].as_str().unwrap().contains("reserved"));
    let r = c.post(&format!("{}/registry/events", gw.url), "").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protected_stream_takes_the_read_token_in_a_header_or_as_access_token() {
    let gw = gateway("auth: { registration_token: w-token, read_token: r-token }\n");
    let c = Client::new();
    let url = format!("{}/registry/events", gw.url);
    for (query, header) in [
        ("", None),
        ("?access_token=wrong", None),
        ("?access_token=", None),
        ("?access_token=r-token", Some("Bearer wrong")),
    ] {
        let headers: Vec<(&str, &str)> = header.map(|h| ("authorization", h)).into_iter().collect();
        let r = c
            .request(Method::GET, &format!("{url}{query}"), &headers, "")
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{query} {header:?}");
        assert_eq!(r.json()["error"], "unauthorized");
    }
    for (query, headers) in [
        ("?access_token=r-token", vec![]),
        ("?access_token=w-token", vec![]),
        ("", vec![("authorization", "Bearer r-token")]),
    ] {
        let mut events = EventStream::open(&c, &format!("{url}{query}"), &headers).await;
        assert_eq!(events.status, StatusCode::OK, "{query} {headers:?}");
        assert_eq!(events.next(LONG).await.expect("snapshot").name, "snapshot");
    }
    // The query parameter is taken by the stream only: the other reads still want the header.
    let r = c
        .get(&format!("{}/registry?access_token=r-token", gw.url))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // The page itself holds no data and needs no token.
    let page = c.get(&format!("{}/ui", gw.url)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    for asset in ["/ui/dashboard.js", "/ui/dashboard.css"] {
        assert_eq!(
            c.get(&format!("{}{asset}", gw.url)).await.status,
            StatusCode::OK,
            "{asset}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_stream_live_on_the_admin_listener_when_there_is_one() {
    let admin = format!("127.0.0.1:{}", e2e::process::free_port());
    let gw = gateway(&format!("admin_listen: {admin}\n"));
    let c = Client::new();
    let page = c.get(&format!("http://{admin}/ui")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&page.body).contains("/ui/dashboard.js"));
    let mut events = EventStream::open(&c, &format!("http://{admin}/registry/events"), &[]).await;
    assert_eq!(events.next(LONG).await.expect("snapshot").name, "snapshot");
    // The proxying listener keeps to proxying: `ui` is no service there.
    assert_eq!(
        c.get(&format!("{}/ui", gw.url)).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_stream_ends_at_shutdown_instead_of_holding_the_drain() {
    let mut gw = gateway("");
    let c = Client::new();
    let mut events = EventStream::open(&c, &format!("{}/registry/events", gw.url), &[]).await;
    assert_eq!(events.next(LONG).await.expect("snapshot").name, "snapshot");
    let start = Instant::now();
    let code = gw.terminate(LONG);
    let took = start.elapsed();
    assert_eq!(code, Some(0), "{}", gw.output());
    // The drain gives in-flight requests up to 10 s: an open stream must not be one of them.
    assert!(
        took < Duration::from_secs(8),
        "shutdown took {took:?} with a stream open"
    );
    assert!(events.ends_within(LONG).await, "the stream did not end");
}

/// `document.querySelector` of the replica row showing `address`, as an expression.
fn row(address: &str) -> String {
    format!(r#"document.querySelector('tr.replica[data-address="{address}"]')"#)
}

/// The gateway logs each stream it opens: the page is connected once this line appears.
const STREAM_OPENED: &str = "registry event stream opened";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_every_replica_and_a_breaker_opening_without_a_reload() {
    e2e::browser::require_chromium();
    let gw = gateway(
        "retry: { max_attempts: 1 }\n\
         breaker: { failure_threshold: 2, open_timeout: 60s }\n\
         eviction: { failure_threshold: 1000 }\n",
    );
    let (o1, mut o2, u1) = (demo("o1", &[]), demo("o2", &[]), demo("u1", &[]));
    let c = Client::new();
    for (service, replica) in [("orders", &o1), ("orders", &o2), ("users", &u1)] {
        register(&c, &gw.url, service, &replica.url).await;
    }

    let url = format!("{}/ui", gw.url);
    let mut page = tokio::task::block_in_place(|| Browser::open(&url, 1280, 900));
    gw.expect_line(STREAM_OPENED, Duration::from_secs(60));
    tokio::task::block_in_place(|| {
        for r in [&o1, &o2, &u1] {
            page.wait_for(
                &format!(r#"{}?.dataset.state === "closed""#, row(&r.url)),
                LONG,
                &format!("{} shown closed", r.url),
            );
        }
        // Marks this document: a reload would lose it.
        page.eval("window.__sameDocument = true");
    });
    let dom = tokio::task::block_in_place(|| page.dom());
    for needle in [
        r#"data-service="orders""#,
        r#"data-service="users""#,
        &o1.url,
        &o2.url,
        &u1.url,
    ] {
        assert!(dom.contains(needle), "{needle} not in the DOM:\n{dom}");
    }

    // o2 dies; requests find it refusing connections until its breaker opens.
    o2.kill();
    eventually(LONG, "o2's breaker open", || {
        let (c, gw_url, o2_url) = (c.clone(), gw.url.clone(), o2.url.clone());
        async move {
            c.get(&format!("{gw_url}/orders/x")).await;
            let registry = c.get(&format!("{gw_url}/registry")).await.json();
            (replica_in(&registry, "orders", &o2_url)["state"] == "open").then_some(())
        }
    })
    .await;

    tokio::task::block_in_place(|| {
        page.wait_for(
            &format!(r#"{}?.dataset.state === "open""#, row(&o2.url)),
            LONG,
            "o2 shown open",
        );
        assert_eq!(
            page.eval("window.__sameDocument === true"),
            Value::Bool(true),
            "the page reloaded"
        );
        assert_eq!(
            page.eval(&format!(r#"{}.dataset.state"#, row(&o1.url))),
            Value::from("closed")
        );
    });
    assert_eq!(
        gw.lines_with(STREAM_OPENED).len(),
        1,
        "the page reconnected:\n{}",
        gw.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_asks_once_for_the_read_token_and_keeps_it_for_the_tab() {
    e2e::browser::require_chromium();
    let gw = gateway("auth: { read_token: r-token }\n");
    let a = demo("a", &[]);
    let c = Client::new();
    register(&c, &gw.url, "orders", &a.url).await;

    let url = format!("{}/ui", gw.url);
    let mut page = tokio::task::block_in_place(|| Browser::open(&url, 1280, 900));
    tokio::task::block_in_place(|| {
        let form = r#"document.getElementById("token-form")"#;
        page.wait_for(&format!("!{form}.hidden"), LONG, "the token form");
        assert_eq!(
            page.eval(&row(&a.url)),
            Value::Null,
            "data shown without a token"
        );
        // A wrong token is refused, and the form asks again.
        page.eval(&format!(
            r#"document.getElementById("token").value = "wrong"; {form}.requestSubmit()"#
        ));
        page.wait_for(
            &format!(
                r#"!{form}.hidden && document.getElementById("token-error").textContent !== """#
            ),
            LONG,
            "the form asking again",
        );
        page.eval(&format!(
            r#"document.getElementById("token").value = "r-token"; {form}.requestSubmit()"#
        ));
        page.wait_for(
            &format!("{} !== null", row(&a.url)),
            LONG,
            "the replica once the token is given",
        );
        assert_eq!(page.eval(&format!("{form}.hidden")), Value::Bool(true));
        assert_eq!(
            page.eval(r#"sessionStorage.getItem("registry-gateway.read-token")"#),
            Value::from("r-token")
        );
        // A reload in the same tab connects with the kept token, without asking.
        page.eval("window.__beforeReload = true; setTimeout(() => location.reload(), 0)");
        page.wait_for(
            &format!(
                r#"window.__beforeReload === undefined && {} !== null"#,
                row(&a.url)
            ),
            LONG,
            "the replica after a reload",
        );
        assert_eq!(page.eval(&format!("{form}.hidden")), Value::Bool(true));
    });
    assert!(gw.lines_with(STREAM_OPENED).len() >= 2, "{}", gw.output());
}

/// Writes `docs/dashboard.png`: three services under traffic, one breaker open, one replica evicted.
/// Run by hand: `cargo test -p e2e --test dashboard -- --ignored --nocapture screenshot`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes docs/dashboard.png; run by hand"]
async fn screenshot_for_the_docs() {
    let gw = gateway(
        "retry: { max_attempts: 1 }\n\
         breaker: { failure_threshold: 3, open_timeout: 60s }\n\
         eviction: { failure_threshold: 1000 }\n\
         lease: { ttl: 4s, heartbeat_interval: 1s, preservation_ratio: 1 }\n",
    );
    let started: Vec<(&str, &str, Vec<&str>)> = vec![
        ("orders", "orders-1", vec![]),
        ("orders", "orders-2", vec!["--fail-rate", "0.05"]),
        ("orders", "orders-3", vec![]),
        ("users", "users-1", vec![]),
        ("users", "users-2", vec![]),
        ("payments", "payments-1", vec![]),
        // Answers 500 to everything: its breaker opens, and it stays registered (it heartbeats).
        ("payments", "payments-2", vec!["--fail-pattern", "f"]),
    ];
    let mut replicas: Vec<Proc> = started
        .iter()
        .map(|(service, name, extra)| {
            let mut args = vec!["--service", service, "--gateway", &gw.url];
            args.extend(extra.iter().copied());
            demo(name, &args)
        })
        .collect();
    let c = Client::new();
    eventually(LONG, "7 replicas registered", || {
        let (c, url) = (c.clone(), gw.url.clone());
        async move {
            let r = c.get(&format!("{url}/registry")).await.json();
            let n: usize = ["orders", "users", "payments"]
                .iter()
                .map(|s| r["services"][s]["replicas"].as_array().map_or(0, Vec::len))
                .sum();
            (n == 7).then_some(())
        }
    })
    .await;
    let traffic: Vec<_> = ["orders", "orders", "users", "payments"]
        .iter()
        .map(|s| e2e::Traffic::start(&c, &format!("{}/{s}/work", gw.url), 1))
        .collect();
    let url = format!("{}/ui", gw.url);
    let mut page = tokio::task::block_in_place(|| Browser::open(&url, 1280, 900));
    gw.expect_line(STREAM_OPENED, Duration::from_secs(60));

    // users-2 stops heartbeating (and answering): its breaker opens, then its lease runs out.
    let users2 = replicas[4].url.clone();
    replicas[4].kill();
    tokio::task::block_in_place(|| {
        page.wait_for(
            &format!(r#"document.querySelector('li[data-address="{users2}"]') !== null"#),
            LONG,
            "users-2 evicted",
        )
    });
    let payments2 = replicas[6].url.clone();
    tokio::task::block_in_place(|| {
        page.wait_for(
            &format!(r#"{}?.dataset.state === "open""#, row(&payments2)),
            LONG,
            "payments-2 open",
        );
        // Not a condition for an assertion: two stats intervals of steady traffic, for the picture's rates.
        std::thread::sleep(Duration::from_secs(5));
        let png = page.screenshot_png();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/dashboard.png");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &png).unwrap();
        println!("wrote {} ({} bytes)", path.display(), png.len());
        assert!(png.len() < 300 * 1024, "{} bytes", png.len());
    });
    for t in traffic {
        t.stop().await;
    }
}
