//! One upstream HTTP/1.1 connection driven by the request's own task: the head (and a buffered body) go
//! out in one vectored write, a streamed body is written as the client sends it while the response head
//! is awaited, and the bytes read past the head stay in the connection's buffer as the body's first piece.

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::deadline::Deadline;
use super::head::{parse_response, ResponseHead};
use crate::clock;
use crate::policy::upload::TimerDecision;
use crate::policy::{ClientFault, FailureCause, HeadTimer};
use crate::proxy::request_body::{RequestBody, Upload};
use crate::registry::ReplicaAddress;

/// Read buffer size (and the least free room before a read).
const READ_CHUNK: usize = 16 * 1024;

/// An upstream connection and its read buffer.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    /// Bytes read and not yet handed on.
    pub(crate) buf: BytesMut,
    /// The replica's address: its pool.
    pub(crate) key: Rc<str>,
    /// It came from the pool.
    pub(crate) reused: bool,
}

/// How an exchange failed.
#[derive(Debug)]
pub(crate) enum ExchangeError {
    /// No connection: nothing was sent.
    Connect(FailureCause),
    /// Nothing was written: the request may go elsewhere (or on a fresh connection).
    NotSent,
    /// The exchange failed after (part of) the request was sent.
    Failed(FailureCause),
    /// The client broke its own upload.
    Client(ClientFault),
}

/// Opens a connection to `address` within `connect_timeout` (`TCP_NODELAY` on).
pub(crate) async fn connect(
    address: &ReplicaAddress,
    connect_timeout: Duration,
) -> Result<Conn, FailureCause> {
    let deadline = crate::clock::deadline(connect_timeout);
    let stream = crate::tls::connect_tcp(address, deadline).await?;
    Ok(Conn {
        stream,
        buf: BytesMut::with_capacity(READ_CHUNK),
        key: super::pool::key(address.as_str()),
        reused: false,
    })
}

/// Reads more bytes into `buf`; `Ok(0)` at the end of the stream.
pub(crate) async fn read_more<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
) -> io::Result<usize> {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
    r.read_buf(buf).await
}

/// Reads until a whole final response head is in `buf` and takes it off.
async fn read_head<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    head_request: bool,
) -> Result<ResponseHead, FailureCause> {
    loop {
        if !buf.is_empty() {
            match parse_response(buf, head_request) {
                Ok(Some(head)) => return Ok(head),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "replica sent a bad response head");
                    return Err(FailureCause::Transport);
                }
            }
        }
        match read_more(r, buf).await {
            Ok(0) | Err(_) => return Err(FailureCause::Transport),
            Ok(_) => {}
        }
    }
}

/// Reads the final response head on `conn` within `within`.
pub(super) async fn read_head_by(
    conn: &mut Conn,
    within: Duration,
    head_request: bool,
) -> Result<ResponseHead, FailureCause> {
    let mut deadline = Deadline::at(clock::now() + within);
    let read = read_head(&mut conn.stream, &mut conn.buf, head_request);
    tokio::pin!(read);
    poll_fn(|cx| {
        if let std::task::Poll::Ready(r) = read.as_mut().poll(cx) {
            return std::task::Poll::Ready(r);
        }
        deadline
            .poll_expired(cx)
            .map(|()| Err(FailureCause::Timeout))
    })
    .await
}

/// Writes `head` and `body` with as few system calls as the socket allows (one, usually); returns how
/// many bytes went out before an error.
pub(super) async fn write_all2<W: AsyncWrite + Unpin>(
    w: &mut W,
    head: &[u8],
    body: &[u8],
) -> Result<(), usize> {
    let (total, mut done) = (head.len() + body.len(), 0);
    while done < total {
        let slices = if done < head.len() {
            [IoSlice::new(&head[done..]), IoSlice::new(body)]
        } else {
            [IoSlice::new(&body[done - head.len()..]), IoSlice::new(&[])]
        };
        match w.write_vectored(&slices).await {
            Ok(0) | Err(_) => return Err(done),
            Ok(n) => done += n,
        }
    }
    Ok(())
}

