//! Body adapters: the client's request body into hyper, the replica's response body back into actix.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use actix_web::web::{Bytes, Payload};
use futures_util::Stream;
use http_body::{Frame, SizeHint};
use hyper::body::{Body, Incoming};

use super::upstream::Conn;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body sent to a replica.
pub(crate) enum RequestBody {
    /// Empty, or buffered in full: can be sent again.
    Full(Option<Bytes>),
    /// The client's body, streamed as it arrives; `touched` turns true on its first poll.
    Stream {
        payload: Payload,
        length: Option<u64>,
        touched: Rc<Cell<bool>>,
    },
}

impl RequestBody {
    /// Whether a streamed body has started to be read (and so cannot be sent elsewhere).
    pub(crate) fn is_touched(&self) -> bool {
        match self {
            RequestBody::Full(_) => false,
            RequestBody::Stream { touched, .. } => touched.get(),
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            RequestBody::Full(bytes) => Poll::Ready(
                bytes
                    .take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            RequestBody::Stream {
                payload, touched, ..
            } => {
                touched.set(true);
                match Pin::new(payload).poll_next(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(None) => Poll::Ready(None),
                    Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
                    Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Full(b) => b.as_ref().is_none_or(|b| b.is_empty()),
            RequestBody::Stream { length, .. } => *length == Some(0),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            RequestBody::Stream {
                length: Some(n), ..
            } => SizeHint::with_exact(*n),
            RequestBody::Stream { length: None, .. } => SizeHint::default(),
        }
    }
}

/// The replica's response body, streamed to the client; its connection is pooled again at the end.
pub(crate) struct ResponseBody {
    incoming: Incoming,
    size: BodySize,
    conn: Option<(Conn, usize)>,
}

impl ResponseBody {
    /// Wraps `incoming`; `conn` returns to the pool (holding at most `max_idle`) once the body ends.
    pub(crate) fn new(incoming: Incoming, size: BodySize, conn: Conn, max_idle: usize) -> Self {
        let mut body = ResponseBody {
            incoming,
            size,
            conn: Some((conn, max_idle)),
        };
        // actix never polls an empty body: hand the connection back now.
        if body.incoming.is_end_stream() || matches!(size, BodySize::None | BodySize::Sized(0)) {
            body.release();
        }
        body
    }

    fn release(&mut self) {
        if let Some((conn, max_idle)) = self.conn.take() {
            conn.checkin(max_idle);
        }
    }
}

impl MessageBody for ResponseBody {
    type Error = hyper::Error;

    fn size(&self) -> BodySize {
        self.size
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, hyper::Error>>> {
        let this = self.get_mut();
        loop {
            match Pin::new(&mut this.incoming).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    this.release();
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(e))) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        if this.incoming.is_end_stream() {
                            this.release();
                        }
                        return Poll::Ready(Some(Ok(data)));
                    }
                    // Trailers cannot be carried by an HTTP/1.1 response from actix: dropped.
                }
            }
        }
    }
}
