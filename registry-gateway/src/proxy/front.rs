//! The proxy's entry point for the connection front loop ([`crate::framing`]): a plain HTTP/1.1 request
//! with no body, parsed in place from the client's bytes, forwarded by the same attempt loop as actix's
//! handler and answered with the same response, built by the same functions.

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::http::header as ax;
use actix_web::{web, HttpResponse};

use super::attempt::{forward_h1, forward_once, Attempt};
use super::body_source::BodySource;
use super::request_body::RequestBody;
use super::{
    answer, attempt_loop, begin, h1, hyper_headers, resolve, Forwarded, Proxy, ProxyBody,
    ProxySettings,
};
use crate::error::GatewayError;
use crate::framing::scanner;
use crate::head_limits::HeadLimits;
use crate::live::Live;
use crate::observe::{Exchange, REQUEST_ID_HEADER};
use crate::policy::retry::is_idempotent;
use crate::registry::{AttemptRecord, Replica};

/// First path segments the application serves itself on the main listener (`/healthz`, `/readyz`,
/// `/metrics`, `/register`, `/registry…`, `/ui…`; see [`crate::admin::configure`]). A request under one
/// of them always goes to the application, which routes it exactly; with a separate admin listener some
/// of them are proxied there, which the application does just as well.
const APP_SEGMENTS: [&str; 6] = ["healthz", "readyz", "metrics", "register", "registry", "ui"];

/// The proxy as the front loop calls it.
#[derive(Clone)]
pub struct FrontProxy {
    proxy: web::Data<Proxy>,
    limits: Live<HeadLimits>,
}

/// A request the front loop serves: views into the client's head.
pub(crate) struct FrontRequest<'a> {
    /// The method.
    pub(crate) method: &'a str,
    /// The origin-form target (path and query).
    pub(crate) target: &'a str,
    /// The header lines, as sent.
    pub(crate) headers: &'a [httparse::Header<'a>],
    /// The client's address.
    pub(crate) peer: Option<SocketAddr>,
}

impl FrontProxy {
    /// The proxy `proxy`, for requests within the head limits `limits` (a reload replaces them).
    pub fn new(proxy: web::Data<Proxy>, limits: Live<HeadLimits>) -> Self {
        FrontProxy { proxy, limits }
    }

    /// Whether the front loop serves `req` itself: an HTTP/1.1 request for a proxied path with no body,
    /// no upgrade, no `Expect`, within the head limits. Everything else goes to actix-http and the
    /// application (which also answers what breaks a rule: 400, 414, 431…).
    pub(crate) fn takes(&self, req: &httparse::Request<'_, '_>) -> bool {
        let (Some(1), Some(method), Some(target)) = (req.version, req.method, req.path) else {
            return false;
        };
        if !origin_form(target) || app_route(target) {
            return false;
        }
        let unusual = req.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("upgrade") || h.name.eq_ignore_ascii_case("expect")
        });
        !unusual
            && scanner::bodyless(req)
            && self
                .limits
                .load()
                .check(
                    method,
                    target,
                    req.headers.iter().map(|h| (h.name, h.value)),
                )
                .is_ok()
    }

    /// Serves one request that [`FrontProxy::takes`]: the client's response, whose body ends its
    /// exchange (metrics, access log), exactly as actix's handler [`super::handle`] answers.
    pub(crate) async fn serve(&self, req: &FrontRequest<'_>) -> HttpResponse<ProxyBody> {
        let (path, _) = split_target(req.target);
        let (mut ex, settings) = begin(
            &self.proxy,
            h1::ClientHeaders::Parsed(req.headers).get(REQUEST_ID_HEADER),
            req.method,
            path,
            req.peer,
        );
        let forwarded = forward(req, &self.proxy, &settings, &mut ex).await;
        answer(forwarded, ex)
    }
}

/// The path and the query of an origin-form target.
fn split_target(target: &str) -> (&str, Option<&str>) {
    match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    }
}

/// An origin-form target of plain URI characters (RFC 3986: unreserved, sub-delims, `%`, `:`, `@`, `/`,
/// `?`): anything else goes to actix-http, whose URI parser decides.
fn origin_form(target: &str) -> bool {
    target.starts_with('/')
        && target.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.'
                        | b'_'
                        | b'~'
                        | b'%'
                        | b'!'
                        | b'$'
                        | b'&'
                        | b'\''
                        | b'('
                        | b')'
                        | b'*'
                        | b'+'
                        | b','
                        | b';'
                        | b'='
                        | b':'
                        | b'@'
                        | b'/'
                        | b'?'
                )
        })
}

/// Whether the application may route `target` to one of its own handlers. actix matches percent-decoded
/// paths, so a first segment with a `%` counts too.
fn app_route(target: &str) -> bool {
    let (path, _) = split_target(target);
    let first = path[1..].split('/').next().unwrap_or("");
    first.contains('%') || APP_SEGMENTS.contains(&first)
}

