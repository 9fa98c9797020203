//! HTTP proxy path: pick a replica → forward → classify the outcome → record it → maybe retry the next.

mod forwarded;
mod h1;
mod headers;
mod request_body;
mod response_body;
pub mod route;
mod upgrade;
mod upstream;
pub(crate) mod via;

pub use forwarded::{Cidr, TrustedProxies};
pub use via::{HopError, InstanceId};

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{BodySize, EitherBody, MessageBody};
use actix_web::http::{header as ax, StatusCode};
use actix_web::web;
use actix_web::{HttpRequest, HttpResponse};
use uuid::Uuid;

use crate::clock;
use crate::error::GatewayError;
use crate::observe::{
    access_log_on, AccessInfo, Exchange, FinalStatus, ProtocolLabel, RequestId, ServiceHandles,
    REQUEST_ID_HEADER, UNKNOWN_SERVICE,
};
use crate::policy::retry::is_idempotent;
use crate::policy::{
    attribute, BodyReplay, ClientFault, FailureCause, HeadTimer, Outcome, RetryDecision,
    RetryPolicy,
};
use crate::registry::{AttemptRecord, Protocol, Registry, RegistryError, Replica};
use crate::store::Shared;
use request_body::{ReadError, RequestBody};
use response_body::ResponseBody;
use upstream::SendError;

/// Proxy settings, derived from the config.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Retry limits.
    pub retry: RetryPolicy,
    /// TCP connect timeout per attempt.
    pub connect_timeout: Duration,
    /// Time from the last request byte sent to the response head, per attempt.
    pub request_timeout: Duration,
    /// Longest wait for the next piece of a replica's response body.
    pub read_timeout: Duration,
    /// Longest time a replica may leave the request body unread.
    pub send_timeout: Duration,
    /// Longest wait for the next piece of the client's request body.
    pub body_timeout: Duration,
    /// Bodies with a `Content-Length` up to this size are buffered so they can be replayed.
    pub buffer_body_max: usize,
    /// Idle connections kept per replica and worker.
    pub max_idle_per_replica: usize,
    /// Largest request head, in bytes (431 past it).
    pub max_header_bytes: usize,
    /// Longest request target, in bytes (414 past it).
    pub max_uri_bytes: usize,
    /// This gateway's `Via` name.
    pub instance_id: InstanceId,
    /// Most `Via` entries a request may carry (508 past it).
    pub max_hops: u32,
    /// Peers whose `X-Forwarded-*` headers are kept.
    pub trusted_proxies: TrustedProxies,
    /// One access-log line per request (`log.access`); read per request.
    pub access_log: bool,
    /// Carry WebSocket upgrades (`proxy.upgrades`); off, they are answered 403.
    pub upgrades: bool,
    /// A tunnel idle this long either way is closed (`proxy.upgrade_idle_timeout`).
    pub upgrade_idle_timeout: Duration,
    /// Trust and client certificate for `https://` replicas (`upstream.tls`); new connections take it.
    pub upstream_tls: crate::tls::UpstreamTls,
    /// Clients reach the listener over TLS (`tls`): `X-Forwarded-Proto: https`.
    pub client_tls: bool,
}

impl ProxySettings {
    /// The proxy's settings from a validated config, with its `upstream.tls` files already read.
    pub fn from_config(
        config: &crate::Config,
        instance_id: InstanceId,
        upstream_tls: crate::tls::UpstreamTls,
    ) -> Result<ProxySettings, String> {
        Ok(ProxySettings {
            retry: config.retry_policy(),
            connect_timeout: config.upstream.connect_timeout,
            request_timeout: config.upstream.request_timeout,
            read_timeout: config.upstream.read_timeout,
            send_timeout: config.upstream.send_timeout,
            body_timeout: config.client.body_timeout,
            buffer_body_max: config.retry.buffer_body_max,
            max_idle_per_replica: config.upstream.max_idle_per_replica,
            max_header_bytes: config.limits.max_header_bytes,
            max_uri_bytes: config.limits.max_uri_bytes,
            instance_id,
            max_hops: config.proxy.max_hops,
            trusted_proxies: TrustedProxies::parse(&config.forwarded.trusted_proxies)?,
            access_log: config.log.access,
            upgrades: config.proxy.upgrades,
            upgrade_idle_timeout: config.proxy.upgrade_idle_timeout,
            upstream_tls,
            client_tls: config.tls.enabled(),
        })
    }
}

