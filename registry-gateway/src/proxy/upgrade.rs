//! Protocol upgrades (WebSocket or any other `Upgrade` protocol) through the HTTP proxy: the handshake
//! goes to a replica like any request, and after its `101 Switching Protocols` the bytes are relayed
//! both ways until a side closes or the tunnel idles out.
//!
//! The decisions (is this an upgrade, may a failed attempt move on, what a refusal is) are pure functions
//! at the top; the connection and the attempt follow; the relay and the 101's body are in [`tunnel`]. A
//! tunnel always has its own upstream connection, never taken from or returned to the keep-alive pool.
//! The client's bytes after the 101 come from the connection's gate ([`GateHandle::switch`]), the same
//! way for every protocol.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use actix_http::ConnectionType;
use actix_web::http::{header as ax, StatusCode, Version};
use actix_web::web::Bytes;
use actix_web::HttpResponse;
use http_body_util::Empty;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

use super::{headers, ProxySettings};
use crate::clock;
use crate::framing::GateHandle;
use crate::policy::{FailureCause, Outcome};
use crate::registry::{AttemptRecord, Replica};

mod tunnel;

use tunnel::relay;
pub(crate) use tunnel::TunnelBody;

/// What a request's `Connection`/`Upgrade` headers ask of the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UpgradeDecision {
    /// No upgrade the gateway carries: a normal request (an `Upgrade` it does not carry is dropped as
    /// hop-by-hop, and the replica answers in HTTP/1.1, as RFC 9110 §7.8 lets a server do).
    Plain,
    /// An upgrade handshake, forwarded with `Upgrade: <protocols>` and tunnelled after a 101.
    Tunnel(http::HeaderValue),
    /// An upgrade handshake while `proxy.upgrades` is off: refused, nothing goes upstream. Names the
    /// protocols asked for.
    Refuse(String),
}

/// Classifies a request. Carried: an HTTP/1.1 request with a `Connection: upgrade` token, an `Upgrade`
/// naming at least one protocol other than `h2c`, and no body (no `Transfer-Encoding`, no
/// `Content-Length` above 0). `h2c` is never carried: it would switch the client's connection to HTTP/2
/// with the replica, past the gateway's routing of every later request; it is dropped from the list
/// (alone, the request is a plain one), as nginx does. A handshake with a body is a plain request too:
/// the switch would come after a body the gateway has to forward first.
pub(crate) fn classify(
    version: Version,
    headers: &ax::HeaderMap,
    enabled: bool,
) -> UpgradeDecision {
    let asks_upgrade = headers
        .get_all(ax::CONNECTION)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let protocols = headers
        .get_all(ax::UPGRADE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.eq_ignore_ascii_case("h2c"))
        .collect::<Vec<_>>()
        .join(", ");
    let body = headers.contains_key(ax::TRANSFER_ENCODING)
        || headers
            .get(ax::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes().trim_ascii() != b"0");
    if version != Version::HTTP_11 || !asks_upgrade || protocols.is_empty() || body {
        return UpgradeDecision::Plain;
    }
    match (enabled, http::HeaderValue::from_str(&protocols)) {
        (false, _) => UpgradeDecision::Refuse(protocols),
        (true, Ok(value)) => UpgradeDecision::Tunnel(value),
        (true, Err(_)) => UpgradeDecision::Plain,
    }
}

/// The upgrade headers the replica gets back, after hop-by-hop stripping removed them.
pub(crate) fn restore_upgrade_headers(out: &mut http::HeaderMap, protocols: &http::HeaderValue) {
    out.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("upgrade"),
    );
    out.insert(http::header::UPGRADE, protocols.clone());
}

/// What one upgrade attempt came to.
pub(crate) enum UpgradeAttempt {
    /// 101: the client's response, with the tunnel running behind it.
    Switched(Box<HttpResponse<TunnelBody>>),
    /// Any other status, for the client as it is (its body is streamed; the connection is not pooled).
    Answered(hyper::Response<hyper::body::Incoming>),
    /// No answer.
    Failed(FailureCause),
}

