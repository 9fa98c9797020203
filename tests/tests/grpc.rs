//! gRPC end to end: a tonic client through the gateway's gRPC listener to real demo-grpc replicas.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::process::demo_grpc;
use e2e::{channel, eventually, gateway, Client, Proc};
use registry_proto::demo::v1::{
    echo_client::EchoClient, FailRequest, SayManyRequest, SayRequest, SlowRequest,
};
use registry_proto::registry::v1::{self as pb, registry_client::RegistryClient};
use tonic::Code;

async fn grpc_replicas(c: &Client, gw: &str, service: &str) -> Vec<serde_json::Value> {
    let r = c.get(&format!("{gw}/registry")).await.json();
    r["services"][service]["replicas"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Starts `n` demo-grpc replicas registered (over HTTP) with `gw`, and waits for them.
async fn replicas(gw: &Proc, n: usize, extra: &[&str]) -> Vec<Proc> {
    let mut reps = Vec::new();
    for i in 0..n {
        let mut args = vec!["--gateway", gw.url.as_str()];
        args.extend_from_slice(extra);
        reps.push(demo_grpc(&format!("echo-{i}"), &args));
    }
    let c = Client::new();
    eventually(Duration::from_secs(10), "gRPC replicas registered", || {
        let (c, url) = (c.clone(), gw.url.clone());
        async move { (grpc_replicas(&c, &url, "echo").await.len() == n).then_some(()) }
    })
    .await;
    reps
}

/// One unary call over a plain HTTP/2 connection, with `grpc-timeout` and nothing enforcing it locally.
async fn raw_call(
    addr: &str,
    path: &str,
    msg: &impl prost::Message,
    timeout: &str,
) -> (http::HeaderMap, Option<http::HeaderMap>) {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let payload = msg.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    let req = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", timeout)
        .body(http_body_util::Full::new(bytes::Bytes::from(frame)))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let collected = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .unwrap()
        .unwrap();
    (parts.headers, collected.trailers().cloned())
}

fn say(m: &str) -> SayRequest {
    SayRequest {
        message: m.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_and_streaming_calls_round_robin_over_three_replicas() {
    let gw = gateway("");
    let _reps = replicas(&gw, 3, &[]).await;
    let c = Client::new();
    let listed = grpc_replicas(&c, &gw.url, "echo").await;
    assert!(
        listed
            .iter()
            .all(|r| r["protocol"] == "grpc" && r["grpc_services"][0] == "demo.v1.Echo"),
        "{listed:?}"
    );

    let mut echo = EchoClient::new(channel(&gw.grpc_url).await);
    let mut seen = Vec::new();
    for i in 0..30 {
        let resp = echo.say(say(&format!("hi {i}"))).await.expect("unary call");
        let replica = resp
            .metadata()
            .get("x-replica")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let body = resp.into_inner();
        assert_eq!(body.message, format!("hi {i}"));
        assert_eq!(body.replica, replica);
        seen.push(replica);
    }
    for (i, r) in seen.iter().enumerate() {
        assert_eq!(r, &seen[i % 3], "strict rotation: {seen:?}");
    }
    let mut counts = BTreeMap::new();
    for s in &seen {
        *counts.entry(s.clone()).or_insert(0) += 1;
    }
    assert_eq!(counts.values().copied().collect::<Vec<_>>(), [10, 10, 10]);

    // Server streaming: each stream comes whole from one replica, and streams rotate too.
    let mut stream_replicas = Vec::new();
    for _ in 0..3 {
        let mut stream = echo
            .say_many(SayManyRequest {
                message: "tick".into(),
                count: 5,
            })
            .await
            .unwrap()
            .into_inner();
        let mut got = Vec::new();
        while let Some(m) = stream.message().await.unwrap() {
            got.push(m);
        }
        assert_eq!(got.len(), 5);
        assert_eq!(got[4].message, "tick #4");
        assert!(got.iter().all(|m| m.replica == got[0].replica));
        stream_replicas.push(got[0].replica.clone());
    }
    stream_replicas.sort();
    stream_replicas.dedup();
    assert_eq!(stream_replicas.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_costs_no_failed_unary_call() {
    let gw = gateway("breaker: { failure_threshold: 3, open_timeout: 200ms }\nlease: { ttl: 60s, heartbeat_interval: 5s }\n");
    let mut reps = replicas(&gw, 3, &[]).await;
    let killed = reps[1].url.clone();
    let mut echo = EchoClient::new(channel(&gw.grpc_url).await);
    for i in 0..300 {
        if i == 60 {
            reps[1].kill();
        }
        let r = echo.say(say("x")).await;
        assert!(r.is_ok(), "call {i} failed: {:?}", r.err());
    }
    let line = format!("[CIRCUIT] {killed} OPEN (threshold reached)");
    gw.expect_line(&line, Duration::from_secs(5));
    assert_eq!(gw.lines_with(&line).len(), 1, "{}", gw.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_errors_reach_the_client_intact_and_do_not_trip_the_breaker() {
    let gw = gateway("breaker: { failure_threshold: 2 }\n");
    let _reps = replicas(&gw, 1, &[]).await;
    let mut echo = EchoClient::new(channel(&gw.grpc_url).await);
    for _ in 0..5 {
        let err = echo
            .fail(FailRequest {
                code: Code::InvalidArgument as i32,
                message: "bad input: 100% wrong".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(err.message(), "bad input: 100% wrong");
        assert_eq!(err.metadata().get("x-replica").unwrap(), "echo-0");
    }
    let c = Client::new();
    let r = &grpc_replicas(&c, &gw.url, "echo").await[0];
    assert_eq!(
        (r["state"].as_str(), r["failures"].as_u64()),
        (Some("closed"), Some(0)),
        "{r}"
    );
    // UNAVAILABLE from the replica is its fault: two in a row open the breaker.
    for _ in 0..2 {
        let err = echo
            .fail(FailRequest {
                code: Code::Unavailable as i32,
                message: "down".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
        assert_eq!(err.message(), "down");
    }
    let r = &grpc_replicas(&c, &gw.url, "echo").await[0];
    assert_eq!(r["state"], "open", "{r}");
    assert_eq!(r["last_failure"], "grpc-status 14");
    // Now the gateway itself answers: trailers-only UNAVAILABLE with a message.
    let err = echo.say(say("x")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(
        err.message().contains("no replica of 'echo'"),
        "{}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_are_honoured_and_unknown_services_are_not_found() {
    let gw = gateway("");
    let _reps = replicas(&gw, 1, &[]).await;
    let mut echo = EchoClient::new(channel(&gw.grpc_url).await);
    // tonic clients enforce `grpc-timeout` themselves; a raw h2 call shows the gateway's own answer.
    let started = Instant::now();
    let (headers, trailers) = raw_call(
        &gw.grpc_addr(),
        "/demo.v1.Echo/Slow",
        &SlowRequest { ms: 3_000 },
        "200m",
    )
    .await;
    let status = headers
        .get("grpc-status")
        .or(trailers.as_ref().and_then(|t| t.get("grpc-status")));
    assert_eq!(
        status.unwrap(),
        "4",
        "DEADLINE_EXCEEDED: {headers:?} {trailers:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Within its deadline the same call succeeds.
    let mut req = tonic::Request::new(SlowRequest { ms: 50 });
    req.set_timeout(Duration::from_secs(5));
    assert_eq!(
        echo.slow(req).await.unwrap().into_inner().message,
        "slept 50 ms"
    );

    // A gRPC service nobody serves: NOT_FOUND from the gateway.
    let mut unknown = tonic::client::Grpc::new(channel(&gw.grpc_url).await);
    unknown.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/nobody.v1.Nothing/Call");
    let codec =
        tonic_prost::ProstCodec::<SayRequest, registry_proto::demo::v1::SayResponse>::default();
    let err = unknown
        .unary(tonic::Request::new(say("x")), path, codec)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.message().contains("nobody.v1.Nothing"),
        "{}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_over_grpc_inspect_over_http_and_watch_changes_within_100ms() {
    let gw = gateway("");
    let mut registry = RegistryClient::new(channel(&gw.grpc_url).await);
    let mut watch = registry
        .watch(pb::WatchRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert!(
        matches!(first.event, Some(pb::registry_event::Event::Snapshot(_))),
        "{first:?}"
    );

    // A replica registered over gRPC (demo-grpc through the SDK's gRPC transport) ...
    let rep = demo_grpc("echo-g", &["--gateway", &gw.grpc_url, "--via-grpc"]);
    let added_at = Instant::now();
    let event = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let latency = added_at.elapsed();
    match event.event {
        Some(pb::registry_event::Event::Added(r)) => {
            assert_eq!(r.address, rep.url);
            assert_eq!(r.protocol, pb::Protocol::Grpc as i32);
        }
        other => panic!("{other:?}"),
    }
    // ... is visible over HTTP.
    let c = Client::new();
    let listed = grpc_replicas(&c, &gw.url, "echo").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["address"], rep.url.as_str());
    assert!(latency < Duration::from_secs(5), "{latency:?}");

    // A change made now reaches the watcher within 100 ms.
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    let changed_at = Instant::now();
    registry
        .deregister(pb::DeregisterRequest {
            service: "echo".into(),
            id,
        })
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let took = changed_at.elapsed();
    assert!(
        matches!(event.event, Some(pb::registry_event::Event::Removed(_))),
        "{event:?}"
    );
    assert!(
        took < Duration::from_millis(100),
        "watch delivered after {took:?}"
    );

    let list = registry
        .list_services(pb::ListServicesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(list.services.iter().all(|s| s.replicas.is_empty()));
    // Bad registrations over gRPC are INVALID_ARGUMENT naming the field.
    let err = registry
        .register(pb::RegisterRequest {
            service: "Bad".into(),
            address: "http://127.0.0.1:1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("service:"), "{}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_and_bidirectional_streams_pass_through_and_health_and_explicit_routing_answer() {
    let gw = gateway("");
    let _reps = replicas(&gw, 2, &[]).await;
    let mut echo = EchoClient::new(channel(&gw.grpc_url).await);

    // Client streaming: three messages up, one answer.
    let up = futures_util::stream::iter(["a", "b", "c"].map(say));
    let joined = echo.collect(up).await.unwrap().into_inner();
    assert_eq!(joined.message, "a+b+c");

    // Bidirectional: each message answered while the request stream is still open.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<SayRequest>(4);
    let requests = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut replies = echo.chat(requests).await.unwrap().into_inner();
    for word in ["ping", "pong", "done"] {
        tx.send(say(word)).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(5), replies.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(r.message, format!("re: {word}"));
    }
    drop(tx);
    assert!(replies.message().await.unwrap().is_none());

    // The gateway's own health service.
    let mut health =
        tonic_health::pb::health_client::HealthClient::new(channel(&gw.grpc_url).await);
    for service in ["", "registry.v1.Registry"] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }

    // Explicit routing: the header names the registry service.
    let codec =
        || tonic_prost::ProstCodec::<SayRequest, registry_proto::demo::v1::SayResponse>::default();
    let mut raw = tonic::client::Grpc::new(channel(&gw.grpc_url).await);
    for (target, expect_ok) in [("echo", true), ("nosuch", false)] {
        let mut req = tonic::Request::new(say("routed"));
        req.metadata_mut()
            .insert("x-registry-service", target.parse().unwrap());
        raw.ready().await.unwrap();
        let path = http::uri::PathAndQuery::from_static("/demo.v1.Echo/Say");
        match raw.unary(req, path, codec()).await {
            Ok(r) if expect_ok => assert_eq!(r.into_inner().message, "routed"),
            Err(e) if !expect_ok => assert_eq!(e.code(), Code::NotFound),
            other => panic!("{target}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_already_passed_through_this_gateway_is_refused_as_a_loop() {
    let gw = gateway("proxy: { instance_id: gw-loop, max_hops: 3 }\n");
    let _reps = replicas(&gw, 1, &[]).await;
    let mut echo = EchoClient::new(channel(&gw.grpc_url).await);
    // A call carrying this gateway's own Via entry: refused, never forwarded.
    let mut req = tonic::Request::new(say("loop"));
    req.metadata_mut()
        .insert("via", "1.1 other, 1.1 gw-loop".parse().unwrap());
    let err = echo.say(req).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("loop"), "{}", err.message());
    // Too many hops through other gateways: refused too.
    let mut req = tonic::Request::new(say("far"));
    req.metadata_mut()
        .insert("via", "1.1 a, 1.1 b, 1.1 c".parse().unwrap());
    let err = echo.say(req).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    // Two earlier hops are fine, and the replica stays untouched by the refused calls. The gateway adds
    // its own entry, naming the protocol it received (HTTP/2, RFC 9110 §7.6.3).
    let mut req = tonic::Request::new(say("near"));
    req.metadata_mut()
        .insert("via", "1.1 a, 1.1 b".parse().unwrap());
    let answer = echo.say(req).await.unwrap();
    let seen: Vec<&str> = answer
        .metadata()
        .get_all("x-seen-via")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(seen.join(", "), "1.1 a, 1.1 b, 2 gw-loop", "{seen:?}");
    assert_eq!(answer.into_inner().message, "near");
    let c = Client::new();
    let reps = grpc_replicas(&c, &gw.url, "echo").await;
    assert_eq!(reps[0]["requests"], 1, "{reps:?}");
    assert_eq!(reps[0]["failures"], 0, "{reps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_edges_refuse_a_5000_byte_metadata_value_naming_the_field() {
    // One set of rules (`Registration::try_new`): over HTTP a 400, over gRPC INVALID_ARGUMENT, both
    // naming `metadata`. The gRPC edge used to accept this value.
    let gw = gateway("");
    let c = Client::new();
    let value = "x".repeat(5000);
    let body = serde_json::json!({
        "service": "orders",
        "address": "http://127.0.0.1:9",
        "metadata": { "k": value },
    });
    let r = c.post_json(&format!("{}/register", gw.url), &body).await;
    assert_eq!(r.status.as_u16(), 400, "{:?}", r.body);
    let j = r.json();
    assert_eq!(j["field"], "metadata", "{j}");

    let mut registry = RegistryClient::new(channel(&gw.grpc_url).await);
    let err = registry
        .register(pb::RegisterRequest {
            service: "orders".into(),
            address: "http://127.0.0.1:9".into(),
            metadata: [("k".to_owned(), value.clone())].into_iter().collect(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("metadata:"), "{}", err.message());

    // The same value at the limit (1,024 bytes) is accepted by both.
    let ok = "x".repeat(1024);
    let body = serde_json::json!({
        "service": "orders",
        "address": "http://127.0.0.1:9",
        "metadata": { "k": ok },
    });
    assert_eq!(
        c.post_json(&format!("{}/register", gw.url), &body)
            .await
            .status
            .as_u16(),
        201
    );
    registry
        .register(pb::RegisterRequest {
            service: "orders".into(),
            address: "http://127.0.0.1:10".into(),
            metadata: [("k".to_owned(), ok)].into_iter().collect(),
            ..Default::default()
        })
        .await
        .unwrap();
    let listed = grpc_replicas(&c, &gw.url, "orders").await;
    assert_eq!(listed.len(), 2, "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_never_left_moves_on_within_the_retry_budget_like_an_http_request() {
    // One attempt machine for both wires: a call refused a connection moves to the next replica, and
    // that move is a retry paid for by the service's budget. With no budget at all (ratio 0, no floor)
    // the call ends at the refusal, saying why; with the budget off, every call is answered.
    for (budget, moves_on) in [
        ("{ enabled: false }", true),
        ("{ ratio: 0.0, min_per_second: 0 }", false),
    ] {
        let gw = gateway(&format!(
            "breaker: {{ failure_threshold: 1000000 }}\neviction: {{ failure_threshold: 1000000 }}\n\
             retry: {{ max_attempts: 2, budget: {budget} }}\n"
        ));
        let _reps = replicas(&gw, 1, &[]).await;
        let c = Client::new();
        let dead = format!("http://127.0.0.1:{}", e2e::process::free_port());
        let body = serde_json::json!({
            "service": "echo",
            "address": dead,
            "protocol": "grpc",
            "grpc_services": ["demo.v1.Echo"],
        });
        assert_eq!(
            c.post_json(&format!("{}/register", gw.url), &body)
                .await
                .status
                .as_u16(),
            201
        );
        let mut echo = EchoClient::new(channel(&gw.grpc_url).await);
        // Round robin over the live and the dead replica: some calls go to the dead one first.
        let mut refused = 0;
        for i in 0..6 {
            match echo.say(say(&format!("m{i}"))).await {
                Ok(_) => {}
                Err(s) => {
                    assert_eq!(s.code(), Code::Unavailable, "{s:?}");
                    assert!(
                        s.message().contains("not retried: over the retry budget"),
                        "{}",
                        s.message()
                    );
                    refused += 1;
                }
            }
        }
        if moves_on {
            assert_eq!(refused, 0, "budget {budget}");
        } else {
            assert!(refused >= 1, "budget {budget}");
        }
        let listed = grpc_replicas(&c, &gw.url, "echo").await;
        let dead_view = listed
            .iter()
            .find(|r| r["address"] == dead.as_str())
            .expect("the dead replica is listed");
        assert!(dead_view["failures"].as_u64().unwrap() >= 1, "{dead_view}");
    }
}
