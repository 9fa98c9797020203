//! The registry read over gRPC in bounded memory: `StreamServices` in parts with filters, `Watch` with
//! its snapshot in parts (and a fresh one after a lag), against `ListServices` built whole.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use e2e::{channel, gateway, Proc};
use registry_proto::registry::v1::registry_event::Event;
use registry_proto::registry::v1::{self as pb, registry_client::RegistryClient};
use tonic::transport::Channel;
use tonic::Code;

/// Replica number `k` (from 1) of a test fleet: one address each, all on 127.0.0.0/8, never proxied to.
fn address(k: u32) -> String {
    format!(
        "http://127.{}.{}.{}:20000",
        (k >> 16) & 255,
        (k >> 8) & 255,
        k & 255
    )
}

/// Registers replicas `ks` over gRPC, 16 calls at a time; `service(k)` names each one's service and
/// whether it is a gRPC replica.
async fn register_all(
    ch: &Channel,
    ks: std::ops::RangeInclusive<u32>,
    service: fn(u32) -> (&'static str, bool),
) {
    const TASKS: u32 = 16;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let mut client = RegistryClient::new(ch.clone());
        let ks = ks.clone();
        tasks.push(tokio::spawn(async move {
            for k in ks.skip(t as usize).step_by(TASKS as usize) {
                let (name, grpc) = service(k);
                let req = pb::RegisterRequest {
                    service: name.into(),
                    address: address(k),
                    protocol: if grpc {
                        pb::Protocol::Grpc
                    } else {
                        pb::Protocol::Http
                    } as i32,
                    grpc_services: if grpc {
                        vec!["demo.v1.Echo".into()]
                    } else {
                        vec![]
                    },
                    ..Default::default()
                };
                let r = client.register(req).await.unwrap().into_inner();
                assert!(r.created, "replica {k} registered twice");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// alpha: 700 HTTP replicas; beta: 250 gRPC replicas; gamma: 50 HTTP replicas.
fn three_services(k: u32) -> (&'static str, bool) {
    match k {
        1..=700 => ("alpha", false),
        701..=950 => ("beta", true),
        _ => ("gamma", false),
    }
}

fn long_leases() -> Proc {
    gateway("lease: { ttl: 60m, heartbeat_interval: 20m }\n")
}

/// Every part of a `StreamServices` call.
async fn stream(
    client: &mut RegistryClient<Channel>,
    req: pb::ListServicesRequest,
) -> Vec<pb::ServicePart> {
    let mut s = client.stream_services(req).await.unwrap().into_inner();
    let mut parts = Vec::new();
    while let Some(p) = s.message().await.unwrap() {
        parts.push(p);
    }
    parts
}

/// Checks that every service's parts are numbered 0, 1, 2… with `last` only on the final one and at
/// most `max` replicas each; returns each service's replica addresses (asserting none twice) and its
/// part count.
fn assemble(parts: &[pb::ServicePart], max: usize) -> BTreeMap<String, (Vec<String>, u32)> {
    let mut services: BTreeMap<String, (Vec<String>, u32)> = BTreeMap::new();
    let mut open: Option<String> = None;
    let mut seen = HashSet::new();
    for p in parts {
        let svc = p.service.as_ref().expect("a part names its service");
        assert!(
            svc.replicas.len() <= max,
            "{} replicas in a part of {}",
            svc.replicas.len(),
            svc.name
        );
        if p.part == 0 {
            assert!(open.is_none(), "{} starts before {open:?} ended", svc.name);
            assert!(
                !services.contains_key(&svc.name),
                "{} listed twice",
                svc.name
            );
        } else {
            assert_eq!(
                open.as_deref(),
                Some(svc.name.as_str()),
                "part {} out of place",
                p.part
            );
        }
        let entry = services.entry(svc.name.clone()).or_default();
        assert_eq!(entry.1, p.part, "parts of {} out of order", svc.name);
        entry.1 += 1;
        for r in &svc.replicas {
            assert_eq!(r.service, svc.name);
            assert!(
                seen.insert(r.id.clone()),
                "replica {} listed twice",
                r.address
            );
            entry.0.push(r.address.clone());
        }
        open = (!p.last).then(|| svc.name.clone());
    }
    assert!(open.is_none(), "{open:?} never ended");
    services
}

fn addresses(ks: impl Iterator<Item = u32>) -> Vec<String> {
    let mut a: Vec<String> = ks.map(address).collect();
    a.sort();
    a
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_services_lists_every_replica_once_in_bounded_parts_with_filters() {
    let gw = long_leases();
    let ch = channel(&gw.grpc_url).await;
    register_all(&ch, 1..=1000, three_services).await;
    let mut client = RegistryClient::new(ch);

    // By 100: alpha in 7 parts, beta in 3 (100, 100, 50), gamma in 1.
    let req = |max| pb::ListServicesRequest {
        max_replicas_per_part: max,
        ..Default::default()
    };
    let all = assemble(&stream(&mut client, req(100)).await, 100);
    assert_eq!(all.keys().collect::<Vec<_>>(), ["alpha", "beta", "gamma"]);
    assert_eq!(all["alpha"].1, 7);
    assert_eq!(all["beta"].1, 3);
    assert_eq!(all["gamma"].1, 1);
    assert_eq!(sorted(all["alpha"].0.clone()), addresses(1..=700));
    assert_eq!(sorted(all["beta"].0.clone()), addresses(701..=950));
    assert_eq!(sorted(all["gamma"].0.clone()), addresses(951..=1000));

    // 0 means 256 (alpha: 256, 256, 188); more than 1024 is 1024 (alpha in one part).
    let default = assemble(&stream(&mut client, req(0)).await, 256);
    assert_eq!(default["alpha"].1, 3);
    let capped = assemble(&stream(&mut client, req(5000)).await, 1024);
    assert_eq!(capped["alpha"].1, 1);
    assert_eq!(capped["alpha"].0.len(), 700);

    // The unary answer holds the same replicas.
    let whole = client
        .list_services(pb::ListServicesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let unary: BTreeMap<String, Vec<String>> = whole
        .services
        .into_iter()
        .map(|s| {
            (
                s.name,
                sorted(s.replicas.into_iter().map(|r| r.address).collect()),
            )
        })
        .collect();
    for (name, (addrs, _)) in &all {
        assert_eq!(&unary[name], &sorted(addrs.clone()), "{name}");
    }

    // Filters, as GET /registry's: services (unknown names left out), protocol, state.
    let only = |services: &[&str], protocol: pb::Protocol, state: pb::BreakerState| {
        pb::ListServicesRequest {
            services: services.iter().map(|s| s.to_string()).collect(),
            protocol: protocol as i32,
            state: state as i32,
            max_replicas_per_part: 100,
        }
    };
    let named = assemble(
        &stream(
            &mut client,
            only(
                &["gamma", "nope"],
                pb::Protocol::Unspecified,
                pb::BreakerState::Unspecified,
            ),
        )
        .await,
        100,
    );
    assert_eq!(named.keys().collect::<Vec<_>>(), ["gamma"]);
    let grpc = assemble(
        &stream(
            &mut client,
            only(&[], pb::Protocol::Grpc, pb::BreakerState::Unspecified),
        )
        .await,
        100,
    );
    assert_eq!(grpc.keys().collect::<Vec<_>>(), ["beta"]);
    assert_eq!(sorted(grpc["beta"].0.clone()), addresses(701..=950));
    let http = assemble(
        &stream(
            &mut client,
            only(&[], pb::Protocol::Http, pb::BreakerState::Closed),
        )
        .await,
        100,
    );
    assert_eq!(http.keys().collect::<Vec<_>>(), ["alpha", "gamma"]);
    let open = stream(
        &mut client,
        only(&[], pb::Protocol::Unspecified, pb::BreakerState::Open),
    )
    .await;
    assert!(open.is_empty(), "no breaker is open: {} parts", open.len());
    // The unary call takes the same filters.
    let unary_grpc = client
        .list_services(only(&[], pb::Protocol::Grpc, pb::BreakerState::Unspecified))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unary_grpc.services.len(), 1);
    assert_eq!(unary_grpc.services[0].replicas.len(), 250);

    // An unknown enum value is INVALID_ARGUMENT naming the field.
    let err = client
        .stream_services(pb::ListServicesRequest {
            state: 42,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("state:"), "{}", err.message());
}

/// Reads a `Watch` until its `snapshot_end`, checking that only snapshot parts come before it.
async fn snapshot(watch: &mut tonic::Streaming<pb::RegistryEvent>) -> Vec<pb::ServicePart> {
    let mut parts = Vec::new();
    loop {
        let e = tokio::time::timeout(Duration::from_secs(30), watch.message())
            .await
            .expect("the snapshot arrives")
            .unwrap()
            .expect("the stream goes on");
        match e.event {
            Some(Event::SnapshotPart(p)) => parts.push(p),
            Some(Event::SnapshotEnd(_)) => return parts,
            other => panic!("{other:?} inside a snapshot"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sends_its_snapshot_in_parts_then_changes() {
    let gw = long_leases();
    let ch = channel(&gw.grpc_url).await;
    register_all(&ch, 1..=1000, three_services).await;
    let mut client = RegistryClient::new(ch.clone());
    let mut watch = client
        .watch(pb::WatchRequest {
            snapshot_in_parts: true,
            max_replicas_per_part: 128,
        })
        .await
        .unwrap()
        .into_inner();
    let parts = snapshot(&mut watch).await;
    let all = assemble(&parts, 128);
    // alpha: 700 by 128 is 6 parts.
    assert_eq!(all["alpha"].1, 6);
    assert_eq!(sorted(all["alpha"].0.clone()), addresses(1..=700));
    assert_eq!(sorted(all["beta"].0.clone()), addresses(701..=950));
    assert_eq!(sorted(all["gamma"].0.clone()), addresses(951..=1000));

    // Then the changes.
    register_all(&ch, 1001..=1001, |_| ("delta", false)).await;
    let e = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match e.event {
        Some(Event::Added(r)) => {
            assert_eq!(r.service, "delta");
            assert_eq!(r.address, address(1001));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_lags_gets_a_fresh_snapshot_in_parts() {
    let gw = long_leases();
    // A small HTTP/2 window, so that a watcher that stops reading stops the gateway's stream soon.
    let slow = tonic::transport::Endpoint::from_shared(gw.grpc_url.clone())
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap();
    let mut watch = RegistryClient::new(slow)
        .watch(pb::WatchRequest {
            snapshot_in_parts: true,
            max_replicas_per_part: 500,
        })
        .await
        .unwrap()
        .into_inner();
    snapshot(&mut watch).await;

    // 6,000 changes while the watcher reads nothing: more than the 4,096 the gateway keeps per watcher.
    let ch = channel(&gw.grpc_url).await;
    register_all(&ch, 1..=6000, |_| ("wide", false)).await;

    // What was sent before the lag, then a fresh snapshot holding every replica.
    let mut added = 0;
    loop {
        let e = tokio::time::timeout(Duration::from_secs(30), watch.message())
            .await
            .expect("events arrive")
            .unwrap()
            .unwrap();
        match e.event {
            Some(Event::Added(_)) => added += 1,
            Some(Event::SnapshotPart(first)) => {
                assert_eq!(first.part, 0);
                let mut parts = vec![first];
                parts.extend(snapshot(&mut watch).await);
                let fresh = assemble(&parts, 500);
                assert_eq!(fresh["wide"].1, 12);
                assert_eq!(sorted(fresh["wide"].0.clone()), addresses(1..=6000));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(
        added < 6000,
        "every event arrived: the watcher never lagged"
    );
}

/// Peak RSS growth (MiB) of `gw` while `read` runs.
async fn rss_growth<F: std::future::Future<Output = usize>>(
    gw: &Arc<Proc>,
    read: F,
) -> (u64, usize) {
    let base = gw.rss_kib();
    let (done, peak) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(base)),
    );
    let sampler = {
        let (gw, done, peak) = (Arc::clone(gw), Arc::clone(&done), Arc::clone(&peak));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(gw.rss_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let n = read.await;
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    (peak.load(Ordering::Relaxed).saturating_sub(base) / 1024, n)
}

/// 100,000 replicas read with `StreamServices`, then with `ListServices`: the gateway's RSS growth of
/// each. Slow (registers 100k replicas): run by hand with `--ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn streaming_100k_replicas_grows_rss_far_less_than_the_unary_list() {
    const N: u32 = 100_000;
    let gw = Arc::new(long_leases());
    let ch = channel(&gw.grpc_url).await;
    register_all(&ch, 1..=N, |k| {
        if k % 2 == 0 {
            ("big", false)
        } else {
            ("other", false)
        }
    })
    .await;
    let mut client = RegistryClient::new(ch.clone()).max_decoding_message_size(usize::MAX);

    let timed = std::sync::Mutex::new(Vec::new());
    let (streamed, n) = rss_growth(&gw, async {
        let started = std::time::Instant::now();
        let mut s = client
            .clone()
            .stream_services(pb::ListServicesRequest::default())
            .await
            .unwrap()
            .into_inner();
        let mut n = 0;
        while let Some(p) = s.message().await.unwrap() {
            if n == 0 {
                timed
                    .lock()
                    .unwrap()
                    .push(("StreamServices first part", started.elapsed()));
            }
            n += p.service.unwrap().replicas.len();
        }
        timed
            .lock()
            .unwrap()
            .push(("StreamServices all", started.elapsed()));
        n
    })
    .await;
    assert_eq!(n, N as usize);
    let (watched, n) = rss_growth(&gw, async {
        let req = pb::WatchRequest {
            snapshot_in_parts: true,
            max_replicas_per_part: 0,
        };
        let mut w = client.clone().watch(req).await.unwrap().into_inner();
        let parts = snapshot(&mut w).await;
        parts
            .iter()
            .map(|p| p.service.as_ref().unwrap().replicas.len())
            .sum()
    })
    .await;
    assert_eq!(n, N as usize);
    let (unary, n) = rss_growth(&gw, async {
        let started = std::time::Instant::now();
        let all = client
            .list_services(pb::ListServicesRequest::default())
            .await
            .unwrap()
            .into_inner();
        timed
            .lock()
            .unwrap()
            .push(("ListServices", started.elapsed()));
        all.services.iter().map(|s| s.replicas.len()).sum()
    })
    .await;
    assert_eq!(n, N as usize);
    println!(
        "RSS growth reading {N} replicas: StreamServices {streamed} MiB, Watch in parts {watched} MiB, \
         ListServices {unary} MiB; {:?}",
        timed.lock().unwrap()
    );
    assert!(streamed < 64, "StreamServices grew RSS by {streamed} MiB");
    assert!(watched < 64, "the Watch snapshot grew RSS by {watched} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_services_needs_the_read_token_like_list_services() {
    let gw = gateway("auth: { read_token: r3ad }\n");
    let mut client = RegistryClient::new(channel(&gw.grpc_url).await);
    let err = client
        .stream_services(pb::ListServicesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut req = tonic::Request::new(pb::ListServicesRequest::default());
    req.metadata_mut()
        .insert("authorization", "Bearer r3ad".parse().unwrap());
    let mut parts = client.stream_services(req).await.unwrap().into_inner();
    while parts.message().await.unwrap().is_some() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_services_snapshots_each_service_only_when_the_client_reaches_it() {
    let gw = long_leases();
    let ch = channel(&gw.grpc_url).await;
    // alpha: 3,000 replicas (about 300 KB of messages, far more than the client's 64 KiB window);
    // zeta, listed last, one.
    register_all(&ch, 1..=3001, |k| {
        if k <= 3000 {
            ("alpha", false)
        } else {
            ("zeta", false)
        }
    })
    .await;
    let slow = tonic::transport::Endpoint::from_shared(gw.grpc_url.clone())
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap();
    let mut s = RegistryClient::new(slow)
        .stream_services(pb::ListServicesRequest {
            max_replicas_per_part: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut parts = vec![s.message().await.unwrap().unwrap()];
    // While the client holds back, zeta gains a replica: the gateway has not reached zeta yet, since
    // it makes parts only as the client makes room for them.
    register_all(&ch, 3002..=3002, |_| ("zeta", false)).await;
    while let Some(p) = s.message().await.unwrap() {
        parts.push(p);
    }
    let all = assemble(&parts, 100);
    assert_eq!(all["alpha"].1, 30);
    assert_eq!(sorted(all["zeta"].0.clone()), addresses(3001..=3002));
}
