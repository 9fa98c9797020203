//! The Redis store against a real redis-server made unreachable (`CLIENT PAUSE`) during a heartbeat
//! storm: the outbox stays within its capacity, and everything reaches Redis once it answers again.

use std::sync::Arc;
use std::time::Duration;

use super::message::keys;
use super::test_server::redis_server;
use super::{RedisSettings, RedisStore, Store};
use crate::clock;
use crate::registry::{Registration, Registry};

fn registration(service: &str, port: u16) -> Registration {
    Registration::local_http(service, port)
}

/// Polls `check` every 50 ms until it holds, for at most `deadline`.
async fn eventually(deadline: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let end = tokio::time::Instant::now() + deadline;
    while !check().await {
        assert!(tokio::time::Instant::now() < end, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The keys matching `pattern`; `None` while Redis does not answer (paused).
async fn count(c: &mut redis::aio::MultiplexedConnection, pattern: &str) -> Option<usize> {
    let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query_async(c).await.ok()?;
    Some(keys.len())
}

/// Whether `key` exists; `None` while Redis does not answer (paused).
async fn exists(c: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<bool> {
    let n: i64 = redis::cmd("EXISTS").arg(key).query_async(c).await.ok()?;
    Some(n == 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_during_a_heartbeat_storm_costs_at_most_the_queue_and_is_written_back_after() {
    const CAPACITY: usize = 32;
    const STORM: u16 = 300;
    let server = redis_server();
    let registry = Arc::new(Registry::new(crate::Config::default().registry_policy()));
    let settings = RedisSettings {
        resync_interval: Duration::from_secs(60),
        command_timeout: Duration::from_millis(200),
        failure_window: Duration::from_secs(10),
        queue_capacity: CAPACITY,
    };
    let store = RedisStore::start(&server.url(), Arc::clone(&registry), settings).unwrap();
    let mut c = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();

    let gone = registry
        .register(registration("orders", 9001), clock::now())
        .replica;
    let gone_key = keys::replica("orders", &gone.id());
    eventually(Duration::from_secs(10), "the replica written", async || {
        exists(&mut c, &gone_key).await == Some(true)
    })
    .await;

    // Redis stops answering for 3 s: the replica deregisters, and a fleet registers and heartbeats.
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(3_000)
        .query_async(&mut c)
        .await
        .unwrap();
    registry
        .deregister("orders", &gone.id().to_string(), clock::now())
        .unwrap();
    let mut storm = Vec::new();
    for i in 0..STORM {
        storm.push(
            registry
                .register(registration("storm", 10_000 + i), clock::now())
                .replica,
        );
    }
    for _ in 0..5 {
        for r in &storm {
            registry
                .heartbeat("storm", &r.id().to_string(), clock::now())
                .unwrap();
            // At most the capacity waits, plus the removal, which is never dropped.
            assert!(store.outbox.len() <= CAPACITY + 1, "{}", store.outbox.len());
        }
    }
    assert!(registry.metrics().store_queue_overflows.get() > 0);

    // Redis answers again: the storm is written back and the removal reaches it.
    eventually(Duration::from_secs(20), "written back", async || {
        count(&mut c, "rgw:replica:storm:*").await == Some(usize::from(STORM))
    })
    .await;
    eventually(Duration::from_secs(10), "the removal written", async || {
        exists(&mut c, &gone_key).await == Some(false)
    })
    .await;
    assert!(store.status().connected);

    // Shutdown stops the store's tasks.
    tokio::time::timeout(Duration::from_secs(5), store.stop())
        .await
        .expect("the store's tasks stop");
}
