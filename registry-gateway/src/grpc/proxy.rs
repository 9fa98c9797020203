//! Transparent gRPC proxy: route by gRPC service name → pick → forward the untouched h2 stream → classify
//! `grpc-status` (headers or trailers) → record; the attempt machine ([`crate::policy::Attempts`]) says
//! whether a call that never left moves on. Each call carries an `x-request-id` both ways and is
//! counted (and access-logged) when its response ends.

use std::sync::Arc;

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use uuid::Uuid;

use super::attempt::{call_once, CallAttempt};
use super::client_body::{ClientBody, ClientBroke};
use super::observed::observe;
use super::route::{self, Target};
use super::status::{self, code};
use super::{GrpcBody, GrpcState};
use crate::clock;
use crate::observe::{
    access_log_on, AccessInfo, Exchange, FinalStatus, ProtocolLabel, RequestId, REQUEST_ID_HEADER,
};
use crate::policy::{Attempts, BodyReplay, Failure, FailureCause, Next, Report, RetryPolicy};
use crate::proxy::{admit, Admit};
use crate::registry::{AttemptRecord, Protocol, Replica, Select, Service};

/// Header that names the registry service explicitly, bypassing routing by gRPC service name.
pub const ROUTE_HEADER: &str = "x-registry-service";

/// Proxies one call. Never fails: errors are gRPC statuses.
pub(crate) async fn forward(req: Request<Incoming>, state: Arc<GrpcState>) -> Response<GrpcBody> {
    let started = clock::now();
    let request_id =
        RequestId::from_client(req.headers().get(REQUEST_ID_HEADER).map(|v| v.as_bytes()));
    let access = access_log_on(state.settings.load().access_log).then(|| AccessInfo {
        method: req.method().clone(),
        path: req.uri().path().into(),
        client: req.extensions().get::<std::net::SocketAddr>().copied(),
    });
    let mut ex = Exchange::new(
        started,
        ProtocolLabel::grpc,
        &state.unknown,
        request_id,
        access,
    );
    let mut resp = match call(req, &state, &mut ex, started).await {
        Ok((resp, record, broke)) => observe(resp, record, broke, ex),
        Err(resp) => {
            // The gateway's own trailers-only error.
            let code = status::grpc_status(resp.headers()).unwrap_or(code::UNKNOWN);
            ex.finish(FinalStatus::Grpc(code), 0);
            resp
        }
    };
    resp.headers_mut()
        .insert(REQUEST_ID_HEADER, request_id.header_value());
    resp
}

/// A replica's answer (its head, the attempt waiting for the outcome, the client's request stream).
type Answer = (Response<Incoming>, AttemptRecord, ClientBroke);

