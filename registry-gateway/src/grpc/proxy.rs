//! Transparent gRPC proxy: route by gRPC service name → pick → forward the untouched h2 stream → classify
//! `grpc-status` (headers or trailers) → record; the attempt machine ([`crate::policy::Attempts`]) says
//! whether a call that never left moves on. Each call carries an `x-request-id` both ways and is
//! counted (and access-logged) when its response ends.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use uuid::Uuid;

use super::client_body::{ClientBody, ClientBroke};
use super::route::{self, Target};
use super::status::{self, code};
use super::{GrpcBody, GrpcState};
use crate::clock;
use crate::observe::{
    access_log_on, grpc_from_http, AccessInfo, Exchange, FinalStatus, ProtocolLabel, RequestId,
    REQUEST_ID_HEADER,
};
use crate::policy::{
    attribute, Attempts, BodyReplay, ClientFault, Failure, FailureCause, Next, Outcome, Report,
    RetryPolicy,
};
use crate::registry::{AttemptRecord, Protocol, Replica, Service};

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
    if let Ok(via) = HeaderValue::from_str(&settings.instance_id.via_entry()) {
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
    if let Some(ip) = peer {
        // Only a trusted proxy in front may say who the client is (forwarded.trusted_proxies).
        let trusted = settings.trusted_proxies.trusts(peer);
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
        let Some(pick) = registry.pick(&svc, &tried, clock::now(), accept) else {
            break attempts.end();
        };
        tried.push(pick.replica.id());
        // Another gateway holds this replica's half-open probe: skip it.
        if pick.probe && !state.shared.claim_probe(pick.replica.address()).await {
            continue;
        }
        // Calls that never left still draw on the retry budget, as in Envoy and Finagle (whose
        // requeues share the retry budget): a connect that times out is often a replica too busy to
        // accept, and an exempt kind of retry would let a service refusing connections everywhere see
        // `max_attempts` times the connection attempts.
        if attempts.is_retry() && !svc.allow_retry(clock::now()) {
            registry.abandon(&pick);
            break attempts.refused_by_budget();
        }
        let Some(mut req) = pending.take() else {
            break attempts.end();
        };
        attempts.start();
        ex.attempt(pick.replica.observe(registry.metrics()));
        let attempt_started = clock::now();
        let address = pick.replica.address().clone();
        let authority = address.authority().to_owned();
        let replicas = svc.replicas().len();
        let mut sender = match state
            .connections
            .ready(&address, &settings.upstream_tls, settings.connect_timeout)
            .await
        {
            Ok(s) => s,
            Err(cause) => {
                let outcome = Outcome::Failure(cause);
                AttemptRecord::new(Arc::clone(registry), pick, attempt_started).finish(outcome);
                // The call never left: the untouched request may move on to the next replica.
                pending = Some(req);
                match attempts.after(Report {
                    outcome,
                    sent: false,
                    body: BodyReplay::Untouched,
                    replicas,
                    has_response: false,
                }) {
                    Next::Pick => continue,
                    next => break next,
                }
            }
        };
        let scheme = if address.is_tls() { "https" } else { "http" };
        let mut parts = Uri::builder().scheme(scheme).authority(authority.as_str());
        if let Some(pq) = req.uri().path_and_query() {
            parts = parts.path_and_query(pq.clone());
        }
        let Ok(uri) = parts.build() else {
            return Err(status::error_response(
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
                    registry.abandon(&pick);
                    return Err(status::error_response(
                        code::DEADLINE_EXCEEDED,
                        "deadline exceeded before the call was sent",
                    ));
                }
            },
            None => None,
        };
        let wait = remaining.unwrap_or(settings.request_timeout);
        let mut record = AttemptRecord::new(Arc::clone(registry), pick, attempt_started);
        let (outcome, sent) = match tokio::time::timeout(wait, sender.try_send_request(req)).await {
            Err(_) => (Outcome::Failure(FailureCause::Timeout), true),
            Ok(Ok(resp)) => {
                // Any head is the call's answer (a call that left is never repeated); its outcome
                // waits for its status. A client-streaming call's head waits for the client's last
                // message: count from there.
                record.head_arrived(broke.ended_at());
                return Ok((resp, record, broke));
            }
            Ok(Err(mut e)) => {
                let client = broke.get().then_some(ClientFault::Aborted);
                let outcome = attribute(client, FailureCause::Transport);
                if outcome.is_failure() {
                    state.connections.forget(&address);
                }
                // The connection died before the call left: the request comes back, untouched.
                // From the first byte on, the request stream belongs to the replica.
                pending = e.take_message();
                (outcome, pending.is_none())
            }
        };
        record.finish(outcome);
        let body = match pending {
            Some(_) => BodyReplay::Untouched,
            None => BodyReplay::Consumed,
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

/// Classifies the response as soon as its status is known: a non-200 HTTP status or a trailers-only
/// `grpc-status` now, otherwise the trailers at the end of the body. The call (`ex`) ends with the body.
fn observe(
    resp: Response<Incoming>,
    mut guard: AttemptRecord,
    broke: ClientBroke,
    ex: Exchange,
) -> Response<GrpcBody> {
    let (parts, body) = resp.into_parts();
    let grpc_status = status::grpc_status(&parts.headers);
    let code = match Outcome::from_grpc_head(parts.status.as_u16(), grpc_status) {
        Some(outcome) => {
            guard.finish(outcome);
            match parts.status {
                http::StatusCode::OK => grpc_status,
                s => Some(grpc_from_http(s.as_u16())),
            }
        }
        None => None,
    };
    let body = ObservedBody {
        inner: body,
        guard: code.is_none().then_some(guard),
        broke,
        code,
        sent: 0,
        exchange: Some(ex),
    };
    Response::from_parts(parts, body.boxed_unsync())
}

/// The replica's response body, passed through frame by frame; its trailers decide the outcome.
struct ObservedBody {
    inner: Incoming,
    guard: Option<AttemptRecord>,
    broke: ClientBroke,
    /// The call's final status, once known (from the head or the trailers).
    code: Option<i32>,
    /// Data bytes passed to the client.
    sent: u64,
    /// The client's call, until the body ends.
    exchange: Option<Exchange>,
}

impl ObservedBody {
    /// Records a broken stream: the client's fault when its own request stream broke first.
    fn broken(&mut self) {
        if let Some(mut g) = self.guard.take() {
            let client = self.broke.get().then_some(ClientFault::Aborted);
            g.finish(attribute(client, FailureCause::Transport));
        }
    }

    /// The call ends with `code` unless its status is already known.
    fn end(&mut self, code: i32) {
        if let Some(mut ex) = self.exchange.take() {
            ex.finish(FinalStatus::Grpc(self.code.unwrap_or(code)), self.sent);
        }
    }
}

impl Drop for ObservedBody {
    /// Dropped before its end: the client cancelled the call (or its status was known from the head).
    fn drop(&mut self) {
        self.end(code::CANCELLED);
    }
}

impl Body for ObservedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.sent += data.len() as u64;
                }
                if let Some(trailers) = frame.trailers_ref() {
                    let code = status::grpc_status(trailers);
                    let outcome = match code {
                        Some(code) => Outcome::from_grpc_status(code),
                        None => Outcome::Failure(FailureCause::Transport),
                    };
                    if let Some(mut g) = this.guard.take() {
                        g.finish(outcome);
                    }
                    // Trailers without a status: the client reads the call as INTERNAL.
                    this.code = this.code.or(code).or(Some(code::INTERNAL));
                    this.end(code::INTERNAL);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.broken();
                // The stream is reset: the client sees INTERNAL, or had cancelled it itself.
                let code = if this.broke.get() {
                    code::CANCELLED
                } else {
                    code::INTERNAL
                };
                this.end(code);
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                // A gRPC response must end with trailers carrying grpc-status.
                this.broken();
                this.end(code::INTERNAL);
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
