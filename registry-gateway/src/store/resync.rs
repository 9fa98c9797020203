//! The resync: after every reconnect (and when the outbox overflowed or a write failed) writes this
//! gateway's replicas back, then reads every replica in Redis and makes the local registry match
//! ([`super::reconcile`] holds the rules). Runs periodically too: pub/sub loses messages while
//! disconnected.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::message::{keys, Event, StoredReplica};
use super::reconcile;
use super::redis_store::{lock, stopped, RedisStore};
use crate::clock;
use crate::registry::{PeerOpened, PeerRegistered, RemovedFor, ReplicaAddress, RetainKnown};

impl RedisStore {
    /// Resyncs every `redis.resync_interval` (every 500 ms at most while degraded), at once when asked
    /// and when Redis becomes reachable or unreachable, until `stop`.
    pub(super) async fn resync_loop(self: Arc<Self>, stop: watch::Receiver<bool>) {
        // Woken when Redis becomes unreachable (to poll it often) and when it is back (to write back).
        let wakes = Wakes {
            reachable: self.conn.watch(),
            asked: &self.resync_now,
            stop,
        };
        let store = &*self;
        paced(self.settings.resync_interval, wakes, || store.resync()).await;
    }

    /// Writes back what Redis may lack, then makes the local registry match Redis.
    pub(super) async fn resync(&self) {
        // Reach Redis first: a reconnect is counted (its epoch) before anything is written or read.
        let pinged: Option<String> = self
            .conn
            .run_with("ping", |mut c| async move {
                redis::cmd("PING").query_async(&mut c).await
            })
            .await;
        if pinged.is_none() {
            return;
        }
        let epoch = self.conn.epoch();
        let reconnected = self.written_epoch.load(Ordering::Acquire) != epoch;
        let dirty = self.dirty.swap(false, Ordering::AcqRel);
        // Whatever happened while disconnected (Redis may have restarted empty), this gateway's replicas
        // are written back before reconciling, so that reconnecting never reads as mass deregistration;
        // the removals still waiting go with them, so that what is read cannot bring them back.
        if reconnected || dirty {
            let removals = self.outbox.take_removals();
            if !self.write_back(removals).await {
                self.dirty.store(true, Ordering::Release);
                return;
            }
            self.written_epoch.store(epoch, Ordering::Release);
        }

        // What was known before the read: a replica the writer adds while it runs was written after the
        // read began, and its absence from what was read means nothing.
        let known_before = lock(&self.known).clone();
        let Some(found) = self.read_replicas().await else {
            return;
        };
        let now = clock::now();
        let plan = reconcile::plan(found);
        for (rec, left) in plan.hold {
            let peer = PeerRegistered {
                record: rec,
                lease_left: left,
            };
            self.registry.execute(peer, now);
        }
        let same_epoch = self.conn.epoch() == epoch;
        if !same_epoch {
            // Reconnected meanwhile: the next pass reconciles.
            self.resync_now.notify_one();
        }
        let retain = RetainKnown {
            keep: &plan.ids,
            known: |id| {
                reconcile::left_redis(reconcile::Sighting {
                    // asked only about replicas whose key was not read
                    in_redis: false,
                    seen_before: known_before.contains(&id),
                    same_epoch,
                })
            },
        };
        let removed = self.registry.execute(retain, now);
        if removed > 0 {
            tracing::info!(removed, "[STORE] resync removed replicas that left Redis");
        }
        if !same_epoch {
            return;
        }
        {
            let mut known = lock(&self.known);
            let written_meanwhile: Vec<_> = known.difference(&known_before).copied().collect();
            *known = plan.ids;
            known.extend(written_meanwhile);
        }
        self.registry.metrics().store_resyncs.inc();

        if let Some(open) = self.read_open_breakers().await {
            for (address, left) in open {
                let opened = PeerOpened {
                    address: &address,
                    open_for: left,
                };
                self.registry.execute(opened, now);
            }
        }
    }

    /// Writes every local registered replica with its lease left, and deletes the replicas in
    /// `removals`, in one pipeline. False when Redis did not take it (the removals wait again).
    async fn write_back(
        &self,
        removals: Vec<(crate::registry::ServiceName, uuid::Uuid, RemovedFor)>,
    ) -> bool {
        let now = clock::now();
        let mut pipe = redis::pipe();
        let records = self.registry.registered_records(now);
        for (rec, left) in &records {
            if !left.is_zero() {
                self.write_replica(&mut pipe, rec, *left);
            }
        }
        for (service, id, why) in &removals {
            pipe.cmd("DEL")
                .arg(keys::replica(service.as_str(), id))
                .ignore();
            Self::publish(&mut pipe, self.gw, Event::removed(service, *id, *why));
        }
        let written = pipe.cmd_iter().next().is_none()
            || self.conn.run::<()>("write back", &pipe).await.is_some();
        if !written {
            for (service, id, why) in removals {
                self.outbox.requeue_removal(service, id, why);
            }
            return false;
        }
        let mut known = lock(&self.known);
        known.extend(records.iter().map(|(r, _)| r.id));
        for (_, id, _) in &removals {
            known.remove(id);
        }
        if !records.is_empty() || !removals.is_empty() {
            tracing::info!(
                replicas = records.len(),
                removals = removals.len(),
                "[STORE] wrote back this gateway's replicas after reconnecting"
            );
        }
        true
    }

