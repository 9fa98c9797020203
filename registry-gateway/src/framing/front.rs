//! The front loop: serves the plain HTTP/1.1 requests of a connection itself, before actix-http is built
//! around it, and hands the connection over (with the bytes already read) at its first request that is
//! not plain.
//!
//! Plain means what [`FrontProxy::takes`] says: HTTP/1.1, a proxied path, no body, no upgrade, no
//! `Expect`, within the head limits. Such a request is parsed in place with `httparse`, forwarded by the
//! proxy's own attempt loop and answered from the same response actix's handler builds, encoded here the
//! way actix-http encodes it. Pipelined requests are answered in order (the next head is parsed only after
//! the previous response). The first head has `client.header_timeout` from the connection's start, later
//! ones from their first byte (408 and close); an idle keep-alive connection closes after actix-http's
//! 5 s, or when the server shuts down. A client that resets its connection while its request waits
//! drops the request, as actix-http does.

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice, Write as _};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use actix_web::body::{BodySize, MessageBody};
use actix_web::http::{header as ax, StatusCode};
use actix_web::HttpResponse;
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::scanner::MAX_HEADERS;
use crate::clock;
use crate::proxy::{Deadline, FrontProxy, FrontRequest};

/// An idle keep-alive connection closes after this (actix-http's default keep-alive).
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// A head still incomplete at this size goes to actix-http, which applies its own limits.
const MAX_FRONT_HEAD: usize = 16 * 1024;
/// Read buffer size (and the least free room before a read).
const READ_CHUNK: usize = 8 * 1024;

/// How the front loop left a connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Left {
    /// Closed (by the client, a timeout, the shutdown, or `Connection: close`).
    Closed,
    /// A request the front does not serve starts at the front of the buffer: actix-http takes over.
    HandOver,
}

/// What the loop waits for between reads.
enum Wake {
    Read(io::Result<usize>),
    Expired,
    Shutdown,
}

/// Serves `io`'s plain requests; `buf` holds what was read and not yet served when it returns.
pub(crate) async fn serve(
    io: &mut TcpStream,
    buf: &mut BytesMut,
    peer: Option<SocketAddr>,
    front: &FrontProxy,
    header_timeout: Duration,
    shutdown: &actix_server::GracefulShutdownSignal,
) -> Left {
    let mut out: Vec<u8> = Vec::with_capacity(512);
    // When the head being read started (the connection's start for the first one).
    let mut started: Option<Instant> = Some(clock::now());
    loop {
        if !buf.is_empty() {
            started.get_or_insert_with(clock::now);
            let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut []);
            match req.parse_with_uninit_headers(buf, &mut slots) {
                Ok(httparse::Status::Complete(len)) => {
                    if !front.takes(&req) {
                        return Left::HandOver;
                    }
                    let (Some(method), Some(target)) = (req.method, req.path) else {
                        return Left::HandOver;
                    };
                    let close = asks_close(req.headers);
                    let request = FrontRequest {
                        method,
                        target,
                        headers: req.headers,
                        peer,
                    };
                    let Some(resp) = serve_watching(io, front.serve(&request)).await else {
                        // The client reset the connection: its request is dropped (a 499), as
                        // actix-http drops the handler of a connection that breaks.
                        return Left::Closed;
                    };
                    let kept = respond(io, resp, method == "HEAD", close, &mut out).await;
                    buf.advance(len);
                    if !kept {
                        let _ = io.shutdown().await;
                        return Left::Closed;
                    }
                    started = None;
                    continue;
                }
                Ok(httparse::Status::Partial) if buf.len() > MAX_FRONT_HEAD => {
                    return Left::HandOver
                }
                Ok(httparse::Status::Partial) => {}
                Err(_) => return Left::HandOver,
            }
        }
        let idle = buf.is_empty() && started.is_none();
        let until = match started {
            Some(t) => t + header_timeout,
            None => clock::now() + KEEP_ALIVE,
        };
        match wait(io, buf, until, idle.then_some(shutdown)).await {
            Wake::Read(Ok(n)) if n > 0 => {}
            // The client closed (or reset) the connection.
            Wake::Read(_) => return Left::Closed,
            Wake::Expired if started.is_some() => {
                // A head that did not arrive in time, as actix-http answers it.
                out.clear();
                out.extend_from_slice(
                    b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n",
                );
                date_line(&mut out);
                out.extend_from_slice(b"\r\n");
                let _ = io.write_all(&out).await;
                let _ = io.shutdown().await;
                return Left::Closed;
            }
            Wake::Expired | Wake::Shutdown => return Left::Closed,
        }
    }
}

/// Awaits `serving` while watching the client's side of the connection: `None` when the client resets
/// it first. A half-close, or bytes of a pipelined request, end the watch: like actix-http (which allows
/// half-closed connections), the request is then served to its end.
async fn serve_watching<F: Future>(io: &TcpStream, serving: F) -> Option<F::Output> {
    let mut serving = pin!(serving);
    let mut watching = true;
    let mut probe = [0u8; 1];
    poll_fn(|cx| {
        if let Poll::Ready(out) = serving.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        if watching {
            match io.poll_peek(cx, &mut ReadBuf::new(&mut probe)) {
                Poll::Ready(Err(_)) => return Poll::Ready(None),
                Poll::Ready(Ok(_)) => watching = false,
                Poll::Pending => {}
            }
        }
        Poll::Pending
    })
    .await
}

