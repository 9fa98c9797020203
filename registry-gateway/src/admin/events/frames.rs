//! What the event stream says, as Server-Sent Events messages: the change events, and the `stats` event's
//! rates from two samples of every replica's counters.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use actix_web::web::Bytes;
use serde::Serialize;

use crate::policy::{BreakerState, EvictionReason};
use crate::registry::{Registry, RegistryEvent, Replica};

/// One Server-Sent Events message: an event name and one line of JSON.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Frame {
    /// `event:` field.
    pub(crate) event: &'static str,
    /// `data:` field: JSON, which serde writes on one line.
    pub(crate) data: String,
}

impl Frame {
    pub(super) fn json(event: &'static str, value: &impl Serialize) -> Frame {
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
    pub(super) fn read(registry: &Registry, now: Instant) -> Sample {
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
/// self-preservation starts holding leases): with the registry every [`STATS_INTERVAL`](super::STATS_INTERVAL), none of it is
/// older than that.
#[derive(Debug, Serialize)]
pub(super) struct StatsEvent<R> {
    #[serde(flatten)]
    pub(super) rates: StatsDto,
    /// As `GET /registry` shows it.
    pub(super) registry: R,
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