    async fn scan(&self, pattern: &'static str) -> Option<Vec<String>> {
        self.conn
            .run_with("scan", |mut c| async move {
                let mut out = Vec::new();
                let mut cursor: u64 = 0;
                loop {
                    let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut c)
                        .await?;
                    out.extend(batch);
                    if next == 0 {
                        return Ok(out);
                    }
                    cursor = next;
                }
            })
            .await
    }

    /// Every replica hash in Redis with its `PTTL` (what they mean is [`reconcile::plan`]'s to say).
    async fn read_replicas(&self) -> Option<Vec<(StoredReplica, i64)>> {
        let keys = self.scan(keys::REPLICA_PATTERN).await?;
        if keys.is_empty() {
            return Some(Vec::new());
        }
        let mut pipe = redis::pipe();
        for k in &keys {
            pipe.cmd("HGETALL").arg(k).cmd("PTTL").arg(k);
        }
        let values: Vec<redis::Value> = self.conn.run("read replicas", &pipe).await?;
        let mut out = Vec::new();
        for pair in values.chunks(2) {
            let [hash, ttl] = pair else { continue };
            let hash: BTreeMap<String, String> =
                redis::from_redis_value(hash.clone()).unwrap_or_default();
            let ttl: i64 = redis::from_redis_value(ttl.clone()).unwrap_or(-2);
            if let Some(r) = StoredReplica::from_fields(&hash) {
                out.push((r, ttl));
            }
        }
        Some(out)
    }

    async fn read_open_breakers(&self) -> Option<Vec<(ReplicaAddress, Duration)>> {
        let keys = self.scan("rgw:open:*").await?;
        if keys.is_empty() {
            return Some(Vec::new());
        }
        let mut pipe = redis::pipe();
        for k in &keys {
            pipe.cmd("PTTL").arg(k);
        }
        let ttls: Vec<i64> = self.conn.run("read breakers", &pipe).await?;
        Some(reconcile::open_breakers(&keys, &ttls))
    }
}

/// What ends a wait between two resyncs early.
struct Wakes<'a> {
    /// Whether Redis is reachable: each change wakes (and sets the pace).
    reachable: watch::Receiver<bool>,
    /// A resync asked for (a failed write, an overflow, a reconnect during a resync).
    asked: &'a Notify,
    /// `true` ends the loop.
    stop: watch::Receiver<bool>,
}

/// The wait before the next periodic resync: the interval, but at most 500 ms while Redis is
/// unreachable, so that recovery (and the write-back) does not wait an interval.
fn period(interval: Duration, reachable: bool) -> Duration {
    if reachable {
        interval
    } else {
        interval.min(Duration::from_millis(500))
    }
}

/// Runs `round` after each [`period`], and at once when asked or when reachability changes (a change the
/// round itself makes included), until stopped.
async fn paced<F: Future<Output = ()>>(
    interval: Duration,
    mut wakes: Wakes<'_>,
    mut round: impl FnMut() -> F,
) {
    loop {
        let wait = period(interval, *wakes.reachable.borrow());
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = wakes.asked.notified() => {}
            _ = wakes.reachable.changed() => {}
            () = stopped(&mut wakes.stop) => return,
        }
        round().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pace_is_the_interval_or_half_a_second_while_degraded() {
        let five = Duration::from_secs(5);
        assert_eq!(period(five, true), five);
        assert_eq!(period(five, false), Duration::from_millis(500));
        // A shorter interval than that is kept either way.
        let short = Duration::from_millis(200);
        assert_eq!(period(short, false), short);
    }

    #[tokio::test(start_paused = true)]
    async fn resyncs_at_the_pace_and_at_once_on_a_change_or_when_asked_on_a_paused_clock() {
        let t0 = clock::now();
        let ms = || clock::now().duration_since(t0).as_millis() as u64;
        let (reachable, watch_reachable) = watch::channel(false);
        let asked = Notify::new();
        let (stop, watch_stop) = watch::channel(false);
        let wakes = Wakes {
            reachable: watch_reachable,
            asked: &asked,
            stop: watch_stop,
        };
        let mut rounds = Vec::new();
        let resyncs = paced(Duration::from_secs(5), wakes, || {
            rounds.push(ms());
            // The second round reaches Redis.
            if rounds.len() == 2 {
                reachable.send_replace(true);
            }
            async {}
        });
        let outside = async {
            tokio::time::sleep(Duration::from_millis(12_300)).await;
            reachable.send_replace(false);
            tokio::time::sleep(Duration::from_millis(1_200)).await;
            asked.notify_one();
            tokio::time::sleep(Duration::from_millis(700)).await;
            stop.send_replace(true);
        };
        tokio::join!(resyncs, outside);
        let expected = [
            // Unreachable from the start: every 500 ms.
            500, 1_000,
            // The round at 1 s reached Redis: the change wakes another at once (the write-back pass),
            // then every 5 s.
            1_000, 6_000, 11_000, // Unreachable at 12.3 s: at once, then every 500 ms.
            12_300, 12_800, 13_300,
            // Asked at 13.5 s: at once, and the pace starts again from there; stopped at 14.2 s.
            13_500, 14_000,
        ];
        assert_eq!(rounds, expected);
    }
}
