//! The config's unit tests: loading, environment variables, validation and the errors users see.

use std::time::Duration;

use serde_yaml_ng::Value;

use super::*;

pub(super) fn load_yaml(yaml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
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
