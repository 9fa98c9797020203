//! The replica's response body on its way to the client: its attempt's outcome is recorded when the body
//! ends (a truncated or stalled body is the replica's failure even though the client already has the
//! head), its connection is pooled again at the end, and a client that goes away charges nobody. The
//! client's request ([`Exchange`]) is counted and access-logged when the body ends, with the bytes sent.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, MessageBody};
use actix_web::web::Bytes;
use hyper::body::{Body, Incoming};

use super::h1::{Deadline, WireBody};
use super::upstream::Conn;
use crate::observe::{Exchange, FinalStatus};
use crate::policy::{FailureCause, Outcome};
use crate::registry::AttemptRecord;

/// Why a response body ended before its end.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UpstreamBodyError(FailureCause);

/// Where the body's bytes come from.
pub(crate) enum Source {
    /// A hyper connection's body (`https://` replicas).
    Hyper(Incoming),
    /// Read off the in-task HTTP/1.1 client's connection.
    Wire(Box<WireBody>),
    /// Already read in full (the connection is back in the pool).
    Full(Option<Bytes>),
}

impl Source {
    fn is_end(&self) -> bool {
        match self {
            Source::Hyper(i) => i.is_end_stream(),
            Source::Wire(w) => w.is_end(),
            Source::Full(b) => b.as_ref().is_none_or(Bytes::is_empty),
        }
    }
}

/// The replica's response body, streamed to the client.
pub(crate) struct ResponseBody {
    source: Source,
    size: BodySize,
    conn: Option<(Conn, usize)>,
    /// The attempt, while its outcome waits for the end of the body (`None` once recorded).
    record: Option<AttemptRecord>,
    read_timeout: Duration,
    /// Armed while waiting for the replica's next bytes.
    stall: Option<Deadline>,
    waiting: bool,
    /// The status the client gets.
    status: u16,
    /// Body bytes handed to the client so far.
    sent: u64,
    /// Whether the body ended (completely or not).
    ended: bool,
    /// The body broke; reported on the next poll, so that what came before it reaches the client first.
    broken: bool,
    /// The client's request, while it waits for the end of the body.
    exchange: Option<Exchange>,
}

impl ResponseBody {
    /// Wraps `source`; `conn` (a hyper connection) returns to the pool (holding at most `max_idle`) once the body ends, and
    /// `record` (when given) gets the attempt's outcome then.
    pub(crate) fn new(
        source: Source,
        status: u16,
        size: BodySize,
        conn: Option<Conn>,
        max_idle: usize,
        record: Option<AttemptRecord>,
        read_timeout: Duration,
    ) -> Self {
        let mut body = ResponseBody {
            source,
            size,
            conn: conn.map(|c| (c, max_idle)),
            record,
            read_timeout,
            stall: None,
            waiting: false,
            status,
            sent: 0,
            ended: false,
            broken: false,
            exchange: None,
        };
        // actix never polls an empty body: the exchange is complete now.
        if body.source.is_end() || matches!(size, BodySize::None | BodySize::Sized(0)) {
            body.complete();
        }
        body
    }

    /// The body's end also ends the client's request `ex` (now, if it already ended).
    pub(crate) fn observed(mut self, ex: Exchange) -> Self {
        self.exchange = Some(ex);
        if self.ended {
            self.end_exchange();
        }
        self
    }

    fn end_exchange(&mut self) {
        self.ended = true;
        if let Some(mut ex) = self.exchange.take() {
            ex.finish(FinalStatus::Http(self.status), self.sent);
        }
    }

    fn complete(&mut self) {
        self.end_exchange();
        if let Some(mut r) = self.record.take() {
            r.finish(Outcome::Success);
        }
        if let Some((conn, max_idle)) = self.conn.take() {
            conn.checkin(max_idle);
        }
    }

    fn fail(&mut self, cause: FailureCause) -> Poll<Option<Result<Bytes, UpstreamBodyError>>> {
        self.end_exchange();
        self.conn = None;
        self.source = Source::Full(None);
        if let Some(mut r) = self.record.take() {
            r.finish(Outcome::Failure(cause));
        }
        Poll::Ready(Some(Err(UpstreamBodyError(cause))))
    }
}

impl MessageBody for ResponseBody {
    type Error = UpstreamBodyError;

    fn size(&self) -> BodySize {
        self.size
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, UpstreamBodyError>>> {
        let this = self.get_mut();
        if this.broken {
            return this.fail(FailureCause::Truncated);
        }
        loop {
            let next = match &mut this.source {
                Source::Full(b) => {
                    let b = b.take().filter(|b| !b.is_empty());
                    if let Some(b) = &b {
                        this.sent += b.len() as u64;
                    }
                    this.complete();
                    return Poll::Ready(b.map(Ok));
                }
                Source::Wire(w) => match w.poll_chunk(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(None) => Poll::Ready(None),
                    Poll::Ready(Some(Err(_))) => Poll::Ready(Some(Err(()))),
                    Poll::Ready(Some(Ok(data))) => Poll::Ready(Some(Ok(Some(data)))),
                },
                Source::Hyper(incoming) => match Pin::new(incoming).poll_frame(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(None) => Poll::Ready(None),
                    Poll::Ready(Some(Err(_))) => Poll::Ready(Some(Err(()))),
                    // Trailers cannot be carried by an HTTP/1.1 response from actix: dropped.
                    Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame.into_data().ok()))),
                },
            };
            match next {
                Poll::Pending => {
                    // Only time spent waiting on the replica counts, never a slow client's.
                    let deadline = crate::clock::now() + this.read_timeout;
                    let stall = match &mut this.stall {
                        Some(s) if !this.waiting => {
                            s.reset(deadline);
                            s
                        }
                        Some(s) => s,
                        None => this.stall.insert(Deadline::at(deadline)),
                    };
                    this.waiting = true;
                    if stall.poll_expired(cx).is_ready() {
                        return this.fail(FailureCause::ReadTimeout);
                    }
                    return Poll::Pending;
                }
                Poll::Ready(None) => {
                    this.complete();
                    return Poll::Ready(None);
                }
                // Cut short: closed before its length or its last chunk, or reset.
                // actix drops what it has not written yet when a body fails: the head and the bytes
                // before the break go out first (a pending body lets it flush), then the error.
                Poll::Ready(Some(Err(()))) => {
                    this.broken = true;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Ready(Some(Ok(None))) => this.waiting = false,
                Poll::Ready(Some(Ok(Some(data)))) => {
                    this.waiting = false;
                    this.sent += data.len() as u64;
                    if this.source.is_end() {
                        this.complete();
                    }
                    return Poll::Ready(Some(Ok(data)));
                }
            }
        }
    }
}

impl Drop for ResponseBody {
    /// The client left before the end: its request still counts, with the status it got.
    fn drop(&mut self) {
        self.end_exchange();
    }
}
