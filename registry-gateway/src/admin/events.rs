//! `GET /registry/events`: the registry and its changes as a Server-Sent Events stream (the dashboard's feed).
//!
//! A stream opens with a `snapshot` (the body of `GET /registry`), then sends one event per registry change
//! (`registered`, `removed`, `evicted`, `state`), a `stats` event every [`STATS_INTERVAL`] with each replica's
//! request rate and error rate over that interval (and the registry again, for what changes without an
//! event), and a keep-alive comment every [`KEEP_ALIVE_INTERVAL`].
//! A subscriber that falls behind the registry's broadcast gets a fresh `snapshot` instead of the lost
//! changes. The stream ends when the gateway shuts down ([`StreamShutdown`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

use super::auth::authorization;
use super::handlers::{registry_dto, replica_dto};
use super::AdminSettings;
use crate::clock;
use crate::error::GatewayError;
use crate::policy::{BreakerState, EvictionReason};
use crate::registry::{Registry, RegistryEvent, Replica};
use crate::store::Shared;

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

/// One Server-Sent Events message: an event name and one line of JSON.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Frame {
    /// `event:` field.
    pub(crate) event: &'static str,
    /// `data:` field: JSON, which serde writes on one line.
    pub(crate) data: String,
}

impl Frame {
    fn json(event: &'static str, value: &impl Serialize) -> Frame {
        Frame {
            event,
            data: serde_json::to_string(value).expect("the admin DTOs serialize to JSON"),
        }
    }

    /// The message on the wire.
    pub(crate) fn encode(&self) -> Bytes {
        Bytes::from(format!("event: {}\ndata: {}\n\n", self.event, self.data))
    }
}

/// The data of a change event.
#[derive(Debug, Serialize)]
struct ChangeDto<R> {
    service: String,
    /// The replica as `GET /registry` shows it.
    replica: R,
    /// Why it left (`removed`, `evicted`).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// The state the breaker moved to (`state`); the replica's `state` is read later and may be newer.
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<BreakerState>,
}

/// The replica a change is about.
pub(crate) fn replica_of(event: &RegistryEvent) -> &Arc<Replica> {
    event.replica()
}

/// Names a change for the stream: `registered`; `removed` when it deregistered or another gateway removed
/// it; `evicted` for failures or a lease that ran out, with the reason; `state` for a breaker transition.
/// `replica` is its JSON as `GET /registry` shows it. `None` for what watchers do not see
/// ([`RegistryEvent::is_watched`]).
pub(crate) fn change_frame(event: &RegistryEvent, replica: impl Serialize) -> Option<Frame> {
    let r = replica_of(event);
    let (name, reason, state) = match event {
        RegistryEvent::Added(..) => ("registered", None, None),
        RegistryEvent::Removed(_, None, _) => {
            ("removed", Some("by another gateway".to_owned()), None)
        }
        RegistryEvent::Removed(_, Some(EvictionReason::Deregistered), _) => (
            "removed",
            Some(EvictionReason::Deregistered.to_string()),
            None,
        ),
        RegistryEvent::Removed(_, Some(reason), _) => ("evicted", Some(reason.to_string()), None),
        RegistryEvent::StateChanged(_, t) => ("state", None, Some(t.to)),
        RegistryEvent::Renewed(_)
        | RegistryEvent::Attempt { .. }
        | RegistryEvent::ProbeSucceeded(_)
        | RegistryEvent::ProbeDone(_) => return None,
    };
    Some(Frame::json(
        name,
        &ChangeDto {
            service: r.service().to_string(),
            replica,
            reason,
            state,
        },
    ))
}

/// One replica's attempt counters at one moment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Counters {
    pub(crate) service: String,
    pub(crate) id: String,
    pub(crate) address: String,
    pub(crate) state: BreakerState,
    pub(crate) requests: u64,
    pub(crate) failures: u64,
}

/// Every replica's counters, read at `at`.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) at: Instant,
    pub(crate) replicas: Vec<Counters>,
}

