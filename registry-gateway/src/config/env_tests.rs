//! The config from `GATEWAY_*` environment variables: which are applied, which ignored, and the errors.

use super::tests::load_yaml;
use super::*;

fn load_env(env: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Config::load_env(None, env)
}

#[test]
fn kubernetes_service_variables_are_ignored_and_returned() {
    // What Kubernetes injects for a Service named `gateway`, next to one real setting.
    let l = load_env(&[
        ("GATEWAY_PORT", "tcp://10.0.0.1:8080"),
        ("GATEWAY_PORT_8080_TCP", "tcp://10.0.0.1:8080"),
        ("GATEWAY_PORT_8080_TCP_ADDR", "10.0.0.1"),
        ("GATEWAY_SERVICE_HOST", "10.0.0.1"),
        ("GATEWAY_SERVICE_PORT", "8080"),
        ("GATEWAY_BREAKER_FAILURE_THRESHOLD", "4"),
        ("GATEWAY_LOG", "debug"),
        ("HOME", "/root"),
    ])
    .unwrap();
    assert_eq!(l.config.breaker.failure_threshold, 4);
    assert_eq!(
        l.ignored_env,
        [
            "GATEWAY_PORT",
            "GATEWAY_PORT_8080_TCP",
            "GATEWAY_PORT_8080_TCP_ADDR",
            "GATEWAY_SERVICE_HOST",
            "GATEWAY_SERVICE_PORT"
        ]
    );
    assert_eq!(l.applied_env, ["GATEWAY_BREAKER_FAILURE_THRESHOLD"]);
    assert_eq!(l.file, None);
    // A typo is ignored the same way (the start warning lists it).
    let l = load_env(&[("GATEWAY_BREKER_X", "1")]).unwrap();
    assert_eq!(l.ignored_env, ["GATEWAY_BREKER_X"]);
}

#[test]
fn a_known_variable_with_a_bad_value_is_an_error_naming_it() {
    let cases = [
        (
            "GATEWAY_BREAKER_FAILURE_THRESHOLD",
            "abc",
            "invalid config: GATEWAY_BREAKER_FAILURE_THRESHOLD (breaker.failure_threshold): \
             expected a positive whole number, got \"abc\"",
        ),
        (
            "GATEWAY_RETRY_MAX_ATTEMPTS",
            "0",
            "invalid config: GATEWAY_RETRY_MAX_ATTEMPTS (retry.max_attempts): must be between 1 and 10",
        ),
        (
            "GATEWAY_LEASE_TTL",
            "soon",
            "invalid config: GATEWAY_LEASE_TTL (lease.ttl): expected a duration such as 10s or 500ms, got \"soon\"",
        ),
        (
            "GATEWAY_OUTLIER_ENABLED",
            "maybe",
            "invalid config: GATEWAY_OUTLIER_ENABLED (outlier.enabled): expected true or false, got \"maybe\"",
        ),
        (
            "GATEWAY_STORE",
            "etcd://x",
            "invalid config: GATEWAY_STORE (store): must be \"memory\" or a redis:// URL, not \"etcd://x\"",
        ),
    ];
    for (var, value, want) in cases {
        let e = load_env(&[(var, value)]).unwrap_err().to_string();
        assert_eq!(e, want);
    }
    // Text keys take the value as it is: a numeric token is a token.
    let c = load_env(&[("GATEWAY_AUTH_REGISTRATION_TOKEN", "12345")]).unwrap();
    assert_eq!(c.config.auth.registration_token.as_deref(), Some("12345"));
}

#[test]
fn type_errors_use_plain_words() {
    let cases = [
        (
            "breaker: { failure_threshold: abc }\n",
            "invalid config: breaker.failure_threshold: expected a positive whole number, got \"abc\"",
        ),
        (
            "retry: { budget: { min_per_second: -1 } }\n",
            "invalid config: retry.budget.min_per_second: expected a whole number, got -1",
        ),
        (
            "retry: { budget: { ratio: lots } }\n",
            "invalid config: retry.budget.ratio: expected a number between 0 and 1, got \"lots\"",
        ),
        (
            "breaker: { open_timeout: 10 }\n",
            "invalid config: breaker.open_timeout: expected a duration such as 10s or 500ms, got 10",
        ),
        (
            "outlier: { enabled: maybe }\n",
            "invalid config: outlier.enabled: expected true or false, got \"maybe\"",
        ),
        (
            "forwarded: { trusted_proxies: 10.0.0.0/8 }\n",
            "invalid config: forwarded.trusted_proxies: expected a list of CIDR ranges such as [10.0.0.0/8], got \"10.0.0.0/8\"",
        ),
        (
            "listen: nowhere\n",
            "invalid config: listen: expected an address such as 127.0.0.1:8080 or localhost:8080, got \"nowhere\"",
        ),
        (
            "limits: { max_header_bytes: 1.5 }\n",
            "invalid config: limits.max_header_bytes: expected a whole number of bytes, got 1.5",
        ),
        (
            "log: { format: xml }\n",
            "invalid config: log.format: expected text or json, got \"xml\"",
        ),
        (
            "services: { a: [http://127.0.0.1:1, 5] }\n",
            "invalid config: services.a[1]: expected a replica URL such as http://127.0.0.1:9001, got 5",
        ),
        (
            "breaker: 3\n",
            "invalid config: breaker: expected a mapping of breaker settings (such as breaker.failure_threshold), got 3",
        ),
    ];
    for (yaml, want) in cases {
        let e = load_yaml(yaml, &[]).unwrap_err().to_string();
        assert_eq!(e, want, "{yaml:?}");
        for rust in ["u32", "usize", "f64", "u64", "boolean", "sequence"] {
            assert!(!e.contains(rust), "{e}");
        }
    }
}

