//! HTTP proxy path: pick a replica → forward → classify the outcome → record it → ask the attempt machine
//! ([`crate::policy::Attempts`]) whether to pick the next.

mod admit;
mod attempt;
mod attempt_loop;
mod body_source;
mod forwarded;
mod front;
mod h1;
mod headers;
mod request_body;
mod response_body;
pub mod route;
mod settings;
mod upgrade;
mod upstream;
pub(crate) mod via;

pub(crate) use admit::{admit, Admit};
pub(crate) use forwarded::{append_forwarded_for, drop_untrusted_forwarding};
pub use forwarded::{Cidr, TrustedProxies};
pub use front::FrontProxy;
pub(crate) use front::FrontRequest;
pub(crate) use h1::Deadline;
pub(crate) use h1::PIPELINE_COUNTERS;
pub use settings::ProxySettings;
pub use via::{HopError, InstanceId};

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::body::{BodySize, BoxBody, EitherBody, MessageBody};
use actix_web::http::{header as ax, StatusCode};
use actix_web::web;
use actix_web::{HttpRequest, HttpResponse};

use crate::clock;
use crate::error::GatewayError;
use crate::observe::{
    access_log_on, AccessInfo, Exchange, FinalStatus, ProtocolLabel, RequestId, ServiceHandles,
    REQUEST_ID_HEADER, UNKNOWN_SERVICE,
};
use crate::policy::retry::is_idempotent;
use crate::registry::{AttemptRecord, Registry, RegistryError, Replica, Service};
use crate::store::Shared;
use attempt::{forward_h1, forward_once, upgrade_once, Attempt};
use attempt_loop::attempt_loop;
use body_source::{framing_fault, prepare_body, BodySource};
use request_body::RequestBody;
use response_body::ResponseBody;

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
    /// `Via: 2 <instance id>`, instead, for a request received over HTTP/2.
    pub via_h2: http::HeaderValue,
    /// Metric handles of requests for no known service.
    pub unknown: Arc<ServiceHandles>,
}

impl Proxy {
    /// The proxy over `registry` with `settings`.
    pub fn new(registry: Arc<Registry>, shared: Shared, settings: ProxySettings) -> Self {
        let via = http::HeaderValue::from_str(&settings.instance_id.via_entry())
            .expect("instance ids are header-safe tokens");
        let via_h2 = http::HeaderValue::from_str(&settings.instance_id.via_entry_h2())
            .expect("instance ids are header-safe tokens");
        let unknown = Arc::new(ServiceHandles::new(registry.metrics(), UNKNOWN_SERVICE));
        Proxy {
            registry,
            shared,
            settings: crate::live::Live::new(settings),
            via,
            via_h2,
            unknown,
        }
    }
}

/// What the client gets from a forwarded request.
enum Forwarded {
    /// A response from a replica.
    Response(HttpResponse<ResponseBody>),
    /// A 101, with a tunnel behind it.
    Tunnel(HttpResponse<upgrade::TunnelBody>),
}

/// The body of every answer the proxy gives: a replica's, a tunnel's, or the gateway's own error.
pub(crate) type ProxyBody = EitherBody<EitherBody<ResponseBody, upgrade::TunnelBody>, BoxBody>;

/// actix handler for `/{service}/{tail}` and `/v1/proxy/{service}/{tail}`: every answer, the replica's
/// or the gateway's own error, carries the request's `x-request-id` and is counted (and access-logged)
/// when its body ends.
pub async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    proxy: web::Data<Proxy>,
) -> impl actix_web::Responder {
    let (mut ex, settings) = begin(
        &proxy,
        req.headers().get(REQUEST_ID_HEADER).map(|v| v.as_bytes()),
        req.method().as_str(),
        req.path(),
        req.peer_addr(),
    );
    let forwarded = forward(&req, payload, &proxy, &settings, &mut ex).await;
    let mut resp = answer(forwarded, ex);
    // actix-http ends a connection whose request asked for an upgrade after its response, 101 or not:
    // an answer that switches nothing says so (`Connection: close`), so no client pipelines after it.
    if req.head().upgrade() && resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        resp.head_mut()
            .set_connection_type(actix_http::ConnectionType::Close);
    }
    resp
}

/// A request arrives: its exchange (request id, access-log fields) and the settings it keeps.
fn begin(
    proxy: &Proxy,
    client_request_id: Option<&[u8]>,
    method: &str,
    path: &str,
    client: Option<std::net::SocketAddr>,
) -> (Exchange, Arc<ProxySettings>) {
    let started = clock::now();
    let request_id = RequestId::from_client(client_request_id);
    let settings = proxy.settings.snapshot();
    let access = access_log_on(settings.access_log).then(|| AccessInfo {
        method: http::Method::from_bytes(method.as_bytes()).unwrap_or_default(),
        path: path.into(),
        client,
    });
    let ex = Exchange::new(
        started,
        ProtocolLabel::http,
        &proxy.unknown,
        request_id,
        access,
    );
    (ex, settings)
}

