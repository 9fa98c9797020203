//! `GET /registry/events`: the registry and its changes as a Server-Sent Events stream (the dashboard's feed).
//!
//! A stream opens with a `snapshot` (the body of `GET /registry`), then sends one event per registry change
//! (`registered`, `removed`, `evicted`, `state`), a `stats` event every [`STATS_INTERVAL`] with each replica's
//! request rate and error rate over that interval (and the registry again, for what changes without an
//! event), and a keep-alive comment every [`KEEP_ALIVE_INTERVAL`].
//! A subscriber that falls behind the registry's broadcast gets a fresh `snapshot` instead of the lost
//! changes. The stream ends when the gateway shuts down ([`StreamShutdown`]).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

use super::auth::authorization;
use super::handlers::{registry_dto, replica_dto};
use super::AdminSettings;
use crate::clock;
use crate::error::GatewayError;
use crate::registry::{Registry, RegistryEvent};
use crate::store::Shared;

mod frames;

use frames::{change_frame, replica_of, stats, Frame, Sample, StatsEvent};

/// How often a `stats` event is sent (it also finds a client that went away, by failing to write).
pub(crate) const STATS_INTERVAL: Duration = Duration::from_secs(2);
/// How often a keep-alive comment is sent.
pub(crate) const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// How long an `EventSource` waits before reconnecting (the `retry:` field of the first message).
const RECONNECT_MS: u64 = 2000;

/// Tells open event streams that the gateway is shutting down, so that they end at once instead of
/// holding the listener's drain of in-flight requests.
#[derive(Debug, Clone)]
pub struct StreamShutdown(watch::Receiver<bool>);

impl StreamShutdown {
    /// The sender (send `true` to end every stream) and the receiving end handlers get as app data.
    pub fn channel() -> (watch::Sender<bool>, StreamShutdown) {
        let (tx, rx) = watch::channel(false);
        (tx, StreamShutdown(rx))
    }
}

/// The `access_token` query parameter (URL-decoded), for clients that cannot send headers (`EventSource`).
pub(crate) fn access_token(query: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v.into_owned())
}

/// Protected like the other registry reads; the token may also come as `?access_token=`, used only when
/// there is no `authorization` header.
fn authorize(req: &HttpRequest, settings: &AdminSettings) -> Result<(), GatewayError> {
    match (authorization(req), access_token(req.query_string())) {
        (None, Some(token)) => settings
            .tokens
            .load()
            .check_read(Some(&format!("Bearer {token}"))),
        (header, _) => settings.tokens.load().check_read(header),
    }
}

/// What an open stream watches.
struct Feed {
    registry: Arc<Registry>,
    shared: Shared,
    changes: broadcast::Receiver<RegistryEvent>,
    shutdown: watch::Receiver<bool>,
    stats: tokio::time::Interval,
    keep_alive: tokio::time::Interval,
    last: Sample,
}

/// A `tokio` interval whose first tick is one `period` from now.
fn every(period: Duration) -> tokio::time::Interval {
    let start = tokio::time::Instant::from_std(clock::now() + period);
    let mut i = tokio::time::interval_at(start, period);
    i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    i
}

impl Feed {
    fn snapshot(&self) -> Bytes {
        Frame::json("snapshot", &registry_dto(&self.registry, &self.shared)).encode()
    }

    /// The next message; `None` ends the stream (shutdown, or the registry is gone).
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(message) = self.wake().await? {
                return Some(message);
            }
        }
    }

    /// Waits for the next thing to send: `Some(None)` when the change that woke it is not for watchers.
    async fn wake(&mut self) -> Option<Option<Bytes>> {
        // The timers before the changes: they are ready once a period, so a flood of changes cannot starve
        // them, and they cannot starve the changes.
        let wake = tokio::select! {
            biased;
            () = stopped(&mut self.shutdown) => return None,
            _ = self.stats.tick() => Wake::Stats,
            _ = self.keep_alive.tick() => Wake::KeepAlive,
            change = self.changes.recv() => Wake::Change(change),
        };
        Some(Some(match wake {
            Wake::Change(Ok(event)) => {
                if !event.is_watched() {
                    return Some(None);
                }
                let replica = replica_dto(&self.registry, replica_of(&event), clock::now());
                change_frame(&event, replica)?.encode()
            }
            // Fell behind: a fresh snapshot replaces the changes that were lost.
            Wake::Change(Err(RecvError::Lagged(_))) => self.snapshot(),
            Wake::Change(Err(RecvError::Closed)) => return None,
            Wake::Stats => {
                let now = Sample::read(&self.registry, clock::now());
                let frame = Frame::json(
                    "stats",
                    &StatsEvent {
                        rates: stats(&self.last, &now),
                        registry: registry_dto(&self.registry, &self.shared),
                    },
                );
                self.last = now;
                frame.encode()
            }
            Wake::KeepAlive => Bytes::from_static(b": keep-alive\n\n"),
        }))
    }
}

/// What woke a [`Feed`] up.
enum Wake {
    Change(Result<RegistryEvent, RecvError>),
    Stats,
    KeepAlive,
}

/// Completes once the gateway shuts down (or the sender is gone with it).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

impl Drop for Feed {
    fn drop(&mut self) {
        tracing::debug!("registry event stream closed");
    }
}

/// `GET /registry/events`: `text/event-stream`, see the module documentation.
pub(crate) async fn events(
    req: HttpRequest,
    registry: web::Data<Arc<Registry>>,
    shared: web::Data<Shared>,
    settings: web::Data<AdminSettings>,
    shutdown: web::Data<StreamShutdown>,
) -> Result<HttpResponse, GatewayError> {
    authorize(&req, &settings)?;
    // Subscribe before taking the snapshot, so that no change falls between the two.
    let changes = registry.subscribe();
    let registry = Arc::clone(registry.get_ref());
    let feed = Feed {
        last: Sample::read(&registry, clock::now()),
        registry,
        shared: shared.get_ref().clone(),
        changes,
        shutdown: shutdown.0.clone(),
        stats: every(STATS_INTERVAL),
        keep_alive: every(KEEP_ALIVE_INTERVAL),
    };
    let mut first = Vec::from(format!("retry: {RECONNECT_MS}\n"));
    first.extend_from_slice(&feed.snapshot());
    let peer = req
        .peer_addr()
        .map_or_else(|| "-".to_owned(), |a| a.to_string());
    tracing::info!(%peer, "registry event stream opened");
    let first = futures_util::stream::once(async move { Ok::<_, Infallible>(Bytes::from(first)) });
    let rest = futures_util::stream::unfold(feed, |mut feed| async move {
        let message = feed.next().await?;
        Some((Ok(message), feed))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // nginx and other buffering proxies pass each event on at once.
        .insert_header(("x-accel-buffering", "no"))
        .streaming(futures_util::StreamExt::chain(first, rest)))
}

#[cfg(test)]
mod tests;