/// Upper bound of `retry.max_attempts` (validated in the config).
pub const MAX_ATTEMPTS: usize = 10;

/// Shared state the proxy handler needs.
pub struct Proxy {
    /// The registry to route from.
    pub registry: Arc<Registry>,
    /// The shared store (claims half-open probes across gateways).
    pub shared: Shared,
    /// Settings; a config reload replaces them, a request keeps the snapshot it started with.
    pub settings: crate::live::Live<ProxySettings>,
    /// `Via: 1.1 <instance id>`, added to every proxied request.
    pub via: http::HeaderValue,
    /// Metric handles of requests for no known service.
    pub unknown: Arc<ServiceHandles>,
}

impl Proxy {
    /// The proxy over `registry` with `settings`.
    pub fn new(registry: Arc<Registry>, shared: Shared, settings: ProxySettings) -> Self {
        let via = http::HeaderValue::from_str(&settings.instance_id.via_entry())
            .expect("instance ids are header-safe tokens");
        let unknown = Arc::new(ServiceHandles::new(registry.metrics(), UNKNOWN_SERVICE));
        Proxy {
            registry,
            shared,
            settings: crate::live::Live::new(settings),
            via,
            unknown,
        }
    }
}

/// What one attempt came to.
enum Attempt {
    /// A response the client gets as it is (success or client error); its outcome is recorded when its
    /// body ends.
    Response(HttpResponse<ResponseBody>),
    /// No response; the body comes back when it was not consumed.
    Failed(FailureCause, Option<RequestBody>),
    /// A 5xx response: a replica failure, retried when safe, else passed to the client as it is.
    Retryable(FailureCause, HttpResponse<ResponseBody>),
    /// The client broke its own upload: the request ends here and the replica is not charged.
    ClientFault(ClientFault),
    /// The replica switched protocols: the tunnel runs behind this response.
    Switched(HttpResponse<upgrade::TunnelBody>),
}

/// What the client gets from a forwarded request.
enum Forwarded {
    /// A response from a replica.
    Response(HttpResponse<ResponseBody>),
    /// A 101, with a tunnel behind it.
    Tunnel(HttpResponse<upgrade::TunnelBody>),
}

/// Where each attempt's request body comes from.
enum BodySource {
    /// Empty or buffered: every attempt gets a cheap copy.
    Buffered(Option<web::Bytes>),
    /// The client's stream: one attempt takes it, and gets it back only if it never read from it.
    Stream(Option<RequestBody>),
}

impl BodySource {
    fn take(&mut self) -> Option<RequestBody> {
        match self {
            BodySource::Buffered(b) => Some(RequestBody::Full(b.clone())),
            BodySource::Stream(s) => s.take(),
        }
    }

    fn put_back(&mut self, body: RequestBody) {
        if let BodySource::Stream(slot) = self {
            if !body.is_touched() {
                *slot = Some(body);
            }
        }
    }

    fn replay(&self) -> BodyReplay {
        match self {
            BodySource::Buffered(_) => BodyReplay::Replayable,
            BodySource::Stream(Some(_)) => BodyReplay::Untouched,
            BodySource::Stream(None) => BodyReplay::Consumed,
        }
    }
}

