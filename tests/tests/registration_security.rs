//! Hardening of the registration API end to end: JSON content type, bearer parsing, protected reads,
//! a separate admin listener, refusing port 0 and the gateway's own listeners, warnings, connection caps.

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use e2e::process::{free_port, gateway_command, gateway_command_on};
use e2e::{channel, demo, gateway, Client, Proc};
use http::{Method, StatusCode};
use registry_proto::registry::v1::{self as pb, registry_client::RegistryClient};
use serde_json::json;
use tonic::Code;

const JSON: (&str, &str) = ("content-type", "application/json");

/// A gRPC request carrying `authorization` when given.
fn grpc_req<T>(msg: T, authorization: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(a) = authorization {
        req.metadata_mut()
            .insert("authorization", a.parse().unwrap());
    }
    req
}

fn register_body(service: &str, address: &str) -> String {
    json!({ "service": service, "address": address }).to_string()
}

/// Starts a gateway (two workers) with `extra` flags.
fn gateway_with(listen: &str, yaml: &str, extra: &[&str]) -> Proc {
    let (mut cmd, file) = gateway_command_on(listen, &format!("workers: 2\n{yaml}"));
    cmd.args(extra);
    Proc::spawn(cmd, vec![file])
}

/// `http://127.0.0.1:PORT` of the admin listener, from the `listening on` line.
fn admin_url(gw: &mut Proc) -> String {
    gw.wait_for_line("listening on http://", Duration::from_secs(5))
        .split_whitespace()
        .find_map(|t| t.strip_prefix("admin="))
        .expect("admin= in the listening line")
        .to_owned()
}