/// Routes and forwards one request, with retries, through the loop actix's handler uses.
async fn forward(
    req: &FrontRequest<'_>,
    proxy: &Proxy,
    settings: &ProxySettings,
    ex: &mut Exchange,
) -> Result<Forwarded, GatewayError> {
    let (path, query) = split_target(req.target);
    let via = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("via"))
        .map(|h| h.value);
    let (route, svc) = resolve(proxy, settings, path, via, ex)?;
    let peer = req.peer.map(|a| a.ip());
    let trusted = settings.trusted_proxies.trusts(peer);
    let proto = if settings.client_tls { "https" } else { "http" };
    let request_id = ex.request_id().header_value();
    let client = h1::ClientHeaders::Parsed(req.headers);
    let attempt =
        async |replica: &Arc<Replica>, body: RequestBody, record: &mut Option<AttemptRecord>| {
            if replica.address().is_tls() {
                // `https://` replicas: hyper's client, with the header map actix's handler builds.
                let Ok(method) = http::Method::from_bytes(req.method.as_bytes()) else {
                    return Attempt::Failed(crate::policy::FailureCause::Transport, Some(body));
                };
                let target = match query {
                    Some(q) => format!("{}?{q}", route.tail),
                    None => route.tail.to_string(),
                };
                let Ok(uri) = target.parse::<http::Uri>() else {
                    return Attempt::Failed(crate::policy::FailureCause::Transport, Some(body));
                };
                let headers = hyper_headers(
                    &header_map(req.headers),
                    None,
                    peer,
                    trusted,
                    proto,
                    &proxy.via,
                    &request_id,
                );
                return Box::pin(forward_once(
                    replica, &method, &uri, headers, body, settings, record,
                ))
                .await;
            }
            let head = h1::RequestHead {
                method: req.method,
                path: &route.tail,
                query,
                authority: replica.address().authority(),
                client,
                peer,
                trusted,
                proto,
                via: proxy.via.as_bytes(),
                request_id: request_id.as_bytes(),
                length: h1::BodyLength::Empty,
            };
            forward_h1(replica, head, body, settings, record).await
        };
    let mut source = BodySource::Buffered(None);
    let retryable = is_idempotent(req.method);
    attempt_loop(proxy, &svc, settings, ex, &mut source, retryable, attempt).await
}

/// The client's headers as actix-http would have decoded them (for the hyper path).
fn header_map(headers: &[httparse::Header<'_>]) -> ax::HeaderMap {
    let mut map = ax::HeaderMap::with_capacity(headers.len());
    for h in headers {
        if let (Ok(name), Ok(value)) = (
            ax::HeaderName::from_bytes(h.name.as_bytes()),
            ax::HeaderValue::from_bytes(h.value),
        ) {
            map.append(name, value);
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_applications_own_paths_and_unusual_targets_are_not_taken() {
        for t in [
            "/healthz",
            "/metrics",
            "/registry",
            "/registry/svc/1/heartbeat",
            "/ui/",
            "/register?x",
            "/%68ealthz",
        ] {
            assert!(app_route(t), "{t}");
        }
        for t in [
            "/svc/healthz",
            "/healthzz",
            "/v1/proxy/svc/x",
            "/svc?registry",
        ] {
            assert!(!app_route(t), "{t}");
        }
        assert!(origin_form("/svc/a-b_c.~d/%2F?q=1&r=(x)*,;:@"));
        for t in ["*", "http://h/x", "/a b", "/a\"b", "/a{b}", "/a#f", "/é"] {
            assert!(!origin_form(t), "{t}");
        }
    }

    /// Every path the application itself serves is one the front loop leaves to it: the routes are
    /// mounted as the main listener mounts them, and a path the front would take must reach the default
    /// (proxy) service.
    #[actix_web::test]
    async fn what_the_front_takes_the_application_would_proxy() {
        use actix_web::{test, App, HttpResponse};
        let proxied = actix_web::http::StatusCode::from_u16(299).unwrap();
        let app = test::init_service(
            App::new()
                .configure(crate::admin::configure)
                .default_service(web::to(move || async move {
                    HttpResponse::build(proxied).finish()
                })),
        )
        .await;
        let paths = [
            "/healthz",
            "/healthz/",
            "/healthz/x",
            "/readyz",
            "/metrics",
            "/metrics/x",
            "/register",
            "/register/x",
            "/registry",
            "/registry/",
            "/registry/svc",
            "/registry/svc/1/heartbeat",
            "/registry/events",
            "/registryx",
            "/ui",
            "/ui/",
            "/ui/dashboard.js",
            "/ui/x",
            "/uix",
            "/svc",
            "/svc/x",
            "/v1/proxy/svc/x",
            "/h%65althz",
            "/%75i/",
            "/svc/healthz",
        ];
        for path in paths {
            for method in [
                actix_web::http::Method::GET,
                actix_web::http::Method::DELETE,
            ] {
                let req = test::TestRequest::default()
                    .method(method.clone())
                    .uri(path)
                    .to_request();
                let status = test::call_service(&app, req).await.status();
                if !app_route(path) {
                    assert_eq!(
                        status, proxied,
                        "{method} {path}: the application serves it"
                    );
                }
            }
        }
    }
}