/// actix handler for `/{service}/{tail}` and `/v1/proxy/{service}/{tail}`: every answer, the replica's
/// or the gateway's own error, carries the request's `x-request-id` and is counted (and access-logged)
/// when its body ends.
pub async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    proxy: web::Data<Proxy>,
) -> impl actix_web::Responder {
    let started = clock::now();
    let request_id =
        RequestId::from_client(req.headers().get(REQUEST_ID_HEADER).map(|v| v.as_bytes()));
    let settings = proxy.settings.snapshot();
    let access = access_log_on(settings.access_log).then(|| AccessInfo {
        method: http::Method::from_bytes(req.method().as_str().as_bytes()).unwrap_or_default(),
        path: req.path().into(),
        client: req.peer_addr(),
    });
    let mut ex = Exchange::new(
        started,
        ProtocolLabel::http,
        &proxy.unknown,
        request_id,
        access,
    );
    let id = ax::HeaderValue::from_str(request_id.as_str()).expect("request ids are visible ASCII");
    let mut resp = match forward(&req, payload, &proxy, &settings, &mut ex).await {
        Ok(Forwarded::Response(resp)) => {
            resp.map_body(|_, body| EitherBody::left(EitherBody::left(body.observed(ex))))
        }
        Ok(Forwarded::Tunnel(resp)) => {
            resp.map_body(|_, body| EitherBody::left(EitherBody::right(body.observed(ex))))
        }
        Err(e) => {
            let resp = actix_web::ResponseError::error_response(&e);
            let bytes = match resp.body().size() {
                BodySize::Sized(n) => n,
                _ => 0,
            };
            ex.finish(FinalStatus::Http(resp.status().as_u16()), bytes);
            resp.map_body(|_, body| EitherBody::right(body))
        }
    };
    resp.headers_mut()
        .insert(ax::HeaderName::from_static(REQUEST_ID_HEADER), id);
    // actix-http ends a connection whose request asked for an upgrade after its response, 101 or not:
    // an answer that switches nothing says so (`Connection: close`), so no client pipelines after it.
    if req.head().upgrade() && resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        resp.head_mut()
            .set_connection_type(actix_http::ConnectionType::Close);
    }
    resp
}