/// Asserts a JSON error: status, code, and (when given) the field.
fn assert_error(r: &e2e::Response, status: StatusCode, code: &str, field: Option<&str>) {
    assert_eq!(r.status, status, "{:?}", r.body);
    let j = r.json();
    assert_eq!(j["error"], code, "{j}");
    if let Some(f) = field {
        assert_eq!(j["field"], f, "{j}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_needs_a_json_content_type() {
    let gw = gateway("");
    let c = Client::new();
    let reg = format!("{}/register", gw.url);
    let body = register_body("orders", "http://127.0.0.1:9");
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/jsonp"),
        Some("text/json"),
        Some(""),
    ] {
        let headers: Vec<(&str, &str)> = ct.iter().map(|v| ("content-type", *v)).collect();
        let r = c.request(Method::POST, &reg, &headers, body.clone()).await;
        assert_error(
            &r,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        );
        assert!(
            r.json()["message"]
                .as_str()
                .unwrap()
                .contains("application/json"),
            "{ct:?}"
        );
    }
    // Nothing was registered by the refused requests.
    let listed = c.get(&format!("{}/registry", gw.url)).await.json();
    assert!(
        listed["services"].as_object().unwrap().is_empty(),
        "{listed}"
    );

    for (i, ct) in [
        "application/json",
        "Application/JSON; charset=utf-8",
        "application/json;charset=UTF-8",
        "application/vnd.registry.v1+json",
    ]
    .into_iter()
    .enumerate()
    {
        let body = register_body("orders", &format!("http://127.0.0.1:{}", 9 + i));
        let r = c
            .request(Method::POST, &reg, &[("content-type", ct)], body)
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{ct}: {:?}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_zero_and_the_gateways_own_listeners_are_refused_over_http_and_grpc() {
    let gw = gateway("");
    let c = Client::new();
    let reg = format!("{}/register", gw.url);
    let http_port = gw.addr.rsplit_once(':').unwrap().1.to_owned();
    let grpc_port = gw.grpc_addr().rsplit_once(':').unwrap().1.to_owned();

    let r = c
        .request(
            Method::POST,
            &reg,
            &[JSON],
            register_body("orders", "http://127.0.0.1:0"),
        )
        .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("address"),
    );
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("port must not be 0"),
        "{}",
        r.json()
    );

    for (address, kind) in [
        (gw.url.clone(), "HTTP"),
        (format!("http://localhost:{http_port}"), "HTTP"),
        (format!("http://0.0.0.0:{http_port}"), "HTTP"),
        (format!("http://[::1]:{http_port}"), "HTTP"),
        (gw.grpc_url.clone(), "gRPC"),
        (format!("http://LocalHost:{grpc_port}"), "gRPC"),
    ] {
        let r = c
            .request(
                Method::POST,
                &reg,
                &[JSON],
                register_body("orders", &address),
            )
            .await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("address"),
        );
        let message = r.json()["message"].as_str().unwrap().to_owned();
        assert!(
            message.contains(&format!("own {kind} listener")),
            "{address}: {message}"
        );
    }

    let mut registry = RegistryClient::new(channel(&gw.grpc_url).await);
    for (address, needle) in [
        ("http://127.0.0.1:0".to_owned(), "port must not be 0"),
        (gw.grpc_url.clone(), "own gRPC listener"),
        (gw.url.clone(), "own HTTP listener"),
    ] {
        let err = registry
            .register(pb::RegisterRequest {
                service: "orders".into(),
                address: address.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{address}");
        assert!(err.message().starts_with("address:"), "{}", err.message());
        assert!(err.message().contains(needle), "{}", err.message());
    }
    // A neighbouring port is an ordinary replica.
    let next = gw.addr.rsplit_once(':').unwrap().1.parse::<u16>().unwrap() + 1;
    let r = c
        .request(
            Method::POST,
            &reg,
            &[JSON],
            register_body("orders", &format!("http://127.0.0.1:{next}")),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let listed = c.get(&format!("{}/registry/orders", gw.url)).await.json();
    assert_eq!(listed["replicas"].as_array().unwrap().len(), 1, "{listed}");
}

#[test]
fn a_static_replica_that_is_the_gateway_itself_stops_the_start() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    for url in [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    ] {
        let yaml = format!("services:\n  loop: [\"{url}\"]\n");
        let (mut cmd, _file) = gateway_command_on(&listen, &yaml);
        let out = cmd.output().expect("run gateway");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {err}");
        assert!(err.contains("services.loop"), "{err}");
        assert!(err.contains("own HTTP listener"), "{err}");
    }
    // Port 0 in a static replica is a config error too.
    let (mut cmd, _file) = gateway_command("services:\n  zero: [\"http://127.0.0.1:0\"]\n");
    let out = cmd.output().expect("run gateway");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("services.zero"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive_over_http_and_grpc() {
    let gw = gateway("auth: { registration_token: s3cret }\n");
    let c = Client::new();
    let reg = format!("{}/register", gw.url);
    for (i, auth) in ["bearer s3cret", "BEARER s3cret", "Bearer    s3cret"]
        .into_iter()
        .enumerate()
    {
        let body = register_body("orders", &format!("http://127.0.0.1:{}", 9 + i));
        let r = c
            .request(Method::POST, &reg, &[JSON, ("authorization", auth)], body)
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{auth:?}: {:?}", r.body);
    }
    for auth in ["Bearers3cret", "Basic s3cret", "bearer  wrong", "bearer"] {
        let body = register_body("orders", "http://127.0.0.1:9");
        let r = c
            .request(Method::POST, &reg, &[JSON, ("authorization", auth)], body)
            .await;
        assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None);
    }

    let mut registry = RegistryClient::new(channel(&gw.grpc_url).await);
    for (auth, ok) in [
        ("bearer s3cret", true),
        ("BEARER  s3cret", true),
        ("Basic s3cret", false),
        ("s3cret", false),
    ] {
        let r = registry
            .register(grpc_req(
                pb::RegisterRequest {
                    service: "grpc-orders".into(),
                    address: "http://127.0.0.1:19".into(),
                    ..Default::default()
                },
                Some(auth),
            ))
            .await;
        match r {
            Ok(_) => assert!(ok, "{auth:?} was accepted"),
            Err(e) => {
                assert!(!ok, "{auth:?}: {e}");
                assert_eq!(e.code(), Code::Unauthenticated);
            }
        }
    }
}

/// Every registry read over HTTP, with `auth`, as statuses.
async fn read_statuses(c: &Client, base: &str, id: &str, auth: Option<&str>) -> Vec<StatusCode> {
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", *a)).collect();
    let mut out = Vec::new();
    for path in [
        "/registry".to_owned(),
        "/registry/orders".to_owned(),
        format!("/registry/orders/{id}"),
    ] {
        let r = c
            .request(Method::GET, &format!("{base}{path}"), &headers, "")
            .await;
        if r.status == StatusCode::UNAUTHORIZED {
            assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{path}");
            assert_eq!(r.json()["error"], "unauthorized");
        }
        out.push(r.status);
    }
    out
}

/// `ListServices` and the first `Watch` message over gRPC, with `auth`.
async fn grpc_reads(url: &str, auth: Option<&str>) -> (Result<(), Code>, Result<(), Code>) {
    let mut registry = RegistryClient::new(channel(url).await);
    let list = registry
        .list_services(grpc_req(pb::ListServicesRequest::default(), auth))
        .await
        .map(|_| ())
        .map_err(|e| e.code());
    let watch = match registry
        .watch(grpc_req(pb::WatchRequest::default(), auth))
        .await
    {
        Ok(stream) => {
            let first = tokio::time::timeout(Duration::from_secs(5), stream.into_inner().message())
                .await
                .expect("first watch message");
            match first {
                Ok(Some(e)) => {
                    assert!(
                        matches!(e.event, Some(pb::registry_event::Event::Snapshot(_))),
                        "{e:?}"
                    );
                    Ok(())
                }
                Ok(None) => panic!("watch ended at once"),
                Err(e) => Err(e.code()),
            }
        }
        Err(e) => Err(e.code()),
    };
    (list, watch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_need_the_read_or_registration_token_once_a_token_is_set() {
    let c = Client::new();
    let ok = vec![StatusCode::OK; 3];
    let denied = vec![StatusCode::UNAUTHORIZED; 3];
    let unauthenticated = (Err(Code::Unauthenticated), Err(Code::Unauthenticated));

    // Both tokens: reads take either one; writes only the registration token.
    let gw = gateway("auth: { registration_token: w-token, read_token: r-token }\n");
    let reg = c
        .request(
            Method::POST,
            &format!("{}/register", gw.url),
            &[JSON, ("authorization", "Bearer w-token")],
            register_body("orders", "http://127.0.0.1:9"),
        )
        .await;
    assert_eq!(reg.status, StatusCode::CREATED);
    let id = reg.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(read_statuses(&c, &gw.url, &id, None).await, denied);
    assert_eq!(
        read_statuses(&c, &gw.url, &id, Some("Bearer nope")).await,
        denied
    );
    assert_eq!(
        read_statuses(&c, &gw.url, &id, Some("Bearer r-token")).await,
        ok
    );
    assert_eq!(
        read_statuses(&c, &gw.url, &id, Some("bearer w-token")).await,
        ok
    );
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            c.get(&format!("{}{path}", gw.url)).await.status,
            StatusCode::OK
        );
    }
    // The read token does not write.
    let hb = format!("{}/registry/orders/{id}/heartbeat", gw.url);
    let r = c
        .request(Method::PUT, &hb, &[("authorization", "Bearer r-token")], "")
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(grpc_reads(&gw.grpc_url, None).await, unauthenticated);
    assert_eq!(
        grpc_reads(&gw.grpc_url, Some("Bearer nope")).await,
        unauthenticated
    );
    assert_eq!(
        grpc_reads(&gw.grpc_url, Some("Bearer r-token")).await,
        (Ok(()), Ok(()))
    );
    assert_eq!(
        grpc_reads(&gw.grpc_url, Some("Bearer w-token")).await,
        (Ok(()), Ok(()))
    );
    let mut registry = RegistryClient::new(channel(&gw.grpc_url).await);
    let err = registry
        .heartbeat(grpc_req(
            pb::HeartbeatRequest {
                service: "orders".into(),
                id: id.clone(),
            },
            Some("Bearer r-token"),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    drop(gw);

    // The registration token alone guards the reads too.
    let gw = gateway("auth: { registration_token: w-token }\n");
    assert_eq!(read_statuses(&c, &gw.url, "x", None).await, denied);
    let reads = read_statuses(&c, &gw.url, "x", Some("Bearer w-token")).await;
    assert_eq!(reads[0], StatusCode::OK);
    // Authorised: an unknown service or replica is then a plain 404.
    assert_eq!(reads[1..], [StatusCode::NOT_FOUND, StatusCode::NOT_FOUND]);
    assert_eq!(grpc_reads(&gw.grpc_url, None).await, unauthenticated);
    assert_eq!(
        grpc_reads(&gw.grpc_url, Some("Bearer w-token")).await,
        (Ok(()), Ok(()))
    );
    drop(gw);

    // A read token alone still protects the reads; registration stays open.
    let gw = gateway("auth: { read_token: r-token }\n");
    let reg = c
        .request(
            Method::POST,
            &format!("{}/register", gw.url),
            &[JSON],
            register_body("orders", "http://127.0.0.1:9"),
        )
        .await;
    assert_eq!(reg.status, StatusCode::CREATED);
    let id = reg.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(read_statuses(&c, &gw.url, &id, None).await, denied);
    assert_eq!(
        read_statuses(&c, &gw.url, &id, Some("Bearer r-token")).await,
        ok
    );
    assert_eq!(grpc_reads(&gw.grpc_url, None).await, unauthenticated);
    drop(gw);

    // No token at all: reads are public.
    let gw = gateway("");
    assert_eq!(
        read_statuses(&c, &gw.url, "x", None).await[0],
        StatusCode::OK
    );
    assert_eq!(grpc_reads(&gw.grpc_url, None).await, (Ok(()), Ok(())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_admin_listen_the_api_moves_off_the_proxy_listener() {
    let mut gw = gateway_with("127.0.0.1:0", "", &["--admin-listen", "127.0.0.1:0"]);
    let admin = admin_url(&mut gw);
    assert_ne!(admin, gw.url);
    let backend = demo("a", &[]);
    let c = Client::new();

    // The API answers on the admin listener.
    let r = c
        .request(
            Method::POST,
            &format!("{admin}/register"),
            &[JSON],
            register_body("orders", &backend.url),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let listed = c.get(&format!("{admin}/registry/orders")).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.json()["replicas"][0]["id"], id.as_str());

    // The main listener proxies, and the API paths there are just unknown services.
    assert_eq!(
        c.get(&format!("{}/orders/hello", gw.url)).await.status,
        StatusCode::OK
    );
    let on_main = c
        .request(
            Method::POST,
            &format!("{}/register", gw.url),
            &[JSON],
            register_body("users", &backend.url),
        )
        .await;
    assert_error(&on_main, StatusCode::NOT_FOUND, "unknown_service", None);
    for path in [
        "/registry",
        "/registry/orders",
        &format!("/registry/orders/{id}"),
    ] {
        let r = c.get(&format!("{}{path}", gw.url)).await;
        assert_error(&r, StatusCode::NOT_FOUND, "unknown_service", None);
    }
    let hb = c
        .put(&format!("{}/registry/orders/{id}/heartbeat", gw.url))
        .await;
    assert_error(&hb, StatusCode::NOT_FOUND, "unknown_service", None);
    // Health on both; the admin listener proxies nothing.
    for base in [&gw.url, &admin] {
        assert_eq!(
            c.get(&format!("{base}/healthz")).await.status,
            StatusCode::OK
        );
        assert_eq!(
            c.get(&format!("{base}/readyz")).await.status,
            StatusCode::OK
        );
    }
    let r = c.get(&format!("{admin}/orders/hello")).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);

    // The admin listener is one of the gateway's own addresses.
    let r = c
        .request(
            Method::POST,
            &format!("{admin}/register"),
            &[JSON],
            register_body("orders", &admin),
        )
        .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("address"),
    );
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("own admin listener"));

    // Heartbeat and deregistration on the admin listener.
    assert_eq!(
        c.put(&format!("{admin}/registry/orders/{id}/heartbeat"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        c.delete(&format!("{admin}/registry/orders/{id}"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.get(&format!("{}/orders/hello", gw.url)).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // SIGTERM stops both listeners and the process exits cleanly.
    assert_eq!(
        gw.terminate(Duration::from_secs(15)),
        Some(0),
        "{}",
        gw.output()
    );
    let admin_addr = admin.trim_start_matches("http://");
    assert!(std::net::TcpStream::connect(admin_addr).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listen_from_the_config_file_works_too() {
    let port = free_port();
    let mut gw = gateway_with(
        "127.0.0.1:0",
        &format!("admin_listen: 127.0.0.1:{port}\n"),
        &[],
    );
    assert_eq!(admin_url(&mut gw), format!("http://127.0.0.1:{port}"));
    let c = Client::new();
    let r = c
        .request(
            Method::POST,
            &format!("http://127.0.0.1:{port}/register"),
            &[JSON],
            register_body("orders", "http://127.0.0.1:9"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
}

const UNAUTHENTICATED_WARNING: &str = "registration is unauthenticated";

#[test]
fn open_registration_off_loopback_is_warned_about() {
    let mut exposed = gateway_with("0.0.0.0:0", "", &[]);
    let line = exposed.wait_for_line(UNAUTHENTICATED_WARNING, Duration::from_secs(5));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("HTTP listener 0.0.0.0:"), "{line}");
    // Only the listeners off loopback are named (gRPC is on 127.0.0.1 here).
    assert_eq!(exposed.lines_with(UNAUTHENTICATED_WARNING).len(), 1);

    // A token, loopback, or the API moved to a loopback admin listener: no warning.
    let quiet = [
        gateway_with("0.0.0.0:0", "auth: { registration_token: t }\n", &[]),
        gateway_with("127.0.0.1:0", "", &[]),
        gateway_with("0.0.0.0:0", "", &["--admin-listen", "127.0.0.1:0"]),
    ];
    for gw in &quiet {
        assert!(
            gw.lines_with(UNAUTHENTICATED_WARNING).is_empty(),
            "{}",
            gw.output()
        );
    }
    // A non-loopback admin listener is named.
    let mut admin = gateway_with("127.0.0.1:0", "", &["--admin-listen", "0.0.0.0:0"]);
    let line = admin.wait_for_line(UNAUTHENTICATED_WARNING, Duration::from_secs(5));
    assert!(line.contains("admin listener 0.0.0.0:"), "{line}");
}

/// The gateway command run under `ulimit -Sn soft -Hn hard`, with `yaml`.
fn gateway_under_nofile(soft: u32, hard: u32, yaml: &str) -> Proc {
    let (cmd, file) = gateway_command(&format!("workers: 2\n{yaml}"));
    let mut wrapper = Command::new("sh");
    wrapper
        .arg("-c")
        .arg(format!(
            "ulimit -Sn {soft} && ulimit -Hn {hard} && exec \"$0\" \"$@\""
        ))
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapper.env(k, v),
            None => wrapper.env_remove(k),
        };
    }
    Proc::spawn(wrapper, vec![file])
}

#[test]
fn the_open_files_limit_is_raised_and_max_connections_lowered_to_fit() {
    // Soft 300 is raised to the hard 512; 4096 connections do not fit: (512 - 256) / 2 = 128 do.
    let mut gw = gateway_under_nofile(300, 512, "");
    let line = gw.wait_for_line("limits.max_connections", Duration::from_secs(5));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("RLIMIT_NOFILE is 512: using 128"), "{line}");
    let listening = gw.wait_for_line("max_connections=", Duration::from_secs(5));
    assert!(listening.contains("max_connections=128"), "{listening}");
    // Enough room: no warning.
    let roomy = gateway_under_nofile(1024, 4096, "limits: { max_connections: 100 }\n");
    assert!(
        roomy.lines_with("limits.max_connections").is_empty(),
        "{}",
        roomy.output()
    );
}

type H2Send = hyper::client::conn::http2::SendRequest<http_body_util::Full<Bytes>>;

/// One HTTP/2 connection to `addr`, with its driver task.
async fn h2_connect(addr: &str) -> (H2Send, tokio::task::JoinHandle<()>) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    (send, driver)
}

/// `grpc.health.v1.Health/Check` for the whole server over `send`: true when SERVING.
async fn health_check(send: &mut H2Send, addr: &str) -> bool {
    use http_body_util::BodyExt;
    // An empty HealthCheckRequest: one uncompressed frame of length 0.
    let req = http::Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(Bytes::from_static(&[
            0, 0, 0, 0, 0,
        ])))
        .unwrap();
    send.ready().await.unwrap();
    let resp = send.send_request(req).await.unwrap();
    let ok = resp.status() == StatusCode::OK;
    let body = resp.into_body().collect().await.unwrap();
    let status = body
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    ok && status.as_deref() == Some("0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_listener_stops_accepting_at_max_connections_until_one_closes() {
    let gw = gateway("limits: { max_connections: 2 }\n");
    let addr = gw.grpc_addr();
    let (mut first, first_driver) = h2_connect(&addr).await;
    let (mut second, _second_driver) = h2_connect(&addr).await;
    assert!(health_check(&mut first, &addr).await);
    assert!(health_check(&mut second, &addr).await);

    // A third connection waits in the backlog: no answer while both slots are taken.
    let third = tokio::spawn({
        let addr = addr.clone();
        async move {
            let (mut send, _driver) = h2_connect(&addr).await;
            health_check(&mut send, &addr).await
        }
    });
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(!third.is_finished(), "a third connection was served");
    assert!(
        health_check(&mut second, &addr).await,
        "open connections still work"
    );

    // Closing one lets it in.
    drop(first);
    first_driver.abort();
    let served = tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .expect("the third connection is served once a slot frees")
        .unwrap();
    assert!(served);
}
