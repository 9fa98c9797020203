//! Request-side observability end to end: `GET /metrics` moves with real traffic (HTTP and gRPC), a dead
//! replica shows as failed attempts and retries while clients get 200s, every request leaves one access-log
//! line, and `x-request-id` goes to the replica and back.

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::http::register;
use e2e::process::demo_grpc;
use e2e::{channel, demo, eventually, gateway, log_field, Client, Proc};
use http::{Method, StatusCode};
use registry_proto::demo::v1::{echo_client::EchoClient, FailRequest, SayRequest};

const WAIT: Duration = Duration::from_secs(15);

/// One parsed sample of the Prometheus text exposition.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of a `/metrics` body, in whatever order they came.
#[derive(Debug)]
struct Metrics {
    samples: Vec<Sample>,
    text: String,
}

impl Metrics {
    fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            let (name, labels) = match series.split_once('{') {
                None => (series, BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("closing brace");
                    let mut labels = BTreeMap::new();
                    // Label values here never hold `",` (service names, addresses, codes).
                    for pair in body.split("\",").filter(|p| !p.is_empty()) {
                        let (k, v) = pair.split_once("=\"").expect("k=\"v\"");
                        labels.insert(k.to_owned(), v.trim_end_matches('"').to_owned());
                    }
                    (name, labels)
                }
            };
            samples.push(Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().expect("numeric value"),
            });
        }
        Metrics {
            samples,
            text: text.to_owned(),
        }
    }

    /// Sum of the samples of `name` whose labels include every pair of `want` (0 when none).
    fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.matching(name, want).map(|s| s.value).sum()
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        want: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && want
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// Whether any sample has the label `key` set to `value`.
    fn has_label(&self, key: &str, value: &str) -> bool {
        self.samples
            .iter()
            .any(|s| s.labels.get(key).map(String::as_str) == Some(value))
    }
}

async fn scrape(c: &Client, gw: &str) -> Metrics {
    let r = c.get(&format!("{gw}/metrics")).await;
    assert_eq!(r.status, StatusCode::OK);
    Metrics::parse(std::str::from_utf8(&r.body).expect("utf-8 metrics"))
}

/// Scrapes until `ready` holds (outcomes are recorded when response bodies end), and returns that scrape.
async fn scrape_until(
    c: &Client,
    gw: &str,
    what: &str,
    ready: impl Fn(&Metrics) -> bool,
) -> Metrics {
    let mut last = String::new();
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let m = scrape(c, gw).await;
            if ready(&m) {
                return m;
            }
            last = m.text.clone();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("metrics never showed {what}; last scrape:\n{last}"))
}

