//! A client connection handed to a tunnel after a `101 Switching Protocols`: from then on the gate feeds
//! actix-http nothing, and pumps the client's bytes to the tunnel's relay instead ([`ClientBytes`]).
//!
//! actix-http streams the bytes after a head only for `Upgrade: websocket` (and `CONNECT`); for any
//! other protocol it would parse them as the next request. The gate sees every byte before the server
//! does, so taking them here carries every protocol the same way. actix-http still writes the 101 and
//! the replica's bytes (the response body); when that body ends the gate reports the end of the stream
//! and the server closes the connection.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use actix_web::web::{Bytes, BytesMut};
use tokio::io::{AsyncRead, ReadBuf};

/// Client bytes read ahead for the relay at most; past it the gate stops reading the socket.
const READ_AHEAD: usize = 64 * 1024;

/// The tunnel's side of a connection: what the gate pumped, and who waits for whom.
#[derive(Debug, Default)]
pub(super) struct Tunnel {
    /// Client bytes not yet taken by the relay.
    buf: BytesMut,
    /// The client ended its stream (or it broke).
    eof: bool,
    /// The tunnel's response has ended: the server may close the connection.
    ended: bool,
    /// The relay waiting for bytes.
    reader: Option<Waker>,
    /// The connection's task (the server's dispatcher), waiting for room or the end.
    pump: Option<Waker>,
}

impl Tunnel {
    fn wake_reader(&mut self) {
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    fn wake_pump(&mut self) {
        if let Some(w) = self.pump.take() {
            w.wake();
        }
    }

    /// Takes bytes the gate had read ahead (sent right behind the handshake).
    pub(super) fn preload(&mut self, bytes: BytesMut) {
        if !bytes.is_empty() {
            self.buf.extend_from_slice(&bytes);
            self.wake_reader();
        }
    }

    /// The connection's read, as the server polls it: reads the client's bytes into the buffer and
    /// tells the server there is nothing for it, until the tunnel ended (then: end of stream).
    pub(super) fn pump<T: AsyncRead + Unpin>(
        &mut self,
        io: &mut T,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        if self.ended {
            return Poll::Ready(Ok(()));
        }
        let mut chunk = [0u8; 16 * 1024];
        while !self.eof && self.buf.len() < READ_AHEAD {
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut *io).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => self.eof = true,
                Poll::Ready(Ok(())) => self.buf.extend_from_slice(read.filled()),
                Poll::Ready(Err(e)) => {
                    self.eof = true;
                    self.wake_reader();
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => break,
            }
            self.wake_reader();
        }
        // Woken by the socket (when it read to Pending), or by the relay making room or the end.
        self.pump = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The tunnel's response ended: the server's next read is the end of the stream.
    pub(super) fn end(&mut self) {
        self.ended = true;
        self.wake_pump();
    }
}

/// The client's bytes after a switch of protocols, as a stream for the relay. Ends when the client
/// half-closes.
#[derive(Debug)]
pub struct ClientBytes(pub(super) Rc<RefCell<Option<Tunnel>>>);

impl futures_util::Stream for ClientBytes {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut slot = self.0.borrow_mut();
        let Some(t) = slot.as_mut() else {
            return Poll::Ready(None);
        };
        if !t.buf.is_empty() {
            let bytes = t.buf.split().freeze();
            t.wake_pump();
            Poll::Ready(Some(Ok(bytes)))
        } else if t.eof {
            Poll::Ready(None)
        } else {
            t.reader = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{FutureExt, StreamExt};
    use tokio::io::AsyncWriteExt;

    /// One poll of the pump, as the server's read would make it.
    fn pump_once(t: &Rc<RefCell<Option<Tunnel>>>, io: &mut tokio::io::DuplexStream) -> bool {
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut slot = t.borrow_mut();
        let tunnel = slot.as_mut().unwrap();
        tunnel.pump(io, &mut cx).is_ready()
    }

    fn buffered(t: &Rc<RefCell<Option<Tunnel>>>) -> usize {
        t.borrow().as_ref().unwrap().buf.len()
    }

    #[tokio::test]
    async fn the_pump_reads_ahead_a_bounded_amount_and_goes_on_as_the_relay_takes() {
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        let shared = Rc::new(RefCell::new(Some(Tunnel::default())));
        let mut bytes = ClientBytes(Rc::clone(&shared));
        client.write_all(&vec![7u8; 200 * 1024]).await.unwrap();
        // The server is told nothing; the pump stops once READ_AHEAD is buffered.
        assert!(!pump_once(&shared, &mut server));
        let first = buffered(&shared);
        assert!(
            (READ_AHEAD..READ_AHEAD + 16 * 1024).contains(&first),
            "{first}"
        );
        // The relay takes it all, the pump reads on.
        let taken = bytes.next().now_or_never().unwrap().unwrap().unwrap();
        assert_eq!(taken.len(), first);
        assert!(!pump_once(&shared, &mut server));
        let mut total = taken.len();
        while total < 200 * 1024 {
            total += bytes.next().now_or_never().unwrap().unwrap().unwrap().len();
            assert!(!pump_once(&shared, &mut server));
        }
        assert_eq!(total, 200 * 1024);
        // Nothing more yet: the relay waits.
        assert!(bytes.next().now_or_never().is_none());
        // The client's end ends the relay's stream; the server still reads nothing until the end.
        drop(client);
        assert!(!pump_once(&shared, &mut server));
        assert!(bytes.next().now_or_never().unwrap().is_none());
        shared.borrow_mut().as_mut().unwrap().end();
        assert!(pump_once(&shared, &mut server));
    }
}
