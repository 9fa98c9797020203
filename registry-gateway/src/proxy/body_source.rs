//! Where each attempt's request body comes from: small bodies of a known length buffered so they can be
//! replayed, the rest streamed from the client once.

use actix_web::http::header as ax;
use actix_web::{web, HttpRequest};

use super::request_body::{self, ReadError, RequestBody};
use super::ProxySettings;
use crate::error::GatewayError;
use crate::policy::{BodyReplay, ClientFault};

/// Where each attempt's request body comes from.
pub(super) enum BodySource {
    /// Empty or buffered: every attempt gets a cheap copy.
    Buffered(Option<web::Bytes>),
    /// The client's stream: one attempt takes it, and gets it back only if it never read from it.
    Stream(Option<RequestBody>),
}

impl BodySource {
    pub(super) fn take(&mut self) -> Option<RequestBody> {
        match self {
            BodySource::Buffered(b) => Some(RequestBody::Full(b.clone())),
            BodySource::Stream(s) => s.take(),
        }
    }

    pub(super) fn put_back(&mut self, body: RequestBody) {
        if let BodySource::Stream(slot) = self {
            if !body.is_touched() {
                *slot = Some(body);
            }
        }
    }

    pub(super) fn replay(&self) -> BodyReplay {
        match self {
            BodySource::Buffered(_) => BodyReplay::Replayable,
            BodySource::Stream(Some(_)) => BodyReplay::Untouched,
            BodySource::Stream(None) => BodyReplay::Consumed,
        }
    }
}

/// A body cut short because the connection's gate found its chunked framing malformed is a malformed
/// body, not an aborted one.
pub(super) fn framing_fault(req: &HttpRequest, fault: ClientFault) -> ClientFault {
    match req.conn_data::<crate::framing::GateHandle>() {
        Some(g) if fault == ClientFault::Aborted && g.malformed() => ClientFault::MalformedBody,
        _ => fault,
    }
}

/// Buffers small bodies with a known length (so they can be replayed) as their bytes arrive, and
/// streams the rest.
pub(super) async fn prepare_body(
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
