//! The server's wiring: the sweeper on a paused clock, connection limits, and which listener serves registration.

use std::time::Duration;

use super::open_files::effective_max_connections;
use super::*;
use crate::registry::Listener;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Lets every task that is ready run (the paused clock does not move meanwhile).
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn the_sweeper_removes_a_lapsed_lease_within_a_tenth_of_its_ttl_on_a_paused_clock() {
    use crate::registry::Registration;
    let mut policy = Config::default().registry_policy();
    policy.lease_ttl = Duration::from_secs(10);
    let registry = Arc::new(Registry::new(policy));
    registry.register(Registration::local_http("orders", 9001), clock::now());
    let sweeper = tokio::spawn(sweep_leases(Arc::clone(&registry), Shared::memory()));
    let replicas = || registry.service("orders").map_or(0, |s| s.len());
    // Rounds every ttl/10 = 1 s: at 9.5 s the lease still holds.
    tokio::time::advance(Duration::from_millis(9_500)).await;
    settle().await;
    assert_eq!(replicas(), 1);
    // It lapses at 10 s; the sweep at 11 s at the latest removes it.
    tokio::time::advance(Duration::from_millis(1_600)).await;
    settle().await;
    assert_eq!(replicas(), 0);
    sweeper.abort();
}

#[test]
fn max_connections_fit_the_open_files_limit() {
    // 4096 connections need 2 * 4096 + 256 = 8448 descriptors.
    assert_eq!(effective_max_connections(4096, Some(8448)), 4096);
    assert_eq!(effective_max_connections(4096, Some(1_048_576)), 4096);
    assert_eq!(effective_max_connections(4096, Some(8447)), 4095);
    assert_eq!(effective_max_connections(4096, Some(1024)), 384);
    assert_eq!(effective_max_connections(4096, Some(512)), 128);
    // Never 0, even under a tiny limit.
    assert_eq!(effective_max_connections(4096, Some(100)), 1);
    assert_eq!(effective_max_connections(4096, Some(0)), 1);
    // Unknown or unlimited: as configured.
    assert_eq!(effective_max_connections(4096, None), 4096);
    assert_eq!(
        effective_max_connections(usize::MAX, Some(u64::MAX)),
        usize::MAX
    );
}

#[test]
fn registration_is_served_by_the_admin_listener_when_there_is_one() {
    let (http, grpc, admin) = (sa("0.0.0.0:80"), sa("127.0.0.1:50050"), sa("127.0.0.1:81"));
    let kinds = |l: Vec<Listener>| l.iter().map(|l| (l.kind, l.addr)).collect::<Vec<_>>();
    assert_eq!(
        kinds(registration_listeners(http, grpc, None)),
        [("HTTP", http), ("gRPC", grpc)]
    );
    assert_eq!(
        kinds(registration_listeners(http, grpc, Some(admin))),
        [("admin", admin), ("gRPC", grpc)]
    );
    assert_eq!(
        kinds(own_listeners(http, grpc, Some(admin))),
        [("HTTP", http), ("gRPC", grpc), ("admin", admin)]
    );
}

#[test]
fn open_registration_off_loopback_is_flagged() {
    let on = |addrs: &[&str]| {
        addrs
            .iter()
            .map(|a| Listener {
                kind: "HTTP",
                addr: sa(a),
            })
            .collect::<Vec<_>>()
    };
    let flagged = |open, addrs: &[&str]| {
        exposed_registration(open, &on(addrs))
            .iter()
            .map(|l| l.addr.to_string())
            .collect::<Vec<_>>()
    };
    assert!(flagged(true, &["127.0.0.1:8080", "[::1]:50050", "127.0.0.2:1"]).is_empty());
    assert_eq!(
        flagged(true, &["0.0.0.0:8080", "127.0.0.1:50050"]),
        ["0.0.0.0:8080"]
    );
    assert_eq!(
        flagged(true, &["[::]:1", "10.0.0.5:2"]),
        ["[::]:1", "10.0.0.5:2"]
    );
    assert_eq!(
        flagged(true, &["[::ffff:127.0.0.1]:1"]),
        Vec::<String>::new()
    );
    // With a registration token nothing is flagged.
    assert!(flagged(false, &["0.0.0.0:8080"]).is_empty());
}
