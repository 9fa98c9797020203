//! The config's life: `--check-config`, environment variables (Kubernetes' among them), listeners that
//! cannot bind, host names, JSON log lines, and SIGHUP reloads (good, bad, and needing a restart).

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::process::{bin, demo, free_port, log_message, temp_path, Proc, TempFile};
use e2e::{eventually, Client};

const LONG: Duration = Duration::from_secs(30);

/// The gateway command reading `yaml` from a file (which the test may rewrite), with `--grpc-listen`
/// on a free port and no `--listen` (the file says where), no inherited `GATEWAY_*` variable.
fn command(yaml: &str) -> (Command, TempFile) {
    let path = temp_path("lifecycle", "yaml");
    std::fs::write(&path, yaml).expect("write config");
    let mut cmd = Command::new(bin("registry-gateway"));
    cmd.arg("--config")
        .arg(&path)
        .arg("--grpc-listen")
        .arg("127.0.0.1:0");
    for (k, _) in std::env::vars() {
        if k.starts_with("GATEWAY_") {
            cmd.env_remove(k);
        }
    }
    (cmd, TempFile(path))
}

/// Starts the gateway of `yaml` (listening where the file says, two workers) and returns it with its
/// config file's path.
fn start(yaml: &str) -> (Proc, std::path::PathBuf) {
    let (cmd, file) = command(&format!("workers: 2\n{yaml}"));
    let path = file.0.clone();
    (Proc::spawn(cmd, vec![file]), path)
}

/// Runs the gateway to its exit; returns (code, stdout, stderr).
fn run(cmd: &mut Command) -> (Option<i32>, String, String) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("run registry-gateway");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Number of replicas `GET /registry/{service}` lists (0 when the service is unknown).
async fn replicas(c: &Client, gw: &Proc, service: &str) -> usize {
    let r = c.get(&format!("{}/registry/{service}", gw.url)).await;
    if r.status != http::StatusCode::OK {
        return 0;
    }
    r.json()["replicas"].as_array().map_or(0, Vec::len)
}

#[test]
fn check_config_validates_without_binding_and_names_the_field() {
    // The listen port is taken: --check-config binds nothing, so it does not care.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let (mut cmd, file) = command(&format!(
        "listen: {addr}\nbreaker: {{ failure_threshold: 2 }}\n"
    ));
    cmd.arg("--check-config");
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(
        stdout.trim(),
        format!("config OK: {}", file.0.display()),
        "{stderr}"
    );

    let (mut cmd, _file) = command("breaker: { failure_threshold: 0 }\n");
    cmd.arg("--check-config");
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert_eq!(
        stderr.trim(),
        "registry-gateway: invalid config: breaker.failure_threshold: must be at least 1"
    );
    assert!(stdout.is_empty(), "{stdout}");

    // Variables that are no keys are named, not fatal.
    let (mut cmd, file) = command("");
    cmd.arg("--check-config")
        .env("GATEWAY_PORT", "tcp://10.0.0.1:8080");
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(stdout.trim(), format!("config OK: {}", file.0.display()));
    assert_eq!(
        stderr.trim(),
        "registry-gateway: ignoring environment variables that are not config keys: GATEWAY_PORT"
    );

    // The environment counts as at a real start, named by its variable.
    let (mut cmd, _file) = command("");
    cmd.arg("--check-config")
        .env("GATEWAY_LEASE_TTL", "fifteen");
    let (code, _, stderr) = run(&mut cmd);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "registry-gateway: invalid config: GATEWAY_LEASE_TTL (lease.ttl): expected a duration such as 10s or 500ms, got \"fifteen\""
    );
}

