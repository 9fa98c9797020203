//! The background loop for one gateway: register (with backoff), heartbeat (with jitter), register again on 404.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::api::{Answer, GatewayApi, RegisterCall};
use crate::backoff::{heartbeat_delay, Backoff};
use crate::{RegistrationState, SdkError};

/// What is registered, shared by every gateway's loop.
#[derive(Debug)]
pub(crate) struct Spec {
    pub(crate) service: String,
    pub(crate) address: String,
    pub(crate) call: RegisterCall,
    pub(crate) backoff: Backoff,
    /// A random number in `[0, 1)` for each jittered wait (`fastrand::f64`; fixed in tests).
    pub(crate) jitter: fn() -> f64,
}

/// Runs until aborted (deregistration or drop) or until the gateway refuses the registration for good.
pub(crate) async fn run(api: GatewayApi, spec: Arc<Spec>, state: watch::Sender<RegistrationState>) {
    let gw = api.base().to_owned();
    loop {
        let Some(registered) = register(&api, &spec, &state).await else {
            return;
        };
        let interval = Duration::from_millis(registered.heartbeat_interval_ms.max(1));
        let id = registered.id;
        tracing::info!(gateway = %gw, service = %spec.service, %id, "registered");
        state.send_replace(RegistrationState::Registered {
            id: id.clone(),
            heartbeat_interval: interval,
            lease_ttl: Duration::from_millis(registered.lease_ttl_ms),
        });
        heartbeat_until_forgotten(&api, &spec, &id, interval).await;
        tracing::warn!(gateway = %gw, service = %spec.service, %id, "gateway no longer knows this replica: registering again");
        state.send_replace(RegistrationState::Registering {
            attempts: 0,
            last_error: Some("heartbeat answered 404".into()),
        });
    }
}

async fn register(
    api: &GatewayApi,
    spec: &Spec,
    state: &watch::Sender<RegistrationState>,
) -> Option<crate::api::Registered> {
    let mut attempts = 0u32;
    loop {
        let (error, wait) = match api.register(&spec.call).await {
            Answer::Ok(r) => return Some(r),
            Answer::Err(SdkError::Rejected {
                status: 400,
                message,
                ..
            }) => {
                tracing::error!(gateway = %api.base(), service = %spec.service, %message, "registration refused");
                state.send_replace(RegistrationState::Failed { reason: message });
                return None;
            }
            Answer::Busy(after) => ("gateway busy".to_owned(), after),
            Answer::NotFound => (
                "POST /register answered 404: is this a registry gateway?".to_owned(),
                None,
            ),
            Answer::Err(e) => (e.to_string(), None),
        };
        let wait = wait.unwrap_or_else(|| spec.backoff.delay(attempts, (spec.jitter)()));
        attempts = attempts.saturating_add(1);
        if attempts == 1 || attempts % 10 == 0 {
            tracing::warn!(gateway = %api.base(), service = %spec.service, attempts, %error, retry_in_ms = wait.as_millis() as u64, "registration failed; retrying");
        }
        state.send_replace(RegistrationState::Registering {
            attempts,
            last_error: Some(error),
        });
        tokio::time::sleep(wait).await;
    }
}

/// Heartbeats until the gateway answers 404. Failures (gateway down, busy) are retried on backoff, never
/// slower than the interval, so a restarted gateway hears from us within one interval.
async fn heartbeat_until_forgotten(api: &GatewayApi, spec: &Spec, id: &str, interval: Duration) {
    let mut failures = 0u32;
    let mut wait = heartbeat_delay(interval, (spec.jitter)());
    loop {
        tokio::time::sleep(wait).await;
        match api.heartbeat(&spec.service, id).await {
            Answer::Ok(()) => {
                if failures > 0 {
                    tracing::info!(gateway = %api.base(), service = %spec.service, "heartbeats flowing again");
                }
                failures = 0;
                wait = heartbeat_delay(interval, (spec.jitter)());
            }
            Answer::NotFound => return,
            other => {
                let (reason, after) = match other {
                    Answer::Busy(after) => ("gateway busy".to_owned(), after),
                    Answer::Err(e) => (e.to_string(), None),
                    Answer::Ok(()) | Answer::NotFound => unreachable!("handled above"),
                };
                if failures == 0 {
                    tracing::warn!(gateway = %api.base(), service = %spec.service, %reason, "heartbeat failed; retrying");
                }
                wait = after
                    .unwrap_or_else(|| spec.backoff.delay(failures, (spec.jitter)()))
                    .min(interval);
                failures = failures.saturating_add(1);
            }
        }
    }
}
