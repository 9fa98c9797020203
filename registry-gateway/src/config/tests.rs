//! The config's unit tests: loading, environment variables, validation and the errors users see.

use std::time::Duration;

use serde_yaml_ng::Value;

use super::*;

fn load_yaml(yaml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = std::env::temp_dir().join(format!("gw-config-{}", uuid::Uuid::new_v4()));
    std::fs::write(&dir, yaml).unwrap();
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let out = Config::load(Some(&dir), env);
    let _ = std::fs::remove_file(&dir);
    out
}

#[test]
fn defaults_match_the_design() {
    let c = Config::load(None, Vec::new()).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.breaker.failure_threshold, 3);
    assert_eq!(c.breaker.open_timeout, Duration::from_secs(10));
    assert_eq!(c.eviction.failure_threshold, 5);
    assert_eq!(c.lease.ttl, Duration::from_secs(15));
    assert_eq!(c.lease.heartbeat_interval, Duration::from_secs(5));
    assert_eq!(c.retry.max_attempts, 3);
    assert_eq!(c.upstream.connect_timeout, Duration::from_secs(1));
    assert_eq!(c.retry_budget(), Some(RetryBudgetConfig::default()));
    assert_eq!(c.retry.budget.ratio, 0.2);
    assert_eq!(c.retry.budget.min_per_second, 3);
    assert_eq!(c.retry.budget.window, Duration::from_secs(10));
    assert_eq!(c.lease.preservation_ratio, 0.5);
    assert_eq!(c.lease.preservation_max(), Duration::from_secs(30));
    let p = c.registry_policy().preservation;
    assert_eq!((p.ratio, p.max_hold), (0.5, Duration::from_secs(30)));
    assert!(c.outlier.enabled);
    assert_eq!(c.outlier.latency_factor, 10.0);
    assert_eq!(c.outlier.min_requests, 20);
    assert_eq!(c.outlier.interval, Duration::from_secs(1));
    assert_eq!(c.registry_policy().outlier, OutlierConfig::default());
}

#[test]
fn tls_files_come_in_pairs_and_are_named_when_wrong() {
    let c = load_yaml(
        "tls: { cert_file: /c.pem, key_file: /k.pem }\nupstream: { tls: { ca_file: /ca.pem } }\n",
        &[],
    )
    .unwrap();
    assert!(c.tls.enabled());
    assert_eq!(c.upstream.tls.ca_file.as_deref(), Some("/ca.pem"));
    assert_eq!(c.upstream.tls.cert_file, None);
    assert!(!Config::default().tls.enabled());
    let e = |yaml: &str, env: &[(&str, &str)]| load_yaml(yaml, env).unwrap_err().to_string();
    assert_eq!(
        e("tls: { cert_file: /c.pem }\n", &[]),
        "invalid config: tls.key_file: must be set with tls.cert_file"
    );
    assert_eq!(
        e("upstream: { tls: { key_file: /k.pem } }\n", &[]),
        "invalid config: upstream.tls.cert_file: must be set with upstream.tls.key_file"
    );
    assert_eq!(
        e("upstream: { tls: { ca_file: \" \" } }\n", &[]),
        "invalid config: upstream.tls.ca_file: must not be empty when set"
    );
    assert!(e("tls: { ca_file: /ca.pem }\n", &[]).contains("tls"));
    // Environment variables set them too; an empty one unsets.
    let c = load_yaml(
        "",
        &[
            ("GATEWAY_UPSTREAM_TLS_CA_FILE", "/etc/ca.pem"),
            ("GATEWAY_TLS_CERT_FILE", "/c.pem"),
            ("GATEWAY_TLS_KEY_FILE", "/k.pem"),
        ],
    )
    .unwrap();
    assert_eq!(c.upstream.tls.ca_file.as_deref(), Some("/etc/ca.pem"));
    assert_eq!(c.tls.key_file.as_deref(), Some("/k.pem"));
    let c = load_yaml(
        "upstream: { tls: { ca_file: /ca.pem } }\n",
        &[("GATEWAY_UPSTREAM_TLS_CA_FILE", "")],
    )
    .unwrap();
    assert_eq!(c.upstream.tls.ca_file, None);
}

#[test]
fn the_retry_budget_is_a_nested_section_and_has_variables() {
    let c = load_yaml(
        "retry: { max_attempts: 2, budget: { ratio: 0.5, min_per_second: 0, window: 5s } }\n",
        &[],
    )
    .unwrap();
    assert_eq!(
        c.retry_budget(),
        Some(RetryBudgetConfig {
            ratio: 0.5,
            min_per_second: 0,
            window: Duration::from_secs(5),
        })
    );
    let c = load_yaml(
        "",
        &[
            ("GATEWAY_RETRY_BUDGET_RATIO", "1"),
            ("GATEWAY_RETRY_BUDGET_MIN_PER_SECOND", "7"),
        ],
    )
    .unwrap();
    assert_eq!(c.retry.budget.ratio, 1.0);
    assert_eq!(c.retry.budget.min_per_second, 7);
    let off = load_yaml("", &[("GATEWAY_RETRY_BUDGET_ENABLED", "false")]).unwrap();
    assert_eq!(off.retry_budget(), None);
    assert_eq!(off.registry_policy().retry_budget, None);
}

