//! The subscriber: applies the peers' messages from the `rgw:events` channel as they come, and
//! resubscribes (then resyncs: messages were lost meanwhile) when the subscription drops.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;

use super::message::{keys, Event, Message};
use super::redis_store::{lock, stopped, RedisStore};
use crate::clock;
use crate::registry::{
    PeerClosed, PeerOpened, PeerRegistered, PeerRemoved, PeerRenewed, ReplicaAddress,
};

impl RedisStore {
    /// Applies the peers' messages until `stop`.
    pub(super) async fn subscribe(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let subscribed = async {
                let mut ps = self.conn.client().get_async_pubsub().await?;
                ps.subscribe(keys::CHANNEL).await?;
                Ok::<_, redis::RedisError>(ps)
            };
            let timeout = self.conn.command_timeout() * 4;
            let subscribed = tokio::select! {
                s = tokio::time::timeout(timeout, subscribed) => s,
                () = stopped(&mut stop) => return,
            };
            match subscribed {
                Ok(Ok(ps)) => {
                    backoff = Duration::from_millis(100);
                    // Messages may have been missed before this subscription: resync now.
                    self.resync_now.notify_one();
                    let mut messages = ps.into_on_message();
                    loop {
                        let msg = tokio::select! {
                            m = messages.next() => m,
                            () = stopped(&mut stop) => return,
                        };
                        let Some(msg) = msg else { break };
                        let payload = msg.get_payload_bytes();
                        // Its own messages come back too: skipped unparsed.
                        if payload.starts_with(self.own_prefix.as_bytes()) {
                            continue;
                        }
                        if let Ok(payload) = std::str::from_utf8(payload) {
                            self.apply(payload);
                        }
                    }
                    self.conn.failed("pub/sub", "subscription connection lost");
                }
                Ok(Err(e)) => self.conn.failed("pub/sub", e),
                Err(_) => self.conn.failed("pub/sub", "timed out"),
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = stopped(&mut stop) => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// Applies one peer message to the registry.
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
                    let peer = PeerRegistered {
                        record: rec,
                        lease_left: Duration::from_millis(ttl_ms),
                    };
                    self.registry.execute(peer, now);
                }
            }
            Event::Renewed { service, id } => {
                let service = &service;
                if !self.registry.execute(PeerRenewed { service, id }, now) {
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
                let removed = PeerRemoved {
                    service: &service,
                    id,
                    why: Event::removed_for(failures),
                };
                self.registry.execute(removed, now);
            }
            Event::Opened { address, open_ms } => {
                if let Ok(a) = ReplicaAddress::parse(&address) {
                    let opened = PeerOpened {
                        address: &a,
                        open_for: Duration::from_millis(open_ms),
                    };
                    self.registry.execute(opened, now);
                }
            }
            Event::Closed { address } => {
                if let Ok(a) = ReplicaAddress::parse(&address) {
                    self.registry.execute(PeerClosed(&a), now);
                }
            }
        }
    }
}
