//! Sharing the registry through Redis: writes local changes, applies peers' changes from pub/sub, and
//! resyncs in full after every reconnect and periodically (pub/sub loses messages while disconnected).
//!
//! Redis is never on the proxy path: the proxy routes from the in-process registry; these tasks run
//! beside it. While Redis is unreachable the gateway is degraded: it keeps routing on its last known
//! registry, keeps accepting registrations and heartbeats locally, and writes them back on recovery.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Display;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, Notify};
use uuid::Uuid;

use super::message::{keys, Event, Message, StoredReplica};
use super::{BoxFuture, RedisSettings, Store, StoreStatus};
use crate::clock;
use crate::registry::{Change, Registry, Removal, ReplicaAddress, ServiceName};

/// The Redis side of one gateway.
pub struct RedisStore {
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<ConnectionManager>>,
    gw: Uuid,
    /// How its own pub/sub messages begin ([`Message::prefix_of`]).
    own_prefix: String,
    registry: Arc<Registry>,
    settings: RedisSettings,
    connected: AtomicBool,
    health: Mutex<Health>,
    /// Replica ids this gateway has seen in Redis: a resync removes those that left it.
    known: Mutex<HashSet<Uuid>>,
    /// Local registrations or renewals failed to reach Redis: rewrite every local replica on recovery.
    dirty: AtomicBool,
    /// Deregistrations and evictions made while Redis was unreachable, replayed on recovery.
    pending_removals: Mutex<Vec<(String, Uuid, bool)>>,
    resync_now: Notify,
    /// Bumped at every reconnect: a resync that spans a reconnect removes nothing.
    epoch: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Health {
    degraded_since: Option<Instant>,
    last_error: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RedisStore {
    /// Connects in the background and starts replicating `registry`.
    pub(crate) fn start(
        url: &str,
        registry: Arc<Registry>,
        settings: RedisSettings,
    ) -> Result<Arc<Self>, String> {
        let client = redis::Client::open(url).map_err(|e| format!("invalid Redis URL: {e}"))?;
        let changes = registry
            .share_changes()
            .ok_or("this registry is already shared with a store")?;
        registry.metrics().register_store();
        registry.metrics().store_connected.set(0);
        let gw = Uuid::new_v4();
        let store = Arc::new(RedisStore {
            client,
            conn: tokio::sync::Mutex::new(None),
            gw,
            own_prefix: Message::prefix_of(gw),
            registry,
            settings,
            connected: AtomicBool::new(false),
            health: Mutex::new(Health {
                degraded_since: Some(clock::now()),
                last_error: Some("not connected yet".into()),
            }),
            known: Mutex::new(HashSet::new()),
            dirty: AtomicBool::new(false),
            pending_removals: Mutex::new(Vec::new()),
            resync_now: Notify::new(),
            epoch: std::sync::atomic::AtomicU64::new(0),
        });
        tokio::spawn(Arc::clone(&store).write_changes(changes));
        tokio::spawn(Arc::clone(&store).subscribe());
        tokio::spawn(Arc::clone(&store).resync_loop());
        Ok(store)
    }

    /// Whether Redis answered the last command.
    pub(crate) fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    fn current_status(&self) -> StoreStatus {
        let h = lock(&self.health);
        let connected = self.connected();
        StoreStatus {
            kind: "redis",
            connected,
            degraded_for_ms: (!connected)
                .then(|| {
                    h.degraded_since
                        .map(|t| clock::now().saturating_duration_since(t).as_millis() as u64)
                })
                .flatten(),
            last_error: (!connected).then(|| h.last_error.clone()).flatten(),
        }
    }

    fn succeeded(&self) {
        if !self.connected.swap(true, Ordering::AcqRel) {
            self.registry.metrics().store_connected.set(1);
            tracing::info!("[STORE] Redis reachable: shared state resumes (resyncing)");
            // Whatever happened meanwhile (Redis may have restarted empty), write this gateway's replicas
            // back before reconciling with Redis, so that reconnecting never reads as mass deregistration.
            self.dirty.store(true, Ordering::Release);
            self.epoch.fetch_add(1, Ordering::AcqRel);
            lock(&self.health).degraded_since = None;
            self.resync_now.notify_one();
        }
    }

    fn failed(&self, what: &str, e: impl Display) {
        let mut h = lock(&self.health);
        h.last_error = Some(format!("{what}: {e}"));
        if self.connected.swap(false, Ordering::AcqRel) {
            self.registry.metrics().store_connected.set(0);
            h.degraded_since = Some(clock::now());
            tracing::warn!(error = %e, "[STORE] Redis unreachable ({what}): degraded, routing on the last known registry");
        }
    }

    async fn conn(&self) -> redis::RedisResult<ConnectionManager> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let t = self.settings.command_timeout;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(t))
            .set_response_timeout(Some(t))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let c = self
            .client
            .get_connection_manager_with_config(config)
            .await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs one command (or pipeline) with the command timeout, tracking Redis's health.
    async fn run<T: redis::FromRedisValue>(&self, what: &str, cmd: &redis::Pipeline) -> Option<T> {
        self.run_cmd(what, |mut c| {
            let cmd = cmd.clone();
            async move { cmd.query_async::<T>(&mut c).await }
        })
        .await
    }

    async fn run_cmd<T, F, Fut>(&self, what: &str, f: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        // Opening a connection gets its own, longer budget than a command: on a loaded machine a fresh
        // connection can take longer than one command should, and recovery must not starve on it.
        let connect_budget = (self.settings.command_timeout * 4).max(Duration::from_secs(2));
        let outcome: Result<T, String> =
            match tokio::time::timeout(connect_budget, self.conn()).await {
                Err(_) => Err("connect timed out".into()),
                Ok(Err(e)) => Err(e.to_string()),
                Ok(Ok(c)) => {
                    match tokio::time::timeout(self.settings.command_timeout * 2, f(c)).await {
                        Err(_) => Err("timed out".into()),
                        Ok(Err(e)) => Err(e.to_string()),
                        Ok(Ok(v)) => Ok(v),
                    }
                }
            };
        match outcome {
            Ok(v) => {
                self.succeeded();
                Some(v)
            }
            Err(e) => {
                // Start the next command on a fresh connection rather than wait for the old one to heal.
                *self.conn.lock().await = None;
                self.failed(what, e);
                None
            }
        }
    }

    fn publish(pipe: &mut redis::Pipeline, gw: Uuid, event: Event) {
        if let Ok(json) = serde_json::to_string(&Message { gw, event }) {
            pipe.cmd("PUBLISH").arg(keys::CHANNEL).arg(json).ignore();
        }
    }

    fn write_replica(pipe: &mut redis::Pipeline, r: &StoredReplica, ttl: Duration) {
        let key = keys::replica(&r.service, &r.id);
        pipe.cmd("HSET").arg(&key).arg(r.fields()).ignore();
        pipe.cmd("PEXPIRE")
            .arg(&key)
            .arg(ttl.as_millis().max(1) as u64)
            .ignore();
    }

    /// Writes each local change to Redis and tells the peers.
    async fn write_changes(self: Arc<Self>, mut changes: mpsc::UnboundedReceiver<Change>) {
        let mut batch = Vec::new();
        let mut registered = Vec::new();
        // Renewals, like registrations, arrive in storms: a batch's go in one pipeline, one per replica.
        let mut renewed: Vec<(ServiceName, Uuid)> = Vec::new();
        // Failure-ratio windows: every attempt counts, so a batch's attempts are summed per replica and
        // written in one pipeline.
        let mut windows: HashMap<ReplicaAddress, (u32, u32)> = HashMap::new();
        while changes.recv_many(&mut batch, 512).await > 0 {
            // Registrations arrive in storms (a fleet starting, a gateway restarting): consecutive ones
            // go in one pipeline. Everything else keeps its order around them.
            for change in batch.drain(..) {
                match change {
                    Change::Registered(rec) => registered.push(rec),
                    Change::Renewed { service, id } => {
                        if !renewed.iter().any(|(_, known)| *known == id) {
                            renewed.push((service, id));
                        }
                    }
                    Change::Attempt {
                        address,
                        failed,
                        streak,
                    } => {
                        if self.registry.policy().breaker.failure_ratio.is_some() {
                            let w = windows.entry(address.clone()).or_default();
                            w.0 += 1;
                            w.1 += u32::from(failed);
                        }
                        if streak {
                            self.count_attempt(&address, failed).await;
                        }
                    }
                    other => {
                        self.write_registered(&mut registered).await;
                        self.write_renewed(&mut renewed).await;
                        self.write_one(other).await;
                    }
                }
            }
            self.write_registered(&mut registered).await;
            self.write_renewed(&mut renewed).await;
            self.write_windows(&mut windows).await;
        }
    }

    /// Renews the leases of `renewed` in one pipeline, then tells peers of those renewed in another; a
    /// replica whose key is gone (expired in Redis while this gateway still had it) is written again.
    async fn write_renewed(&self, renewed: &mut Vec<(ServiceName, Uuid)>) {
        if renewed.is_empty() {
            return;
        }
        let ttl_ms = self.registry.policy().lease_ttl.as_millis() as u64;
        let mut pipe = redis::pipe();
        for (service, id) in renewed.iter() {
            pipe.cmd("PEXPIRE")
                .arg(keys::replica(service.as_str(), id))
                .arg(ttl_ms);
        }
        let Some(results): Option<Vec<i64>> = self.run("renew", &pipe).await else {
            self.dirty.store(true, Ordering::Release);
            renewed.clear();
            return;
        };
        let mut publish = redis::pipe();
        let mut gone = Vec::new();
        for ((service, id), found) in renewed.drain(..).zip(results) {
            if found == 0 {
                let rec = self
                    .registry
                    .service(service.as_str())
                    .and_then(|s| s.by_id(&id))
                    .map(|r| r.record());
                gone.extend(rec);
            } else {
                Self::publish(
                    &mut publish,
                    self.gw,
                    Event::Renewed {
                        service: service.to_string(),
                        id,
                    },
                );
            }
        }
        self.write_registered(&mut gone).await;
        if publish.cmd_iter().next().is_some() {
            let _: Option<()> = self.run("publish renewal", &publish).await;
        }
    }

    /// Adds this batch's attempts to the shared failure-ratio windows; opens the breaker everywhere
    /// when the fleet's counts trip the ratio.
    async fn write_windows(&self, windows: &mut HashMap<ReplicaAddress, (u32, u32)>) {
        if windows.is_empty() {
            return;
        }
        let window_ms = self.registry.policy().breaker.window.as_millis().max(1) as u64;
        let addresses: Vec<(ReplicaAddress, (u32, u32))> = windows.drain().collect();
        let mut pipe = redis::pipe();
        for (address, (requests, failures)) in &addresses {
            let key = keys::window(address.as_str());
            pipe.cmd("HINCRBY").arg(&key).arg("requests").arg(*requests);
            pipe.cmd("HINCRBY").arg(&key).arg("failures").arg(*failures);
            // The first writer starts the window; it ends for everyone when the key expires.
            pipe.cmd("PEXPIRE")
                .arg(&key)
                .arg(window_ms)
                .arg("NX")
                .ignore();
        }
        let Some(totals): Option<Vec<i64>> = self.run("count window", &pipe).await else {
            return;
        };
        let now = clock::now();
        for ((address, _), pair) in addresses.iter().zip(totals.chunks(2)) {
            let [requests, failures] = pair else { continue };
            let (requests, failures) = (
                u32::try_from(*requests).unwrap_or(u32::MAX),
                u32::try_from(*failures).unwrap_or(u32::MAX),
            );
            if self
                .registry
                .apply_shared_window(address, requests, failures, now)
            {
                self.publish_opened(address, self.registry.policy().breaker.open_timeout)
                    .await;
            }
        }
    }

    async fn write_registered(&self, recs: &mut Vec<crate::registry::ReplicaRecord>) {
        if recs.is_empty() {
            return;
        }
        let ttl = self.registry.policy().lease_ttl;
        let mut pipe = redis::pipe();
        for rec in recs.iter() {
            let stored = StoredReplica::from(rec);
            Self::write_replica(&mut pipe, &stored, ttl);
            Self::publish(
                &mut pipe,
                self.gw,
                Event::Registered {
                    replica: stored,
                    ttl_ms: ttl.as_millis() as u64,
                },
            );
        }
        if self.run::<()>("register", &pipe).await.is_some() {
            lock(&self.known).extend(recs.iter().map(|r| r.id));
        } else {
            self.dirty.store(true, Ordering::Release);
        }
        recs.clear();
    }

    async fn write_one(&self, change: Change) {
        {
            let mut pipe = redis::pipe();
            match change {
                Change::Registered(rec) => self.write_registered(&mut vec![rec]).await,
                Change::Renewed { service, id } => {
                    self.write_renewed(&mut vec![(service, id)]).await
                }
                Change::Removed {
                    service, id, why, ..
                } => {
                    // Lease expiry: Redis expires the key on its own clock.
                    if why == Removal::LeaseExpired {
                        return;
                    }
                    let failures = why == Removal::Failures;
                    pipe.cmd("DEL")
                        .arg(keys::replica(service.as_str(), &id))
                        .ignore();
                    Self::publish(
                        &mut pipe,
                        self.gw,
                        Event::Removed {
                            service: service.to_string(),
                            id,
                            failures,
                        },
                    );
                    if self.run::<()>("remove", &pipe).await.is_some() {
                        lock(&self.known).remove(&id);
                    } else {
                        lock(&self.pending_removals).push((service.to_string(), id, failures));
                    }
                }
                Change::Attempt {
                    address, failed, ..
                } => self.count_attempt(&address, failed).await,
                Change::ProbeSucceeded { address } => self.count_probe_success(&address).await,
                Change::Opened { address, open_for } => {
                    self.publish_opened(&address, open_for).await;
                }
                Change::ProbeDone { address } => {
                    let _: Option<i64> = self
                        .run_cmd("release probe", |mut c| {
                            let key = keys::probe(address.as_str());
                            let gw = self.gw.to_string();
                            async move { release_script().key(key).arg(gw).invoke_async(&mut c).await }
                        })
                        .await;
                }
                Change::Closed { address } => self.publish_closed(&address).await,
            }
        }
    }

    /// Adds a failure to the count every gateway shares (or clears it after a success); opens the breaker
    /// everywhere when the shared count crosses the threshold.
    async fn count_attempt(&self, address: &ReplicaAddress, failed: bool) {
        let key = keys::fails(address.as_str());
        if !failed {
            let _: Option<()> = self
                .run_cmd("clear failures", |mut c| async move {
                    redis::cmd("DEL").arg(&key).query_async(&mut c).await
                })
                .await;
            return;
        }
        let window = self.settings.failure_window.as_millis() as u64;
        let Some(total) = self.incr_expiring("count failure", &key, window).await else {
            return;
        };
        if self
            .registry
            .apply_shared_failures(address, total, clock::now())
        {
            self.publish_opened(address, self.registry.policy().breaker.open_timeout)
                .await;
        }
    }

    /// Adds one to the counter at `key`, which expires `ms` after its last increment; its new value.
    async fn incr_expiring(&self, what: &str, key: &str, ms: u64) -> Option<u64> {
        let mut pipe = redis::pipe();
        pipe.cmd("INCR")
            .arg(key)
            .cmd("PEXPIRE")
            .arg(key)
            .arg(ms)
            .ignore();
        self.run(what, &pipe).await.map(|(total,): (u64,)| total)
    }

    /// A half-open probe's longest life, in milliseconds (probe slots and their successes expire then).
    fn probe_timeout_ms(&self) -> u64 {
        self.registry
            .policy()
            .breaker
            .probe_timeout
            .as_millis()
            .max(1) as u64
    }

    /// Counts a successful half-open probe with every gateway's; closes the breaker everywhere when
    /// they reach `breaker.half_open_probes` together.
    async fn count_probe_success(&self, address: &ReplicaAddress) {
        let key = keys::probe_ok(address.as_str());
        let Some(total) = self
            .incr_expiring("count probe success", &key, self.probe_timeout_ms())
            .await
        else {
            return;
        };
        if self
            .registry
            .apply_probe_successes(address, total, clock::now())
        {
            self.publish_closed(address).await;
        }
    }

    /// Clears the breaker state of `address` in Redis and tells the peers it closed.
    async fn publish_closed(&self, address: &ReplicaAddress) {
        let mut pipe = redis::pipe();
        pipe.cmd("DEL")
            .arg(keys::open(address.as_str()))
            .arg(keys::fails(address.as_str()))
            .arg(keys::probe_ok(address.as_str()))
            .arg(keys::window(address.as_str()))
            .ignore();
        Self::publish(
            &mut pipe,
            self.gw,
            Event::Closed {
                address: address.to_string(),
            },
        );
        let _: Option<()> = self.run("close", &pipe).await;
    }

    /// Marks the breaker of `address` open in Redis for `open_for` and tells the peers.
    async fn publish_opened(&self, address: &ReplicaAddress, open_for: Duration) {
        let open_ms = open_for.as_millis().max(1) as u64;
        let mut pipe = redis::pipe();
        // A new open period: earlier probe successes and window counts no longer count.
        pipe.cmd("DEL")
            .arg(keys::probe_ok(address.as_str()))
            .arg(keys::window(address.as_str()))
            .ignore();
        pipe.cmd("SET")
            .arg(keys::open(address.as_str()))
            .arg(self.gw.to_string())
            .arg("PX")
            .arg(open_ms)
            .ignore();
        let event = Event::Opened {
            address: address.to_string(),
            open_ms,
        };
        Self::publish(&mut pipe, self.gw, event);
        let _: Option<()> = self.run("open", &pipe).await;
    }

    /// Claims the half-open probe of `address`: free, or already ours (renewed). When Redis cannot be
    /// asked, probes locally.
    async fn claim(&self, address: &ReplicaAddress) -> bool {
        let key = keys::probe(address.as_str());
        let ms = self.probe_timeout_ms();
        let gw = self.gw.to_string();
        let slots = self.registry.policy().breaker.half_open_probes.max(1);
        let claimed: Option<i64> = self
            .run_cmd("claim probe", |mut c| async move {
                claim_script()
                    .key(key)
                    .arg(gw)
                    .arg(ms)
                    .arg(slots)
                    .invoke_async(&mut c)
                    .await
            })
            .await;
        let claimed = claimed.map(|v| (v == 1).then_some(()));
        match claimed {
            None | Some(Some(_)) => true,
            Some(None) => {
                tracing::info!(replica = %address, "[CIRCUIT] {address} HALF-OPEN probe left to a peer gateway");
                self.registry.defer_probe(address, clock::now());
                false
            }
        }
    }

    /// Applies the peers' messages as they come; reconnects (and resyncs) when the subscription drops.
    async fn subscribe(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let subscribed = async {
                let mut ps = self.client.get_async_pubsub().await?;
                ps.subscribe(keys::CHANNEL).await?;
                Ok::<_, redis::RedisError>(ps)
            };
            match tokio::time::timeout(self.settings.command_timeout * 4, subscribed).await {
                Ok(Ok(ps)) => {
                    backoff = Duration::from_millis(100);
                    // Messages may have been missed before this subscription: resync now.
                    self.resync_now.notify_one();
                    let mut messages = ps.into_on_message();
                    while let Some(msg) = messages.next().await {
                        let payload = msg.get_payload_bytes();
                        // Its own messages come back too: skipped unparsed.
                        if payload.starts_with(self.own_prefix.as_bytes()) {
                            continue;
                        }
                        if let Ok(payload) = std::str::from_utf8(payload) {
                            self.apply(payload);
                        }
                    }
                    self.failed("pub/sub", "subscription connection lost");
                }
                Ok(Err(e)) => self.failed("pub/sub", e),
                Err(_) => self.failed("pub/sub", "timed out"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    fn apply(&self, payload: &str) {
        let Ok(msg) = serde_json::from_str::<Message>(payload) else {
            tracing::debug!(%payload, "ignoring an unreadable store message");
            return;
        };
        if msg.gw == self.gw {
            return;
        }
        let now = clock::now();
        match msg.event {
            Event::Registered { replica, ttl_ms } => {
                if let Some(rec) = replica.record() {
                    lock(&self.known).insert(rec.id);
                    self.registry
                        .apply_registered(rec, Duration::from_millis(ttl_ms), now);
                }
            }
            Event::Renewed { service, id } => {
                if !self.registry.apply_renewed(&service, id, now) {
                    // Unknown here: a registration message was lost. The resync brings it.
                    self.resync_now.notify_one();
                }
            }
            Event::Removed {
                service,
                id,
                failures,
            } => {
                lock(&self.known).remove(&id);
                self.registry.apply_removed(&service, id, failures, now);
            }
            Event::Opened { address, open_ms } => {
                if let Ok(a) = ReplicaAddress::parse(&address) {
                    self.registry
                        .apply_opened(&a, Duration::from_millis(open_ms), now);
                }
            }
            Event::Closed { address } => {
                if let Ok(a) = ReplicaAddress::parse(&address) {
                    self.registry.apply_closed(&a, clock::now());
                }
            }
        }
    }

    async fn resync_loop(self: Arc<Self>) {
        loop {
            // While degraded, try again often: recovery (and the write-back) should not wait a full interval.
            let wait = if self.connected() {
                self.settings.resync_interval
            } else {
                self.settings
                    .resync_interval
                    .min(Duration::from_millis(500))
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.resync_now.notified() => {}
            }
            self.resync().await;
        }
    }

    /// Writes back what an outage kept local, then makes the local registry match Redis.
    async fn resync(&self) {
        // Reach Redis first: if this is the first success after a disconnect, the local state is marked
        // for write-back before anything is read (Redis may have come back empty).
        let pinged: Option<String> = self
            .run_cmd("ping", |mut c| async move {
                redis::cmd("PING").query_async(&mut c).await
            })
            .await;
        if pinged.is_none() {
            return;
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        if self.dirty.load(Ordering::Acquire) || !lock(&self.pending_removals).is_empty() {
            let now = clock::now();
            let mut pipe = redis::pipe();
            let records = self.registry.registered_records(now);
            for (rec, left) in &records {
                if !left.is_zero() {
                    let stored = StoredReplica::from(rec);
                    Self::write_replica(&mut pipe, &stored, *left);
                    Self::publish(
                        &mut pipe,
                        self.gw,
                        Event::Registered {
                            replica: stored,
                            ttl_ms: left.as_millis() as u64,
                        },
                    );
                }
            }
            let removals = std::mem::take(&mut *lock(&self.pending_removals));
            for (service, id, failures) in &removals {
                pipe.cmd("DEL").arg(keys::replica(service, id)).ignore();
                Self::publish(
                    &mut pipe,
                    self.gw,
                    Event::Removed {
                        service: service.clone(),
                        id: *id,
                        failures: *failures,
                    },
                );
            }
            let written = if pipe.cmd_iter().next().is_none() {
                Some(())
            } else {
                self.run::<()>("write back", &pipe).await
            };
            if written.is_some() {
                self.dirty.store(false, Ordering::Release);
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
            } else {
                lock(&self.pending_removals).extend(removals);
                return;
            }
        }

        let Some(replicas) = self.read_replicas().await else {
            return;
        };
        let now = clock::now();
        // One hash per (service, address): should two gateways have registered the same replica at the
        // same moment, every gateway keeps the same one (the smaller id).
        let mut chosen: HashMap<(String, String), (StoredReplica, u64)> = HashMap::new();
        for (r, ttl) in replicas {
            let k = (r.service.clone(), r.address.clone());
            match chosen.get(&k) {
                Some((prev, _)) if prev.id <= r.id => {}
                _ => {
                    chosen.insert(k, (r, ttl));
                }
            }
        }
        let mut keep = HashSet::new();
        for (r, ttl) in chosen.into_values() {
            if let Some(rec) = r.record() {
                keep.insert(rec.id);
                self.registry
                    .apply_registered(rec, Duration::from_millis(ttl), now);
            }
        }
        if self.epoch.load(Ordering::Acquire) != epoch {
            // Reconnected meanwhile: what was read may predate the write-back. The next pass reconciles.
            self.resync_now.notify_one();
            return;
        }
        let known = lock(&self.known).clone();
        let removed = self
            .registry
            .retain_known(&keep, |id| known.contains(&id), now);
        if removed > 0 {
            tracing::info!(removed, "[STORE] resync removed replicas that left Redis");
        }
        *lock(&self.known) = keep;
        self.registry.metrics().store_resyncs.inc();

        if let Some(open) = self.read_open_breakers().await {
            for (address, ttl) in open {
                if let Ok(a) = ReplicaAddress::parse(&address) {
                    self.registry
                        .apply_opened(&a, Duration::from_millis(ttl), now);
                }
            }
        }
    }

    async fn scan(&self, pattern: &'static str) -> Option<Vec<String>> {
        self.run_cmd("scan", |mut c| async move {
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

    async fn read_replicas(&self) -> Option<Vec<(StoredReplica, u64)>> {
        let keys = self.scan(keys::REPLICA_PATTERN).await?;
        if keys.is_empty() {
            return Some(Vec::new());
        }
        let mut pipe = redis::pipe();
        for k in &keys {
            pipe.cmd("HGETALL").arg(k).cmd("PTTL").arg(k);
        }
        let values: Vec<redis::Value> = self.run("read replicas", &pipe).await?;
        let mut out = Vec::new();
        for pair in values.chunks(2) {
            let [hash, ttl] = pair else { continue };
            let hash: BTreeMap<String, String> =
                redis::from_redis_value(hash.clone()).unwrap_or_default();
            let ttl: i64 = redis::from_redis_value(ttl.clone()).unwrap_or(-2);
            if ttl <= 0 {
                continue;
            }
            if let Some(r) = StoredReplica::from_fields(&hash) {
                out.push((r, ttl as u64));
            }
        }
        Some(out)
    }

    async fn read_open_breakers(&self) -> Option<Vec<(String, u64)>> {
        let keys = self.scan("rgw:open:*").await?;
        if keys.is_empty() {
            return Some(Vec::new());
        }
        let mut pipe = redis::pipe();
        for k in &keys {
            pipe.cmd("PTTL").arg(k);
        }
        let ttls: Vec<i64> = self.run("read breakers", &pipe).await?;
        Some(
            keys.iter()
                .zip(ttls)
                .filter(|(_, t)| *t > 0)
                .map(|(k, t)| (k.trim_start_matches("rgw:open:").to_owned(), t as u64))
                .collect(),
        )
    }
}

impl Store for RedisStore {
    fn claim_probe<'a>(&'a self, address: &'a ReplicaAddress) -> BoxFuture<'a, bool> {
        Box::pin(self.claim(address))
    }

    fn leases_expire(&self) -> bool {
        self.connected()
    }

    fn status(&self) -> StoreStatus {
        self.current_status()
    }
}

/// Takes one of the `breaker.half_open_probes` probe slots shared by every gateway: when fewer than
/// ARGV[3] are held, or when this gateway already holds one (its own breaker bounds how many it sends;
/// this lets it probe again after its local probe timeout). KEYS[1] hash gateway → slots, ARGV[1]
/// gateway id, ARGV[2] time to live in ms. Returns 1 when a slot is this gateway's afterwards.
fn claim_script() -> redis::Script {
    redis::Script::new(
        r"local held, mine = 0, 0
          local all = redis.call('HGETALL', KEYS[1])
          for i = 1, #all, 2 do
            local n = tonumber(all[i + 1]) or 0
            held = held + n
            if all[i] == ARGV[1] then mine = n end
          end
          if held < tonumber(ARGV[3]) then
            redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
            redis.call('PEXPIRE', KEYS[1], ARGV[2])
            return 1
          end
          if mine > 0 then
            redis.call('PEXPIRE', KEYS[1], ARGV[2])
            return 1
          end
          return 0",
    )
}

/// Gives back one of this gateway's probe slots (never another gateway's). KEYS[1] hash, ARGV[1]
/// gateway id. Returns the slots this gateway still holds.
fn release_script() -> redis::Script {
    redis::Script::new(
        r"local n = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
          if n <= 1 then
            redis.call('HDEL', KEYS[1], ARGV[1])
            return 0
          end
          return redis.call('HINCRBY', KEYS[1], ARGV[1], -1)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real redis-server on a free port (the test command installs redis-server).
    struct Server(std::process::Child, u16);

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn redis_server() -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test.sh installs it)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Server(child, port)
    }

    #[tokio::test]
    async fn the_probe_slots_are_shared_by_every_gateway() {
        let server = redis_server();
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/0", server.1)).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        async fn claim(
            c: &mut redis::aio::MultiplexedConnection,
            key: &str,
            gw: &str,
            slots: u32,
        ) -> i64 {
            claim_script()
                .key(key)
                .arg(gw)
                .arg(60_000)
                .arg(slots)
                .invoke_async(c)
                .await
                .unwrap()
        }
        async fn release(c: &mut redis::aio::MultiplexedConnection, key: &str, gw: &str) -> i64 {
            release_script()
                .key(key)
                .arg(gw)
                .invoke_async(c)
                .await
                .unwrap()
        }
        // One slot (the default): A claims; B is refused while A holds it; A may claim again.
        let key = "rgw:probe:http://127.0.0.1:9";
        assert_eq!(claim(&mut c, key, "A", 1).await, 1);
        assert_eq!(claim(&mut c, key, "B", 1).await, 0);
        assert_eq!(claim(&mut c, key, "A", 1).await, 1);
        // B cannot release A's slot; A can; then B gets it and A is refused.
        assert_eq!(release(&mut c, key, "B").await, 0);
        assert_eq!(claim(&mut c, key, "B", 1).await, 0);
        assert_eq!(release(&mut c, key, "A").await, 0);
        assert_eq!(claim(&mut c, key, "B", 1).await, 1);
        assert_eq!(claim(&mut c, key, "A", 1).await, 0);

        // Three slots shared, not three per gateway: A takes two, B one, C none.
        let key = "rgw:probe:http://127.0.0.1:10";
        assert_eq!(claim(&mut c, key, "A", 3).await, 1);
        assert_eq!(claim(&mut c, key, "A", 3).await, 1);
        assert_eq!(claim(&mut c, key, "B", 3).await, 1);
        assert_eq!(claim(&mut c, key, "C", 3).await, 0);
        // A gives one back (one left to it): C takes it.
        assert_eq!(release(&mut c, key, "A").await, 1);
        assert_eq!(claim(&mut c, key, "C", 3).await, 1);
        assert_eq!(claim(&mut c, key, "D", 3).await, 0);
        let held: std::collections::BTreeMap<String, i64> = redis::cmd("HGETALL")
            .arg(key)
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(held.values().sum::<i64>(), 3, "{held:?}");
    }
}