#[test]
fn preservation_max_defaults_to_two_ttls_and_can_turn_it_off() {
    let c = load_yaml("lease: { ttl: 1s, heartbeat_interval: 300ms }\n", &[]).unwrap();
    assert_eq!(c.lease.preservation_max(), Duration::from_secs(2));
    let c = load_yaml(
        "lease: { preservation_max: 0s }\n",
        &[("GATEWAY_LEASE_PRESERVATION_RATIO", "1")],
    )
    .unwrap();
    assert_eq!(c.lease.preservation_max(), Duration::ZERO);
    assert_eq!(c.lease.preservation_ratio, 1.0);
    assert!(!c.registry_policy().preservation.enabled());
    let c = load_yaml(
        "",
        &[
            ("GATEWAY_LEASE_PRESERVATION_MAX", "1m"),
            ("GATEWAY_LEASE_PRESERVATION_RATIO", "0.25"),
        ],
    )
    .unwrap();
    assert_eq!(c.lease.preservation_max(), Duration::from_secs(60));
    assert_eq!(c.lease.preservation_ratio, 0.25);
}

#[test]
fn outlier_detection_is_set_by_file_or_environment() {
    let c = load_yaml(
        "outlier: { latency_factor: 4, min_requests: 5, interval: 500ms }\n",
        &[("GATEWAY_OUTLIER_ENABLED", "false")],
    )
    .unwrap();
    let o = c.registry_policy().outlier;
    assert!(!o.enabled);
    assert_eq!(o.latency_factor, 4.0);
    assert_eq!(o.min_requests, 5);
    assert_eq!(o.interval, Duration::from_millis(500));
    let c = load_yaml("", &[("GATEWAY_OUTLIER_LATENCY_FACTOR", "2.5")]).unwrap();
    assert_eq!(c.outlier.latency_factor, 2.5);
}

#[test]
fn reads_the_documented_file() {
    let c = load_yaml(
        "listen: 127.0.0.1:9000\nworkers: 2\nbreaker: { failure_threshold: 4, open_timeout: 500ms }\n\
         eviction: { failure_threshold: 6 }\nlease: { ttl: 15s, heartbeat_interval: 5s }\nretry: { max_attempts: 2 }\n\
         upstream: { connect_timeout: 1s, request_timeout: 30s }\n\
         services:\n  product: [http://127.0.0.1:9001, http://127.0.0.1:9002]\n",
        &[],
    )
    .unwrap();
    assert_eq!(c.workers, Some(2));
    assert_eq!(c.breaker.open_timeout, Duration::from_millis(500));
    assert_eq!(c.static_replicas().len(), 2);
}

#[test]
fn env_overrides_the_file() {
    let c = load_yaml(
        "breaker: { failure_threshold: 4 }\n",
        &[
            ("GATEWAY_BREAKER_FAILURE_THRESHOLD", "2"),
            ("GATEWAY_LISTEN", "127.0.0.1:0"),
            ("GATEWAY_LEASE_TTL", "1m"),
        ],
    )
    .unwrap();
    assert_eq!(c.breaker.failure_threshold, 2);
    assert_eq!(c.listen.port(), 0);
    assert_eq!(c.lease.ttl, Duration::from_secs(60));
}

#[test]
fn a_typo_is_an_error_naming_the_key() {
    let e = load_yaml("breaker: { failure_treshold: 4 }\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("failure_treshold"), "{e}");
    let e = load_yaml("listn: 1.2.3.4:5\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("listn"), "{e}");
    assert!(e.contains("not a config key"), "{e}");
}

#[test]
fn the_store_is_typed_when_read_and_named_in_errors() {
    assert_eq!(load_yaml("", &[]).unwrap().store, StoreKind::Memory);
    let c = load_yaml("store: redis://127.0.0.1:6379/0\n", &[]).unwrap();
    assert_eq!(c.store, StoreKind::Redis("redis://127.0.0.1:6379/0".into()));
    // Written back as the text it was read from (the reload diff and the keys see a string).
    let v = serde_yaml_ng::to_value(&c).unwrap();
    assert_eq!(v["store"], Value::String("redis://127.0.0.1:6379/0".into()));
    assert!(keys().contains(&"store"));
    let e = load_yaml("store: x\n", &[]).unwrap_err().to_string();
    assert_eq!(
        e,
        "invalid config: store: must be \"memory\" or a redis:// URL, not \"x\""
    );
    let e = load_yaml("store: 5\n", &[]).unwrap_err().to_string();
    assert_eq!(
        e,
        "invalid config: store: expected memory or a redis:// URL, got 5"
    );
    // The flag overrides the file, and is named when wrong.
    let source = |store: &str| ConfigSource {
        overrides: Overrides {
            store: Some(store.into()),
            ..Overrides::default()
        },
        ..ConfigSource::default()
    };
    let l = source("redis://127.0.0.1:6380/1").load().unwrap();
    assert_eq!(
        l.config.store,
        StoreKind::Redis("redis://127.0.0.1:6380/1".into())
    );
    let e = source("etcd://x").load().unwrap_err().to_string();
    assert_eq!(
        e,
        "invalid config: --store: must be \"memory\" or a redis:// URL, not \"etcd://x\""
    );
}

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
