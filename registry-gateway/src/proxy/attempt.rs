//! One HTTP attempt against one replica: the HTTP/1 side of the forward seam. It sends over the
//! per-worker pool ([`super::upstream`]) or as an upgrade handshake, and says what the attempt came to
//! ([`Attempt`]); the loop in [`super::forward`] turns that into a [`crate::policy::Report`].

use actix_web::body::BodySize;
use actix_web::http::StatusCode;
use actix_web::HttpResponse;

use super::request_body::{self, RequestBody};
use super::response_body::{self, ResponseBody};
use super::upstream::{self, SendError};
use super::{h1, headers, upgrade, ProxySettings};
use crate::policy::{attribute, ClientFault, FailureCause, HeadTimer, Outcome};
use crate::registry::{AttemptRecord, Replica};

/// What one attempt came to.
pub(super) enum Attempt {
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

/// One attempt against one replica.
pub(super) async fn forward_once(
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

/// One upgrade attempt against one replica (see [`upgrade::attempt`]); an answer other than 101 is an
/// ordinary response, classified like any other.
#[allow(clippy::too_many_arguments)]
pub(super) async fn upgrade_once(
    replica: &Replica,
    method: &http::Method,
    uri: &http::Uri,
    headers: http::HeaderMap,
    protocols: &http::HeaderValue,
    settings: &ProxySettings,
    gate: &crate::framing::GateHandle,
    record: &mut Option<AttemptRecord>,
) -> Attempt {
    let answer = upgrade::attempt(
        replica, method, uri, headers, protocols, settings, gate, record,
    )
    .await;
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

/// One attempt against a plain `http://` replica, on the in-task HTTP/1.1 client ([`super::h1`]).
pub(super) async fn forward_h1(
    replica: &Replica,
    head: h1::RequestHead<'_>,
    body: RequestBody,
    settings: &ProxySettings,
    record: &mut Option<AttemptRecord>,
) -> Attempt {
    let upload = body.upload();
    let head_request = head.method == "HEAD";
    let wire = h1::Wire {
        timer: HeadTimer {
            head_timeout: settings.request_timeout,
            send_timeout: settings.send_timeout,
        },
        connect_timeout: settings.connect_timeout,
        max_idle: settings.max_idle_per_replica,
        pipeline: settings.pipeline,
        pipeline_budget: settings.pipeline_budget,
    };
    let exchanged = h1::exchange(replica.address(), head, body, wire).await;
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

/// The client's response from an [`super::h1`] head and body; a body already read in full is handed over whole
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
