//! The attempt loop of every HTTP request, whichever front end received it (actix's handler or the
//! front loop): pick, admit, attempt, record, classify, and ask [`crate::policy::Attempts`] what next.

use std::sync::Arc;

use uuid::Uuid;

use super::attempt::Attempt;
use super::body_source::BodySource;
use super::request_body::RequestBody;
use super::{admit, Admit, Forwarded, Proxy, ProxySettings, MAX_ATTEMPTS};
use crate::clock;
use crate::error::GatewayError;
use crate::observe::Exchange;
use crate::policy::{Attempts, ClientFault, Failure, FailureCause, Next, Outcome, Report};
use crate::registry::{AttemptRecord, Protocol, Registry, Replica, Select, Service};

/// The attempt loop of every HTTP request, whichever front end received it: pick a replica, admit the
/// attempt, run it (`attempt`), record and classify what it came to, and ask the attempt machine
/// whether to pick the next. `retryable`: the request may be sent again once it reached a replica.
pub(super) async fn attempt_loop(
    proxy: &Proxy,
    svc: &Service,
    settings: &ProxySettings,
    ex: &mut Exchange,
    source: &mut BodySource,
    retryable: bool,
    mut attempt: impl AsyncFnMut(&Arc<Replica>, RequestBody, &mut Option<AttemptRecord>) -> Attempt,
) -> Result<Forwarded, GatewayError> {
    let registry = &proxy.registry;
    svc.count_request(clock::now());
    // Attempts never exceed `retry.max_attempts` (at most 10): a fixed array, no allocation.
    // Replicas already tried, or skipped because another gateway holds their half-open probe.
    let mut tried = [Uuid::nil(); 2 * MAX_ATTEMPTS];
    let mut excluded = 0usize;
    let mut attempts = Attempts::new(settings.retry, retryable);
    // The latest attempt's answer for the client: a success, or a 5xx kept in case no retry follows.
    let mut answer: Option<Forwarded> = None;
    let next = loop {
        if attempts.made() as usize >= MAX_ATTEMPTS || excluded >= tried.len() {
            break attempts.end();
        }
        let select = Select {
            service: svc,
            tried: &tried[..excluded],
            accept: is_http,
        };
        let Some(pick) = registry.execute(select, clock::now()) else {
            break attempts.end();
        };
        tried[excluded] = pick.replica.id();
        excluded += 1;
        match admit(&pick, &mut attempts, svc, registry, &proxy.shared).await {
            Admit::Go => {}
            Admit::Skip => continue,
            Admit::Stop(next) => break next,
        }
        let Some(body) = source.take() else {
            break attempts.end();
        };
        attempts.start();
        ex.attempt(pick.replica.observe(registry.metrics()));
        let replica = Arc::clone(&pick.replica);
        let mut record = Some(AttemptRecord::new(Arc::clone(registry), pick, clock::now()));
        // A good answer's record went with its body (its outcome waits for the body's end).
        let (outcome, sent) = match attempt(&replica, body, &mut record).await {
            Attempt::Response(resp) => {
                answer = Some(Forwarded::Response(resp));
                (Outcome::Success, true)
            }
            Attempt::Switched(resp) => {
                answer = Some(Forwarded::Tunnel(resp));
                (Outcome::Success, true)
            }
            Attempt::ClientFault(fault) => {
                answer = None;
                (Outcome::ClientFault(fault), true)
            }
            Attempt::Failed(cause, back) => {
                answer = None;
                // A body given back never left: the request did not reach the replica.
                let sent = back.is_none();
                if let Some(b) = back {
                    source.put_back(b);
                }
                (Outcome::Failure(cause), sent)
            }
            Attempt::Retryable(cause, resp) => {
                answer = Some(Forwarded::Response(resp));
                (Outcome::Failure(cause), true)
            }
        };
        if outcome != Outcome::Success {
            if let Some(r) = record.as_mut() {
                r.finish(outcome);
            }
        }
        let next = attempts.after(Report {
            outcome,
            sent,
            body: source.replay(),
            replicas: svc.replicas().len(),
            has_response: answer.is_some(),
        });
        if outcome != Outcome::Success {
            tracing::debug!(service = %svc.name(), replica = %replica.address(), ?outcome, ?next, "attempt failed");
        }
        if next != Next::Pick {
            break next;
        }
    };

    match (next, answer) {
        (Next::Answer, Some(answer)) => Ok(answer),
        // The machine answers only after an attempt that brought a response.
        (next, _) => Err(http_error(next, svc, registry, attempts.made())),
    }
}

/// The gateway's own answer when no replica's answer reaches the client.
fn http_error(next: Next, svc: &Service, registry: &Registry, attempts: u32) -> GatewayError {
    let service = svc.name().to_string();
    match next {
        Next::Fail(Failure::Client(ClientFault::BodyTimeout)) => GatewayError::ClientBodyTimeout,
        Next::Fail(Failure::Client(fault)) => GatewayError::ClientBody(fault.to_string()),
        Next::Fail(Failure::NoReplica) | Next::Pick | Next::Answer => {
            let (reason, retry_after) = match registry.retry_after(svc, clock::now(), is_http) {
                None => (
                    "no replica is registered",
                    registry.policy().heartbeat_interval,
                ),
                Some(d) => ("every replica's circuit is open", d),
            };
            GatewayError::NoReplicaAvailable {
                service,
                reason,
                retry_after,
            }
        }
        Next::Fail(Failure::Stopped(FailureCause::Timeout))
        | Next::Fail(Failure::Exhausted {
            cause: FailureCause::Timeout,
            ..
        }) => GatewayError::UpstreamTimeout { service, attempts },
        Next::Fail(Failure::Stopped(cause) | Failure::Exhausted { cause, .. }) => {
            GatewayError::AllAttemptsFailed {
                service,
                attempts,
                cause,
            }
        }
    }
}

fn is_http(r: &Replica) -> bool {
    r.protocol() == Protocol::Http
}
