//! A replica's gRPC response on its way to the client: classified as soon as its status is known (the
//! head, or the trailers at the end of its body), the attempt recorded once, the call counted when the
//! body ends.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::client_body::ClientBroke;
use super::status::{self, code};
use super::GrpcBody;
use crate::observe::{grpc_from_http, Exchange, FinalStatus};
use crate::policy::{attribute, ClientFault, FailureCause, Outcome};
use crate::registry::AttemptRecord;

/// Classifies the response as soon as its status is known: a non-200 HTTP status or a trailers-only
/// `grpc-status` now, otherwise the trailers at the end of the body. The call (`ex`) ends with the body.
pub(super) fn observe(
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