/// Opens a fresh connection to `address` that can be upgraded (never pooled): TCP, then TLS (ALPN
/// `http/1.1`) for an `https://` replica, both within `connect_timeout`.
async fn connect(
    address: &crate::registry::ReplicaAddress,
    tls: &crate::tls::UpstreamTls,
    connect_timeout: Duration,
) -> Result<SendRequest<Empty<Bytes>>, FailureCause> {
    let deadline = crate::clock::deadline(connect_timeout);
    handshake(crate::tls::dial(address, tls, false, deadline).await?).await
}

/// HTTP/1.1 with upgrades over `io`; the connection runs on this worker's task set.
async fn handshake<T>(io: T) -> Result<SendRequest<Empty<Bytes>>, FailureCause>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|_| FailureCause::Connect)?;
    tokio::task::spawn_local(async move {
        // Errors here reach the handshake's response future.
        let _ = conn.with_upgrades().await;
    });
    Ok(sender)
}

/// One upgrade attempt: the handshake (asking for `protocols`) to `replica`, and on its 101 the tunnel,
/// relaying the client's connection (`gate`, switched) until either side closes or it idles for
/// `proxy.upgrade_idle_timeout`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn attempt(
    replica: &Replica,
    method: &http::Method,
    uri: &http::Uri,
    mut headers: http::HeaderMap,
    protocols: &http::HeaderValue,
    settings: &ProxySettings,
    gate: &GateHandle,
    record: &mut Option<AttemptRecord>,
) -> UpgradeAttempt {
    let authority = replica.address().authority();
    let mut sender = match connect(
        replica.address(),
        &settings.upstream_tls,
        settings.connect_timeout,
    )
    .await
    {
        Ok(s) => s,
        Err(cause) => return UpgradeAttempt::Failed(cause),
    };
    restore_upgrade_headers(&mut headers, protocols);
    headers::set_host(&mut headers, authority);
    let mut req = hyper::Request::new(Empty::new());
    *req.method_mut() = method.clone();
    *req.uri_mut() = uri.clone();
    *req.headers_mut() = headers;
    let resp = match tokio::time::timeout(settings.request_timeout, sender.send_request(req)).await
    {
        Err(_) => return UpgradeAttempt::Failed(FailureCause::Timeout),
        Ok(Err(_)) => return UpgradeAttempt::Failed(FailureCause::Transport),
        Ok(Ok(resp)) => resp,
    };
    if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        return UpgradeAttempt::Answered(resp);
    }
    let mut resp = resp;
    let Ok(upgraded) = hyper::upgrade::on(&mut resp).await else {
        return UpgradeAttempt::Failed(FailureCause::Transport);
    };
    // A 101 is the replica's success; the tunnel that follows is no request latency.
    if let Some(mut r) = record.take() {
        r.head_arrived(None);
        r.finish(Outcome::Success);
    }
    let (tx, rx) = mpsc::channel(4);
    let uploaded = Rc::new(Cell::new(0u64));
    let started = clock::now();
    let relay = relay(
        TokioIo::new(upgraded),
        gate.switch(),
        tx,
        settings.upgrade_idle_timeout,
        Rc::clone(&uploaded),
    );
    let address = replica.address().to_string();
    tokio::task::spawn_local(async move {
        let end = relay.await;
        let lasted = clock::now().saturating_duration_since(started);
        tracing::debug!(replica = %address, end = end.as_str(), lasted_ms = lasted.as_millis() as u64, "tunnel closed");
    });
    let mut out = HttpResponse::with_body(
        StatusCode::SWITCHING_PROTOCOLS,
        TunnelBody::new(rx, uploaded, gate.clone()),
    );
    headers::to_client(resp.headers(), false, out.headers_mut());
    // The protocol the replica switched to (a 101 must name it; else the first one asked for).
    let switched = resp
        .headers()
        .get(http::header::UPGRADE)
        .unwrap_or(protocols);
    if let Ok(v) = ax::HeaderValue::from_bytes(switched.as_bytes()) {
        out.headers_mut().insert(ax::UPGRADE, v);
    }
    out.head_mut().set_connection_type(ConnectionType::Upgrade);
    // The replica's bytes go out raw, never chunked (actix-http would chunk a streamed body of a
    // request it did not read as a stream itself).
    out.head_mut().no_chunking(true);
    UpgradeAttempt::Switched(Box::new(out))
}

#[cfg(test)]
mod tests;