/// Writes a streamed body as it arrives (chunk-encoded when `chunked`). `Err(true)`: the client broke it;
/// `Err(false)`: the replica's side of the connection failed.
async fn upload<W: AsyncWrite + Unpin>(
    w: &mut W,
    body: &mut RequestBody,
    chunked: bool,
) -> Result<(), bool> {
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| true)?.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        if chunked {
            let size = format!("{:x}\r\n", data.len());
            write_all2(w, size.as_bytes(), &data)
                .await
                .map_err(|_| false)?;
            w.write_all(b"\r\n").await.map_err(|_| false)?;
        } else {
            w.write_all(&data).await.map_err(|_| false)?;
        }
    }
    if chunked {
        w.write_all(b"0\r\n\r\n").await.map_err(|_| false)?;
    }
    Ok(())
}

impl Conn {
    /// Sends the request (`head`, then `body`) and reads the final response head. The second value is
    /// whether the whole request went out (a connection whose upload was cut short is not reused).
    pub(crate) async fn exchange(
        &mut self,
        head: &[u8],
        body: &mut RequestBody,
        chunked: bool,
        timer: HeadTimer,
        head_request: bool,
    ) -> Result<(ResponseHead, bool), ExchangeError> {
        let upload_state = body.upload();
        let Some(upload_state) = upload_state else {
            let data: Bytes = match body {
                RequestBody::Full(b) => b.take().unwrap_or_default(),
                RequestBody::Stream(_) => unreachable!("a streamed body reports its upload"),
            };
            if let Err(written) = write_all2(&mut self.stream, head, &data).await {
                return Err(if written == 0 {
                    ExchangeError::NotSent
                } else {
                    ExchangeError::Failed(FailureCause::Transport)
                });
            }
            return read_head_by(self, timer.head_timeout, head_request)
                .await
                .map(|h| (h, true))
                .map_err(ExchangeError::Failed);
        };
        self.streamed(head, body, chunked, timer, head_request, &upload_state)
            .await
    }

    async fn streamed(
        &mut self,
        head: &[u8],
        body: &mut RequestBody,
        chunked: bool,
        timer: HeadTimer,
        head_request: bool,
        state: &Upload,
    ) -> Result<(ResponseHead, bool), ExchangeError> {
        let (mut rd, mut wr) = self.stream.split();
        if let Err(written) = write_all2(&mut wr, head, &[]).await {
            return Err(if written == 0 {
                ExchangeError::NotSent
            } else {
                ExchangeError::Failed(FailureCause::Transport)
            });
        }
        let sending = upload(&mut wr, body, chunked);
        let reading = read_head(&mut rd, &mut self.buf, head_request);
        tokio::pin!(sending, reading);
        let first = clock::now() + timer.head_timeout.min(timer.send_timeout);
        let mut deadline = Deadline::at(first);
        let mut sent: Option<bool> = None;
        poll_fn(|cx| {
            use std::task::Poll;
            loop {
                if let Poll::Ready(r) = reading.as_mut().poll(cx) {
                    // A replica may answer before the upload ends (a 413, say): the answer stands, the
                    // connection goes.
                    return Poll::Ready(match r {
                        Ok(h) => Ok((h, sent == Some(true))),
                        Err(cause) => Err(ExchangeError::Failed(cause)),
                    });
                }
                if sent.is_none() {
                    if let Poll::Ready(r) = sending.as_mut().poll(cx) {
                        match r {
                            Ok(()) => sent = Some(true),
                            Err(true) => {
                                let fault = state.client_fault().unwrap_or(ClientFault::Aborted);
                                return Poll::Ready(Err(ExchangeError::Client(fault)));
                            }
                            // The replica stopped taking the body: its answer may still be on the way.
                            Err(false) => sent = Some(false),
                        }
                    }
                }
                if deadline.poll_expired(cx).is_pending() {
                    return Poll::Pending;
                }
                match timer.decide(state.state(), clock::now()) {
                    TimerDecision::Expired(cause) => {
                        return Poll::Ready(Err(ExchangeError::Failed(cause)))
                    }
                    TimerDecision::WaitUntil(t) => deadline.reset(t),
                }
            }
        })
        .await
    }
}