/// Routes and forwards one request, with retries; `ex` learns its service and attempts.
async fn forward(
    req: &HttpRequest,
    payload: web::Payload,
    proxy: &Proxy,
    settings: &ProxySettings,
    ex: &mut Exchange,
) -> Result<Forwarded, GatewayError> {
    if req.headers().contains_key(ax::VIA) {
        via::check(
            req.headers().get_all(ax::VIA).map(|v| v.as_bytes()),
            &settings.instance_id,
            settings.max_hops,
        )?;
    }
    let path = req.uri().path();
    let route = route::parse(path).map_err(|e| match e {
        route::RouteError::NoService => GatewayError::NoRoute(path.to_owned()),
        route::RouteError::Climbs => GatewayError::BadPath(path.to_owned()),
    })?;
    let registry = &proxy.registry;
    let svc = registry
        .service(route.service)
        .ok_or_else(|| RegistryError::UnknownService(route.service.to_owned()))?;
    ex.route(svc.observe(registry.metrics()));

    let uri: http::Uri = match req.uri().query() {
        Some(q) => format!("{}?{q}", route.tail).parse(),
        None => route.tail.as_ref().parse(),
    }
    .map_err(|_| GatewayError::NoRoute(path.to_owned()))?;
    let method = http::Method::from_bytes(req.method().as_str().as_bytes())
        .map_err(|_| GatewayError::NoRoute(path.to_owned()))?;
    let idempotent = is_idempotent(method.as_str());
    let peer: Option<IpAddr> = req.peer_addr().map(|a| a.ip());
    let trusted = settings.trusted_proxies.trusts(peer);
    let upgrading = match upgrade::classify(req.version(), req.headers(), settings.upgrades) {
        upgrade::UpgradeDecision::Plain => false,
        upgrade::UpgradeDecision::Tunnel => true,
        upgrade::UpgradeDecision::Refuse => {
            return Err(GatewayError::UpgradeDisabled("websocket".into()))
        }
    };
    // A tunnel's client bytes (everything after the head) wait for the 101; its handshake has no body.
    let (mut source, mut tunnel_payload) = if upgrading {
        (BodySource::Buffered(None), Some(payload))
    } else {
        // Boxed: the handler's future stays small (actix moves it into a box of its own per request).
        let bodyless = !req.headers().contains_key(ax::TRANSFER_ENCODING)
            && req
                .headers()
                .get(ax::CONTENT_LENGTH)
                .is_none_or(|v| v.as_bytes().trim_ascii() == b"0");
        if bodyless {
            (BodySource::Buffered(None), None)
        } else {
            (Box::pin(prepare_body(req, payload, settings)).await?, None)
        }
    };
    // Made once: every attempt's copy shares its bytes.
    let request_id = ex.request_id().header_value();
    svc.count_request(clock::now());

    // Attempts never exceed `retry.max_attempts` (at most 10): a fixed array, no allocation.
    // Replicas already tried, or skipped because another gateway holds their half-open probe.
    let mut tried = [Uuid::nil(); 2 * MAX_ATTEMPTS];
    let (mut attempts, mut excluded) = (0usize, 0usize);
    let mut last: Option<(FailureCause, Option<HttpResponse<ResponseBody>>)> = None;
    while attempts < MAX_ATTEMPTS && excluded < tried.len() {
        let Some(pick) = registry.pick(&svc, &tried[..excluded], clock::now(), is_http) else {
            break;
        };
        tried[excluded] = pick.replica.id();
        excluded += 1;
        if pick.probe && !proxy.shared.claim_probe(pick.replica.address()).await {
            continue;
        }
        // The budget is asked when a retry is about to go out, so that one with no replica left to try
        // costs nothing. Refused: the failed attempt's answer (`last`) goes to the client.
        if attempts > 0 && !svc.allow_retry(clock::now()) {
            registry.abandon(&pick);
            break;
        }
        let Some(body) = source.take() else { break };
        attempts += 1;
        let proto = if settings.client_tls { "https" } else { "http" };
        ex.attempt(pick.replica.observe(registry.metrics()));
        let replica = Arc::clone(&pick.replica);
        let mut record = Some(AttemptRecord::new(Arc::clone(registry), pick, clock::now()));
        // Built per attempt from the client's headers (hyper's paths): cheaper than keeping a copy to clone.
        let upstream_headers = || {
            let mut headers = headers::to_upstream(req.headers(), peer, trusted, proto);
            headers.append(http::header::VIA, proxy.via.clone());
            headers.insert(REQUEST_ID_HEADER, request_id.clone());
            headers
        };
        // The hyper paths (upgrades, `https://` replicas) are boxed, off the hot path's future.
        let attempt = if upgrading {
            Box::pin(upgrade_once(
                &replica,
                &method,
                &uri,
                upstream_headers(),
                settings,
                &mut tunnel_payload,
                &mut record,
            ))
            .await
        } else if replica.address().is_tls() {
            Box::pin(forward_once(
                &replica,
                &method,
                &uri,
                upstream_headers(),
                body,
                settings,
                &mut record,
            ))
            .await
        } else {
            // Plain `http://` replicas: the in-task client writes the head from the client's header bytes.
            let head = h1::RequestHead {
                method: method.as_str(),
                path: &route.tail,
                query: req.uri().query(),
                authority: replica.address().authority(),
                client: req.headers(),
                peer,
                trusted,
                proto,
                via: proxy.via.as_bytes(),
                request_id: request_id.as_bytes(),
                length: h1::BodyLength::Empty,
            };
            forward_h1(&replica, head, body, settings, &mut record).await
        };
        let (cause, response) = match attempt {
            Attempt::Response(resp) => return Ok(Forwarded::Response(resp)),
            Attempt::Switched(resp) => return Ok(Forwarded::Tunnel(resp)),
            Attempt::ClientFault(fault) => {
                let fault = framing_fault(req, fault);
                if let Some(r) = record.as_mut() {
                    r.finish(Outcome::ClientFault(fault));
                }
                tracing::debug!(service = %svc.name(), replica = %replica.address(), %fault, "client ended the attempt");
                return Err(match fault {
                    ClientFault::BodyTimeout => GatewayError::ClientBodyTimeout,
                    other => GatewayError::ClientBody(other.to_string()),
                });
            }
            Attempt::Failed(cause, back) => {
                if let Some(b) = back {
                    source.put_back(b);
                }
                (cause, None)
            }
            Attempt::Retryable(cause, resp) => (cause, Some(resp)),
        };
        if let Some(r) = record.as_mut() {
            r.finish(Outcome::Failure(cause));
        }
        let replicas = svc.replicas().len().max(attempts);
        let decision = match settings.retry.after_failure(
            attempts as u32,
            replicas,
            cause,
            idempotent,
            source.replay(),
        ) {
            // A handshake that reached a replica is never sent again.
            RetryDecision::Retry if upgrading && !upgrade::may_move_on(cause) => {
                RetryDecision::Unsafe
            }
            d => d,
        };
        tracing::debug!(service = %svc.name(), replica = %replica.address(), %cause, ?decision, "attempt failed");
        last = Some((cause, response));
        if decision != RetryDecision::Retry {
            break;
        }
    }

    let attempts = attempts as u32;
    let service = svc.name().to_string();
    match last {
        // A 5xx that was not retried (or was the last try) reaches the client as the replica sent it.
        Some((_, Some(resp))) => Ok(Forwarded::Response(resp)),
        Some((FailureCause::Timeout, None)) => {
            Err(GatewayError::UpstreamTimeout { service, attempts })
        }
        Some((cause, None)) => Err(GatewayError::AllAttemptsFailed {
            service,
            attempts,
            cause,
        }),
        None => {
            let (reason, retry_after) = match registry.retry_after(&svc, clock::now(), is_http) {
                None => (
                    "no replica is registered",
                    registry.policy().heartbeat_interval,
                ),
                Some(d) => ("every replica's circuit is open", d),
            };
            Err(GatewayError::NoReplicaAvailable {
                service,
                reason,
                retry_after,
            })
        }
    }
}