/// The headers a demo-http echo saw, as (name, value) pairs.
fn echoed(body: &serde_json::Value, name: &str) -> Vec<String> {
    body["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter(|h| h[0] == name)
        .map(|h| h[1].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests_and_attempts_are_counted_and_unknown_services_make_no_series() {
    let gw = gateway("");
    let (a, b) = (demo("a", &[]), demo("b", &[]));
    let c = Client::new();
    register(&c, &gw.url, "users", &a.url).await;
    register(&c, &gw.url, "users", &b.url).await;

    const N: usize = 20;
    for _ in 0..N {
        let r = c.get(&format!("{}/users/hello", gw.url)).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    // Client-chosen names: one fixed `service=""` series, never one per name.
    for name in ["nosuch", "other-unknown"] {
        let r = c.get(&format!("{}/{name}/x", gw.url)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }

    let m = scrape_until(&c, &gw.url, "20 answered requests", |m| {
        m.sum(
            "gateway_request_duration_seconds_count",
            &[("service", "users")],
        ) == N as f64
    })
    .await;
    let users = [("service", "users"), ("protocol", "http")];
    assert_eq!(
        m.sum(
            "gateway_requests_total",
            &[users[0], users[1], ("code", "200")]
        ),
        N as f64,
        "{}",
        m.text
    );
    assert_eq!(m.sum("gateway_requests_total", &users), N as f64);
    assert_eq!(
        m.sum(
            "gateway_upstream_attempts_total",
            &[("service", "users"), ("result", "success")]
        ),
        N as f64
    );
    // Round robin over two: half each, labelled with the address as registered.
    for r in [&a, &b] {
        assert_eq!(
            m.sum(
                "gateway_upstream_attempts_total",
                &[("replica", r.url.as_str()), ("result", "success")]
            ),
            (N / 2) as f64,
            "{}",
            m.text
        );
    }
    assert_eq!(
        m.sum(
            "gateway_upstream_attempts_total",
            &[("service", "users"), ("result", "failure")]
        ),
        0.0
    );
    assert_eq!(m.sum("gateway_retries_total", &[("service", "users")]), 0.0);
    assert_eq!(
        m.sum(
            "gateway_requests_total",
            &[("service", ""), ("protocol", "http"), ("code", "404")]
        ),
        2.0,
        "{}",
        m.text
    );
    assert!(!m.text.contains("nosuch") && !m.text.contains("other-unknown"));
    assert!(!m.has_label("service", "nosuch"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_shows_as_failed_attempts_and_retries_while_clients_get_200() {
    // No eviction: the dead replica's series stay for the assertions.
    let gw = gateway("eviction: { failure_threshold: 1000 }\n");
    let (live, mut dead) = (demo("live", &[]), demo("dead", &[]));
    let c = Client::new();
    register(&c, &gw.url, "users", &live.url).await;
    register(&c, &gw.url, "users", &dead.url).await;
    dead.kill();

    const N: usize = 20;
    for i in 0..N {
        let r = c.get(&format!("{}/users/hello", gw.url)).await;
        assert_eq!(r.status, StatusCode::OK, "request {i}");
        assert_eq!(r.header("x-replica"), Some("live"));
    }
    let m = scrape_until(&c, &gw.url, "20 answered requests", |m| {
        m.sum(
            "gateway_request_duration_seconds_count",
            &[("service", "users")],
        ) == N as f64
    })
    .await;
    assert_eq!(
        m.sum(
            "gateway_requests_total",
            &[("service", "users"), ("code", "200")]
        ),
        N as f64
    );
    assert_eq!(
        m.sum("gateway_requests_total", &[("service", "users")]),
        N as f64
    );
    let failures = m.sum(
        "gateway_upstream_attempts_total",
        &[("replica", dead.url.as_str()), ("result", "failure")],
    );
    assert!(failures >= 1.0, "{}", m.text);
    // Every failed attempt (connect refused) was followed by a retry on the live replica.
    assert_eq!(
        m.sum("gateway_retries_total", &[("service", "users")]),
        failures,
        "{}",
        m.text
    );
    assert_eq!(
        m.sum(
            "gateway_upstream_attempts_total",
            &[("replica", live.url.as_str()), ("result", "success")]
        ),
        N as f64
    );
    // The access log tells the same story: some request took two attempts and still got its 200.
    let line = gw.expect_line("attempts=2", WAIT);
    assert_eq!(log_field(&line, "status"), "200", "{line}");
    assert_eq!(log_field(&line, "replica"), live.url, "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http_request_leaves_one_access_line_and_its_request_id_round_trips() {
    let gw = gateway("");
    let a = demo("a", &[]);
    let c = Client::new();
    register(&c, &gw.url, "users", &a.url).await;

    // A sane id from the client is kept: the replica gets it, the client gets it back.
    let r = c
        .request(
            Method::GET,
            &format!("{}/users/echo?secret=1", gw.url),
            &[("x-request-id", "client-id-42")],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-request-id"), Some("client-id-42"));
    assert_eq!(echoed(&r.json(), "x-request-id"), ["client-id-42"]);
    let line = gw.expect_line("request_id=client-id-42", WAIT);
    for (k, v) in [
        ("method", "GET"),
        ("path", "/users/echo"),
        ("service", "users"),
        ("replica", a.url.as_str()),
        ("status", "200"),
        ("attempts", "1"),
        ("bytes", &r.body.len().to_string()),
    ] {
        assert_eq!(log_field(&line, k), v, "{k} in {line}");
    }
    assert!(
        log_field(&line, "client").starts_with("127.0.0.1:"),
        "{line}"
    );
    assert!(log_field(&line, "duration_ms").parse::<f64>().unwrap() >= 0.0);
    assert!(!line.contains("secret"), "the query is not logged: {line}");

    // None sent: one is generated, and the replica, the client and the log all see the same one.
    let r = c.get(&format!("{}/users/echo", gw.url)).await;
    let id = r.header("x-request-id").expect("generated id").to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(echoed(&r.json(), "x-request-id"), [id.as_str()]);
    gw.expect_line(&format!("request_id={id}"), WAIT);

    // An insane one (too long) is replaced, never forwarded.
    let long = "x".repeat(129);
    let r = c
        .request(
            Method::GET,
            &format!("{}/users/echo", gw.url),
            &[("x-request-id", long.as_str())],
            "",
        )
        .await;
    let replaced = r.header("x-request-id").unwrap().to_owned();
    assert_ne!(replaced, long);
    assert_eq!(echoed(&r.json(), "x-request-id"), [replaced]);

    // The gateway's own errors carry the id and are logged too, without a replica.
    let r = c
        .request(
            Method::DELETE,
            &format!("{}/nosuch/x", gw.url),
            &[("x-request-id", "err-1")],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.header("x-request-id"), Some("err-1"));
    let line = gw.expect_line("request_id=err-1", WAIT);
    for (k, v) in [
        ("method", "DELETE"),
        ("path", "/nosuch/x"),
        ("service", ""),
        ("replica", "-"),
        ("status", "404"),
        ("attempts", "0"),
        ("bytes", &r.body.len().to_string()),
    ] {
        assert_eq!(log_field(&line, k), v, "{k} in {line}");
    }
    // One line per request: four requests, four lines.
    eventually(WAIT, "four access lines", || async {
        (gw.lines_with(" access ").len() == 4).then_some(())
    })
    .await;
    assert_eq!(gw.lines_with("request_id=client-id-42").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_access_false_writes_no_access_lines_but_still_counts() {
    let gw = gateway("log: { access: false }\n");
    let a = demo("a", &[]);
    let c = Client::new();
    register(&c, &gw.url, "users", &a.url).await;
    let r = c
        .request(
            Method::GET,
            &format!("{}/users/hello", gw.url),
            &[("x-request-id", "quiet-1")],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-request-id"), Some("quiet-1"));
    scrape_until(&c, &gw.url, "the request", |m| {
        m.sum(
            "gateway_requests_total",
            &[("service", "users"), ("code", "200")],
        ) == 1.0
    })
    .await;
    // The line would have been written before the count was visible.
    assert!(gw.lines_with("quiet-1").is_empty(), "{}", gw.output());
    assert!(gw.lines_with(" access ").is_empty(), "{}", gw.output());
}

async fn grpc_replica(gw: &Proc) -> Proc {
    let r = demo_grpc("echo-0", &["--gateway", gw.url.as_str()]);
    let c = Client::new();
    eventually(WAIT, "gRPC replica registered", || {
        let (c, url) = (c.clone(), gw.url.clone());
        async move {
            let reg = c.get(&format!("{url}/registry")).await.json();
            (reg["services"]["echo"]["replicas"]
                .as_array()
                .is_some_and(|a| a.len() == 1))
            .then_some(())
        }
    })
    .await;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_are_counted_by_status_name_and_carry_the_request_id() {
    let gw = gateway("");
    let rep = grpc_replica(&gw).await;
    let mut client = EchoClient::new(channel(&gw.grpc_url).await);

    const N: usize = 5;
    for i in 0..N {
        let r = client
            .say(SayRequest {
                message: format!("m{i}"),
            })
            .await
            .expect("say");
        let id = r.metadata().get("x-request-id").expect("generated id");
        assert_eq!(id.len(), 36);
        assert_eq!(r.metadata().get("x-seen-request-id"), Some(id));
    }
    // A sent id reaches the replica and comes back.
    let mut req = tonic::Request::new(SayRequest {
        message: "with id".into(),
    });
    req.metadata_mut()
        .insert("x-request-id", "grpc-id-7".parse().unwrap());
    let r = client.say(req).await.expect("say");
    assert_eq!(r.metadata().get("x-request-id").unwrap(), "grpc-id-7");
    assert_eq!(r.metadata().get("x-seen-request-id").unwrap(), "grpc-id-7");
    // An application error is the replica's answer: counted under its name.
    let err = client
        .fail(FailRequest {
            code: tonic::Code::NotFound as i32,
            message: "no such thing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(err.metadata().get("x-request-id").is_some());

    let m = scrape_until(&c_new(), &gw.url, "the gRPC calls", |m| {
        m.sum(
            "gateway_request_duration_seconds_count",
            &[("service", "echo"), ("protocol", "grpc")],
        ) == (N + 2) as f64
    })
    .await;
    let echo = [("service", "echo"), ("protocol", "grpc")];
    assert_eq!(
        m.sum(
            "gateway_requests_total",
            &[echo[0], echo[1], ("code", "OK")]
        ),
        (N + 1) as f64,
        "{}",
        m.text
    );
    assert_eq!(
        m.sum(
            "gateway_requests_total",
            &[echo[0], echo[1], ("code", "NOT_FOUND")]
        ),
        1.0
    );
    assert_eq!(
        m.sum(
            "gateway_upstream_attempts_total",
            &[("service", "echo"), ("result", "success")]
        ),
        (N + 2) as f64
    );
    assert_eq!(
        m.sum("gateway_requests_total", &[("protocol", "http")]),
        0.0,
        "no HTTP request was proxied: {}",
        m.text
    );

    let line = gw.expect_line("request_id=grpc-id-7", WAIT);
    for (k, v) in [
        ("method", "POST"),
        ("path", "/demo.v1.Echo/Say"),
        ("service", "echo"),
        ("replica", rep.url.as_str()),
        ("status", "OK"),
        ("attempts", "1"),
    ] {
        assert_eq!(log_field(&line, k), v, "{k} in {line}");
    }
    assert!(
        log_field(&line, "bytes").parse::<u64>().unwrap() > 0,
        "{line}"
    );
    let line = gw.expect_line("path=/demo.v1.Echo/Fail", WAIT);
    assert_eq!(log_field(&line, "status"), "NOT_FOUND", "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_call_for_no_known_service_is_counted_under_the_empty_service() {
    let gw = gateway("");
    let mut client = EchoClient::new(channel(&gw.grpc_url).await);
    let mut req = tonic::Request::new(SayRequest {
        message: "nobody".into(),
    });
    req.metadata_mut()
        .insert("x-registry-service", "made-up-name".parse().unwrap());
    req.metadata_mut()
        .insert("x-request-id", "lost-1".parse().unwrap());
    let err = client.say(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert_eq!(err.metadata().get("x-request-id").unwrap(), "lost-1");
    let m = scrape_until(&c_new(), &gw.url, "the refused call", |m| {
        m.sum(
            "gateway_requests_total",
            &[("service", ""), ("protocol", "grpc"), ("code", "NOT_FOUND")],
        ) == 1.0
    })
    .await;
    assert!(!m.text.contains("made-up-name"), "{}", m.text);
    let line = gw.expect_line("request_id=lost-1", WAIT);
    assert_eq!(log_field(&line, "replica"), "-", "{line}");
    assert_eq!(log_field(&line, "attempts"), "0", "{line}");
}

fn c_new() -> Client {
    Client::new()
}
