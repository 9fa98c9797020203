//! A replica's response body read straight off its connection: framed by length, chunks or the close,
//! handed on without copies, and the connection pooled again only when the body ended exactly where its
//! framing said and the replica allows reuse.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};

use super::batch::Ticket;
use super::chunked::{ChunkedDecoder, Decoded};
use super::conn::{read_more, Conn};
use super::framing::Framing;
use crate::policy::FailureCause;

#[derive(Debug)]
enum Remaining {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
}

/// The body's reader; it owns the connection until the body ends.
#[derive(Debug)]
pub(crate) struct WireBody {
    conn: Option<Conn>,
    remaining: Remaining,
    reusable: bool,
    max_idle: usize,
    done: bool,
    /// Its place in a pipelined batch: at the end the connection goes to the next request there.
    ticket: Option<Ticket>,
}

impl WireBody {
    /// Reads a body framed by `framing` from `conn` (whose buffer may already hold its first bytes).
    /// `reusable`: the replica and the exchange allow another request on the connection afterwards.
    pub(crate) fn new(
        conn: Conn,
        framing: Framing,
        reusable: bool,
        max_idle: usize,
        ticket: Option<Ticket>,
    ) -> Self {
        let remaining = match framing {
            Framing::None => Remaining::Length(0),
            Framing::Length(n) => Remaining::Length(n),
            Framing::Chunked => Remaining::Chunked(ChunkedDecoder::default()),
            Framing::UntilClose => Remaining::UntilClose,
        };
        let mut body = WireBody {
            conn: Some(conn),
            remaining,
            reusable,
            max_idle,
            done: false,
            ticket,
        };
        if matches!(body.remaining, Remaining::Length(0)) {
            body.end();
        }
        body
    }

    /// The whole body, when it is already in the buffer (the usual small answer): the connection is
    /// pooled again at once. `None`: the body is still to be read.
    pub(crate) fn take_full(&mut self) -> Option<Bytes> {
        let Some(conn) = self.conn.as_mut() else {
            return self.done.then(Bytes::new);
        };
        match self.remaining {
            Remaining::Length(n) if conn.buf.len() as u64 >= n => {
                let bytes = conn.buf.split_to(n as usize).freeze();
                self.remaining = Remaining::Length(0);
                self.end();
                Some(bytes)
            }
            _ => None,
        }
    }

    /// Whether the body has ended.
    pub(crate) fn is_end(&self) -> bool {
        self.done
    }

    /// The body ended as framed: the connection goes to the next request of its batch, or back to the
    /// pool if nothing is left over.
    fn end(&mut self) {
        self.done = true;
        if let Some(conn) = self.conn.take() {
            let reusable = self.reusable && !matches!(self.remaining, Remaining::UntilClose);
            match self.ticket.take() {
                Some(ticket) => ticket.hand_on(conn, reusable, self.max_idle),
                None if reusable && conn.buf.is_empty() => {
                    super::pool::checkin(conn, self.max_idle)
                }
                None => {}
            }
        }
    }

    /// The connection is lost mid-body: so is the rest of its batch.
    fn lose(&mut self) {
        self.conn = None;
        self.ticket = None;
    }

    /// The next piece of the body; `Err` when it ends before its framing says it should, or its framing
    /// is malformed.
    pub(crate) fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, FailureCause>>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            if !conn.buf.is_empty() {
                match &mut self.remaining {
                    Remaining::Length(rem) => {
                        let n = (*rem).min(conn.buf.len() as u64);
                        let bytes = conn.buf.split_to(n as usize).freeze();
                        *rem -= n;
                        if *rem == 0 {
                            self.end();
                        }
                        return Poll::Ready(Some(Ok(bytes)));
                    }
                    Remaining::Chunked(dec) => match dec.decode(&conn.buf) {
                        Err(_) => {
                            self.lose();
                            return Poll::Ready(Some(Err(FailureCause::Truncated)));
                        }
                        Ok((used, Decoded::Data(range))) => {
                            let bytes = conn.buf.split_to(used).freeze().slice(range);
                            return Poll::Ready(Some(Ok(bytes)));
                        }
                        Ok((used, Decoded::Done)) => {
                            conn.buf.advance(used);
                            self.end();
                            return Poll::Ready(None);
                        }
                        Ok((used, Decoded::NeedMore)) => conn.buf.advance(used),
                    },
                    Remaining::UntilClose => {
                        return Poll::Ready(Some(Ok(conn.buf.split().freeze())))
                    }
                }
                continue;
            }
            let read = {
                let fut = pin!(read_more(&mut conn.stream, &mut conn.buf));
                fut.poll(cx)
            };
            match read {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    self.lose();
                    if matches!(self.remaining, Remaining::UntilClose) {
                        self.done = true;
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err(FailureCause::Truncated)));
                }
                Poll::Ready(Err(_)) => {
                    self.lose();
                    return Poll::Ready(Some(Err(FailureCause::Truncated)));
                }
                Poll::Ready(Ok(_)) => {}
            }
        }
    }
}