impl Sample {
    /// Reads the counters of every replica of `registry`.
    fn read(registry: &Registry, now: Instant) -> Sample {
        let mut replicas = Vec::new();
        for svc in registry.services() {
            for r in svc.replicas().iter() {
                let v = r.view(now);
                replicas.push(Counters {
                    service: svc.name().to_string(),
                    id: v.id.to_string(),
                    address: v.address,
                    state: v.state,
                    requests: v.requests,
                    failures: v.failures,
                });
            }
        }
        Sample { at: now, replicas }
    }
}

/// The data of a `stats` event.
#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct StatsDto {
    /// Time between the two samples the rates come from.
    pub(crate) interval_ms: u64,
    pub(crate) replicas: Vec<ReplicaStats>,
}

/// One replica in a `stats` event.
#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct ReplicaStats {
    pub(crate) service: String,
    pub(crate) id: String,
    pub(crate) address: String,
    /// Breaker state now (an open breaker turns half-open by the clock, without a change event).
    pub(crate) state: BreakerState,
    /// Lifetime attempts.
    pub(crate) requests: u64,
    /// Lifetime failed attempts.
    pub(crate) failures: u64,
    /// Attempts per second over the interval; `null` for a replica the previous sample did not have.
    pub(crate) requests_per_s: Option<f64>,
    /// Failed share of the interval's attempts (0 to 1); `null` when there were none.
    pub(crate) error_rate: Option<f64>,
}

/// The data of a `stats` event: the rates, and the whole registry again. Much of what the page shows changes
/// without a change event (a heartbeat renews a lease, an open breaker turns half-open by the clock,
/// self-preservation starts holding leases): with the registry every [`STATS_INTERVAL`], none of it is
/// older than that.
#[derive(Debug, Serialize)]
struct StatsEvent<R> {
    #[serde(flatten)]
    rates: StatsDto,
    /// As `GET /registry` shows it.
    registry: R,
}

/// Rounds to 3 decimals: enough for a dashboard, and stable JSON.
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Request rate and error rate of each replica in `cur`, over the time since `prev`.
pub(crate) fn stats(prev: &Sample, cur: &Sample) -> StatsDto {
    let elapsed = cur.at.saturating_duration_since(prev.at);
    let before: HashMap<&str, &Counters> =
        prev.replicas.iter().map(|c| (c.id.as_str(), c)).collect();
    let replicas = cur
        .replicas
        .iter()
        .map(|c| {
            let delta = before.get(c.id.as_str()).and_then(|p| {
                Some((
                    c.requests.checked_sub(p.requests)?,
                    c.failures.checked_sub(p.failures)?,
                ))
            });
            let requests_per_s = delta
                .filter(|_| !elapsed.is_zero())
                .map(|(r, _)| round3(r as f64 / elapsed.as_secs_f64()));
            let error_rate = delta
                .filter(|(r, _)| *r > 0)
                .map(|(r, f)| round3(f.min(r) as f64 / r as f64));
            ReplicaStats {
                service: c.service.clone(),
                id: c.id.clone(),
                address: c.address.clone(),
                state: c.state,
                requests: c.requests,
                failures: c.failures,
                requests_per_s,
                error_rate,
            }
        })
        .collect();
    StatsDto {
        interval_ms: elapsed.as_millis() as u64,
        replicas,
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
mod tests {
    use super::*;
    use crate::admin::dto::ReplicaDto;
    use crate::registry::{
        Joined, Metadata, Protocol, Registration, ReplicaAddress, ServiceName, Source, StateReason,
        TransitionRecord,
    };

    fn registry() -> Registry {
        Registry::new(crate::Config::default().registry_policy())
    }

    fn registration(service: &str, port: u16) -> Registration {
        Registration {
            service: ServiceName::parse(service).unwrap(),
            address: ReplicaAddress::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
            protocol: Protocol::Http,
            grpc_services: Vec::new(),
            metadata: Metadata::new(),
        }
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
}
