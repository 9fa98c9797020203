//! The gate itself: an IO wrapper around a client connection that hands actix-http one request at a time.
//!
//! actix-http decodes every pipelined request it has bytes for before it writes the first response, and
//! its codec keeps one connection type for the connection: a `Connection: close` on request 3 would be
//! written on responses 1 and 2. The gate keeps the next request's bytes back until the previous request's
//! response has started (its head is encoded in the same dispatcher turn), which [`ReleaseNext`] signals.
//! And where actix-http would treat a malformed chunk size as a dropped connection and answer nothing, the
//! gate ends the client's byte stream just before it: the handler sees a body cut short and answers 400.
//! After a `101 Switching Protocols` the connection's bytes go to the tunnel instead ([`super::tunnel`]).

use std::cell::{Cell, RefCell};
use std::future::{ready, Future, Ready};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::web::{Buf, BytesMut};
use actix_web::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::scanner::{RequestScanner, Scan};
use super::tunnel::{ClientBytes, Tunnel};

/// What the gate and the request handlers share about one connection.
#[derive(Debug, Default)]
struct Shared {
    /// Responses started so far.
    released: Cell<u64>,
    /// The reader waiting for a release.
    waiter: RefCell<Option<Waker>>,
    /// The client's chunked body was malformed (the stream was ended before the bad bytes).
    malformed: Cell<bool>,
    /// Set once the connection switched protocols: its bytes go to the tunnel.
    tunnel: Rc<RefCell<Option<Tunnel>>>,
}

/// A connection's gate, as request handlers see it (`HttpRequest::conn_data`).
#[derive(Debug, Clone, Default)]
pub struct GateHandle(Rc<Shared>);

impl GateHandle {
    /// The response to the current request has started: the next pipelined request may be read.
    pub fn release(&self) {
        self.0.released.set(self.0.released.get() + 1);
        if let Some(w) = self.0.waiter.borrow_mut().take() {
            w.wake();
        }
    }

    /// Whether the client's chunked body was malformed (so a body cut short is its framing, not a
    /// disconnect).
    pub fn malformed(&self) -> bool {
        self.0.malformed.get()
    }

    /// The connection switched protocols (its 101 is about to be written): every byte the client sent
    /// after the upgrade request's head, and sends from now on, goes to the returned stream, none to
    /// the server. Call it only for a request whose head was the last the gate let through.
    pub fn switch(&self) -> ClientBytes {
        self.0
            .tunnel
            .borrow_mut()
            .get_or_insert_with(Tunnel::default);
        if let Some(w) = self.0.waiter.borrow_mut().take() {
            w.wake();
        }
        ClientBytes(Rc::clone(&self.0.tunnel))
    }

    /// The tunnel's response has ended: the server reads the end of the stream and closes the
    /// connection.
    pub fn end_tunnel(&self) {
        if let Some(t) = self.0.tunnel.borrow_mut().as_mut() {
            t.end();
        }
    }
}

/// A client connection, read one request at a time.
#[derive(Debug)]
pub struct Gate<T> {
    io: T,
    scanner: RequestScanner,
    /// Bytes read past the end of a request, for the next one.
    pending: BytesMut,
    /// Requests whose last byte was handed to the server.
    delivered: u64,
    /// Set after a malformed chunk: the server's byte stream has ended.
    ended: bool,
    /// HTTP/1 framing is followed (false: an HTTP/2 connection, whose bytes pass as they are).
    framed: bool,
    shared: GateHandle,
}

impl<T> Gate<T> {
    /// Wraps a freshly accepted HTTP/1 connection.
    pub fn new(io: T) -> Self {
        Gate {
            io,
            scanner: RequestScanner::default(),
            pending: BytesMut::new(),
            delivered: 0,
            ended: false,
            framed: true,
            shared: GateHandle::default(),
        }
    }

    /// Wraps an HTTP/1 connection whose first bytes, `pending`, were already read (by the front loop):
    /// they start a request, and the server reads them first.
    pub fn resume(io: T, pending: BytesMut) -> Self {
        Gate {
            pending,
            ..Gate::new(io)
        }
    }

    /// Wraps an HTTP/2 connection (ALPN `h2`): its frames are the server's to read, the gate only
    /// lends its handle to the requests (HTTP/2 has no pipelining to hold back, and no upgrades).
    pub fn h2(io: T) -> Self {
        Gate {
            framed: false,
            ..Gate::new(io)
        }
    }

