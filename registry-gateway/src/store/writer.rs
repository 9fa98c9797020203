//! The writer: drains the registry's outbox into Redis, a batch at a time, one pipeline per kind of
//! write, and tells the peers.
//!
//! While Redis is unreachable it writes nothing: changes wait in the outbox, one entry per replica or
//! address, and the outbox's overflow turns into a full write-back once Redis is back.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use super::message::{keys, Event, StoredReplica};
use super::redis_store::{lock, stopped, RedisStore};
use super::scripts::release_script;
use crate::clock;
use crate::registry::{
    AddressWrite, RemovedFor, ReplicaAddress, ReplicaRecord, ReplicaWrite, ServiceName,
    SharedFailures, SharedProbeSuccesses, SharedState, SharedWindow, Write,
};

/// Entries taken from the outbox at once (replicas or addresses).
const BATCH: usize = 512;

/// What one address's pipeline answers, in order.
#[derive(Debug, Clone, Copy)]
enum Total {
    /// The consecutive failures every gateway counted.
    Failures,
    /// The failure-ratio window: requests, then failures.
    Window,
    /// Half-open probes that succeeded on every gateway.
    ProbeSuccesses,
}

impl RedisStore {
    /// Writes the outbox's entries until `stop`.
    pub(super) async fn write_changes(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            if !self.conn.connected() {
                // Nothing is written while degraded: the changes wait (coalescing) in the outbox.
                tokio::select! {
                    () = self.conn.wait_connected() => {}
                    () = stopped(&mut stop) => return,
                }
            }
            if self.outbox.take_overflow() {
                tracing::warn!(
                    "[STORE] too many changes waiting for Redis: dropped them; writing back the whole \
                     registry instead"
                );
                self.dirty.store(true, Ordering::Release);
                self.resync_now.notify_one();
            }
            let batch = self.outbox.take(BATCH);
            if batch.is_empty() {
                tokio::select! {
                    () = self.outbox.ready() => {}
                    () = stopped(&mut stop) => return,
                }
                continue;
            }
            self.write_batch(batch).await;
        }
    }

    /// Registrations first (a peer must hold a replica before it hears of its breaker), then renewals,
    /// removals and breakers, each kind in one pipeline.
    async fn write_batch(&self, batch: Vec<Write>) {
        let mut registered = Vec::new();
        let mut renewed = Vec::new();
        let mut removed = Vec::new();
        let mut addresses = Vec::new();
        for w in batch {
            match w {
                Write::Replica { service, id, write } => match write {
                    ReplicaWrite::Registered(rec) => registered.push(rec),
                    ReplicaWrite::Renewed => renewed.push((service, id)),
                    ReplicaWrite::Removed(why) => removed.push((service, id, why)),
                },
                Write::Address { address, write } => addresses.push((address, write)),
            }
        }
        self.write_registered(registered).await;
        self.write_renewed(renewed).await;
        self.write_removed(removed).await;
        self.write_addresses(addresses).await;
    }

    /// Adds the hash of `r` with `ttl` to `pipe`, and its message to the peers.
    pub(super) fn write_replica(
        &self,
        pipe: &mut redis::Pipeline,
        rec: &ReplicaRecord,
        ttl: Duration,
    ) {
        let stored = StoredReplica::from(rec);
        let key = keys::replica(&stored.service, &stored.id);
        let ttl_ms = ttl.as_millis().max(1) as u64;
        pipe.cmd("HSET").arg(&key).arg(stored.fields()).ignore();
        pipe.cmd("PEXPIRE").arg(&key).arg(ttl_ms).ignore();
        Self::publish(
            pipe,
            self.gw,
            Event::Registered {
                replica: stored,
                ttl_ms,
            },
        );
    }

    async fn write_registered(&self, recs: Vec<ReplicaRecord>) {
        if recs.is_empty() {
            return;
        }
        let ttl = self.registry.policy().lease_ttl;
        let mut pipe = redis::pipe();
        for rec in &recs {
            self.write_replica(&mut pipe, rec, ttl);
        }
        if self.conn.run::<()>("register", &pipe).await.is_some() {
            lock(&self.known).extend(recs.iter().map(|r| r.id));
        } else {
            self.dirty.store(true, Ordering::Release);
        }
    }

    /// Renews the leases of `renewed` in one pipeline, then tells peers of those renewed in another; a
    /// replica whose key is gone (expired in Redis while this gateway still had it) is written again.
    async fn write_renewed(&self, renewed: Vec<(ServiceName, Uuid)>) {
        if renewed.is_empty() {
            return;
        }
        let ttl_ms = self.registry.policy().lease_ttl.as_millis() as u64;
        let mut pipe = redis::pipe();
        for (service, id) in &renewed {
            pipe.cmd("PEXPIRE")
                .arg(keys::replica(service.as_str(), id))
                .arg(ttl_ms);
        }
        let Some(results): Option<Vec<i64>> = self.conn.run("renew", &pipe).await else {
            self.dirty.store(true, Ordering::Release);
            return;
        };
        let mut publish = redis::pipe();
        let mut gone = Vec::new();
        for ((service, id), found) in renewed.into_iter().zip(results) {
            if found == 0 {
                let rec = self
                    .registry
                    .service(service.as_str())
                    .and_then(|s| s.by_id(&id))
                    .map(|r| r.record());
                gone.extend(rec);
            } else {
                let service = service.to_string();
                Self::publish(&mut publish, self.gw, Event::Renewed { service, id });
            }
        }
        self.write_registered(gone).await;
        if publish.cmd_iter().next().is_some() {
            let _: Option<()> = self.conn.run("publish renewal", &publish).await;
        }
    }

    /// Deletes the hashes of replicas that left here and tells the peers; those that fail wait in the
    /// outbox for the next write-back (they are never dropped).
    async fn write_removed(&self, removed: Vec<(ServiceName, Uuid, RemovedFor)>) {
        if removed.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for (service, id, why) in &removed {
            pipe.cmd("DEL")
                .arg(keys::replica(service.as_str(), id))
                .ignore();
            Self::publish(&mut pipe, self.gw, Event::removed(service, *id, *why));
        }
        if self.conn.run::<()>("remove", &pipe).await.is_some() {
            let mut known = lock(&self.known);
            for (_, id, _) in &removed {
                known.remove(id);
            }
        } else {
            for (service, id, why) in removed {
                self.outbox.requeue_removal(service, id, why);
            }
        }
    }

    /// Writes each address's breaker entry: its state (and the message to the peers), then its counts;
    /// the totals every gateway reached may open or close the breaker here, which comes back through the
    /// outbox as a state to share.
    async fn write_addresses(&self, addresses: Vec<(ReplicaAddress, AddressWrite)>) {
        if addresses.is_empty() {
            return;
        }
        let policy = self.registry.policy();
        let open_ms = policy.breaker.open_timeout.as_millis().max(1) as u64;
        let fails_ms = self.settings.failure_window.as_millis().max(1) as u64;
        let window_ms = policy.breaker.window.as_millis().max(1) as u64;
        let probe_ms = self.probe_timeout_ms();
        let mut pipe = redis::pipe();
        let mut totals = Vec::new();
        for (i, (address, w)) in addresses.iter().enumerate() {
            let a = address.as_str();
            match w.state {
                Some(SharedState::Opened) => {
                    // A new open period: earlier probe successes and window counts no longer count.
                    pipe.cmd("DEL")
                        .arg(keys::probe_ok(a))
                        .arg(keys::window(a))
                        .ignore();
                    pipe.cmd("SET")
                        .arg(keys::open(a))
                        .arg(self.gw.to_string())
                        .arg("PX")
                        .arg(open_ms)
                        .ignore();
                    let address = a.to_owned();
                    Self::publish(&mut pipe, self.gw, Event::Opened { address, open_ms });
                }
                Some(SharedState::Closed) => {
                    pipe.cmd("DEL")
                        .arg(keys::open(a))
                        .arg(keys::fails(a))
                        .arg(keys::probe_ok(a))
                        .arg(keys::window(a))
                        .ignore();
                    let address = a.to_owned();
                    Self::publish(&mut pipe, self.gw, Event::Closed { address });
                }
                None => {}
            }
            if w.streak.cleared {
                pipe.cmd("DEL").arg(keys::fails(a)).ignore();
            }
            if w.streak.failures > 0 {
                let key = keys::fails(a);
                pipe.cmd("INCRBY").arg(&key).arg(w.streak.failures);
                pipe.cmd("PEXPIRE").arg(&key).arg(fails_ms).ignore();
                totals.push((i, Total::Failures));
            }
            let (requests, failures) = w.window;
            if requests > 0 {
                let key = keys::window(a);
                pipe.cmd("HINCRBY").arg(&key).arg("requests").arg(requests);
                pipe.cmd("HINCRBY").arg(&key).arg("failures").arg(failures);
                // The first writer starts the window; it ends for everyone when the key expires.
                pipe.cmd("PEXPIRE")
                    .arg(&key)
                    .arg(window_ms)
                    .arg("NX")
                    .ignore();
                totals.push((i, Total::Window));
            }
            if w.probe_successes > 0 {
                let key = keys::probe_ok(a);
                pipe.cmd("INCRBY").arg(&key).arg(w.probe_successes);
                pipe.cmd("PEXPIRE").arg(&key).arg(probe_ms).ignore();
                totals.push((i, Total::ProbeSuccesses));
            }
        }
        let Some(values): Option<Vec<i64>> = self.conn.run("write breakers", &pipe).await else {
            return;
        };
        let now = clock::now();
        let mut values = values.into_iter();
        let mut next = || u64::try_from(values.next().unwrap_or(0)).unwrap_or(0);
        let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        for (i, total) in totals {
            let address = &addresses[i].0;
            match total {
                Total::Failures => {
                    let total = next();
                    self.registry
                        .execute(SharedFailures { address, total }, now);
                }
                Total::Window => {
                    let (requests, failures) = (clamp(next()), clamp(next()));
                    let window = SharedWindow {
                        address,
                        requests,
                        failures,
                    };
                    self.registry.execute(window, now);
                }
                Total::ProbeSuccesses => {
                    let total = next();
                    let probes = SharedProbeSuccesses { address, total };
                    self.registry.execute(probes, now);
                }
            }
        }
        for (address, w) in &addresses {
            for _ in 0..w.probes_released {
                self.release_probe(address).await;
            }
        }
    }

    /// Gives back one of this gateway's half-open probe slots of `address`.
    async fn release_probe(&self, address: &ReplicaAddress) {
        let key = keys::probe(address.as_str());
        let gw = self.gw.to_string();
        let _: Option<i64> = self
            .conn
            .run_with("release probe", |mut c| async move {
                release_script().key(key).arg(gw).invoke_async(&mut c).await
            })
            .await;
    }
}
