//! The event stream's encoding: event names, frames, stats rates and the stream's access token.

use std::time::Instant;

use super::frames::Counters;
use super::*;
use crate::admin::dto::ReplicaDto;
use crate::policy::{BreakerState, EvictionReason};
use crate::registry::{Joined, Registration, Source, StateReason, TransitionRecord};

fn registry() -> Registry {
    Registry::new(crate::Config::default().registry_policy())
}

fn registration(service: &str, port: u16) -> Registration {
    Registration::local_http(service, port)
}

/// The frame of `event`, with the replica JSON the handler would send, parsed back.
fn frame(event: &RegistryEvent, now: Instant) -> (&'static str, serde_json::Value) {
    let replica = ReplicaDto::new(replica_of(event).view(now), false);
    let f = change_frame(event, &replica).expect("a watched event");
    assert!(!f.data.contains('\n'), "one data line: {}", f.data);
    (f.event, serde_json::from_str(&f.data).unwrap())
}

#[test]
fn each_change_gets_its_event_name_and_reason() {
    let now = clock::now();
    let reg = registry();
    let r = reg.register(registration("orders", 9001), now).replica;
    let replica_json = serde_json::to_value(ReplicaDto::new(r.view(now), false)).unwrap();

    let (name, data) = frame(
        &RegistryEvent::Added(Arc::clone(&r), Joined::Registered),
        now,
    );
    assert_eq!(name, "registered");
    assert_eq!(
        data,
        serde_json::json!({ "service": "orders", "replica": replica_json })
    );

    let removed = |reason| {
        frame(
            &RegistryEvent::Removed(Arc::clone(&r), reason, Source::Local),
            now,
        )
    };
    let (name, data) = removed(Some(EvictionReason::Deregistered));
    assert_eq!(
        (name, data["reason"].as_str()),
        ("removed", Some("deregistered"))
    );
    let (name, data) = removed(None);
    assert_eq!(
        (name, data["reason"].as_str()),
        ("removed", Some("by another gateway"))
    );
    let (name, data) = removed(Some(EvictionReason::Failures(5)));
    assert_eq!(
        (name, data["reason"].as_str()),
        ("evicted", Some("5 consecutive failures"))
    );
    let (name, data) = removed(Some(EvictionReason::LeaseExpired(Duration::from_millis(
        15_200,
    ))));
    assert_eq!(
        (name, data["reason"].as_str()),
        ("evicted", Some("lease expired, no heartbeat for 15200 ms"))
    );
    assert_eq!(data["replica"]["address"], "http://127.0.0.1:9001");
    assert_eq!(data["service"], "orders");

    let (name, data) = frame(
        &RegistryEvent::StateChanged(
            Arc::clone(&r),
            TransitionRecord {
                at_unix_ms: 0,
                from: BreakerState::Open,
                to: BreakerState::HalfOpen,
                reason: StateReason::Probing,
            },
        ),
        now,
    );
    assert_eq!(name, "state");
    assert_eq!(data["state"], "half_open");
    assert!(data.get("reason").is_none(), "{data}");
    // The replica is read when the event is sent: here still closed.
    assert_eq!(data["replica"]["state"], "closed");
}

#[test]
fn a_frame_is_an_event_line_a_data_line_and_a_blank_line() {
    let f = Frame::json("stats", &serde_json::json!({ "a": [1, 2] }));
    assert_eq!(&f.encode()[..], b"event: stats\ndata: {\"a\":[1,2]}\n\n");
}

fn counters(id: &str, state: BreakerState, requests: u64, failures: u64) -> Counters {
    Counters {
        service: "orders".into(),
        id: id.into(),
        address: format!("http://127.0.0.1:{}", 9000 + id.len()),
        state,
        requests,
        failures,
    }
}