#[test]
fn a_config_error_is_json_when_the_config_asks_for_json() {
    let (mut cmd, _file) = command("log: { format: json }\nbreaker: { failure_threshold: 0 }\n");
    let (code, stdout, stderr) = run(cmd.arg("--check-config"));
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    let v: serde_json::Value = serde_json::from_str(stderr.trim()).expect("one JSON line");
    assert_eq!(v["level"], "ERROR");
    assert_eq!(
        v["message"],
        "invalid config: breaker.failure_threshold: must be at least 1"
    );
    // The format from the environment, the error from the file.
    let (mut cmd, _file) = command("lease: { ttl: 0s }\n");
    cmd.env("GATEWAY_LOG_FORMAT", "json");
    let (code, _, stderr) = run(&mut cmd);
    assert_eq!(code, Some(2), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stderr.trim()).expect("one JSON line");
    assert_eq!(
        v["message"],
        "invalid config: lease.ttl: must be longer than 0s"
    );
    // A bad legacy filter is a config error naming the variable.
    let (mut cmd, _file) = command("");
    cmd.env("GATEWAY_LOG", "info,=x=y").arg("--check-config");
    let (code, _, stderr) = run(&mut cmd);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.starts_with("registry-gateway: invalid config: GATEWAY_LOG: expected a log filter"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_service_variables_are_ignored_with_one_warning() {
    let (mut cmd, file) = command("workers: 2\nlisten: 127.0.0.1:0\n");
    cmd.env("GATEWAY_PORT", "tcp://10.0.0.1:8080")
        .env("GATEWAY_PORT_8080_TCP_ADDR", "10.0.0.1")
        .env("GATEWAY_SERVICE_HOST", "10.0.0.1")
        .env("GATEWAY_BREAKER_FAILURE_THRESHOLD", "4");
    let gw = Proc::spawn(cmd, vec![file]);
    let warnings = gw.lines_with("ignoring environment variables");
    assert_eq!(warnings.len(), 1, "{}", gw.output());
    assert!(warnings[0].contains("WARN"), "{}", warnings[0]);
    assert!(
        warnings[0].contains("GATEWAY_PORT, GATEWAY_PORT_8080_TCP_ADDR, GATEWAY_SERVICE_HOST"),
        "{}",
        warnings[0]
    );
    // The known one is applied, and the banner says where the config came from.
    let thresholds = gw.expect_line("thresholds:", LONG);
    assert!(
        thresholds.contains("breaker opens after 4 failures"),
        "{thresholds}"
    );
    let source = gw.expect_line("registry-gateway 0.1.0:", LONG);
    assert!(
        source.contains("+ GATEWAY_BREAKER_FAILURE_THRESHOLD, store memory, 2 workers"),
        "{source}"
    );
    let c = Client::new();
    let r = c.get(&format!("{}/healthz", gw.url)).await;
    assert_eq!(r.status, http::StatusCode::OK);
}

#[test]
fn a_listener_that_cannot_bind_names_itself_and_its_address() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for (flag, kind) in [
        ("--listen", "HTTP"),
        ("--admin-listen", "admin"),
        ("--grpc-listen", "gRPC"),
    ] {
        let path = temp_path("lifecycle", "yaml");
        std::fs::write(&path, "listen: 127.0.0.1:0\ngrpc_listen: 127.0.0.1:0\n").unwrap();
        let _file = TempFile(path.clone());
        let mut cmd = Command::new(bin("registry-gateway"));
        cmd.arg("--config").arg(&path).arg(flag).arg(&addr);
        let (code, stdout, stderr) = run(&mut cmd);
        assert_eq!(code, Some(1), "{flag}: {stdout}{stderr}");
        let want = format!("cannot listen on {addr} ({kind}): address already in use");
        assert!(stderr.contains(&want), "{flag}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_accepts_a_host_name() {
    let port = free_port();
    let (gw, _path) = start(&format!("listen: localhost:{port}\n"));
    assert_eq!(gw.addr, format!("127.0.0.1:{port}"));
    let c = Client::new();
    let r = c.get(&format!("http://localhost:{port}/healthz")).await;
    assert_eq!(r.status, http::StatusCode::OK);
    // A name that does not resolve is a config error naming the field.
    let (mut cmd, _file) = command("admin_listen: no-such-host.invalid:1\n");
    cmd.arg("--check-config");
    let (code, _, stderr) = run(&mut cmd);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.starts_with(
            "registry-gateway: invalid config: admin_listen: cannot resolve host \"no-such-host.invalid\""
        ),
        "{stderr}"
    );
}

/// Asserts every output line so far is one JSON object with a timestamp, a level and a message.
fn assert_all_json(gw: &Proc) {
    let out = gw.output();
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}\nall output:\n{out}"));
        for field in ["timestamp", "level", "message"] {
            assert!(v[field].is_string(), "no {field}: {line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_format_makes_every_line_a_json_object() {
    let a = demo("a", &[]);
    let mut b = demo("b", &[]);
    let (mut gw, path) = start(&format!(
        "listen: 127.0.0.1:0\nlog: {{ format: json }}\nbreaker: {{ failure_threshold: 1 }}\n\
         services:\n  shop: [{}, {}]\n",
        a.url, b.url
    ));
    // The harness found the banner's address through the JSON line.
    assert!(gw.url.starts_with("http://127.0.0.1:"), "{}", gw.url);
    let c = Client::new();
    b.kill();
    // Round robin: within two requests one goes to b, fails (its circuit opens) and is retried on a.
    for _ in 0..2 {
        let r = c.get(&format!("{}/shop/", gw.url)).await;
        assert_eq!(r.status, http::StatusCode::OK, "{:?}", r.body);
    }
    let circuit = gw.expect_line("[CIRCUIT]", LONG);
    let v: serde_json::Value = serde_json::from_str(&circuit).expect("a JSON [CIRCUIT] line");
    assert_eq!(v["level"], "WARN");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("[CIRCUIT] {} OPEN", b.url)),
        "{circuit}"
    );
    assert_eq!(v["service"], "shop", "{circuit}");
    // An error (a bad reload, on stderr) is JSON too.
    std::fs::write(
        &path,
        "log: { format: json }\nbreaker: { failure_threshold: -1 }\n",
    )
    .unwrap();
    gw.hangup();
    let failed = gw.expect_line("config reload failed", LONG);
    assert!(failed.contains("breaker.failure_threshold"), "{failed}");
    for needle in [
        "registry-gateway listening on",
        "thresholds:",
        "registry-gateway 0.1.0:",
    ] {
        let line = gw.expect_line(needle, LONG);
        assert!(line.starts_with('{'), "{line}");
    }
    assert!(gw.is_running());
    assert_all_json(&gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_good_file_at_once() {
    let a = demo("a", &[]);
    let mut b = demo("b", &[]);
    let (gw, path) = start(&format!(
        "listen: 127.0.0.1:0\nservices:\n  shop: [{}]\n",
        a.url
    ));
    let c = Client::new();
    assert_eq!(replicas(&c, &gw, "shop").await, 1);
    // A registered replica is not the file's: a reload leaves it alone.
    let id = e2e::http::register(&c, &gw.url, "shop", &format!("http://{}", b.addr)).await;
    assert!(!id.is_empty());
    assert_eq!(replicas(&c, &gw, "shop").await, 2);

    // The new file: a second service, a breaker that opens at the first failure, JSON lines.
    let c2 = demo("c", &[]);
    std::fs::write(
        &path,
        format!(
            "workers: 2\nlisten: 127.0.0.1:0\nbreaker: {{ failure_threshold: 1 }}\nlog: {{ format: json }}\n\
             services:\n  shop: [{}]\n  cart: [{}]\n",
            a.url, c2.url
        ),
    )
    .unwrap();
    gw.hangup();
    let reloaded = gw.expect_line("config reloaded", LONG);
    let v: serde_json::Value =
        serde_json::from_str(&reloaded).expect("the new format applies at once");
    let summary = v["message"].as_str().unwrap();
    assert!(
        summary.contains("breaker.failure_threshold 3 -> 1"),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("services +cart={}", c2.url)),
        "{summary}"
    );
    assert!(summary.contains("log.format text -> json"), "{summary}");
    assert_eq!(replicas(&c, &gw, "cart").await, 1);
    assert_eq!(
        replicas(&c, &gw, "shop").await,
        2,
        "the registered replica stays"
    );
    let r = c.get(&format!("{}/cart/", gw.url)).await;
    assert_eq!(r.status, http::StatusCode::OK);

    // The new threshold is in force: b fails once and its circuit opens (it took 3 before).
    b.kill();
    for _ in 0..2 {
        let r = c.get(&format!("{}/shop/", gw.url)).await;
        assert_eq!(r.status, http::StatusCode::OK, "{:?}", r.body);
    }
    let circuit = gw.expect_line("[CIRCUIT]", LONG);
    assert!(circuit.starts_with('{'), "{circuit}");
    assert!(
        log_message(&circuit).starts_with(&format!("[CIRCUIT] http://{} OPEN", b.addr)),
        "{circuit}"
    );

    // Dropping a static replica removes it.
    std::fs::write(
        &path,
        format!(
            "workers: 2\nlisten: 127.0.0.1:0\nbreaker: {{ failure_threshold: 1 }}\nlog: {{ format: json }}\n\
             services:\n  shop: [{}]\n",
            a.url
        ),
    )
    .unwrap();
    gw.hangup();
    eventually(LONG, "cart's static replica removed", || async {
        (replicas(&c, &gw, "cart").await == 0).then_some(())
    })
    .await;
    let second = eventually(LONG, "a second reload line", || async {
        gw.lines_with("config reloaded").get(1).cloned()
    })
    .await;
    assert!(
        log_message(&second).ends_with(&format!("services -cart={}", c2.url)),
        "{second}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_bad_file_keeps_the_running_config() {
    let a = demo("a", &[]);
    let (mut gw, path) = start(&format!(
        "listen: 127.0.0.1:0\nauth: {{ registration_token: s3cret }}\nservices:\n  shop: [{}]\n",
        a.url
    ));
    std::fs::write(
        &path,
        "workers: 2\nlisten: 127.0.0.1:0\nservices:\n  shop: []\nretry: { max_attempts: 11 }\n",
    )
    .unwrap();
    gw.hangup();
    let failed = gw.expect_line("config reload failed", LONG);
    assert!(failed.contains("ERROR"), "{failed}");
    assert!(
        failed.contains("the running config stays in force: invalid config: retry.max_attempts: must be between 1 and 10"),
        "{failed}"
    );
    // Still alive, still the old config: the static replica serves and reads still need the token.
    let c = Client::new();
    let r = c.get(&format!("{}/shop/", gw.url)).await;
    assert_eq!(r.status, http::StatusCode::OK);
    let r = c.get(&format!("{}/registry/shop", gw.url)).await;
    assert_eq!(r.status, http::StatusCode::UNAUTHORIZED);
    assert!(gw.is_running());
    assert_eq!(
        gw.lines_with("config reload failed").len(),
        1,
        "{}",
        gw.output()
    );
    assert!(gw.lines_with("config reloaded").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_new_listen_address_says_it_needs_a_restart() {
    let port = free_port();
    let (gw, path) = start(&format!(
        "listen: 127.0.0.1:{port}\nauth: {{ registration_token: old }}\n"
    ));
    let other = free_port();
    std::fs::write(
        &path,
        format!("workers: 2\nlisten: 127.0.0.1:{other}\nauth: {{ registration_token: new }}\n"),
    )
    .unwrap();
    gw.hangup();
    let line = gw.expect_line("needs a restart", LONG);
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains(&format!(
            "listen changed in the file: needs a restart (still using 127.0.0.1:{port})"
        )),
        "{line}"
    );
    let reloaded = gw.expect_line("config reloaded", LONG);
    assert!(
        reloaded.contains("auth.registration_token (changed)"),
        "{reloaded}"
    );
    assert!(
        !reloaded.contains("new"),
        "tokens stay out of the log: {reloaded}"
    );
    // Still on the old port, with the new token.
    let c = Client::new();
    let url = format!("http://127.0.0.1:{port}/registry");
    let r = c
        .request(
            http::Method::GET,
            &url,
            &[("authorization", "Bearer new")],
            "",
        )
        .await;
    assert_eq!(r.status, http::StatusCode::OK, "{:?}", r.body);
    let r = c
        .request(
            http::Method::GET,
            &url,
            &[("authorization", "Bearer old")],
            "",
        )
        .await;
    assert_eq!(r.status, http::StatusCode::UNAUTHORIZED);
}
