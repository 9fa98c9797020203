//! Registration API end to end: register, renew, heartbeat, lease expiry, deregister, bad input, auth, config.

use std::time::Duration;

use e2e::http::register;
use e2e::{demo, eventually, gateway, Client};
use http::{Method, StatusCode};
use serde_json::json;

fn replicas(registry: &serde_json::Value, service: &str) -> Vec<serde_json::Value> {
    registry["services"][service]["replicas"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_is_idempotent_and_visible_in_the_registry() {
    let gw = gateway("");
    let c = Client::new();
    let body = json!({ "service": "orders", "address": "http://127.0.0.1:9", "metadata": { "version": "1.4.2" } });
    let first = c.post_json(&format!("{}/register", gw.url), &body).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let j = first.json();
    let id = j["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(j["heartbeat_interval_ms"], 5000);
    assert_eq!(j["lease_ttl_ms"], 15000);
    assert_eq!(
        first.header("location").unwrap(),
        format!("/registry/orders/{id}")
    );

    let again = c.post_json(&format!("{}/register", gw.url), &body).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json()["id"], id.as_str());

    let reg = c.get(&format!("{}/registry", gw.url)).await.json();
    let list = replicas(&reg, "orders");
    assert_eq!(list.len(), 1, "{reg}");
    let r = &list[0];
    assert_eq!(r["id"], id.as_str());
    assert_eq!(r["address"], "http://127.0.0.1:9");
    assert_eq!(r["state"], "closed");
    assert_eq!(r["protocol"], "http");
    assert_eq!(r["metadata"]["version"], "1.4.2");
    for key in [
        "consecutive_failures",
        "requests",
        "failures",
        "last_heartbeat_ms_ago",
    ] {
        assert!(r[key].is_u64(), "{key} in {r}");
    }
    let one = c.get(&format!("{}/registry/orders", gw.url)).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json()["replicas"][0]["id"], id.as_str());
    assert_eq!(
        c.get(&format!("{}/registry/nope", gw.url)).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_renew_the_lease_and_silence_expires_it() {
    let gw = gateway("lease: { ttl: 1s, heartbeat_interval: 200ms }\n");
    let c = Client::new();
    let id = register(&c, &gw.url, "orders", "http://127.0.0.1:9").await;
    let hb = format!("{}/registry/orders/{id}/heartbeat", gw.url);
    // 2.5 s of heartbeats every 200 ms: well past the 1 s TTL, still registered.
    for _ in 0..12 {
        let r = c.put(&hb).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let reg = c.get(&format!("{}/registry", gw.url)).await.json();
    assert_eq!(replicas(&reg, "orders").len(), 1);
    // Silence: gone after the TTL, and the heartbeat then says 404 so the SDK registers again.
    eventually(Duration::from_secs(10), "lease expiry", || {
        let c = c.clone();
        let url = format!("{}/registry/orders", gw.url);
        async move {
            c.get(&url).await.json()["replicas"]
                .as_array()?
                .is_empty()
                .then_some(())
        }
    })
    .await;
    let late = c.put(&hb).await;
    assert_eq!(late.status, StatusCode::NOT_FOUND);
    assert_eq!(late.json()["error"], "unknown_replica");
    // The log line is read from the process's output by another thread: wait for it, do not race it.
    gw.expect_line(
        "[EVICT] http://127.0.0.1:9 from orders (lease expired",
        Duration::from_secs(5),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregistration_removes_at_once_and_the_service_then_answers_503() {
    let gw = gateway("");
    let backend = demo("a", &[]);
    let c = Client::new();
    let id = register(&c, &gw.url, "orders", &backend.url).await;
    assert_eq!(
        c.get(&format!("{}/orders/hello", gw.url)).await.status,
        StatusCode::OK
    );
    let del = c.delete(&format!("{}/registry/orders/{id}", gw.url)).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    let reg = c.get(&format!("{}/registry", gw.url)).await.json();
    assert!(replicas(&reg, "orders").is_empty());
    let r = c.get(&format!("{}/orders/hello", gw.url)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["error"], "no_replica_available");
    assert!(r.header("retry-after").is_some());
    let again = c.delete(&format!("{}/registry/orders/{id}", gw.url)).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_its_status_and_a_json_error() {
    let gw = gateway("limits: { registration_body_max: 4096 }\n");
    let c = Client::new();
    let reg = format!("{}/register", gw.url);
    let json_ct = [("content-type", "application/json")];
    // (body, status, error code, field)
    let cases: Vec<(String, u16, &str, Option<&str>)> = vec![
        ("{not json".into(), 400, "malformed_json", None),
        ("".into(), 400, "malformed_json", None),
        ("[1,2]".into(), 400, "invalid_request", None),
        (
            r#"{"address":"http://127.0.0.1:1"}"#.into(),
            400,
            "invalid_request",
            Some("service"),
        ),
        (
            r#"{"service":"a"}"#.into(),
            400,
            "invalid_request",
            Some("address"),
        ),
        (
            r#"{"service":5,"address":"http://127.0.0.1:1"}"#.into(),
            400,
            "invalid_request",
            Some("service"),
        ),
        (
            r#"{"service":"Orders","address":"http://127.0.0.1:1"}"#.into(),
            400,
            "invalid_request",
            Some("service"),
        ),
        (
            r#"{"service":"a_b","address":"http://127.0.0.1:1"}"#.into(),
            400,
            "invalid_request",
            Some("service"),
        ),
        (
            format!(
                r#"{{"service":"{}","address":"http://127.0.0.1:1"}}"#,
                "a".repeat(64)
            ),
            400,
            "invalid_request",
            Some("service"),
        ),
        (
            r#"{"service":"","address":"http://127.0.0.1:1"}"#.into(),
            400,
            "invalid_request",
            Some("service"),
        ),
        (
            r#"{"service":"a","address":"https://127.0.0.1"}"#.into(),
            400,
            "invalid_request",
            Some("address"),
        ),
        (
            r#"{"service":"a","address":"ftp://127.0.0.1:1"}"#.into(),
            400,
            "invalid_request",
            Some("address"),
        ),
        (
            r#"{"service":"a","address":"http://127.0.0.1"}"#.into(),
            400,
            "invalid_request",
            Some("address"),
        ),
        (
            r#"{"service":"a","address":"http://u:p@127.0.0.1:1"}"#.into(),
            400,
            "invalid_request",
            Some("address"),
        ),
        (
            r#"{"service":"a","address":"http://127.0.0.1:1/#frag"}"#.into(),
            400,
            "invalid_request",
            Some("address"),
        ),
        (
            r#"{"service":"a","address":"http://127.0.0.1:1/path"}"#.into(),
            400,
            "invalid_request",
            Some("address"),
        ),
        (
            r#"{"service":"a","address":"not a url"}"#.into(),
            400,
            "invalid_request",
            Some("address"),
        ),
        (
            r#"{"service":"a","address":"http://127.0.0.1:1","protocol":"smtp"}"#.into(),
            400,
            "invalid_request",
            Some("protocol"),
        ),
        (
            r#"{"service":"a","address":"http://127.0.0.1:1","grpc_services":["demo.v1.Echo"]}"#.into(),
            400,
            "invalid_request",
            Some("grpc_services"),
        ),
        (
            r#"{"service":"a","address":"http://127.0.0.1:1","protocol":"grpc","grpc_services":["demo/v1"]}"#.into(),
            400,
            "invalid_request",
            Some("grpc_services"),
        ),
        (
            r#"{"service":"a","address":"http://127.0.0.1:1","metadata":{"k":1}}"#.into(),
            400,
            "invalid_request",
            Some("metadata.k"),
        ),
        (
            r#"{"service":"a","address":"http://127.0.0.1:1"} trailing"#.into(),
            400,
            "malformed_json",
            None,
        ),
        (
            format!(
                r#"{{"service":"a","address":"http://127.0.0.1:1","metadata":{{"k":"{}"}}}}"#,
                "x".repeat(5000)
            ),
            413,
            "payload_too_large",
            None,
        ),
    ];
    for name in [
        "register", "registry", "metrics", "healthz", "readyz", "v1", "ui", "events",
    ] {
        let body = format!(r#"{{"service":"{name}","address":"http://127.0.0.1:1"}}"#);
        let r = c.request(Method::POST, &reg, &json_ct, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "reserved {name}");
        let j = r.json();
        assert_eq!(j["field"], "service");
        assert!(j["message"].as_str().unwrap().contains("reserved"), "{j}");
    }
    for (body, status, code, field) in cases {
        let r = c.request(Method::POST, &reg, &json_ct, body.clone()).await;
        assert_eq!(r.status.as_u16(), status, "body {body:.80}: {:?}", r.body);
        let j = r.json();
        assert_eq!(j["error"], code, "body {body:.80}: {j}");
        assert!(j["message"].as_str().is_some_and(|m| !m.is_empty()), "{j}");
        if let Some(f) = field {
            assert_eq!(j["field"], f, "body {body:.80}: {j}");
        }
    }
    // A huge body without Content-Length (chunked) is cut off at the limit too.
    let stream = futures_util::stream::iter((0..64).map(|_| {
        Ok::<_, std::io::Error>(http_body::Frame::data(bytes::Bytes::from(vec![b' '; 1024])))
    }));
    let req = http::Request::post(&reg)
        .header("content-type", "application/json")
        .body(e2e::http::body(http_body_util::StreamBody::new(stream)))
        .unwrap();
    assert_eq!(c.send(req).await.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Unknown service, unknown replica, wrong method, no route: JSON errors as well.
    let checks = [
        (
            Method::GET,
            format!("{}/nosuch/x", gw.url),
            404,
            "unknown_service",
        ),
        (
            Method::PUT,
            format!("{}/registry/nosuch/123/heartbeat", gw.url),
            404,
            "unknown_replica",
        ),
        (
            Method::DELETE,
            format!("{}/registry/nosuch/123", gw.url),
            404,
            "unknown_replica",
        ),
        (
            Method::GET,
            format!("{}/register", gw.url),
            405,
            "method_not_allowed",
        ),
        (
            Method::POST,
            format!("{}/registry", gw.url),
            405,
            "method_not_allowed",
        ),
        (Method::GET, format!("{}/", gw.url), 404, "not_found"),
    ];
    for (method, url, status, code) in checks {
        let r = c.request(method.clone(), &url, &[], "").await;
        assert_eq!(r.status.as_u16(), status, "{method} {url}");
        assert_eq!(r.json()["error"], code, "{method} {url}");
    }
    // Nothing above registered anything.
    let reg = c.get(&format!("{}/registry", gw.url)).await.json();
    assert!(reg["services"].as_object().unwrap().is_empty(), "{reg}");
    // `https://` replicas are accepted (reached over TLS): registered like any other.
    let https = c
        .post_json(
            &format!("{}/register", gw.url),
            &json!({ "service": "a", "address": "https://127.0.0.1:1" }),
        )
        .await;
    assert_eq!(https.status, StatusCode::CREATED, "{:?}", https.body);
    let id = https.json()["id"].as_str().unwrap().to_owned();
    let gone = c
        .request(
            Method::DELETE,
            &format!("{}/registry/a/{id}", gw.url),
            &[],
            "",
        )
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_token_guards_register_heartbeat_and_deregister() {
    let gw = gateway("auth: { registration_token: s3cret }\n");
    let c = Client::new();
    let reg = format!("{}/register", gw.url);
    let body = r#"{"service":"orders","address":"http://127.0.0.1:9"}"#;
    let ct = ("content-type", "application/json");
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("s3cret"),
        Some("Basic s3cret"),
        Some("Bearer s3cret2"),
    ] {
        let mut h = vec![ct];
        if let Some(a) = auth {
            h.push(("authorization", a));
        }
        let r = c.request(Method::POST, &reg, &h, body).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(r.json()["error"], "unauthorized");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    }
    let ok = c
        .request(
            Method::POST,
            &reg,
            &[ct, ("authorization", "Bearer s3cret")],
            body,
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED);
    let id = ok.json()["id"].as_str().unwrap().to_owned();
    let hb = format!("{}/registry/orders/{id}/heartbeat", gw.url);
    assert_eq!(c.put(&hb).await.status, StatusCode::UNAUTHORIZED);
    let auth = [("authorization", "Bearer s3cret")];
    assert_eq!(
        c.request(Method::PUT, &hb, &auth, "").await.status,
        StatusCode::OK
    );
    let del = format!("{}/registry/orders/{id}", gw.url);
    assert_eq!(c.delete(&del).await.status, StatusCode::UNAUTHORIZED);
    // Reading the registry needs the token too once one is set.
    let unauthorized = c.get(&format!("{}/registry", gw.url)).await;
    assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unauthorized.header("www-authenticate"), Some("Bearer"));
    assert_eq!(
        c.request(Method::GET, &format!("{}/registry", gw.url), &auth, "")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        c.request(Method::DELETE, &del, &auth, "").await.status,
        StatusCode::NO_CONTENT
    );

    // Auth off: no header needed.
    let open = gateway("");
    let r = c
        .request(Method::POST, &format!("{}/register", open.url), &[ct], body)
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[test]
fn a_bad_config_fails_at_start_naming_the_field() {
    let cases = [
        ("breaker: { failure_treshold: 3 }\n", "failure_treshold"),
        (
            "lease: { ttl: 5s, heartbeat_interval: 10s }\n",
            "lease.heartbeat_interval",
        ),
        ("breaker: { open_timeout: ten }\n", "breaker.open_timeout"),
        (
            "services: { product: [\"ftp://127.0.0.1:1\"] }\n",
            "services.product",
        ),
    ];
    for (yaml, field) in cases {
        let (mut cmd, _file) = e2e::process::gateway_command(yaml);
        let out = cmd.output().expect("run gateway");
        assert_eq!(out.status.code(), Some(2), "{yaml}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(field), "{yaml:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
    }
    // A known GATEWAY_* variable is applied and checked (unknown ones are ignored with a warning: see
    // config_lifecycle.rs).
    let (mut cmd, _file) = e2e::process::gateway_command("");
    let out = cmd.env("GATEWAY_RETRY_MAX_ATTEMPTS", "0").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("retry.max_attempts"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints_answer() {
    let gw = gateway("");
    let c = Client::new();
    let _backend = demo("x", &[]);
    assert_eq!(
        c.get(&format!("{}/healthz", gw.url)).await.json()["status"],
        "ok"
    );
    assert_eq!(
        c.get(&format!("{}/readyz", gw.url)).await.json()["status"],
        "ready"
    );
}