#[test]
fn rates_come_from_the_difference_between_two_samples() {
    let t0 = clock::now();
    let prev = Sample {
        at: t0,
        replicas: vec![
            counters("a", BreakerState::Closed, 100, 10),
            counters("bb", BreakerState::Closed, 50, 0),
            counters("ccc", BreakerState::Closed, 7, 7),
        ],
    };
    let cur = Sample {
        at: t0 + Duration::from_millis(2000),
        replicas: vec![
            // a: 20 more attempts in 2 s, 5 of them failed
            counters("a", BreakerState::Closed, 120, 15),
            // bb: idle
            counters("bb", BreakerState::Open, 50, 0),
            // dddd: new since the previous sample
            counters("dddd", BreakerState::Closed, 9, 1),
        ],
    };
    let s = stats(&prev, &cur);
    assert_eq!(s.interval_ms, 2000);
    let rates: Vec<_> = s
        .replicas
        .iter()
        .map(|r| (r.id.as_str(), r.state, r.requests_per_s, r.error_rate))
        .collect();
    assert_eq!(
        rates,
        [
            ("a", BreakerState::Closed, Some(10.0), Some(0.25)),
            ("bb", BreakerState::Open, Some(0.0), None),
            ("dddd", BreakerState::Closed, None, None),
        ]
    );
    assert_eq!((s.replicas[0].requests, s.replicas[0].failures), (120, 15));

    // Three attempts in 3 s, one failed: 1/s and a third, rounded.
    let later = Sample {
        at: t0 + Duration::from_millis(5000),
        replicas: vec![counters("a", BreakerState::Closed, 123, 16)],
    };
    let s = stats(&cur, &later);
    assert_eq!(s.interval_ms, 3000);
    assert_eq!(s.replicas[0].requests_per_s, Some(1.0));
    assert_eq!(s.replicas[0].error_rate, Some(0.333));

    // The same instant twice: no rate rather than a division by zero.
    let s = stats(&later, &later);
    assert_eq!(s.replicas[0].requests_per_s, None);
    assert_eq!(s.replicas[0].error_rate, None);
}

#[test]
fn the_stats_event_names_every_field_the_page_reads() {
    let t0 = clock::now();
    let prev = Sample {
        at: t0,
        replicas: vec![counters("a", BreakerState::Closed, 0, 0)],
    };
    let cur = Sample {
        at: t0 + Duration::from_secs(2),
        replicas: vec![counters("a", BreakerState::HalfOpen, 4, 1)],
    };
    let f = Frame::json("stats", &stats(&prev, &cur));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&f.data).unwrap(),
        serde_json::json!({
            "interval_ms": 2000,
            "replicas": [{
                "service": "orders", "id": "a", "address": "http://127.0.0.1:9001",
                "state": "half_open", "requests": 4, "failures": 1,
                "requests_per_s": 2.0, "error_rate": 0.25,
            }],
        })
    );
}

#[test]
fn the_query_token_counts_only_when_no_header_is_sent() {
    let settings = AdminSettings {
        tokens: crate::live::Live::new(crate::admin::ApiTokens::new(
            Some("w".into()),
            Some("r".into()),
        )),
        registration_body_max: crate::live::Live::new(1),
        own_listeners: crate::registry::OwnListeners::new(Vec::new()),
    };
    let allowed = |uri: &str, header: Option<&str>| {
        let mut req = actix_web::test::TestRequest::get().uri(uri);
        if let Some(h) = header {
            req = req.insert_header((header::AUTHORIZATION, h));
        }
        authorize(&req.to_http_request(), &settings).is_ok()
    };
    assert!(allowed("/registry/events?access_token=r", None));
    assert!(allowed("/registry/events?access_token=w", None));
    assert!(allowed("/registry/events", Some("Bearer r")));
    assert!(!allowed("/registry/events", None));
    assert!(!allowed("/registry/events?access_token=x", None));
    assert!(!allowed("/registry/events?access_token=", None));
    assert!(!allowed("/registry/events?access_token=Bearer%20r", None));
    // A header, even a wrong one, is what is checked.
    assert!(!allowed(
        "/registry/events?access_token=r",
        Some("Bearer x")
    ));
    assert!(allowed("/registry/events?access_token=x", Some("Bearer r")));
}

#[test]
fn the_access_token_comes_url_decoded_from_the_query() {
    assert_eq!(access_token("access_token=s3cret"), Some("s3cret".into()));
    assert_eq!(
        access_token("x=1&access_token=a%2Bb%20c&y=2"),
        Some("a+b c".into())
    );
    assert_eq!(access_token("access_token="), Some(String::new()));
    assert_eq!(access_token(""), None);
    assert_eq!(access_token("token=s3cret&access_tokenx=1"), None);
}
