//! One gRPC attempt against one replica: the HTTP/2 side of the forward seam. It sends the call over the
//! replica's shared connection ([`super::upstream::Connections`]) and says what the attempt came to
//! ([`CallAttempt`]); the loop in [`super::proxy`] turns that into a [`crate::policy::Report`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response, Uri};
use hyper::body::Incoming;

use super::client_body::{ClientBody, ClientBroke};
use super::status::{self, code};
use super::{GrpcBody, GrpcSettings, GrpcState};
use crate::clock;
use crate::policy::{attribute, ClientFault, FailureCause, Outcome};
use crate::registry::{Abandon, AttemptRecord, Pick};

/// What one call attempt came to.
pub(super) enum CallAttempt {
    /// A response head: the call's answer, its attempt waiting for the status (head or trailers).
    Answered(Response<Incoming>, AttemptRecord),
    /// No response: the attempt's outcome, recorded by the caller, and the request when it never left.
    Failed(Outcome, AttemptRecord, Option<Request<ClientBody>>),
    /// The gateway's own answer before anything was sent (the deadline passed, a bad address).
    Refused(Response<GrpcBody>),
}

/// Sends `req` to `pick`'s replica, within what is left of the call's `deadline` (counted from
/// `started`), else within `upstream.request_timeout` to the response head.
pub(super) async fn call_once(
    state: &GrpcState,
    settings: &GrpcSettings,
    pick: Pick,
    mut req: Request<ClientBody>,
    broke: &ClientBroke,
    deadline: Option<Duration>,
    started: Instant,
) -> CallAttempt {
    let registry = &state.registry;
    let attempt_started = clock::now();
    let address = pick.replica.address().clone();
    let authority = address.authority().to_owned();
    let mut sender = match state
        .connections
        .ready(&address, &settings.upstream_tls, settings.connect_timeout)
        .await
    {
        Ok(s) => s,
        Err(cause) => {
            // The call never left: the untouched request may move on to the next replica.
            let record = AttemptRecord::new(Arc::clone(registry), pick, attempt_started);
            return CallAttempt::Failed(Outcome::Failure(cause), record, Some(req));
        }
    };
    let scheme = if address.is_tls() { "https" } else { "http" };
    let mut parts = Uri::builder().scheme(scheme).authority(authority.as_str());
    if let Some(pq) = req.uri().path_and_query() {
        parts = parts.path_and_query(pq.clone());
    }
    let Ok(uri) = parts.build() else {
        return CallAttempt::Refused(status::error_response(
            code::UNAVAILABLE,
            "bad upstream address",
        ));
    };
    *req.uri_mut() = uri;
    let remaining = match deadline {
        Some(d) => match d.checked_sub(clock::now().saturating_duration_since(started)) {
            Some(r) if !r.is_zero() => {
                req.headers_mut()
                    .insert("grpc-timeout", status::format_timeout(r));
                Some(r)
            }
            _ => {
                registry.execute(Abandon(&pick), clock::now());
                return CallAttempt::Refused(status::error_response(
                    code::DEADLINE_EXCEEDED,
                    "deadline exceeded before the call was sent",
                ));
            }
        },
        None => None,
    };
    let wait = remaining.unwrap_or(settings.request_timeout);
    let mut record = AttemptRecord::new(Arc::clone(registry), pick, attempt_started);
    match tokio::time::timeout(wait, sender.try_send_request(req)).await {
        Err(_) => CallAttempt::Failed(Outcome::Failure(FailureCause::Timeout), record, None),
        Ok(Ok(resp)) => {
            // A client-streaming call's head waits for the client's last message: count from there.
            record.head_arrived(broke.ended_at());
            CallAttempt::Answered(resp, record)
        }
        Ok(Err(mut e)) => {
            let client = broke.get().then_some(ClientFault::Aborted);
            let outcome = attribute(client, FailureCause::Transport);
            if outcome.is_failure() {
                state.connections.forget(&address);
            }
            // The connection died before the call left: the request comes back, untouched. From the
            // first byte on, the request stream belongs to the replica.
            CallAttempt::Failed(outcome, record, e.take_message())
        }
    }
}
