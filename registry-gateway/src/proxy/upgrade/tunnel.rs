//! The tunnel behind a 101: the relay of bytes both ways until a side closes or it idles out, and the
//! response body that carries the replica's bytes to the client.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, MessageBody};
use actix_web::web::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::clock;
use crate::framing::GateHandle;
use crate::observe::Exchange;

/// Why a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TunnelEnd {
    /// The replica closed its side (or its connection broke).
    ReplicaClosed,
    /// The client went away.
    ClientClosed,
    /// No byte either way for `proxy.upgrade_idle_timeout`.
    Idle,
}

impl TunnelEnd {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            TunnelEnd::ReplicaClosed => "replica_closed",
            TunnelEnd::ClientClosed => "client_closed",
            TunnelEnd::Idle => "idle_timeout",
        }
    }
}

/// Relays bytes both ways. The client's end of stream is passed on as a half-close (the replica may go
/// on sending); the replica's end closes the tunnel, since actix-http cannot half-close a client
/// connection. Any byte either way restarts the idle clock.
pub(super) async fn relay<U, C, E>(
    upstream: U,
    mut client: C,
    to_client: mpsc::Sender<Bytes>,
    idle_timeout: Duration,
    uploaded: Rc<Cell<u64>>,
) -> TunnelEnd
where
    U: tokio::io::AsyncRead + tokio::io::AsyncWrite,
    C: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
{
    let (mut up_read, mut up_write) = tokio::io::split(upstream);
    let last = Cell::new(clock::now());
    let client_to_replica = async {
        while let Some(Ok(chunk)) = client.next().await {
            if up_write.write_all(&chunk).await.is_err() {
                return;
            }
            uploaded.set(uploaded.get() + chunk.len() as u64);
            last.set(clock::now());
        }
        let _ = up_write.shutdown().await;
        // Half-closed: the replica's side goes on until it closes.
        std::future::pending::<()>().await;
    };
    let replica_to_client = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match up_read.read(&mut buf).await {
                Ok(0) | Err(_) => return TunnelEnd::ReplicaClosed,
                Ok(n) => {
                    last.set(clock::now());
                    if to_client
                        .send(Bytes::copy_from_slice(&buf[..n]))
                        .await
                        .is_err()
                    {
                        return TunnelEnd::ClientClosed;
                    }
                    last.set(clock::now());
                }
            }
        }
    };
    let idle = async {
        loop {
            let deadline = last.get() + idle_timeout;
            if clock::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
        }
    };
    tokio::select! {
        end = replica_to_client => end,
        () = client_to_replica => TunnelEnd::ClientClosed,
        () = to_client.closed() => TunnelEnd::ClientClosed,
        () = idle => TunnelEnd::Idle,
    }
}

/// The 101 response's body: the replica's bytes, written raw to the client. The request's access-log
/// line is written when it is dropped (the tunnel ended), with the bytes of both directions; its end
/// tells the gate the connection may close.
pub(crate) struct TunnelBody {
    rx: mpsc::Receiver<Bytes>,
    sent: u64,
    uploaded: Rc<Cell<u64>>,
    exchange: Option<Exchange>,
    gate: GateHandle,
}

impl TunnelBody {
    /// The body of a 101 whose tunnel sends the replica's bytes on `rx` and counts the client's in
    /// `uploaded`; `gate` is the client's connection.
    pub(super) fn new(
        rx: mpsc::Receiver<Bytes>,
        uploaded: Rc<Cell<u64>>,
        gate: GateHandle,
    ) -> Self {
        TunnelBody {
            rx,
            sent: 0,
            uploaded,
            exchange: None,
            gate,
        }
    }

    /// Hands the client's request to the body: it was counted at the 101 ([`Exchange::switched`]) and is
    /// logged when the tunnel ends.
    pub(crate) fn observed(mut self, mut ex: Exchange) -> Self {
        ex.switched();
        self.exchange = Some(ex);
        self
    }
}

impl Drop for TunnelBody {
    fn drop(&mut self) {
        self.gate.end_tunnel();
        if let Some(mut ex) = self.exchange.take() {
            ex.finish_tunnel(self.sent, self.uploaded.get());
        }
    }
}

impl MessageBody for TunnelBody {
    type Error = std::convert::Infallible;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(b)) => {
                this.sent += b.len() as u64;
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(None) => {
                this.gate.end_tunnel();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