/// The client's response from what forwarding came to; `ex` ends with its body (at once for the
/// gateway's own error).
fn answer(forwarded: Result<Forwarded, GatewayError>, mut ex: Exchange) -> HttpResponse<ProxyBody> {
    let id =
        ax::HeaderValue::from_str(ex.request_id().as_str()).expect("request ids are visible ASCII");
    let mut resp = match forwarded {
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
    let path = req.uri().path();
    let (route, svc) = resolve(
        proxy,
        settings,
        path,
        req.headers().get_all(ax::VIA).map(|v| v.as_bytes()),
        ex,
    )?;
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
    // An upgrade is carried on a connection the gate stands in front of (every HTTP/1.1 one).
    let gate = req.conn_data::<crate::framing::GateHandle>();
    let upgrading = match upgrade::classify(req.version(), req.headers(), settings.upgrades) {
        upgrade::UpgradeDecision::Tunnel(protocols) => gate.map(|g| (protocols, g)),
        upgrade::UpgradeDecision::Refuse(protocols) => {
            return Err(GatewayError::UpgradeDisabled(protocols))
        }
        upgrade::UpgradeDecision::Plain => None,
    };
    // A handshake has no body; the client's bytes after its head go to the tunnel after the 101.
    let mut source = match upgrading {
        Some(_) => BodySource::Buffered(None),
        None => {
            // Boxed: the handler's future stays small (actix moves it into a box of its own per request).
            let bodyless = !req.headers().contains_key(ax::TRANSFER_ENCODING)
                && req
                    .headers()
                    .get(ax::CONTENT_LENGTH)
                    .is_none_or(|v| v.as_bytes().trim_ascii() == b"0");
            if bodyless {
                BodySource::Buffered(None)
            } else {
                Box::pin(prepare_body(req, payload, settings)).await?
            }
        }
    };
    // Made once: every attempt's copy shares its bytes.
    let request_id = ex.request_id().header_value();
    let proto = if settings.client_tls { "https" } else { "http" };
    let h2_client = req.version() == actix_web::http::Version::HTTP_2;
    // Built per attempt from the client's headers (the hyper paths): cheaper than keeping a copy.
    let upstream_headers = || {
        let via = if h2_client { &proxy.via_h2 } else { &proxy.via };
        let authority = req.uri().authority().map(|a| a.as_str());
        hyper_headers(
            req.headers(),
            authority,
            peer,
            trusted,
            proto,
            via,
            &request_id,
        )
    };
    // An upgrade handshake that reached a replica is never sent again, whatever its method.
    let retryable = idempotent && upgrading.is_none();
    let attempt =
        async |replica: &Arc<Replica>, body: RequestBody, record: &mut Option<AttemptRecord>| {
            // The hyper paths (upgrades, `https://` replicas, HTTP/2 clients) are boxed, off the hot
            // path's future.
            let attempt = if let Some((protocols, gate)) = &upgrading {
                Box::pin(upgrade_once(
                    replica,
                    &method,
                    &uri,
                    upstream_headers(),
                    protocols,
                    settings,
                    gate,
                    record,
                ))
                .await
            } else if replica.address().is_tls() || h2_client {
                Box::pin(forward_once(
                    replica,
                    &method,
                    &uri,
                    upstream_headers(),
                    body,
                    settings,
                    record,
                ))
                .await
            } else {
                // Plain `http://` replicas from HTTP/1 clients: the in-task client writes the head from
                // the client's header bytes.
                let head = h1::RequestHead {
                    method: method.as_str(),
                    path: &route.tail,
                    query: req.uri().query(),
                    authority: replica.address().authority(),
                    client: h1::ClientHeaders::Map(req.headers()),
                    peer,
                    trusted,
                    proto,
                    via: proxy.via.as_bytes(),
                    request_id: request_id.as_bytes(),
                    length: h1::BodyLength::Empty,
                };
                forward_h1(replica, head, body, settings, record).await
            };
            match attempt {
                Attempt::ClientFault(fault) => Attempt::ClientFault(framing_fault(req, fault)),
                other => other,
            }
        };
    attempt_loop(proxy, &svc, settings, ex, &mut source, retryable, attempt).await
}

/// The replica's request headers on the hyper paths (upgrades, `https://` replicas, HTTP/2 clients).
fn hyper_headers(
    client: &ax::HeaderMap,
    authority: Option<&str>,
    peer: Option<IpAddr>,
    trusted: bool,
    proto: &'static str,
    via: &http::HeaderValue,
    request_id: &http::HeaderValue,
) -> http::HeaderMap {
    let mut headers = headers::to_upstream(client, peer, trusted, proto);
    // HTTP/2 names the host in `:authority` (the URI), not in a `Host` header.
    if !headers.contains_key("x-forwarded-host") {
        if let Some(a) = authority {
            if let Ok(v) = http::HeaderValue::from_str(a) {
                headers.insert("x-forwarded-host", v);
            }
        }
    }
    headers.append(http::header::VIA, via.clone());
    headers.insert(REQUEST_ID_HEADER, request_id.clone());
    headers
}

/// The service a request's `path` names, after the loop check on its `Via` values; `ex` learns it.
fn resolve<'p, 'v>(
    proxy: &Proxy,
    settings: &ProxySettings,
    path: &'p str,
    mut via_values: impl Iterator<Item = &'v [u8]>,
    ex: &mut Exchange,
) -> Result<(route::Route<'p>, Arc<Service>), GatewayError> {
    if let Some(first) = via_values.next() {
        via::check(
            std::iter::once(first).chain(via_values),
            &settings.instance_id,
            settings.max_hops,
        )?;
    }
    let route = route::parse(path).map_err(|e| match e {
        route::RouteError::NoService => GatewayError::NoRoute(path.to_owned()),
        route::RouteError::Climbs => GatewayError::BadPath(path.to_owned()),
    })?;
    let registry = &proxy.registry;
    let svc = registry
        .service(route.service)
        .ok_or_else(|| RegistryError::UnknownService(route.service.to_owned()))?;
    ex.route(svc.observe(registry.metrics()));
    Ok((route, svc))
}