/// Reads more bytes into `buf`, until `until` (and, when given, the server's shutdown).
async fn wait<T: AsyncRead + Unpin>(
    io: &mut T,
    buf: &mut BytesMut,
    until: Instant,
    shutdown: Option<&actix_server::GracefulShutdownSignal>,
) -> Wake {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
    let mut deadline = Deadline::at(until);
    let mut read = pin!(io.read_buf(buf));
    let mut stop = pin!(async {
        match shutdown {
            Some(s) => s.notified().await,
            None => std::future::pending().await,
        }
    });
    poll_fn(|cx| {
        if let Poll::Ready(r) = read.as_mut().poll(cx) {
            return Poll::Ready(Wake::Read(r));
        }
        if stop.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Wake::Shutdown);
        }
        deadline.poll_expired(cx).map(|()| Wake::Expired)
    })
    .await
}

/// Whether the client's `Connection` header says `close`.
fn asks_close(headers: &[httparse::Header<'_>]) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
}

/// Writes `resp` to the client as actix-http's HTTP/1.1 encoder does (status line, the body's framing,
/// `connection: close` when `close`, the headers, `date`), streaming its body; a `head_request` gets no
/// body bytes. Returns whether the connection may carry another request.
async fn respond<T: AsyncWrite + Unpin, B: MessageBody>(
    io: &mut T,
    resp: HttpResponse<B>,
    head_request: bool,
    close: bool,
    out: &mut Vec<u8>,
) -> bool {
    let (res, body) = resp.into_parts();
    let status = res.status();
    let (size, chunked) = write_head(status, res.headers(), body.size(), close, out);
    drop(res);
    let mut body = pin!(body);
    // actix-http never polls a body that has no bytes.
    if matches!(size, BodySize::None | BodySize::Sized(0)) {
        return write_all(io, &mut [IoSlice::new(out)]).await.is_ok() && !close;
    }
    let mut head_out = false;
    loop {
        // The head waits for the first piece of the body when it is there already (one write).
        let next = match poll_fn(|cx| Poll::Ready(body.as_mut().poll_next(cx))).await {
            Poll::Ready(next) => next,
            Poll::Pending => {
                if !head_out {
                    head_out = true;
                    if write_all(io, &mut [IoSlice::new(out)]).await.is_err() {
                        return false;
                    }
                }
                poll_fn(|cx| body.as_mut().poll_next(cx)).await
            }
        };
        let head: &[u8] = if head_out { &[] } else { out.as_slice() };
        let wrote = match next {
            Some(Ok(data)) if head_request || data.is_empty() => {
                write_all(io, &mut [IoSlice::new(head)]).await
            }
            Some(Ok(data)) if chunked => {
                let size = format!("{:x}\r\n", data.len());
                write_all(
                    io,
                    &mut [
                        IoSlice::new(head),
                        IoSlice::new(size.as_bytes()),
                        IoSlice::new(&data),
                        IoSlice::new(b"\r\n"),
                    ],
                )
                .await
            }
            Some(Ok(data)) => write_all(io, &mut [IoSlice::new(head), IoSlice::new(&data)]).await,
            // The body broke: what came before it went out; the connection ends unfinished.
            Some(Err(_)) => {
                if !head_out {
                    let _ = write_all(io, &mut [IoSlice::new(out)]).await;
                }
                return false;
            }
            None => {
                let end: &[u8] = if chunked && !head_request {
                    b"0\r\n\r\n"
                } else {
                    &[]
                };
                return write_all(io, &mut [IoSlice::new(head), IoSlice::new(end)])
                    .await
                    .is_ok()
                    && !close;
            }
        };
        head_out = true;
        if wrote.is_err() {
            return false;
        }
    }
}

/// Encodes the response head into `out` like actix-http (lower-case names); returns the body's size as
/// the status allows it and whether it goes out chunked.
fn write_head(
    status: StatusCode,
    headers: &ax::HeaderMap,
    size: BodySize,
    close: bool,
    out: &mut Vec<u8>,
) -> (BodySize, bool) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        status
            .canonical_reason()
            .unwrap_or("<unknown status code>")
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    let (mut size, mut skip_len) = (size, size != BodySize::Stream);
    match status.as_u16() {
        100 | 101 | 102 | 204 => {
            skip_len = true;
            size = BodySize::None;
        }
        304 => {
            skip_len = false;
            size = BodySize::None;
        }
        _ => {}
    }
    let chunked = size == BodySize::Stream;
    match size {
        BodySize::Stream => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        BodySize::Sized(n) => {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        BodySize::None => {}
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    let mut has_date = false;
    for (name, value) in headers {
        match *name {
            ax::CONNECTION => continue,
            ax::TRANSFER_ENCODING | ax::CONTENT_LENGTH if skip_len => continue,
            ax::DATE => has_date = true,
            _ => {}
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !has_date {
        date_line(out);
    }
    out.extend_from_slice(b"\r\n");
    (size, chunked)
}

thread_local! {
    /// The worker's `date:` value, remade once a second.
    static DATE: std::cell::RefCell<(u64, String, Option<clock::WallClock>)> =
        const { std::cell::RefCell::new((u64::MAX, String::new(), None)) };
}

/// Appends `date: <now, IMF-fixdate>\r\n`.
fn date_line(out: &mut Vec<u8>) {
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        let wall = *d.2.get_or_insert_with(clock::WallClock::start);
        let now = wall.at(clock::now());
        let secs = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if secs != d.0 {
            d.0 = secs;
            d.1 = httpdate::fmt_http_date(now);
        }
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(d.1.as_bytes());
        out.extend_from_slice(b"\r\n");
    });
}

/// Writes every slice, with as few system calls as the socket allows.
async fn write_all<T: AsyncWrite + Unpin>(
    io: &mut T,
    mut slices: &mut [IoSlice<'_>],
) -> io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match io.write_vectored(slices).await {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