/// A body cut short because the connection's gate found its chunked framing malformed is a malformed
/// body, not an aborted one.
fn framing_fault(req: &HttpRequest, fault: ClientFault) -> ClientFault {
    match req.conn_data::<crate::framing::GateHandle>() {
        Some(g) if fault == ClientFault::Aborted && g.malformed() => ClientFault::MalformedBody,
        _ => fault,
    }
}

fn is_http(r: &Replica) -> bool {
    r.protocol() == Protocol::Http
}

/// Buffers small bodies with a known length (so they can be replayed) as their bytes arrive, and
/// streams the rest.
async fn prepare_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    settings: &ProxySettings,
) -> Result<BodySource, GatewayError> {
    let chunked = req.headers().contains_key(ax::TRANSFER_ENCODING);
    let length: Option<u64> = req
        .headers()
        .get(ax::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    match (length, chunked) {
        (Some(0) | None, false) => Ok(BodySource::Buffered(None)),
        (Some(n), false) if n <= settings.buffer_body_max as u64 => {
            match request_body::read_to_end(&mut payload, n as usize, settings.body_timeout).await {
                Ok(body) => Ok(BodySource::Buffered(body)),
                Err(ReadError::Client(ClientFault::BodyTimeout)) => {
                    Err(GatewayError::ClientBodyTimeout)
                }
                Err(ReadError::Client(fault)) => Err(GatewayError::ClientBody(
                    framing_fault(req, fault).to_string(),
                )),
                // actix frames the body by its Content-Length: more cannot arrive.
                Err(ReadError::TooLarge) => Err(GatewayError::ClientBody(
                    "more bytes than the announced Content-Length".into(),
                )),
            }
        }
        _ => Ok(BodySource::Stream(Some(RequestBody::stream(
            payload,
            if chunked { None } else { length },
            settings.body_timeout,
        )))),
    }
}

/// One attempt against one replica.
async fn forward_once(
    replica: &Replica,
    method: &http::Method,
    uri: &http::Uri,
    headers: http::HeaderMap,
    body: RequestBody,
    settings: &ProxySettings,
    record: &mut Option<AttemptRecord>,
) -> Attempt {
    let address = replica.address();
    let authority = address.authority();
    let tls = &settings.upstream_tls;
    let mut conn = match upstream::checkout(address, tls, settings.connect_timeout).await {
        Ok(c) => c,
        Err(cause) => return Attempt::Failed(cause, Some(body)),
    };
    let upload = body.upload();
    let mut req = hyper::Request::new(body);
    *req.method_mut() = method.clone();
    *req.uri_mut() = uri.clone();
    *req.headers_mut() = headers;
    headers::set_host(req.headers_mut(), authority);
    let timer = HeadTimer {
        head_timeout: settings.request_timeout,
        send_timeout: settings.send_timeout,
    };

    let mut result = conn.send(req, timer, upload.as_deref()).await;
    // A pooled keep-alive connection the replica just closed is not the replica's fault: the request
    // came back unsent, so send it once more on a fresh connection.
    if conn.reused {
        if let Err(SendError::NotSent(req)) = result {
            conn = match upstream::connect(address, tls, settings.connect_timeout).await {
                Ok(c) => c,
                Err(cause) => return Attempt::Failed(cause, Some(req.into_body())),
            };
            result = conn.send(*req, timer, upload.as_deref()).await;
        }
    }
    let resp = match result {
        Ok(resp) => resp,
        Err(SendError::NotSent(req)) => {
            return Attempt::Failed(FailureCause::Transport, Some(req.into_body()))
        }
        Err(SendError::Failed(cause)) => {
            // Whose fault: a client that broke its own upload made the exchange fail.
            return match attribute(upload.and_then(|u| u.client_fault()), cause) {
                Outcome::ClientFault(fault) => Attempt::ClientFault(fault),
                _ => Attempt::Failed(cause, None),
            };
        }
    };
    let status = resp.status().as_u16();
    // A switch of protocols nobody asked for (the upgrade headers were stripped) cannot be carried.
    if status == 101 {
        return Attempt::Failed(FailureCause::Transport, None);
    }
    match Outcome::from_http_status(status) {
        Outcome::Failure(cause) => Attempt::Retryable(
            cause,
            to_client_response(resp, method, Some(conn), settings, None),
        ),
        // The outcome of a good head waits for the end of its body; its latency is taken now.
        _ => {
            if let Some(r) = record.as_mut() {
                r.head_arrived(upload.as_deref().and_then(request_body::Upload::sent_at));
            }
            Attempt::Response(to_client_response(
                resp,
                method,
                Some(conn),
                settings,
                record.take(),
            ))
        }
    }
}

/// One attempt against a plain `http://` replica, on the in-task HTTP/1.1 client ([`h1`]).
async fn forward_h1(
    replica: &Replica,
    head: h1::RequestHead<'_>,
    body: RequestBody,
    settings: &ProxySettings,
    record: &mut Option<AttemptRecord>,
) -> Attempt {
    let upload = body.upload();
    let head_request = head.method == "HEAD";
    let timer = HeadTimer {
        head_timeout: settings.request_timeout,
        send_timeout: settings.send_timeout,
    };
    let exchanged = h1::exchange(
        replica.address(),
        head,
        body,
        timer,
        settings.connect_timeout,
        settings.max_idle_per_replica,
    )
    .await;
    let (head, wire) = match exchanged {
        h1::Exchanged::Answered(head, wire) => (head, wire),
        h1::Exchanged::Failed(cause, back) => return Attempt::Failed(cause, back),
        h1::Exchanged::Client(fault) => return Attempt::ClientFault(fault),
    };
    // A switch of protocols nobody asked for (the upgrade headers were stripped) cannot be carried.
    if head.status == 101 {
        return Attempt::Failed(FailureCause::Transport, None);
    }
    match Outcome::from_http_status(head.status) {
        Outcome::Failure(cause) => {
            Attempt::Retryable(cause, h1_response(head, wire, head_request, settings, None))
        }
        // The outcome of a good head waits for the end of its body; its latency is taken now.
        _ => {
            if let Some(r) = record.as_mut() {
                r.head_arrived(upload.as_deref().and_then(request_body::Upload::sent_at));
            }
            Attempt::Response(h1_response(
                head,
                wire,
                head_request,
                settings,
                record.take(),
            ))
        }
    }
}

/// The client's response from an [`h1`] head and body; a body already read in full is handed over whole
/// (its connection is back in the pool before the client gets the head).
fn h1_response(
    head: h1::ResponseHead,
    wire: h1::WireBody,
    head_request: bool,
    settings: &ProxySettings,
    record: Option<AttemptRecord>,
) -> HttpResponse<ResponseBody> {
    let status = StatusCode::from_u16(head.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let size = match head.framing {
        _ if head.status == 204 || head.status == 304 => BodySize::None,
        h1::Framing::Length(n) => BodySize::Sized(n),
        h1::Framing::None if head_request => {
            head.content_length.map_or(BodySize::None, BodySize::Sized)
        }
        h1::Framing::None => BodySize::None,
        h1::Framing::Chunked | h1::Framing::UntilClose => BodySize::Stream,
    };
    let mut wire = wire;
    let source = match wire.take_full() {
        Some(bytes) => response_body::Source::Full(Some(bytes)),
        None => response_body::Source::Wire(Box::new(wire)),
    };
    let body = ResponseBody::new(
        source,
        head.status,
        size,
        None,
        settings.max_idle_per_replica,
        record,
        settings.read_timeout,
    );
    let mut out = HttpResponse::with_body(status, body);
    *out.headers_mut() = head.headers;
    out
}

/// One upgrade attempt against one replica (see [`upgrade::attempt`]); an answer other than 101 is an
/// ordinary response, classified like any other.
async fn upgrade_once(
    replica: &Replica,
    method: &http::Method,
    uri: &http::Uri,
    headers: http::HeaderMap,
    settings: &ProxySettings,
    client: &mut Option<web::Payload>,
    record: &mut Option<AttemptRecord>,
) -> Attempt {
    let answer = upgrade::attempt(replica, method, uri, headers, settings, client, record).await;
    let resp = match answer {
        upgrade::UpgradeAttempt::Switched(resp) => return Attempt::Switched(*resp),
        upgrade::UpgradeAttempt::Failed(cause) => return Attempt::Failed(cause, None),
        upgrade::UpgradeAttempt::Answered(resp) => resp,
    };
    match Outcome::from_http_status(resp.status().as_u16()) {
        Outcome::Failure(cause) => Attempt::Retryable(
            cause,
            to_client_response(resp, method, None, settings, None),
        ),
        _ => {
            if let Some(r) = record.as_mut() {
                r.head_arrived(None);
            }
            Attempt::Response(to_client_response(
                resp,
                method,
                None,
                settings,
                record.take(),
            ))
        }
    }
}

fn to_client_response(
    resp: hyper::Response<hyper::body::Incoming>,
    method: &http::Method,
    conn: Option<upstream::Conn>,
    settings: &ProxySettings,
    record: Option<AttemptRecord>,
) -> HttpResponse<ResponseBody> {
    let (parts, incoming) = resp.into_parts();
    let status = StatusCode::from_u16(parts.status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let not_modified = status == StatusCode::NOT_MODIFIED;
    let size = if not_modified || status == StatusCode::NO_CONTENT {
        BodySize::None
    } else {
        match headers::content_length(&parts.headers) {
            Some(n) => BodySize::Sized(n),
            None if *method == http::Method::HEAD => BodySize::None,
            None => BodySize::Stream,
        }
    };
    let body = ResponseBody::new(
        response_body::Source::Hyper(incoming),
        status.as_u16(),
        size,
        conn,
        settings.max_idle_per_replica,
        record,
        settings.read_timeout,
    );
    let mut out = HttpResponse::with_body(status, body);
    headers::to_client(&parts.headers, not_modified, out.headers_mut());
    out
}