    /// The handle request handlers use (see [`ReleaseNext`]).
    pub fn handle(&self) -> GateHandle {
        self.shared.clone()
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &T {
        &self.io
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Gate<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.framed {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        if let Some(t) = this.shared.0.tunnel.borrow_mut().as_mut() {
            t.preload(std::mem::take(&mut this.pending));
            return t.pump(&mut this.io, cx);
        }
        if this.ended {
            return Poll::Ready(Ok(()));
        }
        // A whole request went in and its response has not started: the next one waits.
        if this.scanner.between_requests() && this.delivered > this.shared.0.released.get() {
            *this.shared.0.waiter.borrow_mut() = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let before = buf.filled().len();
        if this.pending.is_empty() {
            match Pin::new(&mut this.io).poll_read(cx, buf) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            if buf.filled().len() == before {
                return Poll::Ready(Ok(())); // end of stream
            }
        } else {
            let n = this.pending.len().min(buf.remaining());
            buf.put_slice(&this.pending[..n]);
            this.pending.advance(n);
        }
        let fresh_len = buf.filled().len() - before;
        match this.scanner.feed(&buf.filled()[before..]) {
            Scan::Within => {}
            Scan::Complete(n) => {
                this.delivered += 1;
                if n < fresh_len {
                    // Bytes of the next request: kept back, in front of anything kept before.
                    let mut rest = BytesMut::from(&buf.filled()[before + n..]);
                    rest.extend_from_slice(&this.pending);
                    this.pending = rest;
                    buf.set_filled(before + n);
                }
            }
            Scan::Malformed(n) => {
                this.shared.0.malformed.set(true);
                this.ended = true;
                this.pending.clear();
                buf.set_filled(before + n);
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Gate<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Middleware that tells the connection's gate when a response has started.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReleaseNext;

impl<S, B> Transform<S, ServiceRequest> for ReleaseNext
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = ReleaseNextService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(ReleaseNextService { service }))
    }
}

/// [`ReleaseNext`]'s service.
pub struct ReleaseNextService<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for ReleaseNextService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = Released<S::Future>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let gate = req.conn_data::<GateHandle>().cloned();
        Released {
            inner: self.service.call(req),
            gate,
        }
    }
}

pin_project_lite::pin_project! {
    /// A handler's future that releases the gate when it completes.
    pub struct Released<F> {
        #[pin]
        inner: F,
        gate: Option<GateHandle>,
    }
}

impl<F: Future> Future for Released<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        if let Some(g) = this.gate.take() {
            g.release();
        }
        Poll::Ready(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One read through the gate, polled once: `None` if it would wait.
    async fn read_now(gate: &mut Gate<tokio::io::DuplexStream>) -> Option<Vec<u8>> {
        use futures_util::FutureExt;
        let mut buf = vec![0u8; 4096];
        let n = gate.read(&mut buf).now_or_never()?.unwrap();
        Some(buf[..n].to_vec())
    }

    #[tokio::test]
    async fn the_next_pipelined_request_waits_for_the_previous_response() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut gate = Gate::new(server);
        let handle = gate.handle();
        let first = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
        let second = b"GET /b HTTP/1.1\r\nConnection: close\r\n\r\n";
        client
            .write_all(&[&first[..], &second[..]].concat())
            .await
            .unwrap();
        // Exactly the first request, then nothing until its response starts.
        assert_eq!(read_now(&mut gate).await.unwrap(), first);
        assert_eq!(read_now(&mut gate).await, None);
        handle.release();
        assert_eq!(read_now(&mut gate).await.unwrap(), second);
        assert!(!handle.malformed());
    }

    #[tokio::test]
    async fn after_a_switch_the_client_bytes_go_to_the_tunnel_and_none_to_the_server() {
        use futures_util::StreamExt;
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut gate = Gate::new(server);
        let handle = gate.handle();
        let head = b"GET /e HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: echo/1\r\n\r\n";
        // The client's first bytes right behind the head, before any response.
        client
            .write_all(&[&head[..], &b"early"[..]].concat())
            .await
            .unwrap();
        // The head reaches the server; what follows waits for the answer, like a pipelined request.
        assert_eq!(read_now(&mut gate).await.unwrap(), head);
        assert_eq!(read_now(&mut gate).await, None);
        // The replica switched: the early bytes and every later one go to the tunnel.
        let mut tunnel = handle.switch();
        handle.release();
        assert_eq!(read_now(&mut gate).await, None);
        assert_eq!(tunnel.next().await.unwrap().unwrap(), "early");
        client.write_all(b"later").await.unwrap();
        assert_eq!(read_now(&mut gate).await, None);
        assert_eq!(tunnel.next().await.unwrap().unwrap(), "later");
        // The other way is the connection itself.
        gate.write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\nback")
            .await
            .unwrap();
        let mut back = [0u8; 40];
        client.read_exact(&mut back).await.unwrap();
        assert!(back.ends_with(b"\r\n\r\nback"));
        // A half-close ends the tunnel's stream; the server still sees nothing until the tunnel ends.
        client.shutdown().await.unwrap();
        assert_eq!(read_now(&mut gate).await, None);
        assert!(tunnel.next().await.is_none());
        handle.end_tunnel();
        assert_eq!(read_now(&mut gate).await.unwrap(), b"");
    }

    #[tokio::test]
    async fn an_h2_connection_passes_unframed_and_never_waits() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut gate = Gate::h2(server);
        // The connection preface, then frames: nothing HTTP/1 about them, nothing held back.
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
        client.write_all(preface).await.unwrap();
        let mut seen = Vec::new();
        while seen.len() < preface.len() {
            seen.extend(read_now(&mut gate).await.expect("never held back"));
        }
        assert_eq!(seen, preface);
        client.write_all(b"more").await.unwrap();
        assert_eq!(read_now(&mut gate).await.unwrap(), b"more");
    }

    #[tokio::test]
    async fn a_malformed_chunk_ends_the_stream_just_before_it() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut gate = Gate::new(server);
        let head = b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n";
        client
            .write_all(&[&head[..], b"zz\r\nmore"].concat())
            .await
            .unwrap();
        assert_eq!(read_now(&mut gate).await.unwrap(), head);
        // The end of the stream: the handler sees the body cut short.
        assert_eq!(read_now(&mut gate).await.unwrap(), b"");
        assert!(gate.handle().malformed());
    }
}