#[test]
fn listeners_accept_host_names() {
    let c = load_yaml(
        "listen: localhost:8080\nadmin_listen: localhost:8081\n",
        &[("GATEWAY_GRPC_LISTEN", "localhost:50051")],
    )
    .unwrap();
    assert_eq!(c.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
    assert_eq!(
        c.admin_listen,
        Some(SocketAddr::from(([127, 0, 0, 1], 8081)))
    );
    assert_eq!(c.grpc_listen, SocketAddr::from(([127, 0, 0, 1], 50051)));
    let e = load_yaml("grpc_listen: no-such-host.invalid:1\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("invalid config: grpc_listen: cannot resolve host \"no-such-host.invalid\""),
        "{e}"
    );
    // Flags too, named as flags.
    let source = ConfigSource {
        overrides: Overrides {
            listen: Some("localhost:0".into()),
            admin_listen: Some("no-such-host.invalid:1".into()),
            ..Overrides::default()
        },
        ..ConfigSource::default()
    };
    let e = source.load().unwrap_err().to_string();
    assert!(
        e.starts_with("invalid config: --admin-listen: cannot resolve"),
        "{e}"
    );
}

#[test]
fn bad_values_name_the_field() {
    let cases = [
        ("breaker: { open_timeout: soon }\n", "soon"),
        (
            "breaker: { failure_threshold: 0 }\n",
            "breaker.failure_threshold",
        ),
        (
            "eviction: { failure_threshold: 2 }\n",
            "eviction.failure_threshold",
        ),
        (
            "lease: { ttl: 5s, heartbeat_interval: 5s }\n",
            "lease.heartbeat_interval",
        ),
        ("retry: { max_attempts: 0 }\n", "retry.max_attempts"),
        ("upstream: { pipeline: 0 }\n", "upstream.pipeline"),
        ("upstream: { pipeline: 65 }\n", "upstream.pipeline"),
        ("upstream: { pipeline: -1 }\n", "upstream.pipeline"),
        (
            "upstream: { pipeline_budget: 0s }\n",
            "upstream.pipeline_budget",
        ),
        (
            "upstream: { pipeline_budget: 2s }\n",
            "upstream.pipeline_budget",
        ),
        ("retry: { budget: { ratio: 1.5 } }\n", "retry.budget.ratio"),
        ("retry: { budget: { ratio: -0.1 } }\n", "retry.budget.ratio"),
        ("retry: { budget: { ratio: .nan } }\n", "retry.budget.ratio"),
        ("retry: { budget: { window: 0s } }\n", "retry.budget.window"),
        (
            "retry: { budget: { window: 1500ms } }\n",
            "retry.budget.window",
        ),
        ("retry: { budget: { window: 2m } }\n", "retry.budget.window"),
        (
            "retry: { budget: { min_per_second: -1 } }\n",
            "min_per_second",
        ),
        ("retry: { budget: { ratoi: 0.1 } }\n", "ratoi"),
        (
            "lease: { preservation_ratio: 1.5 }\n",
            "lease.preservation_ratio",
        ),
        (
            "lease: { preservation_ratio: -0.1 }\n",
            "lease.preservation_ratio",
        ),
        (
            "lease: { preservation_ratio: .nan }\n",
            "lease.preservation_ratio",
        ),
        ("lease: { preservation_max: soon }\n", "soon"),
        ("workers: 0\n", "workers"),
        (
            "outlier: { latency_factor: 1.5 }\n",
            "outlier.latency_factor",
        ),
        ("outlier: { latency_factor: 0 }\n", "outlier.latency_factor"),
        (
            "outlier: { latency_factor: .nan }\n",
            "outlier.latency_factor",
        ),
        ("outlier: { min_requests: 0 }\n", "outlier.min_requests"),
        ("outlier: { interval: 0s }\n", "outlier.interval"),
        ("outlier: { enabled: maybe }\n", "outlier.enabled"),
        (
            "services: { Bad_Name: [http://127.0.0.1:1] }\n",
            "services.Bad_Name",
        ),
        ("services: { ok: [ftp://127.0.0.1:1] }\n", "services.ok"),
        ("listen: nowhere\n", "listen"),
        ("log: { level: \"info,=x=y\" }\n", "log.level"),
    ];
    for (yaml, field) in cases {
        let e = load_yaml(yaml, &[]).unwrap_err().to_string();
        assert!(e.contains(field), "{yaml:?} gave {e}");
    }
}
