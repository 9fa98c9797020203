//! The registry's metric series, from registration to eviction, driven by an explicit clock.

use std::time::Instant;

use super::tests::{at, reg};
use super::why_tests::{fail_replica, registry};
use super::*;
use crate::policy::BreakerState::Open;

/// The value of the series `name{labels}` in `text`, if exported.
fn value(text: &str, series: &str) -> Option<i64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn the_metrics_follow_replicas_from_registration_to_eviction() {
    let t0 = Instant::now();
    let r = registry(t0);
    let a = r.register(reg("orders", 9001), t0).replica;
    r.register(reg("orders", 9002), t0);
    r.register(reg("orders", 9002), at(t0, 1_000));
    r.heartbeat("orders", &a.id().to_string(), at(t0, 1_000))
        .unwrap();
    r.add_static(
        ServiceName::parse("static").unwrap(),
        ReplicaAddress::parse("http://127.0.0.1:9100").unwrap(),
        t0,
    );
    let state = |port: u16, s: &str| {
        format!("gateway_replica_state{{service=\"orders\",replica=\"http://127.0.0.1:{port}\",state=\"{s}\"}}")
    };
    let text = r.metrics().encode();
    assert_eq!(
        value(&text, "gateway_registrations_total"),
        Some(3),
        "{text}"
    );
    assert_eq!(value(&text, "gateway_heartbeats_total"), Some(1));
    assert_eq!(
        value(&text, "gateway_replicas{service=\"orders\"}"),
        Some(2)
    );
    assert_eq!(
        value(&text, "gateway_replicas{service=\"static\"}"),
        Some(1)
    );
    assert_eq!(value(&text, &state(9001, "closed")), Some(1));
    assert_eq!(value(&text, &state(9001, "open")), Some(0));
    assert_eq!(value(&text, &state(9001, "half_open")), Some(0));
    assert!(
        !text.contains("gateway_store"),
        "memory store: no store series\n{text}"
    );

    // Three failures open 9001; two more evict it.
    fail_replica(&r, &a, 3, at(t0, 2_000));
    let text = r.metrics().encode();
    assert_eq!(value(&text, &state(9001, "open")), Some(1));
    assert_eq!(value(&text, &state(9001, "closed")), Some(0));
    assert_eq!(
        value(
            &text,
            "gateway_breaker_transitions_total{service=\"orders\",replica=\"http://127.0.0.1:9001\",to=\"open\"}"
        ),
        Some(1)
    );
    fail_replica(&r, &a, 2, at(t0, 3_000));
    let text = r.metrics().encode();
    assert_eq!(
        value(
            &text,
            "gateway_evictions_total{service=\"orders\",reason=\"failures\"}"
        ),
        Some(1)
    );
    assert!(
        !text.contains("127.0.0.1:9001"),
        "its series are gone\n{text}"
    );
    assert_eq!(
        value(&text, "gateway_replicas{service=\"orders\"}"),
        Some(1)
    );

    // 9002's lease runs out (renewed at 1 s, 15 s ttl): the service keeps a 0.
    assert_eq!(r.sweep(at(t0, 16_000)), 1);
    let text = r.metrics().encode();
    assert_eq!(
        value(
            &text,
            "gateway_evictions_total{service=\"orders\",reason=\"lease_expired\"}"
        ),
        Some(1)
    );
    assert_eq!(
        value(&text, "gateway_replicas{service=\"orders\"}"),
        Some(0)
    );
    assert!(!text.contains("127.0.0.1:9002"), "{text}");
    // A deregistration is no eviction.
    let b = r.register(reg("orders", 9003), at(t0, 16_000)).replica;
    r.deregister("orders", &b.id().to_string(), at(t0, 17_000))
        .unwrap();
    let text = r.metrics().encode();
    assert_eq!(
        value(
            &text,
            "gateway_evictions_total{service=\"orders\",reason=\"failures\"}"
        ),
        Some(1)
    );
    assert!(!text.contains("127.0.0.1:9003"), "{text}");
}

#[test]
fn a_replica_back_on_probation_is_shown_open() {
    let t0 = Instant::now();
    let r = registry(t0);
    let a = r.register(reg("orders", 9001), t0).replica;
    fail_replica(&r, &a, 5, t0);
    let back = r.register(reg("orders", 9001), at(t0, 1_000)).replica;
    let v = back.view(at(t0, 2_000));
    assert_eq!(v.state, Open);
    assert_eq!(
        v.state_reason,
        "re-registered after eviction: on probation until a probe succeeds"
    );
    assert_eq!(v.next_probe_in, Some(Duration::from_secs(9)));
    let text = r.metrics().encode();
    assert_eq!(
        value(
            &text,
            "gateway_replica_state{service=\"orders\",replica=\"http://127.0.0.1:9001\",state=\"open\"}"
        ),
        Some(1),
        "{text}"
    );
}

#[test]
fn replica_state_series_are_read_from_the_breakers_at_scrape_time_in_name_then_join_order() {
    let t0 = Instant::now();
    let r = registry(t0);
    let a = r.register(reg("users", 9002), t0).replica;
    r.register(reg("users", 9001), t0);
    r.register(reg("orders", 9003), t0);
    fail_replica(&r, &a, 3, t0); // opens (3 in a row), not evicted (5)
    let series: Vec<String> = r
        .metrics()
        .encode()
        .lines()
        .filter(|l| l.starts_with("gateway_replica_state{"))
        .map(str::to_owned)
        .collect();
    let line = |svc: &str, port: u16, state: &str, v: u8| {
        format!("gateway_replica_state{{service=\"{svc}\",replica=\"http://127.0.0.1:{port}\",state=\"{state}\"}} {v}")
    };
    let closed = |svc, port| {
        vec![
            line(svc, port, "closed", 1),
            line(svc, port, "open", 0),
            line(svc, port, "half_open", 0),
        ]
    };
    let mut want = closed("orders", 9003);
    want.extend([
        line("users", 9002, "closed", 0),
        line("users", 9002, "open", 1),
        line("users", 9002, "half_open", 0),
    ]);
    want.extend(closed("users", 9001));
    assert_eq!(series, want);
    r.deregister("users", &a.id().to_string(), at(t0, 10))
        .unwrap();
    assert!(!r.metrics().encode().contains(":9002"));
}