/// Routes and sends one call, moving on to the next replica while it never left; `Err` is the
/// gateway's own error response.
async fn call(
    req: Request<Incoming>,
    state: &GrpcState,
    ex: &mut Exchange,
    started: std::time::Instant,
) -> Result<Answer, Response<GrpcBody>> {
    let registry = &state.registry;
    let settings = state.settings.snapshot();
    if let Err(e) = crate::proxy::via::check(
        req.headers()
            .get_all(http::header::VIA)
            .iter()
            .map(|v| v.as_bytes()),
        &settings.instance_id,
        settings.max_hops,
    ) {
        return Err(status::error_response(
            code::FAILED_PRECONDITION,
            &e.to_string(),
        ));
    }
    let broke = ClientBroke::default();
    let mut req = req.map(|b| ClientBody::new(b, broke.clone()));
    req.headers_mut()
        .insert(REQUEST_ID_HEADER, ex.request_id().header_value());
    if let Ok(via) = HeaderValue::from_str(&settings.instance_id.via_entry_h2()) {
        req.headers_mut().append(http::header::VIA, via);
    }
    let path = req.uri().path().to_owned();
    let header = req
        .headers()
        .get(ROUTE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let target = Target::of(&path, header.as_deref());
    let accept =
        |r: &Replica| target.accepts(r.protocol() == Protocol::Grpc, |name| r.serves_grpc(name));
    let svc: Arc<Service> = match target {
        Target::Named(name) => match registry.service(name) {
            Some(s) => s,
            None => {
                return Err(status::error_response(
                    code::NOT_FOUND,
                    &format!("unknown registry service '{name}'"),
                ))
            }
        },
        Target::Serving(grpc_service) => {
            let now = clock::now();
            let serving = registry.grpc_route(grpc_service);
            let ready = |s: &Arc<Service>| {
                registry
                    .retry_after(s, now, accept)
                    .is_some_and(|d| d.is_zero())
            };
            match route::prefer(&serving, ready) {
                Some(s) => Arc::clone(s),
                None => {
                    return Err(status::error_response(
                        code::NOT_FOUND,
                        &format!("no replica serves gRPC service '{grpc_service}'"),
                    ))
                }
            }
        }
    };

    let deadline = req
        .headers()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(status::parse_timeout);
    let peer = req
        .extensions()
        .get::<std::net::SocketAddr>()
        .map(|a| a.ip());
    // Only a trusted proxy in front may say who the client is and how it came
    // (forwarded.trusted_proxies), as on the HTTP path.
    let trusted = settings.trusted_proxies.trusts(peer);
    if !trusted {
        crate::proxy::drop_untrusted_forwarding(req.headers_mut());
    }
    if let Some(ip) = peer {
        crate::proxy::append_forwarded_for(req.headers_mut(), ip, trusted);
    }

    ex.route(svc.observe(registry.metrics()));
    svc.count_request(clock::now());
    let mut tried: Vec<Uuid> = Vec::new();
    // A call is never repeated once it left (not idempotent; its request stream is consumed), so only
    // calls that never left move on.
    let policy = RetryPolicy {
        max_attempts: settings.max_attempts,
    };
    let mut attempts = Attempts::new(policy, false);
    // The request, while no replica has it.
    let mut pending = Some(req);
    let next = loop {
        let select = Select {
            service: &svc,
            tried: &tried,
            accept: &accept,
        };
        let Some(pick) = registry.execute(select, clock::now()) else {
            break attempts.end();
        };
        tried.push(pick.replica.id());
        match admit(&pick, &mut attempts, &svc, registry, &state.shared).await {
            Admit::Go => {}
            Admit::Skip => continue,
            Admit::Stop(next) => break next,
        }
        let Some(req) = pending.take() else {
            break attempts.end();
        };
        attempts.start();
        ex.attempt(pick.replica.observe(registry.metrics()));
        let replicas = svc.replicas().len();
        let (outcome, mut record, back) =
            match call_once(state, &settings, pick, req, &broke, deadline, started).await {
                // Any head is the call's answer (a call that left is never repeated); its outcome
                // waits for its status.
                CallAttempt::Answered(resp, record) => return Ok((resp, record, broke)),
                CallAttempt::Refused(resp) => return Err(resp),
                CallAttempt::Failed(outcome, record, back) => (outcome, record, back),
            };
        record.finish(outcome);
        let (sent, body) = match back {
            Some(req) => {
                pending = Some(req);
                (false, BodyReplay::Untouched)
            }
            None => (true, BodyReplay::Consumed),
        };
        match attempts.after(Report {
            outcome,
            sent,
            body,
            replicas,
            has_response: false,
        }) {
            Next::Pick => {}
            next => break next,
        }
    };
    Err(grpc_error(
        next,
        &svc.name().to_string(),
        deadline.is_some(),
    ))
}

/// The gateway's own trailers-only error when no replica answered the call.
fn grpc_error(next: Next, service: &str, deadline: bool) -> Response<GrpcBody> {
    let failure = match next {
        Next::Fail(f) => f,
        Next::Pick | Next::Answer => Failure::NoReplica,
    };
    let (c, message) = match failure {
        Failure::Client(_) => (
            code::CANCELLED,
            "the client's request stream broke".to_owned(),
        ),
        Failure::Stopped(FailureCause::Timeout) if deadline => (
            code::DEADLINE_EXCEEDED,
            "deadline exceeded waiting for the replica".to_owned(),
        ),
        Failure::Stopped(FailureCause::Timeout) => (
            code::UNAVAILABLE,
            "the replica did not answer within upstream.request_timeout".to_owned(),
        ),
        Failure::Stopped(_) => (
            code::UNAVAILABLE,
            "connection to the replica broke".to_owned(),
        ),
        Failure::Exhausted {
            cause,
            budget_refused: true,
        } => (
            code::UNAVAILABLE,
            format!("no replica of '{service}' could take the call; last: {cause}; not retried: over the retry budget"),
        ),
        Failure::Exhausted { cause, .. } => (
            code::UNAVAILABLE,
            format!("no replica of '{service}' could take the call; last: {cause}"),
        ),
        Failure::NoReplica => (
            code::UNAVAILABLE,
            format!("no replica of '{service}' can take the call (none registered, or every circuit open)"),
        ),
    };
    status::error_response(c, &message)
}
